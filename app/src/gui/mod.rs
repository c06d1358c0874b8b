//! The desktop app (`cove` with no subcommand), its shell: the app's state, the top bar (the
//! Library and running-VM tabs, New VM, the last message) and the choice of what the central
//! area shows — the library ([`library_view`]), the creation wizard ([`wizard`]) or a running
//! VM's tab ([`running`]) — with the dialogs ([`dialogs`]) over them. Quitting with VMs
//! running asks whether to power them off or force them off.

mod dialogs;
mod disk_copy;
mod file_picker;
mod library_changes;
mod library_scan;
mod library_view;
mod native;
mod running;
mod thumbnails;
pub mod validation;
pub mod wizard;

pub use native::run;

use crate::library::{Entry, Library, VmEntry};
use crate::settings::Settings;
use crate::vm_controls::GRAB_HINT;
use dialogs::EditDialog;
use disk_copy::DiskCopy;
use running::RunningVm;
use std::time::{Duration, Instant};
use thumbnails::Thumbnails;
use validation::HostLimits;
use wizard::Wizard;

/// What the central area shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum View {
    Library,
    Vm(String),
}

/// The whole app's state; `ui` draws it (eframe calls it, and so do the UI tests).
pub struct CoveApp {
    library: Library,
    entries: Vec<Entry>,
    pub view: View,
    wizard: Option<Wizard>,
    edit: Option<EditDialog>,
    confirm_delete: Option<String>,
    /// The last deleted VM, restorable until the instant given.
    undo_delete: Option<(crate::library::Trashed, Instant)>,
    running: Vec<RunningVm>,
    /// Disk copies in progress, any number at once; each holds its VM's run lock.
    copies: Vec<DiskCopy>,
    /// Who holds the run lock of VMs not running in this app (`cove start`, another app).
    elsewhere: std::collections::HashMap<std::path::PathBuf, crate::library::run_lock::Holder>,
    /// Each VM's OS name by folder, worked out when the library is read (never while drawing).
    os_names: std::collections::HashMap<std::path::PathBuf, String>,
    /// OS names of ISOs already looked up.
    iso_names: library_scan::IsoNames,
    quit_asked: bool,
    quitting_since: Option<Instant>,
    pub message: Option<String>,
    limits: HostLimits,
    render_state: Option<egui_wgpu::RenderState>,
    thumbnails: Thumbnails,
    /// The background rescans of the library, in the desktop app.
    watcher: Option<library_scan::Watcher>,
    settings: Settings,
    settings_path: Option<std::path::PathBuf>,
}

impl CoveApp {
    /// An app that reads and writes its settings at `settings_path`.
    pub fn new(
        library: Library,
        render_state: Option<egui_wgpu::RenderState>,
        limits: HostLimits,
        settings_path: Option<std::path::PathBuf>,
    ) -> Self {
        let mut app = Self {
            library,
            entries: Vec::new(),
            view: View::Library,
            wizard: None,
            edit: None,
            confirm_delete: None,
            undo_delete: None,
            running: Vec::new(),
            copies: Vec::new(),
            elsewhere: Default::default(),
            os_names: Default::default(),
            iso_names: Default::default(),
            quit_asked: false,
            quitting_since: None,
            message: None,
            limits,
            render_state,
            thumbnails: Thumbnails::default(),
            watcher: None,
            settings: Settings::load(settings_path.as_deref()),
            settings_path,
        };
        app.refresh();
        app
    }

    /// Re-reads the library folder.
    pub fn refresh(&mut self) {
        let scan = library_scan::scan(&self.library, &mut self.iso_names);
        self.apply(scan);
    }

    fn apply(&mut self, scan: library_scan::Scan) {
        self.entries = scan.entries;
        self.elsewhere = scan.elsewhere;
        self.os_names = scan.os_names;
        if let Some(e) = scan.error {
            self.message = Some(e);
        }
    }

    /// Rescans in the background from now on (the desktop app; UI tests scan on demand).
    pub fn watch_library(&mut self, ctx: &egui::Context) {
        let ctx = ctx.clone();
        self.watcher =
            library_scan::Watcher::start(self.library.root(), move || ctx.request_repaint());
    }

