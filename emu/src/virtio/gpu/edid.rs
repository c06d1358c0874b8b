//! A 128-byte EDID 1.4 block announcing one preferred mode, so the guest's modesetting picks the
//! window's size. Written by hand: it is one fixed-layout table, and no maintained crate
//! generates EDIDs.

const PIXEL_CLOCK_KHZ_PER_UNIT: u64 = 10;

/// An EDID for a display whose preferred mode is `width` x `height` at 60 Hz.
pub fn edid(width: u32, height: u32) -> [u8; 128] {
    let mut e = [0u8; 128];
    e[0..8].copy_from_slice(&[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]);
    // Manufacturer "CVE" (5-bit letters, A = 1), product 1, serial 0, week/year of manufacture.
    let id =
        ((u16::from(b'C' - b'@')) << 10) | ((u16::from(b'V' - b'@')) << 5) | u16::from(b'E' - b'@');
    e[8..10].copy_from_slice(&id.to_be_bytes());
    e[10] = 1;
    e[16] = 1;
    e[17] = 36; // 2026
    e[18] = 1; // EDID 1.4
    e[19] = 4;
    e[20] = 0xa5; // digital, 8 bits per colour, DisplayPort
    e[21] = (width / 40).clamp(1, 255) as u8; // size in cm at about 100 dpi
    e[22] = (height / 40).clamp(1, 255) as u8;
    e[23] = 120; // gamma 2.2
    e[24] = 0x06; // RGB, preferred timing is native, continuous frequency
                  // Chromaticity: sRGB primaries.
    e[25..35].copy_from_slice(&[0xee, 0x91, 0xa3, 0x54, 0x4c, 0x99, 0x26, 0x0f, 0x50, 0x54]);
    // No established or standard timings.
    e[38..54].fill(0x01);
    detailed_timing(&mut e[54..72], width, height);
    // Display name descriptor.
    e[72..77].copy_from_slice(&[0, 0, 0, 0xfc, 0]);
    e[77..90].copy_from_slice(b"Cove display\n");
    // Range limits: 50-120 Hz, 30-160 kHz, up to 600 MHz.
    e[90..108].copy_from_slice(&[
        0, 0, 0, 0xfd, 0, 50, 120, 30, 160, 60, 0x00, 0x0a, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    ]);
    e[108..113].copy_from_slice(&[0, 0, 0, 0x10, 0]); // dummy descriptor
    let sum = e[..127].iter().fold(0u8, |acc, b| acc.wrapping_add(*b));
    e[127] = 0u8.wrapping_sub(sum);
    e
}

/// A detailed timing descriptor with reduced-blanking-style margins.
fn detailed_timing(d: &mut [u8], width: u32, height: u32) {
    let width = width.clamp(1, 4095);
    let height = height.clamp(1, 4095);
    let (hblank, vblank) = (160u32, 30u32);
    let clock_khz = u64::from(width + hblank) * u64::from(height + vblank) * 60 / 1000;
    let clock = (clock_khz / PIXEL_CLOCK_KHZ_PER_UNIT).clamp(1, 0xffff) as u16;
    d[0..2].copy_from_slice(&clock.to_le_bytes());
    d[2] = width as u8;
    d[3] = hblank as u8;
    d[4] = (((width >> 8) & 0xf) << 4 | ((hblank >> 8) & 0xf)) as u8;
    d[5] = height as u8;
    d[6] = vblank as u8;
    d[7] = (((height >> 8) & 0xf) << 4 | ((vblank >> 8) & 0xf)) as u8;
    let (hfront, hsync, vfront, vsync) = (48u32, 32u32, 3u32, 5u32);
    d[8] = hfront as u8;
    d[9] = hsync as u8;
    d[10] = ((vfront & 0xf) << 4 | (vsync & 0xf)) as u8;
    d[11] = 0;
    let (wmm, hmm) = (width / 4, height / 4);
    d[12] = wmm as u8;
    d[13] = hmm as u8;
    d[14] = (((wmm >> 8) & 0xf) << 4 | ((hmm >> 8) & 0xf)) as u8;
    d[17] = 0x1e; // digital separate sync, +hsync +vsync
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_header_and_preferred_mode() {
        let e = edid(1280, 800);
        assert_eq!(&e[0..8], &[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
        assert_eq!(e.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        let width = u32::from(e[56]) | (u32::from(e[58] >> 4) << 8);
        let height = u32::from(e[59]) | (u32::from(e[61] >> 4) << 8);
        assert_eq!((width, height), (1280, 800));
    }
}
