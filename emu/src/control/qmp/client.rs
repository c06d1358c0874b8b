//! One QMP connection: a reader loop that runs the client's commands, and a forwarder thread
//! that sends it VM events. Both write through one [`Outbox`], and a reply goes out only after
//! every event already queued for the client, so `stop`'s STOP event precedes its reply, as
//! QEMU's does. A client that has not negotiated capabilities in time is closed.

use super::framing::Splitter;
use super::server::Shared;
use super::session::{class, error, event_json, Session};
use crate::control::TimedEvent;
use parking_lot::Mutex;
use serde_json::Value;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A client that does not take a reply or event within this long is disconnected.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a blocked reader or acceptor waits before looking at the stop flag again.
pub(super) const POLL: Duration = Duration::from_millis(100);
/// How often the forwarder looks for new events.
const EVENT_POLL: Duration = Duration::from_millis(10);

/// Everything written to one client, behind one lock.
struct Outbox {
    stream: UnixStream,
    events: Receiver<TimedEvent>,
    /// Whether the client receives events (it finished capabilities negotiation).
    negotiated: bool,
}

impl Outbox {
    /// Writes every event queued so far; before negotiation they are dropped, as QEMU does.
    fn flush_events(&mut self) -> io::Result<()> {
        while let Ok(event) = self.events.try_recv() {
            if self.negotiated {
                write_json(&mut self.stream, &event_json(&event))?;
            }
        }
        Ok(())
    }

    /// Writes `reply` after every event that happened before it; `negotiated` is the
    /// session's state once the command ran.
    fn reply(&mut self, reply: &Value, negotiated: bool) -> io::Result<()> {
        self.flush_events()?;
        write_json(&mut self.stream, reply)?;
        self.negotiated = negotiated;
        Ok(())
    }
}

/// Serves one client until it leaves, misbehaves, idles through negotiation, or the server
/// stops.
pub(super) fn serve(stream: UnixStream, shared: &Arc<Shared>) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(e) => {
            log::warn!("QMP client: {e}");
            return;
        }
    };
    let outbox = Arc::new(Mutex::new(Outbox {
        stream: writer,
        events: (shared.subscribe)(),
        negotiated: false,
    }));
    if outbox.lock().reply(&Session::greeting(), false).is_err() {
        return;
    }
    let closed = Arc::new(AtomicBool::new(false));
    let forwarder = {
        let outbox = outbox.clone();
        let closed = closed.clone();
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("cove-qmp-events".into())
            .spawn(move || forward_events(&outbox, &closed, &shared))
    };

    let connected = Instant::now();
    let mut session = Session::default();
    let mut splitter = Splitter::default();
    let mut reader = stream;
    let mut buf = [0u8; 4096];
    'serve: while !closed.load(Ordering::Acquire) && !shared.stop.load(Ordering::Acquire) {
        if !session.negotiated() && connected.elapsed() >= shared.negotiation_timeout {
            log::warn!("QMP client did not negotiate capabilities in time; disconnecting it");
            let desc = format!(
                "no capabilities negotiation within {} s; closing the connection",
                shared.negotiation_timeout.as_secs_f32()
            );
            let _ = outbox
                .lock()
                .reply(&error(None, class::GENERIC, &desc), false);
            break;
        }
        if !readable(reader.as_raw_fd()) {
            continue;
        }
        let n = match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for frame in splitter.feed(&buf[..n]) {
            let reply = session.handle(frame, shared.target.as_ref());
            if outbox.lock().reply(&reply, session.negotiated()).is_err() {
                log::warn!("QMP client stopped reading; disconnecting it");
                break 'serve;
            }
        }
    }
    closed.store(true, Ordering::Release);
    if let Ok(forwarder) = forwarder {
        let _ = forwarder.join();
    }
    let _ = reader.shutdown(std::net::Shutdown::Both);
}

fn forward_events(outbox: &Mutex<Outbox>, closed: &AtomicBool, shared: &Shared) {
    loop {
        // The stop check comes first: the reader also marks the connection closed when the
        // server stops, and the final events must still go out.
        if shared.stop.load(Ordering::Acquire) {
            // Deliver what is queued (the final SHUTDOWN), then close the connection.
            let mut outbox = outbox.lock();
            let _ = outbox.flush_events();
            closed.store(true, Ordering::Release);
            let _ = outbox.stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        if closed.load(Ordering::Acquire) {
            return;
        }
        if outbox.lock().flush_events().is_err() {
            closed.store(true, Ordering::Release);
            return;
        }
        std::thread::sleep(EVENT_POLL);
    }
}

/// Waits for `fd` to become readable, for at most [`POLL`]. Returns whether it is.
pub(super) fn readable(fd: i32) -> bool {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pollfd` is a valid, initialised array of one entry that outlives the call.
    let ready = unsafe { libc::poll(&mut pollfd, 1, POLL.as_millis() as i32) };
    ready > 0
}

pub(super) fn write_json(stream: &mut UnixStream, value: &Value) -> io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
    line.extend_from_slice(b"\r\n");
    stream.write_all(&line)
}
