//! The meeting point of the GPU device's worker and the renderer: a CPU mirror of scanout 0
//! plus the region changed since the renderer last looked, and the cursor. [`FrameSink`] is
//! the [`ScanoutSink`] the VM writes into; the renderer takes the dirty region and uploads
//! only that.
//!
//! Across processes the mirror lives in shared memory ([`SharedPixels`]): the VM process's
//! `Frames` (made with [`Frames::new_shared`]) allocates each mode's mirror in a memfd, and
//! the app's `Frames` maps it ([`Frames::attach`]) and learns of changes from the link
//! ([`Frames::mark_dirty`]), so the renderer uploads from the same bytes the VM wrote.

use crate::shared_pixels::SharedPixels;
use emu::scanout::{CursorImage, PixelFormat, Rect, ScanoutSink, Surface};
use parking_lot::Mutex;
use std::sync::Arc;

/// Where a mirror's bytes live.
pub enum Pixels {
    /// In this process only.
    Owned(Vec<u8>),
    /// In memory shared with another process.
    Shared(SharedPixels),
}

impl Pixels {
    /// The bytes, when this side writes them (never for memory another process shared).
    fn writable(&mut self) -> Option<&mut [u8]> {
        match self {
            Self::Owned(v) => Some(v),
            Self::Shared(s) => s.as_mut_slice(),
        }
    }

    /// The shared memory, when the bytes live in one.
    pub fn shared(&self) -> Option<&SharedPixels> {
        match self {
            Self::Owned(_) => None,
            Self::Shared(s) => Some(s),
        }
    }
}

impl std::ops::Deref for Pixels {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Owned(v) => v,
            Self::Shared(s) => s.as_slice(),
        }
    }
}

/// The guest's screen as last flushed.
pub struct Mirror {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The guest's pixel layout, swizzled to RGBA by the renderer's shader.
    pub format: PixelFormat,
    /// `width * height` pixels of 4 bytes, rows packed without padding.
    pub pixels: Pixels,
    /// Counts the mirrors a `Frames` made: a new number is a new allocation.
    pub generation: u64,
}

/// What changed since the last [`Frames::take_changes`].
pub struct Changes<'a> {
    /// The screen (None: the guest has no mode set).
    pub mirror: Option<&'a Mirror>,
    /// The part to upload; the whole screen after a mode change.
    pub dirty: Option<Rect>,
    /// A new cursor image (Some(None): hidden).
    pub cursor_image: Option<Option<&'a CursorImage>>,
    /// Where the pointer's hot spot is, in guest screen pixels.
    pub cursor_position: (u32, u32),
}

#[derive(Default)]
struct State {
    mirror: Option<Mirror>,
    dirty: Option<Rect>,
    cursor: Option<CursorImage>,
    cursor_changed: bool,
    cursor_position: (u32, u32),
    frames: u64,
    generations: u64,
}

type Waker = Box<dyn Fn() + Send + Sync>;

/// Shared between the VM (through [`FrameSink`]) and the renderer.
#[derive(Default)]
pub struct Frames {
    state: Mutex<State>,
    waker: Mutex<Option<Waker>>,
    /// Mirrors are allocated in shared memory (the VM process of an app).
    shared: bool,
}

impl Frames {
    /// An empty mirror (no mode set), shared between the GPU worker and the window.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// An empty mirror whose screens are allocated in shared memory, for another process to
    /// map.
    pub fn new_shared() -> Arc<Self> {
        Arc::new(Self {
            shared: true,
            ..Self::default()
        })
    }

    /// Shows a screen another process draws into `pixels` (the app side of a link). Fails
    /// when `pixels` is too small for the size.
    pub fn attach(&self, width: u32, height: u32, format: PixelFormat, pixels: SharedPixels) {
        let mut state = self.state.lock();
        state.generations += 1;
        state.mirror = Some(Mirror {
            width,
            height,
            format,
            pixels: Pixels::Shared(pixels),
            generation: state.generations,
        });
        state.dirty = Some(Rect::new(0, 0, width, height));
        drop(state);
        self.wake();
    }

    /// Another process changed `dirty` of the attached screen (ignored when it does not fit).
    pub fn mark_dirty(&self, dirty: Rect) -> bool {
        let mut state = self.state.lock();
        let Some(mirror) = state.mirror.as_ref() else {
            return false;
        };
        if dirty.width == 0 || dirty.height == 0 || !dirty.fits_in(mirror.width, mirror.height) {
            return false;
        }
        state.dirty = Some(union(state.dirty, dirty));
        state.frames += 1;
        drop(state);
        self.wake();
        true
    }

    /// Called after each guest update (the window asks egui to repaint).
    pub fn set_waker(&self, waker: impl Fn() + Send + Sync + 'static) {
        *self.waker.lock() = Some(Box::new(waker));
    }

    fn wake(&self) {
        if let Some(waker) = self.waker.lock().as_ref() {
            waker();
        }
    }

    /// The guest screen's size, if it has a mode.
    pub fn size(&self) -> Option<(u32, u32)> {
        self.state
            .lock()
            .mirror
            .as_ref()
            .map(|m| (m.width, m.height))
    }

    /// The pointer image now (for a viewer that attaches late).
    pub fn cursor_image(&self) -> Option<CursorImage> {
        self.state.lock().cursor.clone()
    }

    /// Guest updates seen so far.
    pub fn frame_count(&self) -> u64 {
        self.state.lock().frames
    }

    /// Hands the changes since the last call to `apply` (under the lock, so the pixels do not
    /// move), then forgets them.
    pub fn take_changes<R>(&self, apply: impl FnOnce(Changes) -> R) -> R {
        let mut state = self.state.lock();
        let dirty = state.dirty.take();
        let cursor_changed = std::mem::take(&mut state.cursor_changed);
        let state = &*state;
        apply(Changes {
            mirror: state.mirror.as_ref(),
            dirty,
            cursor_image: cursor_changed.then_some(state.cursor.as_ref()),
            cursor_position: state.cursor_position,
        })
    }

