//! The controls of one running VM, shared by the app's VM tab and `cove run --display
//! window`: the toolbar (start again, pause/resume, reset, power off, force off, screenshot,
//! fullscreen, scaling), the line it last had to say, the wait for a guest asked to power
//! off (with Force off offered after [`OFFER_FORCE_OFF_AFTER`]), and the grab hint.

pub mod screenshot;

use display::{DisplayView, Frames, ScaleMode};
use emu::control::{VmController, VmStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a guest gets to shut down after its window is closed (or the app quit with "Power
/// them off") before it is forced off.
pub const FORCE_OFF_AFTER: Duration = Duration::from_secs(15);

/// How long a guest asked to power off shuts down before Force off is offered beside the wait.
pub const OFFER_FORCE_OFF_AFTER: Duration = Duration::from_secs(4);

/// Shown while a guest asked to power off has not done so yet.
pub const SHUTDOWN_WAIT: &str = "Waiting for the guest to shut down…";

/// Shown beside a VM's name while its display holds the keyboard and pointer.
pub const GRAB_HINT: &str = "input grabbed, Ctrl+Alt+G releases";

/// The commands the toolbar and the console give a VM: the VM's controller in this process
/// (`cove run --display window`), or the link to a VM process (the app).
pub trait VmCommands {
    /// The VM's status now.
    fn status(&self) -> VmStatus;
    /// Parks the vCPUs (an error says why not, where it is known at once).
    fn pause(&self) -> Result<(), String>;
    /// Runs the vCPUs again.
    fn resume(&self) -> Result<(), String>;
    /// Resets the machine.
    fn reset(&self);
    /// Presses the ACPI power button.
    fn power_down(&self);
    /// Turns the VM off now.
    fn quit(&self);
    /// Types `bytes` into the serial console; false when they were dropped.
    fn serial_input(&self, bytes: &[u8]) -> bool;
}

impl VmCommands for VmController {
    fn status(&self) -> VmStatus {
        VmController::status(self)
    }
    fn pause(&self) -> Result<(), String> {
        VmController::pause(self)
    }
    fn resume(&self) -> Result<(), String> {
        VmController::resume(self)
    }
    fn reset(&self) {
        VmController::reset(self)
    }
    fn power_down(&self) {
        VmController::power_down(self)
    }
    fn quit(&self) {
        VmController::quit(self)
    }
    fn serial_input(&self, bytes: &[u8]) -> bool {
        VmController::serial_input(self, bytes)
    }
}

/// The VM the toolbar acts on, as it is this frame.
pub struct Target<'a> {
    pub controller: &'a dyn VmCommands,
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
    /// When the guest was asked to power off (until it ends or is forced off).
    powering_off_since: Option<Instant>,
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
            powering_off_since: None,
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

    /// Presses the guest's power button, and shows the wait for it to shut down from now on.
    pub fn power_off(&mut self, controller: &dyn VmCommands) {
        controller.power_down();
        self.powering_off_since.get_or_insert_with(Instant::now);
    }

    /// Turns the VM off now.
    pub fn force_off(&mut self, controller: &dyn VmCommands) {
        controller.quit();
        self.powering_off_since = None;
    }

    /// The wait for a guest asked to power off: [`SHUTDOWN_WAIT`], and after
    /// [`OFFER_FORCE_OFF_AFTER`] a Force off button beside it. Draws nothing otherwise, and
    /// forgets the wait once the VM has ended (`running` false).
    pub fn shutdown_ui(&mut self, ui: &mut egui::Ui, controller: &dyn VmCommands, running: bool) {
        if !running {
            self.powering_off_since = None;
        }
        let Some(since) = self.powering_off_since else {
            return;
        };
        ui.horizontal_wrapped(|ui| {
            ui.spinner();
            ui.label(SHUTDOWN_WAIT);
            if since.elapsed() >= OFFER_FORCE_OFF_AFTER {
                ui.label("It has not shut down yet.");
                let force = egui::Button::new(
                    egui::RichText::new("Force it off").color(egui::Color32::WHITE),
                )
                .fill(egui::Color32::from_rgb(0xc0, 0x1c, 0x28));
                if ui
                    .add(force)
                    .on_hover_text("Turns the VM off at once, as pulling the plug would")
                    .clicked()
                {
                    self.force_off(controller);
                }
            } else {
                // Wake up in time to offer Force off.
                ui.ctx()
                    .request_repaint_after(OFFER_FORCE_OFF_AFTER.saturating_sub(since.elapsed()));
            }
        });
    }

    /// Notices a screenshot that has finished; call once a frame.
    pub fn update(&mut self) {
        if let Some(outcome) = self.pending.as_ref().and_then(|p| p.poll()) {
            self.pending = None;
            self.message = Some(outcome);
        }
    }

    /// Draws the buttons into `ui` (the caller lays them out, in a row that wraps at narrow
    /// widths: `ui.horizontal_wrapped`).
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
            self.power_off(controller);
        }
        if ui
            .add_enabled(running, egui::Button::new("Force off"))
            .clicked()
        {
            self.force_off(controller);
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
