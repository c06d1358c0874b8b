//! VMs that another Cove process runs (`cove start`, another app): the library drives them
//! through the control socket named in their run lock, with QMP (`stop`, `cont`,
//! `system_powerdown`, `quit`), each command on a thread of its own so a slow or dead VM never
//! holds a frame. Their display stays in the process that runs them.

use crate::cli::qmp_client;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};

/// A command for a VM run elsewhere, with the words the library shows for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteCommand {
    Pause,
    Resume,
    PowerOff,
    ForceOff,
}

impl RemoteCommand {
    /// Every command, in the order the row shows them.
    pub const ALL: [Self; 4] = [Self::Pause, Self::Resume, Self::PowerOff, Self::ForceOff];

    /// The button's label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pause => "Pause",
            Self::Resume => "Resume",
            Self::PowerOff => "Power off",
            Self::ForceOff => "Force off",
        }
    }

    /// QEMU's name for it.
    fn qmp(self) -> &'static str {
        match self {
            Self::Pause => "stop",
            Self::Resume => "cont",
            Self::PowerOff => "system_powerdown",
            Self::ForceOff => "quit",
        }
    }

    fn done(self) -> &'static str {
        match self {
            Self::Pause => "paused",
            Self::Resume => "resumed",
            Self::PowerOff => "asked to shut down",
            Self::ForceOff => "forced off",
        }
    }
}

/// What came of a command: the VM's folder and a sentence for the top bar.
pub struct Outcome {
    /// The VM's folder.
    pub dir: PathBuf,
    /// Ok: what happened; Err: why not.
    pub result: Result<String, String>,
}

/// Commands in flight.
pub struct Remote {
    send: Sender<Outcome>,
    receive: Receiver<Outcome>,
}

impl Default for Remote {
    fn default() -> Self {
        let (send, receive) = channel();
        Self { send, receive }
    }
}

impl Remote {
    /// Sends `command` to the VM named `name` in `dir`, served at `socket`; the outcome comes
    /// back through [`Self::finished`], and `wake` is called when it does.
    pub fn send(
        &self,
        name: &str,
        dir: PathBuf,
        socket: PathBuf,
        command: RemoteCommand,
        wake: impl Fn() + Send + 'static,
    ) {
        let send = self.send.clone();
        let name = name.to_string();
        let spawned = std::thread::Builder::new()
            .name("cove-remote".into())
            .spawn(move || {
                let result = match qmp_client::execute(&socket, command.qmp(), None) {
                    Ok(Ok(_)) => Ok(format!("{name}: {}", command.done())),
                    Ok(Err(error)) => Err(format!(
                        "{name} refused {}: {}",
                        command.label().to_lowercase(),
                        error["desc"].as_str().unwrap_or("no reason given")
                    )),
                    Err(e) => Err(format!("cannot reach {name}: {e}")),
                };
                let _ = send.send(Outcome { dir, result });
                wake();
            });
        if let Err(e) = spawned {
            log::error!("cannot start a thread for a remote command: {e}");
        }
    }

    /// Outcomes that arrived since the last call.
    pub fn finished(&self) -> Vec<Outcome> {
        self.receive.try_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    #[test]
    fn a_command_reaches_a_qmp_server_and_an_absent_one_is_a_clear_error() {
        let tmp = TempDir::new("remote");
        let socket = tmp.0.join("control.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
        let server = std::thread::spawn(move || {
            use std::io::{BufRead, BufReader, Write};
            let (stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut writer = stream;
            writeln!(writer, r#"{{"QMP":{{"version":{{}},"capabilities":[]}}}}"#).unwrap();
            let mut commands = Vec::new();
            for _ in 0..2 {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let request: serde_json::Value = serde_json::from_str(&line).unwrap();
                commands.push(request["execute"].as_str().unwrap_or("").to_string());
                writeln!(writer, r#"{{"return":{{}}}}"#).unwrap();
            }
            commands
        });
        let remote = Remote::default();
        let dir = tmp.0.clone();
        remote.send("web", dir.clone(), socket, RemoteCommand::Pause, || {});
        assert_eq!(server.join().unwrap(), ["qmp_capabilities", "stop"]);
        let outcome = wait_for_one(&remote);
        assert_eq!(outcome.dir, dir);
        assert_eq!(outcome.result, Ok("web: paused".to_string()));

        let gone = tmp.0.join("nobody.sock");
        remote.send("web", dir, gone, RemoteCommand::ForceOff, || {});
        let err = wait_for_one(&remote).result.unwrap_err();
        assert!(
            err.starts_with("cannot reach web: cannot connect to"),
            "{err}"
        );
    }

    fn wait_for_one(remote: &Remote) -> Outcome {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(outcome) = remote.finished().pop() {
                return outcome;
            }
            assert!(std::time::Instant::now() < deadline, "no outcome");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
