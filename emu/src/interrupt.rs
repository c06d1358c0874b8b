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
