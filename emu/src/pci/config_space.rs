//! The 4 KiB configuration space of one PCI function: the type 0 header, BAR registers with
//! their sizing behaviour, and the capability list.
//!
//! Every byte has a mask of the bits the guest may write; everything else is read-only. Status
//! bits are write-one-to-clear. Device models add BARs and capabilities when they are built and
//! then only read back what the guest programmed.

/// Size of a PCI Express function's configuration space.
pub const CONFIG_SPACE_SIZE: usize = 4096;

/// Vendor ID register (16 bits).
pub const VENDOR_ID: usize = 0x00;
/// Device ID register (16 bits).
pub const DEVICE_ID: usize = 0x02;
/// Command register (16 bits); see the `COMMAND_*` bits.
pub const COMMAND: usize = 0x04;
/// Status register (16 bits); error bits are write-one-to-clear.
pub const STATUS: usize = 0x06;
/// Revision ID register (8 bits).
pub const REVISION_ID: usize = 0x08;
/// Class code: programming interface, subclass, base class (3 bytes, 0x09-0x0b).
pub const CLASS_CODE: usize = 0x09;
/// Header type (8 bits); Cove's functions are type 0, single-function.
pub const HEADER_TYPE: usize = 0x0e;
/// First of the six 32-bit BAR registers (0x10-0x27).
pub const BAR0: usize = 0x10;
/// Subsystem vendor ID register (16 bits).
pub const SUBSYSTEM_VENDOR_ID: usize = 0x2c;
/// Subsystem ID register (16 bits).
pub const SUBSYSTEM_ID: usize = 0x2e;
/// Capabilities pointer (8 bits): offset of the first capability.
pub const CAPABILITIES_POINTER: usize = 0x34;
/// Interrupt line (8 bits): the IRQ number software wrote; the device ignores it.
pub const INTERRUPT_LINE: usize = 0x3c;
/// Interrupt pin (8 bits, read-only): 0 none, 1 INTA to 4 INTD.
pub const INTERRUPT_PIN: usize = 0x3d;

/// Command bit 0, I/O space enable: I/O BARs decode.
pub const COMMAND_IO: u16 = 1 << 0;
/// Command bit 1, memory space enable: memory BARs decode.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Command bit 2, bus master enable: the device may do DMA and send MSIs.
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Command bit 10, interrupt disable: the device must not assert INTx.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
const COMMAND_WRITABLE: u16 =
    COMMAND_IO | COMMAND_MEMORY | COMMAND_BUS_MASTER | (1 << 6) | (1 << 8) | COMMAND_INTX_DISABLE;

const STATUS_INTERRUPT: u16 = 1 << 3;
const STATUS_CAPABILITIES: u16 = 1 << 4;
/// Error bits the guest clears by writing ones.
const STATUS_W1C: u16 = 0xf900;

/// Capability IDs Cove uses.
pub const CAP_ID_VENDOR: u8 = 0x09;
/// MSI-X capability ID.
pub const CAP_ID_MSIX: u8 = 0x11;

const FIRST_CAPABILITY: usize = 0x40;
const STANDARD_HEADER_END: usize = 0x100;

/// The number of BAR slots in a type 0 header.
pub const BAR_COUNT: usize = 6;

/// What a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// An I/O-space BAR (bit 0 set), at most 64 KiB.
    Io,
    /// A 32-bit memory BAR.
    Memory32,
    /// A 64-bit memory BAR, which takes two BAR slots.
    Memory64 {
        /// Whether the prefetchable bit (3) is set.
        prefetchable: bool,
    },
}

/// A BAR as the device declared it and the guest (or the firmware role) programmed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// The BAR's slot, 0 to 5 (the low slot of a 64-bit BAR).
    pub index: usize,
    /// What the BAR decodes.
    pub kind: BarKind,
    /// Size in bytes: a power of two, at least 16 (4 for I/O).
    pub size: u64,
    /// The programmed base address (may be unassigned, i.e. 0, or mid-sizing).
    pub address: u64,
}

