//! A VM running inside the app: its thread, its control API, its display view and serial
//! console (with scrollback and input), and the tab that shows them with the shared toolbar
//! of [`crate::vm_controls`] and a status bar.

use crate::library::run_lock::RunLock;
use crate::library::VmEntry;
use crate::vm_controls::{screenshot, Target, VmControls, GRAB_HINT};
use display::{DisplayView, FrameSink, Frames, ScaleMode};
use emu::control::screendump::write_png;
use emu::control::VmController;
use emu::machine::{ConsoleOutput, Vm, VmExit};
use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Serial output kept for the console tab.
const SCROLLBACK_BYTES: usize = 1 << 20;

#[derive(Default)]
struct Scrollback {
    bytes: VecDeque<u8>,
    changed: bool,
}

struct ScrollbackWriter(Arc<Mutex<Scrollback>>, egui::Context);

impl Write for ScrollbackWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.bytes.extend(buf.iter().filter(|b| **b != b'\r'));
        let excess = s.bytes.len().saturating_sub(SCROLLBACK_BYTES);
        s.bytes.drain(..excess);
        s.changed = true;
        drop(s);
        self.1.request_repaint();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tab {
    Display,
    Console,
}

/// One running VM.
pub struct RunningVm {
    pub name: String,
    pub controller: VmController,
    frames: Option<Arc<Frames>>,
    view: Option<DisplayView>,
    scrollback: Arc<Mutex<Scrollback>>,
    console_text: String,
    input: String,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<String>>,
    /// How the VM ended, once it has.
    pub ended: Option<String>,
    tab: Tab,
    /// The toolbar, and the line it last had to say (shown in the status bar).
    controls: VmControls,
    thumbnail: std::path::PathBuf,
    /// The scaling mode new views start with, and a change the user made (to remember).
    pub default_scale: ScaleMode,
    pub scale_changed: Option<ScaleMode>,
    /// The user asked to start this (ended) VM again.
    pub start_requested: bool,
    /// The VM's control socket (QMP), which other Cove processes find through the run lock.
    control: Option<emu::control::qmp::QmpServer>,
    /// Held while the VM runs.
    run_lock: Option<RunLock>,
}

impl RunningVm {
    /// Starts the VM in `entry` on its own thread.
    pub fn start(entry: &VmEntry, ctx: &egui::Context, mut lock: RunLock) -> Result<Self, String> {
        entry.config.validate()?;
        let scrollback = Arc::new(Mutex::new(Scrollback::default()));
        let console = ConsoleOutput::new(ScrollbackWriter(scrollback.clone(), ctx.clone()));
        let mut vm = Vm::new(entry.config.clone(), console);
        let frames = vm.display().map(|port| {
            let frames = Frames::new();
            port.set_sink(Arc::new(FrameSink(frames.clone())));
            let repaint = ctx.clone();
            frames.set_waker(move || repaint.request_repaint());
            frames
        });
        let controller = vm.controller();
        let socket = crate::library::run_lock::control_socket_path(&entry.dir);
        let events = controller.clone();
        let control = match emu::control::qmp::QmpServer::start(
            &socket,
            Arc::new(controller.clone()),
            Arc::new(move || events.subscribe()),
        ) {
            Ok(server) => {
                lock.set_control(Some(socket));
                Some(server)
            }
            Err(e) => {
                log::warn!(
                    "{}: no control socket at {}: {e}",
                    entry.config.name,
                    socket.display()
                );
                None
            }
        };
        let done = Arc::new(AtomicBool::new(false));
        let vm_done = done.clone();
        let repaint = ctx.clone();
        let name = entry.config.name.clone();
        let thread = std::thread::Builder::new()
            .name(format!("cove-vm-{name}"))
            .spawn(move || {
                let ended = match vm.run() {
                    Ok(VmExit::PowerOff) => "powered off".to_string(),
                    Ok(VmExit::Rebooted) => "rebooted".to_string(),
                    Ok(VmExit::Stopped(_)) => "stopped".to_string(),
                    Ok(VmExit::Failed(report)) => format!("failed: {report}"),
                    Err(e) => format!("could not start: {e}"),
                };
                vm_done.store(true, Ordering::Release);
                repaint.request_repaint();
                ended
            })
            .map_err(|e| format!("cannot start a thread for the VM: {e}"))?;
        Ok(Self {
            name,
            controller,
            frames,
            view: None,
            scrollback,
            console_text: String::new(),
            input: String::new(),
            done,
            thread: Some(thread),
            ended: None,
            tab: Tab::Display,
            // Screenshots go next to the VM, in its folder.
            controls: VmControls::new(screenshot::Place::new(&entry.dir, "screenshot-"), true),
            thumbnail: entry.dir.join(crate::library::THUMBNAIL_FILE),
            default_scale: ScaleMode::Fit,
            scale_changed: None,
            start_requested: false,
            control,
            run_lock: Some(lock),
        })
    }

