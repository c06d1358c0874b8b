//! Copying an existing disk image into a new VM's folder on a worker thread, with progress
//! for the library's progress bar. The copy stays sparse where the source has holes. It is
//! written to a `.part` file and renamed when complete; a cancelled or failed copy leaves
//! nothing behind. The copy holds the VM's run lock, so no Cove process starts, edits or
//! deletes the VM meanwhile.

use crate::library::run_lock::RunLock;
use crate::library::VmEntry;
use emu::config::DiskConfig;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;

const CHUNK: usize = 1 << 20;

/// A copy in progress.
pub struct DiskCopy {
    name: String,
    dir: PathBuf,
    total: u64,
    copied: Arc<AtomicU64>,
    cancelled: Arc<AtomicBool>,
    done: Receiver<Result<DiskConfig, String>>,
    _lock: RunLock,
}

impl DiskCopy {
    /// Copies `source` to `<entry.dir>/disk0.img`; when done, [`DiskCopy::poll`] gives the disk
    /// to add to the VM.
    pub fn start(source: PathBuf, entry: &VmEntry, lock: RunLock) -> Self {
        let total = std::fs::metadata(&source).map(|m| m.len()).unwrap_or(0);
        let copied = Arc::new(AtomicU64::new(0));
        let cancelled = Arc::new(AtomicBool::new(false));
        let (sender, done) = channel();
        let progress = copied.clone();
        let stop = cancelled.clone();
        let target = entry.dir.join("disk0.img");
        let spawned = std::thread::Builder::new()
            .name("cove-disk-copy".into())
            .spawn(move || {
                let partial = target.with_extension("img.part");
                let result = copy_sparse(&source, &partial, &progress, &stop)
                    .and_then(|()| std::fs::rename(&partial, &target).map_err(|e| e.to_string()))
                    .map(|()| DiskConfig::new(target));
                if result.is_err() {
                    let _ = std::fs::remove_file(&partial);
                }
                let _ = sender.send(result);
            });
        if let Err(e) = spawned {
            log::warn!("cannot start the disk copy: {e}");
        }
        Self {
            name: entry.config.name.clone(),
            dir: entry.dir.clone(),
            total,
            copied,
            cancelled,
            done,
            _lock: lock,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The folder of the VM the disk is for.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the copy; its partial file is removed.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// 0.0 to 1.0.
    pub fn progress(&self) -> f32 {
        if self.total == 0 {
            return 0.0;
        }
        (self.copied.load(Ordering::Relaxed) as f64 / self.total as f64) as f32
    }

    /// The finished copy, once it is.
    pub fn poll(&self) -> Option<Result<DiskConfig, String>> {
        match self.done.try_recv() {
            Ok(result) => Some(result),
            Err(std::sync::mpsc::TryRecvError::Empty) => None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                Some(Err("the copy stopped unexpectedly".into()))
            }
        }
    }
}

/// Copies `source` to `target`, skipping all-zero chunks (they stay holes), counting bytes,
/// until done or `cancelled`.
pub fn copy_sparse(
    source: &Path,
    target: &Path,
    copied: &AtomicU64,
    cancelled: &AtomicBool,
) -> Result<(), String> {
    let describe = |path: &Path, e: std::io::Error| {
        format!("{}: {}", path.display(), crate::limits::describe_io(&e))
    };
    let mut input = std::fs::File::open(source).map_err(|e| describe(source, e))?;
    let len = input.metadata().map_err(|e| describe(source, e))?.len();
    let mut output =
        emu::control::secure_path::create_regular_file(target).map_err(|e| describe(target, e))?;
    output.set_len(len).map_err(|e| describe(target, e))?;
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0u64;
    loop {
        if cancelled.load(Ordering::Relaxed) {
            return Err("cancelled".into());
        }
        let n = input.read(&mut buf).map_err(|e| describe(source, e))?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|b| *b != 0) {
            output
                .seek(SeekFrom::Start(offset))
                .map_err(|e| describe(target, e))?;
            output
                .write_all(&buf[..n])
                .map_err(|e| describe(target, e))?;
        }
        offset += n as u64;
        copied.store(offset, Ordering::Relaxed);
    }
    output.sync_all().map_err(|e| describe(target, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_data_and_keeps_holes() {
        let tmp = crate::test_support::TempDir::new("copy");
        let dir = &tmp.0;
        let source = dir.join("a.img");
        let mut data = vec![0u8; 4 << 20];
        data[3 << 20..(3 << 20) + 5].copy_from_slice(b"hello");
        std::fs::write(&source, &data).unwrap();
        let target = dir.join("b.img");
        let copied = AtomicU64::new(0);
        let go = AtomicBool::new(false);
        copy_sparse(&source, &target, &copied, &go).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), data);
        assert_eq!(copied.load(Ordering::Relaxed), 4 << 20);
        let blocks = emu::block::raw::allocated_bytes(&target).unwrap();
        assert!(blocks < 2 << 20, "holes kept: {blocks} bytes allocated");
        assert!(copy_sparse(&dir.join("missing"), &target, &copied, &go).is_err());
        let stop = AtomicBool::new(true);
        assert_eq!(
            copy_sparse(&source, &target, &copied, &stop),
            Err("cancelled".into())
        );
    }
}