    /// A copy of the screen as RGBA (for screenshots of what the window shows).
    pub fn rgba(&self) -> Option<(u32, u32, Vec<u8>)> {
        let state = self.state.lock();
        let m = state.mirror.as_ref()?;
        Some((m.width, m.height, m.format.to_rgba(&m.pixels)))
    }
}

fn union(a: Option<Rect>, b: Rect) -> Rect {
    match a {
        None => b,
        Some(a) => {
            let x = a.x.min(b.x);
            let y = a.y.min(b.y);
            let right = (a.x + a.width).max(b.x + b.width);
            let bottom = (a.y + a.height).max(b.y + b.height);
            Rect::new(x, y, right - x, bottom - y)
        }
    }
}

/// The sink a VM with a window writes its scanout into. Only scanout 0 is shown.
pub struct FrameSink(pub Arc<Frames>);

impl ScanoutSink for FrameSink {
    fn configure(&self, index: u32, mode: Option<(u32, u32, PixelFormat)>) {
        if index != 0 {
            return;
        }
        let mut state = self.0.state.lock();
        match mode {
            Some((width, height, format)) => {
                let same = state
                    .mirror
                    .as_ref()
                    .is_some_and(|m| (m.width, m.height, m.format) == (width, height, format));
                if !same {
                    let len = width as usize * height as usize * 4;
                    let pixels = if self.0.shared {
                        match SharedPixels::create(len) {
                            Ok(shared) => Pixels::Shared(shared),
                            Err(e) => {
                                log::error!("no shared memory for a {width}x{height} screen: {e}");
                                state.mirror = None;
                                return;
                            }
                        }
                    } else {
                        Pixels::Owned(vec![0; len])
                    };
                    state.generations += 1;
                    state.mirror = Some(Mirror {
                        width,
                        height,
                        format,
                        pixels,
                        generation: state.generations,
                    });
                    state.dirty = Some(Rect::new(0, 0, width, height));
                }
            }
            None => {
                state.mirror = None;
                state.dirty = None;
            }
        }
        drop(state);
        self.0.wake();
    }

    fn update(&self, index: u32, surface: &Surface, dirty: Rect) {
        if index != 0 {
            return;
        }
        let mut state = self.0.state.lock();
        let Some(mirror) = state.mirror.as_mut() else {
            return;
        };
        if (mirror.width, mirror.height) != (surface.width, surface.height)
            || !dirty.fits_in(surface.width, surface.height)
        {
            return;
        }
        mirror.format = surface.format;
        let Some(pixels) = mirror.pixels.writable() else {
            return;
        };
        let stride = surface.width as usize * 4;
        let row = dirty.width as usize * 4;
        for y in dirty.y as usize..(dirty.y + dirty.height) as usize {
            let start = y * stride + dirty.x as usize * 4;
            pixels[start..start + row].copy_from_slice(&surface.pixels[start..start + row]);
        }
        state.dirty = Some(union(state.dirty, dirty));
        state.frames += 1;
        drop(state);
        self.0.wake();
    }

    fn cursor_image(&self, index: u32, image: Option<&CursorImage>) {
        if index != 0 {
            return;
        }
        let mut state = self.0.state.lock();
        state.cursor = image.cloned();
        state.cursor_changed = true;
        drop(state);
        self.0.wake();
    }

    fn cursor_position(&self, index: u32, x: u32, y: u32) {
        if index != 0 {
            return;
        }
        self.0.state.lock().cursor_position = (x, y);
        self.0.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn surface(pixels: &[u8]) -> Surface<'_> {
        Surface {
            width: 4,
            height: 2,
            format: PixelFormat::Bgrx,
            pixels,
        }
    }

    #[test]
    fn dirty_regions_accumulate_and_are_taken_once() {
        let frames = Frames::new();
        let sink = FrameSink(frames.clone());
        sink.configure(0, Some((4, 2, PixelFormat::Bgrx)));
        frames.take_changes(|c| assert_eq!(c.dirty, Some(Rect::new(0, 0, 4, 2))));
        let pixels: Vec<u8> = (0..32).collect();
        sink.update(0, &surface(&pixels), Rect::new(1, 0, 1, 1));
        sink.update(0, &surface(&pixels), Rect::new(3, 1, 1, 1));
        frames.take_changes(|c| {
            assert_eq!(c.dirty, Some(Rect::new(1, 0, 3, 2)));
            let m = c.mirror.unwrap();
            assert_eq!(&m.pixels[4..8], &[4, 5, 6, 7]);
            assert_eq!(
                &m.pixels[0..4],
                &[0, 0, 0, 0],
                "outside the dirty rectangles"
            );
        });
        frames.take_changes(|c| assert_eq!(c.dirty, None));
        assert_eq!(frames.frame_count(), 2);
    }

    #[test]
    fn bad_updates_are_ignored() {
        let frames = Frames::new();
        let sink = FrameSink(frames.clone());
        let pixels = vec![1u8; 32];
        sink.update(0, &surface(&pixels), Rect::new(0, 0, 1, 1));
        assert!(frames.size().is_none(), "no mode yet");
        sink.configure(0, Some((4, 2, PixelFormat::Bgrx)));
        sink.update(0, &surface(&pixels), Rect::new(3, 0, 2, 1));
        sink.update(1, &surface(&pixels), Rect::new(0, 0, 1, 1));
        assert_eq!(frames.frame_count(), 0);
        sink.configure(0, None);
        assert!(frames.rgba().is_none());
    }
}
