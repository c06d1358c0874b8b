//! `cove run --display window`: the VM's screen in an eframe window. Keyboard and pointer go
//! to the guest's virtio keyboard and tablet; Ctrl+Alt+G grabs and releases the pointer; the
//! title shows the VM's name, state and grab. Closing the window presses the guest's power
//! button and forces the VM off if it is still running after [`FORCE_OFF_AFTER`].

use display::{DisplayView, Frames, ScaleMode};
use emu::control::{VmController, VmStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a guest gets to shut down after the window is closed.
pub const FORCE_OFF_AFTER: Duration = Duration::from_secs(15);

/// Runs the window on this (the main) thread until it closes. `vm_done` turns true when the
/// VM thread ends; the window then closes itself.
pub fn run_window(
    controller: VmController,
    frames: Arc<Frames>,
    vm_done: Arc<AtomicBool>,
) -> Result<(), String> {
    let Some(port) = controller.display().cloned() else {
        return Err("the VM has no display".into());
    };
    let title = format!("{} — Cove", controller.name());
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title(title.clone())
            .with_app_id("cove")
            .with_inner_size([1024.0, 768.0]),
        renderer: eframe::Renderer::Wgpu,
        ..Default::default()
    };
    eframe::run_native(
        "cove",
        options,
        Box::new(move |cc| {
            let render_state = cc
                .wgpu_render_state
                .as_ref()
                .ok_or("eframe started without wgpu")?;
            let ctx = cc.egui_ctx.clone();
            frames.set_waker(move || ctx.request_repaint());
            let view = DisplayView::new(render_state, frames.clone(), port);
            Ok(Box::new(VmWindow {
                view,
                frames,
                message: None,
                screenshot_result: Arc::default(),
                controller,
                vm_done,
                close_requested_at: None,
                title: String::new(),
            }))
        }),
    )
    .map_err(|e| format!("cannot open the window: {e}"))
}

struct VmWindow {
    view: DisplayView,
    frames: Arc<Frames>,
    message: Option<String>,
    screenshot_result: Arc<std::sync::Mutex<Option<String>>>,
    controller: VmController,
    vm_done: Arc<AtomicBool>,
    close_requested_at: Option<Instant>,
    title: String,
}

impl VmWindow {
    fn update_title(&mut self, ctx: &egui::Context) {
        let state = match self.controller.status() {
            VmStatus::Paused => " (paused)",
            VmStatus::Shutdown => " (off)",
            VmStatus::InternalError => " (failed)",
            _ => "",
        };
        let grab = if self.view.grabbed() {
            " — input grabbed, Ctrl+Alt+G releases"
        } else {
            ""
        };
        let closing = if self.close_requested_at.is_some() {
            " — shutting down"
        } else {
            ""
        };
        let title = format!("{}{state} — Cove{grab}{closing}", self.controller.name());
        if title != self.title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
    }
}

impl VmWindow {
    fn toolbar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let paused = self.controller.status() == VmStatus::Paused;
            if ui.button(if paused { "Resume" } else { "Pause" }).clicked() {
                let result = if paused {
                    self.controller.resume()
                } else {
                    self.controller.pause()
                };
                if let Err(e) = result {
                    self.message = Some(e);
                }
            }
            if ui.button("Reset").clicked() {
                self.controller.reset();
            }
            if ui.button("Power off").clicked() {
                self.controller.power_down();
            }
            if ui.button("Force off").clicked() {
                self.controller.quit();
            }
            ui.separator();
            for (mode, label) in [
                (ScaleMode::Fit, "Fit"),
                (ScaleMode::OneToOne, "1:1"),
                (ScaleMode::Fill, "Fill"),
            ] {
                ui.selectable_value(&mut self.view.scale, mode, label);
            }
            ui.separator();
            if ui.button("Screenshot").clicked() {
                self.screenshot();
            }
            if let Some(message) = &self.message {
                ui.label(message);
            }
        });
    }

    /// Renders the display offscreen (the same renderer the window uses) on a worker thread
    /// and saves it as a PNG in the current directory.
    fn screenshot(&mut self) {
        let frames = self.frames.clone();
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let path = std::path::PathBuf::from(format!("cove-{}-{stamp}.png", self.controller.name()));
        self.message = Some(format!("saving {}…", path.display()));
        let result = self.screenshot_result.clone();
        let spawned = std::thread::Builder::new()
            .name("cove-screenshot".into())
            .spawn(move || {
                let saved = display::offscreen::Offscreen::new()
                    .map_err(|e| e.to_string())
                    .and_then(|mut o| o.render(&frames).map_err(|e| e.to_string()))
                    .and_then(|(w, h, rgba)| {
                        let file = std::fs::File::create(&path).map_err(|e| e.to_string())?;
                        let mut out = std::io::BufWriter::new(file);
                        emu::control::screendump::write_png(&mut out, w, h, &rgba)
                    });
                *result.lock().unwrap_or_else(|e| e.into_inner()) = Some(match saved {
                    Ok(()) => format!("saved {}", path.display()),
                    Err(e) => format!("screenshot failed: {e}"),
                });
            });
        if let Err(e) = spawned {
            self.message = Some(format!("screenshot failed: {e}"));
        }
    }
}

impl eframe::App for VmWindow {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        if self.vm_done.load(Ordering::Acquire) {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return;
        }
        if ctx.input(|i| i.viewport().close_requested()) {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            if self.close_requested_at.is_none() {
                log::info!("window closed: asking the guest to power off");
                self.view.release(&ctx);
                self.controller.power_down();
                self.close_requested_at = Some(Instant::now());
            }
        }
        if self
            .close_requested_at
            .is_some_and(|at| at.elapsed() >= FORCE_OFF_AFTER)
        {
            log::warn!("the guest did not power off within {FORCE_OFF_AFTER:?}; forcing it off");
            self.controller.quit();
            self.close_requested_at = None;
        }
        if let Some(done) = self
            .screenshot_result
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            self.message = Some(done);
        }
        self.update_title(&ctx);
        egui::Panel::top("cove-toolbar").show(ui, |ui| self.toolbar(ui));
        egui::CentralPanel::default()
            .frame(egui::Frame::NONE)
            .show(ui, |ui| {
                self.view.ui(ui);
            });
        // Timers (the forced power-off, the VM's end) need frames even when nothing changes.
        ctx.request_repaint_after(Duration::from_millis(200));
    }
}
