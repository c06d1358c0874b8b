//! UI flows through egui_kittest: the wizard creates a VM from a typed kernel path, the
//! library lists it beside a broken entry, edit and delete work, and bad answers are shown.

use super::*;
use crate::test_support::TempDir;
use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use std::path::Path;

const LIMITS: HostLimits = HostLimits {
    cpus: 4,
    memory_bytes: 4 << 30,
};

fn app(dir: &Path) -> CoveApp {
    CoveApp::new(
        Library::open(Some(&dir.join("vms"))).unwrap(),
        None,
        LIMITS,
        None,
    )
}

fn harness(app: CoveApp) -> Harness<'static, CoveApp> {
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1100.0, 700.0))
        .build_ui_state(|ui, app: &mut CoveApp| app.ui(ui), app);
    harness.run();
    harness
}

/// Focuses the text field labelled `label` and types `text` into it.
fn type_into(h: &mut Harness<'static, CoveApp>, label: &str, text: &str) {
    h.get_by_role_and_label(Role::TextInput, label).focus();
    h.run();
    h.get_by_role_and_label(Role::TextInput, label)
        .type_text(text);
    h.run();
}

#[test]
fn wizard_creates_a_vm_from_a_kernel_path_then_edit_and_delete() {
    let tmp = TempDir::new("wizard");
    let kernel = tmp.0.join("vmlinux");
    std::fs::write(&kernel, b"kernel").unwrap();
    let mut h = harness(app(&tmp.0));
    h.get_by_label("New VM").click();
    h.run();
    // Next without a kernel: the error shows inline and the step stays.
    h.get_by_label("Next").click();
    h.run();
    h.get_by_label("Choose the kernel.");
    type_into(&mut h, "Kernel", &kernel.display().to_string());
    h.get_by_label("Next").click();
    h.run();
    // Resources: an empty name is refused.
    assert_eq!(
        h.state().wizard.as_ref().map(|w| w.step),
        Some(wizard::Step::Resources)
    );
    h.get_by_label("Next").click();
    h.run();
    h.get_by_label("Give the VM a name.");
    type_into(&mut h, "Name", "Test VM");
    h.get_by_label("Next").click();
    h.run();
    h.get_by_label("Create").click();
    h.run();
    assert!(h
        .state()
        .message_text()
        .unwrap_or("")
        .contains("created Test VM"));
    h.get_by_label("Test VM");
    // The folder and its vm.toml exist.
    assert!(tmp.0.join("vms/Test-VM/vm.toml").exists());

    // Edit: saving an unchanged VM keeps it valid.
    h.get_by_label("Edit").click();
    h.run();
    h.get_by_label("Save").click();
    h.run();
    assert!(h
        .state()
        .message_text()
        .unwrap_or("")
        .contains("saved Test VM"));

    // Delete, with confirmation.
    h.get_by_label("Delete").click();
    h.run();
    h.get_by_label("Delete Test VM?");
    h.get_by_label("Delete Test VM").click();
    h.run();
    assert!(!tmp.0.join("vms/Test-VM").exists());
    // Undo brings it back, whole.
    h.get_by_label("Undo").click();
    h.run();
    assert!(tmp.0.join("vms/Test-VM/vm.toml").exists());
    h.get_by_label("Test VM");
}

#[test]
fn broken_entries_show_beside_good_ones() {
    let tmp = TempDir::new("broken");
    let library = Library::open(Some(&tmp.0.join("vms"))).unwrap();
    let mut config = emu::config::VmConfig::from_toml("[boot]\nkind = \"firmware\"\n").unwrap();
    config.name = "good".into();
    library.create(config, None).unwrap();
    std::fs::create_dir_all(tmp.0.join("vms/bad")).unwrap();
    std::fs::write(tmp.0.join("vms/bad/vm.toml"), "cpus = \"many\"").unwrap();
    let h = harness(app(&tmp.0));
    h.get_by_label("good");
    h.get_by_label("broken");
    h.get_by_label("bad");
}

