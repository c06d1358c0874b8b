//! The desktop app (`cove` with no subcommand): the VM library with live thumbnails, the
//! creation wizard, edit and delete, and a tab per running VM with its display, serial
//! console, toolbar and status bar. Quitting with VMs running asks whether to power them off
//! or force them off.

mod disk_copy;
mod file_picker;
mod library_scan;
mod running;
mod thumbnails;
pub mod validation;
pub mod wizard;

use crate::library::{Entry, Library, VmEntry};
use crate::settings::Settings;
use disk_copy::DiskCopy;
use running::RunningVm;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use thumbnails::Thumbnails;
use validation::HostLimits;
use wizard::{Outcome, Wizard};

/// What the central area shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum View {
    Library,
    Vm(String),
}

/// Edits of a stopped VM.
struct EditDialog {
    original: String,
    entry: VmEntry,
    cpus: u32,
    memory_mib: u64,
    error: Option<String>,
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

    fn finish_wizard(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Continue => {}
            Outcome::Cancel => self.wizard = None,
            Outcome::Create {
                config,
                new_disk_bytes,
                copy_disk,
            } => {
                let name = config.name.clone();
                match self.library.create(config, new_disk_bytes) {
                    Ok(entry) => {
                        self.wizard = None;
                        self.message = Some(format!("created {name}"));
                        if let Some(source) = copy_disk {
                            match self.library.lock(
                                &entry,
                                "the Cove app",
                                crate::library::run_lock::Activity::CopyingDisk,
                            ) {
                                Ok(lock) => self.copies.push(DiskCopy::start(source, &entry, lock)),
                                Err(e) => self.message = Some(format!("cannot copy the disk: {e}")),
                            }
                        }
                        self.refresh();
                    }
                    Err(e) => self.message = Some(format!("cannot create {name}: {e}")),
                }
            }
        }
    }

    /// Finishes copies that ended: each adds its disk to what its VM's `vm.toml` says now, so
    /// edits made meanwhile survive.
    fn poll_copy(&mut self) {
        let mut finished = Vec::new();
        self.copies.retain(|copy| match copy.poll() {
            Some(result) => {
                finished.push((copy.name().to_string(), copy.dir().to_path_buf(), result));
                false
            }
            None => true,
        });
        for (name, dir, result) in finished {
            let outcome = result.and_then(|disk| {
                self.library
                    .add_first_disk(&dir, disk)
                    .map_err(|e| e.to_string())
            });
            self.message = Some(match outcome {
                Ok(()) => format!("copied the disk of {name}"),
                Err(e) => format!("copying the disk of {name} failed: {e}"),
            });
            self.refresh();
        }
        if let Some((trashed, until)) = &self.undo_delete {
            if Instant::now() >= *until {
                if let Err(e) = crate::library::trash::purge(&trashed.path) {
                    log::warn!("cannot empty the trash: {e}");
                }
                self.undo_delete = None;
            }
        }
    }

    fn library_ui(&mut self, ui: &mut egui::Ui) {
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
        let mut undo = false;
        if let Some((trashed, _)) = &self.undo_delete {
            ui.horizontal(|ui| {
                ui.label(format!("Deleted {}.", trashed.name));
                undo = ui.button("Undo").clicked();
            });
        }
        if undo {
            if let Some((trashed, _)) = self.undo_delete.take() {
                self.message = Some(match self.library.restore(&trashed) {
                    Ok(_) => format!("restored {}", trashed.name),
                    Err(e) => format!("cannot restore {}: {e}", trashed.name),
                });
                self.refresh();
            }
        }
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
                                let running = self
                                    .running
                                    .iter()
                                    .find(|r| r.name == vm.config.name && r.is_running())
                                    .map(|r| {
                                        (r.controller.status().qmp_name(), r.frames().cloned())
                                    });
                                let live = running.as_ref().and_then(|(_, f)| f.clone());
                                self.thumbnails.show(ui, &ctx, vm, live.as_deref());
                                ui.label(&vm.config.name);
                                ui.label(
                                    self.os_names
                                        .get(&vm.dir)
                                        .map_or("Unknown OS", String::as_str),
                                );
                                let copying = self.copies.iter().any(|c| c.dir() == vm.dir);
                                let elsewhere = self.elsewhere.get(&vm.dir);
                                let busy = running.is_some() || copying || elsewhere.is_some();
                                ui.label(match (&running, elsewhere) {
                                    (Some((status, _)), _) => status.to_string(),
                                    (None, Some(holder)) => holder.describe(),
                                    (None, None) if copying => "copying its disk".into(),
                                    (None, None) => "stopped".into(),
                                });
                                ui.label(vm.config.cpus.to_string());
                                ui.label(vm.config.memory.to_string());
                                ui.horizontal(|ui| {
                                    if ui
                                        .add_enabled(
                                            !copying && elsewhere.is_none(),
                                            egui::Button::new(if running.is_some() {
                                                "Show"
                                            } else {
                                                "Start"
                                            }),
                                        )
                                        .clicked()
                                    {
                                        start = Some(vm.clone());
                                    }
                                    if ui
                                        .add_enabled(!busy, egui::Button::new("Edit"))
                                        .on_disabled_hover_text(
                                            "Settings are locked while the VM runs or its disk \
                                             is being copied.",
                                        )
                                        .clicked()
                                    {
                                        self.edit = Some(EditDialog {
                                            original: vm.config.name.clone(),
                                            entry: vm.clone(),
                                            cpus: u32::from(vm.config.cpus),
                                            memory_mib: vm.config.memory.bytes() >> 20,
                                            error: None,
                                        });
                                    }
                                    if ui
                                        .add_enabled(!busy, egui::Button::new("Delete"))
                                        .on_disabled_hover_text(
                                            "A running VM, or one whose disk is being copied, \
                                             cannot be deleted.",
                                        )
                                        .clicked()
                                    {
                                        self.confirm_delete = Some(vm.config.name.clone());
                                    }
                                });
                            }
                            Entry::Broken { dir, error } => {
                                ui.colored_label(egui::Color32::from_rgb(0xd0, 0x30, 0x30), "!");
                                ui.label(
                                    dir.file_name()
                                        .map(|n| n.to_string_lossy().into_owned())
                                        .unwrap_or_default(),
                                );
                                ui.label("");
                                ui.colored_label(
                                    egui::Color32::from_rgb(0xd0, 0x30, 0x30),
                                    "broken",
                                );
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
                        ui.end_row();
                    }
                });
        });
        self.entries = entries;
        if let Some(vm) = start {
            self.start(&vm, &ctx);
        }
    }

    fn dialogs(&mut self, ctx: &egui::Context) {
        if let Some(name) = self.confirm_delete.clone() {
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
                        self.finish_pending_delete();
                        match self.library.delete(&name, "the Cove app") {
                            Ok(trashed) => {
                                self.message = Some(format!("deleted {name}"));
                                self.undo_delete =
                                    Some((trashed, Instant::now() + UNDO_DELETE_FOR));
                            }
                            Err(e) => self.message = Some(e.to_string()),
                        }
                        self.confirm_delete = None;
                        self.refresh();
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
        let names = self.names();
        if let Some(edit) = &mut self.edit {
            let mut close = false;
            let mut saved = None;
            egui::Window::new("Edit VM")
                .collapsible(false)
                .show(ctx, |ui| {
                    egui::Grid::new("edit").num_columns(2).show(ui, |ui| {
                        let name_label = ui.label("Name");
                        ui.text_edit_singleline(&mut edit.entry.config.name)
                            .labelled_by(name_label.id);
                        ui.end_row();
                        let label = ui.label("CPUs");
                        ui.add(egui::DragValue::new(&mut edit.cpus).range(0..=255))
                            .labelled_by(label.id);
                        ui.end_row();
                        let label = ui.label("Memory (MiB)");
                        ui.add(egui::DragValue::new(&mut edit.memory_mib).speed(64))
                            .labelled_by(label.id);
                        ui.end_row();
                        ui.label("Display");
                        ui.checkbox(
                            &mut edit.entry.config.display.enabled,
                            "virtio GPU, keyboard and tablet",
                        );
                        ui.end_row();
                    });
                    if let Some(error) = &edit.error {
                        ui.colored_label(egui::Color32::from_rgb(0xd0, 0x30, 0x30), error);
                    }
                    ui.horizontal(|ui| {
                        if ui.button("Save").clicked() {
                            saved = Some(());
                        }
                        if ui.button("Cancel").clicked() {
                            close = true;
                        }
                    });
                });
            if saved.is_some() {
                let others: Vec<String> =
                    names.into_iter().filter(|n| *n != edit.original).collect();
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
                                self.message = Some(format!("saved {}", edit.entry.config.name));
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
        if self.quit_asked {
            egui::Window::new("Quit Cove")
                .collapsible(false)
                .show(ctx, |ui| {
                    ui.label(format!("{} VM(s) are running.", self.running_count()));
                    ui.horizontal(|ui| {
                        if ui.button("Power them off").clicked() {
                            for vm in self.running.iter().filter(|r| r.is_running()) {
                                vm.controller.power_down();
                            }
                            self.quitting_since = Some(Instant::now());
                            self.quit_asked = false;
                        }
                        if ui.button("Force them off").clicked() {
                            for vm in self.running.iter().filter(|r| r.is_running()) {
                                vm.controller.quit();
                            }
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
            } else if since.elapsed() > crate::vm_controls::FORCE_OFF_AFTER {
                for vm in self.running.iter().filter(|r| r.is_running()) {
                    vm.controller.quit();
                }
            }
        }
    }
}

/// How long a delete can be undone.
const UNDO_DELETE_FOR: Duration = Duration::from_secs(10);

impl CoveApp {
    /// "NAME — Cove", with the grab state, while a VM's tab is shown; "Cove" otherwise.
    pub fn window_title(&self) -> String {
        match &self.view {
            View::Vm(name) => {
                let grabbed = self.running.iter().any(|r| &r.name == name && r.grabbed());
                if grabbed {
                    format!("{name} — Cove (input grabbed, Ctrl+Alt+G releases)")
                } else {
                    format!("{name} — Cove")
                }
            }
            View::Library => "Cove".into(),
        }
    }

    /// Purges the previous delete now (a new one replaces its undo).
    fn finish_pending_delete(&mut self) {
        if let Some((trashed, _)) = self.undo_delete.take() {
            if let Err(e) = crate::library::trash::purge(&trashed.path) {
                log::warn!("cannot empty the trash: {e}");
            }
        }
    }
}

struct GuiApp {
    app: CoveApp,
    /// The window title last set.
    title: String,
    started: Instant,
    first_frame: bool,
    open: Option<String>,
}

impl eframe::App for GuiApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        if !self.first_frame {
            self.first_frame = true;
            log::info!(
                "GUI: first frame after {} ms",
                self.started.elapsed().as_millis()
            );
            if let Some(name) = self.open.take() {
                match self.app.library.find(&name) {
                    Ok(entry) => self.app.start(&entry, &ctx),
                    Err(e) => self.app.message = Some(e.to_string()),
                }
            }
        }
        if ctx.input(|i| i.viewport().close_requested()) && !self.app.may_close() {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
        }
        self.app.ui(ui);
        let title = self.app.window_title();
        if title != self.title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
    }
}

/// Opens the app window on the library in `data_dir`, starting the VM `open` if given.
pub fn run(data_dir: Option<&Path>, open: Option<&str>) -> ExitCode {
    let library = match Library::open(data_dir) {
        Ok(library) => {
            crate::library::trash::purge_all(library.root());
            library
        }
        Err(e) => {
            eprintln!("cove: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Cove")
            .with_app_id("cove")
            .with_inner_size([1100.0, 800.0]),
        renderer: eframe::Renderer::Wgpu,
        ..Default::default()
    };
    let started = Instant::now();
    let open = open.map(str::to_string);
    let settings_path = Settings::path(data_dir);
    let result = eframe::run_native(
        "cove",
        options,
        Box::new(move |cc| {
            let mut app = CoveApp::new(
                library,
                cc.wgpu_render_state.clone(),
                HostLimits::detect(),
                settings_path,
            );
            app.watch_library(&cc.egui_ctx);
            Ok(Box::new(GuiApp {
                title: "Cove".into(),
                app,
                started,
                first_frame: false,
                open,
            }))
        }),
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cove: cannot open the app window: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests;
