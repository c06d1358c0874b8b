//! The QMP socket: a Unix socket (mode 0600) that serves several clients at once, each on its
//! own thread with its own protocol session, and forwards VM events to every client that has
//! negotiated capabilities. A client that sends garbage gets QMP errors; one that stops
//! reading is disconnected after a write timeout; neither affects the VM or other clients.

use super::framing::Splitter;
use super::session::{class, error, event_json, QmpTarget, Session};
use crate::control::TimedEvent;
use serde_json::Value;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The most clients served at once; more are refused with an error.
pub const MAX_CLIENTS: usize = 8;
/// A client that does not take a reply or event within this long is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// Where events come from (the VM's event bus, or a test's).
pub type Subscribe = Arc<dyn Fn() -> Receiver<TimedEvent> + Send + Sync>;

/// A listening QMP socket.
pub struct QmpServer {
    path: PathBuf,
    /// Device and inode of the socket this server created, so shutdown never removes a
    /// socket another process has since put at the same path.
    identity: Option<(u64, u64)>,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

struct Shared {
    stop: AtomicBool,
    clients: AtomicUsize,
    served: AtomicUsize,
    target: Arc<dyn QmpTarget>,
    subscribe: Subscribe,
}

impl QmpServer {
    /// Listens on `path`. A stale socket left by a dead process is replaced; a live one, or
    /// any other file, is an error.
    pub fn start(
        path: &Path,
        target: Arc<dyn QmpTarget>,
        subscribe: Subscribe,
    ) -> io::Result<Self> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by another process", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let identity = socket_identity(path);
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            clients: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            target,
            subscribe,
        });
        let accept_shared = shared.clone();
        let accept_thread = std::thread::Builder::new()
            .name("cove-qmp".into())
            .spawn(move || accept_loop(listener, accept_shared))?;
        log::info!("QMP listening on {}", path.display());
        Ok(Self {
            path: path.to_path_buf(),
            identity,
            shared,
            accept_thread: Some(accept_thread),
        })
    }

    /// Blocks until a first client connected (QMP's `wait=on`), or `timeout` passed.
    pub fn wait_for_client(&self, timeout: Option<Duration>) -> bool {
        let start = Instant::now();
        while self.shared.served.load(Ordering::Acquire) == 0 {
            if timeout.is_some_and(|t| start.elapsed() >= t) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Clients connected now.
    pub fn client_count(&self) -> usize {
        self.shared.clients.load(Ordering::Acquire)
    }

    /// Stops listening, sends clients the events still queued for them (the final SHUTDOWN),
    /// closes their connections and removes the socket.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.shared.clients.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.identity.is_some() && socket_identity(&self.path) == self.identity {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn socket_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl Drop for QmpServer {
    fn drop(&mut self) {
        if self.accept_thread.is_some() {
            self.stop();
        }
    }
}

/// Waits for `fd` to become readable, for at most [`POLL`]. Returns whether it is.
fn readable(fd: i32) -> bool {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pollfd` is a valid, initialised array of one entry that outlives the call.
    let ready = unsafe { libc::poll(&mut pollfd, 1, POLL.as_millis() as i32) };
    ready > 0
}

fn accept_loop(listener: UnixListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::Acquire) {
        if !readable(listener.as_raw_fd()) {
            continue;
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                log::warn!("QMP accept failed: {e}");
                continue;
            }
        };
        if shared.clients.load(Ordering::Acquire) >= MAX_CLIENTS {
            refuse(stream);
            continue;
        }
        shared.clients.fetch_add(1, Ordering::AcqRel);
        shared.served.fetch_add(1, Ordering::AcqRel);
        let client_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("cove-qmp-client".into())
            .spawn(move || {
                serve_client(stream, &client_shared);
                client_shared.clients.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            log::warn!("cannot start a QMP client thread: {e}");
            shared.clients.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn refuse(mut stream: UnixStream) {
    log::warn!("QMP client refused: already {MAX_CLIENTS} clients");
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let reply = error(
        None,
        class::GENERIC,
        &format!("too many QMP clients: at most {MAX_CLIENTS} at once"),
    );
    let _ = write_json(&mut stream, &reply);
}

fn write_json(stream: &mut UnixStream, value: &Value) -> io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
    line.extend_from_slice(b"\r\n");
    stream.write_all(&line)
}

/// One client: a reader loop on this thread, an event forwarder on another.
fn serve_client(stream: UnixStream, shared: &Arc<Shared>) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let writer = match stream.try_clone() {
        Ok(writer) => Arc::new(Mutex::new(writer)),
        Err(e) => {
            log::warn!("QMP client: {e}");
            return;
        }
    };
    let send = |value: &Value| -> bool {
        let mut stream = writer.lock().unwrap_or_else(|e| e.into_inner());
        write_json(&mut stream, value).is_ok()
    };
    if !send(&Session::greeting()) {
        return;
    }
    let negotiated = Arc::new(AtomicBool::new(false));
    let closed = Arc::new(AtomicBool::new(false));
    let events = (shared.subscribe)();
    let forwarder = {
        let writer = writer.clone();
        let negotiated = negotiated.clone();
        let closed = closed.clone();
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("cove-qmp-events".into())
            .spawn(move || forward_events(events, &writer, &negotiated, &closed, &shared))
    };

    let mut session = Session::default();
    let mut splitter = Splitter::default();
    let mut reader = stream;
    let mut buf = [0u8; 4096];
    while !closed.load(Ordering::Acquire) {
        if shared.stop.load(Ordering::Acquire) {
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
            negotiated.store(session.negotiated(), Ordering::Release);
            if !send(&reply) {
                log::warn!("QMP client stopped reading; disconnecting it");
                closed.store(true, Ordering::Release);
                break;
            }
        }
    }
    closed.store(true, Ordering::Release);
    if let Ok(forwarder) = forwarder {
        let _ = forwarder.join();
    }
    let _ = reader.shutdown(std::net::Shutdown::Both);
}

fn forward_events(
    events: Receiver<TimedEvent>,
    writer: &Mutex<UnixStream>,
    negotiated: &AtomicBool,
    closed: &AtomicBool,
    shared: &Shared,
) {
    let send = |event: &TimedEvent| -> bool {
        if !negotiated.load(Ordering::Acquire) {
            return true;
        }
        let mut stream = writer.lock().unwrap_or_else(|e| e.into_inner());
        write_json(&mut stream, &event_json(event)).is_ok()
    };
    loop {
        // The stop check comes first: the reader also marks the connection closed when the
        // server stops, and the final events must still go out.
        if shared.stop.load(Ordering::Acquire) {
            // Deliver what is queued (the final SHUTDOWN), then close the connection.
            while let Ok(event) = events.try_recv() {
                if !send(&event) {
                    break;
                }
            }
            closed.store(true, Ordering::Release);
            let stream = writer.lock().unwrap_or_else(|e| e.into_inner());
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        if closed.load(Ordering::Acquire) {
            return;
        }
        match events.recv_timeout(POLL) {
            Ok(event) => {
                if !send(&event) {
                    closed.store(true, Ordering::Release);
                    return;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{BlockInfo, CpuInfo, VmStatus};
    use crate::machine::display_port::ImageFormat;

    struct Idle;

    impl QmpTarget for Idle {
        fn status(&self) -> VmStatus {
            VmStatus::Running
        }
        fn pause(&self) {}
        fn resume(&self) {}
        fn reset(&self) {}
        fn power_down(&self) {}
        fn quit(&self) {}
        fn cpus(&self) -> Vec<CpuInfo> {
            Vec::new()
        }
        fn block_devices(&self) -> Vec<BlockInfo> {
            Vec::new()
        }
        fn screendump(&self, _path: &Path, _format: ImageFormat) -> Result<(), String> {
            Err("no display".into())
        }
    }

    fn start(path: &Path) -> io::Result<QmpServer> {
        QmpServer::start(
            path,
            Arc::new(Idle),
            Arc::new(|| std::sync::mpsc::channel().1),
        )
    }

    #[test]
    fn shutdown_leaves_a_newer_socket_at_the_same_path_alone() {
        let dir = std::env::temp_dir().join(format!("cove-qmp-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vm.sock");
        let first = start(&path).unwrap();
        // Another VM replaces the socket (after the first one's was deleted).
        std::fs::remove_file(&path).unwrap();
        let second = start(&path).unwrap();
        first.shutdown();
        assert!(path.exists(), "the second server's socket survived");
        assert!(UnixStream::connect(&path).is_ok());
        second.shutdown();
        assert!(!path.exists());
        // A live socket is not taken over.
        let live = start(&path).unwrap();
        let err = start(&path).err().expect("refused");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        live.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
