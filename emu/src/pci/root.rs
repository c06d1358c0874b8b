//! The PCI root complex: bus 0 with up to 32 single-function devices, reached through
//! configuration mechanism #1 (ports 0xcf8/0xcfc) and ECAM. It places BARs the way firmware
//! would, maps them on the MMIO and port buses, follows the guest when it moves or disables
//! them, and wires each device's INTx pin to an IOAPIC input.

use super::allocator::RangeAllocator;
use super::config_space::{self, BarKind, ConfigSpace, PciHeader};
use super::device::{PciAddress, PciDevice, SharedPciDevice};
use crate::arch::x86_64::layout;
use crate::arch::x86_64::pci_acpi::intx_gsi;
use crate::bus::{Bus, BusDevice, BusError, SharedDevice};
use crate::interrupt::SharedLine;
use parking_lot::{Mutex, MutexGuard};
use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

/// Slots on the root bus.
pub const SLOTS: u8 = 32;

/// Why a device could not be plugged in.
#[derive(Debug, thiserror::Error)]
pub enum PciError {
    /// All 32 slots of bus 0 are taken; the text names the device.
    #[error("no free PCI slot for {0}")]
    NoSlot(String),
    /// The I/O or MMIO window has no aligned free range left for a BAR.
    #[error("no room in the PCI {window} window for BAR {bar} ({size:#x} bytes) of {device}")]
    NoBarSpace {
        /// The device's name.
        device: String,
        /// The BAR's slot, 0 to 5.
        bar: usize,
        /// The BAR's size in bytes.
        size: u64,
        /// `"I/O"` or `"MMIO"`.
        window: &'static str,
    },
    /// The BAR or config window could not be mapped on its bus.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Produces the interrupt line for an IOAPIC input (GSI).
pub type IntxLines = Box<dyn Fn(u32) -> SharedLine + Send + Sync>;

struct Slot {
    device: SharedPciDevice,
    /// BAR index -> (kind, base) of the ranges currently mapped.
    mapped: BTreeMap<usize, (BarKind, u64)>,
}

struct RootState {
    slots: BTreeMap<u8, Slot>,
    mmio_space: RangeAllocator,
    io_space: RangeAllocator,
}

/// Bus 0 of PCI segment 0.
pub struct PciRoot {
    state: Mutex<RootState>,
    mmio: Arc<Bus>,
    pio: Arc<Bus>,
    intx: IntxLines,
}

impl PciRoot {
    /// A root bus whose BARs go on `mmio` and `pio`, with the host bridge in slot 0.
    pub fn new(mmio: Arc<Bus>, pio: Arc<Bus>, intx: IntxLines) -> Arc<Self> {
        let root = Arc::new(Self {
            state: Mutex::new(RootState {
                slots: BTreeMap::new(),
                mmio_space: RangeAllocator::new(
                    layout::PCI_MMIO_WINDOW_START,
                    layout::PCI_MMIO_WINDOW_SIZE,
                ),
                io_space: RangeAllocator::new(
                    layout::PCI_IO_WINDOW_START,
                    layout::PCI_IO_WINDOW_SIZE,
                ),
            }),
            mmio,
            pio,
            intx,
        });
        let bridge: SharedPciDevice = Arc::new(Mutex::new(HostBridge::new()));
        root.lock().slots.insert(
            0,
            Slot {
                device: bridge,
                mapped: BTreeMap::new(),
            },
        );
        root
    }

    fn lock(&self) -> MutexGuard<'_, RootState> {
        self.state.lock()
    }

