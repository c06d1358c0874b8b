//! PCI wiring shared by the machine builder and the device harness: the root bus with its
//! configuration ports and ECAM window, and virtio devices plugged into it. Keeping it in one
//! place means device tests exercise exactly the wiring a guest sees.

use crate::arch::x86_64::layout::{self, ports};
use crate::block::{DiskError, RawDisk};
use crate::bus::{Bus, BusError, SharedDevice};
use crate::doorbell::DoorbellRegistry;
use crate::interrupt::MsiController;
use crate::pci::root::IntxLines;
use crate::pci::{ConfigPorts, Ecam, PciAddress, PciError, PciRoot, SharedPciDevice};
use crate::virtio::block::{Block, BlockOptions};
use crate::virtio::pci::{TransportError, VirtioPciDevice};
use crate::virtio::rng::Rng;
use crate::virtio::VirtioDevice;
use parking_lot::Mutex;
use std::path::Path;
use std::sync::Arc;
use vm_memory::GuestMemoryMmap;

/// Why a device could not be added.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A disk image could not be opened.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The PCI root had no free slot or BAR space.
    #[error(transparent)]
    Pci(#[from] PciError),
    /// The virtio-pci transport could not be set up (queues, MSI-X, eventfds).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A device's ports or MMIO overlap another's.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Everything a PCI device needs from the machine.
pub struct PciWiring {
    /// The root bus devices are plugged into.
    pub root: Arc<PciRoot>,
    /// Guest memory, for devices that do DMA (virtqueues).
    pub memory: GuestMemoryMmap,
    /// Where devices get MSI vectors from (KVM irqfds, or a recorder in tests).
    pub msi: Arc<dyn MsiController>,
    /// Where devices register their notify doorbells (KVM ioeventfds, or the bus itself).
    pub doorbells: Arc<dyn DoorbellRegistry>,
}

impl PciWiring {
    /// Creates the root bus, its configuration ports on `pio` and its ECAM window on `mmio`.
    /// `reset_port` is the device that answers byte accesses at 0xcf9 (the PC reset
    /// register), which sits inside the configuration address register's ports.
    pub fn new(
        pio: &Arc<Bus>,
        mmio: &Arc<Bus>,
        reset_port: Option<SharedDevice>,
        intx: IntxLines,
        memory: GuestMemoryMmap,
        msi: Arc<dyn MsiController>,
        doorbells: Arc<dyn DoorbellRegistry>,
    ) -> Result<Self, DeviceError> {
        let root = PciRoot::new(mmio.clone(), pio.clone(), intx);
        pio.insert(
            Arc::new(Mutex::new(ConfigPorts::new(&root, reset_port))),
            ports::PCI_CONFIG_ADDRESS,
            ports::PCI_CONFIG_LEN,
        )?;
        mmio.insert(
            Arc::new(Mutex::new(Ecam::new(&root))),
            layout::PCI_ECAM_START,
            layout::PCI_ECAM_SIZE,
        )?;
        Ok(Self {
            root,
            memory,
            msi,
            doorbells,
        })
    }

    /// Plugs a virtio device in through the PCI transport.
    pub fn add_virtio(&self, device: Box<dyn VirtioDevice>) -> Result<PciAddress, DeviceError> {
        let transport = VirtioPciDevice::new(
            device,
            self.memory.clone(),
            self.msi.as_ref(),
            self.doorbells.clone(),
        )?;
        let shared: SharedPciDevice = Arc::new(Mutex::new(transport));
        Ok(self.root.add_device(shared)?)
    }

    /// Opens a raw disk image and plugs it in as virtio-blk.
    pub fn add_raw_disk(
        &self,
        path: &Path,
        read_only: bool,
        serial: Option<String>,
        queues: u16,
    ) -> Result<PciAddress, DeviceError> {
        let disk = RawDisk::open(path, read_only)?;
        log::info!(
            "disk {}: {} bytes{}",
            path.display(),
            crate::block::DiskBackend::size(&disk),
            if read_only { ", read-only" } else { "" }
        );
        self.add_virtio(Box::new(Block::new(
            Arc::new(disk),
            BlockOptions { queues, serial },
        )))
    }

    /// Plugs in a virtio entropy device.
    pub fn add_rng(&self) -> Result<PciAddress, DeviceError> {
        self.add_virtio(Box::<Rng>::default())
    }
}
