//! The host's side of a VM's display hardware: where scanouts go, the keyboard and tablet
//! event queues, the display size the window asks for, and screenshots. It outlives reboots,
//! so a window keeps working while the machine behind it is rebuilt.

use crate::scanout::SharedSink;
use crate::virtio::gpu::GpuHandle;
use crate::virtio::input::{InputEvent, InputQueue};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// Image formats a screendump can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    /// Binary portable pixmap (QEMU's default).
    Ppm,
}

/// Cheap to clone; every clone talks to the same display.
#[derive(Clone)]
pub struct DisplayPort {
    inner: Arc<Inner>,
}

struct Inner {
    keyboard: Arc<InputQueue>,
    tablet: Arc<InputQueue>,
    sink: Mutex<Option<SharedSink>>,
    size: Mutex<(u32, u32)>,
    gpu: Mutex<Option<GpuHandle>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DisplayPort {
    pub(crate) fn new(width: u32, height: u32) -> std::io::Result<Self> {
        Ok(Self {
            inner: Arc::new(Inner {
                keyboard: InputQueue::new()?,
                tablet: InputQueue::new()?,
                sink: Mutex::new(None),
                size: Mutex::new((width, height)),
                gpu: Mutex::new(None),
            }),
        })
    }

    /// Shows scanouts on `sink` from the next boot on (set it before starting the VM).
    pub fn set_sink(&self, sink: SharedSink) {
        *lock(&self.inner.sink) = Some(sink);
    }

    pub(crate) fn sink(&self) -> Option<SharedSink> {
        lock(&self.inner.sink).clone()
    }

    pub(crate) fn keyboard_queue(&self) -> Arc<InputQueue> {
        self.inner.keyboard.clone()
    }

    pub(crate) fn tablet_queue(&self) -> Arc<InputQueue> {
        self.inner.tablet.clone()
    }

    pub(crate) fn size(&self) -> (u32, u32) {
        *lock(&self.inner.size)
    }

    /// The machine built a new GPU (a boot); None while between boots.
    pub(crate) fn set_gpu(&self, gpu: Option<GpuHandle>) {
        *lock(&self.inner.gpu) = gpu;
    }

    /// Keyboard events (evdev key codes), ending with a sync.
    pub fn send_keyboard(&self, events: &[InputEvent]) {
        self.inner.keyboard.send(events);
    }

    /// Tablet events (absolute position 0..=0x7fff, buttons, wheel), ending with a sync.
    pub fn send_tablet(&self, events: &[InputEvent]) {
        self.inner.tablet.send(events);
    }

    /// The window is now `width` x `height`: the guest is offered that mode.
    pub fn set_display_size(&self, width: u32, height: u32) {
        *lock(&self.inner.size) = (width, height);
        if let Some(gpu) = lock(&self.inner.gpu).as_ref() {
            gpu.set_display_size(0, width, height);
        }
    }

    /// The guest's screen now: width, height, RGBA pixels. None before the guest set a mode.
    pub fn snapshot(&self) -> Option<(u32, u32, Vec<u8>)> {
        lock(&self.inner.gpu).as_ref()?.snapshot(0)
    }

    /// Writes the guest's screen to `path`, anywhere this process can write, as QEMU does;
    /// but only to a regular file (a new one gets mode 0600), never through a symlink in the
    /// last component, and never blocking on a FIFO (see
    /// [`create_regular_file`](crate::control::secure_path::create_regular_file)).
    pub fn screendump(&self, path: &Path, format: ImageFormat) -> Result<(), String> {
        let (width, height, rgba) = self
            .snapshot()
            .ok_or("the guest has not put anything on its display yet")?;
        let file = crate::control::secure_path::create_regular_file(path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        let written = match format {
            ImageFormat::Png => write_png(&mut out, width, height, &rgba),
            ImageFormat::Ppm => write_ppm(&mut out, width, height, &rgba),
        };
        written
            .and_then(|_| std::io::Write::flush(&mut out).map_err(|e| e.to_string()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

/// Encodes RGBA pixels as PNG.
pub fn write_png(
    out: &mut impl std::io::Write,
    width: u32,
    height: u32,
    rgba: &[u8],
) -> Result<(), String> {
    let mut encoder = png::Encoder::new(out, width, height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(rgba).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())
}

fn write_ppm(
    out: &mut impl std::io::Write,
    width: u32,
    height: u32,
    rgba: &[u8],
) -> Result<(), String> {
    let mut data = format!("P6\n{width} {height}\n255\n").into_bytes();
    for pixel in rgba.chunks_exact(4) {
        data.extend_from_slice(&pixel[..3]);
    }
    out.write_all(&data).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_and_ppm_encode() {
        let rgba = [255u8, 0, 0, 255, 0, 255, 0, 255];
        let mut png_bytes = Vec::new();
        write_png(&mut png_bytes, 2, 1, &rgba).unwrap();
        assert_eq!(&png_bytes[1..4], b"PNG");
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (2, 1));
        assert_eq!(&buf[..8], &rgba);
        let mut ppm = Vec::new();
        write_ppm(&mut ppm, 2, 1, &rgba).unwrap();
        assert_eq!(ppm, b"P6\n2 1\n255\n\xff\x00\x00\x00\xff\x00".to_vec());
    }

    #[test]
    fn screendump_without_a_gpu_says_why() {
        let port = DisplayPort::new(640, 480).unwrap();
        let err = port
            .screendump(Path::new("/tmp/never-written.png"), ImageFormat::Png)
            .unwrap_err();
        assert!(err.contains("not put anything"), "{err}");
        assert!(!Path::new("/tmp/never-written.png").exists());
    }
}
