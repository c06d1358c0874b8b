//! PCI enumeration the way a guest does it: configuration cycles through ports 0xcf8/0xcfc (or
//! ECAM), BAR sizing, capability walks.

use super::Harness;
use crate::arch::x86_64::layout::{self, ports};
use crate::pci::config_space::{self, COMMAND_BUS_MASTER, COMMAND_MEMORY};
use crate::pci::PciAddress;

/// A function found on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoundFunction {
    /// Bus, device and function number.
    pub address: PciAddress,
    /// Vendor ID, config offset 0x00.
    pub vendor_id: u16,
    /// Device ID, config offset 0x02.
    pub device_id: u16,
    /// Class code (base class, subclass, prog-if) from config offset 0x09, in the low 24 bits.
    pub class_code: u32,
}

/// Configuration-space access to one function.
#[derive(Clone, Copy)]
pub struct PciFunction<'h> {
    /// The harness whose ports and MMIO the accesses go through.
    pub harness: &'h Harness,
    /// Bus, device and function number.
    pub address: PciAddress,
}

fn cf8(address: PciAddress, register: usize) -> u32 {
    0x8000_0000
        | u32::from(address.bus) << 16
        | u32::from(address.device) << 11
        | u32::from(address.function) << 8
        | (register as u32 & 0xfc)
}

impl<'h> PciFunction<'h> {
    /// Access to the function at `address`; nothing is read yet.
    pub fn new(harness: &'h Harness, address: PciAddress) -> Self {
        Self { harness, address }
    }

    /// Reads the byte at config offset `register` through ports 0xcf8/0xcfc.
    pub fn read8(&self, register: usize) -> u8 {
        self.harness.outl(
            ports::PCI_CONFIG_ADDRESS as u16,
            cf8(self.address, register),
        );
        self.harness.inb(0xcfc + (register & 3) as u16)
    }

    /// Reads the word at config offset `register` (2-byte aligned) through ports 0xcf8/0xcfc.
    pub fn read16(&self, register: usize) -> u16 {
        self.harness.outl(
            ports::PCI_CONFIG_ADDRESS as u16,
            cf8(self.address, register),
        );
        self.harness.inw(0xcfc + (register & 2) as u16)
    }

    /// Reads the dword at config offset `register` (low 2 bits ignored) through ports 0xcf8/0xcfc.
    pub fn read32(&self, register: usize) -> u32 {
        self.harness.outl(
            ports::PCI_CONFIG_ADDRESS as u16,
            cf8(self.address, register),
        );
        self.harness.inl(0xcfc)
    }

    /// Writes the byte at config offset `register` through ports 0xcf8/0xcfc.
    pub fn write8(&self, register: usize, value: u8) {
        self.harness.outl(
            ports::PCI_CONFIG_ADDRESS as u16,
            cf8(self.address, register),
        );
        self.harness.outb(0xcfc + (register & 3) as u16, value);
    }

    /// Writes the word at config offset `register` (2-byte aligned) through ports 0xcf8/0xcfc.
    pub fn write16(&self, register: usize, value: u16) {
        self.harness.outl(
            ports::PCI_CONFIG_ADDRESS as u16,
            cf8(self.address, register),
        );
        self.harness.outw(0xcfc + (register & 2) as u16, value);
    }

    /// Writes the dword at config offset `register` (low 2 bits ignored) through ports 0xcf8/0xcfc.
    pub fn write32(&self, register: usize, value: u32) {
        self.harness.outl(
            ports::PCI_CONFIG_ADDRESS as u16,
            cf8(self.address, register),
        );
        self.harness.outl(0xcfc, value);
    }

    /// A dword read through ECAM instead of the ports.
    pub fn ecam_read32(&self, register: usize) -> u32 {
        self.harness.readl(self.ecam_address(register))
    }

    /// A dword write through ECAM instead of the ports.
    pub fn ecam_write32(&self, register: usize, value: u32) {
        self.harness.writel(self.ecam_address(register), value)
    }

    fn ecam_address(&self, register: usize) -> u64 {
        layout::PCI_ECAM_START
            + (u64::from(self.address.bus) << 20)
            + (u64::from(self.address.device) << 15)
            + (u64::from(self.address.function) << 12)
            + register as u64
    }

    /// Offsets of every capability with `id`, walking the list as a driver does (with a bound,
    /// so a looping list cannot hang the test).
    pub fn capabilities(&self, id: u8) -> Vec<usize> {
        let mut found = Vec::new();
        let mut offset = usize::from(self.read8(config_space::CAPABILITIES_POINTER)) & !3;
        for _ in 0..48 {
            if offset < 0x40 {
                break;
            }
            if self.read8(offset) == id {
                found.push(offset);
            }
            offset = usize::from(self.read8(offset + 1)) & !3;
        }
        found
    }

    /// Sizes BAR `index` like a driver: decoding off, all ones written, size read back,
    /// address restored. Returns (address, size) for a memory BAR, None if unimplemented.
    pub fn memory_bar(&self, index: usize) -> Option<(u64, u64)> {
        let register = config_space::BAR0 + 4 * index;
        let command = self.read16(config_space::COMMAND);
        self.write16(config_space::COMMAND, command & !COMMAND_MEMORY);
        let low = self.read32(register);
        if low & 1 != 0 {
            self.write16(config_space::COMMAND, command);
            return None;
        }
        let is_64 = low & 0x6 == 0x4;
        let high = if is_64 { self.read32(register + 4) } else { 0 };
        self.write32(register, u32::MAX);
        let size_low = self.read32(register) & !0xf;
        let size_high = if is_64 {
            self.write32(register + 4, u32::MAX);
            let v = self.read32(register + 4);
            self.write32(register + 4, high);
            v
        } else {
            u32::MAX
        };
        self.write32(register, low);
        self.write16(config_space::COMMAND, command);
        let mask = (u64::from(size_high) << 32) | u64::from(size_low);
        if mask == 0 || (!is_64 && size_low == 0) {
            return None;
        }
        let size = (!mask).wrapping_add(1);
        let address = (u64::from(high) << 32) | u64::from(low & !0xf);
        Some((address, size))
    }

    /// Turns on memory decoding and bus mastering, as a driver's probe does.
    pub fn enable(&self) {
        let command = self.read16(config_space::COMMAND);
        self.write16(
            config_space::COMMAND,
            command | COMMAND_MEMORY | COMMAND_BUS_MASTER,
        );
    }
}

/// Every function on bus 0, found by probing each slot's vendor ID.
pub fn enumerate(harness: &Harness) -> Vec<FoundFunction> {
    let mut found = Vec::new();
    for device in 0..32u8 {
        let address = PciAddress {
            bus: 0,
            device,
            function: 0,
        };
        let function = PciFunction::new(harness, address);
        let id = function.read32(0);
        if id & 0xffff == 0xffff {
            continue;
        }
        found.push(FoundFunction {
            address,
            vendor_id: id as u16,
            device_id: (id >> 16) as u16,
            class_code: function.read32(8) >> 8,
        });
    }
    found
}
