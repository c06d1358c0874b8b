//! MSI-X: the capability's control bits, the vector table and the pending-bit array a device
//! exposes in one of its BARs, and the masking rules that decide whether a notification is sent
//! now or left pending until the guest unmasks the vector.

use crate::interrupt::{MsiMessage, MsiVector};
use std::sync::Arc;

/// Bytes per table entry: address low, address high, data, vector control.
pub const ENTRY_SIZE: u64 = 16;
/// The most vectors a function may have.
pub const MAX_VECTORS: usize = 2048;
/// "No vector" as virtio and other specs write it.
pub const NO_VECTOR: u16 = 0xffff;

const CONTROL_ENABLE: u16 = 1 << 15;
const CONTROL_FUNCTION_MASK: u16 = 1 << 14;
const ENTRY_MASKED: u32 = 1;

#[derive(Clone, Copy, Default)]
struct Entry {
    words: [u32; 4],
}

impl Entry {
    fn message(&self) -> MsiMessage {
        MsiMessage {
            address: u64::from(self.words[0]) | (u64::from(self.words[1]) << 32),
            data: self.words[2],
        }
    }

    fn masked(&self) -> bool {
        self.words[3] & ENTRY_MASKED != 0
    }
}

/// The MSI-X state of one function.
pub struct Msix {
    entries: Vec<Entry>,
    pending: Vec<bool>,
    enabled: bool,
    function_masked: bool,
    vectors: Vec<Arc<dyn MsiVector>>,
}

impl Msix {
    /// MSI-X with one table entry per vector (at most [`MAX_VECTORS`]).
    pub fn new(mut vectors: Vec<Arc<dyn MsiVector>>) -> Self {
        vectors.truncate(MAX_VECTORS);
        let count = vectors.len();
        let mut msix = Self {
            entries: vec![Entry::default(); count],
            pending: vec![false; count],
            enabled: false,
            function_masked: false,
            vectors,
        };
        msix.reset();
        msix
    }

    /// Number of table entries (vectors).
    pub fn vector_count(&self) -> usize {
        self.entries.len()
    }

    /// Bytes the table occupies in its BAR.
    pub fn table_len(&self) -> u64 {
        self.entries.len() as u64 * ENTRY_SIZE
    }

    /// Bytes the pending-bit array occupies (whole qwords).
    pub fn pba_len(&self) -> u64 {
        self.entries.len().div_ceil(64) as u64 * 8
    }

    /// The capability body after its ID and next pointer, with the mask of guest-writable bits:
    /// message control, table offset/BIR, PBA offset/BIR.
    pub fn capability(
        &self,
        table_bar: u8,
        table_offset: u32,
        pba_bar: u8,
        pba_offset: u32,
    ) -> ([u8; 10], [u8; 10]) {
        let mut body = [0u8; 10];
        let table_size = (self.entries.len().max(1) - 1) as u16;
        body[0..2].copy_from_slice(&table_size.to_le_bytes());
        body[2..6].copy_from_slice(&(table_offset | u32::from(table_bar & 7)).to_le_bytes());
        body[6..10].copy_from_slice(&(pba_offset | u32::from(pba_bar & 7)).to_le_bytes());
        let mut writable = [0u8; 10];
        writable[1] = ((CONTROL_ENABLE | CONTROL_FUNCTION_MASK) >> 8) as u8;
        (body, writable)
    }

    /// Applies the message control register the guest wrote.
    pub fn set_control(&mut self, control: u16) {
        let was_blocked = !self.enabled || self.function_masked;
        self.enabled = control & CONTROL_ENABLE != 0;
        self.function_masked = control & CONTROL_FUNCTION_MASK != 0;
        if was_blocked && self.enabled && !self.function_masked {
            for vector in 0..self.entries.len() {
                self.deliver_pending(vector);
            }
        }
    }

    /// Whether MSI-X Enable is set in Message Control.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Back to the power-on state: disabled, all entries masked, nothing pending.
    pub fn reset(&mut self) {
        self.enabled = false;
        self.function_masked = false;
        for entry in &mut self.entries {
            *entry = Entry {
                words: [0, 0, 0, ENTRY_MASKED],
            };
        }
        self.pending.fill(false);
    }

