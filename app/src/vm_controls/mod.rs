//! The controls of one running VM, shared by the app's VM tab and `cove run --display
//! window`: the toolbar (start again, pause/resume, reset, power off, force off, screenshot,
//! fullscreen, scaling), the line it last had to say, and the grab hint.

pub mod screenshot;

use display::{DisplayView, Frames, ScaleMode};
use emu::control::{VmController, VmStatus};
use std::sync::Arc;
use std::time::Duration;

/// How long a guest gets to shut down after its window is closed (or the app quit with "Power
/// them off") before it is forced off.
pub const FORCE_OFF_AFTER: Duration = Duration::from_secs(15);

/// Shown beside a VM's name while its display holds the keyboard and pointer.
pub const GRAB_HINT: &str = "input grabbed, Ctrl+Alt+G releases";

/// The VM the toolbar acts on, as it is this frame.
pub struct Target<'a> {
    pub controller: &'a VmController,
    /// Whether the VM is still running (its controls are off once it has ended).
    pub running: bool,
    /// The VM's screen, if it has a display.
    pub frames: Option<&'a Arc<Frames>>,
    /// The view drawing that screen, once there is one.
    pub view: Option<&'a mut DisplayView>,
}

/// What the user asked of the toolbar that its owner carries out.
#[derive(Default)]
pub struct Requests {
    /// Start the (ended) VM again.
    pub start: bool,
    /// The user picked this scaling mode.
    pub scale: Option<ScaleMode>,
}

/// The toolbar's state for one VM.
pub struct VmControls {
    /// Whether the toolbar offers Start for a VM that has ended (the app's VM tab does; a
    /// window closes when its VM ends).
    restartable: bool,
    screenshots: screenshot::Place,
    pending: Option<screenshot::Pending>,
    message: Option<String>,
    fullscreen: bool,
}

impl VmControls {
    /// Controls whose screenshots go to `screenshots`.
    pub fn new(screenshots: screenshot::Place, restartable: bool) -> Self {
        Self {
            restartable,
            screenshots,
            pending: None,
            message: None,
            fullscreen: false,
        }
    }

    /// The last thing the controls had to say (an error, where a screenshot went).
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// Says `message` where the controls' messages show.
    pub fn set_message(&mut self, message: impl Into<String>) {
        self.message = Some(message.into());
    }

    /// Notices a screenshot that has finished; call once a frame.
    pub fn update(&mut self) {
        if let Some(outcome) = self.pending.as_ref().and_then(|p| p.poll()) {
            self.pending = None;
            self.message = Some(outcome);
        }
    }

    /// Draws the buttons into `ui` (the caller lays them out, in a row).
    pub fn toolbar(&mut self, ui: &mut egui::Ui, target: Target) -> Requests {
        self.update();
        let mut requests = Requests::default();
        let Target {
            controller,
            running,
            frames,
            view,
        } = target;
        if self.restartable
            && ui
                .add_enabled(!running, egui::Button::new("Start"))
                .clicked()
        {
            requests.start = true;
        }
        let paused = controller.status() == VmStatus::Paused;
        if ui
            .add_enabled(
                running,
                egui::Button::new(if paused { "Resume" } else { "Pause" }),
            )
            .clicked()
        {
            let result = if paused {
                controller.resume()
            } else {
                controller.pause()
            };
            if let Err(e) = result {
                self.message = Some(e);
            }
        }
        if ui
            .add_enabled(running, egui::Button::new("Reset"))
            .clicked()
        {
            controller.reset();
        }
        if ui
            .add_enabled(running, egui::Button::new("Power off"))
            .clicked()
        {
            controller.power_down();
        }
        if ui
            .add_enabled(running, egui::Button::new("Force off"))
            .clicked()
        {
            controller.quit();
        }
        ui.separator();
        if ui
            .add_enabled(frames.is_some(), egui::Button::new("Screenshot"))
            .clicked()
        {
            if let Some(frames) = frames {
                self.screenshot(ui.ctx(), frames);
            }
        }
        let fullscreen = if self.fullscreen {
            "Leave fullscreen"
        } else {
            "Fullscreen"
        };
        if ui.button(fullscreen).clicked() {
            self.fullscreen = !self.fullscreen;
            ui.ctx()
                .send_viewport_cmd(egui::ViewportCommand::Fullscreen(self.fullscreen));
        }
        if let Some(view) = view {
            for (mode, label) in [
                (ScaleMode::Fit, "Fit"),
                (ScaleMode::OneToOne, "1:1"),
                (ScaleMode::Fill, "Fill"),
            ] {
                if ui.selectable_value(&mut view.scale, mode, label).clicked() {
                    requests.scale = Some(mode);
                }
            }
        }
        requests
    }

    /// Starts saving the screen; the outcome shows as the message once it is done.
    fn screenshot(&mut self, ctx: &egui::Context, frames: &Arc<Frames>) {
        let repaint = ctx.clone();
        let (line, pending) =
            screenshot::take(frames, &self.screenshots, move || repaint.request_repaint());
        self.message = Some(line);
        self.pending = pending;
    }
}
