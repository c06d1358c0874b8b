//! The egui widget that shows a VM's screen: it draws through a wgpu paint callback (the
//! renderer lives in egui-wgpu's callback resources, one per view), asks the guest for the
//! widget's size (dynamic resolution), and turns keyboard and pointer input into guest events.
//! Ctrl+Alt+G grabs and releases the pointer.

use crate::frames::Frames;
use crate::input::{InputTranslator, Translated};
use crate::renderer::ScanoutRenderer;
use crate::scale::{place, to_tablet, Area, ScaleMode};
use egui_wgpu::{CallbackResources, CallbackTrait};
use emu::machine::display_port::DisplayPort;
use emu::virtio::input::evdev::TABLET_MAX;
use emu::virtio::input::InputEvent;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Where a view sends the guest's input and the size it would like: the VM's display port in
/// this process, or the link to a VM process.
pub trait InputPort: Send + Sync {
    /// Keyboard events (evdev key codes), ending with a sync.
    fn send_keyboard(&self, events: &[InputEvent]);
    /// Tablet events (absolute position, buttons, wheel), ending with a sync.
    fn send_tablet(&self, events: &[InputEvent]);
    /// The view is `width` x `height` pixels: offer the guest that mode.
    fn set_display_size(&self, width: u32, height: u32);
}

impl InputPort for DisplayPort {
    fn send_keyboard(&self, events: &[InputEvent]) {
        DisplayPort::send_keyboard(self, events);
    }
    fn send_tablet(&self, events: &[InputEvent]) {
        DisplayPort::send_tablet(self, events);
    }
    fn set_display_size(&self, width: u32, height: u32) {
        DisplayPort::set_display_size(self, width, height);
    }
}

static NEXT_VIEW: AtomicU64 = AtomicU64::new(1);

/// Every view's renderer, kept in egui-wgpu's callback resources.
#[derive(Default)]
struct Renderers(HashMap<u64, ScanoutRenderer>);

/// A VM's screen in an egui UI.
pub struct DisplayView {
    id: u64,
    frames: Arc<Frames>,
    port: Arc<dyn InputPort>,
    /// How the guest's screen is fitted into the widget; the user's choice.
    pub scale: ScaleMode,
    grabbed: bool,
    translator: InputTranslator,
    requested_size: Option<(u32, u32)>,
    /// Follow the widget's size with the guest's resolution.
    pub resize_guest: bool,
}

impl DisplayView {
    /// A view of `frames` (which the VM's sink fills) sending input through `port`.
    pub fn new(
        render_state: &egui_wgpu::RenderState,
        frames: Arc<Frames>,
        port: Arc<dyn InputPort>,
    ) -> Self {
        let id = NEXT_VIEW.fetch_add(1, Ordering::Relaxed);
        let renderer = ScanoutRenderer::new(&render_state.device, render_state.target_format);
        let mut egui_renderer = render_state.renderer.write();
        let resources = &mut egui_renderer.callback_resources;
        if resources.get::<Renderers>().is_none() {
            resources.insert(Renderers::default());
        }
        if let Some(renderers) = resources.get_mut::<Renderers>() {
            renderers.0.insert(id, renderer);
        }
        Self {
            id,
            frames,
            port,
            scale: ScaleMode::Fit,
            grabbed: false,
            translator: InputTranslator::default(),
            requested_size: None,
            resize_guest: true,
        }
    }

    /// Whether the pointer and keyboard are grabbed (Ctrl+Alt+G toggles).
    pub fn grabbed(&self) -> bool {
        self.grabbed
    }

    /// Releases the pointer grab (and every key the guest thinks is held).
    pub fn release(&mut self, ctx: &egui::Context) {
        self.set_grab(ctx, false);
    }

    /// Grabs (confines and hides) or releases the pointer.
    pub fn set_grab(&mut self, ctx: &egui::Context, grab: bool) {
        if self.grabbed == grab {
            return;
        }
        self.grabbed = grab;
        let mode = if grab {
            egui::CursorGrab::Confined
        } else {
            egui::CursorGrab::None
        };
        ctx.send_viewport_cmd(egui::ViewportCommand::CursorGrab(mode));
        ctx.send_viewport_cmd(egui::ViewportCommand::CursorVisible(!grab));
        if !grab {
            let mut out = Translated::default();
            self.translator.release_all(&mut out);
            self.send(out);
        }
    }

    fn send(&self, out: Translated) {
        if !out.keyboard.is_empty() {
            self.port.send_keyboard(&out.keyboard);
        }
        if !out.tablet.is_empty() {
            self.port.send_tablet(&out.tablet);
        }
    }

