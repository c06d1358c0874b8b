//! The VM library from the command line: create, list (with a broken entry beside good ones),
//! edit, start (a real guest under KVM, stopped through QMP) and delete.

use cove_tests::{
    cove_binary, create_test_kernel_vm, kvm_available, run_cove, CoveProcess, ScratchDir,
};
use std::time::{Duration, Instant};

fn cove(data: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["--data-dir", data];
    all.extend_from_slice(args);
    run_cove(&all, Duration::from_secs(60))
}

#[test]
fn create_list_edit_delete_with_a_broken_entry() {
    let scratch = ScratchDir::new("library");
    let data = scratch.path("vms").display().to_string();
    let kernel = scratch.path("vmlinux");
    std::fs::write(&kernel, b"not really a kernel").unwrap();
    let kernel = kernel.display().to_string();

    let (code, out, err) = cove(
        &data,
        &[
            "create",
            "--name",
            "Web Server",
            "--kernel",
            &kernel,
            "--disk-size",
            "32M",
            "--cpus",
            "2",
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let disk = scratch.path("vms/Web-Server/disk0.img");
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 32 << 20);
    let (code, _, err) = cove(
        &data,
        &["create", "--name", "Web Server", "--kernel", &kernel],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = cove(
        &data,
        &["create", "--name", "x", "--kernel", "/no/such/kernel"],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("not a readable file"), "{err}");
    let (code, _, err) = cove(&data, &["create", "--name", "a/b", "--kernel", &kernel]);
    assert_eq!(code, Some(2));
    assert!(err.contains("invalid VM name"), "{err}");

    // Limits: what this host cannot give is refused in plain words.
    for (args, expect) in [
        (vec!["--cpus", "0"], "at least 1 CPU"),
        (vec!["--cpus", "200"], "200 CPUs is more than this host has"),
        (
            vec!["--memory", "10T"],
            "10 TiB of memory is more than this host can give",
        ),
        (
            vec!["--disk-size", "9000000T"],
            "larger than the file system",
        ),
        (
            vec!["--disk-size", "100000T"],
            "larger than the file system",
        ),
    ] {
        let mut all = vec!["create", "--name", "limits", "--kernel", &kernel];
        all.extend(args.iter());
        let (code, _, err) = cove(&data, &all);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert!(!err.contains("os error"), "{err}");
    }
    let (code, _, err) = cove(&data, &["edit", "Web Server", "--cpus", "200"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("more than this host has"), "{err}");
    // A name that maps to an existing folder gets its own folder.
    let (code, out, err) = cove(
        &data,
        &["create", "--name", "Web-Server", "--kernel", &kernel],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("Web-Server-2"), "{out}");
    let (code, _, _) = cove(&data, &["delete", "Web-Server", "--yes"]);
    assert_eq!(code, Some(0));

    // A broken folder next to the good one.
    std::fs::create_dir_all(scratch.path("vms/broken")).unwrap();
    std::fs::write(scratch.path("vms/broken/vm.toml"), "memory = [").unwrap();
    let (code, out, _) = cove(&data, &["list"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("Web Server") && out.contains("   2 "), "{out}");
    assert!(
        out.contains("BROKEN") && out.contains("vms/broken"),
        "{out}"
    );

    let (code, out, err) = cove(
        &data,
        &["edit", "Web Server", "--rename", "web", "--memory", "1G"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let (_, out, _) = cove(&data, &["list"]);
    assert!(out.contains("web ") && out.contains("1G"), "{out}");

    let (code, out, err) = cove(&data, &["delete", "web", "--yes"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!disk.exists());
    let (code, _, err) = cove(&data, &["delete", "web", "--yes"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no VM named"), "{err}");
}

#[test]
fn start_boots_a_library_vm() {
    if !kvm_available() {
        return;
    }
    let scratch = ScratchDir::new("library-start");
    let data = scratch.path("vms").display().to_string();
    create_test_kernel_vm(&data, "guest", "console=ttyS0 COVE_INIT=spin", &[]);
    let socket = scratch.path("qmp.sock");
    let qmp = format!("unix:{}", socket.display());
    let mut vm = CoveProcess::spawn(&["--data-dir", &data, "start", "guest", "--qmp", &qmp]);
    assert!(
        vm.serial
            .wait_for("Linux version", Duration::from_secs(120)),
        "{}",
        vm.transcript()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // While it runs, other Cove processes see it and cannot delete it, change it, or start it
    // twice; its folder and disk stay whole.
    let (code, out, _) = cove(&data, &["list"]);
    assert_eq!(code, Some(0));
    assert!(
        out.lines()
            .any(|l| l.starts_with("guest ") && l.contains("running")),
        "{out}"
    );
    let (code, _, err) = cove(&data, &["delete", "guest", "--yes"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("guest is running in cove start (pid "),
        "{err}"
    );
    let (code, _, err) = cove(&data, &["edit", "guest", "--memory", "1G"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("running in cove start"), "{err}");
    let (code, _, err) = cove(&data, &["start", "guest"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("running in cove start"), "{err}");
    assert!(scratch.path("vms/guest/vm.toml").exists());
    let (_, out, _) = cove(&data, &["list"]);
    assert!(out.contains("256M"), "the edit was refused: {out}");
    // Its control socket, found through the run lock, answers QMP.
    let control = scratch.path("vms/guest/control.sock");
    let status = std::process::Command::new(cove_binary())
        .args(["qmp", &control.display().to_string(), "query-status"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("running"),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let quit = std::process::Command::new(cove_binary())
        .args(["qmp", &socket.display().to_string(), "quit"])
        .output()
        .unwrap();
    assert!(
        quit.status.success(),
        "{}",
        String::from_utf8_lossy(&quit.stderr)
    );
    assert_eq!(
        vm.wait(Duration::from_secs(60)).and_then(|s| s.code()),
        Some(0),
        "{}",
        vm.transcript()
    );
    // Stopped, it can be deleted.
    let (code, out, _) = cove(&data, &["list"]);
    assert!(out.contains("stopped"), "{out}");
    let (code2, out2, err2) = cove(&data, &["delete", "guest", "--yes"]);
    assert_eq!(code2, Some(0), "{out2}{err2}");
    assert!(!scratch.path("vms/guest").exists());
    assert_eq!(code, Some(0));
    // Unknown VMs are a clear error.
    let (code, _, err) = cove(&data, &["start", "nobody"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no VM named \"nobody\""), "{err}");
}