/// Identity of a PCI function.
#[derive(Clone, Copy, Debug)]
pub struct PciHeader {
    /// PCI vendor ID, e.g. 0x1af4 for virtio.
    pub vendor_id: u16,
    /// PCI device ID.
    pub device_id: u16,
    /// Base class, subclass and programming interface, as one 24-bit value (0xCCSSPP).
    pub class_code: u32,
    /// Revision ID.
    pub revision: u8,
    /// Subsystem vendor ID.
    pub subsystem_vendor_id: u16,
    /// Subsystem ID.
    pub subsystem_id: u16,
    /// 0 for no INTx, 1 for INTA ... 4 for INTD.
    pub interrupt_pin: u8,
}

/// Why a BAR or capability could not be added (a device-model bug, found when it is built).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigSpaceError {
    /// The slot is past BAR 5, or taken (64-bit BARs take two slots).
    #[error("BAR {0} is out of range or already used")]
    BarSlot(usize),
    /// The size is not a power of two, below the minimum, or above what the BAR kind can decode.
    #[error("BAR size {0:#x} is not a power of two of at least 16 bytes (4 for I/O)")]
    BarSize(u64),
    /// The capability list (0x40-0xff) has no room for a capability of this many bytes.
    #[error("no room left for a capability of {0} bytes")]
    CapabilitySpace(usize),
}

/// One function's configuration space.
pub struct ConfigSpace {
    bytes: Box<[u8; CONFIG_SPACE_SIZE]>,
    writable: Box<[u8; CONFIG_SPACE_SIZE]>,
    bars: [Option<Bar>; BAR_COUNT],
    /// Offset of the "next" pointer of the last capability added (or the header's pointer).
    last_next_pointer: usize,
    next_free: usize,
}

impl ConfigSpace {
    /// A type 0 header for `header`, with no BARs or capabilities yet.
    pub fn new(header: &PciHeader) -> Self {
        let mut space = Self {
            bytes: Box::new([0; CONFIG_SPACE_SIZE]),
            writable: Box::new([0; CONFIG_SPACE_SIZE]),
            bars: [None; BAR_COUNT],
            last_next_pointer: CAPABILITIES_POINTER,
            next_free: FIRST_CAPABILITY,
        };
        space.set_u16(VENDOR_ID, header.vendor_id);
        space.set_u16(DEVICE_ID, header.device_id);
        space.bytes[REVISION_ID] = header.revision;
        let class = header.class_code.to_le_bytes();
        space.bytes[CLASS_CODE..CLASS_CODE + 3].copy_from_slice(&class[..3]);
        space.bytes[HEADER_TYPE] = 0;
        space.set_u16(SUBSYSTEM_VENDOR_ID, header.subsystem_vendor_id);
        space.set_u16(SUBSYSTEM_ID, header.subsystem_id);
        space.bytes[INTERRUPT_PIN] = header.interrupt_pin;
        space.set_mask_u16(COMMAND, COMMAND_WRITABLE);
        space.writable[INTERRUPT_LINE] = 0xff;
        space
    }

    /// Declares BAR `index`. A 64-bit BAR also takes slot `index + 1`.
    pub fn add_bar(
        &mut self,
        index: usize,
        kind: BarKind,
        size: u64,
    ) -> Result<(), ConfigSpaceError> {
        let slots = if matches!(kind, BarKind::Memory64 { .. }) {
            2
        } else {
            1
        };
        if index + slots > BAR_COUNT || (index..index + slots).any(|i| self.slot_taken(i)) {
            return Err(ConfigSpaceError::BarSlot(index));
        }
        let min = if kind == BarKind::Io { 4 } else { 16 };
        let max = match kind {
            BarKind::Io => 1 << 16,
            BarKind::Memory32 => 1 << 31,
            BarKind::Memory64 { .. } => 1 << 62,
        };
        if !size.is_power_of_two() || size < min || size > max {
            return Err(ConfigSpaceError::BarSize(size));
        }
        let type_bits: u32 = match kind {
            BarKind::Io => 0x1,
            BarKind::Memory32 => 0x0,
            BarKind::Memory64 { prefetchable } => 0x4 | if prefetchable { 0x8 } else { 0 },
        };
        let offset = BAR0 + 4 * index;
        self.set_u32(offset, type_bits);
        let mask = !(size - 1);
        self.set_mask_u32(offset, mask as u32 & !type_low_bits(kind));
        if slots == 2 {
            self.set_mask_u32(offset + 4, (mask >> 32) as u32);
        }
        self.bars[index] = Some(Bar {
            index,
            kind,
            size,
            address: 0,
        });
        Ok(())
    }

