//! The dialog that edits a stopped VM's name, CPUs, memory, display and direct-kernel boot
//! (kernel, initrd, command line), checked against the other names, the host's limits and the
//! files before anything is saved. A VM made from an ISO or a disk, which needs firmware boot,
//! can be given a kernel here so that it starts.

use crate::gui::validation;
use crate::gui::CoveApp;
use crate::library::VmEntry;

/// Edits of a stopped VM.
pub(in crate::gui) struct EditDialog {
    original: String,
    entry: VmEntry,
    cpus: u32,
    memory_mib: u64,
    /// Direct kernel boot: the kernel (empty: keep firmware boot), initrd and command line.
    kernel: String,
    initrd: String,
    cmdline: String,
    error: Option<String>,
}

impl EditDialog {
    /// The dialog for `vm`, showing what its `vm.toml` says.
    pub(in crate::gui) fn new(vm: &VmEntry) -> Self {
        let mut dialog = Self {
            original: vm.config.name.clone(),
            entry: vm.clone(),
            cpus: u32::from(vm.config.cpus),
            memory_mib: vm.config.memory.bytes() >> 20,
            kernel: String::new(),
            initrd: String::new(),
            cmdline: String::new(),
            error: None,
        };
        if let emu::config::BootSource::Kernel {
            kernel,
            initrd,
            cmdline,
        } = &vm.config.boot
        {
            dialog.kernel = kernel.display().to_string();
            dialog.initrd = initrd
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            dialog.cmdline = cmdline.clone();
        }
        dialog
    }

    /// The boot source the fields describe: `None` keeps the VM's firmware boot (no kernel
    /// given to a VM that has none); an error names the field to fix.
    fn boot(&self) -> Result<Option<emu::config::BootSource>, String> {
        let kernel = self.kernel.trim();
        let firmware = matches!(
            self.entry.config.boot,
            emu::config::BootSource::Firmware { .. }
        );
        if kernel.is_empty() && firmware {
            return match (
                self.initrd.trim().is_empty(),
                self.cmdline.trim().is_empty(),
            ) {
                (true, true) => Ok(None),
                _ => Err("An initrd or a command line needs a kernel.".into()),
            };
        }
        if let Some(e) = validation::file_error("kernel", kernel, true)
            .or_else(|| validation::file_error("initrd", self.initrd.trim(), false))
        {
            return Err(e);
        }
        let initrd = self.initrd.trim();
        Ok(Some(emu::config::BootSource::Kernel {
            kernel: kernel.into(),
            initrd: (!initrd.is_empty()).then(|| initrd.into()),
            cmdline: self.cmdline.trim().to_string(),
        }))
    }

    /// Draws the fields; returns (Save clicked, Cancel clicked).
    fn ui(&mut self, ui: &mut egui::Ui) -> (bool, bool) {
        egui::Grid::new("edit").num_columns(2).show(ui, |ui| {
            validation::resource_fields(
                ui,
                &mut self.entry.config.name,
                &mut self.cpus,
                &mut self.memory_mib,
            );
            ui.label("Display");
            ui.checkbox(
                &mut self.entry.config.display.enabled,
                "virtio GPU, keyboard and tablet",
            );
            ui.end_row();
            let label = ui.label("Kernel");
            ui.add(
                egui::TextEdit::singleline(&mut self.kernel)
                    .hint_text("bzImage or ELF vmlinux, for a VM that needs firmware boot"),
            )
            .labelled_by(label.id);
            ui.end_row();
            let label = ui.label("Initrd");
            ui.add(egui::TextEdit::singleline(&mut self.initrd).hint_text("optional"))
                .labelled_by(label.id);
            ui.end_row();
            let label = ui.label("Command line");
            ui.text_edit_singleline(&mut self.cmdline)
                .labelled_by(label.id);
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
            let boot = match error {
                Some(e) => Err(e),
                None => edit.boot(),
            };
            match boot {
                Err(e) => edit.error = Some(e),
                Ok(boot) => {
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
                        if let Some(boot) = boot {
                            c.boot = boot;
                        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;
    use emu::config::{BootSource, VmConfig};

    fn dialog(boot: BootSource) -> EditDialog {
        let mut config = VmConfig::from_toml("[boot]\nkind = \"firmware\"\n").unwrap();
        config.boot = boot;
        EditDialog::new(&VmEntry {
            dir: "/nowhere".into(),
            config,
        })
    }

    #[test]
    fn a_vm_that_needs_firmware_can_be_given_a_kernel() {
        let tmp = TempDir::new("edit-boot");
        let kernel = tmp.0.join("vmlinux");
        std::fs::write(&kernel, b"kernel").unwrap();
        let mut edit = dialog(BootSource::Firmware {
            cdrom: Some("/isos/debian.iso".into()),
        });
        assert_eq!(
            edit.boot(),
            Ok(None),
            "no kernel given: firmware boot stays"
        );
        edit.cmdline = "console=ttyS0".into();
        assert!(edit.boot().unwrap_err().contains("needs a kernel"));
        edit.kernel = tmp.0.join("missing").display().to_string();
        assert!(edit.boot().is_err());
        edit.kernel = kernel.display().to_string();
        assert_eq!(
            edit.boot(),
            Ok(Some(BootSource::Kernel {
                kernel: kernel.clone(),
                initrd: None,
                cmdline: "console=ttyS0".into(),
            }))
        );
        // A kernel VM's fields show its kernel, and emptying the kernel is refused.
        let mut edit = dialog(BootSource::Kernel {
            kernel: kernel.clone(),
            initrd: None,
            cmdline: "quiet".into(),
        });
        assert_eq!(edit.kernel, kernel.display().to_string());
        assert_eq!(edit.cmdline, "quiet");
        edit.kernel.clear();
        assert!(edit.boot().unwrap_err().contains("kernel"));
    }
}
