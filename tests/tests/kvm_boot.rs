//! Real guests under KVM: the test kernel boots through `cove run`, and the guest kernel's own
//! serial output shows what it saw (command line, CPUs, memory) and how far it got.

use cove_tests::{kernel_image, kvm_available, run_test_kernel, test_kernel, CoveProcess};
use std::time::Duration;

/// Generous: on nested KVM without hardware virtualization every guest kernel instruction is
/// emulated, and a boot to init takes one to three minutes. This only bounds a hang.
const BOOT: Duration = Duration::from_secs(900);

/// The kernel's "Memory: 123K/262144K available" total, in KiB.
fn reported_memory_kib(serial: &str) -> Option<u64> {
    let line = serial
        .lines()
        .find(|l| l.contains("Memory: ") && l.contains("K available"))?;
    let after = line.split("Memory: ").nth(1)?;
    let total = after.split('/').nth(1)?;
    total.split('K').next()?.parse().ok()
}

#[test]
fn boots_to_init_with_cmdline_cpus_and_memory() {
    if !kvm_available() {
        return;
    }
    let kernel = test_kernel();
    let marker = format!("cove_test_marker={}", std::process::id());
    let append = format!("console=ttyS0 panic=-1 reboot=k {marker}");
    let mut vm = run_test_kernel(
        &kernel,
        &append,
        &["--cpus", "2", "--memory", "256M", "--no-reboot", "--stats"],
    );
    let status = vm.wait(BOOT);
    let serial = vm.serial.text();
    let t = vm.transcript();
    assert!(status.is_some(), "VM did not finish in time\n{t}");
    // The guest got our command line (the host profile may add options after it).
    let cmdline = serial
        .lines()
        .find(|l| l.contains("Command line:"))
        .unwrap_or_else(|| panic!("no command line in the log\n{t}"));
    assert!(cmdline.contains(&marker), "{cmdline}");
    assert!(cmdline.contains("console=ttyS0"), "{cmdline}");
    // Both vCPUs came up.
    assert!(
        serial.contains("Brought up 1 node, 2 CPUs")
            || serial.contains("Total of 2 processors activated"),
        "second CPU not brought up\n{t}"
    );
    // The memory size: 256 MiB less what firmware areas and the kernel reserve early.
    let kib = reported_memory_kib(&serial).unwrap_or_else(|| panic!("no memory line\n{t}"));
    assert!(
        (240 * 1024..=256 * 1024).contains(&kib),
        "guest sees {kib} KiB\n{t}"
    );
    // Kernel initialisation finished and init was started.
    assert!(
        serial.contains("Run /init as init process"),
        "init not reached\n{t}"
    );
    // Here init cannot make system calls, so it dies and the kernel panics: with panic=-1 that
    // is a reboot, and --no-reboot turns it into a clean exit. On real hardware init powers the
    // VM off instead. Either way: exit status 0.
    assert_eq!(status.unwrap().code(), Some(0), "{t}");
    let log = vm.log.text();
    assert!(
        log.contains("VM rebooted") || log.contains("VM powered off"),
        "{t}"
    );
    assert!(log.contains("cove: stats: boots=1"), "{t}");
}

/// SysRq over the serial line (Ctrl-A B, then a key): `b` reboots, and the VM restarts by
/// itself; `o` powers off, and cove exits 0.
#[test]
fn reboot_restarts_and_poweroff_exits_zero() {
    if !kvm_available() {
        return;
    }
    let kernel = test_kernel();
    // COVE_INIT=spin keeps init alive without system calls, so the console stays open.
    let mut vm = run_test_kernel(
        &kernel,
        "console=ttyS0 sysrq_always_enabled COVE_INIT=spin",
        &["--memory", "128M", "--stats"],
    );
    let init = "Run /init as init process";
    assert!(
        vm.serial.wait_for(init, BOOT),
        "first boot did not reach init\n{}",
        vm.transcript()
    );
    // Give init a moment to settle; the console is open from before init starts.
    std::thread::sleep(Duration::from_secs(2));
    vm.send(b"\x01b");
    vm.send(b"b");
    assert!(
        vm.serial
            .wait_for("sysrq: Resetting", Duration::from_secs(120)),
        "{}",
        vm.transcript()
    );
    assert!(
        vm.serial.wait_for_count("Linux version", 2, BOOT),
        "no second boot\n{}",
        vm.transcript()
    );
    assert!(
        vm.serial.wait_for_count(init, 2, BOOT),
        "second boot did not reach init\n{}",
        vm.transcript()
    );
    std::thread::sleep(Duration::from_secs(2));
    vm.send(b"\x01b");
    vm.send(b"o");
    let status = vm.wait(Duration::from_secs(300));
    let t = vm.transcript();
    assert!(vm.serial.text().contains("sysrq: Power Off"), "{t}");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{t}");
    let log = vm.log.text();
    assert!(log.contains("VM powered off"), "{t}");
    assert!(log.contains("boots=2"), "{t}");
}

