//! The raw backend: a disk image that is a plain host file or host block device, byte for byte.
//!
//! Guest offset N is byte N of the image. Reads and writes are positioned (`pread`/`pwrite`), so
//! queue workers share one [`RawDisk`] without a file offset between them. Discard and zeroing
//! go through `fallocate(2)`, flushes through `fdatasync(2)`. QEMU's advisory lock bytes
//! ([`super::image_lock`]), taken on the descriptor the I/O goes through, keep Cove VMs and QEMU
//! processes from opening one image where either of them writes.

use super::image_lock::{self, LockMode};
use super::{DiskBackend, DiskError};
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Guest-visible sizes are whole 512-byte sectors.
const SECTOR_SIZE: u64 = 512;

/// How much a zeroing fallback writes per `pwrite`.
const ZERO_CHUNK: u64 = 1 << 20;

/// The discard granularity when the host does not say.
const DEFAULT_DISCARD_ALIGNMENT: u64 = 4096;

/// A raw disk image: a regular file or a block device.
#[derive(Debug)]
pub struct RawDisk {
    file: File,
    path: PathBuf,
    /// Guest-visible size: the image's length rounded down to a whole sector.
    size: u64,
    read_only: bool,
    /// Block devices report unaligned `fallocate` ranges with EINVAL, which for discard and
    /// zeroing only means "cannot do it that way".
    block_device: bool,
    discard_alignment: u64,
}

impl RawDisk {
    /// Opens the image at `path` and locks it as QEMU would a read-write or read-only drive
    /// ([`image_lock`]), so no two VMs, Cove or QEMU, open one image where either of them
    /// writes. The lock lasts as long as the `RawDisk`.
    pub fn open(path: &Path, read_only: bool) -> Result<RawDisk, DiskError> {
        // Look before opening, so a FIFO or device node is refused without open(2) blocking on
        // it or acting on it.
        let metadata =
            std::fs::metadata(path).map_err(|source| open_error(path, read_only, source))?;
        check_file_type(path, &metadata)?;

        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|source| open_error(path, read_only, source))?;
        // The path may have been replaced between the two looks: what counts is the open file.
        let metadata = file.metadata().map_err(|source| io_error(path, source))?;
        check_file_type(path, &metadata)?;
        let block_device = metadata.file_type().is_block_device();

        let mode = if read_only {
            LockMode::Read
        } else {
            LockMode::ReadWrite
        };
        image_lock::lock(&file, path, mode)?;

        let len = if block_device {
            // A block device's st_size is 0; its size is where its end is.
            (&file)
                .seek(SeekFrom::End(0))
                .map_err(|source| io_error(path, source))?
        } else {
            metadata.len()
        };
        let size = len - len % SECTOR_SIZE;
        if size != len {
            log::warn!(
                "disk image {} is {len} bytes, not a whole number of {SECTOR_SIZE}-byte sectors: \
                 the guest sees only the first {size} bytes",
                path.display()
            );
        }

        let blksize = metadata.blksize();
        let discard_alignment = if blksize >= SECTOR_SIZE && blksize.is_power_of_two() {
            blksize
        } else {
            DEFAULT_DISCARD_ALIGNMENT
        };

