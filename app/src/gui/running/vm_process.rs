//! The app's side of a VM process (`cove vm-host`): it starts the process (or attaches to one
//! an earlier run of the app started), and follows it on threads of its own, so that the UI
//! thread never waits on it.
//!
//! - The link thread connects, checks the hello, then turns each message into state: the
//!   screen (the VM's memfd, mapped read-only into [`Frames`]), dirty rectangles, the cursor,
//!   serial output, status, notices and the end.
//! - The writer thread sends input and commands; the UI thread only queues them, and drops
//!   them (with a log line) if a VM process stops reading.
//! - The waiter thread notices the process's exit and its status.
//!
//! A VM process is not trusted: a message that does not decode, an oversized one, a bad
//! screen or no hello in time ends the link with a log line, and a process this app started is
//! then killed. Its log (stderr) goes to [`LOG_FILE`] in the VM's folder, whose last lines the
//! tab shows when the process dies.

use super::console::{Scrollback, RESET_MARK};
use display::{FrameSink, Frames, InputPort, SharedPixels};
use emu::control::link::{Command, LinkSocket, ToGui, ToVm, MAX_MESSAGE_BYTES, PROTOCOL_VERSION};
use emu::control::VmStatus;
use emu::scanout::ScanoutSink;
use emu::virtio::input::InputEvent;
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The VM process's log, in the VM's folder (rewritten at each start).
pub const LOG_FILE: &str = ".cove-vm.log";
/// How long a VM process has to listen for the app after it was started.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it has to say hello once connected.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages the UI may queue for a VM process that is not reading.
const OUTBOX: usize = 1024;

/// What the app knows of its VM process.
#[derive(Default)]
struct State {
    status: Option<VmStatus>,
    /// The process said hello (its pid).
    pid: Option<u32>,
    /// It said how the VM ended.
    ended: Option<(bool, String)>,
    /// The link is gone, and why.
    closed: Option<String>,
    /// Another app is attached to it.
    busy: bool,
    /// The process exited (one this app started).
    exit: Option<ExitStatus>,
    notices: Vec<String>,
}

/// How a VM process ended, as the app tells it.
pub enum Outcome {
    /// It said so: powered off, stopped (false) or failed (true), with the words.
    Said(bool, String),
    /// It died without saying: its exit status and last log lines.
    Crashed(String),
    /// Another app holds it.
    Busy,
}

