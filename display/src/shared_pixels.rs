//! Pixels in shared memory: the screen a VM process draws into and the app maps, so that the
//! picture crosses the process boundary without a copy.
//!
//! The VM process creates a memfd of exactly the screen's size and seals it against shrinking
//! and growing before anyone else sees it; the app refuses a descriptor without those seals or
//! of the wrong size, so a hostile VM process cannot truncate the memory under the app's
//! mapping (which would kill the app with SIGBUS). The app maps it read-only.

use memfd::{FileSeal, MemfdOptions};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Why shared pixels from another process were refused.
#[derive(Debug, thiserror::Error)]
pub enum SharedPixelsError {
    /// Not a sealed memfd.
    #[error("the screen memory is not sealed against shrinking")]
    NotSealed,
    /// Smaller than the screen it is said to hold.
    #[error("the screen memory holds {have} bytes, not the {want} its size needs")]
    WrongSize {
        /// Bytes the memory holds.
        have: u64,
        /// Bytes the screen needs.
        want: u64,
    },
    /// The system refused.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

enum Mapping {
    Writable(memmap2::MmapMut),
    ReadOnly(memmap2::Mmap),
}

/// A screen's pixels in a memfd, mapped into this process.
pub struct SharedPixels {
    file: File,
    mapping: Mapping,
}

impl SharedPixels {
    /// New zeroed memory of `len` bytes, sealed at that size, mapped writable (the VM side).
    pub fn create(len: usize) -> Result<Self, SharedPixelsError> {
        let memfd = MemfdOptions::default()
            .close_on_exec(true)
            .allow_sealing(true)
            .create("cove-screen")
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        memfd.as_file().set_len(len as u64)?;
        memfd
            .add_seals(&[FileSeal::SealShrink, FileSeal::SealGrow, FileSeal::SealSeal])
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let file = memfd.into_file();
        // SAFETY: the memfd is ours and sealed at `len` bytes, so the mapping stays backed for
        // its whole life; it is only ever used as plain bytes.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(&file)? };
        Ok(Self {
            file,
            mapping: Mapping::Writable(map),
        })
    }

    /// Maps memory another process shared, which must hold at least `len` bytes and be sealed
    /// against shrinking (the app side), read-only.
    pub fn attach(fd: OwnedFd, len: usize) -> Result<Self, SharedPixelsError> {
        let file = File::from(fd);
        let memfd = memfd::Memfd::try_from_file(file).map_err(|_| SharedPixelsError::NotSealed)?;
        let seals = memfd
            .seals()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        if !seals.contains(&FileSeal::SealShrink) {
            return Err(SharedPixelsError::NotSealed);
        }
        let file = memfd.into_file();
        let have = file.metadata()?.len();
        if have < len as u64 {
            return Err(SharedPixelsError::WrongSize {
                have,
                want: len as u64,
            });
        }
        // SAFETY: the memory cannot shrink (sealed, checked above) and holds `len` bytes, so
        // every mapped page stays backed. The other process may change the bytes at any time;
        // they are only ever copied out as pixels, where a torn read shows as a torn frame.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(&file)? };
        Ok(Self {
            file,
            mapping: Mapping::ReadOnly(map),
        })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match &self.mapping {
            Mapping::Writable(m) => m,
            Mapping::ReadOnly(m) => m,
        }
    }

    /// The bytes, when this side may write them.
    pub fn as_mut_slice(&mut self) -> Option<&mut [u8]> {
        match &mut self.mapping {
            Mapping::Writable(m) => Some(m),
            Mapping::ReadOnly(_) => None,
        }
    }

    /// The memfd, to send to the other process.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_other_side_sees_what_this_side_writes() {
        let mut vm = SharedPixels::create(16).unwrap();
        let fd = vm.fd().try_clone_to_owned().unwrap();
        let app = SharedPixels::attach(fd, 16).unwrap();
        vm.as_mut_slice().unwrap()[3] = 7;
        assert_eq!(app.as_slice()[3], 7);
        assert!(SharedPixels::attach(vm.fd().try_clone_to_owned().unwrap(), 17).is_err());
    }

    #[test]
    fn unsealed_memory_is_refused() {
        let memfd = MemfdOptions::default().create("loose").unwrap();
        memfd.as_file().set_len(16).unwrap();
        let err = SharedPixels::attach(memfd.into_file().into(), 16)
            .err()
            .unwrap();
        assert!(matches!(err, SharedPixelsError::NotSealed), "{err}");
        let file = tempfile_in_tmp();
        assert!(matches!(
            SharedPixels::attach(file.into(), 4),
            Err(SharedPixelsError::NotSealed)
        ));
    }

    fn tempfile_in_tmp() -> File {
        let path = std::env::temp_dir().join(format!("cove-pixels-{}", std::process::id()));
        let file = File::create(&path).unwrap();
        file.set_len(16).unwrap();
        let _ = std::fs::remove_file(&path);
        file
    }
}
