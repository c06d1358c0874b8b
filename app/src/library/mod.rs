//! The VM library on disk: one folder per VM under the data directory, holding `vm.toml` (the
//! emulator's [`VmConfig`]), the VM's disks and `thumbnail.png`. A folder whose `vm.toml` is
//! missing, unreadable or invalid is listed as broken, with the reason; it never hides the
//! others.

use emu::config::{DiskConfig, VmConfig};
use std::path::{Path, PathBuf};

/// The file in each VM folder that describes the VM.
pub const CONFIG_FILE: &str = "vm.toml";
/// The VM's last screen, shown in the library while it is stopped.
pub const THUMBNAIL_FILE: &str = "thumbnail.png";

/// Why the library could not do something.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("cannot find a data directory for this user (is HOME set?)")]
    NoDataDir,
    #[error("a VM named {0:?} already exists")]
    Exists(String),
    #[error("no VM named {0:?} in the library")]
    NotFound(String),
    #[error("invalid VM name {0:?}: use 1 to 64 characters, not only dots, without '/' or control characters")]
    BadName(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LibraryError + '_ {
    move |source| LibraryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One folder of the library.
#[derive(Debug)]
pub enum Entry {
    Vm(VmEntry),
    Broken { dir: PathBuf, error: String },
}

/// A VM whose configuration loaded.
#[derive(Debug, Clone)]
pub struct VmEntry {
    pub dir: PathBuf,
    pub config: VmConfig,
}

/// The library rooted at a data directory.
pub struct Library {
    root: PathBuf,
}

impl Library {
    /// The library in `data_dir`, or in the user's data directory (`directories`).
    pub fn open(data_dir: Option<&Path>) -> Result<Self, LibraryError> {
        let root = match data_dir {
            Some(dir) => dir.to_path_buf(),
            None => directories::ProjectDirs::from("org", "Cove", "cove")
                .ok_or(LibraryError::NoDataDir)?
                .data_dir()
                .join("vms"),
        };
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every folder, sorted by VM name (broken ones by folder name).
    pub fn entries(&self) -> Result<Vec<Entry>, LibraryError> {
        let mut entries = Vec::new();
        for item in std::fs::read_dir(&self.root).map_err(io(&self.root))? {
            let dir = match item {
                Ok(item) => item.path(),
                Err(e) => {
                    log::warn!("library: {e}");
                    continue;
                }
            };
            if !dir.is_dir() {
                continue;
            }
            entries.push(load(&dir));
        }
        entries.sort_by_key(|e| match e {
            Entry::Vm(vm) => vm.config.name.to_lowercase(),
            Entry::Broken { dir, .. } => dir.display().to_string().to_lowercase(),
        });
        Ok(entries)
    }

    /// The VM called `name`.
    pub fn find(&self, name: &str) -> Result<VmEntry, LibraryError> {
        self.entries()?
            .into_iter()
            .find_map(|e| match e {
                Entry::Vm(vm) if vm.config.name == name => Some(vm),
                _ => None,
            })
            .ok_or_else(|| LibraryError::NotFound(name.to_string()))
    }

    /// Adds a VM: a new folder with its `vm.toml` and, if `disk_size` is given, a new sparse
    /// raw disk (the VM's first disk).
    pub fn create(
        &self,
        mut config: VmConfig,
        disk_size: Option<u64>,
    ) -> Result<VmEntry, LibraryError> {
        check_name(&config.name)?;
        if self.find(&config.name).is_ok() {
            return Err(LibraryError::Exists(config.name));
        }
        let dir = self.root.join(folder_name(&config.name));
        if dir.exists() {
            return Err(LibraryError::Exists(config.name));
        }
        std::fs::create_dir(&dir).map_err(io(&dir))?;
        let result = (|| {
            if let Some(size) = disk_size {
                let disk = dir.join("disk0.img");
                let file = std::fs::File::create(&disk).map_err(io(&disk))?;
                file.set_len(size).map_err(io(&disk))?;
                config.disks.insert(0, DiskConfig::new(disk));
            }
            config.validate().map_err(LibraryError::InvalidConfig)?;
            save(&dir, &config)?;
            Ok(VmEntry {
                dir: dir.clone(),
                config,
            })
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        result
    }

    /// Replaces the configuration of the VM in `entry.dir`.
    pub fn update(&self, entry: &VmEntry) -> Result<(), LibraryError> {
        check_name(&entry.config.name)?;
        let clash = self.entries()?.into_iter().any(|e| {
            matches!(e, Entry::Vm(vm) if vm.config.name == entry.config.name && vm.dir != entry.dir)
        });
        if clash {
            return Err(LibraryError::Exists(entry.config.name.clone()));
        }
        entry
            .config
            .validate()
            .map_err(LibraryError::InvalidConfig)?;
        save(&entry.dir, &entry.config)
    }

    /// Removes the VM's folder and everything in it.
    pub fn delete(&self, name: &str) -> Result<PathBuf, LibraryError> {
        let entry = self.find(name)?;
        std::fs::remove_dir_all(&entry.dir).map_err(io(&entry.dir))?;
        Ok(entry.dir)
    }
}

fn load(dir: &Path) -> Entry {
    let path = dir.join(CONFIG_FILE);
    let broken = |error: String| Entry::Broken {
        dir: dir.to_path_buf(),
        error,
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => return broken(format!("cannot read {}: {e}", path.display())),
    };
    match VmConfig::from_toml(&text) {
        Ok(config) => Entry::Vm(VmEntry {
            dir: dir.to_path_buf(),
            config,
        }),
        Err(e) => broken(format!("{}: {e}", path.display())),
    }
}

/// Writes `vm.toml` atomically (a temporary file renamed over it), so a crash never leaves a
/// half-written configuration.
fn save(dir: &Path, config: &VmConfig) -> Result<(), LibraryError> {
    let text = config
        .to_toml()
        .map_err(|e| LibraryError::InvalidConfig(e.to_string()))?;
    let path = dir.join(CONFIG_FILE);
    let temporary = dir.join(".vm.toml.tmp");
    std::fs::write(&temporary, text).map_err(io(&temporary))?;
    std::fs::rename(&temporary, &path).map_err(io(&path))
}

/// Names shown to users; they also become folder names (after [`folder_name`]).
pub fn check_name(name: &str) -> Result<(), LibraryError> {
    let trimmed = name.trim();
    let ok = !trimmed.is_empty()
        && trimmed == name
        && name.chars().count() <= 64
        && !name.chars().all(|c| c == '.')
        && !name.chars().any(|c| c == '/' || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(LibraryError::BadName(name.to_string()))
    }
}

/// A folder name for a VM name: spaces and odd characters become '-'.
fn folder_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
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
        let gone = library.delete("Debian Test").unwrap();
        assert!(!gone.exists());
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
}