#[test]
fn duplicate_names_and_host_limits_are_refused() {
    let tmp = TempDir::new("limits");
    let kernel = tmp.0.join("vmlinux");
    std::fs::write(&kernel, b"kernel").unwrap();
    let mut app = app(&tmp.0);
    let mut wizard = Wizard::new(vec!["taken".into()], LIMITS, tmp.0.clone());
    wizard.kernel = kernel.display().to_string();
    wizard.name = "taken".into();
    wizard.cpus = 9;
    wizard.memory_mib = 999_999;
    let errors = wizard.resource_errors().join("\n");
    assert!(errors.contains("already exists"), "{errors}");
    assert!(errors.contains("choose 1 to 4"), "{errors}");
    assert!(errors.contains("4 GiB"), "{errors}");
    wizard.source = wizard::Source::Iso;
    wizard.iso = "/no/such.iso".into();
    assert!(wizard.source_errors()[0].contains("Cannot read the installer ISO"));
    app.refresh();
    assert_eq!(app.running_count(), 0);
}

/// Rendered snapshots (egui_kittest with wgpu; the images live in app/tests/snapshots and are
/// compared within kittest's default tolerance). `UPDATE_SNAPSHOTS=1` rewrites them.
#[test]
fn snapshots_of_the_library_and_the_wizard() {
    let tmp = TempDir::new("snapshots");
    let library = Library::open(Some(&tmp.0.join("vms"))).unwrap();
    let mut config =
        emu::config::VmConfig::from_toml("[boot]\nkind = \"kernel\"\nkernel = \"/boot/vmlinux\"\n")
            .unwrap();
    config.name = "Debian test".into();
    library.create(config, None).unwrap();
    std::fs::create_dir_all(tmp.0.join("vms/bad")).unwrap();
    std::fs::write(tmp.0.join("vms/bad/vm.toml"), "cpus = \"many\"").unwrap();
    let app = CoveApp::new(library, None, LIMITS, None);
    let mut h = Harness::builder()
        .with_size(egui::vec2(900.0, 360.0))
        .wgpu()
        .build_ui_state(|ui, app: &mut CoveApp| app.ui(ui), app);
    h.run();
    h.snapshot("library");
    h.get_by_label("New VM").click();
    h.run();
    h.get_by_label("Next").click();
    h.run();
    h.snapshot("wizard_source_with_error");
}

fn firmware_vm(library: &Library, name: &str) -> VmEntry {
    let mut config = emu::config::VmConfig::from_toml("[boot]\nkind = \"firmware\"\n").unwrap();
    config.name = name.into();
    library.create(config, None).unwrap()
}

#[test]
fn the_delete_dialog_is_modal_and_keeps_its_target() {
    let tmp = TempDir::new("modal");
    let library = Library::open(Some(&tmp.0.join("vms"))).unwrap();
    firmware_vm(&library, "alpha");
    firmware_vm(&library, "beta");
    let mut h = harness(app(&tmp.0));
    h.get_all_by_label("Delete").next().unwrap().click();
    h.run();
    h.get_by_label("Delete alpha?");
    // The other row's Delete is behind the modal: a click there lands on the backdrop, which
    // at most dismisses the dialog; it never turns it on beta.
    h.get_all_by_label("Delete").last().unwrap().click();
    h.run();
    assert_ne!(h.state().confirm_delete.as_deref(), Some("beta"));
    assert!(h.query_by_label("Delete beta?").is_none());
    if h.state().confirm_delete.is_none() {
        h.get_all_by_label("Delete").next().unwrap().click();
        h.run();
    }
    h.get_by_label("Delete alpha?");
    h.get_by_label("Delete alpha").click();
    h.run();
    assert!(!tmp.0.join("vms/alpha").exists());
    assert!(tmp.0.join("vms/beta").exists());
}