    fn names(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|e| match e {
                Entry::Vm(vm) => Some(vm.config.name.clone()),
                Entry::Broken { .. } => None,
            })
            .collect()
    }

    fn running(&self, name: &str) -> Option<&RunningVm> {
        self.running
            .iter()
            .find(|r| r.name == name && r.is_running())
    }

    /// VMs still running.
    pub fn running_count(&self) -> usize {
        self.running.iter().filter(|r| r.is_running()).count()
    }

    fn start(&mut self, entry: &VmEntry, ctx: &egui::Context) {
        if self.running(&entry.config.name).is_some() {
            self.view = View::Vm(entry.config.name.clone());
            return;
        }
        self.running.retain(|r| r.name != entry.config.name);
        let limits_error = self
            .limits
            .vm_error(u32::from(entry.config.cpus), entry.config.memory.bytes());
        if let Some(e) = limits_error {
            self.message = Some(format!("cannot start {}: {e}", entry.config.name));
            return;
        }
        let lock = match self.library.lock(
            entry,
            "the Cove app",
            crate::library::run_lock::Activity::Running,
        ) {
            Ok(lock) => lock,
            Err(e) => {
                self.message = Some(format!("cannot start {}: {e}", entry.config.name));
                return;
            }
        };
        match RunningVm::start(entry, ctx, lock) {
            Ok(mut vm) => {
                vm.default_scale = self.settings.scale_mode();
                self.view = View::Vm(vm.name.clone());
                self.running.push(vm);
            }
            Err(e) => self.message = Some(format!("cannot start {}: {e}", entry.config.name)),
        }
    }

    /// Asks the user about running VMs when the window is closed; returns whether the app may
    /// close now.
    pub fn may_close(&mut self) -> bool {
        if self.running_count() == 0 {
            return true;
        }
        self.quit_asked = true;
        false
    }

    /// Draws the app.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        let restart: Vec<String> = self
            .running
            .iter_mut()
            .filter_map(|vm| std::mem::take(&mut vm.start_requested).then(|| vm.name.clone()))
            .collect();
        for name in restart {
            match self.library.find(&name) {
                Ok(entry) => self.start(&entry, &ctx),
                Err(e) => self.message = Some(e.to_string()),
            }
        }
        for vm in &mut self.running {
            vm.poll();
            if let Some(mode) = vm.scale_changed.take() {
                self.settings.set_scale_mode(mode);
                self.settings.save(self.settings_path.as_deref());
            }
        }
        if let Some(scan) = self.watcher.as_ref().and_then(|w| w.latest()) {
            self.apply(scan);
        }
        self.poll_copy();
        egui::Panel::top("cove-top").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.heading("Cove");
                ui.separator();
                ui.selectable_value(&mut self.view, View::Library, "Library");
                let names: Vec<String> = self.running.iter().map(|r| r.name.clone()).collect();
                for name in names {
                    ui.selectable_value(&mut self.view, View::Vm(name.clone()), name);
                }
                ui.separator();
                if ui.button("New VM").clicked() && self.wizard.is_none() {
                    self.wizard = Some(Wizard::new(
                        self.names(),
                        self.limits,
                        self.library.root().to_path_buf(),
                    ));
                }
                if let Some(message) = &self.message {
                    ui.separator();
                    ui.label(message);
                }
            });
        });
        self.dialogs(&ctx);
        if let Some(wizard) = &mut self.wizard {
            let outcome = egui::CentralPanel::default()
                .show(ui, |ui| wizard.ui(ui))
                .inner;
            self.finish_wizard(outcome);
            return;
        }
        match self.view.clone() {
            View::Library => {
                egui::CentralPanel::default().show(ui, |ui| self.library_ui(ui));
            }
            View::Vm(name) => {
                let render_state = self.render_state.clone();
                egui::CentralPanel::default().show(ui, |ui| {
                    match self.running.iter_mut().find(|r| r.name == name) {
                        Some(vm) => vm.ui(ui, render_state.as_ref()),
                        None => {
                            ui.label(format!("{name} is not running."));
                        }
                    }
                });
            }
        }
        if self.running_count() > 0 || !self.copies.is_empty() || self.undo_delete.is_some() {
            ctx.request_repaint_after(Duration::from_millis(250));
        }
    }

    /// "NAME — Cove", with the grab state, while a VM's tab is shown; "Cove" otherwise.
    pub fn window_title(&self) -> String {
        match &self.view {
            View::Vm(name) => {
                let grabbed = self.running.iter().any(|r| &r.name == name && r.grabbed());
                if grabbed {
                    format!("{name} — Cove ({GRAB_HINT})")
                } else {
                    format!("{name} — Cove")
                }
            }
            View::Library => "Cove".into(),
        }
    }
}

#[cfg(test)]
mod tests;
