//! Disk image locks that QEMU, `qemu-img` and `qemu-io` see, and that see theirs.
//!
//! QEMU (`block/file-posix.c`) locks an image with open file description (OFD) byte-range locks,
//! `F_OFD_SETLK`, one byte per block-layer permission. Cove takes the same bytes with the same
//! meaning, so a Cove VM and a QEMU process (or a second Cove VM) exclude each other both ways.
//!
//! # The scheme
//!
//! Each permission has a bit number *n*:
//!
//! | n | permission        |
//! |---|-------------------|
//! | 0 | consistent read   |
//! | 1 | write             |
//! | 2 | write unchanged   |
//! | 3 | resize            |
//! | 4 | change children (graph modification) |
//!
//! Every lock is a shared (read) lock on one byte:
//!
//! - byte `100 + n` held means "I hold permission *n*";
//! - byte `200 + n` held means "I do not let anyone else hold permission *n*".
//!
//! (libvirt's own locking uses byte 0, which is why QEMU starts at 100.)
//!
//! An opener first takes its bytes, then tests (`F_OFD_GETLK` with a write lock type, which
//! reports any lock another open file description holds there) that nobody holds a permission
//! it unshares (byte `100 + n` for each unshared *n*) and that nobody unshares a permission it
//! holds (byte `200 + n` for each held *n*). Taking before testing means two openers
//! racing cannot both succeed. On a conflict the opener drops its bytes and fails.
//!
//! # Cove's modes
//!
//! - [`LockMode::ReadWrite`], a writable VM disk: holds consistent read and write (bytes 100,
//!   101) and unshares write and resize (bytes 201, 203), as QEMU does for a writable drive
//!   that cannot be resized. So `qemu-io` or `qemu-system` writing the image, `qemu-img info`
//!   without `-U`, `qemu-img resize` and a second Cove VM are refused.
//! - [`LockMode::Read`], a read-only disk, and what backing files and ISOs are to use: holds
//!   consistent read and unshares write and resize (bytes 100, 201, 203). Readers coexist;
//!   writers are refused, and a writer already there refuses it. Resize is unshared in both
//!   modes because Cove reads an image's size once, when it opens it.
//!
//! A force-share reader (`qemu-img info -U`, `qemu-io -U`) takes and tests nothing, so it
//! works on a running VM's image.
//!
//! The locks belong to the open file description Cove does I/O through: every thread sees the
//! same locks, and closing the file (dropping the disk) releases them. A file system without OFD
//! lock support gets a warning and the image is used unlocked, as QEMU does.
//!
//! `F_OFD_GETLK` reports no pid for an OFD lock (`l_pid` is -1), so the holder of a conflicting
//! lock can be named only when it took a classic process-associated `fcntl` lock.

use super::DiskError;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

/// Byte `PERM_BASE + n` held: "I hold permission n".
const PERM_BASE: u64 = 100;
/// Byte `SHARED_BASE + n` held: "I do not share permission n".
const SHARED_BASE: u64 = 200;

/// QEMU's block-layer permissions, by their bit number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read the image and see consistent data (QEMU's `BLK_PERM_CONSISTENT_READ`).
    ConsistentRead = 0,
    /// Write the image (`BLK_PERM_WRITE`).
    Write = 1,
    /// Write without changing what readers see (`BLK_PERM_WRITE_UNCHANGED`).
    WriteUnchanged = 2,
    /// Change the image's size (`BLK_PERM_RESIZE`).
    Resize = 3,
    /// Change the block graph's children (`BLK_PERM_GRAPH_MOD`).
    GraphMod = 4,
}

impl Permission {
    const ALL: [Permission; 5] = [
        Permission::ConsistentRead,
        Permission::Write,
        Permission::WriteUnchanged,
        Permission::Resize,
        Permission::GraphMod,
    ];

