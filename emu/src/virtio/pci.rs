//! The virtio 1.x PCI transport ("modern" only): one 64-bit memory BAR holding the common
//! configuration, ISR status, device configuration, notification (doorbell) and MSI-X regions,
//! announced by vendor capabilities; the status state machine and feature negotiation; queue
//! set-up checked against guest memory before the device sees it.

use super::queue_service::{ready_queue, QueueLayout};
use super::worker::Worker;
use super::{features, status, Activation, ReadyQueue, VirtioDevice, VirtioInterrupt};
use crate::doorbell::DoorbellRegistry;
use crate::interrupt::{MsiController, SharedLine};
use crate::pci::config_space::{self, BarKind, ConfigSpace, PciHeader, CAP_ID_MSIX, CAP_ID_VENDOR};
use crate::pci::msix::{Msix, NO_VECTOR};
use crate::pci::PciDevice;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

/// Virtio's PCI vendor ID; device IDs are 0x1040 plus the device type.
pub const VIRTIO_VENDOR_ID: u16 = 0x1af4;
const MODERN_DEVICE_ID_BASE: u16 = 0x1040;

/// Layout of BAR 0.
pub const BAR_INDEX: usize = 0;
/// Size of BAR 0 in bytes (32 KiB).
pub const BAR_SIZE: u64 = 0x8000;
/// Offset of the common configuration (`VIRTIO_PCI_CAP_COMMON_CFG`) in BAR 0.
pub const COMMON_OFFSET: u64 = 0x0000;
/// Length of the common configuration structure in bytes.
pub const COMMON_LEN: u64 = 0x38;
/// Offset of the ISR status byte (`VIRTIO_PCI_CAP_ISR_CFG`) in BAR 0.
pub const ISR_OFFSET: u64 = 0x1000;
/// Length of the ISR region in bytes.
pub const ISR_LEN: u64 = 4;
/// Offset of the device-specific configuration (`VIRTIO_PCI_CAP_DEVICE_CFG`) in BAR 0.
pub const DEVICE_OFFSET: u64 = 0x2000;
/// Length of the device-specific configuration region in bytes.
pub const DEVICE_LEN: u64 = 0x1000;
/// Offset of the queue doorbells (`VIRTIO_PCI_CAP_NOTIFY_CFG`) in BAR 0.
pub const NOTIFY_OFFSET: u64 = 0x3000;
/// Each queue's doorbell is its own dword, so KVM can match it by address alone.
pub const NOTIFY_MULTIPLIER: u32 = 4;
/// Offset of the MSI-X table in BAR 0 (16 bytes per vector).
pub const MSIX_TABLE_OFFSET: u64 = 0x4000;
/// `VIRTIO_BLK_S_UNSUPP`: the request type, or a range flag, is not supported.
pub const MSIX_PBA_OFFSET: u64 = 0x6000;
const MAX_QUEUES: usize = ((MSIX_TABLE_OFFSET - NOTIFY_OFFSET) / NOTIFY_MULTIPLIER as u64) as usize;
const MAX_VECTORS: usize = ((MSIX_PBA_OFFSET - MSIX_TABLE_OFFSET) / 16) as usize;

/// `cfg_type` of the virtio vendor capabilities.
pub mod cap_type {
    /// `VIRTIO_PCI_CAP_COMMON_CFG`.
    pub const COMMON: u8 = 1;
    /// `VIRTIO_PCI_CAP_NOTIFY_CFG`.
    pub const NOTIFY: u8 = 2;
    /// `VIRTIO_PCI_CAP_ISR_CFG`.
    pub const ISR: u8 = 3;
    /// `VIRTIO_PCI_CAP_DEVICE_CFG`.
    pub const DEVICE: u8 = 4;
    /// `VIRTIO_PCI_CAP_PCI_CFG`: a config-space window onto the BAR.
    pub const PCI_CFG: u8 = 5;
}