    fn slot_taken(&self, slot: usize) -> bool {
        self.bars.iter().flatten().any(|bar| {
            bar.index == slot
                || (matches!(bar.kind, BarKind::Memory64 { .. }) && bar.index + 1 == slot)
        })
    }

    /// Programs BAR `index` to `address` (the machine does this when it places the device, as
    /// firmware would).
    pub fn set_bar_address(&mut self, index: usize, address: u64) {
        let Some(bar) = self.bars.get(index).copied().flatten() else {
            return;
        };
        let offset = BAR0 + 4 * index;
        let low = self.u32_at(offset) & type_low_bits(bar.kind);
        self.set_u32(offset, low | (address as u32 & !type_low_bits(bar.kind)));
        if matches!(bar.kind, BarKind::Memory64 { .. }) {
            self.set_u32(offset + 4, (address >> 32) as u32);
        }
    }

    /// The declared BARs with the addresses currently programmed.
    pub fn bars(&self) -> impl Iterator<Item = Bar> + '_ {
        self.bars.iter().flatten().map(|bar| Bar {
            address: self.bar_address(bar),
            ..*bar
        })
    }

    /// BAR `index` with the address currently programmed, if the device declared one there.
    pub fn bar(&self, index: usize) -> Option<Bar> {
        self.bars().find(|bar| bar.index == index)
    }

    fn bar_address(&self, bar: &Bar) -> u64 {
        let offset = BAR0 + 4 * bar.index;
        let low = u64::from(self.u32_at(offset) & !type_low_bits(bar.kind));
        let high = match bar.kind {
            BarKind::Memory64 { .. } => u64::from(self.u32_at(offset + 4)) << 32,
            _ => 0,
        };
        (high | low) & !(bar.size - 1)
    }

    /// Appends a capability: `body` is everything after the ID and next-pointer bytes;
    /// `writable` (same length as `body`) marks the bits the guest may change. Returns the
    /// capability's offset.
    pub fn add_capability(
        &mut self,
        id: u8,
        body: &[u8],
        writable: &[u8],
    ) -> Result<usize, ConfigSpaceError> {
        let len = (2 + body.len()).next_multiple_of(4);
        let offset = self.next_free;
        if offset + len > STANDARD_HEADER_END {
            return Err(ConfigSpaceError::CapabilitySpace(len));
        }
        self.bytes[offset] = id;
        self.bytes[offset + 1] = 0;
        self.bytes[offset + 2..offset + 2 + body.len()].copy_from_slice(body);
        for (i, mask) in writable.iter().take(body.len()).enumerate() {
            self.writable[offset + 2 + i] = *mask;
        }
        self.bytes[self.last_next_pointer] = offset as u8;
        self.last_next_pointer = offset + 1;
        self.next_free = offset + len;
        let status = self.u16_at(STATUS) | STATUS_CAPABILITIES;
        self.set_u16(STATUS, status);
        Ok(offset)
    }

    /// A guest read of `data.len()` bytes at `offset`. Out-of-range bytes read as ones.
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = self.bytes.get(offset + i).copied().unwrap_or(0xff);
        }
    }

    /// A guest write: only writable bits change, status error bits are cleared by ones.
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        for (i, &value) in data.iter().enumerate() {
            let at = offset + i;
            if at >= CONFIG_SPACE_SIZE {
                break;
            }
            if at == STATUS || at == STATUS + 1 {
                let shift = 8 * (at - STATUS);
                let w1c = (STATUS_W1C >> shift) as u8;
                self.bytes[at] &= !(value & w1c);
                continue;
            }
            let mask = self.writable[at];
            self.bytes[at] = (self.bytes[at] & !mask) | (value & mask);
        }
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.u16_at(COMMAND)
    }

    /// Whether memory space decoding is on ([`COMMAND_MEMORY`]).
    pub fn memory_enabled(&self) -> bool {
        self.command() & COMMAND_MEMORY != 0
    }

    /// Whether I/O space decoding is on ([`COMMAND_IO`]).
    pub fn io_enabled(&self) -> bool {
        self.command() & COMMAND_IO != 0
    }

    /// Whether the device may master the bus ([`COMMAND_BUS_MASTER`]).
    pub fn bus_master(&self) -> bool {
        self.command() & COMMAND_BUS_MASTER != 0
    }

    /// Whether INTx is disabled ([`COMMAND_INTX_DISABLE`]).
    pub fn intx_disabled(&self) -> bool {
        self.command() & COMMAND_INTX_DISABLE != 0
    }

    /// Sets the command register as firmware would before handing over to the OS.
    pub fn set_command(&mut self, command: u16) {
        self.set_u16(COMMAND, command & COMMAND_WRITABLE);
    }

    /// Reflects the device's INTx state in the status register.
    pub fn set_interrupt_status(&mut self, asserted: bool) {
        let status = self.u16_at(STATUS);
        let status = if asserted {
            status | STATUS_INTERRUPT
        } else {
            status & !STATUS_INTERRUPT
        };
        self.set_u16(STATUS, status);
    }

    /// The interrupt pin: 0 none, 1 INTA to 4 INTD.
    pub fn interrupt_pin(&self) -> u8 {
        self.bytes[INTERRUPT_PIN]
    }

    /// Sets the interrupt line register to the GSI the pin is routed to, as firmware would.
    pub fn set_interrupt_line(&mut self, line: u8) {
        self.bytes[INTERRUPT_LINE] = line;
    }

    /// The byte at `offset`; 0xff beyond the 4 KiB space.
    pub fn u8_at(&self, offset: usize) -> u8 {
        self.bytes.get(offset).copied().unwrap_or(0xff)
    }

    /// The little-endian 16-bit value at `offset`.
    pub fn u16_at(&self, offset: usize) -> u16 {
        u16::from_le_bytes([self.u8_at(offset), self.u8_at(offset + 1)])
    }

    /// The little-endian 32-bit value at `offset`.
    pub fn u32_at(&self, offset: usize) -> u32 {
        u32::from_le_bytes([
            self.u8_at(offset),
            self.u8_at(offset + 1),
            self.u8_at(offset + 2),
            self.u8_at(offset + 3),
        ])
    }

    /// Device-side update of read-only bytes (e.g. a capability's state).
    pub fn set_u16(&mut self, offset: usize, value: u16) {
        self.bytes[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
    }

    /// Device-side update of 4 read-only bytes, little-endian (e.g. a BAR's type bits).
    pub fn set_u32(&mut self, offset: usize, value: u32) {
        self.bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }

    fn set_mask_u16(&mut self, offset: usize, mask: u16) {
        self.writable[offset..offset + 2].copy_from_slice(&mask.to_le_bytes());
    }

    fn set_mask_u32(&mut self, offset: usize, mask: u32) {
        self.writable[offset..offset + 4].copy_from_slice(&mask.to_le_bytes());
    }
}

