//! The VM library on disk: one folder per VM under the data directory, holding `vm.toml` (the
//! emulator's [`VmConfig`]), the VM's disks, `thumbnail.png` and its run lock. A folder whose
//! `vm.toml` is missing, unreadable, invalid, or names a VM another folder also names is listed
//! as broken, with the reason; it never hides the others.
//!
//! The library never trusts its files: `vm.toml` is read only as a small regular file
//! ([`config_file`]), names are checked when loaded as at creation, and relative paths mean the
//! VM's own folder. Whether a VM runs is one fact every Cove process sees ([`run_lock`]).

pub mod config_file;
pub mod run_lock;
pub mod trash;

use emu::config::{DiskConfig, VmConfig};
use run_lock::{Activity, LockError, RunLock};
use std::os::unix::fs::DirBuilderExt;
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
    #[error("invalid VM name {0:?}: use 1 to 64 characters, not only dots, without '/', control or formatting characters, or spaces at the ends")]
    BadName(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{name} is {why}")]
    Busy { name: String, why: String },
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LibraryError + '_ {
    move |source| LibraryError::Io {
        path: path.to_path_buf(),
        reason: crate::limits::describe_io(&source),
    }
}

/// One folder of the library.
#[derive(Debug, Clone)]
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

/// A deleted VM, still in the trash: it can be restored until it is purged.
#[derive(Debug, Clone)]
pub struct Trashed {
    pub name: String,
    pub folder: String,
    pub path: PathBuf,
}

/// The library rooted at a data directory.
pub struct Library {
    root: PathBuf,
}

