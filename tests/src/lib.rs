//! Support for Cove's end-to-end tests: finding the `cove` binary and the guest test kernel,
//! checking for KVM, and running a VM while watching its serial console.
//!
//! Guest userspace cannot make system calls on nested-KVM hosts without hardware virtualization,
//! so these tests read what the guest *kernel* reports on its serial console (see
//! `docs/nested-kvm.md`).

pub mod disk_images;
pub mod x11;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `cove` binary of this build, built first if needed.
pub fn cove_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Ok(path) = std::env::var("COVE_BIN") {
                return PathBuf::from(path);
            }
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "--quiet", "-p", "cove", "--bin", "cove"])
                .current_dir(workspace_root())
                .status()
                .expect("run cargo build for the cove binary");
            assert!(status.success(), "cargo build -p cove failed");
            let target = std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| workspace_root().join("target"));
            target.join("debug").join("cove")
        })
        .clone()
}

/// True when KVM can be used. Without it a test may skip, loudly; under `CI=true` it fails.
pub fn kvm_available() -> bool {
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("/dev/kvm is not usable, and CI=true requires it");
        }
        eprintln!(
            "\n*** SKIPPED: /dev/kvm is not available on this host; KVM tests did not run ***\n"
        );
    }
    ok
}

/// The guest test kernel built by `kernel/build-test-kernel.sh`.
pub struct TestKernel {
    pub vmlinux: PathBuf,
    pub bzimage: PathBuf,
    pub initramfs: PathBuf,
    /// The initramfs's `/init` on its own, for disk images that boot it as `/sbin/init`. Not
    /// checked here: cache entries made before it existed lack it until rebuilt.
    pub init: PathBuf,
}

/// Finds (or builds, cached outside the tree) the test kernel. `COVE_TEST_KERNEL_DIR` points at
/// a ready one.
pub fn test_kernel() -> TestKernel {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        if let Ok(dir) = std::env::var("COVE_TEST_KERNEL_DIR") {
            return PathBuf::from(dir);
        }
        let script = workspace_root().join("kernel/build-test-kernel.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("run kernel/build-test-kernel.sh");
        assert!(out.status.success(), "building the test kernel failed");
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    let kernel = TestKernel {
        vmlinux: dir.join("vmlinux"),
        bzimage: dir.join("bzImage"),
        initramfs: dir.join("initramfs.cpio"),
        init: dir.join("init"),
    };
    for f in [&kernel.vmlinux, &kernel.bzimage, &kernel.initramfs] {
        assert!(f.exists(), "test kernel file {} is missing", f.display());
    }
    kernel
}

/// True on nested KVM without hardware virtualization (the `kvm-pvm` module).
pub fn is_pvm_host() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
}

/// The stock Debian 6.12 kernel, fetched and unpacked by `kernel/fetch-stock-kernel.sh` (cached
/// outside the tree). `COVE_STOCK_KERNEL_DIR` points at a ready one.
pub fn stock_kernel_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("COVE_STOCK_KERNEL_DIR") {
        return PathBuf::from(dir);
    }
    let out = Command::new("bash")
        .arg(workspace_root().join("kernel/fetch-stock-kernel.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run kernel/fetch-stock-kernel.sh");
    assert!(out.status.success(), "fetching the stock kernel failed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether this host needs the ELF vmlinux (nested KVM cannot run the bzImage decompressor).
pub fn kernel_image(kernel: &TestKernel) -> &Path {
    if is_pvm_host() {
        &kernel.vmlinux
    } else {
        &kernel.bzimage
    }
}

/// Adds a library VM (in the library at `data_dir`) that boots the test kernel with `append`
/// and 256 MiB of RAM; `extra` goes after. Panics if `cove create` fails.
pub fn create_test_kernel_vm(data_dir: &str, name: &str, append: &str, extra: &[&str]) {
    let kernel = test_kernel();
    let image = kernel_image(&kernel).display().to_string();
    let initrd = kernel.initramfs.display().to_string();
    let mut args = vec![
        "--data-dir",
        data_dir,
        "create",
        "--name",
        name,
        "--kernel",
        &image,
        "--initrd",
        &initrd,
        "--append",
        append,
        "--memory",
        "256M",
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = run_cove(&args, Duration::from_secs(60));
    assert_eq!(code, Some(0), "cove create failed: {out}{err}");
}

/// Starts `cove run` on the test kernel (the image this host can boot) and its initramfs, with
/// `append` as the command line and `extra` arguments after it.
pub fn run_test_kernel(kernel: &TestKernel, append: &str, extra: &[&str]) -> CoveProcess {
    let image = kernel_image(kernel).to_string_lossy().into_owned();
    let initrd = kernel.initramfs.to_string_lossy().into_owned();
    let mut args = vec![
        "run", "--kernel", &image, "--initrd", &initrd, "--append", append,
    ];
    args.extend_from_slice(extra);
    CoveProcess::spawn(&args)
}

/// Starts `cove run` on the test kernel without an initramfs: the root filesystem comes from a
/// disk (`root=/dev/vda` in `append`, `--disk` in `extra`).
pub fn run_test_kernel_without_initrd(
    kernel: &TestKernel,
    append: &str,
    extra: &[&str],
) -> CoveProcess {
    let image = kernel_image(kernel).to_string_lossy().into_owned();
    let mut args = vec!["run", "--kernel", &image, "--append", append];
    args.extend_from_slice(extra);
    CoveProcess::spawn(&args)
}

#[derive(Default)]
struct Captured {
    text: String,
    closed: bool,
}

/// A stream of a child's output, collected as text, which tests wait on.
#[derive(Clone, Default)]
pub struct Capture(Arc<(Mutex<Captured>, Condvar)>);

impl Capture {
    fn spawn_reader(&self, mut source: impl Read + Send + 'static, echo: bool) {
        let capture = self.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = source.read(&mut buf).unwrap_or(0);
                let (lock, cond) = &*capture.0;
                let mut c = lock.lock().unwrap();
                if n == 0 {
                    c.closed = true;
                    cond.notify_all();
                    return;
                }
                let chunk = String::from_utf8_lossy(&buf[..n]);
                if echo {
                    eprint!("{chunk}");
                }
                c.text.push_str(&chunk);
                cond.notify_all();
            }
        });
    }

    pub fn text(&self) -> String {
        self.0 .0.lock().unwrap().text.clone()
    }

    /// Waits until the output contains `needle` `count` times; returns false on timeout or when
    /// the stream closes first.
    pub fn wait_for_count(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cond) = &*self.0;
        let mut c = lock.lock().unwrap();
        loop {
            if c.text.matches(needle).count() >= count {
                return true;
            }
            let now = Instant::now();
            if c.closed || now >= deadline {
                return false;
            }
            c = cond.wait_timeout(c, deadline - now).unwrap().0;
        }
    }

    /// Waits until the writer closed the stream.
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cond) = &*self.0;
        let mut c = lock.lock().unwrap();
        while !c.closed {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            c = cond.wait_timeout(c, deadline - now).unwrap().0;
        }
        true
    }

    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_for_count(needle, 1, timeout)
    }

    /// Waits for a whole line (ended by a newline) containing `needle`, and returns the first
    /// such line without its line ending; `None` on timeout or when the stream closes first.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lock, cond) = &*self.0;
        let mut c = lock.lock().unwrap();
        loop {
            let found = c
                .text
                .split_inclusive('\n')
                .find(|l| l.ends_with('\n') && l.contains(needle));
            if let Some(line) = found {
                return Some(line.trim_end_matches(['\r', '\n']).to_string());
            }
            let now = Instant::now();
            if c.closed || now >= deadline {
                return None;
            }
            c = cond.wait_timeout(c, deadline - now).unwrap().0;
        }
    }
}