/// The read-only type bits at the bottom of a BAR's low dword.
fn type_low_bits(kind: BarKind) -> u32 {
    match kind {
        BarKind::Io => 0x3,
        _ => 0xf,
    }
}

/// True when a config write of `len` bytes at `offset` touches the command register or a BAR,
/// so the decoded address ranges may have changed.
pub fn write_affects_decoding(offset: usize, len: usize) -> bool {
    let end = offset + len;
    let touches = |start: usize, stop: usize| offset < stop && end > start;
    touches(COMMAND, COMMAND + 2) || touches(BAR0, BAR0 + 4 * BAR_COUNT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> PciHeader {
        PciHeader {
            vendor_id: 0x1af4,
            device_id: 0x1042,
            class_code: 0x01_80_00,
            revision: 1,
            subsystem_vendor_id: 0x1af4,
            subsystem_id: 0x40,
            interrupt_pin: 1,
        }
    }

    fn read32(space: &ConfigSpace, offset: usize) -> u32 {
        let mut data = [0; 4];
        space.read(offset, &mut data);
        u32::from_le_bytes(data)
    }

    #[test]
    fn identity_registers_are_read_only() {
        let mut space = ConfigSpace::new(&header());
        assert_eq!(read32(&space, 0), 0x1042_1af4);
        space.write(0, &[0; 4]);
        assert_eq!(read32(&space, 0), 0x1042_1af4);
        assert_eq!(read32(&space, 8), 0x0180_0001);
        assert_eq!(space.u8_at(INTERRUPT_PIN), 1);
    }

    #[test]
    fn sizing_a_64_bit_bar() {
        let mut space = ConfigSpace::new(&header());
        space
            .add_bar(
                0,
                BarKind::Memory64 {
                    prefetchable: false,
                },
                0x8000,
            )
            .unwrap();
        space.set_bar_address(0, 0xc000_0000);
        assert_eq!(read32(&space, BAR0), 0xc000_0004);
        space.write(BAR0, &[0xff; 4]);
        space.write(BAR0 + 4, &[0xff; 4]);
        assert_eq!(read32(&space, BAR0), 0xffff_8004);
        assert_eq!(read32(&space, BAR0 + 4), 0xffff_ffff);
        space.write(BAR0, &0xd000_0000u32.to_le_bytes());
        space.write(BAR0 + 4, &1u32.to_le_bytes());
        assert_eq!(space.bar(0).unwrap().address, 0x1_d000_0000);
    }

    #[test]
    fn sizing_io_and_32_bit_bars() {
        let mut space = ConfigSpace::new(&header());
        space.add_bar(1, BarKind::Memory32, 0x1000).unwrap();
        space.add_bar(2, BarKind::Io, 0x20).unwrap();
        space.write(BAR0 + 4, &[0xff; 4]);
        space.write(BAR0 + 8, &[0xff; 4]);
        assert_eq!(read32(&space, BAR0 + 4), 0xffff_f000);
        assert_eq!(read32(&space, BAR0 + 8), 0xffff_ffe1);
        // Unused BARs read zero and stay zero.
        space.write(BAR0 + 20, &[0xff; 4]);
        assert_eq!(read32(&space, BAR0 + 20), 0);
    }

    #[test]
    fn bad_bars_are_refused() {
        let mut space = ConfigSpace::new(&header());
        assert_eq!(
            space.add_bar(5, BarKind::Memory64 { prefetchable: true }, 0x1000),
            Err(ConfigSpaceError::BarSlot(5))
        );
        assert_eq!(
            space.add_bar(0, BarKind::Memory32, 0x1001),
            Err(ConfigSpaceError::BarSize(0x1001))
        );
        space
            .add_bar(
                0,
                BarKind::Memory64 {
                    prefetchable: false,
                },
                0x1000,
            )
            .unwrap();
        assert_eq!(
            space.add_bar(1, BarKind::Memory32, 0x1000),
            Err(ConfigSpaceError::BarSlot(1))
        );
    }

    #[test]
    fn capabilities_form_a_list() {
        let mut space = ConfigSpace::new(&header());
        let first = space
            .add_capability(CAP_ID_VENDOR, &[14, 1, 2], &[0; 3])
            .unwrap();
        let second = space
            .add_capability(CAP_ID_MSIX, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[0, 0xc0])
            .unwrap();
        assert_eq!(space.u8_at(CAPABILITIES_POINTER) as usize, first);
        assert_eq!(space.u8_at(first + 1) as usize, second);
        assert_eq!(space.u8_at(second + 1), 0);
        assert_ne!(space.u16_at(STATUS) & STATUS_CAPABILITIES, 0);
        // Only the declared bits are writable.
        space.write(second + 2, &[0xff, 0xff]);
        assert_eq!(space.u16_at(second + 2), 0xc000);
    }

    #[test]
    fn status_errors_are_write_one_to_clear() {
        let mut space = ConfigSpace::new(&header());
        space.set_u16(STATUS, 0x8010);
        space.write(STATUS, &[0xff, 0xff]);
        assert_eq!(space.u16_at(STATUS), 0x0010);
    }

    #[test]
    fn command_register_mask() {
        let mut space = ConfigSpace::new(&header());
        space.write(COMMAND, &[0xff, 0xff]);
        assert_eq!(space.command(), COMMAND_WRITABLE);
        assert!(space.memory_enabled() && space.bus_master() && space.intx_disabled());
        assert!(write_affects_decoding(COMMAND, 2));
        assert!(write_affects_decoding(BAR0 + 20, 4));
        assert!(!write_affects_decoding(INTERRUPT_LINE, 1));
    }

    #[test]
    fn reads_past_the_end_are_ones() {
        let space = ConfigSpace::new(&header());
        let mut data = [0; 4];
        space.read(CONFIG_SPACE_SIZE - 2, &mut data);
        assert_eq!(data[2..], [0xff, 0xff]);
    }
}
