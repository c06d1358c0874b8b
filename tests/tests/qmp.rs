//! The QMP control socket of a real guest (the test kernel under KVM): driven by the stock
//! `qemu.qmp` client from PyPI, by `cove qmp`, and by clients that misbehave.

use cove_tests::{
    cove_binary, kvm_available, run_test_kernel, test_kernel, workspace_root, CoveProcess,
    ScratchDir,
};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EXIT: Duration = Duration::from_secs(60);

/// Starts the test kernel (kept alive by `COVE_INIT=spin`) with a disk and a QMP socket, and
/// waits for the socket.
fn start_vm(scratch: &ScratchDir) -> (CoveProcess, std::path::PathBuf) {
    start_vm_waiting(scratch, false)
}

/// [`start_vm`]; with `wait`, the VM starts only once a QMP client connected (`wait=on`).
fn start_vm_waiting(scratch: &ScratchDir, wait: bool) -> (CoveProcess, std::path::PathBuf) {
    let socket = scratch.path("qmp.sock");
    let disk = scratch.path("disk.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(16 << 20))
        .expect("disk image");
    let wait = if wait { "on" } else { "off" };
    let qmp = format!("unix:{},server=on,wait={wait}", socket.display());
    let disk_arg = disk.display().to_string();
    let kernel = test_kernel();
    let vm = run_test_kernel(
        &kernel,
        "console=ttyS0 COVE_INIT=spin",
        &[
            "--memory",
            "256M",
            "--no-reboot",
            "--disk",
            &disk_arg,
            "--qmp",
            &qmp,
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "no QMP socket\n{}",
            vm.transcript()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (vm, socket)
}

/// A raw QMP connection that reads one JSON message per line (Cove ends each with CRLF).
struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    fn connect(socket: &Path) -> Self {
        let stream = UnixStream::connect(socket).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let writer = stream.try_clone().unwrap();
        Self {
            reader: BufReader::new(stream),
            writer,
        }
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("a QMP message");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"))
    }

    /// The next reply (skipping events).
    fn reply(&mut self) -> Value {
        loop {
            let message = self.read();
            if message.get("event").is_none() {
                return message;
            }
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write");
    }

    fn execute(&mut self, request: Value) -> Value {
        self.send_raw(format!("{request}\n").as_bytes());
        self.reply()
    }

    fn negotiated(socket: &Path) -> Self {
        let mut client = Self::connect(socket);
        assert!(client.read().get("QMP").is_some(), "greeting");
        assert_eq!(
            client.execute(json!({"execute": "qmp_capabilities"})),
            json!({"return": {}})
        );
        client
    }
}

fn error_class(reply: &Value) -> String {
    reply["error"]["class"]
        .as_str()
        .unwrap_or("no error")
        .to_string()
}

fn status(client: &mut Client) -> String {
    let reply = client.execute(json!({"execute": "query-status"}));
    reply["return"]["status"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

#[test]
fn stock_qmp_client_drives_a_guest() {
    if !kvm_available() {
        return;
    }
    let python = qmp_python();
    let scratch = ScratchDir::new("qmp-stock");
    let (mut vm, socket) = start_vm(&scratch);
    let script = workspace_root().join("tests/qmp/drive_vm.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(&socket)
        .output()
        .expect("run the qemu.qmp script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("done"),
        "qemu.qmp script failed\nstdout:\n{stdout}\nstderr:\n{stderr}\n{}",
        vm.transcript()
    );
    for step in [
        "status paused",
        "event STOP",
        "event RESUME",
        "event RESET",
        "event POWERDOWN",
        "event SHUTDOWN",
    ] {
        assert!(stdout.contains(step), "missing {step:?} in\n{stdout}");
    }
    // `quit` ends the VM: cove exits 0 and removes its socket.
    let exit = vm.wait(EXIT);
    assert_eq!(exit.and_then(|s| s.code()), Some(0), "{}", vm.transcript());
    assert!(!socket.exists(), "socket left behind");
}

/// The stock client's interpreter (qemu.qmp from PyPI, in a cached venv).
fn qmp_python() -> String {
    let venv = Command::new("bash")
        .arg(workspace_root().join("tests/qmp/ensure-venv.sh"))
        .output()
        .expect("run ensure-venv.sh");
    assert!(
        venv.status.success(),
        "cannot install qemu.qmp from PyPI: {}",
        String::from_utf8_lossy(&venv.stderr)
    );
    String::from_utf8_lossy(&venv.stdout).trim().to_string()
}

#[test]
fn stop_is_synchronous_from_start_to_well_into_boot() {
    if !kvm_available() {
        return;
    }
    let python = qmp_python();
    let scratch = ScratchDir::new("qmp-stop-sync");
    let (mut vm, socket) = start_vm_waiting(&scratch, true);
    let mut script = Command::new(&python)
        .arg(workspace_root().join("tests/qmp/stop_sync.py"))
        .arg(&socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the qemu.qmp script");
    let stdout = BufReader::new(script.stdout.take().expect("stdout"));
    let (lines, printed) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in stdout.lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            let _ = lines.send(line);
        }
        all
    });
    let waiting = printed
        .iter()
        .find(|line| line.starts_with("waiting for Linux version"));
    if waiting.is_some() {
        let booted = vm
            .serial
            .wait_for("Linux version", Duration::from_secs(300));
        let mut stdin = script.stdin.take().expect("stdin");
        if booted {
            stdin.write_all(b"go\n").expect("tell the script");
        }
        // Dropping stdin without "go" ends the script with an error.
    }
    let status = script.wait().expect("wait for the script");
    let stdout = reader.join().expect("stdout reader");
    let mut stderr = String::new();
    if let Some(mut pipe) = script.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    assert!(
        status.success() && stdout.contains("done"),
        "stop_sync.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}\n{}",
        vm.transcript()
    );
    for round in [
        "at connect",
        "at 0.2 s",
        "at 1 s",
        "at 3 s",
        "after Linux version",
        "during reset",
    ] {
        assert!(
            stdout.contains(&format!("{round}: paused, then running")),
            "missing round {round:?} in\n{stdout}"
        );
    }
    let exit = vm.wait(EXIT);
    assert_eq!(exit.and_then(|s| s.code()), Some(0), "{}", vm.transcript());
}

#[test]
fn bad_input_gets_errors_and_the_vm_keeps_serving() {
    if !kvm_available() {
        return;
    }
    let scratch = ScratchDir::new("qmp-bad");
    let (mut vm, socket) = start_vm(&scratch);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");

    let mut client = Client::connect(&socket);
    assert!(client.read()["QMP"]["capabilities"].is_array());
    // Before negotiation.
    let early = client.execute(json!({"execute": "query-status", "id": "early"}));
    assert_eq!(error_class(&early), "CommandNotFound");
    assert_eq!(early["id"], json!("early"));
    assert_eq!(
        client.execute(json!({"execute": "qmp_capabilities"})),
        json!({"return": {}})
    );

    let cases: &[(&[u8], &str)] = &[
        (b"{\"execute\": \"query-status\",, }\n", "GenericError"),
        (b"[1, 2, 3]\n", "GenericError"),
        (b"\"just a string\"\n", "GenericError"),
        (b"{\"arguments\": {}}\n", "GenericError"),
        (b"{\"execute\": \"no-such-command\"}\n", "CommandNotFound"),
        (b"{\"execute\": 12}\n", "GenericError"),
        (
            b"{\"execute\": \"stop\", \"arguments\": \"now\"}\n",
            "GenericError",
        ),
        (
            b"{\"execute\": \"stop\", \"arguments\": {\"when\": 1}}\n",
            "GenericError",
        ),
        (b"}\n", "GenericError"),
        (
            b"{\"execute\": \"query-status\", \"execute\": \"quit\"}\n",
            "GenericError",
        ),
    ];
    for (input, class) in cases {
        client.send_raw(input);
        let reply = client.reply();
        assert_eq!(
            error_class(&reply),
            *class,
            "{}: {reply}",
            String::from_utf8_lossy(input)
        );
    }
    // An oversize message: one error, then the connection works again.
    let mut big = b"{\"execute\": \"query-status\", \"id\": \"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 2 << 20));
    big.extend_from_slice(b"\"}\n");
    client.send_raw(&big);
    let reply = client.reply();
    assert_eq!(error_class(&reply), "GenericError", "{reply}");
    assert!(reply["error"]["desc"]
        .as_str()
        .unwrap()
        .contains("longer than"));
    assert_eq!(status(&mut client), "running", "the VM kept running");

    // A client that vanishes mid-message.
    {
        let mut gone = Client::connect(&socket);
        gone.read();
        gone.send_raw(b"{\"execute\": \"qmp_capabilities\"}\n{\"execute\": \"sto");
    }
    // A client that floods the socket and never reads its replies.
    let flooder = std::thread::spawn({
        let socket = socket.clone();
        move || {
            let mut flood = UnixStream::connect(&socket).unwrap();
            flood
                .set_write_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            let chunk = b"{\"execute\": \"query-version\"}".repeat(4096);
            let start = Instant::now();
            // The server stops taking data once its replies back up, and then drops us.
            while start.elapsed() < Duration::from_secs(60) {
                if flood.write_all(&chunk).is_err() {
                    return true;
                }
            }
            false
        }
    });
    // Meanwhile another client is answered promptly, and `cove qmp` works.
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    let mut other = Client::negotiated(&socket);
    assert_eq!(status(&mut other), "running");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "slow while flooded"
    );
    let cli = Command::new(cove_binary())
        .args(["qmp", &socket.display().to_string(), "query-status"])
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let printed: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(printed["status"], json!("running"));
    let cli = Command::new(cove_binary())
        .args(["qmp", &socket.display().to_string(), "stop", "{\"x\": 1}"])
        .output()
        .unwrap();
    assert_eq!(cli.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&cli.stderr).contains("Parameter 'x' is unexpected"));
    assert!(
        flooder.join().unwrap(),
        "the flooding client was never disconnected"
    );

    // Too many clients: connections are accepted up to the limit (counting the two still
    // open), then the next one is told why it is refused.
    let mut crowd = Vec::new();
    let refusal = loop {
        let mut next = Client::connect(&socket);
        let first = next.read();
        if first.get("error").is_some() {
            break first;
        }
        crowd.push(next);
        assert!(
            crowd.len() <= 8,
            "more than 8 clients at once\n{}",
            vm.transcript()
        );
    };
    assert!(
        refusal["error"]["desc"]
            .as_str()
            .unwrap()
            .contains("too many QMP clients"),
        "{refusal}"
    );
    assert!(crowd.len() <= 6, "{} extra clients accepted", crowd.len());
    // `cove qmp` shows the server's own message (the crowd has not yet hit the 10 s
    // negotiation timeout).
    let cli = Command::new(cove_binary())
        .args(["qmp", &socket.display().to_string(), "query-status"])
        .output()
        .unwrap();
    assert_eq!(cli.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(stderr.contains("too many QMP clients"), "{stderr}");
    drop(crowd);
    std::thread::sleep(Duration::from_millis(300));

    // Still serving: quit, and the SHUTDOWN event reaches the client.
    assert_eq!(status(&mut client), "running");
    assert_eq!(
        client.execute(json!({"execute": "quit"})),
        json!({"return": {}})
    );
    let mut shutdown = None;
    for _ in 0..10 {
        let message = client.read();
        if message["event"] == json!("SHUTDOWN") {
            shutdown = Some(message);
            break;
        }
    }
    let shutdown = shutdown.expect("SHUTDOWN event");
    assert_eq!(shutdown["data"]["reason"], json!("host-qmp-quit"));
    assert!(shutdown["timestamp"]["seconds"].as_u64().unwrap() > 0);
    let exit = vm.wait(EXIT);
    assert_eq!(exit.and_then(|s| s.code()), Some(0), "{}", vm.transcript());
}

#[test]
fn qmp_socket_errors_are_clear() {
    let scratch = ScratchDir::new("qmp-path");
    // A path that is a regular file is not replaced.
    let file = scratch.path("not-a-socket");
    std::fs::write(&file, b"keep me").unwrap();
    let (code, _out, err) = cove_tests::run_cove(
        &[
            "run",
            "--kernel",
            "/nonexistent",
            "--qmp",
            &format!("unix:{}", file.display()),
        ],
        Duration::from_secs(30),
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    // Bad specs are refused before anything starts.
    let (code, _out, err) = cove_tests::run_cove(
        &["run", "--kernel", "/k", "--qmp", "tcp:localhost:4444"],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("unix:PATH"), "{err}");
}
