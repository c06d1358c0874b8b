//! The library view: each VM with its thumbnail, OS, state, CPUs and memory and its Start
//! (or Show), Edit and Delete buttons; broken entries with what is wrong; the disk copies in
//! progress and the undo of the last delete.

use super::dialogs::EditDialog;
use super::CoveApp;
use crate::library::{Entry, VmEntry};
use std::path::Path;

/// The colour of what is broken.
const BROKEN: egui::Color32 = egui::Color32::from_rgb(0xd0, 0x30, 0x30);

impl CoveApp {
    /// Draws the library into the central panel.
    pub(super) fn library_ui(&mut self, ui: &mut egui::Ui) {
        self.copies_ui(ui);
        self.undo_ui(ui);
        if self.entries.is_empty() {
            ui.label(format!(
                "No VMs yet. \"New VM\" creates one (library: {}).",
                self.library.root().display()
            ));
            return;
        }
        let ctx = ui.ctx().clone();
        let mut start = None;
        let entries = std::mem::take(&mut self.entries);
        egui::ScrollArea::vertical().show(ui, |ui| {
            egui::Grid::new("library")
                .num_columns(7)
                .striped(true)
                .show(ui, |ui| {
                    for heading in ["", "Name", "OS", "State", "CPUs", "Memory", ""] {
                        ui.strong(heading);
                    }
                    ui.end_row();
                    for entry in &entries {
                        match entry {
                            Entry::Vm(vm) => {
                                if self.vm_row(ui, &ctx, vm) {
                                    start = Some(vm.clone());
                                }
                            }
                            Entry::Broken { dir, error } => self.broken_row(ui, dir, error),
                        }
                        ui.end_row();
                    }
                });
        });
        self.entries = entries;
        if let Some(vm) = start {
            self.start(&vm, &ctx);
        }
    }

    /// A progress bar, with Cancel, for each disk copy in progress.
    fn copies_ui(&self, ui: &mut egui::Ui) {
        for copy in &self.copies {
            ui.horizontal(|ui| {
                ui.label(format!("Copying the disk of {}", copy.name()));
                ui.add(
                    egui::ProgressBar::new(copy.progress())
                        .show_percentage()
                        .desired_width(240.0),
                );
                if ui.button("Cancel copy").clicked() {
                    copy.cancel();
                }
            });
        }
    }

    /// "Deleted NAME." with Undo, while the last delete can be undone.
    fn undo_ui(&mut self, ui: &mut egui::Ui) {
        let mut undo = false;
        if let Some((trashed, _)) = &self.undo_delete {
            ui.horizontal(|ui| {
                ui.label(format!("Deleted {}.", trashed.name));
                undo = ui.button("Undo").clicked();
            });
        }
        if undo {
            self.restore_deleted();
        }
    }

    /// One VM's row. Returns whether the user asked to start (or show) it.
    fn vm_row(&mut self, ui: &mut egui::Ui, ctx: &egui::Context, vm: &VmEntry) -> bool {
        let running = self
            .running(&vm.dir)
            .map(|r| (r.status().qmp_name(), r.frames().cloned()));
        let live = running.as_ref().and_then(|(_, f)| f.clone());
        let saved = self.thumbnail_times.get(&vm.dir).copied();
        self.thumbnails.show(ui, ctx, vm, live.as_deref(), saved);
        ui.label(&vm.config.name);
        ui.label(
            self.os_names
                .get(&vm.dir)
                .map_or("Unknown OS", String::as_str),
        );
        let copying = self.copies.iter().any(|c| c.dir() == vm.dir);
        // A VM this app shows in a tab is not "elsewhere", though its own process holds it.
        let elsewhere = match running {
            Some(_) => None,
            None => self.elsewhere.get(&vm.dir).cloned(),
        };
        let busy = running.is_some() || copying || elsewhere.is_some();
        match (&running, &elsewhere) {
            (Some((status, _)), _) => ui.label(status.to_string()),
            (None, Some(holder)) => ui.label(holder.describe()),
            (None, None) if copying => ui.label("copying its disk"),
            // Until its next start.
            (None, None) => match self.failure(&vm.dir) {
                Some(why) => ui.colored_label(BROKEN, "failed").on_hover_text(why),
                None => ui.label("stopped"),
            },
        };
        ui.label(vm.config.cpus.to_string());
        ui.label(vm.config.memory.to_string());
        let mut start = false;
        ui.horizontal(|ui| {
            start = ui
                .add_enabled(
                    !copying && elsewhere.is_none(),
                    egui::Button::new(if running.is_some() { "Show" } else { "Start" }),
                )
                .clicked();
            if let Some(holder) = &elsewhere {
                self.remote_buttons(ui, ctx, vm, holder);
            }
            if ui
                .add_enabled(!busy, egui::Button::new("Edit"))
                .on_disabled_hover_text(
                    "Settings are locked while the VM runs or its disk is being copied.",
                )
                .clicked()
            {
                self.edit = Some(EditDialog::new(vm));
            }
            if ui
                .add_enabled(!busy, egui::Button::new("Delete"))
                .on_disabled_hover_text(
                    "A running VM, or one whose disk is being copied, cannot be deleted.",
                )
                .clicked()
            {
                self.confirm_delete = Some(vm.config.name.clone());
            }
        });
        start
    }

    /// Pause, Resume, Power off and Force off for a VM another Cove process runs, sent to its
    /// control socket.
    fn remote_buttons(
        &self,
        ui: &mut egui::Ui,
        ctx: &egui::Context,
        vm: &VmEntry,
        holder: &crate::library::run_lock::Holder,
    ) {
        let Some(socket) = holder
            .control
            .as_ref()
            .filter(|_| holder.activity == crate::library::run_lock::Activity::Running)
        else {
            return;
        };
        for command in super::remote::RemoteCommand::ALL {
            if ui
                .button(command.label())
                .on_hover_text(format!("Through {}", socket.display()))
                .clicked()
            {
                let ctx = ctx.clone();
                self.remote.send(
                    &vm.config.name,
                    vm.dir.clone(),
                    socket.clone(),
                    command,
                    move || ctx.request_repaint(),
                );
            }
        }
    }

    /// A folder whose `vm.toml` cannot be used, and why.
    fn broken_row(&self, ui: &mut egui::Ui, dir: &Path, error: &str) {
        ui.colored_label(BROKEN, "!");
        ui.label(
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        ui.label("");
        ui.colored_label(BROKEN, "broken");
        ui.label("");
        ui.label("");
        // Paths inside the library are shown relative to it.
        let root = format!("{}/", self.library.root().display());
        ui.label(
            error
                .replace(&root, "")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
}
