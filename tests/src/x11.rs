//! X11 for window tests: a private Xvfb server, screenshots of its root window (XWD, as `xwd`
//! writes it, decoded here), and `xdotool` for keyboard and mouse.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An Xvfb server on a free display, stopped when dropped.
pub struct Xvfb {
    child: Child,
    pub display: String,
}

impl Xvfb {
    /// Starts Xvfb with a 1280x1024 screen on the first free display from :90.
    pub fn start() -> Self {
        for number in 90..190 {
            if Path::new(&format!("/tmp/.X{number}-lock")).exists()
                || Path::new(&format!("/tmp/.X11-unix/X{number}")).exists()
            {
                continue;
            }
            let display = format!(":{number}");
            let child = Command::new("Xvfb")
                .args([&display, "-screen", "0", "1280x1024x24", "-nolisten", "tcp"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start Xvfb (scripts/setup.sh installs it)");
            let socket = format!("/tmp/.X11-unix/X{number}");
            let deadline = Instant::now() + Duration::from_secs(20);
            while !Path::new(&socket).exists() {
                assert!(Instant::now() < deadline, "Xvfb {display} did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
            return Self { child, display };
        }
        panic!("no free X display number");
    }

    /// Runs `xdotool args` on this display; returns its stdout.
    pub fn xdotool(&self, args: &[&str]) -> String {
        let output = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &self.display)
            .output()
            .expect("run xdotool (scripts/setup.sh installs it)");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The first window whose title contains `name`, waiting up to `timeout` for it.
    pub fn find_window(&self, name: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let found = self.xdotool(&["search", "--name", name]);
            if let Some(id) = found.lines().next() {
                return Some(id.trim().to_string());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }

    /// The root window as (width, height, RGB).
    pub fn screenshot(&self) -> (u32, u32, Vec<u8>) {
        let output = Command::new("xwd")
            .args(["-root", "-silent"])
            .env("DISPLAY", &self.display)
            .output()
            .expect("run xwd (x11-apps)");
        decode_xwd(&output.stdout).expect("xwd output")
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Decodes a 24/32-bit TrueColor XWD image into RGB.
pub fn decode_xwd(data: &[u8]) -> Option<(u32, u32, Vec<u8>)> {
    let field = |i: usize| -> Option<u32> {
        Some(u32::from_be_bytes(
            data.get(4 * i..4 * i + 4)?.try_into().ok()?,
        ))
    };
    let header = field(0)? as usize;
    let (width, height) = (field(4)?, field(5)?);
    let byte_order = field(7)?;
    let bits_per_pixel = field(11)?;
    let bytes_per_line = field(12)? as usize;
    let colours = field(19)? as usize;
    if bits_per_pixel != 32 {
        return None;
    }
    let start = header + colours * 12;
    let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height as usize {
        let line =
            data.get(start + y * bytes_per_line..start + y * bytes_per_line + width as usize * 4)?;
        for px in line.chunks_exact(4) {
            // LSB first: B, G, R, X.
            let (r, g, b) = if byte_order == 0 {
                (px[2], px[1], px[0])
            } else {
                (px[1], px[2], px[3])
            };
            rgb.extend_from_slice(&[r, g, b]);
        }
    }
    Some((width, height, rgb))
}