/// What holds a VM busy: the run lock's holder, as a [`LibraryError::Busy`].
fn busy(name: &str, e: LockError) -> LibraryError {
    LibraryError::Busy {
        name: name.to_string(),
        why: e.to_string().trim_start_matches("it is ").to_string(),
    }
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

    /// Every folder, sorted by VM name (broken ones by folder name). Folders whose names start
    /// with '.' (the trash) are not VMs.
    pub fn entries(&self) -> Result<Vec<Entry>, LibraryError> {
        let mut entries = Vec::new();
        for item in std::fs::read_dir(&self.root).map_err(io(&self.root))? {
            let item = match item {
                Ok(item) => item,
                Err(e) => {
                    log::warn!("library: {e}");
                    continue;
                }
            };
            if item.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let dir = item.path();
            match std::fs::symlink_metadata(&dir) {
                Ok(meta) if meta.is_dir() => entries.push(load(&dir)),
                Ok(meta) if meta.file_type().is_symlink() => entries.push(Entry::Broken {
                    dir,
                    error: "the folder is a symbolic link, which Cove does not follow".into(),
                }),
                _ => {}
            }
        }
        flag_duplicates(&mut entries);
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
        config.validate().map_err(LibraryError::InvalidConfig)?;
        if let Some(size) = disk_size {
            if let Some(e) = crate::limits::disk_size_error(size, &self.root) {
                return Err(LibraryError::InvalidConfig(e));
            }
        }
        // Another name may already map to this folder name ("a b" and "a-b"): take a free one.
        let dir = free_folder(&self.root, &folder_name(&config.name));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io(&dir))?;
        let result = (|| {
            if let Some(size) = disk_size {
                let disk = dir.join("disk0.img");
                let file =
                    emu::control::secure_path::create_regular_file(&disk).map_err(io(&disk))?;
                file.set_len(size).map_err(io(&disk))?;
                config.disks.insert(0, DiskConfig::new(disk));
            }
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
    #[cfg(test)]
    pub fn update(&self, entry: &VmEntry) -> Result<(), LibraryError> {
        let config = entry.config.clone();
        self.modify(&entry.dir, move |c| *c = config)
    }

    /// Changes the VM in `dir` by `change`, applied to what its `vm.toml` says now (never to a
    /// copy read earlier), then checks and saves it.
    pub fn modify(
        &self,
        dir: &Path,
        change: impl FnOnce(&mut VmConfig),
    ) -> Result<(), LibraryError> {
        let mut config = match load(dir) {
            Entry::Vm(vm) => vm.config,
            Entry::Broken { error, .. } => return Err(LibraryError::InvalidConfig(error)),
        };
        change(&mut config);
        check_name(&config.name)?;
        let clash = self
            .entries()?
            .into_iter()
            .any(|e| matches!(e, Entry::Vm(vm) if vm.config.name == config.name && vm.dir != dir));
        if clash {
            return Err(LibraryError::Exists(config.name));
        }
        config.validate().map_err(LibraryError::InvalidConfig)?;
        save(dir, &config)
    }

    /// Adds `disk` as the first disk of the VM in `dir` (a finished copy).
    pub fn add_first_disk(&self, dir: &Path, disk: DiskConfig) -> Result<(), LibraryError> {
        self.modify(dir, |c| c.disks.insert(0, disk))
    }

    /// Takes the run lock of `name` for `activity`: refused, naming the holder, when the VM
    /// runs, is being copied or deleted.
    pub fn lock(
        &self,
        vm: &VmEntry,
        program: &str,
        activity: Activity,
    ) -> Result<RunLock, LibraryError> {
        RunLock::acquire(&vm.dir, program, activity).map_err(|e| busy(&vm.config.name, e))
    }

    /// Moves the VM's folder to the trash; refused while the VM runs or its disk is being made.
    /// [`trash::purge`] finishes the delete, [`Library::restore`] undoes it.
    pub fn delete(&self, name: &str, program: &str) -> Result<Trashed, LibraryError> {
        let entry = self.find(name)?;
        let _lock = self.lock(&entry, program, Activity::Deleting)?;
        let path = trash::move_to_trash(&self.root, &entry.dir).map_err(io(&entry.dir))?;
        Ok(Trashed {
            name: name.to_string(),
            folder: entry
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path,
        })
    }

    /// Undoes a delete.
    pub fn restore(&self, trashed: &Trashed) -> Result<PathBuf, LibraryError> {
        if self.find(&trashed.name).is_ok() {
            return Err(LibraryError::Exists(trashed.name.clone()));
        }
        trash::restore(&self.root, &trashed.path, &trashed.folder).map_err(io(&trashed.path))
    }
}

/// A folder under `root` named `folder`, or `folder-2`, `folder-3`... whichever is free.
pub(crate) fn free_folder(root: &Path, folder: &str) -> PathBuf {
    let mut dir = root.join(folder);
    let mut n = 2;
    while std::fs::symlink_metadata(&dir).is_ok() {
        dir = root.join(format!("{folder}-{n}"));
        n += 1;
    }
    dir
}

/// Marks every VM whose name another folder also uses as broken: which one is meant cannot be
/// known, so none is picked.
fn flag_duplicates(entries: &mut [Entry]) {
    let names: Vec<Option<String>> = entries
        .iter()
        .map(|e| match e {
            Entry::Vm(vm) => Some(vm.config.name.clone()),
            Entry::Broken { .. } => None,
        })
        .collect();
    for (i, entry) in entries.iter_mut().enumerate() {
        let Some(name) = &names[i] else { continue };
        if names.iter().filter(|n| n.as_ref() == Some(name)).count() > 1 {
            let dir = match entry {
                Entry::Vm(vm) => vm.dir.clone(),
                Entry::Broken { dir, .. } => dir.clone(),
            };
            *entry = Entry::Broken {
                dir,
                error: format!("duplicate name: another folder also holds a VM named {name:?}"),
            };
        }
    }
}

/// Loads the VM in `dir`.
pub fn load(dir: &Path) -> Entry {
    let path = dir.join(CONFIG_FILE);
    let broken = |error: String| Entry::Broken {
        dir: dir.to_path_buf(),
        error,
    };
    let text = match config_file::read_limited(&path) {
        Ok(text) => text,
        Err(e) => return broken(format!("cannot read {}: {e}", path.display())),
    };
    match VmConfig::from_toml(&text) {
        Ok(mut config) => {
            if check_name(&config.name).is_err() {
                return broken(format!(
                    "{}: the name {:?} is not a valid VM name",
                    path.display(),
                    config.name
                ));
            }
            config_file::resolve_paths(&mut config, dir);
            Entry::Vm(VmEntry {
                dir: dir.to_path_buf(),
                config,
            })
        }
        Err(e) => broken(format!("{}: {e}", path.display())),
    }
}

/// Writes `vm.toml` atomically, paths inside the folder relative to it.
fn save(dir: &Path, config: &VmConfig) -> Result<(), LibraryError> {
    let text = config_file::storable(config, dir)
        .to_toml()
        .map_err(|e| LibraryError::InvalidConfig(e.to_string()))?;
    let path = dir.join(CONFIG_FILE);
    config_file::write_atomic(&path, &text).map_err(io(&path))
}

/// Characters that change how text around them shows (bidirectional overrides, invisible
/// joiners): refused in names as control characters are.
fn is_format_char(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}')
}

/// Names shown to users; they also become folder names (after [`folder_name`]).
pub fn check_name(name: &str) -> Result<(), LibraryError> {
    let trimmed = name.trim();
    let ok = !trimmed.is_empty()
        && trimmed == name
        && name.chars().count() <= 64
        && !name.chars().all(|c| c == '.')
        && !name
            .chars()
            .any(|c| c == '/' || c.is_control() || is_format_char(c));
    if ok {
        Ok(())
    } else {
        Err(LibraryError::BadName(name.to_string()))
    }
}

/// A folder name for a VM name: spaces and odd characters become '-'; never starts with '.'.
fn folder_name(name: &str) -> String {
    let folder: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    match folder.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None => folder,
    }
}

#[cfg(test)]
mod tests;
