//! UI tests of VMs in processes of their own (egui_kittest, real VM processes under KVM): a VM
//! process killed with SIGKILL leaves its tab showing the crash while another VM runs on and
//! the app answers; a forbidden system call in a device worker kills the VM process through
//! the sandbox, and the tab names the call.

use super::tab_tests::{
    chatty_kernel, harness, kernel_vm, kernel_vm_with, kvm_usable, library, wait_for,
};
use super::*;
use crate::test_support::TempDir;
use egui_kittest::kittest::Queryable;

fn serial_of(h: &mut egui_kittest::Harness<'static, CoveApp>, name: &str) -> String {
    let vm = h
        .state_mut()
        .running
        .iter_mut()
        .find(|r| r.name == name)
        .unwrap();
    vm.serial_text()
}

#[test]
fn a_vm_process_that_dies_takes_nothing_else_with_it() {
    if !kvm_usable() {
        return;
    }
    let tmp = TempDir::new("proc-crash");
    let library = library(&tmp);
    kernel_vm_with(&tmp, &library, "alpha", &chatty_kernel());
    kernel_vm_with(&tmp, &library, "beta", &chatty_kernel());
    let mut h = harness(&tmp);
    // Rows are sorted by name: alpha, then beta.
    h.get_all_by_label("Start").next().unwrap().click();
    h.run_steps(2);
    h.get_by_label("Library").click();
    h.run_steps(2);
    h.get_all_by_label("Start").last().unwrap().click();
    wait_for(&mut h, "both guests' output", |h| {
        h.state().running.len() == 2
            && serial_of(h, "alpha").contains('K')
            && serial_of(h, "beta").contains('K')
    });
    let victim = h
        .state()
        .running
        .iter()
        .position(|r| r.name == "alpha")
        .unwrap();
    h.state().running[victim].kill_process();
    wait_for(&mut h, "alpha's crash", |h| {
        h.state()
            .running
            .iter()
            .any(|r| r.name == "alpha" && matches!(r.ended, Some(running::Ended::Crashed(_))))
    });
    let Some(running::Ended::Crashed(why)) = h.state().running[victim].ended.clone() else {
        unreachable!()
    };
    assert!(why.contains("signal 9 (SIGKILL)"), "{why}");
    assert!(why.contains("Last lines of its log"), "{why}");
    // beta runs on: its serial log keeps growing.
    let before = serial_of(&mut h, "beta").len();
    wait_for(&mut h, "beta's log to grow", |h| {
        serial_of(h, "beta").len() > before
    });
    assert!(h
        .state()
        .running
        .iter()
        .any(|r| r.name == "beta" && r.is_running()));
    // The app answers: alpha's tab shows the crash, the library says so.
    h.state_mut().view = View::Vm(h.state().running[victim].dir.clone());
    h.run_steps(2);
    h.get_by_label("alpha crashed");
    h.get_by_label("Library").click();
    h.run_steps(2);
    h.get_by_label("failed");
    // Start runs it again.
    h.get_all_by_label("Start").next().unwrap().click();
    wait_for(&mut h, "alpha's second run", |h| {
        h.state()
            .running
            .iter()
            .any(|r| r.name == "alpha" && r.is_running())
    });
    for vm in &mut h.state_mut().running {
        vm.force_off();
    }
    wait_for(&mut h, "both to end", |h| {
        h.state().running.iter().all(|r| !r.is_running())
    });
}

#[test]
fn a_forbidden_system_call_kills_the_vm_process_and_is_named() {
    if !kvm_usable() {
        return;
    }
    let tmp = TempDir::new("proc-seccomp");
    kernel_vm(&tmp, &library(&tmp), "jailed");
    let mut h = harness(&tmp);
    h.get_by_label("Start").click();
    wait_for(&mut h, "the guest's first line", |h| {
        serial_of(h, "jailed").contains('K')
    });
    h.state()
        .running
        .first()
        .unwrap()
        .process()
        .debug(emu::control::link::DebugAction::ForbiddenSyscall);
    wait_for(&mut h, "the crash", |h| {
        matches!(h.state().running[0].ended, Some(running::Ended::Crashed(_)))
    });
    let Some(running::Ended::Crashed(why)) = h.state().running[0].ended.clone() else {
        unreachable!()
    };
    assert!(why.contains("SIGSYS"), "{why}");
    assert!(
        why.contains("forbidden system call 59 (execve)"),
        "the log names the call: {why}"
    );
    h.run_steps(2);
    h.get_by_label("jailed crashed");
}