    /// Notices the VM's end, and saves its last screen as the library thumbnail.
    pub fn poll(&mut self) {
        if self.ended.is_none() && self.done.load(Ordering::Acquire) {
            if let Some(thread) = self.thread.take() {
                self.ended = Some(
                    thread
                        .join()
                        .unwrap_or_else(|_| "the VM thread panicked".into()),
                );
                self.save_thumbnail();
                if let Some(server) = self.control.take() {
                    server.shutdown();
                }
                self.run_lock = None;
            }
        }
    }

    pub fn is_running(&self) -> bool {
        self.ended.is_none()
    }

    /// Saves the screen the VM last showed as the library thumbnail.
    fn save_thumbnail(&self) {
        if let Some((w, h, rgba)) = self.frames.as_ref().and_then(|f| f.rgba()) {
            if let Ok(file) = std::fs::File::create(&self.thumbnail) {
                let _ = write_png(&mut std::io::BufWriter::new(file), w, h, &rgba);
            }
        }
    }

    /// Whether the display holds the keyboard and pointer.
    pub fn grabbed(&self) -> bool {
        self.view.as_ref().is_some_and(|v| v.grabbed())
    }

    pub fn frames(&self) -> Option<&Arc<Frames>> {
        self.frames.as_ref()
    }

    fn toolbar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let requests = self.controls.toolbar(
                ui,
                Target {
                    controller: &self.controller,
                    running: self.ended.is_none(),
                    frames: self.frames.as_ref(),
                    view: self.view.as_mut(),
                },
            );
            if requests.start {
                self.start_requested = true;
            }
            if let Some(mode) = requests.scale {
                // Remembered for the next VM view and the next run of the app.
                self.scale_changed = Some(mode);
            }
            ui.separator();
            ui.selectable_value(&mut self.tab, Tab::Display, "Display");
            ui.selectable_value(&mut self.tab, Tab::Console, "Serial console");
        });
    }

    /// The VM's tab: toolbar, display or console, status bar.
    pub fn ui(&mut self, ui: &mut egui::Ui, render_state: Option<&egui_wgpu::RenderState>) {
        self.poll();
        if self.view.is_none() {
            if let (Some(frames), Some(state), Some(port)) = (
                &self.frames,
                render_state,
                self.controller.display().cloned(),
            ) {
                let mut view = DisplayView::new(state, frames.clone(), port);
                view.scale = self.default_scale;
                self.view = Some(view);
            }
        }
        self.toolbar(ui);
        let status = match &self.ended {
            Some(how) => format!("{}: {how}", self.name),
            None => format!(
                "{}: {}{}",
                self.name,
                self.controller.status().qmp_name(),
                if self.grabbed() {
                    format!(" — {GRAB_HINT}")
                } else {
                    String::new()
                }
            ),
        };
        egui::Panel::bottom(format!("status-{}", self.name)).show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label(status);
                if let Some(message) = self.controls.message() {
                    ui.separator();
                    ui.label(message);
                }
            });
        });
        match (self.tab, &mut self.view) {
            (Tab::Display, Some(view)) => {
                view.ui(ui);
            }
            (Tab::Display, None) => {
                ui.label(if self.frames.is_some() {
                    "The display needs the wgpu renderer."
                } else {
                    "This VM has no display; its serial console is in the other tab."
                });
            }
            (Tab::Console, _) => self.console_ui(ui),
        }
    }

    fn console_ui(&mut self, ui: &mut egui::Ui) {
        {
            let mut s = self.scrollback.lock().unwrap_or_else(|e| e.into_inner());
            if s.changed {
                s.changed = false;
                let (a, b) = s.bytes.as_slices();
                self.console_text = String::from_utf8_lossy(&[a, b].concat()).into_owned();
            }
        }
        ui.horizontal(|ui| {
            let input = ui.add(
                egui::TextEdit::singleline(&mut self.input).hint_text("type a line for the guest"),
            );
            let send = ui.button("Send").clicked()
                || (input.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)));
            if send {
                let mut line = std::mem::take(&mut self.input).into_bytes();
                line.push(b'\r');
                if !self.controller.serial_input(&line) {
                    self.controls
                        .set_message("the VM is between boots; input dropped");
                }
            }
        });
        egui::ScrollArea::vertical()
            .stick_to_bottom(true)
            .auto_shrink([false, false])
            .show(ui, |ui| {
                ui.add(
                    egui::Label::new(egui::RichText::new(&self.console_text).monospace()).wrap(),
                );
            });
    }
}
