//! Unit tests of the library: folders, names, create, edit, delete and restore, run locks.

use super::*;
use crate::test_support::TempDir;
use emu::config::{BootSource, MemorySize};

fn config(name: &str) -> VmConfig {
    let mut config =
        VmConfig::from_toml("[boot]\nkind = \"kernel\"\nkernel = \"/boot/vmlinux\"\n").unwrap();
    config.name = name.into();
    config.memory = MemorySize::from_mib(256);
    config
}

#[test]
fn create_list_update_delete() {
    let tmp = TempDir::new("cycle");
    let library = Library::open(Some(&tmp.0)).unwrap();
    let created = library
        .create(config("Debian Test"), Some(8 << 20))
        .unwrap();
    assert_eq!(created.dir.file_name().unwrap(), "Debian-Test");
    let disk = &created.config.disks[0].path;
    assert_eq!(std::fs::metadata(disk).unwrap().len(), 8 << 20);
    library.create(config("alpine"), None).unwrap();
    let names: Vec<String> = library
        .entries()
        .unwrap()
        .iter()
        .map(|e| match e {
            Entry::Vm(vm) => vm.config.name.clone(),
            Entry::Broken { error, .. } => panic!("{error}"),
        })
        .collect();
    assert_eq!(names, vec!["alpine", "Debian Test"]);
    assert!(matches!(
        library.create(config("alpine"), None),
        Err(LibraryError::Exists(_))
    ));
    let mut edited = library.find("alpine").unwrap();
    edited.config.cpus = 2;
    library.update(&edited).unwrap();
    assert_eq!(library.find("alpine").unwrap().config.cpus, 2);
    edited.config.name = "Debian Test".into();
    assert!(matches!(
        library.update(&edited),
        Err(LibraryError::Exists(_))
    ));
    let gone = library.delete("Debian Test", "test").unwrap();
    assert!(gone.path.exists());
    trash::purge(&gone.path).unwrap();
    assert!(matches!(
        library.find("Debian Test"),
        Err(LibraryError::NotFound(_))
    ));
}

#[test]
fn broken_entries_are_listed_beside_good_ones() {
    let tmp = TempDir::new("broken");
    let library = Library::open(Some(&tmp.0)).unwrap();
    library.create(config("good"), None).unwrap();
    let corrupt = tmp.0.join("corrupt");
    std::fs::create_dir(&corrupt).unwrap();
    std::fs::write(corrupt.join(CONFIG_FILE), "cpus = [this is not toml").unwrap();
    let empty = tmp.0.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let entries = library.entries().unwrap();
    assert_eq!(entries.len(), 3);
    let broken: Vec<&String> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Broken { error, .. } => Some(error),
            _ => None,
        })
        .collect();
    assert_eq!(broken.len(), 2);
    assert!(broken.iter().any(|e| e.contains("cannot read")));
    assert!(library.find("good").is_ok());
}

#[test]
fn names_are_checked() {
    for bad in ["", " x", "a/b", "..", "tab\there", &"n".repeat(65)] {
        assert!(check_name(bad).is_err(), "{bad:?}");
    }
    check_name("Debian 12 (test)").unwrap();
    let tmp = TempDir::new("badname");
    let library = Library::open(Some(&tmp.0)).unwrap();
    assert!(matches!(
        library.create(config("a/b"), None),
        Err(LibraryError::BadName(_))
    ));
    // An invalid config leaves no folder behind.
    let mut bad = config("bad-display");
    bad.display.enabled = true;
    bad.display.width = 1;
    assert!(library.create(bad, Some(1 << 20)).is_err());
    assert!(library.entries().unwrap().is_empty());
}

#[test]
fn boot_source_round_trips() {
    let tmp = TempDir::new("roundtrip");
    let library = Library::open(Some(&tmp.0)).unwrap();
    let mut c = config("k");
    c.boot = BootSource::Kernel {
        kernel: "/k".into(),
        initrd: Some("/i".into()),
        cmdline: "console=ttyS0".into(),
    };
    library.create(c.clone(), None).unwrap();
    assert_eq!(library.find("k").unwrap().config, c);
}

#[test]
fn hostile_entries_are_listed_as_broken() {
    let tmp = TempDir::new("hostile");
    let library = Library::open(Some(&tmp.0)).unwrap();
    library.create(config("good"), None).unwrap();
    let zero = tmp.0.join("zero");
    std::fs::create_dir(&zero).unwrap();
    std::os::unix::fs::symlink("/dev/zero", zero.join(CONFIG_FILE)).unwrap();
    let escape = tmp.0.join("escape");
    std::fs::create_dir(&escape).unwrap();
    std::fs::write(
        escape.join(CONFIG_FILE),
        "name = \"evil\\u001b]0;title\\u0007\"\n[boot]\nkind = \"firmware\"\n",
    )
    .unwrap();
    for folder in ["twin-a", "twin-b"] {
        let dir = tmp.0.join(folder);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(
            dir.join(CONFIG_FILE),
            "name = \"twin\"\n[boot]\nkind = \"firmware\"\n",
        )
        .unwrap();
    }
    let entries = library.entries().unwrap();
    let broken: Vec<String> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Broken { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(broken.len(), 4, "{broken:?}");
    assert!(broken.iter().any(|e| e.contains("symbolic link")));
    assert!(broken.iter().any(|e| e.contains("not a valid VM name")));
    assert_eq!(
        broken
            .iter()
            .filter(|e| e.contains("duplicate name"))
            .count(),
        2
    );
    assert!(matches!(
        library.find("twin"),
        Err(LibraryError::NotFound(_))
    ));
    assert!(check_name("a\u{202E}b").is_err());
}

#[test]
fn relative_paths_mean_the_vm_folder_and_names_find_free_folders() {
    let tmp = TempDir::new("relative");
    let library = Library::open(Some(&tmp.0)).unwrap();
    library.create(config("cli-vm"), None).unwrap();
    let second = library.create(config("cli vm"), None).unwrap();
    assert_eq!(second.dir.file_name().unwrap(), "cli-vm-2");
    let dir = tmp.0.join("cli-vm");
    std::fs::write(
        dir.join(CONFIG_FILE),
        "name = \"cli-vm\"\n[boot]\nkind = \"firmware\"\n[[disks]]\npath = \"data.img\"\n",
    )
    .unwrap();
    let vm = library.find("cli-vm").unwrap();
    assert_eq!(vm.config.disks[0].path, dir.join("data.img"));
    // Saving keeps it relative.
    library.update(&vm).unwrap();
    let text = std::fs::read_to_string(dir.join(CONFIG_FILE)).unwrap();
    assert!(text.contains("path = \"data.img\""), "{text}");
}

#[test]
fn a_running_vm_cannot_be_deleted_and_a_delete_can_be_undone() {
    let tmp = TempDir::new("busy");
    let library = Library::open(Some(&tmp.0)).unwrap();
    let vm = library.create(config("busy"), None).unwrap();
    let lock = library.lock(&vm, "cove start", Activity::Running).unwrap();
    let err = library.delete("busy", "test").unwrap_err().to_string();
    assert!(err.contains("running in cove start"), "{err}");
    assert!(vm.dir.exists());
    drop(lock);
    let trashed = library.delete("busy", "test").unwrap();
    assert!(!vm.dir.exists());
    library.restore(&trashed).unwrap();
    assert_eq!(library.find("busy").unwrap().config.name, "busy");
}
