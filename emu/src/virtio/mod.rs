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
    pub const NET: u32 = ids::VIRTIO_ID_NET;
    pub const BLOCK: u32 = ids::VIRTIO_ID_BLOCK;
    pub const CONSOLE: u32 = ids::VIRTIO_ID_CONSOLE;
    pub const RNG: u32 = ids::VIRTIO_ID_RNG;
    pub const GPU: u32 = ids::VIRTIO_ID_GPU;
    pub const INPUT: u32 = ids::VIRTIO_ID_INPUT;
    pub const SOUND: u32 = ids::VIRTIO_ID_SOUND;
}

/// Feature bits shared by all devices, as masks of the bit numbers `virtio-bindings` names.
pub mod features {
    use virtio_bindings::{virtio_config, virtio_ring};
    pub const RING_INDIRECT_DESC: u64 = 1 << virtio_ring::VIRTIO_RING_F_INDIRECT_DESC;
    pub const RING_EVENT_IDX: u64 = 1 << virtio_ring::VIRTIO_RING_F_EVENT_IDX;
    pub const VERSION_1: u64 = 1 << virtio_config::VIRTIO_F_VERSION_1;
}

/// Device status bits, from `virtio-bindings` (which types them u32; the register is a byte).
pub mod status {
    use virtio_bindings::virtio_config as c;
    pub const ACKNOWLEDGE: u8 = c::VIRTIO_CONFIG_S_ACKNOWLEDGE as u8;
    pub const DRIVER: u8 = c::VIRTIO_CONFIG_S_DRIVER as u8;
    pub const DRIVER_OK: u8 = c::VIRTIO_CONFIG_S_DRIVER_OK as u8;
    pub const FEATURES_OK: u8 = c::VIRTIO_CONFIG_S_FEATURES_OK as u8;
    pub const DEVICE_NEEDS_RESET: u8 = c::VIRTIO_CONFIG_S_NEEDS_RESET as u8;
    pub const FAILED: u8 = c::VIRTIO_CONFIG_S_FAILED as u8;
}

/// A queue the driver enabled, ready for a worker.
pub struct ReadyQueue {
    pub index: u16,
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
    pub memory: GuestMemoryMmap,
    /// The features the driver accepted.
    pub features: u64,
    /// The enabled queues, in index order.
    pub queues: Vec<ReadyQueue>,
    pub interrupt: std::sync::Arc<VirtioInterrupt>,
}

/// Why a device could not start.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("queue {0} is required but the driver did not enable it")]
    MissingQueue(u16),
    #[error("cannot start the worker: {0}")]
    Worker(#[from] std::io::Error),
}

/// A virtio device model, independent of transport and hypervisor.
pub trait VirtioDevice: Send {
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
