//! The QMP socket is never open to other users, not even for a moment: under umask 000, a
//! watcher that looks at the socket's path in a tight loop from before the server starts
//! only ever sees it with mode 0600. A test binary of its own, since the umask is
//! process-wide.

use emu::control::qmp::{QmpServer, QmpTarget};
use emu::control::ImageFormat;
use emu::control::{BlockInfo, CpuInfo, VmStatus};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Idle;

impl QmpTarget for Idle {
    fn status(&self) -> VmStatus {
        VmStatus::Running
    }
    fn pause(&self) -> Result<(), String> {
        Ok(())
    }
    fn resume(&self) -> Result<(), String> {
        Ok(())
    }
    fn reset(&self) {}
    fn power_down(&self) {}
    fn quit(&self) {}
    fn cpus(&self) -> Vec<CpuInfo> {
        Vec::new()
    }
    fn block_devices(&self) -> Vec<BlockInfo> {
        Vec::new()
    }
    fn screendump(&self, _path: &Path, _format: ImageFormat) -> Result<(), String> {
        Err("no display".into())
    }
}

#[test]
fn under_umask_000_the_socket_is_only_ever_seen_with_mode_0600() {
    // SAFETY: umask(2) cannot fail; this binary runs only this test.
    unsafe { libc::umask(0) };
    let dir = std::env::temp_dir().join(format!("cove-qmp-umask-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Under umask 000 a plain create_dir would be world-writable, and refused.
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o755)
        .create(&dir)
        .unwrap();
    let path = dir.join("vm.sock");
    for trial in 0..20 {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicU64::new(0));
        let watcher = {
            let (stop, seen, path) = (stop.clone(), seen.clone(), path.clone());
            std::thread::spawn(move || {
                let mut modes = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    if let Ok(meta) = std::fs::symlink_metadata(&path) {
                        seen.fetch_add(1, Ordering::AcqRel);
                        let mode = meta.mode() & 0o7777;
                        if mode != 0o600 && !modes.contains(&mode) {
                            modes.push(mode);
                        }
                    }
                }
                modes
            })
        };
        let server = QmpServer::start(
            &path,
            Arc::new(Idle),
            Arc::new(|| std::sync::mpsc::channel().1),
        )
        .unwrap();
        // Let the watcher see the socket before it goes (a bounded wait).
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.load(Ordering::Acquire) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        server.shutdown();
        stop.store(true, Ordering::Release);
        let modes = watcher.join().unwrap();
        assert!(
            seen.load(Ordering::Acquire) > 0,
            "trial {trial}: the watcher never saw the socket"
        );
        assert!(
            modes.is_empty(),
            "trial {trial}: the socket was seen with modes {modes:?} (octal: {:o})",
            modes.first().copied().unwrap_or(0)
        );
    }
    // Nothing but the socket was ever left in the directory.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
