//! The wgpu side: one texture for the guest scanout (updated by dirty rectangle only, pixels
//! kept in the guest's byte order and swizzled in the shader), one for the cursor, and a
//! pipeline that draws either as a quad.

use crate::frames::Frames;
use bytemuck::{Pod, Zeroable};
use emu::scanout::{PixelFormat, Rect};

const SHADER: &str = include_str!("../../assets/shaders/scanout.wgsl");

/// The shader's uniform block.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    /// The quad in normalized device coordinates: x0, y0 (top left), x1, y1.
    rect: [f32; 4],
    /// Texel components holding red, green, blue, alpha (4: opaque).
    channels: [u32; 4],
}

/// Which texel component holds each channel for a guest format (the texture is RGBA8 over
/// the guest's bytes, so component i is byte i).
fn channels(format: PixelFormat) -> [u32; 4] {
    let ([r, g, b], _) = format.channel_offsets();
    [r as u32, g as u32, b as u32, 4]
}

struct Layer {
    texture: wgpu::Texture,
    bind_group: wgpu::BindGroup,
    params: wgpu::Buffer,
    width: u32,
    height: u32,
}

/// Renders a [`Frames`] into any render pass whose target has `target_format`.
pub struct ScanoutRenderer {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    sampler: wgpu::Sampler,
    texel_format: wgpu::TextureFormat,
    screen: Option<Layer>,
    screen_format: PixelFormat,
    cursor: Option<Layer>,
    cursor_hot: (u32, u32),
    cursor_position: (u32, u32),
}

