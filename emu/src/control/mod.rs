//! The control plane of a running VM: one API ([`VmController`]) for commands and queries, the
//! events the VM emits (owned by [`crate::machine::report`]: control depends on the machine,
//! never the other way round), and [`screendump`]s. The GUI uses it in-process; [`qmp`]
//! exposes it on a QMP socket, created by [`secure_path`] so that no other user can reach it.

pub mod controller;
pub mod link;
pub mod qmp;
pub mod screendump;
pub mod secure_path;

/// The machine owns its status and events; the control plane passes them on.
pub use crate::machine::report::{EventBus, ShutdownReason, TimedEvent, VmEvent, VmStatus};
pub use controller::{BlockInfo, CpuInfo, VmController, PAUSE_TIMEOUT};
pub use screendump::ImageFormat;
