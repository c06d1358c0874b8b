//! The QMP protocol state machine of one connection: the greeting, capabilities negotiation,
//! command dispatch with `id` echo, QMP's error classes, and event formatting. It knows
//! nothing of sockets, so it is tested on its own.

use super::framing::Frame;
use crate::control::screendump::ImageFormat;
use crate::control::{BlockInfo, CpuInfo, TimedEvent, VmEvent, VmStatus};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// What a QMP session needs from the VM.
pub trait QmpTarget: Send + Sync {
    /// The VM's run status, for `query-status`.
    fn status(&self) -> VmStatus;
    /// Returns once every vCPU is parked (STOP already emitted), or why not.
    fn pause(&self) -> Result<(), String>;
    /// Returns once the vCPUs run (RESUME already emitted), or why not.
    fn resume(&self) -> Result<(), String>;
    /// Resets the machine, for `system_reset`.
    fn reset(&self);
    /// Presses the ACPI power button, for `system_powerdown`.
    fn power_down(&self);
    /// Turns the VM off now, for `quit`.
    fn quit(&self);
    /// The vCPUs, for `query-cpus-fast`.
    fn cpus(&self) -> Vec<CpuInfo>;
    /// The disks, for `query-block`.
    fn block_devices(&self) -> Vec<BlockInfo>;
    /// Writes the display to `path`, for `screendump`; the error text goes into a `GenericError`.
    fn screendump(&self, path: &Path, format: ImageFormat) -> Result<(), String>;
}

impl QmpTarget for crate::control::VmController {
    fn status(&self) -> VmStatus {
        self.status()
    }
    fn pause(&self) -> Result<(), String> {
        self.pause()
    }
    fn resume(&self) -> Result<(), String> {
        self.resume()
    }
    fn reset(&self) {
        self.reset()
    }
    fn power_down(&self) {
        self.power_down()
    }
    fn quit(&self) {
        self.quit()
    }
    fn cpus(&self) -> Vec<CpuInfo> {
        self.cpus()
    }
    fn block_devices(&self) -> Vec<BlockInfo> {
        self.block_devices()
    }
    fn screendump(&self, path: &Path, format: ImageFormat) -> Result<(), String> {
        self.screendump(path, format)
    }
}

/// The commands Cove answers, in `query-commands` order.
pub const COMMANDS: &[&str] = &[
    "qmp_capabilities",
    "query-version",
    "query-status",
    "query-commands",
    "stop",
    "cont",
    "system_reset",
    "system_powerdown",
    "quit",
    "query-cpus-fast",
    "query-block",
    "screendump",
];

/// QMP error classes.
pub mod class {
    /// `GenericError`: any failure without a more specific class.
    pub const GENERIC: &str = "GenericError";
    /// `CommandNotFound`: the `execute` member names a command Cove does not have.
    pub const COMMAND_NOT_FOUND: &str = "CommandNotFound";
}

/// One connection's protocol state.
#[derive(Default)]
pub struct Session {
    negotiated: bool,
}

impl Session {
    /// The greeting sent when a client connects.
    pub fn greeting() -> Value {
        json!({ "QMP": { "version": version(), "capabilities": [] } })
    }

    /// Whether the client finished capabilities negotiation (and so receives events).
    pub fn negotiated(&self) -> bool {
        self.negotiated
    }

    /// Handles one frame from the client; returns the reply to send.
    pub fn handle(&mut self, frame: Frame, target: &dyn QmpTarget) -> Value {
        let bytes = match frame {
            Frame::Message(bytes) => bytes,
            Frame::TooLong => {
                return error(
                    None,
                    class::GENERIC,
                    &format!(
                        "JSON parse error, message longer than {} bytes",
                        super::framing::MAX_MESSAGE
                    ),
                )
            }
            Frame::Unbalanced => {
                return error(None, class::GENERIC, "JSON parse error, stray '}' or ']'")
            }
        };
        let value = match super::strict_json::parse(&bytes) {
            Ok(value) => value,
            Err(e) => return error(None, class::GENERIC, &format!("JSON parse error, {e}")),
        };
        let Value::Object(request) = value else {
            return error(None, class::GENERIC, "QMP input must be a JSON object");
        };
        let id = request.get("id").cloned();
        match self.execute(&request, target) {
            Ok(result) => reply(id, result),
            Err((class, desc)) => error(id, class, &desc),
        }
    }

