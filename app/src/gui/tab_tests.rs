//! UI tests of the VM tabs through egui_kittest, on real VMs: a tiny guest kernel made here
//! (it prints "K" on the serial port, then halts) runs under KVM for the reset and pause tests;
//! a firmware-boot VM, which Cove cannot boot, is a real failed start. A test stands in for
//! the guest's GPU driver only to put a frame on the screen.

use super::running::{PAUSED, RESET_MARK, WAITING};
use super::*;
use crate::test_support::TempDir;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;

pub(super) const LIMITS: HostLimits = HostLimits {
    cpus: 4,
    memory_bytes: 4 << 30,
};

/// An ELF64 kernel loaded at 16 MiB whose code writes "K\n" to COM1 and halts forever.
pub(super) fn tiny_kernel() -> Vec<u8> {
    tiny_kernel_with(&[
        0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
        0xb0, b'K', 0xee, // mov al, 'K'; out dx, al
        0xb0, b'\n', 0xee, // mov al, '\n'; out dx, al
        0xf4, 0xeb, 0xfd, // hlt; jmp back to the hlt
    ])
}

/// A tiny kernel that writes "K" to COM1 for ever, a spin of 2^20 iterations apart (a serial
/// log that keeps growing).
pub(super) fn chatty_kernel() -> Vec<u8> {
    tiny_kernel_with(&[
        0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
        0xb0, b'K', 0xee, // top: mov al, 'K'; out dx, al
        0xb9, 0x00, 0x00, 0x10, 0x00, // mov ecx, 0x100000
        0xff, 0xc9, 0x75, 0xfc, // spin: dec ecx; jnz spin
        0xeb, 0xf2, // jmp top
    ])
}

/// An ELF64 kernel loaded at 16 MiB running `code`.
fn tiny_kernel_with(code: &[u8]) -> Vec<u8> {
    const BASE: u64 = 0x100_0000;
    const CODE: usize = 0x200;
    let mut elf = vec![0u8; 0x400];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2; // ELFCLASS64
    elf[5] = 1; // little endian
    elf[6] = 1; // version
    elf[16..18].copy_from_slice(&2u16.to_le_bytes()); // executable
    elf[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    elf[20..24].copy_from_slice(&1u32.to_le_bytes());
    elf[24..32].copy_from_slice(&(BASE + CODE as u64).to_le_bytes()); // entry
    elf[32..40].copy_from_slice(&64u64.to_le_bytes()); // program headers at 64
    elf[52..54].copy_from_slice(&64u16.to_le_bytes());
    elf[54..56].copy_from_slice(&56u16.to_le_bytes());
    elf[56..58].copy_from_slice(&1u16.to_le_bytes());
    let mut ph = Vec::new();
    ph.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    ph.extend_from_slice(&5u32.to_le_bytes()); // read, execute
    ph.extend_from_slice(&0u64.to_le_bytes()); // from file offset 0
    ph.extend_from_slice(&BASE.to_le_bytes()); // virtual
    ph.extend_from_slice(&BASE.to_le_bytes()); // physical
    ph.extend_from_slice(&(elf.len() as u64).to_le_bytes());
    ph.extend_from_slice(&(elf.len() as u64).to_le_bytes());
    ph.extend_from_slice(&0x1000u64.to_le_bytes());
    elf[64..64 + ph.len()].copy_from_slice(&ph);
    elf[CODE..CODE + code.len()].copy_from_slice(code);
    elf
}

pub(super) fn kvm_usable() -> bool {
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !ok {
        eprintln!("skipped: /dev/kvm cannot be opened");
    }
    ok
}

pub(super) fn library(tmp: &TempDir) -> Library {
    Library::open(Some(&tmp.0.join("vms"))).unwrap()
}

/// A VM with a display that boots the tiny kernel.
pub(super) fn kernel_vm(tmp: &TempDir, library: &Library, name: &str) -> VmEntry {
    kernel_vm_with(tmp, library, name, &tiny_kernel())
}

/// A VM with a display that boots `kernel`.
pub(super) fn kernel_vm_with(
    tmp: &TempDir,
    library: &Library,
    name: &str,
    kernel_image: &[u8],
) -> VmEntry {
    let kernel = tmp.0.join(format!("{name}-vmlinux"));
    std::fs::write(&kernel, kernel_image).unwrap();
    let toml = format!(
        "memory = \"64M\"\n[boot]\nkind = \"kernel\"\nkernel = \"{}\"\n[display]\nenabled = true\n",
        kernel.display()
    );
    let mut config = emu::config::VmConfig::from_toml(&toml).unwrap();
    config.name = name.into();
    library.create(config, None).unwrap()
}

fn firmware_vm(library: &Library, name: &str, cpus: u8) -> VmEntry {
    let mut config = emu::config::VmConfig::from_toml("[boot]\nkind = \"firmware\"\n").unwrap();
    config.name = name.into();
    config.cpus = cpus;
    library.create(config, None).unwrap()
}

pub(super) fn harness(tmp: &TempDir) -> Harness<'static, CoveApp> {
    let app = CoveApp::new(library(tmp), None, LIMITS, None);
    let mut h = Harness::builder()
        .with_size(egui::vec2(1100.0, 700.0))
        .build_ui_state(|ui, app: &mut CoveApp| app.ui(ui), app);
    h.run_steps(2);
    h
}