    /// The name QEMU's messages use.
    pub fn name(self) -> &'static str {
        match self {
            Permission::ConsistentRead => "consistent read",
            Permission::Write => "write",
            Permission::WriteUnchanged => "write unchanged",
            Permission::Resize => "resize",
            Permission::GraphMod => "change children",
        }
    }

    fn held_byte(self) -> u64 {
        PERM_BASE + self as u64
    }

    fn unshared_byte(self) -> u64 {
        SHARED_BASE + self as u64
    }
}

/// How an image is opened, and so which lock bytes it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Read-only: readers share the image, writers are excluded.
    Read,
    /// Read-write: nobody else may write or hold the image read-only.
    ReadWrite,
}

impl LockMode {
    /// The permissions this mode holds.
    pub fn holds(self) -> &'static [Permission] {
        match self {
            LockMode::Read => &[Permission::ConsistentRead],
            LockMode::ReadWrite => &[Permission::ConsistentRead, Permission::Write],
        }
    }

    /// The permissions this mode lets nobody else hold.
    pub fn unshares(self) -> &'static [Permission] {
        &[Permission::Write, Permission::Resize]
    }
}

/// Another process's lock on a byte this opener needed free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockConflict {
    /// The lock byte, in QEMU's layout.
    pub byte: u64,
    /// The holder's pid, when its lock records one (a process-associated `fcntl` lock). OFD
    /// locks, which QEMU and Cove take, record none.
    pub pid: Option<i32>,
}

impl LockConflict {
    /// The permission the byte stands for, and whether the holder holds it (`true`) or
    /// refuses to share it (`false`).
    fn meaning(&self) -> Option<(Permission, bool)> {
        Permission::ALL.into_iter().find_map(|p| {
            if self.byte == p.held_byte() {
                Some((p, true))
            } else if self.byte == p.unshared_byte() {
                Some((p, false))
            } else {
                None
            }
        })
    }
}

impl fmt::Display for LockConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("another process (QEMU or Cove) ")?;
        match self.meaning() {
            Some((Permission::Write, true)) => f.write_str("holds it for writing")?,
            Some((Permission::Write, false)) => {
                f.write_str("has it open and lets no one else write to it")?
            }
            Some((p, true)) => write!(f, "holds its \"{}\" permission", p.name())?,
            Some((p, false)) => write!(f, "does not share its \"{}\" permission", p.name())?,
            None => f.write_str("holds a lock on it")?,
        }
        write!(f, " (QEMU lock byte {}; ", self.byte)?;
        match self.pid {
            Some(pid) => write!(f, "held by pid {pid})"),
            None => f.write_str(
                "its pid cannot be known: open file description locks do not record one)",
            ),
        }
    }
}

/// Locks `file`, opened from `path`, for reading: what read-only disks, backing files and ISOs
/// take. See [`lock`].
pub fn lock_for_read(file: &File, path: &Path) -> Result<(), DiskError> {
    lock(file, path, LockMode::Read)
}

