//! `cove qmp` against fake QMP servers (sockets owned by the test, no VM): it has one overall
//! deadline that a server flooding events cannot stretch, and it shows a server's refusal in
//! the server's own words.

use cove_tests::{cove_binary, ScratchDir};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The deadline `cove qmp` promises, and the slack allowed for starting the process.
const DEADLINE: Duration = Duration::from_secs(30);
const SLACK: Duration = Duration::from_secs(15);

/// Runs `cove qmp SOCKET query-status`; returns its exit code and stderr, or None if it is
/// still running after the deadline and the slack (it is killed then).
fn cove_qmp(socket: &std::path::Path) -> Option<(Option<i32>, String)> {
    let mut child = Command::new(cove_binary())
        .args(["qmp", &socket.display().to_string(), "query-status"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cove qmp");
    let give_up = Instant::now() + DEADLINE + SLACK;
    loop {
        if let Some(status) = child.try_wait().expect("wait for cove qmp") {
            let output = child.wait_with_output().expect("cove qmp output");
            return Some((
                status.code(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            ));
        }
        if Instant::now() >= give_up {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write_line(stream: &mut UnixStream, text: &str) -> std::io::Result<()> {
    stream.write_all(format!("{text}\r\n").as_bytes())
}

#[test]
fn a_server_that_floods_events_cannot_hold_cove_qmp_past_its_deadline() {
    let scratch = ScratchDir::new("qmp-flood");
    let socket = scratch.path("flood.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    // Greets, accepts negotiation, then answers nothing but events, for as long as the
    // client stays connected.
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        write_line(
            &mut stream,
            r#"{"QMP": {"version": {}, "capabilities": []}}"#,
        )?;
        let mut line = String::new();
        reader.read_line(&mut line)?;
        write_line(&mut stream, r#"{"return": {}}"#)?;
        let mut events = 0u64;
        loop {
            let event = r#"{"event": "RESET", "data": {"guest": true, "reason": "guest-reset"}, "timestamp": {"seconds": 1, "microseconds": 0}}"#;
            if write_line(&mut stream, event).is_err() {
                return Ok::<u64, std::io::Error>(events);
            }
            events += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let (code, stderr) =
        cove_qmp(&socket).expect("cove qmp was still running well past its deadline");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("within 30 s"), "{stderr}");
    let events = server.join().expect("server thread").expect("server I/O");
    assert!(events > 100, "only {events} events were sent");
}

#[test]
fn a_refusal_in_place_of_the_greeting_is_shown_as_the_servers_message() {
    let scratch = ScratchDir::new("qmp-refuse");
    let socket = scratch.path("full.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        write_line(
            &mut stream,
            r#"{"error": {"class": "GenericError", "desc": "too many QMP clients: at most 8 at once"}}"#,
        )
    });
    let (code, stderr) = cove_qmp(&socket).expect("cove qmp ended");
    server.join().expect("server thread").expect("server I/O");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("GenericError: too many QMP clients: at most 8 at once"),
        "{stderr}"
    );
    assert!(!stderr.contains("did not greet"), "{stderr}");
}
