//! `cove run` with bad input: each gets a one-line error naming the problem and a non-zero exit,
//! never a panic. None of these boots a guest.

use cove_tests::{kvm_available, run_cove, test_kernel, CoveProcess, ScratchDir};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// The error line cove printed, asserting there is exactly one and no panic.
fn one_error_line(code: Option<i32>, log: &str) -> String {
    assert_ne!(code, Some(0), "cove must fail; log:\n{log}");
    assert!(code.is_some(), "cove was killed by a signal; log:\n{log}");
    assert!(!log.contains("panicked"), "cove panicked:\n{log}");
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("cove: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "expected one error line, got:\n{log}");
    errors[0].to_string()
}

#[test]
fn missing_kernel_file() {
    let (code, _, log) = run_cove(&["run", "--kernel", "/nonexistent/vmlinuz"], T);
    let line = one_error_line(code, &log);
    assert!(line.contains("/nonexistent/vmlinuz"), "{line}");
    assert!(line.contains("No such file"), "{line}");
}

#[test]
fn file_that_is_no_kernel() {
    let dir = ScratchDir::new("notkernel");
    let path = dir.path("notes.txt");
    std::fs::write(
        &path,
        "hello, I am a text file and not a kernel\n".repeat(100),
    )
    .unwrap();
    let (code, _, log) = run_cove(&["run", "--kernel", path.to_str().unwrap()], T);
    let line = one_error_line(code, &log);
    assert!(line.contains("is not a Linux kernel"), "{line}");
}

#[test]
fn zero_memory() {
    let (code, _, log) = run_cove(&["run", "--kernel", "/bin/true", "--memory", "0"], T);
    let line = one_error_line(code, &log);
    assert!(line.contains("too small"), "{line}");
}

#[test]
fn memory_beyond_the_host() {
    let (code, _, log) = run_cove(&["run", "--kernel", "/bin/true", "--memory", "64T"], T);
    let line = one_error_line(code, &log);
    assert!(line.contains("more than the host"), "{line}");
}

#[test]
fn unparsable_memory_size() {
    let (code, _, log) = run_cove(&["run", "--kernel", "/bin/true", "--memory", "lots"], T);
    assert_eq!(code, Some(2), "clap usage errors exit 2:\n{log}");
    assert!(log.contains("invalid size"), "{log}");
}

#[test]
fn zero_cpus() {
    let (code, _, log) = run_cove(&["run", "--kernel", "/bin/true", "--cpus", "0"], T);
    let line = one_error_line(code, &log);
    assert!(line.contains("CPU count"), "{line}");
}

#[test]
fn initrd_that_does_not_fit() {
    if !kvm_available() {
        return;
    }
    let kernel = test_kernel();
    let dir = ScratchDir::new("bigrd");
    let initrd = dir.path("initrd.img");
    // Sparse: 100 MiB of apparent size costs no disk.
    std::fs::File::create(&initrd)
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    let (code, _, log) = run_cove(
        &[
            "run",
            "--kernel",
            kernel.vmlinux.to_str().unwrap(),
            "--initrd",
            initrd.to_str().unwrap(),
            "--memory",
            "64M",
        ],
        T,
    );
    let line = one_error_line(code, &log);
    assert!(line.contains("does not fit in guest memory"), "{line}");
}

#[test]
fn missing_initrd_file() {
    if !kvm_available() {
        return;
    }
    let kernel = test_kernel();
    let (code, _, log) = run_cove(
        &[
            "run",
            "--kernel",
            kernel.vmlinux.to_str().unwrap(),
            "--initrd",
            "/nonexistent/initrd",
        ],
        T,
    );
    let line = one_error_line(code, &log);
    assert!(line.contains("/nonexistent/initrd"), "{line}");
}

/// `/dev/kvm` hidden by an empty /dev in a private mount namespace (needs root).
#[test]
fn no_dev_kvm() {
    if !is_root() {
        eprintln!("SKIPPED no_dev_kvm: needs root for a private mount namespace");
        return;
    }
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--",
        "sh",
        "-c",
        "mount -t tmpfs none /dev && exec \"$0\" \"$@\"",
    ])
    .arg(cove_tests::cove_binary());
    let mut p = CoveProcess::spawn_command(cmd, &["run", "--kernel", "/bin/true"]);
    let status = p.wait(T).expect("cove exits");
    let line = one_error_line(status.code(), &p.log.text());
    assert!(line.contains("no /dev/kvm"), "{line}");
}