    fn execute(
        &mut self,
        request: &Map<String, Value>,
        target: &dyn QmpTarget,
    ) -> Result<Value, (&'static str, String)> {
        if let Some(key) = request
            .keys()
            .find(|k| !matches!(k.as_str(), "execute" | "arguments" | "id"))
        {
            return Err((
                class::GENERIC,
                format!("QMP input member '{key}' is unexpected"),
            ));
        }
        let command = match request.get("execute") {
            Some(Value::String(command)) => command.as_str(),
            Some(_) => {
                return Err((
                    class::GENERIC,
                    "QMP input member 'execute' must be a string".into(),
                ))
            }
            None => return Err((class::GENERIC, "QMP input lacks member 'execute'".into())),
        };
        let empty = Map::new();
        let arguments = match request.get("arguments") {
            Some(Value::Object(arguments)) => arguments,
            Some(_) => {
                return Err((
                    class::GENERIC,
                    "QMP input member 'arguments' must be an object".into(),
                ))
            }
            None => &empty,
        };
        if !self.negotiated {
            if command != "qmp_capabilities" {
                return Err((
                    class::COMMAND_NOT_FOUND,
                    "Expecting capabilities negotiation with 'qmp_capabilities'".into(),
                ));
            }
            capabilities_arguments(arguments)?;
            self.negotiated = true;
            return Ok(json!({}));
        }
        if command == "qmp_capabilities" {
            return Err((
                class::COMMAND_NOT_FOUND,
                "Capabilities negotiation is already complete, command ignored".into(),
            ));
        }
        if !COMMANDS.contains(&command) {
            return Err((
                class::COMMAND_NOT_FOUND,
                format!("The command {command} has not been found"),
            ));
        }
        if command == "screendump" {
            let (path, format) = screendump_arguments(arguments)?;
            target
                .screendump(&path, format)
                .map_err(|e| (class::GENERIC, e))?;
            return Ok(json!({}));
        }
        // None of the other commands takes arguments.
        if let Some(name) = arguments.keys().next() {
            return Err((class::GENERIC, format!("Parameter '{name}' is unexpected")));
        }
        Ok(match command {
            "query-version" => version(),
            "query-status" => {
                let status = target.status();
                json!({
                    "status": status.qmp_name(),
                    "running": status == VmStatus::Running,
                    "singlestep": false,
                })
            }
            "query-commands" => {
                Value::Array(COMMANDS.iter().map(|c| json!({ "name": c })).collect())
            }
            "stop" => {
                target.pause().map_err(|e| (class::GENERIC, e))?;
                json!({})
            }
            "cont" => {
                target.resume().map_err(|e| (class::GENERIC, e))?;
                json!({})
            }
            "system_reset" => {
                target.reset();
                json!({})
            }
            "system_powerdown" => {
                target.power_down();
                json!({})
            }
            "quit" => {
                target.quit();
                json!({})
            }
            "query-cpus-fast" => Value::Array(target.cpus().iter().map(cpu_json).collect()),
            "query-block" => Value::Array(target.block_devices().iter().map(block_json).collect()),
            _ => {
                return Err((
                    class::COMMAND_NOT_FOUND,
                    format!("The command {command} has not been found"),
                ))
            }
        })
    }
}

/// `qmp_capabilities` takes an optional `enable` list; Cove offers no capabilities.
fn capabilities_arguments(arguments: &Map<String, Value>) -> Result<(), (&'static str, String)> {
    for (key, value) in arguments {
        if key != "enable" {
            return Err((class::GENERIC, format!("Parameter '{key}' is unexpected")));
        }
        let Value::Array(items) = value else {
            return Err((
                class::GENERIC,
                "Invalid parameter type for 'enable', expected: array".into(),
            ));
        };
        // Any capability named is one Cove does not offer.
        match items.first() {
            Some(Value::String(name)) => {
                return Err((class::GENERIC, format!("Capability '{name}' not available")))
            }
            Some(_) => {
                return Err((
                    class::GENERIC,
                    "Invalid parameter type for 'enable', expected: array of strings".into(),
                ))
            }
            None => {}
        }
    }
    Ok(())
}

