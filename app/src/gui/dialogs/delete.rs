//! The modal that confirms deleting a VM, disks and all (the delete can be undone for a few
//! seconds afterwards).

use crate::gui::CoveApp;

impl CoveApp {
    pub(super) fn delete_dialog(&mut self, ctx: &egui::Context) {
        let Some(name) = self.confirm_delete.clone() else {
            return;
        };
        // Modal: nothing behind it can be clicked, so the dialog cannot change its target.
        let modal = egui::Modal::new(egui::Id::unique("delete-vm")).show(ctx, |ui| {
            ui.heading(format!("Delete {name}?"));
            ui.label(format!(
                "{name} and everything in its folder, disks included, will be deleted. \
                 You can undo this for a few seconds."
            ));
            ui.horizontal(|ui| {
                let delete = egui::Button::new(
                    egui::RichText::new(format!("Delete {name}")).color(egui::Color32::WHITE),
                )
                .fill(egui::Color32::from_rgb(0xc0, 0x1c, 0x28));
                if ui.add(delete).clicked() {
                    self.delete_vm(&name);
                    self.confirm_delete = None;
                }
                if ui.button("Keep").clicked() {
                    self.confirm_delete = None;
                }
            });
        });
        if modal.should_close() {
            self.confirm_delete = None;
        }
    }
}
