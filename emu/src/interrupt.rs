//! Interrupt lines as devices see them.
//!
//! Devices raise interrupts through [`InterruptLine`] and never talk to the hypervisor; the
//! machine hands each device a line backed by KVM (or, in device tests, by a recorder).

use std::sync::Arc;

/// One interrupt input of the platform interrupt controllers (a GSI).
pub trait InterruptLine: Send + Sync {
    /// Drives a level-triggered line high or low.
    fn set_level(&self, high: bool);
    /// Signals an edge: the line goes high and low again.
    fn pulse(&self) {
        self.set_level(true);
        self.set_level(false);
    }
}

/// A shared interrupt line.
pub type SharedLine = Arc<dyn InterruptLine>;

/// An interrupt line that goes nowhere, for devices whose interrupt is not wired.
pub struct NoLine;

impl InterruptLine for NoLine {
    fn set_level(&self, _high: bool) {}
}

/// A message-signalled interrupt: a write of `data` to `address` (the LAPIC's MSI window).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsiMessage {
    /// Guest-physical address the message is written to, normally in 0xfee0_0000..0xfeef_ffff.
    pub address: u64,
    /// The 32-bit value written; on x86 it carries the vector and delivery mode.
    pub data: u32,
}

/// One MSI vector of a device. The device's MSI-X logic decides when it fires (masking,
/// pending bits); the vector only delivers. Under KVM it is an irqfd with a GSI route, so a
/// worker thread fires it with one eventfd write; in device tests it is a recorder.
pub trait MsiVector: Send + Sync {
    /// Sets the message this vector sends; the guest programmed it.
    fn configure(&self, message: MsiMessage);
    /// Sends the configured message.
    fn trigger(&self);
}

/// Why MSI vectors could not be allocated.
#[derive(Debug, thiserror::Error)]
pub enum MsiError {
    /// The hypervisor's GSI routing table is full.
    #[error("the hypervisor allows at most {max} interrupt routes")]
    TooManyRoutes {
        /// The hypervisor's limit on GSI routes.
        max: u32,
    },
    /// Creating the vector's eventfd failed.
    #[error("cannot create the eventfd of an MSI vector: {0}")]
    EventFd(#[source] std::io::Error),
    /// KVM refused to bind the vector's eventfd to its GSI (`KVM_IRQFD`).
    #[error("cannot bind GSI {gsi} to its eventfd: {source}")]
    Bind {
        /// The GSI the vector was routed through.
        gsi: u32,
        /// The ioctl's error.
        source: std::io::Error,
    },
}

/// Where devices get MSI vectors from.
pub trait MsiController: Send + Sync {
    /// `count` fresh vectors.
    fn allocate_vectors(&self, count: usize) -> Result<Vec<Arc<dyn MsiVector>>, MsiError>;
}

/// MSI delivery for machines without MSI (vectors that never fire).
pub struct NoMsi;

impl MsiController for NoMsi {
    fn allocate_vectors(&self, count: usize) -> Result<Vec<Arc<dyn MsiVector>>, MsiError> {
        Ok((0..count)
            .map(|_| Arc::new(NoMsiVector) as Arc<dyn MsiVector>)
            .collect())
    }
}

struct NoMsiVector;

impl MsiVector for NoMsiVector {
    fn configure(&self, _message: MsiMessage) {}
    fn trigger(&self) {}
}
