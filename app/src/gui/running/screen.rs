//! What the VM tab knows of the guest's screen and its resets: [`Screen`] is the scanout sink
//! the VM draws into (it forwards to the display crate's [`FrameSink`] and remembers when the
//! guest last set a mode), and [`watch_events`] follows the VM's events on a thread of its own,
//! so that a reset blanks the screen and marks the serial log as soon as it happens, before the
//! next boot can draw or print anything.

use super::console::Scrollback;
use display::{FrameSink, Frames};
use emu::control::{TimedEvent, VmEvent};
use emu::scanout::{CursorImage, PixelFormat, Rect, ScanoutSink, Surface};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// The line the serial log gets at each reset of the machine.
pub const RESET_MARK: &str = "--- reset ---";

/// The guest's screen as the VM tab shows it.
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
    pub fn has_frame(&self) -> bool {
        self.frames.size().is_some()
    }

    /// Forgets the screen (the VM stopped): the tab and the thumbnails show no stale frame.
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

/// Follows `events` until `done` is set: each reset clears `screen` (when the VM has one) and
/// writes [`RESET_MARK`] into the serial log, then asks `ctx` to repaint.
pub fn watch_events(
    events: Receiver<TimedEvent>,
    screen: Option<Arc<Screen>>,
    scrollback: Arc<Mutex<Scrollback>>,
    done: Arc<AtomicBool>,
    ctx: egui::Context,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("cove-vm-events".into())
        .spawn(move || loop {
            match events.recv_timeout(Duration::from_millis(200)) {
                Ok(TimedEvent {
                    event: VmEvent::Reset { .. },
                    timestamp,
                }) => {
                    if let Some(screen) = &screen {
                        screen.clear_after_reset(timestamp);
                    }
                    scrollback.lock().mark(RESET_MARK);
                    ctx.request_repaint();
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) if !done.load(Ordering::Acquire) => {}
                Err(_) => return,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

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