    /// Plugs `device` into the lowest free slot: assigns its BARs, enables decoding as firmware
    /// would, maps the BARs and wires its interrupt pin.
    pub fn add_device(&self, device: SharedPciDevice) -> Result<PciAddress, PciError> {
        let mut state = self.lock();
        let name = device.lock().name().to_string();
        let slot = (1..SLOTS)
            .find(|s| !state.slots.contains_key(s))
            .ok_or_else(|| PciError::NoSlot(name.clone()))?;
        {
            let mut dev = device.lock();
            let bars: Vec<_> = dev.config().bars().collect();
            let mut command = 0;
            for bar in bars {
                let (space, window, enable) = match bar.kind {
                    BarKind::Io => (&mut state.io_space, "I/O", config_space::COMMAND_IO),
                    _ => (&mut state.mmio_space, "MMIO", config_space::COMMAND_MEMORY),
                };
                // Memory BARs get at least a page so each sits alone in its pages.
                let align = if bar.kind == BarKind::Io {
                    bar.size
                } else {
                    bar.size.max(4096)
                };
                let base = space
                    .allocate(bar.size, align)
                    .ok_or_else(|| PciError::NoBarSpace {
                        device: name.clone(),
                        bar: bar.index,
                        size: bar.size,
                        window,
                    })?;
                dev.config_mut().set_bar_address(bar.index, base);
                command |= enable;
            }
            dev.config_mut().set_command(command);
            let pin = dev.config().interrupt_pin();
            if (1..=4).contains(&pin) {
                let gsi = intx_gsi(slot, pin - 1);
                dev.config_mut().set_interrupt_line(gsi as u8);
                dev.attach_intx((self.intx)(gsi));
            }
        }
        let mut entry = Slot {
            device,
            mapped: BTreeMap::new(),
        };
        self.update_mappings(&mut entry);
        state.slots.insert(slot, entry);
        let address = PciAddress {
            bus: 0,
            device: slot,
            function: 0,
        };
        log::info!("PCI {address}: {name}");
        Ok(address)
    }

    /// Unplugs the device at `address`: its BARs stop decoding and their ranges go back to the
    /// windows. Returns the device (the caller stops it). The host bridge stays.
    pub fn remove_device(&self, address: PciAddress) -> Option<SharedPciDevice> {
        if address.bus != 0 || address.function != 0 || address.device == 0 {
            return None;
        }
        let mut state = self.lock();
        let mut slot = state.slots.remove(&address.device)?;
        for (bar, (kind, base)) in std::mem::take(&mut slot.mapped) {
            self.bus_for(kind).remove(base);
            slot.device.lock().bar_mapped(bar, None);
        }
        let bars: Vec<_> = slot.device.lock().config().bars().collect();
        for bar in bars {
            match bar.kind {
                BarKind::Io => state.io_space.release(bar.address),
                _ => state.mmio_space.release(bar.address),
            }
        }
        log::info!("PCI {address}: removed");
        Some(slot.device)
    }

    /// A configuration read (function-0 devices on bus 0; anything else reads as ones).
    pub fn config_read(&self, address: PciAddress, offset: usize, data: &mut [u8]) {
        let state = self.lock();
        match Self::find(&state, address) {
            Some(slot) => slot.device.lock().config_read(offset, data),
            None => data.fill(0xff),
        }
    }

    /// A configuration write; remaps BARs when the command register or a BAR changed.
    pub fn config_write(&self, address: PciAddress, offset: usize, data: &[u8]) {
        let mut state = self.lock();
        if address.bus != 0 || address.function != 0 {
            return;
        }
        let Some(slot) = state.slots.get_mut(&address.device) else {
            return;
        };
        {
            let mut device = slot.device.lock();
            device.config_mut().write(offset, data);
            device.config_written(offset, data.len());
        }
        if config_space::write_affects_decoding(offset, data.len()) {
            self.update_mappings(slot);
        }
    }

    fn find(state: &RootState, address: PciAddress) -> Option<&Slot> {
        if address.bus != 0 || address.function != 0 {
            return None;
        }
        state.slots.get(&address.device)
    }

