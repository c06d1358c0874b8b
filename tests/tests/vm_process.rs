//! The app's VM processes under Xvfb: a VM started in the app runs in a `cove vm-host` process;
//! when the app is killed, a new app attaches to the VM again within the grace period, and when
//! that one is killed too and none comes back, the VM process presses the guest's power button,
//! turns it off when it does not shut down, and exits: no process is left.

use cove_tests::x11::Xvfb;
use cove_tests::{cove_binary, create_test_kernel_vm, kvm_available, CoveProcess, ScratchDir};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The pid of the VM process holding the run lock of the VM in `dir`, once there is one.
fn vm_process(dir: &Path, timeout: Duration) -> Option<u32> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(dir.join(".cove-run.lock")).unwrap_or_default();
        if let Ok(holder) = serde_json::from_str::<serde_json::Value>(&text) {
            if holder["program"] == "the Cove app (VM process)" && holder["link"].is_string() {
                return holder["pid"].as_u64().map(|p| p as u32);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Waits until the VM process's log contains `needle` `count` times.
fn wait_log(log: &Path, needle: &str, count: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches(needle).count() >= count {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn app(x: &Xvfb, data: &str, open: Option<&str>) -> CoveProcess {
    let mut command = Command::new(cove_binary());
    command
        .env("DISPLAY", &x.display)
        .env("COVE_ORPHAN_GRACE", "10")
        .env("COVE_ORPHAN_SHUTDOWN", "4");
    let mut args = vec!["--data-dir", data];
    if let Some(name) = open {
        args.extend(["--open", name]);
    }
    CoveProcess::spawn_command(command, &args)
}

fn kill9(pid: u32) {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[test]
fn a_vm_outlives_its_app_only_until_an_app_comes_back_or_the_grace_ends() {
    if !kvm_available() {
        return;
    }
    let scratch = ScratchDir::new("vm-process");
    let data = scratch.path("vms").display().to_string();
    create_test_kernel_vm(
        &data,
        "guest",
        "console=ttyS0 COVE_INIT=spin",
        &["--display"],
    );
    let dir = scratch.path("vms").join("guest");
    let log = dir.join(".cove-vm.log");
    let x = Xvfb::start();

    let mut first = app(&x, &data, Some("guest"));
    let pid = vm_process(&dir, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no VM process\n{}", first.transcript()));
    assert_ne!(pid, first.pid(), "the VM runs in a process of its own");
    assert!(
        wait_log(&log, "the app attached", 1, Duration::from_secs(60)),
        "the app never attached\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        wait_log(
            &log,
            "sandbox: seccomp filters per thread kind are on",
            1,
            Duration::ZERO
        ),
        "the VM process is sandboxed"
    );

    // The app dies; a new one finds the VM again through its link socket.
    kill9(first.pid());
    first.wait(Duration::from_secs(10));
    assert!(wait_log(
        &log,
        "the app detached",
        1,
        Duration::from_secs(10)
    ));
    let mut second = app(&x, &data, None);
    assert!(
        wait_log(&log, "the app attached", 2, Duration::from_secs(9)),
        "the second app did not attach within the grace period\n{}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default(),
        second.transcript()
    );
    assert!(!gone(pid), "the VM kept running across the app's restart");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains("power button"), "{text}");

    // That app dies too, and none comes back: power button, then off, then the process ends.
    kill9(second.pid());
    second.wait(Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !gone(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        gone(pid),
        "the orphaned VM process is still running\n{text}"
    );
    assert!(
        text.contains("no app attached for 10 s: pressing the guest's power button"),
        "{text}"
    );
    assert!(
        text.contains("turning it off") || text.contains("powered off"),
        "{text}"
    );
    // No process is left: nothing runs from this test's library any more.
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(
            !(cmdline.contains("vm-host") && cmdline.contains(&data)) || {
                let pid: u32 = entry.file_name().to_string_lossy().parse().unwrap_or(0);
                gone(pid)
            },
            "left behind: {cmdline}"
        );
    }
}
