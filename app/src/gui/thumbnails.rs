//! Library thumbnails: live from a running VM's scanout (refreshed about once a second), or
//! the VM's saved `thumbnail.png` once it stopped (see [`super::running`] for when that file is
//! written and removed). A running VM whose guest shows nothing yet has no thumbnail.

use crate::library::{VmEntry, THUMBNAIL_FILE};
use display::Frames;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

const SIZE: egui::Vec2 = egui::vec2(96.0, 72.0);

struct Cached {
    /// None: there is no picture (no saved file, or one that would not decode).
    texture: Option<egui::TextureHandle>,
    /// When it was made (live pictures are refreshed about once a second).
    made: Instant,
    source: Source,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Live,
    /// The saved file with this modification time, as the library scan last saw it.
    Saved(Option<SystemTime>),
}

#[derive(Default)]
pub struct Thumbnails {
    cache: HashMap<String, Cached>,
}

impl Thumbnails {
    /// Draws `vm`'s thumbnail: from `live` (a running VM's screen), else from its saved file,
    /// whose modification time `saved` comes from the background scan. A frame never touches
    /// the file system unless the scan saw the file change: a missing or broken file is
    /// remembered, not retried.
    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        ctx: &egui::Context,
        vm: &VmEntry,
        live: Option<&Frames>,
        saved: Option<SystemTime>,
    ) {
        let name = vm.config.name.clone();
        let fresh = self.cache.get(&name).is_some_and(|c| match live {
            // A screen cleared by a reset or a stop goes at once, not a second later.
            Some(frames) => {
                c.source == Source::Live
                    && c.made.elapsed() < Duration::from_secs(1)
                    && frames.size().is_some()
            }
            None => c.source == Source::Saved(saved),
        });
        if !fresh {
            let (image, source) = match live {
                Some(frames) => (frames.rgba(), Source::Live),
                None => (
                    saved.and_then(|_| load_png(&vm.dir.join(THUMBNAIL_FILE))),
                    Source::Saved(saved),
                ),
            };
            let texture = image.map(|(w, h, rgba)| {
                let color =
                    egui::ColorImage::from_rgba_unmultiplied([w as usize, h as usize], &rgba);
                ctx.load_texture(format!("thumb-{name}"), color, egui::TextureOptions::LINEAR)
            });
            if texture.is_none() && source == Source::Live {
                self.cache.remove(&name);
            } else {
                self.cache.insert(
                    name.clone(),
                    Cached {
                        texture,
                        made: Instant::now(),
                        source,
                    },
                );
            }
        }
        match self.cache.get(&name).and_then(|c| c.texture.as_ref()) {
            Some(texture) => {
                ui.add(egui::Image::new(texture).fit_to_exact_size(SIZE));
            }
            None => {
                let (rect, _) = ui.allocate_exact_size(SIZE, egui::Sense::hover());
                ui.painter()
                    .rect_filled(rect, 4.0, egui::Color32::from_gray(40));
            }
        }
    }
}

/// When `dir`'s saved thumbnail was last written, if it has one (for the background scan).
pub fn saved_time(dir: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(dir.join(THUMBNAIL_FILE))
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
