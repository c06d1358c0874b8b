//! Disk image locks across Cove and QEMU: a running Cove VM's disk is refused to `qemu-io`,
//! `qemu-system-x86_64` and a second Cove VM, yet `qemu-img info -U` reads it; and Cove refuses
//! a disk that a running QEMU holds. Both sides use QEMU's OFD lock bytes
//! (`emu/src/block/image_lock.rs`).
//!
//! Needs `qemu-utils` and `qemu-system-x86` (scripts/setup.sh installs them); QEMU runs with
//! TCG and `-S`, so it only holds its disk and never runs guest code.

use cove_tests::disk_images::{disk_arg, system_tool};
use cove_tests::{kvm_available, run_test_kernel, test_kernel, ScratchDir};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bounds a hang only: a boot to the first kernel line, or a process that should end at once.
const BOOT: Duration = Duration::from_secs(300);
const STEP: Duration = Duration::from_secs(120);

/// The image's size, and the byte every byte of it starts as.
const IMAGE_SIZE: usize = 4 << 20;
const FILL: u8 = 0xa5;

/// QEMU's error when a writer meets an image whose writes another process does not share.
const QEMU_WRITE_LOCK_ERROR: &str = "Failed to get \"write\" lock";

/// Runs a QEMU tool to completion: its exit code and stdout + stderr.
fn run_tool(tool: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(system_tool(tool))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// A `qemu-system-x86_64` holding a disk, killed (and reaped) when dropped, panic or not.
struct Qemu(Child);

impl Qemu {
    /// Starts QEMU paused on `image` as a read-write virtio drive.
    fn hold(image: &Path) -> Self {
        let drive = format!("file={},format=raw,if=virtio", image.display());
        let child = Command::new(system_tool("qemu-system-x86_64"))
            .args([
                "-S",
                "-display",
                "none",
                "-nodefaults",
                "-machine",
                "accel=tcg",
            ])
            .args(["-drive", &drive, "-monitor", "none", "-serial", "none"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start qemu-system-x86_64");
        Qemu(child)
    }

    /// Waits for QEMU to exit (`STEP` bounds a hang): its exit code and stderr.
    fn wait_exit(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + STEP;
        let status = loop {
            if let Some(status) = self.0.try_wait().expect("poll qemu") {
                break status;
            }
            assert!(Instant::now() < deadline, "qemu-system-x86_64 kept running");
            std::thread::sleep(Duration::from_millis(50));
        };
        (status.code(), self.stderr())
    }

    fn stderr(&mut self) -> String {
        let mut err = String::new();
        if let Some(mut stderr) = self.0.stderr.take() {
            let _ = stderr.read_to_string(&mut err);
        }
        err
    }

    /// Fails the test, with QEMU's stderr, if QEMU has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.0.try_wait().expect("poll qemu") {
            panic!("qemu-system-x86_64 exited ({status}): {}", self.stderr());
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until some process holds lock byte 201 ("write is not shared") on `image`, as the
/// kernel's lock table (`/proc/locks`) shows: a probe that takes no lock itself, so it cannot
/// keep the holder from starting. `alive` is checked between looks, so a holder that died fails
/// at once; `STEP` only bounds a hang.
fn wait_until_held(image: &Path, mut alive: impl FnMut()) {
    let meta = std::fs::metadata(image).expect("stat the image");
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    // `/proc/locks` names a file as MAJOR:MINOR:INODE, the device numbers in hex.
    let file = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let deadline = Instant::now() + STEP;
    loop {
        let table = std::fs::read_to_string("/proc/locks").expect("read /proc/locks");
        let held = table.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // `1: OFDLCK ADVISORY READ -1 fe:00:1234 201 201`; waiters (`->`) hold nothing.
            !line.contains("->")
                && fields.len() == 8
                && fields[5] == file
                && fields[6].parse::<u64>().is_ok_and(|start| start <= 201)
                && (fields[7] == "EOF" || fields[7].parse::<u64>().is_ok_and(|end| end >= 201))
        });
        if held {
            return;
        }
        alive();
        assert!(
            Instant::now() < deadline,
            "nobody locked {}:\n{table}",
            image.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A raw image of `IMAGE_SIZE` bytes of `FILL`.
fn make_image(dir: &ScratchDir) -> PathBuf {
    let image = dir.path("disk.img");
    std::fs::write(&image, vec![FILL; IMAGE_SIZE]).expect("write the image");
    image
}

/// Starts a second `cove run` on `disk` and expects it to be refused for the lock, naming
/// the image.
fn assert_cove_refuses(disk: &str, image: &Path, holder: &str) {
    let mut second = run_test_kernel(
        &test_kernel(),
        "console=ttyS0 COVE_INIT=spin",
        &["--memory", "128M", "--disk", disk],
    );
    let status = second.wait(STEP);
    let t = second.transcript();
    assert!(
        matches!(status.map(|s| s.success()), Some(false)),
        "cove should fail on a disk {holder} holds: {status:?}\n{t}"
    );
    let log = second.log.text();
    assert!(log.contains(&image.display().to_string()), "{t}");
    assert!(
        log.contains("another process (QEMU or Cove) holds it for writing"),
        "{t}"
    );
    assert!(!second.serial.text().contains("Linux version"), "{t}");
}

/// One running Cove VM serves every check against its disk.
#[test]
fn running_cove_vm_keeps_qemu_writers_and_cove_out_but_lets_force_share_read() {
    if !kvm_available() {
        return;
    }
    let dir = ScratchDir::new("image-locks-cove");
    let image = make_image(&dir);
    let path = image.to_str().expect("UTF-8 path");
    let disk = disk_arg(&image, "");
    let mut vm = run_test_kernel(
        &test_kernel(),
        "console=ttyS0 COVE_INIT=spin",
        &["--memory", "128M", "--disk", &disk],
    );
    // Cove opens (and locks) its disks before the guest runs.
    assert!(
        vm.serial.wait_for("Linux version", BOOT),
        "the guest never started\n{}",
        vm.transcript()
    );

    // qemu-io refuses to write, with QEMU's own lock error, and nothing reaches the image.
    let (code, out) = run_tool("qemu-io", &["-f", "raw", "-c", "write -P 0x5a 0 4k", path]);
    assert_ne!(
        code,
        Some(0),
        "qemu-io wrote into a running VM's disk: {out}"
    );
    assert!(out.contains(QEMU_WRITE_LOCK_ERROR), "{out}");
    let head = std::fs::read(&image).expect("read the image");
    assert!(head[..4096].iter().all(|&b| b == FILL), "the image changed");

    // A QEMU VM on the same disk is refused too: it exits at once with the same error.
    let (code, out) = Qemu::hold(&image).wait_exit();
    assert_ne!(code, Some(0), "qemu-system-x86_64 ran on the disk: {out}");
    assert!(out.contains(QEMU_WRITE_LOCK_ERROR), "{out}");

    // A force-share reader works; a reader that keeps writers out (`qemu-img convert`'s
    // source) is refused, since Cove writes.
    let (code, out) = run_tool("qemu-img", &["info", "-U", "-f", "raw", path]);
    assert_eq!(code, Some(0), "qemu-img info -U failed: {out}");
    assert!(
        out.contains(&format!("virtual size: 4 MiB ({IMAGE_SIZE} bytes)")),
        "{out}"
    );
    let copy = dir.path("copy.img");
    let copy = copy.to_str().expect("UTF-8 path");
    let convert = ["convert", "-f", "raw", "-O", "raw", path, copy];
    let (code, out) = run_tool("qemu-img", &convert);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("Failed to get shared \"write\" lock"), "{out}");

    // A second Cove VM is refused, and the first one keeps running.
    assert_cove_refuses(&disk, &image, "a running Cove VM");
    assert!(vm.wait(Duration::ZERO).is_none(), "{}", vm.transcript());

    // Quitting the VM (Ctrl-A X) releases the locks.
    vm.send(b"\x01x");
    let status = vm.wait(STEP);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{}",
        vm.transcript()
    );
    let (code, out) = run_tool("qemu-img", &convert);
    assert_eq!(code, Some(0), "the lock outlived the VM: {out}");
}

/// Cove refuses a disk that a running (paused) QEMU holds read-write.
#[test]
fn cove_refuses_a_disk_that_qemu_holds() {
    if !kvm_available() {
        return;
    }
    let dir = ScratchDir::new("image-locks-qemu");
    let image = make_image(&dir);
    let mut qemu = Qemu::hold(&image);
    wait_until_held(&image, || qemu.assert_running());

    assert_cove_refuses(&disk_arg(&image, ""), &image, "QEMU");
    // Cove left QEMU alone.
    qemu.assert_running();
}
