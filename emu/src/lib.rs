//! Cove's emulator core.
//!
//! `emu` builds and runs x86_64 virtual machines on Linux KVM. It knows nothing of windows, sound
//! servers or USB hosts: host-facing crates plug in through the small traits defined here.
//!
//! Layout (see `shared/ARCHITECTURE.md`):
//! - [`config`]: the serializable description of a VM.
//! - [`machine`]: builds a VM from a config, top to bottom, and owns its lifecycle.
//! - [`hypervisor`]: KVM VM and vCPU wrappers, vCPU threads, exit dispatch, emulation failures.
//! - [`arch`]: the x86_64 boot protocol, page tables, CPUID, ACPI tables.
//! - [`bus`]: port-I/O and MMIO address spaces.
//! - [`block`]: disk image backends behind one trait: opening, locking, I/O, discard.
//! - [`devices`]: legacy platform devices.
//! - [`pci`]: the PCI root bus, configuration spaces, BAR placement and MSI-X.
//! - [`host`]: facts about the host (KVM flavour, CPUs, memory) and the host profile.

pub mod arch;
pub mod block;
pub mod bus;
pub mod config;
pub mod control;
pub mod devices;
pub mod doorbell;
#[cfg(any(test, feature = "harness"))]
pub mod harness;
pub mod host;
pub mod hypervisor;
pub mod interrupt;
pub mod machine;
pub mod memory;
pub mod pci;
pub mod scanout;
#[cfg(test)]
pub(crate) mod testing;
pub mod virtio;
