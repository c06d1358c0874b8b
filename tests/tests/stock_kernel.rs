//! The stock Debian 6.12 kernel (`linux-image-6.12-amd64`) boots through kernel initialisation
//! to `Run /init`. On nested KVM without hardware virtualization that takes about 20 minutes of
//! emulated instructions, so CI does not run it; run it with
//! `cargo test -p cove-tests --test stock_kernel -- --ignored`.
//!
//! Here Cove boots the package's ELF vmlinux (extracted on the host by
//! `kernel/fetch-stock-kernel.sh`); on hosts with hardware virtualization the bzImage
//! (`vmlinuz`) boots as it is.

use cove_tests::{kvm_available, stock_kernel_dir, CoveProcess};
use std::time::Duration;

#[test]
#[ignore = "about 20 minutes on nested KVM; run with --ignored"]
fn stock_debian_kernel_reaches_init() {
    if !kvm_available() {
        return;
    }
    let dir = stock_kernel_dir();
    let kernel = dir.join(if cove_tests::is_pvm_host() {
        "vmlinux"
    } else {
        "vmlinuz"
    });
    let initrd = dir.join("initramfs.cpio");
    let mut vm = CoveProcess::spawn(&[
        "run",
        "--kernel",
        kernel.to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
        "--append",
        "console=ttyS0 panic=-1",
        "--memory",
        "512M",
        "--no-reboot",
        "--stats",
    ]);
    let reached = vm
        .serial
        .wait_for("Run /init as init process", Duration::from_secs(45 * 60));
    let t = vm.transcript();
    assert!(reached, "the stock kernel did not reach init\n{t}");
    let status = vm.wait(Duration::from_secs(600));
    let t = vm.transcript();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{t}");
    eprintln!("{}", vm.log.text());
}