/// Takes `mode`'s lock bytes on `file`, never waiting, and checks that no other process's
/// locks conflict. The locks last until `file` is closed. On a conflict, nothing stays locked
/// and the error names the image and what the other process holds.
pub fn lock(file: &File, path: &Path, mode: LockMode) -> Result<(), DiskError> {
    let fd = file.as_raw_fd();
    let failure = match take(fd, mode) {
        Ok(()) => return Ok(()),
        Err(failure) => failure,
    };
    if let Err(err) = release(fd) {
        log::debug!(
            "disk image {}: dropping partly taken locks failed: {err}",
            path.display()
        );
    }
    match failure {
        Failure::Conflict(conflict) => {
            log::warn!(
                "disk image {} is locked: {conflict}; QEMU's tools can inspect it with \
                 `qemu-img info -U`",
                path.display()
            );
            Err(DiskError::Locked {
                path: path.to_path_buf(),
                conflict,
            })
        }
        Failure::Io(err) if is_unsupported(&err) => {
            log::warn!(
                "disk image {}: the file system does not support open file description locks \
                 ({err}); using the image unlocked, so nothing stops QEMU or another Cove VM \
                 from opening it at the same time",
                path.display()
            );
            Ok(())
        }
        Failure::Io(source) => Err(DiskError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

enum Failure {
    Conflict(LockConflict),
    Io(io::Error),
}

/// Takes the bytes, then tests for conflicting ones.
fn take(fd: RawFd, mode: LockMode) -> Result<(), Failure> {
    let ours = mode
        .holds()
        .iter()
        .map(|p| p.held_byte())
        .chain(mode.unshares().iter().map(|p| p.unshared_byte()));
    for byte in ours {
        match set_lock(fd, byte, 1, libc::F_RDLCK) {
            Ok(()) => {}
            // Someone holds a write lock on the byte: not QEMU's scheme, but a conflict.
            Err(err) if is_would_block(&err) => {
                let conflict = probe(fd, byte).map_err(Failure::Io)?;
                return Err(Failure::Conflict(
                    conflict.unwrap_or(LockConflict { byte, pid: None }),
                ));
            }
            Err(err) => return Err(Failure::Io(err)),
        }
    }
    // Holders first: "holds it for writing" says more than "lets no one else write", which a
    // writer and a reader that keeps writers out both do.
    let theirs = mode
        .unshares()
        .iter()
        .map(|p| p.held_byte())
        .chain(mode.holds().iter().map(|p| p.unshared_byte()));
    for byte in theirs {
        if let Some(conflict) = probe(fd, byte).map_err(Failure::Io)? {
            return Err(Failure::Conflict(conflict));
        }
    }
    Ok(())
}

/// Drops every lock byte this open file description holds.
fn release(fd: RawFd) -> io::Result<()> {
    let end = SHARED_BASE + Permission::ALL.len() as u64;
    set_lock(fd, PERM_BASE, end - PERM_BASE, libc::F_UNLCK)
}

/// The lock another open file description (or process) holds on `byte`, if any.
pub(crate) fn probe(fd: RawFd, byte: u64) -> io::Result<Option<LockConflict>> {
    let mut request = range(byte, 1, libc::F_WRLCK);
    fcntl_lock(fd, libc::F_OFD_GETLK, &mut request)?;
    if request.l_type == libc::F_UNLCK as libc::c_short {
        return Ok(None);
    }
    Ok(Some(LockConflict {
        byte,
        pid: (request.l_pid > 0).then_some(request.l_pid),
    }))
}

/// `F_OFD_SETLK` of `kind` on `len` bytes from `start`.
fn set_lock(fd: RawFd, start: u64, len: u64, kind: libc::c_int) -> io::Result<()> {
    let mut request = range(start, len, kind);
    fcntl_lock(fd, libc::F_OFD_SETLK, &mut request)
}

fn range(start: u64, len: u64, kind: libc::c_int) -> libc::flock {
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        // The offsets are small constants.
        l_start: start as libc::off_t,
        l_len: len as libc::off_t,
        // OFD requests must pass 0.
        l_pid: 0,
    }
}

/// One `fcntl` lock command, retried when a signal interrupts it.
fn fcntl_lock(fd: RawFd, command: libc::c_int, request: &mut libc::flock) -> io::Result<()> {
    loop {
        // SAFETY: the command is F_OFD_SETLK or F_OFD_GETLK, which read (and for GETLK, write)
        // exactly one `struct flock`, and `request` is a valid, exclusively borrowed one for the
        // whole call. The descriptor is one the caller keeps open.
        let ret = unsafe { libc::fcntl(fd, command, request as *mut libc::flock) };
        if ret != -1 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// A non-blocking lock request that found the byte taken.
fn is_would_block(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES))
}

/// The file system (or kernel) cannot take OFD locks at all.
fn is_unsupported(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EINVAL) | Some(libc::ENOLCK) | Some(libc::EOPNOTSUPP)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::path::PathBuf;

    /// A 4 KiB scratch file, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("cove-image-lock-{}-{tag}", std::process::id()));
            File::create(&path).unwrap().set_len(4096).unwrap();
            Scratch(path)
        }

        fn open(&self) -> File {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.0)
                .unwrap()
        }

        /// The lock bytes in 100..=104 and 200..=204 that some open file description holds,
        /// seen from a fresh one.
        fn held_bytes(&self) -> Vec<u64> {
            let observer = File::open(&self.0).unwrap();
            (PERM_BASE..PERM_BASE + 5)
                .chain(SHARED_BASE..SHARED_BASE + 5)
                .filter(|&byte| probe(observer.as_raw_fd(), byte).unwrap().is_some())
                .collect()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn read_write_takes_qemus_bytes_for_a_writable_drive() {
        let scratch = Scratch::new("rw-bytes");
        let file = scratch.open();
        lock(&file, &scratch.0, LockMode::ReadWrite).unwrap();
        assert_eq!(scratch.held_bytes(), [100, 101, 201, 203]);
        drop(file);
        assert_eq!(scratch.held_bytes(), [] as [u64; 0]);
    }

    #[test]
    fn read_takes_consistent_read_and_unshares_write_and_resize() {
        let scratch = Scratch::new("ro-bytes");
        let file = File::open(&scratch.0).unwrap();
        lock_for_read(&file, &scratch.0).unwrap();
        assert_eq!(scratch.held_bytes(), [100, 201, 203]);
    }

    #[test]
    fn a_refused_opener_keeps_no_bytes() {
        let scratch = Scratch::new("refused");
        let reader = File::open(&scratch.0).unwrap();
        lock_for_read(&reader, &scratch.0).unwrap();
        let writer = scratch.open();
        let err = lock(&writer, &scratch.0, LockMode::ReadWrite).unwrap_err();
        let DiskError::Locked { conflict, .. } = &err else {
            panic!("expected Locked, got {err:?}");
        };
        // The writer needs write, which the reader does not share.
        assert_eq!(conflict.byte, 201);
        drop(reader);
        assert_eq!(scratch.held_bytes(), [] as [u64; 0]);
    }

    #[test]
    fn a_writer_refuses_a_reader_because_it_holds_write() {
        let scratch = Scratch::new("writer-first");
        let writer = scratch.open();
        lock(&writer, &scratch.0, LockMode::ReadWrite).unwrap();
        let reader = File::open(&scratch.0).unwrap();
        let err = lock_for_read(&reader, &scratch.0).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&scratch.0.display().to_string()),
            "{message}"
        );
        assert!(
            message.contains("another process (QEMU or Cove) holds it for writing"),
            "{message}"
        );
        assert!(message.contains("pid cannot be known"), "{message}");
    }

    #[test]
    fn a_process_associated_lock_names_its_pid() {
        let scratch = Scratch::new("posix-holder");
        let holder = scratch.open();
        // A classic fcntl lock on "write is not shared", as an older tool might take.
        let mut request = range(201, 1, libc::F_RDLCK);
        // SAFETY: F_SETLK reads one `struct flock`, which `request` is; `holder` stays open.
        let ret = unsafe {
            libc::fcntl(
                holder.as_raw_fd(),
                libc::F_SETLK,
                &mut request as *mut libc::flock,
            )
        };
        assert_eq!(ret, 0, "{}", io::Error::last_os_error());

        let writer = scratch.open();
        let err = lock(&writer, &scratch.0, LockMode::ReadWrite).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&format!("held by pid {}", std::process::id())),
            "{message}"
        );
        assert!(
            message.contains("lets no one else write to it"),
            "{message}"
        );
    }

    #[test]
    fn a_foreign_write_lock_on_a_byte_is_a_conflict() {
        let scratch = Scratch::new("foreign-write");
        let holder = scratch.open();
        set_lock(holder.as_raw_fd(), 100, 1, libc::F_WRLCK).unwrap();
        let reader = File::open(&scratch.0).unwrap();
        match lock_for_read(&reader, &scratch.0) {
            Err(DiskError::Locked { conflict, .. }) => assert_eq!(conflict.byte, 100),
            other => panic!("expected Locked, got {other:?}"),
        }
    }
}
