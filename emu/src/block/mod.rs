//! Disk image backends: the storage behind a block device.
//!
//! This module owns how a disk image on the host is opened, locked ([`image_lock`], with QEMU's
//! lock bytes), sized, read and written.
//! Every image format implements [`DiskBackend`], so the block device works on any of them
//! without knowing the format: [`raw::RawDisk`] is a plain file or host block device, where
//! guest offset N is byte N of the image. [`DiskError`] says, in words a user can act on, why an
//! image could not be opened.

pub mod image_lock;
pub mod raw;

use std::io;
use std::path::PathBuf;

pub use image_lock::LockConflict;
pub use raw::RawDisk;

/// A disk image as the block device sees it. `&self` methods so several queue workers can use one
/// disk at once (positioned I/O, no shared file offset).
///
/// Offsets and lengths are in bytes. Every request must lie within `0..size()`; a backend rejects
/// one that does not with [`io::ErrorKind::InvalidInput`] before touching the image.
pub trait DiskBackend: Send + Sync {
    /// Bytes the guest sees.
    fn size(&self) -> u64;

    /// True when the image was opened read-only: writes, discards and zeroing fail.
    fn read_only(&self) -> bool;

    /// Fills all of `buf` from `offset`. Anything less is an error: an image that ends early
    /// gives [`io::ErrorKind::UnexpectedEof`].
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// Writes all of `buf` at `offset`, or fails. A read-only image gives
    /// [`io::ErrorKind::PermissionDenied`].
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// Makes every completed write durable: the data reaches the disk (`fdatasync`).
    fn flush(&self) -> io::Result<()>;

    /// Tells the host the range is no longer in use, so it can free the space. Advisory: a host
    /// that cannot free it still returns `Ok`, and reads of the range afterwards may return the
    /// old data or zeros.
    fn discard(&self, offset: u64, len: u64) -> io::Result<()>;

    /// Makes the range read back as zeros. With `may_unmap` the backend may also free the
    /// space; without it, the space stays allocated where the host allows.
    fn write_zeroes(&self, offset: u64, len: u64, may_unmap: bool) -> io::Result<()>;

    /// A hint: the granularity, in bytes, at which discards free space on the host.
    fn discard_alignment(&self) -> u64 {
        4096
    }
}

/// Why a disk image could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The image path does not exist.
    #[error("disk image {path} does not exist")]
    NotFound {
        /// Image path from the configuration.
        path: PathBuf,
    },
    /// The OS refused to open the image (EACCES or EPERM) for the access asked for.
    #[error("no permission to open disk image {path} for {}", access(.read_only))]
    PermissionDenied {
        /// Image path from the configuration.
        path: PathBuf,
        /// Whether it was being opened read-only.
        read_only: bool,
    },
    /// Another process (QEMU or Cove) holds a conflicting lock on the image; see [`image_lock`].
    #[error("disk image {path} is in use: {conflict}")]
    Locked {
        /// Image path from the configuration.
        path: PathBuf,
        /// The lock byte in conflict and, when known, its holder.
        conflict: LockConflict,
    },
    /// The path is a directory, FIFO, socket or other non-regular, non-block-device file.
    #[error("disk image {path} is neither a regular file nor a block device")]
    NotAFile {
        /// Image path from the configuration.
        path: PathBuf,
    },
    /// Any other I/O error while opening, sizing or locking the image.
    #[error("cannot use disk image {path}: {source}")]
    Io {
        /// Image path from the configuration.
        path: PathBuf,
        /// The underlying OS error.
        source: io::Error,
    },
}

/// How an image was to be opened, for [`DiskError::PermissionDenied`].
fn access(read_only: &bool) -> &'static str {
    if *read_only {
        "reading"
    } else {
        "reading and writing"
    }
}