/// Register offsets in the common configuration structure.
pub mod common {
    /// `device_feature_select` (le32): which 32 feature bits `device_feature` shows.
    pub const DEVICE_FEATURE_SELECT: u64 = 0x00;
    /// `device_feature` (le32, read-only).
    pub const DEVICE_FEATURE: u64 = 0x04;
    /// `driver_feature_select` (le32): which 32 bits `driver_feature` writes.
    pub const DRIVER_FEATURE_SELECT: u64 = 0x08;
    /// `driver_feature` (le32).
    pub const DRIVER_FEATURE: u64 = 0x0c;
    /// `config_msix_vector` (le16): MSI-X vector for config changes, or `NO_VECTOR`.
    pub const CONFIG_MSIX_VECTOR: u64 = 0x10;
    /// `num_queues` (le16, read-only).
    pub const NUM_QUEUES: u64 = 0x12;
    /// `device_status` (u8); writing 0 resets the device.
    pub const DEVICE_STATUS: u64 = 0x14;
    /// `config_generation` (u8, read-only): changes when the device config changes.
    pub const CONFIG_GENERATION: u64 = 0x15;
    /// `queue_select` (le16): which queue the `queue_*` registers show.
    pub const QUEUE_SELECT: u64 = 0x16;
    /// `queue_size` (le16): number of entries; reads the maximum until the driver writes it.
    pub const QUEUE_SIZE: u64 = 0x18;
    /// `queue_msix_vector` (le16): MSI-X vector of the selected queue, or `NO_VECTOR`.
    pub const QUEUE_MSIX_VECTOR: u64 = 0x1a;
    /// `queue_enable` (le16): 1 once the driver has set the queue up.
    pub const QUEUE_ENABLE: u64 = 0x1c;
    /// `queue_notify_off` (le16, read-only): doorbell index, times the notify multiplier.
    pub const QUEUE_NOTIFY_OFF: u64 = 0x1e;
    /// `queue_desc` (le64): guest-physical address of the descriptor table.
    pub const QUEUE_DESC: u64 = 0x20;
    /// `queue_driver` (le64): guest-physical address of the available ring.
    pub const QUEUE_DRIVER: u64 = 0x28;
    /// `queue_device` (le64): guest-physical address of the used ring.
    pub const QUEUE_DEVICE: u64 = 0x30;
}

/// The driver-programmed state of one queue.
#[derive(Clone, Copy, Debug)]
struct QueueRegisters {
    max_size: u16,
    size: u16,
    enabled: bool,
    desc: u64,
    driver: u64,
    device: u64,
}

impl QueueRegisters {
    fn new(max_size: u16) -> Self {
        Self {
            max_size,
            size: max_size,
            enabled: false,
            desc: 0,
            driver: 0,
            device: 0,
        }
    }
}

/// A virtio device on PCI.
pub struct VirtioPciDevice {
    name: String,
    config: ConfigSpace,
    device: Box<dyn VirtioDevice>,
    memory: GuestMemoryMmap,
    msix: Arc<Mutex<Msix>>,
    msix_cap: usize,
    pci_cfg_cap: usize,
    interrupt: Arc<VirtioInterrupt>,
    status: Arc<AtomicU8>,
    device_features: u64,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    queue_select: u16,
    queues: Vec<QueueRegisters>,
    doorbells: Vec<EventFd>,
    registry: Arc<dyn DoorbellRegistry>,
    bar_address: Option<u64>,
    config_generation: u8,
    active: bool,
    /// The device's worker while it is active; it owns the queues.
    worker: Option<Worker>,
}

