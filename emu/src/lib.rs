//! Cove's emulator core.
//!
//! `emu` builds and runs x86_64 virtual machines on Linux KVM. It knows nothing of windows, sound
//! servers or USB hosts: host-facing crates plug in through the small traits defined here.
//!
//! Layout (see `docs/ARCHITECTURE.md`), one line per module:
//! - [`config`]: the serializable description of a VM.
//! - [`machine`]: builds a VM from a config, owns its lifecycle, publishes status and events.
//! - [`control`]: the control plane over a machine: the VM controller, QMP, screendumps.
//! - [`hypervisor`]: KVM VM and vCPU wrappers, vCPU threads, exit dispatch, emulation failures.
//! - [`arch`]: the x86_64 boot protocol, page tables, CPUID, ACPI tables.
//! - [`memory`]: guest RAM, its layout around the 32-bit MMIO hole, and its allocation.
//! - [`bus`]: port-I/O and MMIO address spaces.
//! - [`interrupt`]: interrupt lines and MSI vectors as devices see them.
//! - [`doorbell`]: guest register writes that wake device workers (KVM ioeventfds or the bus).
//! - [`devices`]: legacy platform devices (serial, PIT, CMOS, i8042, ACPI PM, reset, debug port).
//! - [`pci`]: the PCI root bus, configuration spaces, BAR placement and MSI-X.
//! - [`virtio`]: the virtio PCI transport, queue service and devices (blk, gpu, input, rng).
//! - [`block`]: disk image backends behind one trait: opening, locking, I/O, discard.
//! - [`scanout`]: what a display device shows, and the sink a host display implements.
//! - [`host`]: facts about the host (KVM flavour, CPUs, memory) and the host profile.
//! - `harness` (feature `harness`, and in tests): a CPU-less machine for device tests.
//! - `testing` (tests only): test doubles shared by device unit tests.

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
pub mod threads;
pub mod virtio;