/// `/dev/kvm` that the user may not open: run cove as `nobody` (needs root to switch).
#[test]
fn no_permission_on_dev_kvm() {
    if !is_root() {
        eprintln!("SKIPPED no_permission_on_dev_kvm: needs root to run as another user");
        return;
    }
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(cove_tests::cove_binary());
    let mut p = CoveProcess::spawn_command(cmd, &["run", "--kernel", "/bin/true"]);
    let status = p.wait(T).expect("cove exits");
    let log = p.log.text();
    let world_accessible = std::fs::metadata("/dev/kvm").is_ok_and(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o006 != 0
    });
    if world_accessible {
        eprintln!("SKIPPED no_permission_on_dev_kvm: /dev/kvm is world-accessible here");
        return;
    }
    let line = one_error_line(status.code(), &log);
    assert!(line.contains("no permission to open /dev/kvm"), "{line}");
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A `--disk` value clap rejects: exit status 2 and clap's "invalid value" message carrying
/// ours. None of these gets as far as opening /dev/kvm.
fn bad_disk_value(value: &str) -> String {
    let (code, _, log) = run_cove(&["run", "--kernel", "/bin/true", "--disk", value], T);
    assert_eq!(code, Some(2), "bad --disk values are usage errors:\n{log}");
    assert!(!log.contains("panicked"), "cove panicked:\n{log}");
    assert!(log.contains("invalid value"), "{log}");
    assert!(log.contains("--disk"), "{log}");
    log
}

#[test]
fn disk_with_unknown_option() {
    let log = bad_disk_value("/tmp/disk.img,cache=none");
    assert!(log.contains("unknown disk option \"cache\""), "{log}");
}

#[test]
fn disk_with_bad_readonly_value() {
    let log = bad_disk_value("/tmp/disk.img,readonly=maybe");
    assert!(log.contains("invalid readonly value \"maybe\""), "{log}");
}

#[test]
fn disk_serial_too_long() {
    let log = bad_disk_value("/tmp/disk.img,serial=ABCDEFGHIJKLMNOPQRSTU");
    assert!(log.contains("too long: 21 bytes, at most 20"), "{log}");
}

#[test]
fn disk_with_empty_path() {
    let log = bad_disk_value(",readonly=on");
    assert!(log.contains("disk path is empty"), "{log}");
    let log = bad_disk_value("");
    assert!(log.contains("disk path is empty"), "{log}");
}

#[test]
fn disk_option_given_twice() {
    let log = bad_disk_value("/tmp/disk.img,readonly=on,readonly=off");
    assert!(log.contains("\"readonly\" is given twice"), "{log}");
}

/// The same file as two disks: a config error after parsing, still exit status 2.
#[test]
fn same_disk_file_twice() {
    let dir = ScratchDir::new("samedisk");
    let img = dir.path("disk.img");
    std::fs::write(&img, [0u8; 4096]).unwrap();
    let img = img.to_str().unwrap();
    // The same file by another name: through `..` (and read-only, which changes nothing).
    let dir_name = dir.0.file_name().unwrap().to_str().unwrap();
    let other = format!("{}/../{dir_name}/disk.img,readonly=on", dir.0.display());
    let (code, _, log) = run_cove(
        &[
            "run",
            "--kernel",
            "/bin/true",
            "--disk",
            img,
            "--disk",
            &other,
        ],
        T,
    );
    let line = one_error_line(code, &log);
    assert_eq!(code, Some(2), "{log}");
    assert!(line.contains("are the same file"), "{line}");
}

#[test]
fn too_many_disks() {
    let values: Vec<String> = (0..17).map(|i| format!("/nonexistent/d{i}.img")).collect();
    let mut args = vec!["run", "--kernel", "/bin/true"];
    for v in &values {
        args.extend(["--disk", v.as_str()]);
    }
    let (code, _, log) = run_cove(&args, T);
    let line = one_error_line(code, &log);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        line.contains("17 disks given; a VM can have at most 16"),
        "{line}"
    );
}