    /// Makes the bus mappings of `slot` match what its config space decodes now.
    fn update_mappings(&self, slot: &mut Slot) {
        let (wanted, name): (BTreeMap<usize, (BarKind, u64, u64)>, String) = {
            let device = slot.device.lock();
            let config = device.config();
            let wanted = config
                .bars()
                .filter(|bar| decodes(config, bar.kind, bar.address, bar.size))
                .map(|bar| (bar.index, (bar.kind, bar.address, bar.size)))
                .collect();
            (wanted, device.name().to_string())
        };
        let stale: Vec<usize> = slot
            .mapped
            .iter()
            .filter(|(bar, (_, base))| wanted.get(bar).map(|w| w.1) != Some(*base))
            .map(|(bar, _)| *bar)
            .collect();
        for bar in stale {
            if let Some((kind, base)) = slot.mapped.remove(&bar) {
                self.bus_for(kind).remove(base);
                slot.device.lock().bar_mapped(bar, None);
            }
        }
        for (bar, (kind, base, size)) in wanted {
            if slot.mapped.contains_key(&bar) {
                continue;
            }
            let region = Arc::new(Mutex::new(BarRegion {
                device: slot.device.clone(),
                bar,
            }));
            match self.bus_for(kind).insert(region, base, size) {
                Ok(()) => {
                    slot.mapped.insert(bar, (kind, base));
                    slot.device.lock().bar_mapped(bar, Some(base));
                }
                Err(e) => log::warn!("{name}: BAR {bar} not mapped: {e}"),
            }
        }
    }

    fn bus_for(&self, kind: BarKind) -> &Bus {
        match kind {
            BarKind::Io => &self.pio,
            _ => &self.mmio,
        }
    }
}

/// Whether a BAR at `base` decodes: its kind is enabled in the command register and the
/// address is a real placement, not unassigned or the all-ones pattern of a sizing probe.
fn decodes(config: &ConfigSpace, kind: BarKind, base: u64, size: u64) -> bool {
    let enabled = match kind {
        BarKind::Io => config.io_enabled(),
        _ => config.memory_enabled(),
    };
    let limit = match kind {
        BarKind::Io => 0x1_0000,
        BarKind::Memory32 => 1 << 32,
        BarKind::Memory64 { .. } => 1 << 52,
    };
    enabled && base != 0 && base.checked_add(size).is_some_and(|end| end <= limit)
}

/// One BAR of a device as a bus sees it.
struct BarRegion {
    device: SharedPciDevice,
    bar: usize,
}

impl BusDevice for BarRegion {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.device.lock().bar_read(self.bar, offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        self.device.lock().bar_write(self.bar, offset, data);
    }
}

/// The host bridge at 00:00.0: identity only.
struct HostBridge {
    config: ConfigSpace,
}

impl HostBridge {
    fn new() -> Self {
        Self {
            config: ConfigSpace::new(&PciHeader {
                // Red Hat's "PCIe host bridge" ID, which Linux binds no driver to.
                vendor_id: 0x1b36,
                device_id: 0x0008,
                class_code: 0x06_00_00,
                revision: 0,
                subsystem_vendor_id: 0x1af4,
                subsystem_id: 0x1100,
                interrupt_pin: 0,
            }),
        }
    }
}

impl PciDevice for HostBridge {
    fn name(&self) -> &str {
        "host bridge"
    }
    fn config(&self) -> &ConfigSpace {
        &self.config
    }
    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.config
    }
    fn bar_read(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn bar_write(&mut self, _bar: usize, _offset: u64, _data: &[u8]) {}
}

/// Configuration mechanism #1: the address register at 0xcf8 and the data window at 0xcfc.
/// It refers to the root weakly: the root owns the buses this sits on. Byte accesses at 0xcf9
/// are not PCI: they go to the PC reset register, when one is given.
pub struct ConfigPorts {
    root: Weak<PciRoot>,
    address: u32,
    reset_port: Option<SharedDevice>,
}

/// Offset of the reset control register (0xcf9) in the configuration ports.
const RESET_PORT_OFFSET: u64 = 1;

impl ConfigPorts {
    /// Ports for `root`; byte accesses at 0xcf9 go to `reset_port`, when given.
    pub fn new(root: &Arc<PciRoot>, reset_port: Option<SharedDevice>) -> Self {
        Self {
            root: Arc::downgrade(root),
            address: 0,
            reset_port,
        }
    }

