//! What a PCI function looks like to the host bridge: its configuration space, its BARs, and
//! hooks for the moments the guest reprograms them.

use super::config_space::ConfigSpace;
use crate::interrupt::SharedLine;
use parking_lot::Mutex;
use std::sync::Arc;

/// A PCI function on the root bus.
pub trait PciDevice: Send {
    /// A short name for logs ("virtio-blk", "host bridge").
    fn name(&self) -> &str;
    /// The function's configuration space.
    fn config(&self) -> &ConfigSpace;
    /// The function's configuration space, for the root to program (BARs, command).
    fn config_mut(&mut self) -> &mut ConfigSpace;
    /// A guest read of config space. Devices with registers that are computed on access
    /// (windows into a BAR) override this.
    fn config_read(&mut self, offset: usize, data: &mut [u8]) {
        self.config().read(offset, data);
    }
    /// Called after the guest wrote `len` bytes at `offset` of config space (the write has
    /// already been applied through the writable masks), so the device can react to its
    /// capabilities' registers.
    fn config_written(&mut self, _offset: usize, _len: usize) {}
    /// A guest read at `offset` into BAR `bar`.
    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]);
    /// A guest write at `offset` into BAR `bar`.
    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]);
    /// BAR `bar` now decodes at `address`, or (None) no longer decodes. Devices that register
    /// doorbells with the hypervisor move them here.
    fn bar_mapped(&mut self, _bar: usize, _address: Option<u64>) {}
    /// The INTx line the device's interrupt pin is wired to.
    fn attach_intx(&mut self, _line: SharedLine) {}
}

/// A function shared by the host bridge, the buses its BARs are mapped on, and its workers.
pub type SharedPciDevice = Arc<Mutex<dyn PciDevice>>;

/// Bus, device and function numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PciAddress {
    /// Bus number, 0 to 255 (Cove plugs every device into bus 0).
    pub bus: u8,
    /// Device (slot) number, 0 to 31.
    pub device: u8,
    /// Function number, 0 to 7.
    pub function: u8,
}

impl std::fmt::Display for PciAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "0000:{:02x}:{:02x}.{}",
            self.bus, self.device, self.function
        )
    }
}
