//! The link between the app and a VM process (`cove vm-host`): a typed protocol beside QMP
//! that carries what QMP has no words for — the screen (a memfd the VM process draws into and
//! the app maps read-only, plus dirty rectangles and the cursor), input events, the serial
//! console both ways, status changes, and the few commands the VM tab's toolbar gives.
//!
//! Each message is one datagram ([`socket`]) encoded by [`message`] on [`wire`]. Both ends
//! treat the other as untrusted: a message that does not decode, an oversized one or a
//! descriptor where none belongs is an error, logged, never a panic; the app also never waits
//! on a VM process from its UI thread.

pub mod message;
pub mod socket;
pub mod wire;

pub use message::{Command, DebugAction, ToGui, ToVm};
pub use socket::{LinkListener, LinkSocket, Received};

/// The version both ends speak; a VM process of another version is refused.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest message either end sends or accepts.
pub const MAX_MESSAGE_BYTES: usize = 64 << 10;

/// The most input events one message carries.
pub const MAX_INPUT_EVENTS: usize = 256;

/// The most serial bytes one message carries.
pub const MAX_SERIAL_CHUNK: usize = 16 << 10;

/// Why a link message could not be sent or read.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The bytes do not form a message.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// Longer than [`MAX_MESSAGE_BYTES`].
    #[error("a message of {0} bytes is larger than the link allows")]
    TooLarge(usize),
    /// The peer did not answer, or had no room, in time.
    #[error("the other end did not answer in time")]
    TimedOut,
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
