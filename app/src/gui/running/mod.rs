//! A VM running in its own process ([`vm_process`]), as the app shows it: its screen (shared
//! memory the VM process draws into), its serial console ([`console`]), and the tab that shows
//! them ([`tab`]) with the shared toolbar of [`crate::vm_controls`] and a status bar.
//!
//! The library thumbnail of a VM is the last screen of its last run: the old one is removed
//! when a run starts (the live screen takes its place) and written when the run ends, only if
//! that boot of the guest had drawn something. A reset clears the screen, so a thumbnail never
//! shows a frame from before a reset or from an earlier run.
//!
//! A VM process that dies (a crash, `kill -9`, the OOM killer) leaves its tab showing that it
//! crashed, with its exit status and the last lines of its log, and Start to run it again;
//! nothing else in the app is touched.

mod console;
mod tab;
pub mod vm_process;

#[cfg(test)]
pub use console::RESET_MARK;
pub use tab::failure_banner;
#[cfg(test)]
pub use tab::{PAUSED, WAITING};

use crate::library::VmEntry;
use crate::vm_controls::{screenshot, VmControls};
use console::Console;
use display::{DisplayView, FrameSink, Frames, ScaleMode};
use emu::control::screendump::write_png;
use emu::control::VmStatus;
use emu::scanout::ScanoutSink;
use std::path::PathBuf;
use std::sync::Arc;
use vm_process::{Outcome, Sinks, VmProcess};

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
    /// Its process died without saying why: the exit status and the log's last lines.
    Crashed(String),
}

/// One VM's run in the app (running, or ended and still shown in its tab).
pub struct RunningVm {
    /// The VM's name, as the library says now (a tab follows a rename).
    pub name: String,
    /// The VM's folder: what identifies it, whatever its name.
    pub dir: PathBuf,
    process: VmProcess,
    /// Whether the VM has a display.
    display: bool,
    frames: Arc<Frames>,
    view: Option<DisplayView>,
    console: Console,
    /// How the VM ended, once it has.
    pub ended: Option<Ended>,
    /// Another app holds the VM process this one tried to attach to.
    pub held_elsewhere: bool,
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
    /// When the run started, until its first frame is logged.
    started: Option<std::time::Instant>,
}

impl RunningVm {
    /// Starts the VM in `entry` in a process of its own.
    pub fn start(entry: &VmEntry, ctx: &egui::Context) -> Result<Self, String> {
        entry.config.validate()?;
        let thumbnail = entry.dir.join(crate::library::THUMBNAIL_FILE);
        // The last run's screen no longer describes the VM once a new run starts.
        let _ = std::fs::remove_file(&thumbnail);
        let (console, frames, sinks) = Self::sinks(ctx);
        let process = VmProcess::spawn(&entry.dir, sinks)?;
        Ok(Self::new(entry, process, console, frames))
    }

    /// Attaches to the VM process that runs `entry` (started by an earlier run of the app),
    /// listening at `link`.
    pub fn attach(entry: &VmEntry, link: PathBuf, ctx: &egui::Context) -> Result<Self, String> {
        let (console, frames, sinks) = Self::sinks(ctx);
        let process = VmProcess::attach(&entry.dir, link, sinks)?;
        Ok(Self::new(entry, process, console, frames))
    }

    fn sinks(ctx: &egui::Context) -> (Console, Arc<Frames>, Sinks) {
        let console = Console::new();
        let frames = Frames::new();
        let repaint = ctx.clone();
        frames.set_waker(move || repaint.request_repaint());
        let sinks = Sinks {
            frames: frames.clone(),
            scrollback: console.scrollback.clone(),
            ctx: ctx.clone(),
        };
        (console, frames, sinks)
    }

