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
    create_test_kernel_vm(
        &data,
        "guest",
        "console=ttyS0 COVE_INIT=spin",
        &["--disk-size", "16M"],
    );
    // The disk inside the VM's folder is stored relative to it; started from a directory that
    // holds a decoy of the same name, the VM still opens its own.
    let config = std::fs::read_to_string(scratch.path("vms/guest/vm.toml")).unwrap();
    assert!(config.contains("path = \"disk0.img\""), "{config}");
    let elsewhere = scratch.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("disk0.img"), b"decoy").unwrap();
    let socket = scratch.path("qmp.sock");
    let qmp = format!("unix:{}", socket.display());
    let mut command = std::process::Command::new(cove_binary());
    command.current_dir(&elsewhere);
    let mut vm = CoveProcess::spawn_command(
        command,
        &["--data-dir", &data, "start", "guest", "--qmp", &qmp],
    );
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
    let block = std::process::Command::new(cove_binary())
        .args(["qmp", &control.display().to_string(), "query-block"])
        .output()
        .unwrap();
    let block = String::from_utf8_lossy(&block.stdout);
    let own_disk = scratch.path("vms/guest/disk0.img").display().to_string();
    assert!(block.contains(&own_disk), "{block}");
    assert!(!block.contains("elsewhere"), "{block}");
    assert_eq!(
        std::fs::read(elsewhere.join("disk0.img")).unwrap(),
        b"decoy"
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

/// Runs `cove` to the end and returns its exit code, stdout and peak resident memory in KiB
/// (from `wait4`, so only this child counts, whatever else the test binary runs).
// The child is reaped by `wait4`, which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn cove_with_peak_memory(data: &str, args: &[&str]) -> (Option<i32>, String, i64) {
    use std::io::Read;
    let mut child = std::process::Command::new(cove_binary())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start cove");
    let mut out = String::new();
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let pid = child.id() as libc::pid_t;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut status = 0;
    // SAFETY: rusage is plain old data, filled in by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own child, not yet reaped; status and usage are valid for writes.
        let done = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if done == pid {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cove {args:?} hung on the library");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, reader.join().unwrap(), usage.ru_maxrss)
}

#[test]
fn hostile_library_entries_are_listed_as_broken_without_growing_or_hanging() {
    let scratch = ScratchDir::new("library-hostile");
    let data = scratch.path("vms");
    std::fs::create_dir_all(data.join("good")).unwrap();
    std::fs::write(
        data.join("good/vm.toml"),
        "name = \"good\"\n[boot]\nkind = \"kernel\"\nkernel = \"/boot/vmlinux\"\n",
    )
    .unwrap();
    let data_arg = data.display().to_string();
    let (code, out, baseline) = cove_with_peak_memory(&data_arg, &["list"]);
    assert_eq!(code, Some(0), "{out}");

    std::fs::create_dir_all(data.join("zero")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", data.join("zero/vm.toml")).unwrap();
    std::fs::create_dir_all(data.join("huge")).unwrap();
    let huge = std::fs::File::create(data.join("huge/vm.toml")).unwrap();
    huge.set_len(100 << 20).unwrap();
    std::fs::create_dir_all(data.join("fifo")).unwrap();
    let fifo = std::ffi::CString::new(data.join("fifo/vm.toml").display().to_string()).unwrap();
    // SAFETY: fifo is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    std::fs::create_dir_all(data.join("escape")).unwrap();
    std::fs::write(
        data.join("escape/vm.toml"),
        "name = \"evil\\u001b]0;owned\\u0007\"\n[boot]\nkind = \"kernel\"\nkernel = \"/k\"\n",
    )
    .unwrap();
    for twin in ["twin-a", "twin-b"] {
        std::fs::create_dir_all(data.join(twin)).unwrap();
        std::fs::write(
            data.join(twin).join("vm.toml"),
            "name = \"twin\"\n[boot]\nkind = \"kernel\"\nkernel = \"/k\"\n",
        )
        .unwrap();
    }

    let (code, out, peak) = cove_with_peak_memory(&data_arg, &["list"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        !out.contains('\u{1b}'),
        "an escape sequence reached the terminal: {out:?}"
    );
    for folder in ["zero", "huge", "fifo", "escape", "twin-a", "twin-b"] {
        assert!(
            out.lines()
                .any(|l| l.contains("BROKEN") && l.contains(&format!("vms/{folder}"))),
            "{folder} is not listed as broken:\n{out}"
        );
    }
    assert!(out.contains("duplicate name"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("good ")), "{out}");
    let growth_kib = peak - baseline;
    assert!(
        growth_kib < 10 * 1024,
        "listing hostile entries grew cove from {baseline} KiB to {peak} KiB"
    );
}
