//! Cove's guest display: the scanout sink a VM writes into ([`frames`]), its wgpu renderer
//! ([`renderer`]) with an offscreen path for screenshots and measurements ([`offscreen`]), and
//! the egui widget the app embeds ([`widget`]), with input translation ([`input`]) and scaling
//! ([`scale`]). [`shared_pixels`] carries a screen from a VM process to the app.

pub mod frames;
pub mod input;
pub mod offscreen;
pub mod renderer;
pub mod scale;
pub mod shared_pixels;
pub mod widget;

pub use frames::{FrameSink, Frames, Pixels};
pub use scale::ScaleMode;
pub use shared_pixels::SharedPixels;
pub use widget::DisplayView;
pub use widget::InputPort;
