//! The VM tabs of the top bar: one per VM run in this app (running or ended) and one per VM
//! whose start failed before it ran, each with a close button.
//!
//! Closing: the tab of a VM that is not running closes at once. A running VM is never left
//! running without a tab (nothing else would show it or let it be stopped), so closing its tab
//! asks first: "Power off and close" presses the guest's power button and closes the tab once
//! the guest has shut down (the tab shows the wait, and offers Force off after a few seconds),
//! "Force off and close" turns it off now, and "Keep running" closes nothing.
//!
//! Tabs follow the library by VM folder: a renamed VM's tab shows its new name, and the tab of
//! a VM that is no longer running closes when the VM leaves the library (deleted).

use super::{CoveApp, View};
use crate::library::Entry;
use std::path::{Path, PathBuf};

/// A start that failed before the VM ran (host limits, the run lock, a bad configuration).
pub struct FailedStart {
    pub dir: PathBuf,
    pub name: String,
    pub error: String,
}

impl CoveApp {
    /// The tabs, in order: folder and name.
    fn tabs(&self) -> Vec<(PathBuf, String)> {
        let runs = self.running.iter().map(|r| (r.dir.clone(), r.name.clone()));
        let failed = self
            .failed_starts
            .iter()
            .map(|f| (f.dir.clone(), f.name.clone()));
        runs.chain(failed).collect()
    }

    /// The VM tabs, each a selectable name with × beside it.
    pub(super) fn tabs_ui(&mut self, ui: &mut egui::Ui) {
        for (dir, name) in self.tabs() {
            ui.selectable_value(&mut self.view, View::Vm(dir.clone()), &name);
            let close = ui.small_button("×");
            // Screen readers (and the UI tests) hear which tab the button closes.
            let label = format!("Close the tab of {name}");
            close
                .widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, label.clone()));
            if close
                .on_hover_text(format!("Close the tab of {name}"))
                .clicked()
            {
                self.close_tab(&dir);
            }
        }
    }

    /// Closes the tab of the VM in `dir`, or asks first while the VM runs.
    pub fn close_tab(&mut self, dir: &Path) {
        if self.running.iter().any(|r| r.dir == dir && r.is_running()) {
            self.confirm_close = Some(dir.to_path_buf());
            return;
        }
        self.remove_tab(dir);
    }

    fn remove_tab(&mut self, dir: &Path) {
        self.running.retain(|r| r.dir != dir);
        self.failed_starts.retain(|f| f.dir != dir);
        if self.view == View::Vm(dir.to_path_buf()) {
            self.view = View::Library;
        }
    }

    /// Closes the tabs whose VM ended after the user closed them, and follows the library:
    /// renamed VMs' tabs take the new name, and deleted VMs' tabs close unless they still run.
    pub(super) fn follow_library(&mut self) {
        let closed: Vec<PathBuf> = self
            .running
            .iter()
            .filter(|r| r.close_when_ended && !r.is_running())
            .map(|r| r.dir.clone())
            .collect();
        for dir in closed {
            self.remove_tab(&dir);
        }
        let mut gone = Vec::new();
        let entries = &self.entries;
        let find = |dir: &Path| {
            entries.iter().find_map(|e| match e {
                Entry::Vm(vm) if vm.dir == dir => Some(vm.config.name.clone()),
                Entry::Broken { dir: d, .. } if d == dir => Some(String::new()),
                _ => None,
            })
        };
        for vm in &mut self.running {
            match find(&vm.dir) {
                Some(name) if !name.is_empty() => vm.name = name,
                Some(_) => {}
                None if vm.is_running() => {}
                None => gone.push(vm.dir.clone()),
            }
        }
        for failed in &mut self.failed_starts {
            match find(&failed.dir) {
                Some(name) if !name.is_empty() => failed.name = name,
                Some(_) => {}
                None => gone.push(failed.dir.clone()),
            }
        }
        for dir in gone {
            self.remove_tab(&dir);
        }
    }

    /// The question asked when the tab of a running VM is closed.
    pub(super) fn close_dialog(&mut self, ctx: &egui::Context) {
        let Some(dir) = self.confirm_close.clone() else {
            return;
        };
        let Some(vm) = self
            .running
            .iter_mut()
            .find(|r| r.dir == dir && r.is_running())
        else {
            // It ended meanwhile: nothing to ask.
            self.confirm_close = None;
            self.remove_tab(&dir);
            return;
        };
        let name = vm.name.clone();
        let mut answered = false;
        let modal = egui::Modal::new(egui::Id::unique("close-vm-tab")).show(ctx, |ui| {
            ui.heading(format!("{name} is running"));
            ui.label("Its tab closes once the VM is off.");
            ui.horizontal(|ui| {
                if ui.button("Power off and close").clicked() {
                    vm.power_off();
                    vm.close_when_ended = true;
                    answered = true;
                }
                if ui.button("Force off and close").clicked() {
                    vm.force_off();
                    vm.close_when_ended = true;
                    answered = true;
                }
                if ui.button("Keep running").clicked() {
                    answered = true;
                }
            });
        });
        if answered || modal.should_close() {
            self.confirm_close = None;
        }
    }

    /// The window title's VM name for the tab of `dir`.
    pub(super) fn tab_name(&self, dir: &Path) -> Option<String> {
        self.tabs()
            .into_iter()
            .find_map(|(d, name)| (d == dir).then_some(name))
    }
}
