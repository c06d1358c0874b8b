//! Quitting with VMs running: the dialog that powers them off or forces them off, and the
//! wait that closes the app once they have ended (forcing off any that outlast
//! [`FORCE_OFF_AFTER`]).

use crate::gui::CoveApp;
use crate::vm_controls::FORCE_OFF_AFTER;
use std::time::Instant;

impl CoveApp {
    pub(super) fn quit_dialog(&mut self, ctx: &egui::Context) {
        if self.quit_asked {
            egui::Window::new("Quit Cove")
                .collapsible(false)
                .show(ctx, |ui| {
                    ui.label(format!("{} VM(s) are running.", self.running_count()));
                    ui.horizontal(|ui| {
                        if ui.button("Power them off").clicked() {
                            for vm in self.running.iter().filter(|r| r.is_running()) {
                                crate::vm_controls::VmCommands::power_down(vm.process());
                            }
                            self.quitting_since = Some(Instant::now());
                            self.quit_asked = false;
                        }
                        if ui.button("Force them off").clicked() {
                            self.force_off_all();
                            self.quitting_since = Some(Instant::now());
                            self.quit_asked = false;
                        }
                        if ui.button("Cancel").clicked() {
                            self.quit_asked = false;
                        }
                    });
                });
        }
        if let Some(since) = self.quitting_since {
            if self.running_count() == 0 {
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            } else if since.elapsed() > FORCE_OFF_AFTER {
                self.force_off_all();
            }
        }
    }

    fn force_off_all(&self) {
        for vm in self.running.iter().filter(|r| r.is_running()) {
            crate::vm_controls::VmCommands::quit(vm.process());
        }
    }
}