impl ScanoutRenderer {
    /// Builds the pipeline that draws scanouts into targets of `target_format`.
    pub fn new(device: &wgpu::Device, target_format: wgpu::TextureFormat) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("cove scanout shader"),
            source: wgpu::ShaderSource::Wgsl(SHADER.into()),
        });
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("cove scanout bind group layout"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Float { filterable: true },
                        view_dimension: wgpu::TextureViewDimension::D2,
                        multisampled: false,
                    },
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 1,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Sampler(wgpu::SamplerBindingType::Filtering),
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 2,
                    visibility: wgpu::ShaderStages::VERTEX_FRAGMENT,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("cove scanout pipeline layout"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("cove scanout pipeline"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some("vs_main"),
                compilation_options: Default::default(),
                buffers: &[],
            },
            primitive: wgpu::PrimitiveState {
                topology: wgpu::PrimitiveTopology::TriangleStrip,
                ..Default::default()
            },
            depth_stencil: None,
            multisample: wgpu::MultisampleState::default(),
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some("fs_main"),
                compilation_options: Default::default(),
                targets: &[Some(wgpu::ColorTargetState {
                    format: target_format,
                    blend: Some(wgpu::BlendState::ALPHA_BLENDING),
                    write_mask: wgpu::ColorWrites::ALL,
                })],
            }),
            multiview_mask: None,
            cache: None,
        });
        let sampler = device.create_sampler(&wgpu::SamplerDescriptor {
            label: Some("cove scanout sampler"),
            mag_filter: wgpu::FilterMode::Linear,
            min_filter: wgpu::FilterMode::Linear,
            ..Default::default()
        });
        // Sampling an sRGB texture into an sRGB target round-trips the guest's bytes.
        let texel_format = if target_format.is_srgb() {
            wgpu::TextureFormat::Rgba8UnormSrgb
        } else {
            wgpu::TextureFormat::Rgba8Unorm
        };
        Self {
            pipeline,
            layout,
            sampler,
            texel_format,
            screen: None,
            screen_format: PixelFormat::Bgrx,
            cursor: None,
            cursor_hot: (0, 0),
            cursor_position: (0, 0),
        }
    }

    /// The guest screen's size, once it has one.
    pub fn screen_size(&self) -> Option<(u32, u32)> {
        self.screen.as_ref().map(|l| (l.width, l.height))
    }

    fn layer(&self, device: &wgpu::Device, width: u32, height: u32, label: &str) -> Layer {
        let texture = device.create_texture(&wgpu::TextureDescriptor {
            label: Some(label),
            size: wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: self.texel_format,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: std::mem::size_of::<Params>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::TextureView(&view),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: wgpu::BindingResource::Sampler(&self.sampler),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: params.as_entire_binding(),
                },
            ],
        });
        Layer {
            texture,
            bind_group,
            params,
            width,
            height,
        }
    }

    /// Uploads what changed in `frames` since the last call: the dirty rectangle only, or the
    /// whole screen after a mode change. Returns the bytes uploaded.
    pub fn upload(&mut self, device: &wgpu::Device, queue: &wgpu::Queue, frames: &Frames) -> u64 {
        frames.take_changes(|changes| {
            let mut uploaded = 0;
            self.cursor_position = changes.cursor_position;
            match changes.mirror {
                None => self.screen = None,
                Some(mirror) => {
                    let resized = self.screen_size() != Some((mirror.width, mirror.height));
                    if resized {
                        self.screen =
                            Some(self.layer(device, mirror.width, mirror.height, "cove scanout"));
                    }
                    self.screen_format = mirror.format;
                    let dirty = if resized {
                        Some(Rect::new(0, 0, mirror.width, mirror.height))
                    } else {
                        changes.dirty
                    };
                    if let (Some(layer), Some(dirty)) = (&self.screen, dirty) {
                        uploaded +=
                            write_rect(queue, &layer.texture, mirror.width, &mirror.pixels, dirty);
                    }
                }
            }
            if let Some(image) = changes.cursor_image {
                self.cursor = image.map(|image| {
                    let layer = self.layer(device, image.width, image.height, "cove cursor");
                    uploaded += write_rect(
                        queue,
                        &layer.texture,
                        image.width,
                        &image.rgba,
                        Rect::new(0, 0, image.width, image.height),
                    );
                    layer
                });
                self.cursor_hot = image.map_or((0, 0), |i| (i.hot_x, i.hot_y));
            }
            uploaded
        })
    }

    /// Writes the uniforms for a draw into a viewport of `viewport` (width, height) pixels.
    pub fn prepare_params(&self, queue: &wgpu::Queue) {
        if let Some(screen) = &self.screen {
            let params = Params {
                rect: [-1.0, 1.0, 1.0, -1.0],
                channels: channels(self.screen_format),
            };
            queue.write_buffer(&screen.params, 0, bytemuck::bytes_of(&params));
            if let Some(cursor) = &self.cursor {
                // The cursor in the screen's coordinates, as a fraction of it, then in NDC.
                let (sw, sh) = (screen.width as f32, screen.height as f32);
                let x0 = (self.cursor_position.0 as f32 - self.cursor_hot.0 as f32) / sw;
                let y0 = (self.cursor_position.1 as f32 - self.cursor_hot.1 as f32) / sh;
                let x1 = x0 + cursor.width as f32 / sw;
                let y1 = y0 + cursor.height as f32 / sh;
                let params = Params {
                    rect: [
                        x0 * 2.0 - 1.0,
                        1.0 - y0 * 2.0,
                        x1 * 2.0 - 1.0,
                        1.0 - y1 * 2.0,
                    ],
                    channels: [0, 1, 2, 3],
                };
                queue.write_buffer(&cursor.params, 0, bytemuck::bytes_of(&params));
            }
        }
    }

    /// Draws the screen and cursor into the pass's current viewport.
    pub fn paint(&self, pass: &mut wgpu::RenderPass<'_>) {
        let Some(screen) = &self.screen else {
            return;
        };
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &screen.bind_group, &[]);
        pass.draw(0..4, 0..1);
        if let Some(cursor) = &self.cursor {
            pass.set_bind_group(0, &cursor.bind_group, &[]);
            pass.draw(0..4, 0..1);
        }
    }
}

/// Uploads `rect` of a tightly packed `width`-pixel-wide image to the same place in `texture`.
fn write_rect(
    queue: &wgpu::Queue,
    texture: &wgpu::Texture,
    width: u32,
    pixels: &[u8],
    rect: Rect,
) -> u64 {
    if rect.width == 0 || rect.height == 0 {
        return 0;
    }
    let stride = width * 4;
    let offset = u64::from(rect.y) * u64::from(stride) + u64::from(rect.x) * 4;
    queue.write_texture(
        wgpu::TexelCopyTextureInfo {
            texture,
            mip_level: 0,
            origin: wgpu::Origin3d {
                x: rect.x,
                y: rect.y,
                z: 0,
            },
            aspect: wgpu::TextureAspect::All,
        },
        pixels,
        wgpu::TexelCopyBufferLayout {
            offset,
            bytes_per_row: Some(stride),
            rows_per_image: None,
        },
        wgpu::Extent3d {
            width: rect.width,
            height: rect.height,
            depth_or_array_layers: 1,
        },
    );
    u64::from(rect.width) * u64::from(rect.height) * 4
}
