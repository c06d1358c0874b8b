//! The PC reset control register (RST_CNT) at [`ports::RESET_CONTROL`], which is also the FADT's
//! ACPI reset register.
//!
//! Writing a value with RST_CPU (bit 2) set resets the machine: the ACPI reset value
//! [`ports::RESET_VALUE`] (0x06, SYS_RST | RST_CPU) and Linux's `reboot=pci` writes (0x06 or
//! 0x0e) do. A VM has no lighter reset than a full one, so a soft reset (RST_CPU without
//! SYS_RST) is a full reset too. RST_CPU reads back 0; the other bits are stored and read back.
//!
//! [`ports::RESET_CONTROL`]: crate::arch::x86_64::layout::ports::RESET_CONTROL
//! [`ports::RESET_VALUE`]: crate::arch::x86_64::layout::ports::RESET_VALUE

use crate::bus::BusDevice;
use crate::devices::{PowerRequest, PowerSink};
use std::sync::Arc;

/// Writing this bit starts a reset.
const RST_CPU: u8 = 1 << 2;

/// The reset control register, one byte wide.
pub struct ResetControl {
    power: Arc<dyn PowerSink>,
    value: u8,
}

impl ResetControl {
    /// The register, sending reset requests to `power`.
    pub fn new(power: Arc<dyn PowerSink>) -> Self {
        Self { power, value: 0 }
    }
}

impl BusDevice for ResetControl {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = if offset.checked_add(i as u64) == Some(0) {
                self.value
            } else {
                0xff
            };
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        // Only the byte at offset 0 is the register.
        let Some(&value) = data.first().filter(|_| offset == 0) else {
            return;
        };
        self.value = value & !RST_CPU;
        if value & RST_CPU != 0 {
            log::info!("guest wrote {value:#04x} to the reset control register: resetting");
            self.power.request(PowerRequest::Reset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::layout::ports;
    use crate::testing::RecordingPower;

    fn setup() -> (ResetControl, Arc<RecordingPower>) {
        let sink = Arc::new(RecordingPower::default());
        (ResetControl::new(sink.clone()), sink)
    }

    fn read(dev: &mut ResetControl) -> u8 {
        let mut data = [0u8; 1];
        dev.read(0, &mut data);
        data[0]
    }

    #[test]
    fn reset_value_resets() {
        let (mut dev, sink) = setup();
        dev.write(0, &[ports::RESET_VALUE]);
        assert_eq!(sink.requests(), vec![PowerRequest::Reset]);
        // SYS_RST stays, RST_CPU reads 0.
        assert_eq!(read(&mut dev), 0x02);
    }

    #[test]
    fn linux_pci_reboot_sequence() {
        let (mut dev, sink) = setup();
        // reboot=pci,cold: 0x02, then 0x0e.
        let cf = read(&mut dev) & !0x0e;
        dev.write(0, &[cf | 0x02]);
        assert!(sink.requests().is_empty());
        dev.write(0, &[cf | 0x0e]);
        assert_eq!(sink.requests(), vec![PowerRequest::Reset]);
        assert_eq!(read(&mut dev), 0x0a);
    }

    #[test]
    fn other_bits_are_stored() {
        let (mut dev, sink) = setup();
        assert_eq!(read(&mut dev), 0);
        dev.write(0, &[0x0a]);
        assert_eq!(read(&mut dev), 0x0a);
        dev.write(0, &[0xf0]);
        assert_eq!(read(&mut dev), 0xf0);
        dev.write(0, &[0x00]);
        assert_eq!(read(&mut dev), 0);
        assert!(sink.requests().is_empty());
    }

    #[test]
    fn odd_accesses_do_not_panic() {
        let (mut dev, sink) = setup();
        for offset in [0u64, 1, 2, u64::MAX] {
            for width in [0usize, 1, 2, 4, 8] {
                let mut data = vec![0u8; width];
                dev.read(offset, &mut data);
                dev.write(offset, &vec![0u8; width]);
            }
        }
        // Only the byte at offset 0 counts.
        dev.write(1, &[0x06]);
        assert!(sink.requests().is_empty());
        let mut data = [0u8; 2];
        dev.write(0, &[0x02, 0x06]);
        dev.read(0, &mut data);
        assert_eq!(data, [0x02, 0xff]);
        assert!(sink.requests().is_empty());
    }
}