/// One VM process.
pub struct VmProcess {
    state: Arc<Mutex<State>>,
    out: SyncSender<ToVm>,
    /// The other end of `out`, until the link thread takes it.
    outbox: Mutex<Option<Receiver<ToVm>>>,
    child: Option<Arc<Mutex<Child>>>,
    log: PathBuf,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

/// Queues input for the VM process (the display view's port).
#[derive(Clone)]
pub struct LinkInput {
    out: SyncSender<ToVm>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl LinkInput {
    fn send(&self, message: ToVm) {
        queue(&self.out, &self.dropped, message);
    }
}

fn queue(out: &SyncSender<ToVm>, dropped: &std::sync::atomic::AtomicU64, message: ToVm) {
    match out.try_send(message) {
        Ok(()) | Err(TrySendError::Disconnected(_)) => {}
        Err(TrySendError::Full(_)) => {
            if dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .is_multiple_of(100)
            {
                log::warn!("the VM process is not reading its link; input dropped");
            }
        }
    }
}

impl InputPort for LinkInput {
    fn send_keyboard(&self, events: &[InputEvent]) {
        for chunk in events.chunks(emu::control::link::MAX_INPUT_EVENTS) {
            self.send(ToVm::Keyboard(chunk.to_vec()));
        }
    }
    fn send_tablet(&self, events: &[InputEvent]) {
        for chunk in events.chunks(emu::control::link::MAX_INPUT_EVENTS) {
            self.send(ToVm::Tablet(chunk.to_vec()));
        }
    }
    fn set_display_size(&self, width: u32, height: u32) {
        self.send(ToVm::DisplaySize { width, height });
    }
}

/// Everything the link thread fills in.
pub struct Sinks {
    pub frames: Arc<Frames>,
    pub scrollback: Arc<Mutex<Scrollback>>,
    pub ctx: egui::Context,
}

/// The command line that runs `cove vm-host` for `dir`. Unit tests run their own binary,
/// which serves as the VM process through `test_support::vm_host_main`.
fn host_command(dir: &Path) -> Result<std::process::Command, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the cove program: {e}"))?;
    let mut command = std::process::Command::new(exe);
    #[cfg(not(test))]
    {
        command.arg("vm-host").arg(dir);
        if std::env::var_os("COVE_DEBUG_COMMANDS").is_some_and(|v| v == "1") {
            command.arg("--debug-commands");
        }
        if std::env::var_os("COVE_SANDBOX").is_some_and(|v| v == "off") {
            command.args(["--sandbox", "off"]);
        }
        for (var, flag) in [
            ("COVE_ORPHAN_GRACE", "--orphan-grace"),
            ("COVE_ORPHAN_SHUTDOWN", "--orphan-shutdown"),
        ] {
            if let Some(value) = std::env::var_os(var) {
                command.arg(flag).arg(value);
            }
        }
    }
    #[cfg(test)]
    {
        command
            .args([
                "--exact",
                "test_support::vm_host_main",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("COVE_TEST_VM_HOST", dir);
    }
    Ok(command)
}

impl VmProcess {
    /// Starts the VM process for the VM in `dir`.
    pub fn spawn(dir: &Path, sinks: Sinks) -> Result<Self, String> {
        let log = dir.join(LOG_FILE);
        let file = emu::control::secure_path::create_regular_file(&log)
            .map_err(|e| format!("cannot write the VM's log {}: {e}", log.display()))?;
        let stdout = file
            .try_clone()
            .map_err(|e| format!("cannot share the VM's log: {e}"))?;
        let child = host_command(dir)?
            .stdin(std::process::Stdio::null())
            .stdout(stdout)
            .stderr(file)
            .spawn()
            .map_err(|e| format!("cannot start the VM process: {e}"))?;
        let child = Arc::new(Mutex::new(child));
        let process = Self::new(Some(child.clone()), log);
        let state = process.state.clone();
        let ctx = sinks.ctx.clone();
        spawn_thread("cove-vm-wait", move || wait_for_exit(&child, &state, &ctx))?;
        process.start_link(crate::library::run_lock::link_socket_path(dir), sinks)?;
        Ok(process)
    }

    /// Attaches to the VM process already running the VM in `dir`, listening at `link`.
    pub fn attach(dir: &Path, link: PathBuf, sinks: Sinks) -> Result<Self, String> {
        let process = Self::new(None, dir.join(LOG_FILE));
        process.start_link(link, sinks)?;
        Ok(process)
    }

    fn new(child: Option<Arc<Mutex<Child>>>, log: PathBuf) -> Self {
        let (out, outbox) = sync_channel(OUTBOX);
        Self {
            state: Arc::default(),
            out,
            outbox: Mutex::new(Some(outbox)),
            child,
            log,
            dropped: Arc::default(),
        }
    }

    fn start_link(&self, path: PathBuf, sinks: Sinks) -> Result<(), String> {
        let state = self.state.clone();
        let child = self.child.clone();
        let outbox = self.outbox.lock().take();
        spawn_thread("cove-vm-link", move || {
            let why = link_loop(&path, &state, child.as_ref(), &sinks, outbox);
            let mut s = state.lock();
            if let Err(why) = &why {
                log::warn!("the link to the VM process ended: {why}");
                if let Some(child) = &child {
                    if s.exit.is_none() {
                        let _ = child.lock().kill();
                    }
                }
            }
            s.closed = Some(match why {
                Ok(why) | Err(why) => why,
            });
            drop(s);
            sinks.ctx.request_repaint();
        })
    }

    /// The port the display view sends input through.
    pub fn input(&self) -> LinkInput {
        LinkInput {
            out: self.out.clone(),
            dropped: self.dropped.clone(),
        }
    }

    fn send(&self, message: ToVm) {
        queue(&self.out, &self.dropped, message);
    }

    /// Asks for a debug action (tests; the VM process refuses unless allowed).
    #[cfg(test)]
    pub fn debug(&self, action: emu::control::link::DebugAction) {
        self.send(ToVm::Debug(action));
    }

    /// What the VM process asked to tell the user since the last call.
    pub fn take_notices(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().notices)
    }

    /// How the VM process ended, once it has (None while it runs or is starting).
    pub fn outcome(&self) -> Option<Outcome> {
        let s = self.state.lock();
        if s.busy {
            return Some(Outcome::Busy);
        }
        // The process this app started has ended once it exited; one it attached to, once
        // its link closed.
        let gone = match &self.child {
            Some(_) => s.exit.is_some(),
            None => s.closed.is_some(),
        };
        if !gone {
            return None;
        }
        if let Some((failed, text)) = &s.ended {
            return Some(Outcome::Said(*failed, text.clone()));
        }
        // It ended in order before the app could hear it say so (a start that fails at once):
        // its exit code and log tell.
        match s.exit.and_then(|e| e.code()) {
            Some(0) => return Some(Outcome::Said(false, "powered off".into())),
            Some(1) | Some(2) => {
                return Some(Outcome::Said(true, last_error(&log_tail(&self.log))));
            }
            _ => {}
        }
        let status = match &s.exit {
            Some(exit) => describe_exit(exit),
            None => format!(
                "the VM process (pid {}) went away without saying why",
                s.pid.map_or("unknown".into(), |p| p.to_string())
            ),
        };
        let link = match (&s.closed, s.pid) {
            (Some(why), _) => format!("\nLink: {why}"),
            (None, _) => String::new(),
        };
        Some(Outcome::Crashed(format!(
            "{status}{link}\nLast lines of its log ({}):\n{}",
            self.log.display(),
            log_tail(&self.log)
        )))
    }

    /// The VM's status as its process last said.
    pub fn status(&self) -> VmStatus {
        self.state.lock().status.unwrap_or(VmStatus::Prelaunch)
    }

    /// Kills a process this app started (tests: a VM process that dies).
    #[cfg(test)]
    pub fn kill(&self) {
        if let Some(child) = &self.child {
            if self.state.lock().exit.is_none() {
                let _ = child.lock().kill();
            }
        }
    }
}

impl crate::vm_controls::VmCommands for VmProcess {
    fn status(&self) -> VmStatus {
        VmProcess::status(self)
    }
    fn pause(&self) -> Result<(), String> {
        self.send(ToVm::Command(Command::Pause));
        Ok(())
    }
    fn resume(&self) -> Result<(), String> {
        self.send(ToVm::Command(Command::Resume));
        Ok(())
    }
    fn reset(&self) {
        self.send(ToVm::Command(Command::Reset));
    }
    fn power_down(&self) {
        self.send(ToVm::Command(Command::PowerDown));
    }
    fn quit(&self) {
        self.send(ToVm::Command(Command::Quit));
    }
    fn serial_input(&self, bytes: &[u8]) -> bool {
        for chunk in bytes.chunks(emu::control::link::MAX_SERIAL_CHUNK) {
            self.send(ToVm::SerialInput(chunk.to_vec()));
        }
        true
    }
}

/// "exited with status 1", "killed by signal 9 (SIGKILL)".
pub fn describe_exit(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("the VM process exited with status {code}"),
        (None, Some(signal)) => {
            let name = nix::sys::signal::Signal::try_from(signal)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| "unknown".into());
            format!("the VM process was killed by signal {signal} ({name})")
        }
        _ => "the VM process ended".into(),
    }
}

