//! The creation wizard's pages: each step's fields, file pickers and inline errors, and the
//! buttons that move between the steps.

use super::{Field, Outcome, Source, Step, Wizard};
use crate::gui::file_picker::FilePicker;
use crate::gui::validation;
use emu::config::BootSource;

impl Wizard {
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
                    validation::resource_fields(
                        ui,
                        &mut self.name,
                        &mut self.cpus,
                        &mut self.memory_mib,
                    );
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
