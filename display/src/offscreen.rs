//! Rendering without a window: the same renderer draws the guest screen into an offscreen
//! texture that is read back as RGBA. Used for screenshots of what the display path shows and
//! for measuring what a frame costs.

use crate::frames::Frames;
use crate::renderer::ScanoutRenderer;

/// Why no headless GPU device could be had.
#[derive(Debug, thiserror::Error)]
pub enum OffscreenError {
    /// wgpu found no adapter, hardware or software.
    #[error("no wgpu adapter (install Mesa's Vulkan or GL drivers): {0}")]
    Adapter(String),
    /// The adapter would not give a device.
    #[error("cannot open the GPU device: {0}")]
    Device(String),
    /// Mapping the readback buffer failed.
    #[error("reading the rendered image back failed: {0}")]
    Readback(String),
    /// There is nothing to render yet.
    #[error("the guest has not set a display mode")]
    NoScreen,
}

/// A headless device with a scanout renderer.
pub struct Offscreen {
    device: wgpu::Device,
    queue: wgpu::Queue,
    renderer: ScanoutRenderer,
    /// The wgpu adapter in use (for logs and test reports, e.g. "llvmpipe").
    pub adapter_name: String,
}

const TARGET: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8Unorm;

impl Offscreen {
    /// Opens a headless wgpu device (any adapter, software included) with a scanout renderer.
    pub fn new() -> Result<Self, OffscreenError> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter =
            pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
                .map_err(|e| OffscreenError::Adapter(e.to_string()))?;
        let adapter_name = adapter.get_info().name;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("cove offscreen"),
            required_limits: wgpu::Limits::downlevel_defaults().using_resolution(adapter.limits()),
            ..Default::default()
        }))
        .map_err(|e| OffscreenError::Device(e.to_string()))?;
        let renderer = ScanoutRenderer::new(&device, TARGET);
        Ok(Self {
            device,
            queue,
            renderer,
            adapter_name,
        })
    }

    /// Uploads what changed in `frames` (as the window does each frame) and waits until the
    /// GPU has it. Returns the bytes uploaded.
    pub fn upload(&mut self, frames: &Frames) -> u64 {
        let bytes = self.renderer.upload(&self.device, &self.queue, frames);
        self.queue.submit([]);
        let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
        bytes
    }

    /// Draws the current screen at its own size and reads it back: (width, height, RGBA).
    pub fn render(&mut self, frames: &Frames) -> Result<(u32, u32, Vec<u8>), OffscreenError> {
        self.renderer.upload(&self.device, &self.queue, frames);
        let (width, height) = self
            .renderer
            .screen_size()
            .ok_or(OffscreenError::NoScreen)?;
        let texture = self.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("cove offscreen target"),
            size: wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: TARGET,
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
            view_formats: &[],
        });
        let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
        let row = (width * 4).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("cove offscreen readback"),
            size: u64::from(row) * u64::from(height),
            usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
            mapped_at_creation: false,
        });
        self.renderer.prepare_params(&self.queue);
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        {
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("cove offscreen pass"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &view,
                    depth_slice: None,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(wgpu::Color::BLACK),
                        store: wgpu::StoreOp::Store,
                    },
                })],
                ..Default::default()
            });
            self.renderer.paint(&mut pass);
        }
        encoder.copy_texture_to_buffer(
            texture.as_image_copy(),
            wgpu::TexelCopyBufferInfo {
                buffer: &buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(row),
                    rows_per_image: None,
                },
            },
            wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            },
        );
        self.queue.submit([encoder.finish()]);
        let (sender, receiver) = std::sync::mpsc::channel();
        buffer
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |result| {
                let _ = sender.send(result);
            });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| OffscreenError::Readback(e.to_string()))?;
        receiver
            .recv()
            .map_err(|e| OffscreenError::Readback(e.to_string()))?
            .map_err(|e| OffscreenError::Readback(e.to_string()))?;
        let mapped = buffer
            .get_mapped_range(..)
            .map_err(|e| OffscreenError::Readback(format!("{e:?}")))?;
        let mut rgba = Vec::with_capacity(width as usize * height as usize * 4);
        for y in 0..height as usize {
            let start = y * row as usize;
            rgba.extend_from_slice(&mapped[start..start + width as usize * 4]);
        }
        Ok((width, height, rgba))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::FrameSink;
    use emu::scanout::{PixelFormat, Rect, ScanoutSink, Surface};

    #[test]
    fn renders_a_guest_frame_with_the_right_colours() {
        let mut offscreen = match Offscreen::new() {
            Ok(o) => o,
            Err(e) => {
                assert!(std::env::var_os("CI").is_none(), "CI installs Mesa: {e}");
                eprintln!("SKIPPED: no wgpu adapter here: {e}");
                return;
            }
        };
        let frames = Frames::new();
        let sink = FrameSink(frames.clone());
        let (w, h) = (64u32, 32u32);
        sink.configure(0, Some((w, h, PixelFormat::Bgrx)));
        // Left half blue, right half red, in BGRX byte order.
        let pixels: Vec<u8> = (0..h)
            .flat_map(|_| {
                (0..w).flat_map(|x| {
                    if x < w / 2 {
                        [0xff, 0, 0, 0]
                    } else {
                        [0, 0, 0xff, 0]
                    }
                })
            })
            .collect();
        let surface = Surface {
            width: w,
            height: h,
            format: PixelFormat::Bgrx,
            pixels: &pixels,
        };
        sink.update(0, &surface, Rect::new(0, 0, w, h));
        let (rw, rh, rgba) = offscreen.render(&frames).unwrap();
        assert_eq!((rw, rh), (w, h));
        let at = |x: u32, y: u32| &rgba[((y * w + x) * 4) as usize..((y * w + x) * 4 + 4) as usize];
        assert_eq!(
            at(5, 5),
            &[0, 0, 0xff, 0xff],
            "blue, swizzled from BGRX, opaque"
        );
        assert_eq!(at(60, 20), &[0xff, 0, 0, 0xff], "red");
        // A dirty rectangle: only it is uploaded.
        let mut changed = pixels.clone();
        let at_px = ((10 * w + 40) * 4) as usize;
        changed[at_px..at_px + 4].copy_from_slice(&[0, 0xff, 0, 0]);
        let surface = Surface {
            pixels: &changed,
            ..surface
        };
        sink.update(0, &surface, Rect::new(40, 10, 1, 1));
        assert_eq!(offscreen.upload(&frames), 4);
        let (_, _, rgba) = offscreen.render(&frames).unwrap();
        let at = |x: u32, y: u32| &rgba[((y * w + x) * 4) as usize..((y * w + x) * 4 + 4) as usize];
        assert_eq!(at(40, 10), &[0, 0xff, 0, 0xff], "green");
    }
}
