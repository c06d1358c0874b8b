//! QMP, QEMU's JSON control protocol, over a Unix socket: enough of it that stock QMP clients
//! (`qemu.qmp`, `socat`, scripts written for QEMU) drive a Cove VM unchanged.

mod client;
pub mod framing;
pub mod server;
pub mod session;
pub mod strict_json;

pub use server::{QmpServer, MAX_CLIENTS, NEGOTIATION_TIMEOUT};
pub use session::{QmpTarget, Session};
