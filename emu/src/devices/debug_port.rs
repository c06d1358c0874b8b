//! The POST code port (0x80).
//!
//! Firmware writes progress codes here, and Linux writes to it as an I/O delay (`outb_p`), so
//! writes are frequent: each is kept as the last code (readable back, as on chipsets that latch
//! it) and logged at trace level only.

use crate::bus::{write_le, BusDevice};

/// Port 0x80: remembers the last POST code written.
#[derive(Debug, Default)]
pub struct PostCodePort {
    last: Option<u8>,
}

impl PostCodePort {
    /// A port no code was written to yet; it reads 0xff.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last code written, if any.
    pub fn last_code(&self) -> Option<u8> {
        self.last
    }
}

impl BusDevice for PostCodePort {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Reads back the last code; an untouched port floats high.
        write_le(data, u64::from(self.last.unwrap_or(0xff)));
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        if let Some(&code) = data.first() {
            log::trace!("POST code {code:#04x}");
            self.last = Some(code);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_code() {
        let mut port = PostCodePort::new();
        let mut data = [0u8; 1];
        port.read(0, &mut data);
        assert_eq!(data, [0xff]);
        assert_eq!(port.last_code(), None);

        port.write(0, &[0x12]);
        port.write(0, &[0x34, 0x56]);
        assert_eq!(port.last_code(), Some(0x34));
        port.read(0, &mut data);
        assert_eq!(data, [0x34]);
        let mut wide = [0xaau8; 4];
        port.read(0, &mut wide);
        assert_eq!(wide, [0x34, 0, 0, 0]);

        // Empty accesses are ignored.
        port.write(0, &[]);
        port.read(0, &mut []);
        assert_eq!(port.last_code(), Some(0x34));
    }
}
