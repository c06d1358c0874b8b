//! `cove run --display window`: the VM's screen in an eframe window. Keyboard and pointer go
//! to the guest's virtio keyboard and tablet; Ctrl+Alt+G grabs and releases the pointer; the
//! title shows the VM's name, state and grab; the toolbar is the shared one of
//! [`crate::vm_controls`], with screenshots saved in the current directory. Closing the
//! window presses the guest's power button and forces the VM off if it is still running
//! after [`FORCE_OFF_AFTER`].

use crate::vm_controls::{screenshot, Target, VmControls, FORCE_OFF_AFTER, GRAB_HINT};
use display::{DisplayView, Frames};
use emu::control::{VmController, VmStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
            let view = DisplayView::new(render_state, frames.clone(), std::sync::Arc::new(port));
            // Screenshots go to the current directory, named after the VM.
            let screenshots = screenshot::Place::new("", format!("cove-{}-", controller.name()));
            Ok(Box::new(VmWindow {
                view,
                frames,
                controls: VmControls::new(screenshots, false),
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
    controls: VmControls,
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
            format!(" — {GRAB_HINT}")
        } else {
            String::new()
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
                self.controls.power_off(&self.controller);
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
        self.update_title(&ctx);
        egui::Panel::top("cove-toolbar").show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                self.controls.toolbar(
                    ui,
                    Target {
                        controller: &self.controller,
                        running: true,
                        frames: Some(&self.frames),
                        view: Some(&mut self.view),
                    },
                );
                if let Some(message) = self.controls.message() {
                    ui.separator();
                    ui.label(message);
                }
            });
            self.controls.shutdown_ui(ui, &self.controller, true);
        });
        egui::CentralPanel::default()
            .frame(egui::Frame::NONE)
            .show(ui, |ui| {
                self.view.ui(ui);
            });
        // Timers (the forced power-off, the VM's end) need frames even when nothing changes.
        ctx.request_repaint_after(Duration::from_millis(200));
    }
}
