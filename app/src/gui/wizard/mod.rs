//! The creation wizard's answers and what follows from them: boot source (a Linux kernel, an
//! existing raw disk, or an installer ISO), then name and resources (defaults from osinfo when
//! the OS is known, limits from the host), then a review; the errors of each step and the VM
//! they describe. Its pages are drawn in [`pages`].

mod pages;

use super::file_picker::FilePicker;
use super::validation::{self, HostLimits};
use crate::osinfo::{self, DetectedOs};
use emu::config::{BootSource, DisplayConfig, MemorySize, VmConfig};
use std::path::PathBuf;

/// Where the new VM boots from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Kernel,
    Disk,
    Iso,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Source,
    Resources,
    Review,
}

/// Which path field a file dialog fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Kernel,
    Initrd,
    Disk,
    Iso,
}

/// What the wizard asks the app to do.
pub enum Outcome {
    Continue,
    Cancel,
    /// Create this VM; copy `copy_disk` into its folder as its first disk.
    Create {
        config: VmConfig,
        new_disk_bytes: Option<u64>,
        copy_disk: Option<PathBuf>,
    },
}

pub struct Wizard {
    pub step: Step,
    pub source: Source,
    pub kernel: String,
    pub initrd: String,
    pub cmdline: String,
    pub disk: String,
    pub copy_disk: bool,
    pub iso: String,
    pub os: Option<DetectedOs>,
    pub name: String,
    pub cpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub display: bool,
    limits: HostLimits,
    /// Where new disks go (their size is checked against its file system).
    library_root: PathBuf,
    existing: Vec<String>,
    picker: Option<(Field, FilePicker)>,
    /// Errors are shown once the user tried to go on.
    show_errors: bool,
}

impl Wizard {
    pub fn new(existing: Vec<String>, limits: HostLimits, library_root: PathBuf) -> Self {
        Self {
            step: Step::Source,
            source: Source::Kernel,
            kernel: String::new(),
            initrd: String::new(),
            cmdline: "console=ttyS0 console=tty0".into(),
            disk: String::new(),
            copy_disk: true,
            iso: String::new(),
            os: None,
            name: String::new(),
            cpus: 1,
            memory_mib: 512.min(limits.max_memory() >> 20),
            disk_gib: 0,
            display: true,
            limits,
            library_root,
            existing,
            picker: None,
            show_errors: false,
        }
    }

    /// Errors of the boot-source step.
    pub fn source_errors(&self) -> Vec<String> {
        match self.source {
            Source::Kernel => [
                validation::file_error("kernel", &self.kernel, true),
                validation::file_error("initrd", &self.initrd, false),
            ]
            .into_iter()
            .flatten()
            .collect(),
            Source::Disk => validation::file_error("disk image", &self.disk, true)
                .into_iter()
                .collect(),
            Source::Iso => validation::file_error("installer ISO", &self.iso, true)
                .into_iter()
                .collect(),
        }
    }

    /// Errors of the name-and-resources step.
    pub fn resource_errors(&self) -> Vec<String> {
        [
            validation::name_error(&self.name, &self.existing),
            validation::cpus_error(self.cpus, &self.limits),
            validation::memory_error(self.memory_mib, &self.limits),
            validation::disk_size_error(self.disk_gib, &self.library_root),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Looks the ISO's OS up and takes osinfo's recommendations as defaults.
    fn detect_os(&mut self) {
        self.os = osinfo::detect_iso(std::path::Path::new(self.iso.trim()));
        // osinfo's recommendations where it has them; otherwise what most installers need:
        // 2 CPUs (or all the host has), 2 GiB and a 32 GiB disk to install to.
        let os = self.os.as_ref();
        let cpus = os.and_then(|o| o.cpus).unwrap_or(2);
        self.cpus = u32::from(cpus.min(self.limits.cpus));
        let mib = os.and_then(|o| o.memory_mib).unwrap_or(2048);
        self.memory_mib = mib.clamp(64, self.limits.max_memory() >> 20);
        let gib = os.and_then(|o| o.disk_gib).filter(|g| *g > 0).unwrap_or(32);
        if self.disk_gib == 0 {
            self.disk_gib = gib;
        }
        if let Some(os) = os {
            if self.name.is_empty() {
                self.name = os.name.clone();
            }
        }
    }

    /// The VM the answers describe.
    pub fn config(&self) -> VmConfig {
        let mut config = blank_config();
        config.name = self.name.clone();
        config.cpus = self.cpus.clamp(1, 255) as u8;
        config.memory = MemorySize::from_mib(self.memory_mib);
        config.display = DisplayConfig {
            enabled: self.display,
            ..Default::default()
        };
        config.boot = match self.source {
            Source::Kernel => BootSource::Kernel {
                kernel: PathBuf::from(self.kernel.trim()),
                initrd: Some(self.initrd.trim())
                    .filter(|i| !i.is_empty())
                    .map(PathBuf::from),
                cmdline: self.cmdline.clone(),
            },
            Source::Disk => BootSource::Firmware { cdrom: None },
            Source::Iso => BootSource::Firmware {
                cdrom: Some(PathBuf::from(self.iso.trim())),
            },
        };
        if self.source == Source::Disk && !self.copy_disk {
            config
                .disks
                .push(emu::config::DiskConfig::new(self.disk.trim()));
        }
        config
    }

    fn outcome(&self) -> Outcome {
        Outcome::Create {
            config: self.config(),
            new_disk_bytes: (self.disk_gib > 0 && self.source != Source::Disk)
                .then_some(self.disk_gib << 30),
            copy_disk: (self.source == Source::Disk && self.copy_disk)
                .then(|| PathBuf::from(self.disk.trim())),
        }
    }
}

/// A VM with default settings, to be filled in.
fn blank_config() -> VmConfig {
    VmConfig {
        name: String::new(),
        cpus: 1,
        memory: MemorySize::from_mib(512),
        boot: BootSource::Firmware { cdrom: None },
        host_profile: Default::default(),
        on_reboot: Default::default(),
        disks: Vec::new(),
        rng: true,
        display: DisplayConfig::default(),
    }
}
