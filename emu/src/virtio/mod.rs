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

/// Device types (virtio 1.2, section 5).
pub mod device_type {
    pub const NET: u32 = 1;
    pub const BLOCK: u32 = 2;
    pub const CONSOLE: u32 = 3;
    pub const RNG: u32 = 4;
    pub const GPU: u32 = 16;
    pub const INPUT: u32 = 18;
    pub const SOUND: u32 = 25;
}

/// Feature bits shared by all devices.
pub mod features {
    pub const RING_INDIRECT_DESC: u64 = 1 << 28;
    pub const RING_EVENT_IDX: u64 = 1 << 29;
    pub const VERSION_1: u64 = 1 << 32;
}

/// Device status bits.
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const DEVICE_NEEDS_RESET: u8 = 0x40;
    pub const FAILED: u8 = 0x80;
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

/// A driver read of a device config space kept as bytes; bytes past its end read as zero.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte = usize::try_from(offset)
            .ok()
            .and_then(|o| config.get(o.checked_add(i)?))
            .copied()
            .unwrap_or(0);
    }
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