    /// The reset register, for a byte access at 0xcf9.
    fn reset_port(&self, offset: u64, len: usize) -> Option<&SharedDevice> {
        self.reset_port
            .as_ref()
            .filter(|_| offset == RESET_PORT_OFFSET && len == 1)
    }

    /// The function and register the address register selects, if enabled.
    fn target(&self, data_offset: u64) -> Option<(PciAddress, usize)> {
        if self.address & 0x8000_0000 == 0 {
            return None;
        }
        let address = PciAddress {
            bus: (self.address >> 16) as u8,
            device: ((self.address >> 11) & 0x1f) as u8,
            function: ((self.address >> 8) & 0x7) as u8,
        };
        Some((
            address,
            (self.address & 0xfc) as usize + data_offset as usize,
        ))
    }
}

impl BusDevice for ConfigPorts {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let Some(reset) = self.reset_port(offset, data.len()) {
            reset.lock().read(0, data);
            return;
        }
        match offset {
            0..=3 => {
                let bytes = self.address.to_le_bytes();
                for (i, byte) in data.iter_mut().enumerate() {
                    *byte = bytes.get(offset as usize + i).copied().unwrap_or(0xff);
                }
            }
            _ => match (self.target(offset - 4), self.root.upgrade()) {
                (Some((address, register)), Some(root)) => {
                    root.config_read(address, register, data)
                }
                _ => data.fill(0xff),
            },
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some(reset) = self.reset_port(offset, data.len()) {
            reset.lock().write(0, data);
            return;
        }
        match offset {
            // Only dword writes select a register; byte writes to 0xcf8-0xcfb belong to
            // other (legacy) uses and are ignored.
            0 if data.len() == 4 => self.address = crate::bus::read_le(data) as u32,
            0..=3 => {}
            _ => {
                if let (Some((address, register)), Some(root)) =
                    (self.target(offset - 4), self.root.upgrade())
                {
                    root.config_write(address, register, data);
                }
            }
        }
    }
}

/// The ECAM window: 4 KiB of configuration space per function, 1 MiB per bus.
pub struct Ecam {
    root: Weak<PciRoot>,
}

impl Ecam {
    /// The ECAM window of `root`.
    pub fn new(root: &Arc<PciRoot>) -> Self {
        Self {
            root: Arc::downgrade(root),
        }
    }

    fn target(offset: u64) -> (PciAddress, usize) {
        (
            PciAddress {
                bus: (offset >> 20) as u8,
                device: ((offset >> 15) & 0x1f) as u8,
                function: ((offset >> 12) & 0x7) as u8,
            },
            (offset & 0xfff) as usize,
        )
    }
}

