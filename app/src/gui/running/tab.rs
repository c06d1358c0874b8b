//! The VM's tab: the toolbar (wrapping at narrow widths), the banner of a failed run, the wait
//! for a guest asked to power off, the status bar, and the display area — which says that it
//! waits for the guest's first frame, dims a paused screen under "Paused", and says the VM is
//! off once it has ended — or the serial console.

use super::{Ended, RunningVm, Tab};
use crate::vm_controls::{Target, GRAB_HINT};
use display::DisplayView;
use emu::control::VmStatus;

/// Shown in the display area until the guest's first frame (after each start and reset).
pub const WAITING: &str = "Waiting for the guest's display…";
/// Shown over the dimmed screen of a paused VM.
pub const PAUSED: &str = "Paused";

/// The colour of errors.
const ERROR: egui::Color32 = egui::Color32::from_rgb(0xd0, 0x30, 0x30);

/// A red banner: `title` in bold, then whatever `body` draws.
fn red_banner(ui: &mut egui::Ui, title: String, body: impl FnOnce(&mut egui::Ui)) {
    egui::Frame::new()
        .fill(egui::Color32::from_rgb(0x5c, 0x16, 0x16))
        .stroke(egui::Stroke::new(1.0, ERROR))
        .corner_radius(4.0)
        .inner_margin(8.0)
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.label(
                egui::RichText::new(title)
                    .strong()
                    .color(egui::Color32::WHITE),
            );
            body(ui);
        });
}

/// A red banner saying that `name` failed, and why.
pub fn failure_banner(ui: &mut egui::Ui, name: &str, why: &str) {
    red_banner(ui, format!("{name} failed"), |ui| {
        ui.add(egui::Label::new(egui::RichText::new(why).color(egui::Color32::WHITE)).wrap());
    });
}

/// A red banner saying that `name` crashed: its process's exit status and last log lines.
pub fn crash_banner(ui: &mut egui::Ui, name: &str, why: &str) {
    red_banner(ui, format!("{name} crashed"), |ui| {
        ui.label(
            egui::RichText::new(
                "Its process died; the app and other VMs are unaffected. Start runs it again.",
            )
            .color(egui::Color32::WHITE),
        );
        egui::ScrollArea::vertical()
            .id_salt(("crash-log", name))
            .max_height(160.0)
            .show(ui, |ui| {
                ui.add(
                    egui::Label::new(
                        egui::RichText::new(why)
                            .monospace()
                            .color(egui::Color32::WHITE),
                    )
                    .wrap(),
                );
            });
    });
}

/// A line in the middle of the display area.
fn centered(ui: &mut egui::Ui, text: impl Into<egui::WidgetText>) {
    ui.centered_and_justified(|ui| {
        ui.label(text);
    });
}

impl RunningVm {
    fn toolbar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            let requests = self.controls.toolbar(
                ui,
                Target {
                    controller: &self.process,
                    running: self.ended.is_none(),
                    frames: self.display.then_some(&self.frames),
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

    /// The VM's tab: toolbar, banners, display or console, status bar.
    pub fn ui(&mut self, ui: &mut egui::Ui, render_state: Option<&egui_wgpu::RenderState>) {
        self.poll();
        if self.view.is_none() && self.display && self.ended.is_none() {
            if let Some(state) = render_state {
                let port = std::sync::Arc::new(self.process.input());
                let mut view = DisplayView::new(state, self.frames.clone(), port);
                view.scale = self.default_scale;
                self.view = Some(view);
            }
        }
        self.toolbar(ui);
        match &self.ended {
            Some(Ended::Crashed(why)) => crash_banner(ui, &self.name, why),
            Some(Ended::Failed(why)) => failure_banner(ui, &self.name, why),
            _ => {}
        }
        self.controls
            .shutdown_ui(ui, &self.process, self.ended.is_none());
        let status = match &self.ended {
            Some(Ended::Off(how)) => format!("{}: {how}", self.name),
            Some(Ended::Failed(_)) => format!("{}: failed", self.name),
            Some(Ended::Crashed(_)) => format!("{}: crashed", self.name),
            None => format!(
                "{}: {}{}",
                self.name,
                self.status().qmp_name(),
                if self.grabbed() {
                    format!(" — {GRAB_HINT}")
                } else {
                    String::new()
                }
            ),
        };
        egui::Panel::bottom(format!("status-{}", self.dir.display())).show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                ui.label(status);
                if let Some(message) = self.controls.message() {
                    ui.separator();
                    ui.label(message);
                }
            });
        });
        match self.tab {
            Tab::Display => self.display_ui(ui),
            Tab::Console => {
                let id = self.dir.display().to_string();
                if let Some(dropped) = self.console.ui(ui, &id, &self.process) {
                    self.controls.set_message(dropped);
                }
            }
        }
    }

    /// The display area: what the guest shows, or why there is nothing to see.
    fn display_ui(&mut self, ui: &mut egui::Ui) {
        if !self.display {
            centered(
                ui,
                "This VM has no display; its serial console is in the other tab.",
            );
            return;
        }
        if self.ended.is_some() {
            centered(
                ui,
                format!("{} is not running. Start runs it again.", self.name),
            );
            return;
        }
        let waiting = self.frames.size().is_none();
        let area = ui.available_rect_before_wrap();
        match &mut self.view {
            // Drawn while it waits too: the view tells the guest the size it has to offer.
            Some(view) => {
                view.ui(ui);
            }
            None if waiting => {}
            None => centered(ui, "The display needs the wgpu renderer."),
        }
        if waiting {
            ui.put(
                area,
                egui::Label::new(egui::RichText::new(WAITING).color(egui::Color32::LIGHT_GRAY)),
            );
        } else if self.status() == VmStatus::Paused {
            ui.painter()
                .rect_filled(area, 0.0, egui::Color32::from_black_alpha(170));
            ui.put(
                area,
                egui::Label::new(
                    egui::RichText::new(PAUSED)
                        .heading()
                        .color(egui::Color32::WHITE),
                ),
            );
        }
    }
}
