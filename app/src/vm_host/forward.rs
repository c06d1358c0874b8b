//! The screen forwarder of the VM process: it wakes when the guest draws, takes what changed
//! from the shared-memory mirror ([`Frames`]) and tells the app — a new screen with its memfd,
//! the dirty rectangle (merged since the last look), the cursor — so the app uploads straight
//! from the memory the GPU device wrote. A newly attached app gets the whole screen.

use super::hub::Hub;
use display::Frames;
use emu::control::link::ToGui;
use emu::scanout::{CursorImage, Rect};
use std::sync::Arc;
use std::time::Duration;

/// What the app was last told about the screen.
#[derive(Default)]
struct Sent {
    generation: Option<u64>,
    cursor_position: Option<(u32, u32)>,
}

enum ScreenNews {
    New {
        width: u32,
        height: u32,
        format: emu::scanout::PixelFormat,
        fd: Option<std::os::fd::OwnedFd>,
    },
    Off,
    Same,
}

/// Runs until the hub closes.
pub fn forward_screen(frames: Arc<Frames>, hub: Arc<Hub>) {
    let mut sent = Sent::default();
    while !hub.is_closed() {
        hub.wait_for_screen(Duration::from_millis(500));
        let resend = hub.take_resend_screen();
        if resend {
            sent = Sent::default();
        }
        let (news, dirty, cursor, position) = frames.take_changes(|changes| {
            let news = match changes.mirror {
                Some(m) if sent.generation != Some(m.generation) => {
                    sent.generation = Some(m.generation);
                    ScreenNews::New {
                        width: m.width,
                        height: m.height,
                        format: m.format,
                        fd: m
                            .pixels
                            .shared()
                            .and_then(|s| s.fd().try_clone_to_owned().ok()),
                    }
                }
                Some(_) => ScreenNews::Same,
                None if sent.generation.is_some() || resend => {
                    sent.generation = None;
                    ScreenNews::Off
                }
                None => ScreenNews::Same,
            };
            let cursor: Option<Option<CursorImage>> = changes.cursor_image.map(|c| c.cloned());
            (news, changes.dirty, cursor, changes.cursor_position)
        });
        let mut screen_sent = false;
        match news {
            ScreenNews::New {
                width,
                height,
                format,
                fd: Some(fd),
            } => {
                hub.send(
                    &ToGui::Screen {
                        width,
                        height,
                        format,
                    },
                    Some(fd),
                );
                screen_sent = true;
            }
            ScreenNews::New { fd: None, .. } => {
                log::error!("the screen's shared memory cannot be passed on");
            }
            ScreenNews::Off => hub.send(&ToGui::ScreenOff, None),
            ScreenNews::Same => {}
        }
        // A new screen is shown whole by the app; a dirty rectangle adds nothing.
        if let (Some(rect), false) = (dirty, screen_sent) {
            if sent.generation.is_some() && rect != Rect::default() {
                hub.send(&ToGui::Dirty(rect), None);
            }
        }
        // The image is cloned only when the app needs it: a new app, or a change.
        let image = if resend {
            Some(frames.cursor_image())
        } else {
            cursor
        };
        if let Some(image) = image {
            hub.send(&ToGui::Cursor(image), None);
        }
        if sent.cursor_position != Some(position) {
            sent.cursor_position = Some(position);
            hub.send(
                &ToGui::CursorPosition {
                    x: position.0,
                    y: position.1,
                },
                None,
            );
        }
    }
}
