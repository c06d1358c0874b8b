//! Library thumbnails: live from a running VM's scanout (refreshed about once a second), or
//! the VM's saved `thumbnail.png` once it stopped (see [`super::running`] for when that file is
//! written and removed). A running VM whose guest shows nothing yet has no thumbnail.

use crate::library::{VmEntry, THUMBNAIL_FILE};
use display::Frames;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

const SIZE: egui::Vec2 = egui::vec2(96.0, 72.0);

struct Cached {
    texture: egui::TextureHandle,
    /// When it was made, and the file time it came from (None: live).
    made: Instant,
    file_time: Option<SystemTime>,
}

#[derive(Default)]
pub struct Thumbnails {
    cache: HashMap<String, Cached>,
}

impl Thumbnails {
    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        ctx: &egui::Context,
        vm: &VmEntry,
        live: Option<&Frames>,
    ) {
        let name = vm.config.name.clone();
        let fresh = self.cache.get(&name).is_some_and(|c| match live {
            // A screen cleared by a reset or a stop goes at once, not a second later.
            Some(frames) => {
                c.file_time.is_none()
                    && c.made.elapsed() < Duration::from_secs(1)
                    && frames.size().is_some()
            }
            None => c.file_time.is_some() && c.file_time == file_time(vm),
        });
        if !fresh {
            let image = match live {
                Some(frames) => frames.rgba().map(|(w, h, rgba)| (w, h, rgba, None)),
                None => load_png(&vm.dir.join(THUMBNAIL_FILE))
                    .map(|(w, h, rgba)| (w, h, rgba, file_time(vm))),
            };
            match image {
                Some((w, h, rgba, file_time)) => {
                    let color =
                        egui::ColorImage::from_rgba_unmultiplied([w as usize, h as usize], &rgba);
                    let texture = ctx.load_texture(
                        format!("thumb-{name}"),
                        color,
                        egui::TextureOptions::LINEAR,
                    );
                    self.cache.insert(
                        name.clone(),
                        Cached {
                            texture,
                            made: Instant::now(),
                            file_time,
                        },
                    );
                }
                None => {
                    self.cache.remove(&name);
                }
            }
        }
        match self.cache.get(&name) {
            Some(cached) => {
                ui.add(egui::Image::new(&cached.texture).fit_to_exact_size(SIZE));
            }
            None => {
                let (rect, _) = ui.allocate_exact_size(SIZE, egui::Sense::hover());
                ui.painter()
                    .rect_filled(rect, 4.0, egui::Color32::from_gray(40));
            }
        }
    }
}

fn file_time(vm: &VmEntry) -> Option<SystemTime> {
    std::fs::metadata(vm.dir.join(THUMBNAIL_FILE))
        .and_then(|m| m.modified())
        .ok()
}

fn load_png(path: &std::path::Path) -> Option<(u32, u32, Vec<u8>)> {
    let file = std::fs::File::open(path).ok()?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().ok()?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).ok()?;
    let rgba = match info.color_type {
        png::ColorType::Rgba => buf[..info.buffer_size()].to_vec(),
        png::ColorType::Rgb => buf[..info.buffer_size()]
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 0xff])
            .collect(),
        _ => return None,
    };
    Some((info.width, info.height, rgba))
}
