//! QMP, QEMU's JSON control protocol, over a Unix socket: enough of it that stock QMP clients
//! (`qemu.qmp`, `socat`, scripts written for QEMU) drive a Cove VM unchanged.

pub mod framing;
pub mod server;
pub mod session;

pub use server::QmpServer;
pub use session::{QmpTarget, Session};