    /// Shows the screen in all the space `ui` offers and handles its input.
    pub fn ui(&mut self, ui: &mut egui::Ui) -> egui::Response {
        let area = ui.available_rect_before_wrap();
        let ppp = ui.ctx().pixels_per_point();
        let (rect, response) = ui.allocate_exact_size(area.size(), egui::Sense::click_and_drag());
        let pixels = ((rect.width() * ppp) as u32, (rect.height() * ppp) as u32);
        if self.resize_guest
            && pixels.0 >= 64
            && pixels.1 >= 64
            && self.requested_size != Some(pixels)
        {
            self.requested_size = Some(pixels);
            self.port.set_display_size(pixels.0, pixels.1);
        }
        ui.painter().rect_filled(rect, 0.0, egui::Color32::BLACK);
        let guest = self.frames.size();
        let drawn = guest.map(|guest| {
            let placed = place(
                self.scale,
                Area {
                    x: rect.min.x,
                    y: rect.min.y,
                    width: rect.width(),
                    height: rect.height(),
                },
                guest,
                ppp,
            );
            egui::Rect::from_min_size(
                egui::pos2(placed.x, placed.y),
                egui::vec2(placed.width, placed.height),
            )
        });
        if let Some(drawn) = drawn {
            ui.painter()
                .with_clip_rect(rect)
                .add(egui_wgpu::Callback::new_paint_callback(
                    drawn,
                    ScanoutCallback {
                        id: self.id,
                        frames: self.frames.clone(),
                    },
                ));
        }
        if response.clicked() {
            response.request_focus();
        }
        let focused = response.has_focus() || self.grabbed;
        if focused {
            ui.memory_mut(|m| {
                m.set_focus_lock_filter(
                    response.id,
                    egui::EventFilter {
                        tab: true,
                        horizontal_arrows: true,
                        vertical_arrows: true,
                        escape: true,
                    },
                )
            });
        }
        self.handle_input(ui, drawn, focused);
        response
    }

    fn handle_input(&mut self, ui: &egui::Ui, drawn: Option<egui::Rect>, focused: bool) {
        let events = ui.input(|i| i.events.clone());
        let mut out = Translated::default();
        let mut toggle_grab = false;
        for event in events {
            match event {
                egui::Event::Key {
                    key,
                    physical_key,
                    pressed,
                    modifiers,
                    ..
                } => {
                    let key = physical_key.unwrap_or(key);
                    if key == egui::Key::G && modifiers.ctrl && modifiers.alt {
                        toggle_grab |= pressed;
                        continue;
                    }
                    if focused {
                        self.translator.key(key, pressed, &modifiers, &mut out);
                    }
                }
                egui::Event::PointerMoved(pos) => {
                    if let Some(drawn) = drawn.filter(|d| self.grabbed || d.contains(pos)) {
                        let (x, y) = to_tablet(area_of(drawn), pos.x, pos.y, TABLET_MAX);
                        self.translator.pointer_moved(x, y, &mut out);
                    }
                }
                egui::Event::PointerButton {
                    pos,
                    button,
                    pressed,
                    ..
                } if drawn.is_some_and(|d| self.grabbed || d.contains(pos) || !pressed) => {
                    self.translator.button(button, pressed, &mut out);
                }
                egui::Event::MouseWheel { delta, .. } if focused => {
                    let notches = |v: f32| {
                        if v > 0.0 {
                            1
                        } else if v < 0.0 {
                            -1
                        } else {
                            0
                        }
                    };
                    self.translator
                        .wheel(notches(delta.y), notches(delta.x), &mut out);
                }
                egui::Event::WindowFocused(false) => {
                    self.translator.release_all(&mut out);
                }
                _ => {}
            }
        }
        self.send(out);
        if toggle_grab {
            let grab = !self.grabbed;
            self.set_grab(ui.ctx(), grab);
        }
    }
}

fn area_of(rect: egui::Rect) -> Area {
    Area {
        x: rect.min.x,
        y: rect.min.y,
        width: rect.width(),
        height: rect.height(),
    }
}

/// Draws one view's screen during egui's render pass.
struct ScanoutCallback {
    id: u64,
    frames: Arc<Frames>,
}

impl CallbackTrait for ScanoutCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        _screen: &egui_wgpu::ScreenDescriptor,
        _encoder: &mut wgpu::CommandEncoder,
        resources: &mut CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        if let Some(renderer) = resources
            .get_mut::<Renderers>()
            .and_then(|r| r.0.get_mut(&self.id))
        {
            renderer.upload(device, queue, &self.frames);
            renderer.prepare_params(queue);
        }
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        pass: &mut wgpu::RenderPass<'static>,
        resources: &CallbackResources,
    ) {
        if let Some(renderer) = resources.get::<Renderers>().and_then(|r| r.0.get(&self.id)) {
            renderer.paint(pass);
        }
    }
}
