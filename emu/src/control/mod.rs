//! The control plane of a running VM: one API ([`VmController`]) for commands and queries, and
//! the events the VM emits. The GUI uses it in-process; [`qmp`] exposes it on a QMP socket.

pub mod controller;
pub mod events;
pub mod qmp;

pub use controller::{BlockInfo, CpuInfo, VmController, VmStatus};
pub use events::{EventBus, ShutdownReason, TimedEvent, VmEvent};
