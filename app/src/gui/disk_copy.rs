//! Copying an existing disk image into a new VM's folder on a worker thread, with progress
//! for the library's progress bar. The copy stays sparse where the source has holes.

use crate::library::VmEntry;
use emu::config::DiskConfig;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;

const CHUNK: usize = 1 << 20;

/// A copy in progress.
pub struct DiskCopy {
    name: String,
    total: u64,
    copied: Arc<AtomicU64>,
    done: Receiver<Result<VmEntry, String>>,
}

impl DiskCopy {
    /// Copies `source` to `<entry.dir>/disk0.img`; when done, the entry (to be saved) has it as
    /// its first disk.
    pub fn start(source: PathBuf, mut entry: VmEntry) -> Self {
        let total = std::fs::metadata(&source).map(|m| m.len()).unwrap_or(0);
        let copied = Arc::new(AtomicU64::new(0));
        let (sender, done) = channel();
        let name = entry.config.name.clone();
        let progress = copied.clone();
        let spawned = std::thread::Builder::new()
            .name("cove-disk-copy".into())
            .spawn(move || {
                let target = entry.dir.join("disk0.img");
                let result = copy_sparse(&source, &target, &progress).map(|_| {
                    entry.config.disks.insert(0, DiskConfig::new(target));
                    entry
                });
                let _ = sender.send(result);
            });
        if let Err(e) = spawned {
            log::warn!("cannot start the disk copy: {e}");
        }
        Self {
            name,
            total,
            copied,
            done,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// 0.0 to 1.0.
    pub fn progress(&self) -> f32 {
        if self.total == 0 {
            return 0.0;
        }
        (self.copied.load(Ordering::Relaxed) as f64 / self.total as f64) as f32
    }

    /// The finished copy, once it is.
    pub fn poll(&self) -> Option<Result<VmEntry, String>> {
        self.done.try_recv().ok()
    }
}

/// Copies `source` to `target`, skipping all-zero chunks (they stay holes), counting bytes.
pub fn copy_sparse(source: &Path, target: &Path, copied: &AtomicU64) -> Result<(), String> {
    let mut input =
        std::fs::File::open(source).map_err(|e| format!("{}: {e}", source.display()))?;
    let len = input.metadata().map_err(|e| e.to_string())?.len();
    let mut output =
        std::fs::File::create(target).map_err(|e| format!("{}: {e}", target.display()))?;
    output.set_len(len).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|b| *b != 0) {
            output
                .seek(SeekFrom::Start(offset))
                .map_err(|e| e.to_string())?;
            output.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        }
        offset += n as u64;
        copied.store(offset, Ordering::Relaxed);
    }
    output.sync_all().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_data_and_keeps_holes() {
        let dir = std::env::temp_dir().join(format!("cove-copy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let source = dir.join("a.img");
        let mut data = vec![0u8; 4 << 20];
        data[3 << 20..(3 << 20) + 5].copy_from_slice(b"hello");
        std::fs::write(&source, &data).unwrap();
        let target = dir.join("b.img");
        let copied = AtomicU64::new(0);
        copy_sparse(&source, &target, &copied).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), data);
        assert_eq!(copied.load(Ordering::Relaxed), 4 << 20);
        let blocks = emu::block::raw::allocated_bytes(&target).unwrap();
        assert!(blocks < 2 << 20, "holes kept: {blocks} bytes allocated");
        assert!(copy_sparse(&dir.join("missing"), &target, &copied).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
