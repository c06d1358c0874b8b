//! The VM process's screen: [`Screen`] is the scanout sink the VM draws into (it forwards to
//! the display crate's [`FrameSink`], whose mirror lives in shared memory, and remembers when
//! the guest last set a mode), so that a reset can blank the screen as soon as it happens
//! without ever wiping a mode the next boot has already set.

use display::{FrameSink, Frames};
use emu::scanout::{CursorImage, PixelFormat, Rect, ScanoutSink, Surface};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::SystemTime;

/// The guest's screen as the VM process keeps it.
pub struct Screen {
    frames: Arc<Frames>,
    sink: FrameSink,
    /// When the guest last set a mode on scanout 0. Held while a mode is set or the screen is
    /// cleared, so a clear never wipes a mode the next boot has already set.
    configured_at: Mutex<Option<SystemTime>>,
}

impl Screen {
    pub fn new(frames: Arc<Frames>) -> Arc<Self> {
        Arc::new(Self {
            sink: FrameSink(frames.clone()),
            frames,
            configured_at: Mutex::new(None),
        })
    }

    pub fn frames(&self) -> &Arc<Frames> {
        &self.frames
    }

    /// Whether the guest has put something on the screen (this boot).
    #[cfg(test)]
    pub fn has_frame(&self) -> bool {
        self.frames.size().is_some()
    }

    /// Forgets the screen (the VM stopped).
    #[cfg(test)]
    pub fn clear(&self) {
        let _held = self.configured_at.lock();
        self.sink.configure(0, None);
    }

    /// Forgets the screen of a machine that was reset at `reset_at`, unless the next boot has
    /// already set a mode since.
    pub fn clear_after_reset(&self, reset_at: SystemTime) {
        let configured_at = self.configured_at.lock();
        if configured_at.is_none_or(|t| t <= reset_at) {
            self.sink.configure(0, None);
        }
    }
}

impl ScanoutSink for Screen {
    fn configure(&self, index: u32, mode: Option<(u32, u32, PixelFormat)>) {
        let mut configured_at = self.configured_at.lock();
        if index == 0 && mode.is_some() {
            *configured_at = Some(SystemTime::now());
        }
        self.sink.configure(index, mode);
    }

    fn update(&self, index: u32, surface: &Surface, dirty: Rect) {
        self.sink.update(index, surface, dirty);
    }

    fn cursor_image(&self, index: u32, image: Option<&CursorImage>) {
        self.sink.cursor_image(index, image);
    }

    fn cursor_position(&self, index: u32, x: u32, y: u32) {
        self.sink.cursor_position(index, x, y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_reset_clears_the_old_screen_but_never_the_next_boots() {
        let screen = Screen::new(Frames::new());
        screen.configure(0, Some((4, 2, PixelFormat::Bgrx)));
        assert!(screen.has_frame());
        screen.clear_after_reset(SystemTime::now() + Duration::from_secs(1));
        assert!(!screen.has_frame(), "the old boot's screen is gone");
        let reset_at = SystemTime::now() - Duration::from_secs(1);
        screen.configure(0, Some((4, 2, PixelFormat::Bgrx)));
        screen.clear_after_reset(reset_at);
        assert!(
            screen.has_frame(),
            "the next boot set its mode after the reset"
        );
        screen.clear();
        assert!(!screen.has_frame());
    }
}
