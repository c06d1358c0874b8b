//! The VM process's end of the link: at most one attached app, an outgoing queue drained by a
//! writer thread (so no vCPU or device thread ever waits on the app), and the recent serial
//! output, replayed to an app that attaches later.
//!
//! An app that stops reading is detached once [`MAX_QUEUED_BYTES`] wait for it; it can attach
//! again and gets the whole state afresh. A second app that connects while one is attached is
//! told [`ToGui::Busy`].

use emu::control::link::{LinkSocket, ToGui, MAX_SERIAL_CHUNK, PROTOCOL_VERSION};
use emu::control::VmStatus;
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Serial output kept for an app that attaches later.
const SERIAL_BACKLOG: usize = 256 << 10;
/// Bytes waiting for a slow app before it is detached.
pub const MAX_QUEUED_BYTES: usize = 16 << 20;

/// A queued message: encoded, or serial bytes still growing (output arrives a byte at a
/// time; consecutive bytes travel in one message).
enum Outgoing {
    Encoded(Vec<u8>, Option<OwnedFd>),
    Serial(Vec<u8>),
}

impl Outgoing {
    fn len(&self) -> usize {
        match self {
            Self::Encoded(bytes, _) => bytes.len(),
            Self::Serial(bytes) => bytes.len(),
        }
    }
}

struct State {
    /// The attached app and its number (each attach gets a new one).
    peer: Option<(u64, Arc<LinkSocket>)>,
    attaches: u64,
    /// Since when no app has been attached.
    detached_since: Option<Instant>,
    queue: VecDeque<Outgoing>,
    queued_bytes: usize,
    serial: VecDeque<u8>,
    status: VmStatus,
    /// The forwarder must send the whole screen again (a new app attached).
    resend_screen: bool,
    /// The screen changed since the forwarder last looked.
    screen_pending: bool,
    closed: bool,
}

/// Shared by every thread of the VM process that talks to the app.
pub struct Hub {
    state: Mutex<State>,
    wake: Condvar,
    /// Wakes the screen forwarder.
    pub screen_wake: Condvar,
    display: bool,
}