        Ok(RawDisk {
            file,
            path: path.to_path_buf(),
            size,
            read_only,
            block_device,
            discard_alignment,
        })
    }

    /// The path the image was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rejects a request for `len` bytes at `offset` unless it lies within the image.
    fn check_range(&self, offset: u64, len: u64) -> io::Result<()> {
        let Some(end) = offset.checked_add(len) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "request of {len} bytes at offset {offset} on disk image {} overflows a \
                     64-bit offset",
                    self.path.display()
                ),
            ));
        };
        if end > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "request of {len} bytes at offset {offset} goes past the end of disk image \
                     {} ({} bytes)",
                    self.path.display(),
                    self.size
                ),
            ));
        }
        Ok(())
    }

    /// Rejects a change to a read-only image.
    fn check_writable(&self) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("disk image {} is read-only", self.path.display()),
            ));
        }
        Ok(())
    }

    /// `fallocate(2)` on the image, retried when a signal interrupts it.
    fn fallocate(&self, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
        let offset = to_off_t(offset)?;
        let len = to_off_t(len)?;
        loop {
            // SAFETY: fallocate(2) acts only on the file behind the descriptor, which
            // `self.file` keeps open for the whole call; it reads or writes none of our memory.
            let ret = unsafe { libc::fallocate(self.file.as_raw_fd(), mode, offset, len) };
            if ret == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// True when `err` from `fallocate` means the host cannot do that operation here (rather
    /// than that something went wrong).
    fn is_unsupported(&self, err: &io::Error) -> bool {
        match err.raw_os_error() {
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => true,
            // The range was checked; on a block device EINVAL means it is not aligned to the
            // device's logical block size.
            Some(libc::EINVAL) => self.block_device,
            _ => false,
        }
    }

    /// Zeros `len` bytes at `offset` by writing buffers of zeros, a chunk at a time. The range
    /// must already be checked.
    fn write_zero_buffers(&self, offset: u64, len: u64) -> io::Result<()> {
        let end = offset + len;
        let zeros = vec![0u8; len.min(ZERO_CHUNK) as usize];
        let mut pos = offset;
        while pos < end {
            let chunk = (end - pos).min(ZERO_CHUNK) as usize;
            self.file.write_all_at(&zeros[..chunk], pos)?;
            pos += chunk as u64;
        }
        Ok(())
    }
}

impl DiskBackend for RawDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        // An image that shrank under us ends early: read_exact_at says UnexpectedEof.
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check_writable()?;
        self.check_range(offset, buf.len() as u64)?;
        self.file.write_all_at(buf, offset)
    }

    fn flush(&self) -> io::Result<()> {
        if self.read_only {
            // Nothing was written through this handle.
            return Ok(());
        }
        loop {
            // SAFETY: fdatasync(2) acts only on the file behind the descriptor, which
            // `self.file` keeps open for the whole call; it touches none of our memory.
            let ret = unsafe { libc::fdatasync(self.file.as_raw_fd()) };
            if ret == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.check_writable()?;
        self.check_range(offset, len)?;
        if len == 0 {
            return Ok(());
        }
        match self.fallocate(
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        ) {
            Err(err) if self.is_unsupported(&err) => {
                log::debug!(
                    "disk image {}: discard of {len} bytes at {offset} ignored, the host cannot \
                     punch holes here: {err}",
                    self.path.display()
                );
                Ok(())
            }
            result => result,
        }
    }

    fn write_zeroes(&self, offset: u64, len: u64, may_unmap: bool) -> io::Result<()> {
        self.check_writable()?;
        self.check_range(offset, len)?;
        if len == 0 {
            return Ok(());
        }
        if may_unmap {
            match self.fallocate(
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset,
                len,
            ) {
                Err(err) if self.is_unsupported(&err) => log::debug!(
                    "disk image {}: cannot punch a hole to zero {len} bytes at {offset}, \
                     zeroing in place: {err}",
                    self.path.display()
                ),
                result => return result,
            }
        }
        match self.fallocate(
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        ) {
            Err(err) if self.is_unsupported(&err) => log::debug!(
                "disk image {}: cannot zero a range of {len} bytes at {offset} with fallocate, \
                 writing zeros: {err}",
                self.path.display()
            ),
            result => return result,
        }
        self.write_zero_buffers(offset, len)
    }

    fn discard_alignment(&self) -> u64 {
        self.discard_alignment
    }
}

/// Bytes the file at `path` takes on the host (`st_blocks` × 512), which punching holes lowers.
pub fn allocated_bytes(path: &Path) -> io::Result<u64> {
    Ok(std::fs::metadata(path)?.blocks() * 512)
}

/// Accepts regular files and block devices.
fn check_file_type(path: &Path, metadata: &std::fs::Metadata) -> Result<(), DiskError> {
    let file_type = metadata.file_type();
    if file_type.is_file() || file_type.is_block_device() {
        Ok(())
    } else {
        Err(DiskError::NotAFile {
            path: path.to_path_buf(),
        })
    }
}

