//! The device harness: a machine with guest memory, buses, the PCI root and interrupt
//! recorders, but no vCPU. A test plays the guest: it reads and writes ports, MMIO and guest
//! memory, watches MSI and INTx, enumerates PCI and drives devices with small drivers
//! ([`virtio::VirtioDriver`]). Devices are plugged in through the same wiring the machine
//! builder uses ([`crate::machine::pci_devices::PciWiring`]), so tests see what a guest sees.
//! Modelled on QEMU's qtest and libqos.
//!
//! Built for emu's own tests and, with the `harness` feature, for other crates' tests.

pub mod pci;
pub mod recorders;
pub mod virtio;

use crate::bus::Bus;
use crate::doorbell::BusDoorbells;
use crate::machine::pci_devices::{DeviceError, PciWiring};
use parking_lot::Mutex;
use recorders::{IntxRecorder, MsiRecorder};
use std::sync::Arc;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Where the harness's allocator starts handing out guest memory (below is left for tests
/// that want fixed addresses).
const ALLOC_START: u64 = 0x10_0000;

/// A CPU-less machine.
pub struct Harness {
    /// Guest RAM, from address 0.
    pub memory: GuestMemoryMmap,
    /// The port I/O bus (PCI config ports 0xcf8/0xcfc and whatever a test adds).
    pub pio: Arc<Bus>,
    /// The MMIO bus (PCI ECAM, BARs).
    pub mmio: Arc<Bus>,
    /// The PCI root and its wiring, as the machine builder sets it up.
    pub pci: PciWiring,
    /// Every MSI the devices sent.
    pub msi: Arc<MsiRecorder>,
    /// The level of every INTx line.
    pub intx: Arc<IntxRecorder>,
    next_free: Mutex<u64>,
}

impl Harness {
    /// A machine with `memory_size` bytes of RAM from address 0 (at most 3 GiB, below the
    /// MMIO hole).
    pub fn new(memory_size: u64) -> Self {
        let memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), memory_size as usize)])
            .expect("harness guest memory");
        let pio = Arc::new(Bus::new());
        let mmio = Arc::new(Bus::new());
        let msi = Arc::new(MsiRecorder::default());
        let intx = Arc::new(IntxRecorder::default());
        let lines = intx.clone();
        let pci = PciWiring::new(
            &pio,
            &mmio,
            None,
            Box::new(move |gsi| lines.line(gsi)),
            memory.clone(),
            msi.clone(),
            Arc::new(BusDoorbells),
        )
        .expect("harness PCI wiring");
        Self {
            memory,
            pio,
            mmio,
            pci,
            msi,
            intx,
            next_free: Mutex::new(ALLOC_START),
        }
    }

    /// Plugs a virtio device in, as the machine builder would.
    pub fn add_virtio(
        &self,
        device: Box<dyn crate::virtio::VirtioDevice>,
    ) -> Result<crate::pci::PciAddress, DeviceError> {
        self.pci.add_virtio(device)
    }

    /// Allocates `size` bytes of guest memory aligned to `align` (zeroed).
    pub fn alloc(&self, size: u64, align: u64) -> GuestAddress {
        let mut next = self.next_free.lock();
        let base = next.next_multiple_of(align.max(1));
        *next = base + size;
        let zeros = vec![0u8; size as usize];
        self.memory
            .write_slice(&zeros, GuestAddress(base))
            .expect("harness allocation beyond guest memory");
        GuestAddress(base)
    }

    /// Copies `data` into guest memory at `address`; panics outside RAM.
    pub fn write_mem(&self, address: GuestAddress, data: &[u8]) {
        self.memory
            .write_slice(data, address)
            .expect("harness write outside guest memory");
    }

    /// Reads `len` bytes of guest memory at `address`; panics outside RAM.
    pub fn read_mem(&self, address: GuestAddress, len: usize) -> Vec<u8> {
        let mut data = vec![0u8; len];
        self.memory
            .read_slice(&mut data, address)
            .expect("harness read outside guest memory");
        data
    }

    fn port_read(&self, port: u16, len: usize) -> u64 {
        let mut data = [0u8; 8];
        self.pio.read(u64::from(port), &mut data[..len]);
        u64::from_le_bytes(data)
    }

    fn port_write(&self, port: u16, value: u64, len: usize) {
        self.pio.write(u64::from(port), &value.to_le_bytes()[..len]);
    }

    /// Reads a byte from I/O port `port`, as an `in al, dx` would.
    pub fn inb(&self, port: u16) -> u8 {
        self.port_read(port, 1) as u8
    }
    /// Reads 2 bytes from I/O port `port`.
    pub fn inw(&self, port: u16) -> u16 {
        self.port_read(port, 2) as u16
    }
    /// Reads 4 bytes from I/O port `port`.
    pub fn inl(&self, port: u16) -> u32 {
        self.port_read(port, 4) as u32
    }
    /// Writes a byte to I/O port `port`, as an `out dx, al` would.
    pub fn outb(&self, port: u16, value: u8) {
        self.port_write(port, value.into(), 1)
    }
    /// Writes 2 bytes to I/O port `port`.
    pub fn outw(&self, port: u16, value: u16) {
        self.port_write(port, value.into(), 2)
    }
    /// Writes 4 bytes to I/O port `port`.
    pub fn outl(&self, port: u16, value: u32) {
        self.port_write(port, value.into(), 4)
    }

    /// An MMIO read of `len` (1, 2, 4 or 8) bytes, as a vCPU would do it.
    pub fn mmio_read(&self, address: u64, len: usize) -> u64 {
        let mut data = [0u8; 8];
        self.mmio.read(address, &mut data[..len]);
        u64::from_le_bytes(data)
    }

    /// An MMIO write of the low `len` (1, 2, 4 or 8) bytes of `value`, as a vCPU would do it.
    pub fn mmio_write(&self, address: u64, value: u64, len: usize) {
        self.mmio.write(address, &value.to_le_bytes()[..len]);
    }

    /// Reads 1 byte of MMIO at guest-physical `address`.
    pub fn readb(&self, address: u64) -> u8 {
        self.mmio_read(address, 1) as u8
    }
    /// Reads 2 bytes of MMIO at guest-physical `address`.
    pub fn readw(&self, address: u64) -> u16 {
        self.mmio_read(address, 2) as u16
    }
    /// Reads 4 bytes of MMIO at guest-physical `address`.
    pub fn readl(&self, address: u64) -> u32 {
        self.mmio_read(address, 4) as u32
    }
    /// Reads 8 bytes of MMIO at guest-physical `address`.
    pub fn readq(&self, address: u64) -> u64 {
        self.mmio_read(address, 8)
    }
    /// Writes 1 byte of MMIO at guest-physical `address`.
    pub fn writeb(&self, address: u64, value: u8) {
        self.mmio_write(address, value.into(), 1)
    }
    /// Writes 2 bytes of MMIO at guest-physical `address`.
    pub fn writew(&self, address: u64, value: u16) {
        self.mmio_write(address, value.into(), 2)
    }
    /// Writes 4 bytes of MMIO at guest-physical `address`.
    pub fn writel(&self, address: u64, value: u32) {
        self.mmio_write(address, value.into(), 4)
    }
    /// Writes 8 bytes of MMIO at guest-physical `address` in one access.
    pub fn writeq(&self, address: u64, value: u64) {
        self.mmio_write(address, value, 8)
    }
}