impl Hub {
    /// A hub for a VM with or without a display; no app attached yet.
    pub fn new(display: bool) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                peer: None,
                attaches: 0,
                detached_since: Some(Instant::now()),
                queue: VecDeque::new(),
                queued_bytes: 0,
                serial: VecDeque::new(),
                status: VmStatus::Prelaunch,
                resend_screen: false,
                screen_pending: false,
                closed: false,
            }),
            wake: Condvar::new(),
            screen_wake: Condvar::new(),
            display,
        })
    }

    /// Attaches `socket` as the app, or tells it that another one is attached. Returns the
    /// attach's number when it was taken.
    pub fn attach(&self, socket: LinkSocket) -> Option<u64> {
        let mut state = self.state.lock();
        if state.peer.is_some() || state.closed {
            let _ = socket.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = socket.send(&ToGui::Busy.encode(), None);
            log::warn!("another app tried to attach while one is attached; refused");
            return None;
        }
        state.attaches += 1;
        let number = state.attaches;
        state.peer = Some((number, Arc::new(socket)));
        state.detached_since = None;
        state.queue.clear();
        state.queued_bytes = 0;
        let hello = ToGui::Hello {
            version: PROTOCOL_VERSION,
            pid: std::process::id(),
            display: self.display,
        };
        let status = ToGui::Status(state.status);
        push(&mut state, hello.encode(), None);
        push(&mut state, status.encode(), None);
        let backlog: Vec<u8> = state.serial.iter().copied().collect();
        push_serial(&mut state, &backlog);
        state.resend_screen = true;
        drop(state);
        log::info!("the app attached (link {number})");
        self.wake.notify_all();
        self.screen_wake.notify_all();
        Some(number)
    }

    /// The app of attach `number` went away (its socket closed or failed).
    pub fn detach(&self, number: u64, why: &str) {
        let mut state = self.state.lock();
        if state.peer.as_ref().is_some_and(|(n, _)| *n == number) {
            if let Some((_, socket)) = state.peer.take() {
                socket.shutdown();
            }
            state.detached_since = Some(Instant::now());
            state.queue.clear();
            state.queued_bytes = 0;
            log::info!("the app detached (link {number}): {why}");
        }
    }

    /// Since when no app has been attached (None while one is).
    pub fn detached_since(&self) -> Option<Instant> {
        self.state.lock().detached_since
    }

    /// Whether the forwarder must send the whole screen again; clears the request.
    pub fn take_resend_screen(&self) -> bool {
        std::mem::take(&mut self.state.lock().resend_screen)
    }

    /// Queues `message` (with `fd`) for the attached app; nothing when none is.
    pub fn send(&self, message: &ToGui, fd: Option<OwnedFd>) {
        let mut state = self.state.lock();
        if state.peer.is_none() {
            return;
        }
        push(&mut state, message.encode(), fd);
        if state.queued_bytes > MAX_QUEUED_BYTES {
            let number = state.peer.as_ref().map_or(0, |(n, _)| *n);
            drop(state);
            self.detach(number, "it stopped reading");
            return;
        }
        drop(state);
        self.wake.notify_one();
    }

    /// The VM's status changed.
    pub fn set_status(&self, status: VmStatus) {
        let changed = {
            let mut state = self.state.lock();
            let changed = state.status != status;
            state.status = status;
            changed
        };
        if changed {
            self.send(&ToGui::Status(status), None);
        }
    }

    /// Serial output: kept, and sent to the attached app.
    pub fn serial(&self, bytes: &[u8]) {
        let mut state = self.state.lock();
        state.serial.extend(bytes);
        let excess = state.serial.len().saturating_sub(SERIAL_BACKLOG);
        state.serial.drain(..excess);
        if state.peer.is_none() {
            return;
        }
        push_serial(&mut state, bytes);
        drop(state);
        self.wake.notify_one();
    }

    /// Sends what is queued, in order, until [`Self::close`]; run on a thread of its own.
    pub fn write_loop(&self) {
        loop {
            let mut state = self.state.lock();
            while state.queue.is_empty() && !state.closed {
                self.wake.wait(&mut state);
            }
            let Some(outgoing) = state.queue.pop_front() else {
                return;
            };
            state.queued_bytes -= outgoing.len();
            let (bytes, fd) = match outgoing {
                Outgoing::Encoded(bytes, fd) => (bytes, fd),
                Outgoing::Serial(bytes) => (ToGui::Serial(bytes).encode(), None),
            };
            let Some((number, socket)) = state.peer.clone() else {
                continue;
            };
            drop(state);
            if let Err(e) = socket.send(&bytes, fd.as_ref().map(|f| f.as_fd())) {
                self.detach(number, &format!("cannot send to it: {e}"));
            }
        }
    }

    /// Waits until everything queued was sent, at most `timeout`.
    pub fn flush(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.state.lock().queue.is_empty() {
                // The writer may still be sending the last message.
                std::thread::sleep(Duration::from_millis(50));
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the writer thread and closes the app's connection.
    pub fn close(&self) {
        let mut state = self.state.lock();
        state.closed = true;
        if let Some((_, socket)) = state.peer.take() {
            socket.shutdown();
        }
        drop(state);
        self.wake.notify_all();
        self.screen_wake.notify_all();
    }

    /// Whether [`Self::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// The screen changed (the frames' waker): wakes the forwarder.
    pub fn screen_changed(&self) {
        self.state.lock().screen_pending = true;
        self.screen_wake.notify_one();
    }

    /// Waits until the screen changed, a resend is asked for or the hub closes, at most
    /// `timeout` (the forwarder's sleep).
    pub fn wait_for_screen(&self, timeout: Duration) {
        let mut state = self.state.lock();
        if !state.closed && !state.resend_screen && !state.screen_pending {
            self.screen_wake.wait_for(&mut state, timeout);
        }
        state.screen_pending = false;
    }
}

fn push(state: &mut State, bytes: Vec<u8>, fd: Option<OwnedFd>) {
    state.queued_bytes += bytes.len();
    state.queue.push_back(Outgoing::Encoded(bytes, fd));
}

/// Queues serial bytes, growing the last queued serial message while it has room.
fn push_serial(state: &mut State, mut bytes: &[u8]) {
    state.queued_bytes += bytes.len();
    while !bytes.is_empty() {
        if let Some(Outgoing::Serial(last)) = state.queue.back_mut() {
            let room = MAX_SERIAL_CHUNK - last.len();
            if room > 0 {
                let n = room.min(bytes.len());
                last.extend_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                continue;
            }
        }
        let n = MAX_SERIAL_CHUNK.min(bytes.len());
        state.queue.push_back(Outgoing::Serial(bytes[..n].to_vec()));
        bytes = &bytes[n..];
    }
}

/// Serial output of the VM, into the hub.
pub struct SerialToHub(pub Arc<Hub>);

impl std::io::Write for SerialToHub {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.serial(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
