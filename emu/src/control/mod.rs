//! The control plane of a running VM: one API ([`VmController`]) for commands and queries, and
//! the events the VM emits. The GUI uses it in-process; [`qmp`] exposes it on a QMP socket,
//! created by [`secure_path`] so that no other user can reach it.

pub mod controller;
pub mod events;
pub mod qmp;
pub mod secure_path;

pub use controller::{BlockInfo, CpuInfo, VmController, VmStatus, PAUSE_TIMEOUT};
pub use events::{EventBus, ShutdownReason, TimedEvent, VmEvent};