/// `screendump`'s arguments: `filename` (required), `format` (`ppm`, QEMU's default, or
/// `png`), and `device`/`head`, which name the one display Cove has.
fn screendump_arguments(
    arguments: &Map<String, Value>,
) -> Result<(PathBuf, ImageFormat), (&'static str, String)> {
    let mut path = None;
    let mut format = ImageFormat::Ppm;
    for (key, value) in arguments {
        match (key.as_str(), value) {
            ("filename", Value::String(name)) if !name.is_empty() => {
                path = Some(PathBuf::from(name))
            }
            ("filename", Value::String(_)) => {
                return Err((
                    class::GENERIC,
                    "Parameter 'filename' must not be empty".into(),
                ))
            }
            ("format", Value::String(f)) if f == "png" => format = ImageFormat::Png,
            ("format", Value::String(f)) if f == "ppm" => format = ImageFormat::Ppm,
            ("format", Value::String(f)) => {
                return Err((
                    class::GENERIC,
                    format!("Parameter 'format' does not accept value '{f}'"),
                ))
            }
            ("device", Value::String(_)) => {}
            ("head", Value::Number(n)) if n.as_u64() == Some(0) => {}
            ("head", Value::Number(_)) => {
                return Err((
                    class::GENERIC,
                    "Head 0 is the only head of the display".into(),
                ))
            }
            ("filename" | "format" | "device", _) => {
                return Err((
                    class::GENERIC,
                    format!("Invalid parameter type for '{key}', expected: string"),
                ))
            }
            ("head", _) => {
                return Err((
                    class::GENERIC,
                    "Invalid parameter type for 'head', expected: integer".into(),
                ))
            }
            _ => return Err((class::GENERIC, format!("Parameter '{key}' is unexpected"))),
        }
    }
    let path = path.ok_or((
        class::GENERIC,
        "Parameter 'filename' is missing".to_string(),
    ))?;
    Ok((path, format))
}

