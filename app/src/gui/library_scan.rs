//! Reading the library for the app: the folders, who runs each VM, and each VM's OS name, in
//! one [`Scan`]. The app scans synchronously after its own changes, and a background thread
//! ([`Watcher`]) rescans every few seconds, so drawing a frame never touches the file system.

use crate::library::run_lock::Holder;
use crate::library::{Entry, Library, VmEntry};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, TryRecvError};
use std::time::Duration;

/// How often the background thread rescans.
const RESCAN_EVERY: Duration = Duration::from_secs(2);

/// The library as read at one moment.
#[derive(Default)]
pub struct Scan {
    pub entries: Vec<Entry>,
    /// Who holds the run lock of VMs that other processes run, copy or delete.
    pub elsewhere: HashMap<PathBuf, Holder>,
    /// Each VM's OS name, by folder.
    pub os_names: HashMap<PathBuf, String>,
    /// When each VM's saved thumbnail was written (VMs without one are absent).
    pub thumbnail_times: HashMap<PathBuf, std::time::SystemTime>,
    pub error: Option<String>,
}

/// OS names of ISOs already looked up, so each ISO is read once.
pub type IsoNames = HashMap<PathBuf, String>;

/// Reads the library at `library`.
pub fn scan(library: &Library, iso_names: &mut IsoNames) -> Scan {
    let mut result = Scan::default();
    match library.entries() {
        Ok(entries) => result.entries = entries,
        Err(e) => result.error = Some(e.to_string()),
    }
    let me = std::process::id();
    for entry in &result.entries {
        let Entry::Vm(vm) = entry else { continue };
        result
            .os_names
            .insert(vm.dir.clone(), os_name(vm, iso_names));
        if let Some(time) = super::thumbnails::saved_time(&vm.dir) {
            result.thumbnail_times.insert(vm.dir.clone(), time);
        }
        if let Some(holder) = crate::library::run_lock::holder(&vm.dir) {
            if holder.pid != me {
                result.elsewhere.insert(vm.dir.clone(), holder);
            }
        }
    }
    result
}

/// The OS a VM runs, for the library's OS column.
fn os_name(vm: &VmEntry, cache: &mut IsoNames) -> String {
    match &vm.config.boot {
        emu::config::BootSource::Kernel { .. } => "Linux (kernel)".into(),
        emu::config::BootSource::Firmware { cdrom: Some(iso) } => cache
            .entry(iso.clone())
            .or_insert_with(|| {
                crate::osinfo::detect_iso(iso).map_or("Unknown OS".into(), |os| os.name)
            })
            .clone(),
        emu::config::BootSource::Firmware { cdrom: None } => "Unknown OS".into(),
    }
}

/// Rescans the library on its own thread; the newest scan waits in [`Watcher::latest`].
pub struct Watcher {
    scans: Receiver<Scan>,
}

impl Watcher {
    /// Watches the library at `root`; `wake` is called after each scan (a repaint request).
    pub fn start(root: &Path, wake: impl Fn() + Send + 'static) -> Option<Self> {
        let root = root.to_path_buf();
        let (sender, scans) = channel();
        let spawned = std::thread::Builder::new()
            .name("cove-library-watch".into())
            .spawn(move || {
                let Ok(library) = Library::open(Some(&root)) else {
                    return;
                };
                let mut iso_names = IsoNames::new();
                loop {
                    std::thread::sleep(RESCAN_EVERY);
                    if sender.send(scan(&library, &mut iso_names)).is_err() {
                        return;
                    }
                    wake();
                }
            });
        match spawned {
            Ok(_) => Some(Self { scans }),
            Err(e) => {
                log::warn!("cannot watch the library: {e}");
                None
            }
        }
    }

    /// The newest scan since the last call, if any.
    pub fn latest(&self) -> Option<Scan> {
        let mut newest = None;
        loop {
            match self.scans.try_recv() {
                Ok(scan) => newest = Some(scan),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return newest,
            }
        }
    }
}
