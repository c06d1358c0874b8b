//! The desktop app (`cove` with no subcommand), its shell: the app's state, the top bar (the
//! Library and VM tabs ([`tabs`]), New VM, the last message ([`message`]), all wrapping at
//! narrow widths) and the choice of what the central area shows — the library
//! ([`library_view`]), the creation wizard ([`wizard`]) or a VM's tab ([`running`]) — with
//! the dialogs ([`dialogs`]) over them. Quitting with VMs running asks whether to power them
//! off or force them off.

mod dialogs;
mod disk_copy;
mod file_picker;
mod library_changes;
mod library_scan;
mod library_view;
mod message;
mod native;
mod remote;
mod running;
mod tabs;
mod thumbnails;
pub mod validation;
pub mod wizard;

pub use native::run;

use crate::library::{Entry, Library, VmEntry};
use crate::settings::Settings;
use crate::vm_controls::GRAB_HINT;
use dialogs::EditDialog;
use disk_copy::DiskCopy;
use message::{About, Message};
use running::RunningVm;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tabs::FailedStart;
use thumbnails::Thumbnails;
use validation::HostLimits;
use wizard::Wizard;

/// What the central area shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum View {
    Library,
    /// The tab of the VM in this folder.
    Vm(PathBuf),
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
    /// Tabs of VMs whose start failed before they ran; each goes at the VM's next start.
    failed_starts: Vec<FailedStart>,
    /// The running VM whose tab the user asked to close (the question is open).
    confirm_close: Option<PathBuf>,
    /// Disk copies in progress, any number at once; each holds its VM's run lock.
    copies: Vec<DiskCopy>,
    /// Who holds the run lock of VMs not running in this app (`cove start`, another app).
    elsewhere: std::collections::HashMap<std::path::PathBuf, crate::library::run_lock::Holder>,
    /// Each VM's OS name by folder, worked out when the library is read (never while drawing).
    os_names: std::collections::HashMap<std::path::PathBuf, String>,
    /// Commands in flight to VMs other Cove processes run.
    remote: remote::Remote,
    /// When each VM's saved thumbnail was written, as the background scan saw it.
    thumbnail_times: std::collections::HashMap<std::path::PathBuf, std::time::SystemTime>,
    /// OS names of ISOs already looked up.
    iso_names: library_scan::IsoNames,
    /// VM processes this app tried to attach to (by pid), so each is tried once.
    attach_tried: std::collections::HashSet<u32>,
    quit_asked: bool,
    quitting_since: Option<Instant>,
    pub message: Option<Message>,
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
            failed_starts: Vec::new(),
            confirm_close: None,
            copies: Vec::new(),
            elsewhere: Default::default(),
            os_names: Default::default(),
            thumbnail_times: Default::default(),
            remote: Default::default(),
            iso_names: Default::default(),
            attach_tried: Default::default(),
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
        self.thumbnail_times = scan.thumbnail_times;
        let read = scan.error.is_none();
        if let Some(e) = scan.error {
            self.warn(e, About::Library);
        }
        self.follow_library();
        self.prune_message(Some(read));
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

    fn running(&self, dir: &Path) -> Option<&RunningVm> {
        self.running.iter().find(|r| r.dir == dir && r.is_running())
    }

    /// Why the VM in `dir` failed, when its last start or run did (until its next start).
    fn failure(&self, dir: &Path) -> Option<&str> {
        let failed = self.failed_starts.iter().find(|f| f.dir == dir);
        failed.map(|f| f.error.as_str()).or_else(|| {
            self.running
                .iter()
                .find(|r| r.dir == dir)
                .and_then(|r| r.failure())
        })
    }

    /// VMs still running.
    pub fn running_count(&self) -> usize {
        self.running.iter().filter(|r| r.is_running()).count()
    }

    /// Starts the VM of `entry` in a tab of its own (or shows its tab while it runs). A start
    /// that fails shows as a banner in the tab, and the library says "failed".
    fn start(&mut self, entry: &VmEntry, ctx: &egui::Context) {
        let dir = entry.dir.clone();
        self.view = View::Vm(dir.clone());
        if self.running(&dir).is_some() {
            return;
        }
        // The last run's outcome and its tab give way to this start's.
        let at = self
            .running
            .iter()
            .position(|r| r.dir == dir)
            .unwrap_or(self.running.len());
        self.running.retain(|r| r.dir != dir);
        self.failed_starts.retain(|f| f.dir != dir);
        let started = self.start_vm(entry, ctx);
        match started {
            Ok(mut vm) => {
                vm.default_scale = self.settings.scale_mode();
                self.running.insert(at.min(self.running.len()), vm);
                self.prune_message(None);
            }
            Err(error) => self.failed_starts.push(FailedStart {
                dir,
                name: entry.config.name.clone(),
                error,
            }),
        }
    }

    fn start_vm(&self, entry: &VmEntry, ctx: &egui::Context) -> Result<RunningVm, String> {
        let limits = self
            .limits
            .vm_error(u32::from(entry.config.cpus), entry.config.memory.bytes());
        if let Some(e) = limits {
            return Err(e);
        }
        // The VM process takes the run lock itself; asking first gives the answer at once.
        if let Some(holder) = crate::library::run_lock::holder(&entry.dir) {
            return Err(crate::library::run_lock::LockError::Held(Some(holder)).to_string());
        }
        RunningVm::start(entry, ctx)
    }

    /// Attaches to VM processes that run library VMs without an app (an earlier run of the
    /// app died or quit): each gets its tab back. Each process is tried once.
    fn reattach(&mut self, ctx: &egui::Context) {
        let candidates: Vec<(PathBuf, crate::library::run_lock::Holder)> = self
            .elsewhere
            .iter()
            .filter(|(dir, holder)| {
                holder.program == crate::vm_host::PROGRAM
                    && holder.link.is_some()
                    && !self.attach_tried.contains(&holder.pid)
                    && !self
                        .running
                        .iter()
                        .any(|r| &&r.dir == dir && r.is_running())
            })
            .map(|(dir, holder)| (dir.clone(), holder.clone()))
            .collect();
        for (dir, holder) in candidates {
            self.attach_tried.insert(holder.pid);
            let entry = self.entries.iter().find_map(|e| match e {
                Entry::Vm(vm) if vm.dir == dir => Some(vm.clone()),
                _ => None,
            });
            let (Some(entry), Some(link)) = (entry, holder.link) else {
                continue;
            };
            match RunningVm::attach(&entry, link, ctx) {
                Ok(mut vm) => {
                    log::info!(
                        "attached to the VM process of {} (pid {})",
                        vm.name,
                        holder.pid
                    );
                    vm.default_scale = self.settings.scale_mode();
                    self.running.retain(|r| r.dir != dir);
                    self.running.push(vm);
                }
                Err(e) => log::warn!("cannot attach to {}: {e}", dir.display()),
            }
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
        let restart: Vec<PathBuf> = self
            .running
            .iter_mut()
            .filter_map(|vm| std::mem::take(&mut vm.start_requested).then(|| vm.dir.clone()))
            .collect();
        for dir in restart {
            self.restart(&dir, &ctx);
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
        self.reattach(&ctx);
        // A VM process another app shows is not ours to show.
        self.running.retain(|r| !r.held_elsewhere);
        self.poll_copy();
        for outcome in self.remote.finished() {
            match outcome.result {
                Ok(done) => self.say(done),
                Err(why) => {
                    let about = self.about_vm(&outcome.dir);
                    self.warn(why, about);
                }
            }
        }
        self.follow_library();
        self.prune_message(None);
        egui::Panel::top("cove-top").show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                ui.heading("Cove");
                ui.separator();
                ui.selectable_value(&mut self.view, View::Library, "Library");
                self.tabs_ui(ui);
                ui.separator();
                if ui.button("New VM").clicked() && self.wizard.is_none() {
                    self.wizard = Some(Wizard::new(
                        self.names(),
                        self.limits,
                        self.library.root().to_path_buf(),
                    ));
                }
                self.message_ui(ui);
            });
        });
        self.dialogs(&ctx);
        self.close_dialog(&ctx);
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
            View::Vm(dir) => {
                let render_state = self.render_state.clone();
                egui::CentralPanel::default().show(ui, |ui| {
                    if let Some(vm) = self.running.iter_mut().find(|r| r.dir == dir) {
                        vm.ui(ui, render_state.as_ref());
                    } else if let Some(failed) = self.failed_starts.iter().find(|f| f.dir == dir) {
                        let again = ui.button("Start").clicked();
                        running::failure_banner(ui, &failed.name, &failed.error);
                        if again {
                            self.restart(&dir, &ctx);
                        }
                    } else {
                        self.view = View::Library;
                    }
                });
            }
        }
        if self.running_count() > 0 || !self.copies.is_empty() || self.undo_delete.is_some() {
            ctx.request_repaint_after(Duration::from_millis(250));
        }
    }

    /// Starts the VM in `dir` again (from the tab of a failed start).
    fn restart(&mut self, dir: &Path, ctx: &egui::Context) {
        let entry = self.entries.iter().find_map(|e| match e {
            Entry::Vm(vm) if vm.dir == dir => Some(vm.clone()),
            _ => None,
        });
        match entry {
            Some(entry) => self.start(&entry, ctx),
            None => self.warn("the VM is no longer in the library", About::Nothing),
        }
    }

    /// "NAME — Cove", with the grab state, while a VM's tab is shown; "Cove" otherwise.
    pub fn window_title(&self) -> String {
        match &self.view {
            View::Vm(dir) => {
                let name = self.tab_name(dir).unwrap_or_default();
                let grabbed = self.running.iter().any(|r| &r.dir == dir && r.grabbed());
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
mod process_tests;
#[cfg(test)]
mod tab_tests;
#[cfg(test)]
mod tests;
