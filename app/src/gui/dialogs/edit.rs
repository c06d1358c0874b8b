//! The dialog that edits a stopped VM's name, CPUs, memory and display, checked against the
//! other names and the host's limits before anything is saved.

use crate::gui::validation;
use crate::gui::CoveApp;
use crate::library::VmEntry;

/// Edits of a stopped VM.
pub(in crate::gui) struct EditDialog {
    original: String,
    entry: VmEntry,
    cpus: u32,
    memory_mib: u64,
    error: Option<String>,
}

impl EditDialog {
    /// The dialog for `vm`, showing what its `vm.toml` says.
    pub(in crate::gui) fn new(vm: &VmEntry) -> Self {
        Self {
            original: vm.config.name.clone(),
            entry: vm.clone(),
            cpus: u32::from(vm.config.cpus),
            memory_mib: vm.config.memory.bytes() >> 20,
            error: None,
        }
    }

    /// Draws the fields; returns (Save clicked, Cancel clicked).
    fn ui(&mut self, ui: &mut egui::Ui) -> (bool, bool) {
        egui::Grid::new("edit").num_columns(2).show(ui, |ui| {
            let name_label = ui.label("Name");
            ui.text_edit_singleline(&mut self.entry.config.name)
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
            ui.label("Display");
            ui.checkbox(
                &mut self.entry.config.display.enabled,
                "virtio GPU, keyboard and tablet",
            );
            ui.end_row();
        });
        if let Some(error) = &self.error {
            ui.colored_label(egui::Color32::from_rgb(0xd0, 0x30, 0x30), error);
        }
        let (mut save, mut cancel) = (false, false);
        ui.horizontal(|ui| {
            save = ui.button("Save").clicked();
            cancel = ui.button("Cancel").clicked();
        });
        (save, cancel)
    }
}

impl CoveApp {
    pub(super) fn edit_dialog(&mut self, ctx: &egui::Context) {
        let names = self.names();
        let Some(edit) = &mut self.edit else {
            return;
        };
        let mut close = false;
        let mut save = false;
        egui::Window::new("Edit VM")
            .collapsible(false)
            .show(ctx, |ui| {
                let (saved, cancelled) = edit.ui(ui);
                save = saved;
                close = cancelled;
            });
        if save {
            let others: Vec<String> = names.into_iter().filter(|n| *n != edit.original).collect();
            let error = validation::name_error(&edit.entry.config.name, &others)
                .or_else(|| validation::cpus_error(edit.cpus, &self.limits))
                .or_else(|| validation::memory_error(edit.memory_mib, &self.limits));
            match error {
                Some(e) => edit.error = Some(e),
                None => {
                    let (name, cpus, display) = (
                        edit.entry.config.name.clone(),
                        edit.cpus.clamp(1, 255) as u8,
                        edit.entry.config.display.enabled,
                    );
                    let memory = emu::config::MemorySize::from_mib(edit.memory_mib);
                    // Only what the dialog shows changes; the rest is what vm.toml says now.
                    let saved = self.library.modify(&edit.entry.dir, |c| {
                        c.name = name;
                        c.cpus = cpus;
                        c.memory = memory;
                        c.display.enabled = display;
                    });
                    match saved {
                        Ok(()) => {
                            let saved = format!("saved {}", edit.entry.config.name);
                            self.say(saved);
                            close = true;
                        }
                        Err(e) => edit.error = Some(e.to_string()),
                    }
                }
            }
        }
        if close {
            self.edit = None;
            self.refresh();
        }
    }
}
