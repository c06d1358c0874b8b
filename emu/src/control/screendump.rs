//! Screendumps: what the guest's display shows, encoded as PNG or PPM and written to a file
//! the way a control client asked for (QMP `screendump`, the GUI's screenshot).

use crate::machine::display_port::DisplayPort;
use std::path::Path;

/// Image formats a screendump can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    /// Portable Network Graphics, 8-bit RGBA.
    Png,
    /// Binary portable pixmap (QEMU's default).
    Ppm,
}

/// Writes the guest's screen to `path`, anywhere this process can write, as QEMU does;
/// but only to a regular file (a new one gets mode 0600), never through a symlink in the
/// last component, and never blocking on a FIFO (see
/// [`create_regular_file`](super::secure_path::create_regular_file)).
pub fn screendump(display: &DisplayPort, path: &Path, format: ImageFormat) -> Result<(), String> {
    let (width, height, rgba) = display
        .snapshot()
        .ok_or("the guest has not put anything on its display yet")?;
    let file = super::secure_path::create_regular_file(path)
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
        let err =
            screendump(&port, Path::new("/tmp/never-written.png"), ImageFormat::Png).unwrap_err();
        assert!(err.contains("not put anything"), "{err}");
        assert!(!Path::new("/tmp/never-written.png").exists());
    }
}