/// SIGTERM stops a running VM cleanly: exit status 0, the log says so.
#[test]
fn sigterm_stops_the_vm() {
    if !kvm_available() {
        return;
    }
    let kernel = test_kernel();
    let mut vm = CoveProcess::spawn(&[
        "run",
        "--kernel",
        kernel_image(&kernel).to_str().unwrap(),
        "--append",
        "console=ttyS0",
        "--memory",
        "64M",
    ]);
    assert!(
        vm.serial.wait_for("Linux version", BOOT),
        "{}",
        vm.transcript()
    );
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(vm.pid() as i32, libc::SIGTERM) };
    let status = vm.wait(Duration::from_secs(60));
    let t = vm.transcript();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{t}");
    assert!(vm.log.text().contains("VM stopped"), "{t}");
}

/// An instruction KVM cannot emulate and Cove cannot recover stops the VM with a report naming
/// RIP, the bytes and the decoded instruction. On nested KVM the stock Debian bzImage's zstd
/// decompressor meets `shlx` within a second; on hardware virtualization the same kernel simply
/// boots.
#[test]
fn unrecoverable_emulation_failure_stops_with_a_report() {
    if !kvm_available() {
        return;
    }
    let dir = cove_tests::stock_kernel_dir();
    let mut vm = CoveProcess::spawn(&[
        "run",
        "--kernel",
        dir.join("vmlinuz").to_str().unwrap(),
        "--append",
        "console=ttyS0",
        "--memory",
        "512M",
    ]);
    if cove_tests::is_pvm_host() {
        let status = vm.wait(Duration::from_secs(300));
        let t = vm.transcript();
        assert_eq!(status.and_then(|s| s.code()), Some(1), "{t}");
        let log = vm.log.text();
        let report = log
            .lines()
            .find(|l| l.starts_with("cove: VM stopped:"))
            .unwrap_or_else(|| panic!("no failure report\n{t}"));
        assert!(report.contains("emulation failure at RIP 0x"), "{report}");
        assert!(report.contains("bytes [c4 "), "{report}");
        assert!(report.contains("instruction `shlx"), "{report}");
        assert!(
            report.contains("ELF vmlinux"),
            "the hint is missing: {report}"
        );
        assert!(!log.contains("panicked"), "{t}");
    } else {
        assert!(
            vm.serial.wait_for("Linux version", BOOT),
            "{}",
            vm.transcript()
        );
        vm.send(b"\x01x");
        let status = vm.wait(Duration::from_secs(60));
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "{}",
            vm.transcript()
        );
    }
}

/// The bzImage path: the 64-bit boot protocol entry, the kernel's own decompressor (gzip in the
/// test kernel, which nested KVM can emulate), then the kernel proper with our command line.
#[test]
fn boots_a_bzimage_through_the_64_bit_protocol() {
    if !kvm_available() {
        return;
    }
    let kernel = test_kernel();
    let mut vm = CoveProcess::spawn(&[
        "run",
        "--kernel",
        kernel.bzimage.to_str().unwrap(),
        "--append",
        "console=ttyS0 cove_bzimage_marker=1",
        "--memory",
        "128M",
    ]);
    assert!(
        vm.serial.wait_for("cove_bzimage_marker=1", BOOT),
        "{}",
        vm.transcript()
    );
    assert!(
        vm.serial.text().contains("Linux version"),
        "{}",
        vm.transcript()
    );
    vm.send(b"\x01x");
    let status = vm.wait(Duration::from_secs(60));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{}",
        vm.transcript()
    );
    assert!(vm.log.text().contains("VM stopped"), "{}", vm.transcript());
}