/// Why the transport could not be built (a device-model or host problem, at machine build).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The device declares no queues or more than the notify region has doorbells for.
    #[error("{0}: a virtio device needs 1 to {MAX_QUEUES} queues")]
    QueueCount(String),
    /// A queue's maximum size is not a power of two up to 32768.
    #[error("{name}: queue size {size} is not a power of two up to 32768")]
    QueueSize {
        /// The device's name.
        name: String,
        /// The offending maximum queue size.
        size: u16,
    },
    /// MSI-X vectors could not be allocated from the hypervisor.
    #[error("cannot allocate MSI vectors: {0}")]
    Msi(#[from] crate::interrupt::MsiError),
    /// A doorbell eventfd could not be created.
    #[error("cannot create a doorbell eventfd: {0}")]
    EventFd(#[from] std::io::Error),
    /// The BAR or a capability did not fit the configuration space (a device-model bug).
    #[error("PCI configuration space: {0}")]
    Config(#[from] config_space::ConfigSpaceError),
}

impl VirtioPciDevice {
    /// Wraps `device` with its config space, BAR 0 layout, MSI-X vectors from `msi` and doorbells.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        memory: GuestMemoryMmap,
        msi: &dyn MsiController,
        registry: Arc<dyn DoorbellRegistry>,
    ) -> Result<Self, TransportError> {
        let name = device.name().to_string();
        let max_sizes = device.queue_max_sizes();
        if max_sizes.is_empty() || max_sizes.len() > MAX_QUEUES {
            return Err(TransportError::QueueCount(name));
        }
        if let Some(&size) = max_sizes
            .iter()
            .find(|s| !s.is_power_of_two() || **s > 32768)
        {
            return Err(TransportError::QueueSize { name, size });
        }
        let device_type = device.device_type();
        let mut config = ConfigSpace::new(&PciHeader {
            vendor_id: VIRTIO_VENDOR_ID,
            device_id: MODERN_DEVICE_ID_BASE + device_type as u16,
            class_code: class_code(device_type),
            revision: 1,
            subsystem_vendor_id: VIRTIO_VENDOR_ID,
            subsystem_id: 0x1100,
            interrupt_pin: 1,
        });
        config.add_bar(
            BAR_INDEX,
            BarKind::Memory64 {
                prefetchable: false,
            },
            BAR_SIZE,
        )?;
        let queue_count = max_sizes.len();
        let notify_len = queue_count as u32 * NOTIFY_MULTIPLIER;
        for (cfg_type, offset, len) in [
            (cap_type::COMMON, COMMON_OFFSET, COMMON_LEN as u32),
            (cap_type::ISR, ISR_OFFSET, ISR_LEN as u32),
            (cap_type::DEVICE, DEVICE_OFFSET, DEVICE_LEN as u32),
        ] {
            config.add_capability(
                CAP_ID_VENDOR,
                &virtio_cap(cfg_type, offset as u32, len, 16),
                &[],
            )?;
        }
        let mut notify = virtio_cap(cap_type::NOTIFY, NOTIFY_OFFSET as u32, notify_len, 20);
        notify.extend_from_slice(&NOTIFY_MULTIPLIER.to_le_bytes());
        config.add_capability(CAP_ID_VENDOR, &notify, &[])?;
        // The PCI configuration access window: bar, offset, length and data are writable.
        let mut pci_cfg = virtio_cap(cap_type::PCI_CFG, 0, 0, 20);
        pci_cfg.extend_from_slice(&[0; 4]);
        let mut pci_cfg_mask = vec![0u8; pci_cfg.len()];
        pci_cfg_mask[2] = 0xff;
        pci_cfg_mask[6..18].fill(0xff);
        let pci_cfg_cap = config.add_capability(CAP_ID_VENDOR, &pci_cfg, &pci_cfg_mask)?;

        let vectors = msi.allocate_vectors((queue_count + 1).min(MAX_VECTORS))?;
        let msix = Msix::new(vectors);
        let (body, mask) = msix.capability(
            BAR_INDEX as u8,
            MSIX_TABLE_OFFSET as u32,
            BAR_INDEX as u8,
            MSIX_PBA_OFFSET as u32,
        );
        let msix_cap = config.add_capability(CAP_ID_MSIX, &body, &mask)?;
        let msix = Arc::new(Mutex::new(msix));

        let status = Arc::new(AtomicU8::new(0));
        let interrupt = Arc::new(VirtioInterrupt::new(
            msix.clone(),
            queue_count,
            status.clone(),
        ));
        let doorbells = (0..queue_count)
            .map(|_| EventFd::new(libc::EFD_NONBLOCK))
            .collect::<Result<Vec<_>, _>>()?;
        let device_features = device.features() | features::VERSION_1;
        Ok(Self {
            name,
            config,
            device,
            memory,
            msix,
            msix_cap,
            pci_cfg_cap,
            interrupt,
            status,
            device_features,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            queue_select: 0,
            queues: max_sizes.into_iter().map(QueueRegisters::new).collect(),
            doorbells,
            registry,
            bar_address: None,
            config_generation: 0,
            active: false,
            worker: None,
        })
    }

    /// The interrupt state, shared with the device's workers.
    pub fn interrupt(&self) -> Arc<VirtioInterrupt> {
        self.interrupt.clone()
    }

    fn selected_queue(&mut self) -> Option<&mut QueueRegisters> {
        self.queues.get_mut(usize::from(self.queue_select))
    }

    /// The common configuration registers as the driver reads them.
    fn common_image(&self) -> [u8; COMMON_LEN as usize] {
        let mut image = [0u8; COMMON_LEN as usize];
        let mut put = |offset: u64, bytes: &[u8]| {
            image[offset as usize..offset as usize + bytes.len()].copy_from_slice(bytes)
        };
        put(
            common::DEVICE_FEATURE_SELECT,
            &self.device_feature_select.to_le_bytes(),
        );
        let features = match self.device_feature_select {
            0 => self.device_features as u32,
            1 => (self.device_features >> 32) as u32,
            _ => 0,
        };
        put(common::DEVICE_FEATURE, &features.to_le_bytes());
        put(
            common::DRIVER_FEATURE_SELECT,
            &self.driver_feature_select.to_le_bytes(),
        );
        let driver = match self.driver_feature_select {
            0 => self.driver_features as u32,
            1 => (self.driver_features >> 32) as u32,
            _ => 0,
        };
        put(common::DRIVER_FEATURE, &driver.to_le_bytes());
        put(
            common::CONFIG_MSIX_VECTOR,
            &self.interrupt.config_vector().to_le_bytes(),
        );
        put(
            common::NUM_QUEUES,
            &(self.queues.len() as u16).to_le_bytes(),
        );
        put(
            common::DEVICE_STATUS,
            &[self.status.load(Ordering::Acquire)],
        );
        put(common::CONFIG_GENERATION, &[self.config_generation]);
        put(common::QUEUE_SELECT, &self.queue_select.to_le_bytes());
        if let Some(queue) = self.queues.get(usize::from(self.queue_select)) {
            put(common::QUEUE_SIZE, &queue.size.to_le_bytes());
            put(
                common::QUEUE_MSIX_VECTOR,
                &self.interrupt.queue_vector(self.queue_select).to_le_bytes(),
            );
            put(
                common::QUEUE_ENABLE,
                &u16::from(queue.enabled).to_le_bytes(),
            );
            put(common::QUEUE_NOTIFY_OFF, &self.queue_select.to_le_bytes());
            put(common::QUEUE_DESC, &queue.desc.to_le_bytes());
            put(common::QUEUE_DRIVER, &queue.driver.to_le_bytes());
            put(common::QUEUE_DEVICE, &queue.device.to_le_bytes());
        }
        image
    }

    fn read_common(&self, offset: u64, data: &mut [u8]) {
        let image = self.common_image();
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = image.get(offset as usize + i).copied().unwrap_or(0);
        }
    }

    fn write_common(&mut self, offset: u64, data: &[u8]) {
        let value = crate::bus::read_le(data);
        match (offset, data.len()) {
            (common::DEVICE_FEATURE_SELECT, 4) => self.device_feature_select = value as u32,
            (common::DRIVER_FEATURE_SELECT, 4) => self.driver_feature_select = value as u32,
            (common::DRIVER_FEATURE, 4) => self.write_driver_features(value as u32),
            (common::CONFIG_MSIX_VECTOR, 2) => {
                let vector = self.checked_vector(value as u16);
                self.interrupt.set_config_vector(vector);
            }
            (common::DEVICE_STATUS, 1) => self.write_status(value as u8),
            (common::QUEUE_SELECT, 2) => self.queue_select = value as u16,
            (common::QUEUE_SIZE, 2) => {
                if let Some(queue) = self.selected_queue().filter(|q| !q.enabled) {
                    queue.size = value as u16;
                }
            }
            (common::QUEUE_MSIX_VECTOR, 2) => {
                let vector = self.checked_vector(value as u16);
                let index = self.queue_select;
                if usize::from(index) < self.queues.len() {
                    self.interrupt.set_queue_vector(index, vector);
                }
            }
            (common::QUEUE_ENABLE, 2) => {
                if let Some(queue) = self.selected_queue() {
                    // Only 1 may be written; a queue is disabled by resetting the device.
                    if value == 1 {
                        queue.enabled = true;
                    }
                }
            }
            (common::QUEUE_DESC..=0x37, 4 | 8) => {
                self.write_queue_address(offset, data.len(), value)
            }
            _ => log::debug!(
                "{}: ignored {}-byte write of {value:#x} at common config {offset:#x}",
                self.name,
                data.len()
            ),
        }
    }

    /// A vector the driver may use: one that exists, or NO_VECTOR (which the driver reads back
    /// to learn that its choice failed).
    fn checked_vector(&self, vector: u16) -> u16 {
        if vector != NO_VECTOR && self.interrupt.vector_exists(vector) {
            vector
        } else {
            NO_VECTOR
        }
    }

    fn write_driver_features(&mut self, value: u32) {
        if self.status.load(Ordering::Acquire) & status::FEATURES_OK != 0 {
            log::debug!("{}: feature write after FEATURES_OK ignored", self.name);
            return;
        }
        let shift = match self.driver_feature_select {
            0 => 0,
            1 => 32,
            _ => return,
        };
        self.driver_features =
            (self.driver_features & !(0xffff_ffffu64 << shift)) | (u64::from(value) << shift);
    }

    fn write_queue_address(&mut self, offset: u64, len: usize, value: u64) {
        let Some(queue) = self.selected_queue().filter(|q| !q.enabled) else {
            return;
        };
        let (field, high) = match offset {
            0x20 | 0x24 => (&mut queue.desc, offset == 0x24),
            0x28 | 0x2c => (&mut queue.driver, offset == 0x2c),
            0x30 | 0x34 => (&mut queue.device, offset == 0x34),
            _ => return,
        };
        *field = match (len, high) {
            (8, false) => value,
            (4, false) => (*field & !0xffff_ffff) | (value & 0xffff_ffff),
            (4, true) => (*field & 0xffff_ffff) | (value << 32),
            _ => *field,
        };
    }

    fn write_status(&mut self, value: u8) {
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.status.load(Ordering::Acquire);
        let mut new = value | (old & status::DEVICE_NEEDS_RESET);
        if new & status::FEATURES_OK != 0 && old & status::FEATURES_OK == 0 {
            let unknown = self.driver_features & !self.device_features;
            if unknown != 0 || self.driver_features & features::VERSION_1 == 0 {
                log::warn!(
                    "{}: driver features {:#x} refused (device offers {:#x}; VERSION_1 is required)",
                    self.name,
                    self.driver_features,
                    self.device_features
                );
                new &= !status::FEATURES_OK;
            }
        }
        self.status.store(new, Ordering::Release);
        if new & status::DRIVER_OK != 0
            && new & status::FEATURES_OK != 0
            && new & status::FAILED == 0
            && !self.active
        {
            self.activate();
        }
    }

    fn activate(&mut self) {
        match self.ready_queues() {
            Ok(queues) => {
                let activation = Activation {
                    memory: self.memory.clone(),
                    features: self.driver_features,
                    queues,
                    interrupt: self.interrupt.clone(),
                };
                let started = self
                    .device
                    .activate(activation)
                    .and_then(|service| Ok(service.spawn(&self.name)?));
                match started {
                    Ok(worker) => {
                        self.worker = Some(worker);
                        self.active = true;
                        log::debug!(
                            "{}: activated, features {:#x}",
                            self.name,
                            self.driver_features
                        );
                    }
                    Err(e) => {
                        log::warn!("{}: cannot start: {e}", self.name);
                        self.interrupt.set_needs_reset();
                    }
                }
            }
            Err(e) => {
                log::warn!("{}: driver set up an unusable queue: {e}", self.name);
                self.interrupt.set_needs_reset();
            }
        }
    }

    /// Turns the enabled queues' registers into checked queues.
    fn ready_queues(&self) -> Result<Vec<ReadyQueue>, String> {
        let event_idx = self.driver_features & features::RING_EVENT_IDX != 0;
        let mut ready = Vec::new();
        for (index, regs) in self.queues.iter().enumerate() {
            if !regs.enabled {
                continue;
            }
            let layout = QueueLayout {
                max_size: regs.max_size,
                size: regs.size,
                desc: GuestAddress(regs.desc),
                avail: GuestAddress(regs.driver),
                used: GuestAddress(regs.device),
            };
            let queue = ready_queue(layout, event_idx, &self.memory)
                .map_err(|e| format!("queue {index}: {e}"))?;
            ready.push(ReadyQueue {
                index: index as u16,
                queue,
                doorbell: self.doorbells[index]
                    .try_clone()
                    .map_err(|e| e.to_string())?,
            });
        }
        Ok(ready)
    }

    /// Stops the worker, which drops the queues, then lets the device forget the activation.
    fn stop_device(&mut self) {
        if let Some(mut worker) = self.worker.take() {
            worker.stop();
        }
        if self.active {
            self.device.reset();
            self.active = false;
        }
    }

    fn reset(&mut self) {
        self.stop_device();
        self.status.store(0, Ordering::Release);
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.queue_select = 0;
        for queue in &mut self.queues {
            *queue = QueueRegisters::new(queue.max_size);
        }
        for doorbell in &self.doorbells {
            let _ = doorbell.read();
        }
        self.interrupt.reset();
    }

    fn register_doorbells(&self, base: u64, register: bool) {
        for (index, doorbell) in self.doorbells.iter().enumerate() {
            let address = base + NOTIFY_OFFSET + index as u64 * u64::from(NOTIFY_MULTIPLIER);
            let result = if register {
                self.registry.register(address, doorbell)
            } else {
                self.registry.unregister(address, doorbell)
            };
            if let Err(e) = result {
                // The bus path still delivers the notification, just through the vCPU.
                log::warn!("{}: doorbell at {address:#x}: {e}", self.name);
            }
        }
    }

    /// The pci_cfg capability's window: which BAR bytes it points at, if valid.
    fn pci_cfg_target(&self) -> Option<(u64, usize)> {
        let cap = self.pci_cfg_cap;
        let bar = self.config.u8_at(cap + 4);
        let offset = u64::from(self.config.u32_at(cap + 8));
        let len = self.config.u32_at(cap + 12) as usize;
        (usize::from(bar) == BAR_INDEX
            && matches!(len, 1 | 2 | 4)
            && offset + len as u64 <= BAR_SIZE)
            .then_some((offset, len))
    }
}