    /// A guest read of the table at `offset` into it.
    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = self.table_byte(offset + i as u64).unwrap_or(0xff);
        }
    }

    fn table_byte(&self, at: u64) -> Option<u8> {
        let entry = self.entries.get(usize::try_from(at / ENTRY_SIZE).ok()?)?;
        let word = entry.words[((at % ENTRY_SIZE) / 4) as usize];
        Some(word.to_le_bytes()[(at % 4) as usize])
    }

    /// A guest write to the table. Changing a message reroutes its vector; unmasking a vector
    /// with a pending bit sends it.
    pub fn write_table(&mut self, offset: u64, data: &[u8]) {
        let mut touched = Vec::new();
        for (i, &value) in data.iter().enumerate() {
            let at = offset + i as u64;
            let Some(index) = usize::try_from(at / ENTRY_SIZE)
                .ok()
                .filter(|&index| index < self.entries.len())
            else {
                log::debug!(
                    "MSI-X table write past its {} entries ignored",
                    self.entries.len()
                );
                return;
            };
            let word = ((at % ENTRY_SIZE) / 4) as usize;
            let shift = 8 * (at % 4);
            let entry = &mut self.entries[index];
            entry.words[word] =
                (entry.words[word] & !(0xff << shift)) | (u32::from(value) << shift);
            if touched.last() != Some(&index) {
                touched.push(index);
            }
        }
        for index in touched {
            let entry = self.entries[index];
            self.vectors[index].configure(entry.message());
            if !entry.masked() {
                self.deliver_pending(index);
            }
        }
    }

    /// A guest read of the pending-bit array.
    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            let first_bit = (offset + i as u64) * 8;
            let mut value = 0u8;
            for bit in 0..8 {
                let pending = usize::try_from(first_bit + bit)
                    .ok()
                    .and_then(|vector| self.pending.get(vector))
                    .copied()
                    .unwrap_or(false);
                value |= u8::from(pending) << bit;
            }
            *byte = value;
        }
    }

    /// The device signals `vector`: sent now, or left pending while masked. Returns false when
    /// the vector does not exist or MSI-X is disabled (the caller may fall back to INTx).
    pub fn notify(&mut self, vector: u16) -> bool {
        let index = usize::from(vector);
        if !self.enabled || index >= self.entries.len() {
            return false;
        }
        if self.function_masked || self.entries[index].masked() {
            self.pending[index] = true;
        } else {
            self.vectors[index].trigger();
        }
        true
    }

    fn deliver_pending(&mut self, index: usize) {
        if self.pending[index]
            && self.enabled
            && !self.function_masked
            && !self.entries[index].masked()
        {
            self.pending[index] = false;
            self.vectors[index].trigger();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    #[derive(Default)]
    struct Recorder {
        sent: Mutex<Vec<MsiMessage>>,
        message: Mutex<MsiMessage>,
    }

    impl MsiVector for Recorder {
        fn configure(&self, message: MsiMessage) {
            *self.message.lock() = message;
        }
        fn trigger(&self) {
            let message = *self.message.lock();
            self.sent.lock().push(message);
        }
    }

    fn msix(count: usize) -> (Msix, Vec<Arc<Recorder>>) {
        let recorders: Vec<Arc<Recorder>> = (0..count).map(|_| Arc::default()).collect();
        let vectors = recorders
            .iter()
            .map(|r| r.clone() as Arc<dyn MsiVector>)
            .collect();
        (Msix::new(vectors), recorders)
    }

    fn program(msix: &mut Msix, index: u64, data: u32, masked: bool) {
        let base = index * ENTRY_SIZE;
        msix.write_table(base, &0xfee0_0000u32.to_le_bytes());
        msix.write_table(base + 4, &0u32.to_le_bytes());
        msix.write_table(base + 8, &data.to_le_bytes());
        msix.write_table(base + 12, &u32::from(masked).to_le_bytes());
    }

    #[test]
    fn disabled_msix_sends_nothing() {
        let (mut msix, rec) = msix(2);
        program(&mut msix, 0, 0x41, false);
        assert!(!msix.notify(0));
        assert!(rec[0].sent.lock().is_empty());
    }

    #[test]
    fn unmasked_vector_sends_its_message() {
        let (mut msix, rec) = msix(2);
        msix.set_control(CONTROL_ENABLE);
        program(&mut msix, 1, 0x42, false);
        assert!(msix.notify(1));
        let sent = rec[1].sent.lock().clone();
        assert_eq!(
            sent,
            vec![MsiMessage {
                address: 0xfee0_0000,
                data: 0x42
            }]
        );
    }

    #[test]
    fn masked_vector_pends_until_unmasked() {
        let (mut msix, rec) = msix(1);
        msix.set_control(CONTROL_ENABLE);
        program(&mut msix, 0, 0x43, true);
        assert!(msix.notify(0));
        assert!(rec[0].sent.lock().is_empty());
        let mut pba = [0u8; 8];
        msix.read_pba(0, &mut pba);
        assert_eq!(pba[0], 1);
        msix.write_table(12, &0u32.to_le_bytes());
        assert_eq!(rec[0].sent.lock().len(), 1);
        msix.read_pba(0, &mut pba);
        assert_eq!(pba[0], 0);
    }

    #[test]
    fn function_mask_holds_every_vector() {
        let (mut msix, rec) = msix(1);
        msix.set_control(CONTROL_ENABLE | CONTROL_FUNCTION_MASK);
        program(&mut msix, 0, 0x44, false);
        msix.notify(0);
        assert!(rec[0].sent.lock().is_empty());
        msix.set_control(CONTROL_ENABLE);
        assert_eq!(rec[0].sent.lock().len(), 1);
    }

    #[test]
    fn bad_vectors_and_offsets_are_harmless() {
        let (mut msix, _rec) = msix(2);
        msix.set_control(CONTROL_ENABLE);
        assert!(!msix.notify(7));
        assert!(!msix.notify(NO_VECTOR));
        msix.write_table(1 << 40, &[1, 2, 3, 4]);
        let mut data = [0u8; 4];
        msix.read_table(999, &mut data);
        assert_eq!(data, [0xff; 4]);
        // Entries start masked.
        msix.read_table(12, &mut data);
        assert_eq!(u32::from_le_bytes(data), 1);
    }

    #[test]
    fn capability_layout() {
        let (msix, _rec) = msix(3);
        let (body, writable) = msix.capability(0, 0x4000, 0, 0x5000);
        assert_eq!(u16::from_le_bytes([body[0], body[1]]), 2);
        assert_eq!(u32::from_le_bytes(body[2..6].try_into().unwrap()), 0x4000);
        assert_eq!(u32::from_le_bytes(body[6..10].try_into().unwrap()), 0x5000);
        assert_eq!(writable[1], 0xc0);
        assert_eq!(msix.table_len(), 48);
        assert_eq!(msix.pba_len(), 8);
    }
}
