//! Port-I/O and MMIO address spaces.
//!
//! A [`Bus`] maps non-overlapping address ranges to devices. A device sees accesses as an offset
//! from the start of its range, so the same device model can sit at any base address. Accesses
//! that hit no device read as all ones and are dropped on write, as on real hardware.

use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A device that answers reads and writes on a bus.
///
/// `offset` is relative to the start of the range the device was inserted at. `data.len()` is the
/// access width (1, 2, 4 or 8 bytes for port and MMIO accesses).
pub trait BusDevice: Send {
    /// Fills `data` with the value read at `offset`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Handles a write of `data` at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device shared between the bus and whoever else needs to reach it (a worker thread, the
/// control API).
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Why a range could not be inserted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// `len` is 0 or `base + len` overflows `u64`.
    #[error("bus range {base:#x}+{len:#x} is empty or wraps around")]
    InvalidRange {
        /// First address of the rejected range.
        base: u64,
        /// Length of the rejected range, in bytes (or ports).
        len: u64,
    },
    /// The range intersects one already on the bus.
    #[error("bus range {base:#x}+{len:#x} overlaps a device already at {other:#x}")]
    Overlap {
        /// First address of the rejected range.
        base: u64,
        /// Length of the rejected range, in bytes (or ports).
        len: u64,
        /// Base address of the device already there.
        other: u64,
    },
}

#[derive(Clone)]
struct Entry {
    len: u64,
    device: SharedDevice,
}

/// One address space (port I/O or MMIO).
#[derive(Default)]
pub struct Bus {
    ranges: RwLock<BTreeMap<u64, Entry>>,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `[base, base + len)` to `device`.
    pub fn insert(&self, device: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(BusError::InvalidRange { base, len })?;
        let mut ranges = self.ranges.write();
        if let Some((&other, entry)) = ranges.range(..end).next_back() {
            if other + entry.len > base {
                return Err(BusError::Overlap { base, len, other });
            }
        }
        ranges.insert(base, Entry { len, device });
        Ok(())
    }

    /// Removes the device mapped at exactly `base`, returning it.
    pub fn remove(&self, base: u64) -> Option<SharedDevice> {
        let mut ranges = self.ranges.write();
        ranges.remove(&base).map(|e| e.device)
    }

    fn resolve(&self, addr: u64, width: usize) -> Option<(u64, SharedDevice)> {
        let ranges = self.ranges.read();
        let (&base, entry) = ranges.range(..=addr).next_back()?;
        let offset = addr - base;
        // The whole access must fall inside the device's range.
        if offset.checked_add(width as u64)? > entry.len {
            return None;
        }
        Some((offset, entry.device.clone()))
    }

    /// Reads at `addr`; returns false (and fills `data` with ones) when no device is there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.resolve(addr, data.len()) {
            Some((offset, device)) => {
                device.lock().read(offset, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Writes at `addr`; returns false when no device is there.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.resolve(addr, data.len()) {
            Some((offset, device)) => {
                device.lock().write(offset, data);
                true
            }
            None => false,
        }
    }
}

/// Reads a little-endian value of up to 8 bytes from an access buffer.
pub fn read_le(data: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = data.len().min(8);
    bytes[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(bytes)
}

/// Writes the low `data.len()` bytes of `value` into an access buffer, little-endian.
pub fn write_le(data: &mut [u8], value: u64) {
    let bytes = value.to_le_bytes();
    let n = data.len().min(8);
    data[..n].copy_from_slice(&bytes[..n]);
    data[n..].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Recorder {
        last_write: Option<(u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            write_le(data, offset + 0x10);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.last_write = Some((offset, data.to_vec()));
        }
    }

    fn recorder() -> Arc<Mutex<Recorder>> {
        Arc::new(Mutex::new(Recorder { last_write: None }))
    }

    #[test]
    fn dispatches_with_offsets() {
        let bus = Bus::new();
        let dev = recorder();
        bus.insert(dev.clone(), 0x3f8, 8).unwrap();
        let mut data = [0u8; 1];
        assert!(bus.read(0x3fa, &mut data));
        assert_eq!(data[0], 0x12);
        assert!(bus.write(0x3ff, &[7]));
        assert_eq!(dev.lock().last_write, Some((7, vec![7])));
    }

    #[test]
    fn unmapped_reads_all_ones() {
        let bus = Bus::new();
        bus.insert(recorder(), 0x3f8, 8).unwrap();
        let mut data = [0u8; 2];
        assert!(!bus.read(0x400, &mut data));
        assert_eq!(data, [0xff, 0xff]);
        // An access straddling the end of a range is not delivered.
        assert!(!bus.read(0x3ff, &mut data));
        assert!(!bus.write(0x10, &[1]));
    }

    #[test]
    fn rejects_overlaps_and_bad_ranges() {
        let bus = Bus::new();
        bus.insert(recorder(), 0x100, 0x10).unwrap();
        assert!(matches!(
            bus.insert(recorder(), 0x10f, 1),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            bus.insert(recorder(), 0xf8, 0x9),
            Err(BusError::Overlap { .. })
        ));
        bus.insert(recorder(), 0xf8, 0x8).unwrap();
        bus.insert(recorder(), 0x110, 0x8).unwrap();
        assert!(matches!(
            bus.insert(recorder(), 0x0, 0),
            Err(BusError::InvalidRange { .. })
        ));
        assert!(matches!(
            bus.insert(recorder(), u64::MAX, 2),
            Err(BusError::InvalidRange { .. })
        ));
        assert!(bus.remove(0x100).is_some());
        bus.insert(recorder(), 0x108, 0x8).unwrap();
    }
}
