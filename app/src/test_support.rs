//! Helpers shared by the app's unit tests.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A fresh, empty directory under the system temp dir, removed when dropped. Each one is
/// unique in the process, so tests running in parallel never share one.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("cove-app-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a test directory");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The VM process of the app's unit tests: the app under test starts this test binary with
/// `--exact test_support::vm_host_main` and `COVE_TEST_VM_HOST` naming the VM's folder (the
/// real app starts `cove vm-host`). Without that variable it does nothing.
#[test]
fn vm_host_main() {
    let Some(dir) = std::env::var_os("COVE_TEST_VM_HOST") else {
        return;
    };
    crate::logging::init(0);
    let code = crate::vm_host::run(
        std::path::Path::new(&dir),
        &crate::vm_host::Options {
            sandbox: true,
            debug_commands: true,
            orphan: crate::vm_host::OrphanPolicy {
                grace: std::time::Duration::from_secs(10),
                shutdown: std::time::Duration::from_secs(15),
            },
        },
    );
    std::process::exit(i32::from(code));
}