/// The body of a virtio vendor capability after its ID and next pointer.
fn virtio_cap(cfg_type: u8, offset: u32, length: u32, cap_len: u8) -> Vec<u8> {
    let mut body = vec![cap_len, cfg_type, BAR_INDEX as u8, 0, 0, 0];
    body.extend_from_slice(&offset.to_le_bytes());
    body.extend_from_slice(&length.to_le_bytes());
    body
}

fn class_code(device_type: u32) -> u32 {
    match device_type {
        super::device_type::BLOCK => 0x01_00_00,
        super::device_type::NET => 0x02_00_00,
        super::device_type::GPU => 0x03_80_00,
        super::device_type::INPUT => 0x09_80_00,
        super::device_type::SOUND => 0x04_01_00,
        _ => 0xff_00_00,
    }
}

impl PciDevice for VirtioPciDevice {
    fn name(&self) -> &str {
        &self.name
    }

    fn config(&self) -> &ConfigSpace {
        &self.config
    }

    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.config
    }

    fn config_read(&mut self, offset: usize, data: &mut [u8]) {
        self.config.read(offset, data);
        let window = self.pci_cfg_cap + 18;
        if offset == window {
            if let Some((bar_offset, len)) = self.pci_cfg_target() {
                let n = len.min(data.len());
                self.bar_read(BAR_INDEX, bar_offset, &mut data[..n]);
            }
        }
    }

    fn config_written(&mut self, offset: usize, len: usize) {
        let touches = |start: usize, end: usize| offset < end && offset + len > start;
        if touches(self.msix_cap + 2, self.msix_cap + 4) {
            let control = self.config.u16_at(self.msix_cap + 2);
            self.msix.lock().set_control(control);
        }
        if touches(config_space::COMMAND, config_space::COMMAND + 2) {
            self.interrupt
                .set_intx_disabled(self.config.intx_disabled());
        }
        let window = self.pci_cfg_cap + 18;
        if offset == window {
            if let Some((bar_offset, window_len)) = self.pci_cfg_target() {
                let mut data = [0u8; 4];
                self.config.read(window, &mut data);
                let n = window_len.min(len);
                self.bar_write(BAR_INDEX, bar_offset, &data[..n]);
            }
        }
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if bar != BAR_INDEX {
            data.fill(0xff);
            return;
        }
        match offset {
            o if o < COMMON_OFFSET + COMMON_LEN => self.read_common(o, data),
            o if (ISR_OFFSET..ISR_OFFSET + ISR_LEN).contains(&o) => {
                data.fill(0);
                data[0] = self.interrupt.read_isr();
            }
            o if (DEVICE_OFFSET..DEVICE_OFFSET + DEVICE_LEN).contains(&o) => {
                self.device.read_config(o - DEVICE_OFFSET, data)
            }
            o if (MSIX_TABLE_OFFSET..MSIX_PBA_OFFSET).contains(&o) => {
                self.msix.lock().read_table(o - MSIX_TABLE_OFFSET, data)
            }
            o if (MSIX_PBA_OFFSET..BAR_SIZE).contains(&o) => {
                self.msix.lock().read_pba(o - MSIX_PBA_OFFSET, data)
            }
            _ => data.fill(0),
        }
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar != BAR_INDEX {
            return;
        }
        match offset {
            o if o < COMMON_OFFSET + COMMON_LEN => self.write_common(o, data),
            o if (DEVICE_OFFSET..DEVICE_OFFSET + DEVICE_LEN).contains(&o) => {
                self.device.write_config(o - DEVICE_OFFSET, data)
            }
            o if (NOTIFY_OFFSET..MSIX_TABLE_OFFSET).contains(&o) => {
                let index = ((o - NOTIFY_OFFSET) / u64::from(NOTIFY_MULTIPLIER)) as usize;
                match self.doorbells.get(index) {
                    Some(doorbell) => {
                        if let Err(e) = doorbell.write(1) {
                            log::warn!("{}: doorbell {index}: {e}", self.name);
                        }
                    }
                    None => log::debug!(
                        "{}: notify of queue {index}, which does not exist",
                        self.name
                    ),
                }
            }
            o if (MSIX_TABLE_OFFSET..MSIX_PBA_OFFSET).contains(&o) => {
                self.msix.lock().write_table(o - MSIX_TABLE_OFFSET, data)
            }
            _ => log::debug!("{}: ignored write at BAR offset {offset:#x}", self.name),
        }
    }

    fn bar_mapped(&mut self, bar: usize, address: Option<u64>) {
        if bar != BAR_INDEX {
            return;
        }
        if let Some(old) = self.bar_address.take() {
            self.register_doorbells(old, false);
        }
        if let Some(new) = address {
            self.register_doorbells(new, true);
            self.bar_address = Some(new);
        }
    }

    fn attach_intx(&mut self, line: SharedLine) {
        self.interrupt.attach_intx(line);
    }
}

impl Drop for VirtioPciDevice {
    fn drop(&mut self) {
        self.stop_device();
    }
}