impl BusDevice for Ecam {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let (address, register) = Self::target(offset);
        match self.root.upgrade() {
            Some(root) => root.config_read(address, register, data),
            None => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let (address, register) = Self::target(offset);
        if let Some(root) = self.root.upgrade() {
            root.config_write(address, register, data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::NoLine;

    #[derive(Default)]
    struct Register(Vec<u8>);

    impl BusDevice for Register {
        fn read(&mut self, _offset: u64, data: &mut [u8]) {
            data.fill(0x5a);
        }
        fn write(&mut self, _offset: u64, data: &[u8]) {
            self.0.extend_from_slice(data);
        }
    }

    fn root() -> (Arc<PciRoot>, Arc<Bus>) {
        let pio = Arc::new(Bus::new());
        let mmio = Arc::new(Bus::new());
        let root = PciRoot::new(mmio, pio.clone(), Box::new(|_| Arc::new(NoLine)));
        (root, pio)
    }

    #[test]
    fn byte_accesses_at_0xcf9_reach_the_reset_register() {
        let (root, _pio) = root();
        let reset = Arc::new(Mutex::new(Register::default()));
        let mut ports = ConfigPorts::new(&root, Some(reset.clone()));
        ports.write(1, &[0x06]);
        let mut byte = [0u8];
        ports.read(1, &mut byte);
        assert_eq!(byte, [0x5a]);
        assert_eq!(reset.lock().0, vec![0x06]);
        // A dword write at 0xcf8 is the PCI address register, not the reset register.
        ports.write(0, &0x8000_0000u32.to_le_bytes());
        assert_eq!(reset.lock().0.len(), 1);
        let mut id = [0u8; 4];
        ports.read(4, &mut id);
        assert_eq!(
            u32::from_le_bytes(id),
            0x0008_1b36,
            "host bridge at 00:00.0"
        );
    }

    struct Dummy(ConfigSpace, Vec<Option<u64>>);

    impl PciDevice for Dummy {
        fn name(&self) -> &str {
            "dummy"
        }
        fn config(&self) -> &ConfigSpace {
            &self.0
        }
        fn config_mut(&mut self) -> &mut ConfigSpace {
            &mut self.0
        }
        fn bar_read(&mut self, _bar: usize, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn bar_write(&mut self, _bar: usize, _offset: u64, _data: &[u8]) {}
        fn bar_mapped(&mut self, _bar: usize, address: Option<u64>) {
            self.1.push(address);
        }
    }

    fn dummy() -> Arc<Mutex<Dummy>> {
        let mut config = ConfigSpace::new(&PciHeader {
            vendor_id: 0x1234,
            device_id: 0x5678,
            class_code: 0xff_00_00,
            revision: 0,
            subsystem_vendor_id: 0,
            subsystem_id: 0,
            interrupt_pin: 1,
        });
        config.add_bar(0, BarKind::Memory32, 0x1000).unwrap();
        config.add_bar(1, BarKind::Io, 0x20).unwrap();
        Arc::new(Mutex::new(Dummy(config, Vec::new())))
    }

    #[test]
    fn plug_and_unplug() {
        let pio = Arc::new(Bus::new());
        let mmio = Arc::new(Bus::new());
        let root = PciRoot::new(mmio.clone(), pio.clone(), Box::new(|_| Arc::new(NoLine)));
        let first = dummy();
        let address = root.add_device(first.clone()).unwrap();
        assert_eq!(address.device, 1);
        let mmio_base = first.lock().0.bar(0).unwrap().address;
        let io_base = first.lock().0.bar(1).unwrap().address;
        let mut data = [0u8; 1];
        assert!(mmio.read(mmio_base + 0x10, &mut data));
        assert_eq!(data, [0x10]);
        assert!(pio.read(io_base + 2, &mut data));
        // Unplugged: nothing decodes, the device heard about it, the slot and ranges are free.
        assert!(root.remove_device(address).is_some());
        assert!(!mmio.read(mmio_base, &mut data));
        assert!(!pio.read(io_base, &mut data));
        assert_eq!(first.lock().1.iter().filter(|a| a.is_none()).count(), 2);
        let second = dummy();
        assert_eq!(root.add_device(second.clone()).unwrap(), address);
        assert_eq!(second.lock().0.bar(0).unwrap().address, mmio_base);
        // The host bridge cannot be removed.
        assert!(root
            .remove_device(PciAddress {
                bus: 0,
                device: 0,
                function: 0
            })
            .is_none());
    }

    #[test]
    fn disabled_or_absent_functions_read_ones() {
        let (root, _pio) = root();
        let mut ports = ConfigPorts::new(&root, None);
        let mut id = [0u8; 4];
        // Enable bit clear.
        ports.write(0, &0x0000_0000u32.to_le_bytes());
        ports.read(4, &mut id);
        assert_eq!(id, [0xff; 4]);
        // Empty slot, other functions, other buses.
        for address in [0x8000_0800u32, 0x8000_0100, 0x8001_0000] {
            ports.write(0, &address.to_le_bytes());
            ports.read(4, &mut id);
            assert_eq!(id, [0xff; 4], "{address:#x}");
            ports.write(4, &[0; 4]);
        }
        // The ECAM reaches the same host bridge; a dropped root reads as ones.
        let mut ecam = Ecam::new(&root);
        ecam.read(0, &mut id);
        assert_eq!(u32::from_le_bytes(id), 0x0008_1b36);
        drop(root);
        ecam.read(0, &mut id);
        assert_eq!(id, [0xff; 4]);
    }
}