/// Turns a failure to look at or open the image into the error a user can act on.
fn open_error(path: &Path, read_only: bool, source: io::Error) -> DiskError {
    let path = path.to_path_buf();
    match source.kind() {
        io::ErrorKind::NotFound => DiskError::NotFound { path },
        io::ErrorKind::PermissionDenied => DiskError::PermissionDenied { path, read_only },
        io::ErrorKind::IsADirectory => DiskError::NotAFile { path },
        _ => DiskError::Io { path, source },
    }
}

fn io_error(path: &Path, source: io::Error) -> DiskError {
    DiskError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A checked offset or length as `fallocate` takes it.
fn to_off_t(value: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(value).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("offset or length {value} is too large for the host"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    const MIB: u64 = 1 << 20;

    /// A unique path under the temp directory, removed (file or directory) when dropped.
    struct TempPath(PathBuf);

    impl TempPath {
        fn new(tag: &str) -> Self {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            TempPath(
                std::env::temp_dir()
                    .join(format!("cove-raw-disk-{}-{n}-{tag}", std::process::id())),
            )
        }

        /// A sparse file of `len` bytes.
        fn file(tag: &str, len: u64) -> Self {
            let temp = Self::new(tag);
            let file = File::create(&temp.0).unwrap();
            file.set_len(len).unwrap();
            temp
        }

        /// A file holding `contents`.
        fn with_contents(tag: &str, contents: &[u8]) -> Self {
            let temp = Self::new(tag);
            std::fs::write(&temp.0, contents).unwrap();
            temp
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            if self.0.is_dir() {
                let _ = std::fs::remove_dir(&self.0);
            } else {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
            .collect()
    }

    fn read_back(disk: &RawDisk, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0xeeu8; len];
        disk.read_at(&mut buf, offset).unwrap();
        buf
    }

    #[test]
    fn read_write_roundtrip() {
        let temp = TempPath::file("roundtrip", MIB);
        let disk = RawDisk::open(temp.path(), false).unwrap();
        assert_eq!(disk.size(), MIB);
        assert!(!disk.read_only());
        assert_eq!(disk.path(), temp.path());

        let data = pattern(4096, 7);
        disk.write_at(&data, 8192).unwrap();
        assert_eq!(read_back(&disk, 8192, 4096), data);
        // Unwritten space reads as zeros; the last byte is reachable.
        assert_eq!(read_back(&disk, 0, 512), vec![0; 512]);
        disk.write_at(&[0x5a], MIB - 1).unwrap();
        assert_eq!(read_back(&disk, MIB - 1, 1), vec![0x5a]);
        // Zero-length requests at the end are fine.
        disk.read_at(&mut [], MIB).unwrap();
        disk.write_at(&[], MIB).unwrap();
    }

    #[test]
    fn read_past_end_is_rejected() {
        let temp = TempPath::file("past-end", 4096);
        let disk = RawDisk::open(temp.path(), false).unwrap();
        let mut buf = [0u8; 512];
        for offset in [4096 - 256, 4096, 1 << 40] {
            let err = disk.read_at(&mut buf, offset).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "offset {offset}");
            assert!(err.to_string().contains("past the end"), "{err}");
            let err = disk.write_at(&buf, offset).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "offset {offset}");
        }
        let err = disk.discard(4096 - 512, 1024).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = disk.write_zeroes(0, 8192, true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        // Nothing was written: the file kept its length.
        assert_eq!(std::fs::metadata(temp.path()).unwrap().len(), 4096);
    }

    #[test]
    fn overflowing_offset_is_rejected() {
        let temp = TempPath::file("overflow", 4096);
        let disk = RawDisk::open(temp.path(), false).unwrap();
        let mut buf = [0u8; 16];
        let err = disk.read_at(&mut buf, u64::MAX - 8).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("overflows"), "{err}");
        let err = disk.write_at(&buf, u64::MAX - 8).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = disk.discard(512, u64::MAX).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = disk.write_zeroes(u64::MAX, 1, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn read_of_truncated_image_is_unexpected_eof() {
        let temp = TempPath::file("truncated", 8192);
        let disk = RawDisk::open(temp.path(), false).unwrap();
        // Someone shrinks the image behind the VM's back.
        OpenOptions::new()
            .write(true)
            .open(temp.path())
            .unwrap()
            .set_len(4096)
            .unwrap();
        let mut buf = [0u8; 4096];
        let err = disk.read_at(&mut buf, 4096).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn read_only_refuses_writes() {
        let contents = pattern(8192, 3);
        let temp = TempPath::with_contents("read-only", &contents);
        let disk = RawDisk::open(temp.path(), true).unwrap();
        assert!(disk.read_only());
        assert_eq!(read_back(&disk, 0, 8192), contents);

        let err = disk.write_at(&[0u8; 512], 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("read-only"), "{err}");
        let err = disk.discard(0, 4096).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        for may_unmap in [false, true] {
            let err = disk.write_zeroes(0, 4096, may_unmap).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        }
        disk.flush().unwrap();
        drop(disk);
        assert_eq!(std::fs::read(temp.path()).unwrap(), contents);
    }

    #[test]
    fn flush_succeeds() {
        let temp = TempPath::file("flush", 64 * 1024);
        let disk = RawDisk::open(temp.path(), false).unwrap();
        let data = pattern(4096, 11);
        disk.write_at(&data, 4096).unwrap();
        disk.flush().unwrap();
        drop(disk);
        assert_eq!(std::fs::read(temp.path()).unwrap()[4096..8192], data[..]);
    }

    #[test]
    fn discard_frees_blocks_and_reads_zeros() {
        let temp = TempPath::file("discard", 4 * MIB);
        let disk = RawDisk::open(temp.path(), false).unwrap();
        let alignment = disk.discard_alignment();
        assert!(
            alignment >= 512 && alignment.is_power_of_two(),
            "{alignment}"
        );

        let data = pattern(MIB as usize, 5);
        disk.write_at(&data, MIB).unwrap();
        disk.flush().unwrap();
        let before = allocated_bytes(temp.path()).unwrap();
        assert!(
            before >= MIB,
            "only {before} bytes allocated after writing 1 MiB"
        );

        disk.discard(MIB, MIB).unwrap();
        let after = allocated_bytes(temp.path()).unwrap();
        assert!(after < before, "discard freed nothing: {before} -> {after}");
        assert_eq!(read_back(&disk, MIB, MIB as usize), vec![0; MIB as usize]);
        // A discard keeps the file's length.
        assert_eq!(std::fs::metadata(temp.path()).unwrap().len(), 4 * MIB);
        disk.discard(0, 0).unwrap();
    }

    #[test]
    fn write_zeroes_without_unmap_reads_zeros() {
        let temp = TempPath::file("zeroes-keep", 4 * MIB);
        let disk = RawDisk::open(temp.path(), false).unwrap();
        let data = pattern(2 * MIB as usize, 9);
        disk.write_at(&data, MIB).unwrap();

        disk.write_zeroes(MIB + 4096, MIB, false).unwrap();
        let got = read_back(&disk, MIB, 2 * MIB as usize);
        assert_eq!(got[..4096], data[..4096]);
        assert!(got[4096..4096 + MIB as usize].iter().all(|&b| b == 0));
        assert_eq!(got[4096 + MIB as usize..], data[4096 + MIB as usize..]);
        assert_eq!(std::fs::metadata(temp.path()).unwrap().len(), 4 * MIB);
    }

    #[test]
    fn write_zeroes_with_unmap_frees_blocks() {
        let temp = TempPath::file("zeroes-unmap", 4 * MIB);
        let disk = RawDisk::open(temp.path(), false).unwrap();
        let data = pattern(MIB as usize, 13);
        disk.write_at(&data, 2 * MIB).unwrap();
        disk.flush().unwrap();
        let before = allocated_bytes(temp.path()).unwrap();

        disk.write_zeroes(2 * MIB, MIB, true).unwrap();
        let after = allocated_bytes(temp.path()).unwrap();
        assert!(
            after < before,
            "write_zeroes freed nothing: {before} -> {after}"
        );
        assert_eq!(
            read_back(&disk, 2 * MIB, MIB as usize),
            vec![0; MIB as usize]
        );
        assert_eq!(std::fs::metadata(temp.path()).unwrap().len(), 4 * MIB);
    }

    #[test]
    fn write_zeroes_of_unaligned_range_keeps_neighbours() {
        let temp = TempPath::file("zeroes-unaligned", 16 * 1024);
        let disk = RawDisk::open(temp.path(), false).unwrap();
        let data = pattern(16 * 1024, 17);
        for may_unmap in [false, true] {
            disk.write_at(&data, 0).unwrap();
            disk.write_zeroes(100, 5000, may_unmap).unwrap();
            let got = read_back(&disk, 0, data.len());
            assert_eq!(got[..100], data[..100], "may_unmap {may_unmap}");
            assert!(
                got[100..5100].iter().all(|&b| b == 0),
                "may_unmap {may_unmap}"
            );
            assert_eq!(got[5100..], data[5100..], "may_unmap {may_unmap}");
        }
    }

    #[test]
    fn zero_buffer_fallback_zeros_whole_range_in_chunks() {
        let len = 2 * MIB + MIB / 2 + 512;
        let temp = TempPath::file("zeroes-fallback", 4 * MIB);
        let disk = RawDisk::open(temp.path(), false).unwrap();
        let data = pattern(4 * MIB as usize, 19);
        disk.write_at(&data, 0).unwrap();

        disk.write_zero_buffers(512, len).unwrap();
        let got = read_back(&disk, 0, data.len());
        let end = (512 + len) as usize;
        assert_eq!(got[..512], data[..512]);
        assert!(got[512..end].iter().all(|&b| b == 0));
        assert_eq!(got[end..], data[end..]);
    }

    #[test]
    fn workers_share_one_disk() {
        let temp = TempPath::file("threads", MIB);
        let disk: Arc<dyn DiskBackend> = Arc::new(RawDisk::open(temp.path(), false).unwrap());
        let workers: Vec<_> = (0..4u8)
            .map(|worker| {
                let disk = Arc::clone(&disk);
                std::thread::spawn(move || {
                    let offset = u64::from(worker) * 64 * 1024;
                    let data = pattern(64 * 1024, worker);
                    for _ in 0..16 {
                        disk.write_at(&data, offset).unwrap();
                        let mut buf = vec![0u8; data.len()];
                        disk.read_at(&mut buf, offset).unwrap();
                        assert_eq!(buf, data);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        disk.flush().unwrap();
    }

    fn assert_locked(result: Result<RawDisk, DiskError>, path: &Path) {
        match result {
            Err(err @ DiskError::Locked { .. }) => {
                let message = err.to_string();
                assert!(
                    message.contains("another process (QEMU or Cove)"),
                    "{message}"
                );
                assert!(message.contains(&path.display().to_string()), "{message}");
            }
            other => panic!("expected Locked, got {other:?}"),
        }
    }

    #[test]
    fn lock_conflict_read_write_twice() {
        let temp = TempPath::file("lock-rw-rw", 4096);
        let first = RawDisk::open(temp.path(), false).unwrap();
        assert_locked(RawDisk::open(temp.path(), false), temp.path());
        // The lock goes with the disk.
        drop(first);
        RawDisk::open(temp.path(), false).unwrap();
    }

    #[test]
    fn lock_conflict_read_write_and_read_only() {
        let temp = TempPath::file("lock-rw-ro", 4096);
        let writer = RawDisk::open(temp.path(), false).unwrap();
        assert_locked(RawDisk::open(temp.path(), true), temp.path());
        drop(writer);

        let reader = RawDisk::open(temp.path(), true).unwrap();
        assert_locked(RawDisk::open(temp.path(), false), temp.path());
        drop(reader);
    }

    #[test]
    fn read_only_opens_share_the_image() {
        let temp = TempPath::file("lock-ro-ro", 4096);
        let first = RawDisk::open(temp.path(), true).unwrap();
        let second = RawDisk::open(temp.path(), true).unwrap();
        assert_eq!(first.size(), second.size());
        // Both still keep writers out.
        drop(first);
        assert_locked(RawDisk::open(temp.path(), false), temp.path());
    }

    /// A force-share reader (`qemu-img info -U`) opens the file without locks: it can read a
    /// locked image, and it keeps no one out.
    #[test]
    fn force_share_reader_is_unaffected() {
        let temp = TempPath::with_contents("lock-force-share", &pattern(4096, 7));
        let reader = File::open(temp.path()).unwrap();
        let disk = RawDisk::open(temp.path(), false).unwrap();
        let mut buf = vec![0u8; 4096];
        reader.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(buf, pattern(4096, 7));
        drop(disk);
        let late_reader = File::open(temp.path()).unwrap();
        let _disk = RawDisk::open(temp.path(), false).unwrap();
        late_reader.read_exact_at(&mut buf, 0).unwrap();
    }

    /// The locks go with the `RawDisk`, even after its queue workers (threads) used it.
    #[test]
    fn locks_vanish_when_the_disk_is_dropped() {
        let temp = TempPath::file("lock-drop", 4096);
        let disk = Arc::new(RawDisk::open(temp.path(), false).unwrap());
        let worker = {
            let disk = disk.clone();
            std::thread::spawn(move || disk.write_at(&[1; 512], 0).unwrap())
        };
        worker.join().unwrap();
        assert_locked(RawDisk::open(temp.path(), true), temp.path());
        drop(disk);
        drop(RawDisk::open(temp.path(), true).unwrap());
        drop(RawDisk::open(temp.path(), false).unwrap());
    }

    #[test]
    fn size_rounds_down_to_whole_sectors() {
        let temp = TempPath::with_contents("unaligned", &pattern(1000, 23));
        let disk = RawDisk::open(temp.path(), false).unwrap();
        assert_eq!(disk.size(), 512);
        read_back(&disk, 0, 512);
        // The tail past the last whole sector is not the guest's.
        let err = disk.read_at(&mut [0u8; 1], 512).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn zero_size_image_is_allowed() {
        let temp = TempPath::file("empty", 0);
        let disk = RawDisk::open(temp.path(), false).unwrap();
        assert_eq!(disk.size(), 0);
        disk.read_at(&mut [], 0).unwrap();
        let err = disk.read_at(&mut [0u8; 1], 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);

        let small = TempPath::with_contents("tiny", &[1; 100]);
        assert_eq!(RawDisk::open(small.path(), true).unwrap().size(), 0);
    }

    #[test]
    fn directory_is_not_a_file() {
        let temp = TempPath::new("dir");
        std::fs::create_dir(temp.path()).unwrap();
        for read_only in [true, false] {
            match RawDisk::open(temp.path(), read_only) {
                Err(err @ DiskError::NotAFile { .. }) => {
                    assert!(err.to_string().contains("neither a regular file"), "{err}")
                }
                other => panic!("expected NotAFile, got {other:?}"),
            }
        }
    }

    #[test]
    fn character_device_is_not_a_file() {
        let null = Path::new("/dev/null");
        if !null.exists() {
            return;
        }
        assert!(matches!(
            RawDisk::open(null, false),
            Err(DiskError::NotAFile { .. })
        ));
    }

    #[test]
    fn missing_path_is_not_found() {
        let temp = TempPath::new("missing");
        for read_only in [true, false] {
            match RawDisk::open(temp.path(), read_only) {
                Err(err @ DiskError::NotFound { .. }) => {
                    let message = err.to_string();
                    assert!(message.contains("does not exist"), "{message}");
                    assert!(
                        message.contains(&temp.path().display().to_string()),
                        "{message}"
                    );
                }
                other => panic!("expected NotFound, got {other:?}"),
            }
        }
    }
}