    fn new(entry: &VmEntry, process: VmProcess, console: Console, frames: Arc<Frames>) -> Self {
        let display = entry.config.display.enabled;
        Self {
            name: entry.config.name.clone(),
            dir: entry.dir.clone(),
            process,
            display,
            frames,
            view: None,
            console,
            ended: None,
            held_elsewhere: false,
            // A VM without a display opens on its console.
            tab: if display { Tab::Display } else { Tab::Console },
            // Screenshots go next to the VM, in its folder.
            controls: VmControls::new(screenshot::Place::new(&entry.dir, "screenshot-"), true),
            thumbnail: entry.dir.join(crate::library::THUMBNAIL_FILE),
            default_scale: ScaleMode::Fit,
            scale_changed: None,
            start_requested: false,
            close_when_ended: false,
            started: Some(std::time::Instant::now()),
        }
    }

    /// Notices what the VM process said and whether it ended: saves its last screen as the
    /// library thumbnail, then clears the screen.
    pub fn poll(&mut self) {
        for notice in self.process.take_notices() {
            self.controls.set_message(notice);
        }
        if self.frames.size().is_some() {
            if let Some(started) = self.started.take() {
                log::info!(
                    "GUI: {}'s first guest frame {} ms after its VM process was started",
                    self.name,
                    started.elapsed().as_millis()
                );
            }
        }
        if self.ended.is_some() {
            return;
        }
        let Some(outcome) = self.process.outcome() else {
            return;
        };
        self.ended = Some(match outcome {
            Outcome::Said(false, text) => Ended::Off(text),
            Outcome::Said(true, text) => Ended::Failed(text),
            Outcome::Crashed(text) => {
                log::error!("{}: {text}", self.name);
                Ended::Crashed(text)
            }
            Outcome::Busy => {
                self.held_elsewhere = true;
                Ended::Off("shown by another Cove app".into())
            }
        });
        self.save_thumbnail();
        FrameSink(self.frames.clone()).configure(0, None);
        self.view = None;
    }

    pub fn is_running(&self) -> bool {
        self.ended.is_none()
    }

    /// The VM process, for commands.
    pub fn process(&self) -> &VmProcess {
        &self.process
    }

    /// The VM's status, as its process last said.
    pub fn status(&self) -> VmStatus {
        self.process.status()
    }

    /// Why the run failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        match &self.ended {
            Some(Ended::Failed(why)) | Some(Ended::Crashed(why)) => Some(why),
            _ => None,
        }
    }

    /// Saves the screen the VM last showed as the library thumbnail (nothing when the guest's
    /// last boot drew nothing).
    fn save_thumbnail(&self) {
        if let Some((w, h, rgba)) = self.frames.rgba() {
            if let Ok(file) = emu::control::secure_path::create_regular_file(&self.thumbnail) {
                let _ = write_png(&mut std::io::BufWriter::new(file), w, h, &rgba);
            }
        }
    }

    /// Whether the display holds the keyboard and pointer.
    pub fn grabbed(&self) -> bool {
        self.view.as_ref().is_some_and(|v| v.grabbed())
    }

    /// The VM's screen, when it has a display.
    pub fn frames(&self) -> Option<&Arc<Frames>> {
        self.display.then_some(&self.frames)
    }

    /// The serial log as the console shows it.
    #[cfg(test)]
    pub fn serial_text(&mut self) -> String {
        self.console.text().to_string()
    }

    /// Asks the VM process to draw a 4x2 screen as its GPU would (a test stands in for a
    /// guest's driver). False when the VM has no display.
    #[cfg(test)]
    pub fn draw_test_frame(&self) -> bool {
        self.display && {
            self.process
                .debug(emu::control::link::DebugAction::DrawTestFrame);
            true
        }
    }

    /// Kills the VM process (tests: a VM that dies).
    #[cfg(test)]
    pub fn kill_process(&self) {
        self.process.kill();
    }

    /// Presses the guest's power button; the tab shows the wait (and offers Force off).
    pub fn power_off(&mut self) {
        self.controls.power_off(&self.process);
    }

    /// Turns the VM off now.
    pub fn force_off(&mut self) {
        self.controls.force_off(&self.process);
    }
}
