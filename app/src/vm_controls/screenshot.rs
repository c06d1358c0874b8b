//! Screenshots of a VM's screen: the guest's last frame saved as a PNG on a worker thread, so
//! encoding never holds up drawing. The one screenshot path of the app's VM tab and of
//! `cove run --display window`.

use display::Frames;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, TryRecvError};
use std::sync::Arc;

/// Where screenshots go: `dir/PREFIXSECONDS.png`, with the Unix time in seconds.
#[derive(Clone, Debug)]
pub struct Place {
    dir: PathBuf,
    prefix: String,
}

impl Place {
    pub fn new(dir: impl Into<PathBuf>, prefix: impl Into<String>) -> Self {
        Self {
            dir: dir.into(),
            prefix: prefix.into(),
        }
    }

    /// The file a screenshot taken now is saved to.
    fn path_now(&self) -> PathBuf {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.dir.join(format!("{}{stamp}.png", self.prefix))
    }
}

/// A screenshot being saved; [`Pending::poll`] gives the line to show once it is done.
pub struct Pending(Receiver<String>);

impl Pending {
    /// The outcome ("saved PATH" or why not), once the worker has finished.
    pub fn poll(&self) -> Option<String> {
        match self.0.try_recv() {
            Ok(outcome) => Some(outcome),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some("screenshot failed: the worker ended".into()),
        }
    }
}

/// Starts saving what `frames` shows now. Returns the line to show meanwhile, and the pending
/// screenshot (none when there is nothing to save or no worker could start). `done` is called
/// from the worker once the outcome is ready (the UI asks for a repaint).
pub fn take(
    frames: &Arc<Frames>,
    place: &Place,
    done: impl FnOnce() + Send + 'static,
) -> (String, Option<Pending>) {
    // The copy is taken here, so the file shows the screen as it was on the click.
    let Some((width, height, rgba)) = frames.rgba() else {
        return ("nothing on the display yet".into(), None);
    };
    let path = place.path_now();
    let (send, receive) = channel();
    let saving = format!("saving {}…", path.display());
    let spawned = std::thread::Builder::new()
        .name("cove-screenshot".into())
        .spawn(move || {
            let outcome = match save_png(&path, width, height, &rgba) {
                Ok(()) => format!("saved {}", path.display()),
                Err(e) => format!("screenshot failed: {e}"),
            };
            let _ = send.send(outcome);
            done();
        });
    match spawned {
        Ok(_) => (saving, Some(Pending(receive))),
        Err(e) => (format!("screenshot failed: {e}"), None),
    }
}

fn save_png(path: &Path, width: u32, height: u32, rgba: &[u8]) -> Result<(), String> {
    // Mode 0600, never through a symlink, never blocking on a FIFO.
    let file = emu::control::secure_path::create_regular_file(path).map_err(|e| e.to_string())?;
    let mut out = std::io::BufWriter::new(file);
    emu::control::screendump::write_png(&mut out, width, height, rgba)?;
    std::io::Write::flush(&mut out).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;
    use emu::scanout::{PixelFormat, Rect, ScanoutSink, Surface};
    use std::time::{Duration, Instant};

    fn wait(pending: &Pending) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(outcome) = pending.poll() {
                return outcome;
            }
            assert!(Instant::now() < deadline, "the screenshot never finished");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn nothing_to_save_before_the_guest_sets_a_mode() {
        let tmp = TempDir::new("shot-empty");
        let (line, pending) = take(&Frames::new(), &Place::new(&tmp.0, "shot-"), || {});
        assert_eq!(line, "nothing on the display yet");
        assert!(pending.is_none());
    }

    #[test]
    fn saves_the_screen_as_a_png_and_leaves_the_window_its_changes() {
        let tmp = TempDir::new("shot");
        let frames = Frames::new();
        let sink = display::FrameSink(frames.clone());
        sink.configure(0, Some((4, 2, PixelFormat::Bgrx)));
        let mut pixels = vec![0u8; 4 * 2 * 4];
        pixels[0..4].copy_from_slice(&[0xff, 0, 0, 0]); // blue, in BGRX
        sink.update(
            0,
            &Surface {
                width: 4,
                height: 2,
                format: PixelFormat::Bgrx,
                pixels: &pixels,
            },
            Rect::new(0, 0, 4, 2),
        );
        let (done_send, done) = std::sync::mpsc::channel();
        let (line, pending) = take(&frames, &Place::new(&tmp.0, "shot-"), move || {
            let _ = done_send.send(());
        });
        assert!(line.starts_with("saving "), "{line}");
        let outcome = wait(&pending.expect("a screenshot is pending"));
        assert!(done.recv_timeout(Duration::from_secs(30)).is_ok());
        let path = outcome
            .strip_prefix("saved ")
            .unwrap_or_else(|| panic!("{outcome}"));
        assert!(path.starts_with(&tmp.0.join("shot-").display().to_string()));
        let decoder = png::Decoder::new(std::io::BufReader::new(
            std::fs::File::open(path).expect("the PNG exists"),
        ));
        let mut reader = decoder.read_info().expect("a PNG");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("a frame");
        assert_eq!((info.width, info.height), (4, 2));
        assert_eq!(&buf[0..4], &[0, 0, 0xff, 0xff]);
        // The renderer still gets the whole change: a screenshot takes nothing from it.
        let dirty = frames.take_changes(|c| c.dirty);
        assert_eq!(dirty, Some(Rect::new(0, 0, 4, 2)));
    }

    #[test]
    fn a_failed_save_says_why() {
        let tmp = TempDir::new("shot-fail");
        let frames = Frames::new();
        display::FrameSink(frames.clone()).configure(0, Some((2, 2, PixelFormat::Bgrx)));
        let place = Place::new(tmp.0.join("missing"), "shot-");
        let (_, pending) = take(&frames, &place, || {});
        let outcome = wait(&pending.expect("a screenshot is pending"));
        assert!(outcome.starts_with("screenshot failed: "), "{outcome}");
    }
}
