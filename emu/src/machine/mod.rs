//! A running VM: built from a [`crate::config::VmConfig`] top to bottom in [`builder`], run by
//! [`runner`], and kept alive across guest reboots by [`Vm`], which owns the lifecycle and
//! publishes its status and events in a [`VmReport`]. Nothing here knows the control plane.

pub mod builder;
pub mod console;
pub mod display_port;
pub mod events;
pub mod pci_devices;
pub mod report;
pub mod runner;
mod vm;

pub use builder::{build_machine, BuildError, Machine};
pub use console::ConsoleOutput;
pub use events::{MachineEvent, RunOutcome, VmExit};
pub use report::{ShutdownReason, TimedEvent, VmEvent, VmReport, VmStatus};
pub use vm::{Vm, VmHandle, VmStatistics};
