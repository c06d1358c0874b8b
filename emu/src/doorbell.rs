//! Doorbells: guest writes to a device register that must wake a worker thread.
//!
//! A device owns one eventfd per doorbell and signals it itself when the write reaches it
//! through the bus. When the hypervisor can match the write in the kernel (KVM ioeventfd), the
//! device registers the doorbell here and the vCPU never leaves the guest for it; the worker
//! sees the same eventfd either way.

use vmm_sys_util::eventfd::EventFd;

/// Why the hypervisor did not take (or give back) a doorbell. The device still works: the
/// write then reaches it through the bus.
#[derive(Debug, thiserror::Error)]
pub enum DoorbellError {
    /// KVM refused the ioeventfd for `address` (`KVM_IOEVENTFD`).
    #[error("cannot match writes to {address:#x} in the hypervisor: {source}")]
    Register {
        /// Guest-physical MMIO address of the doorbell register.
        address: u64,
        /// The ioctl's error.
        source: std::io::Error,
    },
    /// KVM refused to remove the ioeventfd for `address`.
    #[error("cannot stop matching writes to {address:#x} in the hypervisor: {source}")]
    Unregister {
        /// Guest-physical MMIO address of the doorbell register.
        address: u64,
        /// The ioctl's error.
        source: std::io::Error,
    },
}

/// Registers MMIO doorbells with the hypervisor.
pub trait DoorbellRegistry: Send + Sync {
    /// From now on, any write to `address` signals `event` without reaching the device.
    fn register(&self, address: u64, event: &EventFd) -> Result<(), DoorbellError>;
    /// Undoes [`DoorbellRegistry::register`].
    fn unregister(&self, address: u64, event: &EventFd) -> Result<(), DoorbellError>;
}

/// No in-kernel matching: every doorbell write reaches the device through the bus (device
/// tests, and hypervisors without ioeventfd).
pub struct BusDoorbells;

impl DoorbellRegistry for BusDoorbells {
    fn register(&self, _address: u64, _event: &EventFd) -> Result<(), DoorbellError> {
        Ok(())
    }
    fn unregister(&self, _address: u64, _event: &EventFd) -> Result<(), DoorbellError> {
        Ok(())
    }
}