fn version() -> Value {
    let number = |i: usize| -> u64 {
        env!("CARGO_PKG_VERSION")
            .split('.')
            .nth(i)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    json!({
        "qemu": { "major": number(0), "minor": number(1), "micro": number(2) },
        "package": concat!("cove ", env!("CARGO_PKG_VERSION")),
    })
}

fn reply(id: Option<Value>, result: Value) -> Value {
    let mut object = Map::new();
    object.insert("return".into(), result);
    if let Some(id) = id {
        object.insert("id".into(), id);
    }
    Value::Object(object)
}

/// A QMP error reply.
pub fn error(id: Option<Value>, class: &str, desc: &str) -> Value {
    let mut object = Map::new();
    object.insert("error".into(), json!({ "class": class, "desc": desc }));
    if let Some(id) = id {
        object.insert("id".into(), id);
    }
    Value::Object(object)
}

fn cpu_json(cpu: &CpuInfo) -> Value {
    let mut object = json!({
        "cpu-index": cpu.index,
        "qom-path": format!("/machine/unattached/device[{}]", cpu.index),
        "target": "x86_64",
        "props": { "socket-id": 0, "core-id": cpu.index, "thread-id": 0 },
    });
    if let (Some(tid), Some(map)) = (cpu.thread_id, object.as_object_mut()) {
        map.insert("thread-id".into(), json!(tid));
    }
    object
}

fn block_json(block: &BlockInfo) -> Value {
    let file = block.path.display().to_string();
    json!({
        "device": block.device,
        "qdev": format!("/machine/peripheral-anon/{}", block.device),
        "locked": false,
        "removable": false,
        "type": "unknown",
        "io-status": "ok",
        "inserted": {
            "file": file,
            "ro": block.read_only,
            "drv": block.format,
            "encrypted": false,
            "backing_file_depth": 0,
            "detect_zeroes": "off",
            "image": {
                "filename": file,
                "format": block.format,
                "virtual-size": block.size.unwrap_or(0),
            },
        },
    })
}

/// An event as QMP sends it.
pub fn event_json(event: &TimedEvent) -> Value {
    let since = event
        .timestamp
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let (name, data) = match &event.event {
        VmEvent::Stop => ("STOP", None),
        VmEvent::Resume => ("RESUME", None),
        VmEvent::Powerdown => ("POWERDOWN", None),
        VmEvent::Reset { guest, reason } => (
            "RESET",
            Some(json!({ "guest": guest, "reason": reason.qmp_name() })),
        ),
        VmEvent::Shutdown { guest, reason } => (
            "SHUTDOWN",
            Some(json!({ "guest": guest, "reason": reason.qmp_name() })),
        ),
        VmEvent::EmulationFailure { cpu, report } => (
            "EMULATION_FAILURE",
            Some(json!({ "cpu-index": cpu, "report": report })),
        ),
    };
    let mut object = json!({
        "event": name,
        "timestamp": { "seconds": since.as_secs(), "microseconds": since.subsec_micros() },
    });
    if let (Some(data), Some(map)) = (data, object.as_object_mut()) {
        map.insert("data".into(), data);
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ShutdownReason;
    use parking_lot::Mutex;
    use std::time::{Duration, SystemTime};

    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<&'static str>>,
    }

    impl QmpTarget for Fake {
        fn status(&self) -> VmStatus {
            VmStatus::Paused
        }
        fn pause(&self) -> Result<(), String> {
            self.calls.lock().push("pause");
            Ok(())
        }
        fn resume(&self) -> Result<(), String> {
            self.calls.lock().push("resume");
            Err("the VM has ended".into())
        }
        fn reset(&self) {
            self.calls.lock().push("reset");
        }
        fn power_down(&self) {
            self.calls.lock().push("power_down");
        }
        fn quit(&self) {
            self.calls.lock().push("quit");
        }
        fn cpus(&self) -> Vec<CpuInfo> {
            vec![CpuInfo {
                index: 0,
                thread_id: Some(42),
            }]
        }
        fn block_devices(&self) -> Vec<BlockInfo> {
            vec![BlockInfo {
                device: "disk0".into(),
                path: "/tmp/a.img".into(),
                read_only: true,
                format: "raw",
                size: Some(1024),
                serial: None,
            }]
        }
        fn screendump(&self, path: &Path, format: ImageFormat) -> Result<(), String> {
            self.calls.lock().push(if format == ImageFormat::Png {
                "png"
            } else {
                "ppm"
            });
            if path.starts_with("/nonexistent") {
                return Err("cannot create it".into());
            }
            Ok(())
        }
    }

    fn send(session: &mut Session, fake: &Fake, text: &str) -> Value {
        session.handle(Frame::Message(text.as_bytes().to_vec()), fake)
    }

    fn negotiated() -> (Session, Fake) {
        let mut session = Session::default();
        let fake = Fake::default();
        assert_eq!(
            send(&mut session, &fake, r#"{"execute":"qmp_capabilities"}"#),
            json!({"return": {}})
        );
        (session, fake)
    }

    fn error_class(reply: &Value) -> &str {
        reply["error"]["class"].as_str().unwrap_or("none")
    }

    #[test]
    fn greeting_names_version_and_capabilities() {
        let greeting = Session::greeting();
        assert!(greeting["QMP"]["version"]["qemu"]["major"].is_u64());
        assert_eq!(greeting["QMP"]["capabilities"], json!([]));
    }

    #[test]
    fn commands_wait_for_negotiation() {
        let mut session = Session::default();
        let fake = Fake::default();
        let reply = send(&mut session, &fake, r#"{"execute":"stop","id":7}"#);
        assert_eq!(error_class(&reply), class::COMMAND_NOT_FOUND);
        assert_eq!(reply["id"], json!(7));
        assert!(fake.calls.lock().is_empty());
        assert!(!session.negotiated());
        let reply = send(
            &mut session,
            &fake,
            r#"{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}"#,
        );
        assert_eq!(error_class(&reply), class::GENERIC, "oob is not offered");
        assert!(!session.negotiated());
        send(
            &mut session,
            &fake,
            r#"{"execute":"qmp_capabilities","arguments":{"enable":[]}}"#,
        );
        assert!(session.negotiated());
        let again = send(&mut session, &fake, r#"{"execute":"qmp_capabilities"}"#);
        assert_eq!(error_class(&again), class::COMMAND_NOT_FOUND);
    }

    #[test]
    fn commands_reach_the_target_and_echo_ids() {
        let (mut session, fake) = negotiated();
        for (command, call) in [
            ("stop", "pause"),
            ("system_reset", "reset"),
            ("system_powerdown", "power_down"),
            ("quit", "quit"),
        ] {
            let reply = send(
                &mut session,
                &fake,
                &format!(r#"{{"execute":"{command}","id":{{"n":[1,"x"]}}}}"#),
            );
            assert_eq!(reply, json!({"return": {}, "id": {"n": [1, "x"]}}));
            assert_eq!(fake.calls.lock().last(), Some(&call));
        }
        // A pause or resume that fails is a GenericError with the VM's reason.
        let failed = send(&mut session, &fake, r#"{"execute":"cont","id":3}"#);
        assert_eq!(error_class(&failed), class::GENERIC);
        assert_eq!(failed["error"]["desc"], json!("the VM has ended"));
        assert_eq!(failed["id"], json!(3));
        assert_eq!(fake.calls.lock().last(), Some(&"resume"));
        let status = send(&mut session, &fake, r#"{"execute":"query-status"}"#);
        assert_eq!(
            status["return"],
            json!({"status": "paused", "running": false, "singlestep": false})
        );
        let cpus = send(&mut session, &fake, r#"{"execute":"query-cpus-fast"}"#);
        assert_eq!(cpus["return"][0]["thread-id"], json!(42));
        assert_eq!(cpus["return"][0]["cpu-index"], json!(0));
        let block = send(&mut session, &fake, r#"{"execute":"query-block"}"#);
        assert_eq!(block["return"][0]["device"], json!("disk0"));
        assert_eq!(block["return"][0]["inserted"]["ro"], json!(true));
        assert_eq!(
            block["return"][0]["inserted"]["image"]["virtual-size"],
            json!(1024)
        );
        let commands = send(&mut session, &fake, r#"{"execute":"query-commands"}"#);
        assert_eq!(commands["return"].as_array().unwrap().len(), COMMANDS.len());
        let version = send(&mut session, &fake, r#"{"execute":"query-version"}"#);
        assert!(version["return"]["package"]
            .as_str()
            .unwrap()
            .starts_with("cove"));
    }

    #[test]
    fn bad_input_gets_qmp_errors() {
        let (mut session, fake) = negotiated();
        let cases = [
            (r#"{"execute": "#, class::GENERIC, "JSON parse error"),
            ("[1, 2]", class::GENERIC, "must be a JSON object"),
            ("42", class::GENERIC, "must be a JSON object"),
            (r#"{"id": 1}"#, class::GENERIC, "lacks member 'execute'"),
            (r#"{"execute": 5}"#, class::GENERIC, "must be a string"),
            (
                r#"{"execute": "stop", "arguments": []}"#,
                class::GENERIC,
                "must be an object",
            ),
            (
                r#"{"execute": "stop", "bogus": 1}"#,
                class::GENERIC,
                "'bogus' is unexpected",
            ),
            (
                r#"{"execute": "stop", "arguments": {"x": 1}}"#,
                class::GENERIC,
                "Parameter 'x'",
            ),
            (
                r#"{"execute": "frobnicate"}"#,
                class::COMMAND_NOT_FOUND,
                "frobnicate",
            ),
        ];
        for (input, expected_class, words) in cases {
            let reply = send(&mut session, &fake, input);
            assert_eq!(error_class(&reply), expected_class, "{input}");
            assert!(
                reply["error"]["desc"].as_str().unwrap().contains(words),
                "{input}: {reply}"
            );
        }
        let too_long = session.handle(Frame::TooLong, &fake);
        assert_eq!(error_class(&too_long), class::GENERIC);
        let stray = session.handle(Frame::Unbalanced, &fake);
        assert_eq!(error_class(&stray), class::GENERIC);
        assert!(fake.calls.lock().is_empty(), "no bad input reached the VM");
    }

    #[test]
    fn duplicate_keys_are_errors_and_run_nothing() {
        let mut session = Session::default();
        let fake = Fake::default();
        let reply = send(
            &mut session,
            &fake,
            r#"{"execute":"qmp_capabilities","execute":"quit"}"#,
        );
        assert_eq!(error_class(&reply), class::GENERIC, "{reply}");
        assert!(!session.negotiated());
        let (mut session, fake) = negotiated();
        for text in [
            r#"{"execute":"quit","execute":"query-status"}"#,
            r#"{"execute":"screendump","arguments":{"filename":"/tmp/a","filename":"/tmp/b"}}"#,
            r#"{"execute":"quit","id":{"a":1,"a":2}}"#,
        ] {
            let reply = send(&mut session, &fake, text);
            assert_eq!(error_class(&reply), class::GENERIC, "{text}");
            let desc = reply["error"]["desc"].as_str().unwrap();
            assert!(desc.contains("duplicate key"), "{text}: {desc}");
        }
        assert!(fake.calls.lock().is_empty(), "nothing ran");
    }

    #[test]
    fn screendump_arguments_are_checked() {
        let (mut session, fake) = negotiated();
        let ok = send(
            &mut session,
            &fake,
            r#"{"execute":"screendump","arguments":{"filename":"/tmp/a.png","format":"png"}}"#,
        );
        assert_eq!(ok, json!({"return": {}}));
        let ok = send(
            &mut session,
            &fake,
            r#"{"execute":"screendump","arguments":{"filename":"/tmp/a.ppm","device":"gpu0","head":0}}"#,
        );
        assert_eq!(ok, json!({"return": {}}));
        assert_eq!(*fake.calls.lock(), vec!["png", "ppm"]);
        for (args, words) in [
            (r#"{}"#, "'filename' is missing"),
            (r#"{"filename": 5}"#, "expected: string"),
            (r#"{"filename": ""}"#, "must not be empty"),
            (r#"{"filename": "/tmp/x", "format": "bmp"}"#, "'bmp'"),
            (r#"{"filename": "/tmp/x", "head": 2}"#, "Head 0"),
            (
                r#"{"filename": "/tmp/x", "head": "0"}"#,
                "expected: integer",
            ),
            (
                r#"{"filename": "/tmp/x", "color": true}"#,
                "'color' is unexpected",
            ),
            (r#"{"filename": "/nonexistent/x"}"#, "cannot create"),
        ] {
            let reply = send(
                &mut session,
                &fake,
                &format!(r#"{{"execute":"screendump","arguments":{args}}}"#),
            );
            assert_eq!(error_class(&reply), class::GENERIC, "{args}");
            assert!(
                reply["error"]["desc"].as_str().unwrap().contains(words),
                "{args}: {reply}"
            );
        }
    }

    #[test]
    fn events_carry_timestamps_and_data() {
        let event = TimedEvent {
            event: VmEvent::Shutdown {
                guest: false,
                reason: ShutdownReason::HostQuit,
            },
            timestamp: SystemTime::UNIX_EPOCH + Duration::from_micros(1_500_000),
        };
        assert_eq!(
            event_json(&event),
            json!({
                "event": "SHUTDOWN",
                "data": {"guest": false, "reason": "host-qmp-quit"},
                "timestamp": {"seconds": 1, "microseconds": 500000},
            })
        );
        let stop = TimedEvent {
            event: VmEvent::Stop,
            timestamp: SystemTime::UNIX_EPOCH,
        };
        assert!(event_json(&stop).get("data").is_none());
    }
}
