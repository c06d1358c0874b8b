//! Virtio: the modern PCI transport and the devices behind it.
//!
//! A device model implements [`VirtioDevice`]: it declares its features, queues and config
//! space, and on activation turns its queues, guest memory and interrupt handle into a
//! [`worker::Service`]. The transport runs that service on a worker thread and drops it (with
//! the queues) on reset, the same way for every device. The transport ([`pci::VirtioPciDevice`]) does everything
//! the spec puts between driver and device: feature negotiation, the status state machine,
//! queue set-up, doorbells and MSI-X/INTx.

pub mod block;
pub mod chain;
pub mod gpu;
pub mod input;
pub mod interrupt;
pub mod pci;
pub mod queue_service;
pub mod rng;
pub mod worker;

pub use interrupt::VirtioInterrupt;
pub use worker::Service;

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Device types (virtio 1.2, section 5), from `virtio-bindings`.
pub mod device_type {
    use virtio_bindings::virtio_ids as ids;
    /// Network card (type 1).
    pub const NET: u32 = ids::VIRTIO_ID_NET;
    /// Block device (type 2).
    pub const BLOCK: u32 = ids::VIRTIO_ID_BLOCK;
    /// Console (type 3).
    pub const CONSOLE: u32 = ids::VIRTIO_ID_CONSOLE;
    /// Entropy source (type 4).
    pub const RNG: u32 = ids::VIRTIO_ID_RNG;
    /// GPU device (type 16).
    pub const GPU: u32 = ids::VIRTIO_ID_GPU;
    /// Input device (type 18).
    pub const INPUT: u32 = ids::VIRTIO_ID_INPUT;
    /// Sound device (type 25).
    pub const SOUND: u32 = ids::VIRTIO_ID_SOUND;
}

/// Feature bits shared by all devices, as masks of the bit numbers `virtio-bindings` names.
pub mod features {
    use virtio_bindings::{virtio_config, virtio_ring};
    /// `VIRTIO_F_RING_INDIRECT_DESC` (bit 28): descriptors may point to indirect tables.
    pub const RING_INDIRECT_DESC: u64 = 1 << virtio_ring::VIRTIO_RING_F_INDIRECT_DESC;
    /// `VIRTIO_F_RING_EVENT_IDX` (bit 29): `used_event`/`avail_event` suppress notifications.
    pub const RING_EVENT_IDX: u64 = 1 << virtio_ring::VIRTIO_RING_F_EVENT_IDX;
    /// `VIRTIO_F_VERSION_1` (bit 32): virtio 1.x, not legacy; the transport always offers it.
    pub const VERSION_1: u64 = 1 << virtio_config::VIRTIO_F_VERSION_1;
}

/// Device status bits, from `virtio-bindings` (which types them u32; the register is a byte).
pub mod status {
    use virtio_bindings::virtio_config as c;
    /// Status bit 1: the guest found the device.
    pub const ACKNOWLEDGE: u8 = c::VIRTIO_CONFIG_S_ACKNOWLEDGE as u8;
    /// Status bit 2: the guest has a driver for it.
    pub const DRIVER: u8 = c::VIRTIO_CONFIG_S_DRIVER as u8;
    /// Status bit 4: the driver is set up; the device may use its queues.
    pub const DRIVER_OK: u8 = c::VIRTIO_CONFIG_S_DRIVER_OK as u8;
    /// Status bit 8: the driver accepted the features; reads back clear if the device refused.
    pub const FEATURES_OK: u8 = c::VIRTIO_CONFIG_S_FEATURES_OK as u8;
    /// Status bit 64: the device hit an error and needs a reset.
    pub const DEVICE_NEEDS_RESET: u8 = c::VIRTIO_CONFIG_S_NEEDS_RESET as u8;
    /// Status bit 128: the driver gave up on the device.
    pub const FAILED: u8 = c::VIRTIO_CONFIG_S_FAILED as u8;
}

/// A queue the driver enabled, ready for a worker.
pub struct ReadyQueue {
    /// The queue's index.
    pub index: u16,
    /// The queue, with the ring addresses and size the driver programmed.
    pub queue: Queue,
    /// Signalled when the driver notifies this queue.
    pub doorbell: EventFd,
}

/// Splits ready queues into the doorbells a [`worker::Worker`] waits on and the (index,
/// queue) pairs its handler serves, in the same order.
pub fn split_queues(queues: Vec<ReadyQueue>) -> (Vec<EventFd>, Vec<(u16, Queue)>) {
    queues
        .into_iter()
        .map(|q| (q.doorbell, (q.index, q.queue)))
        .unzip()
}

/// A driver read of a device config space (a `#[repr(C)]` struct as bytes, see
/// [`read_config_struct`]); bytes past its end read as zero.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte = usize::try_from(offset)
            .ok()
            .and_then(|o| config.get(o.checked_add(i)?))
            .copied()
            .unwrap_or(0);
    }
}

/// A driver read of a device config space laid out as the `#[repr(C)]` struct `config`.
pub fn read_config_struct<T: bytemuck::NoUninit>(config: &T, offset: u64, data: &mut [u8]) {
    read_config_bytes(bytemuck::bytes_of(config), offset, data);
}

/// What a device gets when the driver sets DRIVER_OK.
pub struct Activation {
    /// Guest memory the queues and buffers live in.
    pub memory: GuestMemoryMmap,
    /// The features the driver accepted.
    pub features: u64,
    /// The enabled queues, in index order.
    pub queues: Vec<ReadyQueue>,
    /// Where the device sends used-buffer and config-change interrupts (MSI-X or INTx).
    pub interrupt: std::sync::Arc<VirtioInterrupt>,
}

/// Why a device could not start.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// The device needs this queue, but the driver left it disabled at DRIVER_OK.
    #[error("queue {0} is required but the driver did not enable it")]
    MissingQueue(u16),
    /// The worker thread or its eventfds could not be created.
    #[error("cannot start the worker: {0}")]
    Worker(#[from] std::io::Error),
}

/// A virtio device model, independent of transport and hypervisor.
pub trait VirtioDevice: Send {
    /// The virtio device ID (virtio 1.2 section 5), one of [`device_type`].
    fn device_type(&self) -> u32;
    /// A short name for logs.
    fn name(&self) -> &str;
    /// The largest size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> Vec<u16>;
    /// Device feature bits ([`features::VERSION_1`] is added by the transport).
    fn features(&self) -> u64;
    /// Reads the device-specific config space.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device-specific config space (most fields are read-only).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// The driver set DRIVER_OK: say how to serve the queues. The transport runs the returned
    /// service on the device's worker thread.
    fn activate(&mut self, activation: Activation) -> Result<Service, ActivateError>;
    /// The driver reset the device. The transport has already stopped the worker and dropped
    /// the queues; forget anything else tied to the activation.
    fn reset(&mut self) {}
}