/// The last error the log names ("could not start: ..."), or its last lines.
fn last_error(tail: &str) -> String {
    tail.lines()
        .rev()
        .find_map(|l| l.strip_prefix("[cove error] "))
        .map(|l| l.split_once(": ").map_or(l, |(_, why)| why).to_string())
        .unwrap_or_else(|| tail.to_string())
}

/// The last lines of the VM process's log.
fn log_tail(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return "(no log)".into();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(4096)));
    let mut bytes = Vec::new();
    let _ = file.take(4096).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).replace('\r', "");
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}

fn spawn_thread(name: &str, body: impl FnOnce() + Send + 'static) -> Result<(), String> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map(|_| ())
        .map_err(|e| format!("cannot start a thread for the VM process: {e}"))
}

fn wait_for_exit(child: &Mutex<Child>, state: &Mutex<State>, ctx: &egui::Context) {
    loop {
        let status = child.lock().try_wait();
        match status {
            Ok(Some(status)) => {
                state.lock().exit = Some(status);
                ctx.request_repaint();
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => {
                log::error!("cannot wait for the VM process: {e}");
                return;
            }
        }
    }
}

fn connect(path: &Path, state: &Mutex<State>, spawned: bool) -> Result<LinkSocket, String> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        match LinkSocket::connect(path) {
            Ok(socket) => return Ok(socket),
            Err(e) if !spawned => return Err(format!("cannot reach the VM process: {e}")),
            Err(e) => {
                if state.lock().exit.is_some() {
                    return Err("the VM process exited before it listened".into());
                }
                if Instant::now() > deadline {
                    return Err(format!("the VM process did not listen in time: {e}"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Connects, checks the hello, then follows the VM process until the link ends. Ok: it ended
/// in order; Err: why it broke.
fn link_loop(
    path: &Path,
    state: &Mutex<State>,
    child: Option<&Arc<Mutex<Child>>>,
    sinks: &Sinks,
    outbox: Option<Receiver<ToVm>>,
) -> Result<String, String> {
    let socket = connect(path, state, child.is_some())?;
    socket
        .set_read_timeout(Some(HELLO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut buffer = vec![0u8; MAX_MESSAGE_BYTES];
    let hello = receive(&socket, &mut buffer)?.ok_or("the VM process closed the link")?;
    match hello.0 {
        ToGui::Hello { version, pid, .. } if version == PROTOCOL_VERSION => {
            state.lock().pid = Some(pid);
        }
        ToGui::Hello { version, .. } => {
            return Err(format!(
                "the VM process speaks version {version}, not {PROTOCOL_VERSION}"
            ))
        }
        ToGui::Busy => {
            state.lock().busy = true;
            return Ok("another app is attached".into());
        }
        other => return Err(format!("the VM process began with {other:?}, not a hello")),
    }
    socket.set_read_timeout(None).map_err(|e| e.to_string())?;
    if let Some(outbox) = outbox {
        let writer = socket.try_clone().map_err(|e| e.to_string())?;
        spawn_thread("cove-vm-send", move || send_loop(&writer, &outbox))?;
    }
    let sink = FrameSink(sinks.frames.clone());
    loop {
        let Some((message, fd)) = receive(&socket, &mut buffer)? else {
            return Ok("the VM process closed the link".into());
        };
        if fd.is_some() && !matches!(message, ToGui::Screen { .. }) {
            return Err("a descriptor came with a message that has none".into());
        }
        match message {
            ToGui::Hello { .. } | ToGui::Busy => return Err("a second hello".into()),
            ToGui::Status(status) => state.lock().status = Some(status),
            ToGui::Screen {
                width,
                height,
                format,
            } => {
                let fd = fd.ok_or("a screen without its memory")?;
                let len = width as usize * height as usize * 4;
                let pixels = SharedPixels::attach(fd, len).map_err(|e| e.to_string())?;
                sinks.frames.attach(width, height, format, pixels);
            }
            ToGui::ScreenOff => sink.configure(0, None),
            ToGui::Dirty(rect) => {
                if !sinks.frames.mark_dirty(rect) && sinks.frames.size().is_some() {
                    log::debug!("ignored a dirty rectangle outside the screen: {rect:?}");
                }
            }
            ToGui::Cursor(image) => sink.cursor_image(0, image.as_ref()),
            ToGui::CursorPosition { x, y } => sink.cursor_position(0, x, y),
            ToGui::Serial(bytes) => sinks.scrollback.lock().push(&bytes),
            ToGui::Reset => sinks.scrollback.lock().mark(RESET_MARK),
            ToGui::Notice(text) => state.lock().notices.push(text),
            ToGui::Ended { failed, text } => state.lock().ended = Some((failed, text)),
        }
        sinks.ctx.request_repaint();
    }
}

fn receive(
    socket: &LinkSocket,
    buffer: &mut [u8],
) -> Result<Option<(ToGui, Option<std::os::fd::OwnedFd>)>, String> {
    let Some(received) = socket.receive(buffer).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let message = ToGui::decode(&buffer[..received.len]).map_err(|e| e.to_string())?;
    Ok(Some((message, received.fd)))
}

fn send_loop(socket: &LinkSocket, outbox: &Receiver<ToVm>) {
    let _ = socket.set_write_timeout(Some(Duration::from_secs(1)));
    while let Ok(message) = outbox.recv() {
        if let Err(e) = socket.send(&message.encode(), None) {
            log::warn!("cannot send to the VM process: {e}");
            if !matches!(e, emu::control::link::LinkError::TimedOut) {
                return;
            }
        }
    }
}

#[cfg(test)]
#[path = "vm_process_tests.rs"]
mod tests;
