//! `cove qmp`: a one-shot QMP client for scripts. It connects, negotiates capabilities, sends
//! one command, prints the `return` value as JSON (exit 0) or the error (exit 1), skipping any
//! events that arrive meanwhile. Works against QEMU's QMP sockets too. The whole exchange has
//! one deadline, so a server that keeps sending events cannot hold it; a server that refuses
//! the connection (too many clients) has its own message shown.

use super::QmpArgs;
use emu::control::qmp::framing::{Frame, Splitter};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long the whole exchange may take, from connecting to the command's reply.
const DEADLINE: Duration = Duration::from_secs(30);

pub fn run(args: &QmpArgs) -> ExitCode {
    match exchange(args) {
        Ok(Ok(result)) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&result).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(Err(error)) => {
            eprintln!(
                "cove: QMP error {}: {}",
                error["class"].as_str().unwrap_or("?"),
                error["desc"].as_str().unwrap_or("?")
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("cove: error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Parses the arguments given on the command line and runs the exchange.
fn exchange(args: &QmpArgs) -> Result<Result<Value, Value>, String> {
    let arguments = match &args.arguments {
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(value @ Value::Object(_)) => Some(value),
            Ok(_) => return Err("the arguments must be a JSON object".into()),
            Err(e) => return Err(format!("the arguments are not valid JSON: {e}")),
        },
        None => None,
    };
    execute(&args.socket, &args.command, arguments)
}

/// Connects to the QMP server at `socket`, negotiates, runs `command` with `arguments` (a JSON
/// object) and returns its `return` value, or its `error` object; `Err` when the exchange
/// itself failed. Blocks for at most [`DEADLINE`]. The app uses it for VMs that other Cove
/// processes run.
pub fn execute(
    socket: &Path,
    command: &str,
    arguments: Option<Value>,
) -> Result<Result<Value, Value>, String> {
    let mut connection = Connection::open(socket)?;
    let greeting = connection.next_message()?;
    if let Some(error) = greeting.get("error") {
        // The server's refusal in place of a greeting (Cove's "too many QMP clients").
        return Ok(Err(error.clone()));
    }
    if greeting.get("QMP").is_none() {
        return Err(format!(
            "{} did not greet as a QMP server",
            socket.display()
        ));
    }
    connection.send(&json!({ "execute": "qmp_capabilities" }))?;
    if let Err(error) = connection.reply()? {
        return Err(format!("capabilities negotiation failed: {error}"));
    }
    let mut request = json!({ "execute": command, "id": "cove-qmp" });
    if let (Some(arguments), Some(map)) = (arguments, request.as_object_mut()) {
        map.insert("arguments".into(), arguments);
    }
    connection.send(&request)?;
    connection.reply()
}

struct Connection {
    stream: UnixStream,
    splitter: Splitter,
    pending: std::collections::VecDeque<Frame>,
    socket: String,
    deadline: Instant,
}

impl Connection {
    fn open(path: &Path) -> Result<Self, String> {
        let deadline = Instant::now() + DEADLINE;
        let socket = path.display().to_string();
        let stream =
            UnixStream::connect(path).map_err(|e| format!("cannot connect to {socket}: {e}"))?;
        Ok(Self {
            stream,
            splitter: Splitter::default(),
            pending: Default::default(),
            socket,
            deadline,
        })
    }

    fn send(&mut self, value: &Value) -> Result<(), String> {
        let mut bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        bytes.push(b'\n');
        let left = self.deadline.saturating_duration_since(Instant::now());
        self.stream
            .set_write_timeout(Some(left.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        self.stream
            .write_all(&bytes)
            .map_err(|e| format!("cannot write to {}: {e}", self.socket))
    }

    fn next_message(&mut self) -> Result<Value, String> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                let Frame::Message(bytes) = frame else {
                    return Err("the server sent malformed JSON".into());
                };
                return serde_json::from_slice(&bytes)
                    .map_err(|e| format!("the server sent malformed JSON: {e}"));
            }
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "no reply from {} within {} s",
                    self.socket,
                    DEADLINE.as_secs()
                ));
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 4096];
            let n = self.stream.read(&mut buf).map_err(|e| match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!(
                    "no reply from {} within {} s",
                    self.socket,
                    DEADLINE.as_secs()
                ),
                _ => format!("no reply from {}: {e}", self.socket),
            })?;
            if n == 0 {
                return Err(format!("{} closed the connection", self.socket));
            }
            self.pending.extend(self.splitter.feed(&buf[..n]));
        }
    }

    /// The next reply, skipping events.
    fn reply(&mut self) -> Result<Result<Value, Value>, String> {
        loop {
            let message = self.next_message()?;
            if let Some(result) = message.get("return") {
                return Ok(Ok(result.clone()));
            }
            if let Some(error) = message.get("error") {
                return Ok(Err(error.clone()));
            }
        }
    }
}
