//! Scanouts: what a display device shows, and the sink a host display implements to show it.
//!
//! The GPU device owns the pixels (one host copy per guest resource) and tells the sink which
//! resource a scanout shows and which rectangle of it changed. The sink (the `display` crate's
//! wgpu renderer, or nothing when headless) uploads just that rectangle. Pixels stay in the
//! guest's byte order; [`PixelFormat`] says which, so the renderer can swizzle on the GPU.

use std::sync::Arc;

/// A rectangle in pixels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rect {
    /// Left edge, in pixels from the surface's left.
    pub x: u32,
    /// `VIRTIO_GPU_CMD_RESOURCE_FLUSH`: a rectangle of a resource changed; update its scanouts.
    pub y: u32,
    /// `VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D`: copy a rectangle from guest backing to the host.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Rect {
    /// The rectangle at (`x`, `y`) of `width` x `height` pixels.
    pub fn new(x: u32, y: u32, width: u32, height: u32) -> Self {
        Self {
            x,
            y,
            width,
            height,
        }
    }

    /// Whether the rectangle lies inside a `width` x `height` surface (no overflow).
    pub fn fits_in(&self, width: u32, height: u32) -> bool {
        self.x.checked_add(self.width).is_some_and(|r| r <= width)
            && self.y.checked_add(self.height).is_some_and(|b| b <= height)
    }

    /// The overlap of two rectangles, if any.
    pub fn intersect(&self, other: &Rect) -> Option<Rect> {
        let x = self.x.max(other.x);
        let y = self.y.max(other.y);
        let right = (u64::from(self.x) + u64::from(self.width))
            .min(u64::from(other.x) + u64::from(other.width));
        let bottom = (u64::from(self.y) + u64::from(self.height))
            .min(u64::from(other.y) + u64::from(other.height));
        (right > u64::from(x) && bottom > u64::from(y)).then(|| Rect {
            x,
            y,
            width: (right - u64::from(x)) as u32,
            height: (bottom - u64::from(y)) as u32,
        })
    }
}

/// The byte order of 32-bit pixels, as virtio-gpu names them (memory order, low byte first:
/// `Bgra` is B, G, R, A in memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelFormat {
    /// `VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM`: bytes B, G, R, A.
    Bgra,
    /// `VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM`: bytes B, G, R, unused.
    Bgrx,
    /// `VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM`: bytes A, R, G, B.
    Argb,
    /// `VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM`: bytes unused, R, G, B.
    Xrgb,
    /// `VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM`: bytes R, G, B, A.
    Rgba,
    /// `VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM`: bytes unused, B, G, R.
    Xbgr,
    /// `VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM`: bytes A, B, G, R.
    Abgr,
    /// `VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM`: bytes R, G, B, unused.
    Rgbx,
}

impl PixelFormat {
    /// Byte offsets of red, green, blue and (if meaningful) alpha within a pixel.
    pub fn channel_offsets(self) -> ([usize; 3], Option<usize>) {
        match self {
            Self::Bgra => ([2, 1, 0], Some(3)),
            Self::Bgrx => ([2, 1, 0], None),
            Self::Argb => ([1, 2, 3], Some(0)),
            Self::Xrgb => ([1, 2, 3], None),
            Self::Rgba => ([0, 1, 2], Some(3)),
            Self::Rgbx => ([0, 1, 2], None),
            Self::Abgr => ([3, 2, 1], Some(0)),
            Self::Xbgr => ([3, 2, 1], None),
        }
    }

    /// Converts `pixels` (tightly packed, this format) to opaque RGBA.
    pub fn to_rgba(self, pixels: &[u8]) -> Vec<u8> {
        let ([r, g, b], _) = self.channel_offsets();
        let mut out = Vec::with_capacity(pixels.len());
        for p in pixels.chunks_exact(4) {
            out.extend_from_slice(&[p[r], p[g], p[b], 0xff]);
        }
        out
    }
}

/// A read-only view of a whole guest surface.
#[derive(Clone, Copy, Debug)]
pub struct Surface<'a> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The byte order of each 4-byte pixel in `pixels`.
    pub format: PixelFormat,
    /// `width * height * 4` bytes, rows top to bottom, no padding.
    pub pixels: &'a [u8],
}

/// A cursor image (always RGBA-converted, small) with its hot spot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CursorImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Hot spot column, in pixels from the image's left edge.
    pub hot_x: u32,
    /// Hot spot row, in pixels from the image's top edge.
    pub hot_y: u32,
    /// `width * height * 4` bytes of RGBA, rows top to bottom.
    pub rgba: Vec<u8>,
}

/// Where scanouts go. Called from the GPU device's worker thread; implementations copy what
/// they need and return quickly.
pub trait ScanoutSink: Send + Sync {
    /// Scanout `index` now shows a `width` x `height` surface, or (None) is off.
    fn configure(&self, index: u32, mode: Option<(u32, u32, PixelFormat)>);
    /// `dirty` (in surface coordinates) of the surface scanout `index` shows changed.
    fn update(&self, index: u32, surface: &Surface, dirty: Rect);
    /// The pointer image changed (None: hidden).
    fn cursor_image(&self, index: u32, image: Option<&CursorImage>);
    /// The pointer moved to (`x`, `y`) on scanout `index`.
    fn cursor_position(&self, index: u32, x: u32, y: u32);
}

/// Shared handle to a sink.
pub type SharedSink = Arc<dyn ScanoutSink>;
