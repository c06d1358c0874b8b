//! The creation wizard: boot source (a Linux kernel, an existing raw disk, or an installer
//! ISO), then name and resources (defaults from osinfo when the OS is known, limits from the
//! host), then a review. Errors show inline, next to what caused them.

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

    fn poll_picker(&mut self) {
        let Some((field, picker)) = &self.picker else {
            return;
        };
        let Some(choice) = picker.poll() else { return };
        let field = *field;
        self.picker = None;
        if let Some(path) = choice {
            let text = path.display().to_string();
            match field {
                Field::Kernel => self.kernel = text,
                Field::Initrd => self.initrd = text,
                Field::Disk => self.disk = text,
                Field::Iso => {
                    self.iso = text;
                    self.detect_os();
                }
            }
        }
    }

    fn path_row(&mut self, ui: &mut egui::Ui, label: &str, field: Field) {
        ui.horizontal(|ui| {
            let label_response = ui.label(label);
            let text = match field {
                Field::Kernel => &mut self.kernel,
                Field::Initrd => &mut self.initrd,
                Field::Disk => &mut self.disk,
                Field::Iso => &mut self.iso,
            };
            let response = ui
                .add(
                    egui::TextEdit::singleline(text)
                        .desired_width(360.0)
                        .id_salt(label),
                )
                .labelled_by(label_response.id);
            if field == Field::Iso && response.lost_focus() {
                self.detect_os();
            }
            let busy = self.picker.is_some();
            if ui
                .add_enabled(!busy, egui::Button::new("Browse…"))
                .clicked()
            {
                let extensions: &[&str] = match field {
                    Field::Iso => &["iso"],
                    Field::Disk => &["img", "raw"],
                    _ => &[],
                };
                self.picker = Some((field, FilePicker::open(label, extensions)));
            }
        });
    }

    fn errors(&self, ui: &mut egui::Ui, errors: &[String]) {
        if self.show_errors {
            for e in errors {
                ui.colored_label(egui::Color32::from_rgb(0xd0, 0x30, 0x30), e);
            }
        }
    }

    /// Shows the current step.
    pub fn ui(&mut self, ui: &mut egui::Ui) -> Outcome {
        self.poll_picker();
        let mut outcome = Outcome::Continue;
        ui.heading(match self.step {
            Step::Source => "New VM: boot source",
            Step::Resources => "New VM: name and resources",
            Step::Review => "New VM: review",
        });
        ui.separator();
        match self.step {
            Step::Source => {
                ui.horizontal(|ui| {
                    ui.radio_value(&mut self.source, Source::Kernel, "Linux kernel");
                    ui.radio_value(&mut self.source, Source::Disk, "Existing disk image");
                    ui.radio_value(&mut self.source, Source::Iso, "Installer ISO");
                });
                match self.source {
                    Source::Kernel => {
                        self.path_row(ui, "Kernel", Field::Kernel);
                        self.path_row(ui, "Initrd (optional)", Field::Initrd);
                        ui.horizontal(|ui| {
                            let label = ui.label("Command line");
                            ui.text_edit_singleline(&mut self.cmdline)
                                .labelled_by(label.id);
                        });
                    }
                    Source::Disk => {
                        self.path_row(ui, "Disk image", Field::Disk);
                        ui.checkbox(
                            &mut self.copy_disk,
                            "Copy it into the VM's folder (otherwise it is used where it is)",
                        );
                        ui.label("Booting from a disk needs firmware boot, which comes later.");
                    }
                    Source::Iso => {
                        self.path_row(ui, "Installer ISO", Field::Iso);
                        let os = self
                            .os
                            .as_ref()
                            .map_or("Unknown OS".to_string(), |os| os.name.clone());
                        ui.label(format!("Detected: {os}"));
                        ui.label("Installer ISOs are kept for firmware boot, which comes later.");
                    }
                }
                let errors = self.source_errors();
                self.errors(ui, &errors);
                ui.horizontal(|ui| {
                    if ui.button("Cancel").clicked() {
                        outcome = Outcome::Cancel;
                    }
                    if ui.button("Next").clicked() {
                        self.show_errors = !errors.is_empty();
                        if errors.is_empty() {
                            self.step = Step::Resources;
                        }
                    }
                });
            }
            Step::Resources => {
                egui::Grid::new("resources").num_columns(2).show(ui, |ui| {
                    let name_label = ui.label("Name");
                    ui.text_edit_singleline(&mut self.name)
                        .labelled_by(name_label.id);
                    ui.end_row();
                    let label = ui.label("CPUs");
                    ui.add(egui::DragValue::new(&mut self.cpus).range(0..=255))
                        .labelled_by(label.id);
                    ui.end_row();
                    let label = ui.label("Memory (MiB)");
                    ui.add(egui::DragValue::new(&mut self.memory_mib).speed(64))
                        .labelled_by(label.id);
                    ui.end_row();
                    if self.source != Source::Disk {
                        let label = ui.label("New disk (GiB, 0 for none)");
                        ui.add(egui::DragValue::new(&mut self.disk_gib))
                            .labelled_by(label.id);
                        ui.end_row();
                    }
                    ui.label("Display");
                    ui.checkbox(&mut self.display, "virtio GPU, keyboard and tablet");
                    ui.end_row();
                });
                ui.label(format!(
                    "This host has {} CPUs and {} of memory.",
                    self.limits.cpus,
                    crate::limits::human_size(self.limits.memory_bytes)
                ));
                if let Some(warning) = self.limits.memory_warning(self.memory_mib << 20) {
                    ui.colored_label(egui::Color32::from_rgb(0xc0, 0x80, 0x00), warning);
                }
                let errors = self.resource_errors();
                self.errors(ui, &errors);
                ui.horizontal(|ui| {
                    if ui.button("Back").clicked() {
                        self.step = Step::Source;
                    }
                    if ui.button("Next").clicked() {
                        self.show_errors = !errors.is_empty();
                        if errors.is_empty() {
                            self.step = Step::Review;
                        }
                    }
                });
            }
            Step::Review => {
                let config = self.config();
                let boot = match &config.boot {
                    BootSource::Kernel { kernel, .. } => format!("kernel {}", kernel.display()),
                    BootSource::Firmware { cdrom: Some(iso) } => {
                        format!("installer ISO {}", iso.display())
                    }
                    BootSource::Firmware { cdrom: None } => format!("disk {}", self.disk.trim()),
                };
                egui::Grid::new("review").num_columns(2).show(ui, |ui| {
                    for (k, v) in [
                        ("Name", config.name.clone()),
                        ("Boots from", boot),
                        ("CPUs", config.cpus.to_string()),
                        ("Memory", config.memory.to_string()),
                        (
                            "New disk",
                            if self.disk_gib > 0 && self.source != Source::Disk {
                                format!("{} GiB", self.disk_gib)
                            } else {
                                "none".into()
                            },
                        ),
                        ("Display", if self.display { "yes" } else { "no" }.into()),
                    ] {
                        ui.label(k);
                        ui.label(v);
                        ui.end_row();
                    }
                });
                ui.horizontal(|ui| {
                    if ui.button("Back").clicked() {
                        self.step = Step::Resources;
                    }
                    if ui.button("Create").clicked() {
                        outcome = self.outcome();
                    }
                });
            }
        }
        outcome
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