#[test]
fn concurrent_copies_each_end_in_their_vm_and_edits_survive() {
    let tmp = TempDir::new("copies");
    let library = Library::open(Some(&tmp.0.join("vms"))).unwrap();
    let source = tmp.0.join("source.img");
    let mut data = vec![0u8; 8 << 20];
    data[5 << 20] = 7;
    std::fs::write(&source, &data).unwrap();
    let mut app = app(&tmp.0);
    let one = firmware_vm(&library, "one");
    let two = firmware_vm(&library, "two");
    for vm in [&one, &two] {
        let lock = library
            .lock(vm, "test", crate::library::run_lock::Activity::CopyingDisk)
            .unwrap();
        app.copies.push(DiskCopy::start(source.clone(), vm, lock));
    }
    // While the copies run, VM one's memory is changed (the app locks its own dialog, but the
    // file can change under it all the same).
    library
        .modify(&one.dir, |c| {
            c.memory = emu::config::MemorySize::from_mib(2048)
        })
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !app.copies.is_empty() && Instant::now() < deadline {
        app.poll_copy();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(app.copies.is_empty(), "copies did not finish");
    for vm in [&one, &two] {
        let loaded = library.find(&vm.config.name).unwrap();
        assert_eq!(loaded.config.disks.len(), 1, "{}", vm.config.name);
        assert_eq!(std::fs::read(&loaded.config.disks[0].path).unwrap(), data);
    }
    assert_eq!(
        library.find("one").unwrap().config.memory,
        emu::config::MemorySize::from_mib(2048)
    );
}

#[test]
fn a_cancelled_copy_leaves_no_partial_file() {
    let tmp = TempDir::new("cancel");
    let library = Library::open(Some(&tmp.0.join("vms"))).unwrap();
    let source = tmp.0.join("big.img");
    std::fs::write(&source, vec![1u8; 64 << 20]).unwrap();
    let vm = firmware_vm(&library, "cancelled");
    let lock = library
        .lock(&vm, "test", crate::library::run_lock::Activity::CopyingDisk)
        .unwrap();
    let copy = DiskCopy::start(source, &vm, lock);
    copy.cancel();
    let deadline = Instant::now() + Duration::from_secs(30);
    let result = loop {
        if let Some(r) = copy.poll() {
            break r;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(result.is_err());
    let left: Vec<_> = std::fs::read_dir(&vm.dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains("disk0"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Read system calls this thread has made (`syscr` in /proc/thread-self/io): the kernel's own
/// count, so nothing the app does can hide from it.
fn thread_reads() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("syscr: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn drawing_the_library_reads_no_files() {
    let tmp = TempDir::new("no-reads");
    let library = Library::open(Some(&tmp.0.join("vms"))).unwrap();
    let iso = tmp.0.join("installer.iso");
    std::fs::write(&iso, vec![0u8; 40 << 10]).unwrap();
    for i in 0..20 {
        let mut config = emu::config::VmConfig::from_toml("[boot]\nkind = \"firmware\"\n").unwrap();
        config.name = format!("vm{i}");
        if i < 5 {
            config.boot = emu::config::BootSource::Firmware {
                cdrom: Some(iso.clone()),
            };
        }
        library.create(config, None).unwrap();
    }
    let mut h = harness(app(&tmp.0));
    h.run();
    // Reading the io file costs reads of its own: measure that first.
    let a = thread_reads();
    let b = thread_reads();
    let overhead = b - a;
    for _ in 0..50 {
        h.step();
    }
    let c = thread_reads();
    let spent = (c - b).saturating_sub(overhead);
    // Reading the io file itself can take one more read call when its text grows a digit; a
    // library that read anything per frame would make hundreds here (25 ISOs and vm.toml
    // files a frame).
    assert!(spent <= 1, "50 frames made {spent} read calls");
    h.get_by_label("vm19");
}