/// A running `cove` process.
pub struct CoveProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The guest's serial console (cove's stdout).
    pub serial: Capture,
    /// Cove's own log (stderr).
    pub log: Capture,
}

impl CoveProcess {
    /// Starts `cove` with `args`. Set `COVE_TEST_ECHO=1` to see the guest console live.
    pub fn spawn(args: &[&str]) -> Self {
        Self::spawn_command(Command::new(cove_binary()), args)
    }

    /// Starts `cove` through a prepared command (a wrapper such as `setpriv`).
    pub fn spawn_command(mut command: Command, args: &[&str]) -> Self {
        let echo = std::env::var("COVE_TEST_ECHO").is_ok();
        let mut child = command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cove");
        let serial = Capture::default();
        let log = Capture::default();
        serial.spawn_reader(child.stdout.take().expect("stdout"), echo);
        log.spawn_reader(child.stderr.take().expect("stderr"), echo);
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            serial,
            log,
        }
    }

    /// Types into the guest console (and cove's escape parser).
    pub fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to cove's stdin");
        stdin.flush().expect("flush cove's stdin");
    }

    /// Sends a serial break (Ctrl-A B, cove's console escape) and then `key`: magic SysRq
    /// `key` on a Linux guest.
    /// Sends SysRq `key` until the guest logs `expect`, at most `tries` times (a break and its
    /// key can be lost while the guest is slow to service the UART). Returns whether it did.
    pub fn sysrq_until(&mut self, key: u8, expect: &str, tries: u32) -> bool {
        for _ in 0..tries {
            self.send_sysrq(key);
            if self.serial.wait_for(expect, Duration::from_secs(30)) {
                return true;
            }
        }
        false
    }

    pub fn send_sysrq(&mut self, key: u8) {
        self.send(b"\x01b");
        self.send(&[key]);
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll cove") {
                // Let the readers drain what is left.
                self.serial.wait_closed(Duration::from_secs(2));
                self.log.wait_closed(Duration::from_secs(2));
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything both streams said, for assertion messages.
    pub fn transcript(&self) -> String {
        format!(
            "--- serial ---\n{}\n--- cove log ---\n{}",
            tail(&self.serial.text(), 6000),
            tail(&self.log.text(), 4000)
        )
    }
}

impl Drop for CoveProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Runs `cove` to completion (for commands that should fail fast).
pub fn run_cove(args: &[&str], timeout: Duration) -> (Option<i32>, String, String) {
    let mut p = CoveProcess::spawn(args);
    let status = p.wait(timeout);
    (status.and_then(|s| s.code()), p.serial.text(), p.log.text())
}

/// A scratch directory for one test, removed on drop.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("cove-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Self(dir)
    }
    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