/// Steps frames until `done` holds (at most a minute).
pub(super) fn wait_for(
    h: &mut Harness<'static, CoveApp>,
    what: &str,
    mut done: impl FnMut(&mut Harness<'static, CoveApp>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        h.step();
        if done(h) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(super) fn serial(h: &mut Harness<'static, CoveApp>) -> String {
    h.state_mut().running[0].serial_text()
}

/// Forces the running VM off through its tab's close button; the tab goes.
fn close_running(h: &mut Harness<'static, CoveApp>, name: &str) {
    h.get_by_label_contains(&format!("Close the tab of {name}"))
        .click();
    h.run_steps(2);
    h.get_by_label(&format!("{name} is running"));
    h.get_by_label("Force off and close").click();
    wait_for(h, "the tab to close", |h| h.state().running.is_empty());
}

#[test]
fn reset_clears_the_display_and_marks_the_serial_log() {
    if !kvm_usable() {
        return;
    }
    let tmp = TempDir::new("tab-reset");
    kernel_vm(&tmp, &library(&tmp), "tiny");
    let mut h = harness(&tmp);
    h.get_by_label("Start").click();
    wait_for(&mut h, "the guest's first line", |h| {
        serial(h).contains('K')
    });
    // Nothing drawn yet: the display area says it waits.
    h.run_steps(2);
    h.get_by_label(WAITING);
    assert!(h.state().running[0].draw_test_frame());
    wait_for(&mut h, "the test frame", |h| {
        h.query_by_label(WAITING).is_none()
    });
    h.get_by_label("Reset").click();
    wait_for(&mut h, "the reset mark and the waiting text", |h| {
        serial(h).contains(RESET_MARK) && h.query_by_label(WAITING).is_some()
    });
    // The library's live thumbnail has nothing from before the reset either.
    let frames = h.state().running[0].frames().cloned().unwrap();
    assert!(frames.rgba().is_none());
    wait_for(&mut h, "the second boot's line", |h| {
        serial(h).matches('K').count() >= 2
    });
    close_running(&mut h, "tiny");
}

#[test]
fn a_paused_display_is_dimmed_under_paused() {
    if !kvm_usable() {
        return;
    }
    let tmp = TempDir::new("tab-pause");
    kernel_vm(&tmp, &library(&tmp), "sleepy");
    let mut h = harness(&tmp);
    h.get_by_label("Start").click();
    wait_for(&mut h, "the guest's first line", |h| {
        serial(h).contains('K')
    });
    assert!(h.state().running[0].draw_test_frame());
    wait_for(&mut h, "the test frame", |h| {
        h.state().running[0]
            .frames()
            .is_some_and(|f| f.size().is_some())
    });
    h.run_steps(2);
    assert!(h.query_by_label(PAUSED).is_none(), "running: no overlay");
    h.get_by_label("Pause").click();
    wait_for(&mut h, "the Paused overlay", |h| {
        h.query_by_label(PAUSED).is_some()
    });
    // The toolbar of the frame that paused was drawn before the click.
    h.run_steps(1);
    h.get_by_label("Resume").click();
    wait_for(&mut h, "the overlay to go", |h| {
        h.query_by_label(PAUSED).is_none()
    });
    close_running(&mut h, "sleepy");
}

#[test]
fn failed_starts_show_a_banner_and_failed_in_the_library() {
    let tmp = TempDir::new("tab-failed");
    let library = library(&tmp);
    // Cove cannot boot firmware: the VM's thread fails to build the machine.
    firmware_vm(&library, "fw", 1);
    // More CPUs than the host has: refused before the VM exists.
    firmware_vm(&library, "huge", 9);
    let mut h = harness(&tmp);
    h.get_all_by_label("Start").next().unwrap().click();
    wait_for(&mut h, "the failure banner", |h| {
        h.query_by_label("fw failed").is_some()
    });
    h.get_by_label_contains("could not start");
    h.get_by_label("Library").click();
    h.run_steps(2);
    h.get_by_label("failed");
    assert!(h.query_by_label("stopped").is_some(), "huge has not run");
    h.get_all_by_label("Start").last().unwrap().click();
    h.run_steps(2);
    h.get_by_label("huge failed");
    h.get_by_label_contains("choose 1 to 4");
    h.get_by_label("Library").click();
    h.run_steps(2);
    assert_eq!(h.get_all_by_label("failed").count(), 2);
    assert!(
        h.state().message_text().is_none(),
        "the tabs say it, not the top bar"
    );
}

#[test]
fn closed_tabs_go_and_tabs_follow_renames_and_deletes() {
    let tmp = TempDir::new("tab-close");
    let library = library(&tmp);
    let one = firmware_vm(&library, "one", 1);
    firmware_vm(&library, "two", 1);
    let mut h = harness(&tmp);
    for _ in 0..2 {
        // Each start opens a tab; the library is shown again between them.
        let start = h.get_all_by_label("Start").find(|_| true).unwrap();
        start.click();
        h.run_steps(2);
        wait_for(&mut h, "the run to end", |h| {
            h.state().running.iter().all(|r| !r.is_running())
        });
        h.get_by_label("Library").click();
        h.run_steps(2);
    }
    assert_eq!(
        h.state().running.len(),
        1,
        "starting one twice keeps one tab"
    );
    h.get_all_by_label("Start").last().unwrap().click();
    wait_for(&mut h, "two's run to end", |h| {
        h.state().running.len() == 2 && h.state().running.iter().all(|r| !r.is_running())
    });
    // The tab label and the library row: two of each name.
    h.get_by_label("Library").click();
    h.run_steps(2);
    assert_eq!(h.get_all_by_label("two").count(), 2);
    h.get_by_label_contains("Close the tab of two").click();
    h.run_steps(2);
    assert_eq!(h.get_all_by_label("two").count(), 1, "two's tab is gone");
    assert!(h.state().running.iter().all(|r| r.name != "two"));

    // Renamed on disk: the tab follows.
    library.modify(&one.dir, |c| c.name = "uno".into()).unwrap();
    h.state_mut().refresh();
    h.run_steps(2);
    assert_eq!(h.get_all_by_label("uno").count(), 2, "row and tab");
    assert!(h.query_by_label("one").is_none());

    // Deleted: the tab closes.
    // Rows are sorted by name: "two", then "uno".
    h.get_all_by_label("Delete").last().unwrap().click();
    h.run();
    h.get_by_label("Delete uno").click();
    h.run_steps(2);
    assert!(h.query_by_label("uno").is_none());
    assert!(h.state().running.is_empty());
}
