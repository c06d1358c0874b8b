//! The QMP socket: a Unix socket (mode 0600 from the moment it exists, see
//! [`secure_path`](crate::control::secure_path)) that serves several clients at once, each on
//! its own thread with its own protocol session (see `client`), and forwards VM events to every
//! client that has negotiated capabilities. A client that sends garbage gets QMP errors; one
//! that stops reading, or does not negotiate in time, is disconnected; neither affects the VM
//! or other clients.

use super::client::{self, readable, write_json, WRITE_TIMEOUT};
use super::session::{class, error, QmpTarget};
use crate::control::secure_path::bind_unix_listener_private;
use crate::control::TimedEvent;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The most clients served at once; more are refused with an error.
pub const MAX_CLIENTS: usize = 8;
/// A client that has not finished capabilities negotiation within this long is closed, so
/// silent connections cannot hold every slot.
pub const NEGOTIATION_TIMEOUT: Duration = Duration::from_secs(10);

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

/// What the acceptor and every client thread share.
pub(super) struct Shared {
    pub(super) stop: AtomicBool,
    clients: AtomicUsize,
    served: AtomicUsize,
    pub(super) target: Arc<dyn QmpTarget>,
    pub(super) subscribe: Subscribe,
    pub(super) negotiation_timeout: Duration,
}

impl QmpServer {
    /// Listens on `path`, created by [`bind_unix_listener_private`]: its directory must not be
    /// writable by others without the sticky bit; a stale socket left by a dead process is
    /// replaced; a live one, or any other file, is an error.
    pub fn start(
        path: &Path,
        target: Arc<dyn QmpTarget>,
        subscribe: Subscribe,
    ) -> io::Result<Self> {
        Self::start_with_negotiation_timeout(path, target, subscribe, NEGOTIATION_TIMEOUT)
    }

    /// [`Self::start`], with a client's time to negotiate capabilities other than
    /// [`NEGOTIATION_TIMEOUT`] (for tests).
    pub fn start_with_negotiation_timeout(
        path: &Path,
        target: Arc<dyn QmpTarget>,
        subscribe: Subscribe,
        negotiation_timeout: Duration,
    ) -> io::Result<Self> {
        let listener = bind_unix_listener_private(path)?;
        let identity = socket_identity(path);
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            clients: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            target,
            subscribe,
            negotiation_timeout,
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
                client::serve(stream, &client_shared);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::screendump::ImageFormat;
    use crate::control::{BlockInfo, CpuInfo, VmStatus};

    struct Idle;

    impl QmpTarget for Idle {
        fn status(&self) -> VmStatus {
            VmStatus::Running
        }
        fn pause(&self) -> Result<(), String> {
            Ok(())
        }
        fn resume(&self) -> Result<(), String> {
            Ok(())
        }
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

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cove-qmp-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A line-reading client of a test server.
    struct Client {
        reader: std::io::BufReader<UnixStream>,
        writer: UnixStream,
    }

    impl Client {
        fn connect(path: &Path) -> Self {
            let stream = UnixStream::connect(path).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            Self {
                writer: stream.try_clone().unwrap(),
                reader: std::io::BufReader::new(stream),
            }
        }

        /// The next message, or None at EOF.
        fn read(&mut self) -> Option<serde_json::Value> {
            let mut line = String::new();
            match std::io::BufRead::read_line(&mut self.reader, &mut line) {
                Ok(0) => None,
                Ok(_) => Some(serde_json::from_str(&line).unwrap()),
                Err(e) => panic!("read: {e}"),
            }
        }

        fn send(&mut self, text: &str) {
            std::io::Write::write_all(&mut self.writer, format!("{text}\n").as_bytes()).unwrap();
        }
    }

    /// A target whose pause and resume emit their events before returning, as the VM's do.
    struct Pausing(Arc<crate::control::EventBus>);

    impl QmpTarget for Pausing {
        fn status(&self) -> VmStatus {
            VmStatus::Running
        }
        fn pause(&self) -> Result<(), String> {
            self.0.emit(crate::control::VmEvent::Stop);
            Ok(())
        }
        fn resume(&self) -> Result<(), String> {
            self.0.emit(crate::control::VmEvent::Resume);
            Ok(())
        }
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

    #[test]
    fn an_event_emitted_during_a_command_is_sent_before_its_reply() {
        let dir = scratch("order");
        let path = dir.join("vm.sock");
        let bus = Arc::new(crate::control::EventBus::default());
        let events = bus.clone();
        let server = QmpServer::start(
            &path,
            Arc::new(Pausing(bus.clone())),
            Arc::new(move || events.subscribe()),
        )
        .unwrap();
        let mut client = Client::connect(&path);
        assert!(client.read().unwrap().get("QMP").is_some());
        // Events before negotiation are not sent.
        bus.emit(crate::control::VmEvent::Powerdown);
        client.send(r#"{"execute":"qmp_capabilities"}"#);
        assert_eq!(client.read(), Some(serde_json::json!({"return": {}})));
        for round in 0..50 {
            for (command, event) in [("stop", "STOP"), ("cont", "RESUME")] {
                client.send(&format!(r#"{{"execute":"{command}","id":{round}}}"#));
                let first = client.read().unwrap();
                assert_eq!(
                    first["event"],
                    serde_json::json!(event),
                    "{command}: {first}"
                );
                let second = client.read().unwrap();
                assert_eq!(second["id"], serde_json::json!(round), "{second}");
            }
        }
        server.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn silent_clients_are_closed_after_the_negotiation_timeout() {
        assert_eq!(NEGOTIATION_TIMEOUT, Duration::from_secs(10));
        let dir = scratch("silent");
        let path = dir.join("vm.sock");
        let server = QmpServer::start_with_negotiation_timeout(
            &path,
            Arc::new(Idle),
            Arc::new(|| std::sync::mpsc::channel().1),
            Duration::from_millis(300),
        )
        .unwrap();
        let mut silent: Vec<Client> = (0..MAX_CLIENTS).map(|_| Client::connect(&path)).collect();
        for client in &mut silent {
            assert!(client.read().unwrap().get("QMP").is_some(), "greeted");
        }
        let mut ninth = Client::connect(&path);
        let refused = ninth.read().unwrap();
        assert!(
            refused["error"]["desc"]
                .as_str()
                .unwrap()
                .contains("too many QMP clients"),
            "{refused}"
        );
        // Each silent client is told why, then closed.
        for client in &mut silent {
            let message = client.read().unwrap();
            let desc = message["error"]["desc"].as_str().unwrap();
            assert!(desc.contains("no capabilities negotiation"), "{desc}");
            assert_eq!(client.read(), None, "closed");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.client_count() > 0 {
            assert!(Instant::now() < deadline, "the slots were never freed");
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut next = Client::connect(&path);
        assert!(next.read().unwrap().get("QMP").is_some());
        next.send(r#"{"execute":"qmp_capabilities"}"#);
        assert_eq!(next.read(), Some(serde_json::json!({"return": {}})));
        // A negotiated client is not closed by the timeout.
        std::thread::sleep(Duration::from_millis(400));
        next.send(r#"{"execute":"query-status"}"#);
        assert_eq!(next.read().unwrap()["return"]["status"], "running");
        server.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_socket_directory_others_can_write_to_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("open-dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = start(&dir.join("vm.sock")).err().expect("refused");
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("sticky bit"), "{err}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
