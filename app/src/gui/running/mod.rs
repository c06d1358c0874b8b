//! A VM running inside the app: its thread, its control API, its screen ([`screen`]) and serial
//! console ([`console`]), and the tab that shows them ([`tab`]) with the shared toolbar of
//! [`crate::vm_controls`] and a status bar.
//!
//! The library thumbnail of a VM is the last screen of its last run: the old one is removed
//! when a run starts (the live screen takes its place) and written when the run ends, only if
//! that boot of the guest had drawn something. A reset clears the screen, so a thumbnail never
//! shows a frame from before a reset or from an earlier run.

mod console;
mod screen;
mod tab;

#[cfg(test)]
pub use screen::RESET_MARK;
pub use tab::failure_banner;
#[cfg(test)]
pub use tab::{PAUSED, WAITING};

use crate::library::run_lock::RunLock;
use crate::library::VmEntry;
use crate::vm_controls::{screenshot, VmControls};
use console::{Console, ScrollbackWriter};
use display::{DisplayView, Frames, ScaleMode};
use emu::control::screendump::write_png;
use emu::control::VmController;
use emu::machine::{ConsoleOutput, Vm, VmExit};
use screen::Screen;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tab {
    Display,
    Console,
}

/// How a VM's run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// It powered off, rebooted (set to stop then) or was stopped: what happened.
    Off(String),
    /// It could not start, or failed while running: why.
    Failed(String),
}

/// One VM's run in the app (running, or ended and still shown in its tab).
pub struct RunningVm {
    /// The VM's name, as the library says now (a tab follows a rename).
    pub name: String,
    /// The VM's folder: what identifies it, whatever its name.
    pub dir: PathBuf,
    pub controller: VmController,
    screen: Option<Arc<Screen>>,
    view: Option<DisplayView>,
    console: Console,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<Ended>>,
    /// How the VM ended, once it has.
    pub ended: Option<Ended>,
    tab: Tab,
    /// The toolbar, and the line it last had to say (shown in the status bar).
    controls: VmControls,
    thumbnail: PathBuf,
    /// The scaling mode new views start with, and a change the user made (to remember).
    pub default_scale: ScaleMode,
    pub scale_changed: Option<ScaleMode>,
    /// The user asked to start this (ended) VM again.
    pub start_requested: bool,
    /// The user closed the tab while the VM ran: it closes once the VM has ended.
    pub close_when_ended: bool,
    /// The VM's control socket (QMP), which other Cove processes find through the run lock.
    control: Option<emu::control::qmp::QmpServer>,
    /// Held while the VM runs.
    run_lock: Option<RunLock>,
}

impl RunningVm {
    /// Starts the VM in `entry` on its own thread.
    pub fn start(entry: &VmEntry, ctx: &egui::Context, mut lock: RunLock) -> Result<Self, String> {
        entry.config.validate()?;
        let console = Console::new();
        let output = ConsoleOutput::new(ScrollbackWriter(console.scrollback.clone(), ctx.clone()));
        let mut vm = Vm::new(entry.config.clone(), output);
        let screen = vm.display().map(|port| {
            let frames = Frames::new();
            let repaint = ctx.clone();
            frames.set_waker(move || repaint.request_repaint());
            let screen = Screen::new(frames);
            port.set_sink(screen.clone());
            screen
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
        // Subscribed before the VM runs, so no reset goes unseen.
        screen::watch_events(
            controller.subscribe(),
            screen.clone(),
            console.scrollback.clone(),
            done.clone(),
            ctx.clone(),
        )
        .map_err(|e| format!("cannot start a thread for the VM's events: {e}"))?;
        let thumbnail = entry.dir.join(crate::library::THUMBNAIL_FILE);
        // The last run's screen no longer describes the VM once a new run starts.
        let _ = std::fs::remove_file(&thumbnail);
        let vm_done = done.clone();
        let repaint = ctx.clone();
        let name = entry.config.name.clone();
        let thread = std::thread::Builder::new()
            .name(format!("cove-vm-{name}"))
            .spawn(move || {
                let ended = match vm.run() {
                    Ok(VmExit::PowerOff) => Ended::Off("powered off".into()),
                    Ok(VmExit::Rebooted) => Ended::Off("rebooted".into()),
                    Ok(VmExit::Stopped(_)) => Ended::Off("stopped".into()),
                    Ok(VmExit::Failed(report)) => Ended::Failed(report),
                    Err(e) => Ended::Failed(format!("could not start: {e}")),
                };
                vm_done.store(true, Ordering::Release);
                repaint.request_repaint();
                ended
            })
            .map_err(|e| {
                done.store(true, Ordering::Release);
                format!("cannot start a thread for the VM: {e}")
            })?;
        Ok(Self {
            name,
            dir: entry.dir.clone(),
            controller,
            // A VM without a display opens on its console.
            tab: if screen.is_some() {
                Tab::Display
            } else {
                Tab::Console
            },
            screen,
            view: None,
            console,
            done,
            thread: Some(thread),
            ended: None,
            // Screenshots go next to the VM, in its folder.
            controls: VmControls::new(screenshot::Place::new(&entry.dir, "screenshot-"), true),
            thumbnail,
            default_scale: ScaleMode::Fit,
            scale_changed: None,
            start_requested: false,
            close_when_ended: false,
            control,
            run_lock: Some(lock),
        })
    }

    /// Notices the VM's end: saves its last screen as the library thumbnail, then clears the
    /// screen.
    pub fn poll(&mut self) {
        if self.ended.is_none() && self.done.load(Ordering::Acquire) {
            if let Some(thread) = self.thread.take() {
                self.ended = Some(
                    thread
                        .join()
                        .unwrap_or_else(|_| Ended::Failed("the VM thread panicked".into())),
                );
                self.save_thumbnail();
                if let Some(screen) = &self.screen {
                    screen.clear();
                }
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

    /// Why the run failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        match &self.ended {
            Some(Ended::Failed(why)) => Some(why),
            _ => None,
        }
    }

    /// Saves the screen the VM last showed as the library thumbnail (nothing when the guest's
    /// last boot drew nothing).
    fn save_thumbnail(&self) {
        if let Some((w, h, rgba)) = self.frames().and_then(|f| f.rgba()) {
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
        self.screen.as_ref().map(|s| s.frames())
    }

    /// The serial log as the console shows it.
    #[cfg(test)]
    pub fn serial_text(&mut self) -> String {
        self.console.text().to_string()
    }

    /// Draws a 4x2 screen into the VM's display as its GPU would (a test stands in for a
    /// guest's driver). False when the VM has no display.
    #[cfg(test)]
    pub fn draw_test_frame(&self) -> bool {
        use emu::scanout::{PixelFormat, Rect, ScanoutSink, Surface};
        let Some(screen) = &self.screen else {
            return false;
        };
        let pixels = [0x80u8; 32];
        screen.configure(0, Some((4, 2, PixelFormat::Bgrx)));
        let surface = Surface {
            width: 4,
            height: 2,
            format: PixelFormat::Bgrx,
            pixels: &pixels,
        };
        screen.update(0, &surface, Rect::new(0, 0, 4, 2));
        true
    }

    /// Presses the guest's power button; the tab shows the wait (and offers Force off).
    pub fn power_off(&mut self) {
        self.controls.power_off(&self.controller);
    }

    /// Turns the VM off now.
    pub fn force_off(&mut self) {
        self.controls.force_off(&self.controller);
    }
}
