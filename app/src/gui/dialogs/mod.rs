//! The app's dialogs over the library and the VM tabs: confirming a delete, editing a stopped
//! VM, and quitting while VMs run.

mod delete;
mod edit;
mod quit;

pub(super) use edit::EditDialog;

use super::CoveApp;

impl CoveApp {
    /// Draws the dialogs that are open.
    pub(super) fn dialogs(&mut self, ctx: &egui::Context) {
        self.delete_dialog(ctx);
        self.edit_dialog(ctx);
        self.quit_dialog(ctx);
    }
}
