//! `cove run`: one VM, headless, its serial console on this terminal.

use super::console_escape::{ConsoleAction, EscapeParser, HELP};
use super::terminal::RawModeGuard;
use super::{DisplayMode, QmpSpec, RunArgs};
use display::{FrameSink, Frames};
use emu::config::{BootSource, RebootAction, VmConfig};
use emu::control::qmp::QmpServer;
use emu::machine::{ConsoleOutput, Vm, VmExit, VmHandle};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Why `cove run` could not start the VM.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Build(#[from] emu::machine::BuildError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot serve QMP on {path}: {source}")]
    Qmp {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The arguments describe a VM that cannot be (two disks on one file, too many disks).
    #[error("{0}")]
    InvalidConfig(String),
}

impl RunError {
    /// The exit status for this error: 2 for bad arguments (as for command-line syntax errors),
    /// 1 for everything else.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::InvalidConfig(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

fn config_from_args(args: &RunArgs) -> VmConfig {
    VmConfig {
        name: args.name.clone(),
        cpus: args.cpus,
        memory: args.memory,
        boot: BootSource::Kernel {
            kernel: args.boot.kernel.clone(),
            initrd: args.boot.initrd.clone(),
            cmdline: args.boot.append.clone(),
        },
        host_profile: args.host_profile,
        on_reboot: if args.no_reboot {
            RebootAction::Exit
        } else {
            RebootAction::Restart
        },
        disks: args.disks.clone(),
        rng: !args.no_rng,
        display: emu::config::DisplayConfig {
            enabled: args.gpu || args.display == DisplayMode::Window,
            ..Default::default()
        },
    }
}

/// How `cove run` (or `cove start`) shows and exposes the VM.
pub struct RunOptions {
    pub display: DisplayMode,
    pub qmp: Option<QmpSpec>,
    pub stats: bool,
    /// A library VM's run lock: held until the VM ends, and told where the VM's control socket
    /// is (other Cove processes find the running VM through it).
    pub run_lock: Option<crate::library::run_lock::RunLock>,
}

pub fn run(args: RunArgs) -> Result<ExitCode, RunError> {
    let config = config_from_args(&args);
    run_config(
        config,
        RunOptions {
            display: args.display,
            qmp: args.qmp.clone(),
            stats: args.stats,
            run_lock: None,
        },
    )
}

/// Runs the VM `config` describes until it ends.
pub fn run_config(mut config: VmConfig, args: RunOptions) -> Result<ExitCode, RunError> {
    if args.display == DisplayMode::Window {
        config.display.enabled = true;
    }
    config.validate().map_err(RunError::InvalidConfig)?;
    let mut vm = Vm::new(config, ConsoleOutput::stdout());
    let handle = vm.handle();
    watch_signals(handle.clone())?;
    let window_frames = match args.display {
        DisplayMode::Window => {
            let frames = Frames::new();
            let port = vm
                .display()
                .ok_or_else(|| RunError::InvalidConfig("the VM has no display".into()))?;
            port.set_sink(Arc::new(FrameSink(frames.clone())));
            Some(frames)
        }
        DisplayMode::None => None,
    };
    let mut run_lock = args.run_lock;
    let control = match &mut run_lock {
        Some(lock) => {
            let path = crate::library::run_lock::control_socket_path(lock.dir());
            let server = start_qmp(
                &vm,
                &QmpSpec {
                    path: path.clone(),
                    wait: false,
                },
            )?;
            lock.set_control(Some(path));
            Some(server)
        }
        None => None,
    };
    let qmp = match &args.qmp {
        Some(spec) => Some(start_qmp(&vm, spec)?),
        None => None,
    };
    let stdin = std::io::stdin();
    let raw_mode = RawModeGuard::enable(std::os::fd::AsFd::as_fd(&stdin));
    if raw_mode.is_some() {
        log::info!("console: Ctrl-A X to quit, Ctrl-A H for help");
    }
    forward_stdin(handle);

    let (vm, result) = match window_frames {
        Some(frames) => run_with_window(vm, frames)?,
        None => {
            let result = vm.run();
            (vm, result)
        }
    };
    // Clients get the final SHUTDOWN event before the sockets go away.
    for server in [qmp, control].into_iter().flatten() {
        server.shutdown();
    }
    drop(run_lock);
    drop(raw_mode);
    let exit = result?;
    if args.stats {
        print_statistics(&vm);
    }
    Ok(match exit {
        VmExit::PowerOff => {
            log::info!("VM powered off");
            ExitCode::SUCCESS
        }
        VmExit::Rebooted => {
            log::info!("VM rebooted; exiting (--no-reboot)");
            ExitCode::SUCCESS
        }
        VmExit::Stopped(_) => {
            log::info!("VM stopped");
            ExitCode::SUCCESS
        }
        VmExit::Failed(report) => {
            eprintln!("cove: VM stopped: {report}");
            ExitCode::FAILURE
        }
    })
}

/// Runs the VM on its own thread and its window on this one (windowing systems want the main
/// thread). Closing the window powers the guest down; the VM ending closes the window.
fn run_with_window(
    mut vm: Vm,
    frames: Arc<Frames>,
) -> Result<(Vm, Result<VmExit, emu::machine::BuildError>), RunError> {
    let controller = vm.controller();
    let done = Arc::new(AtomicBool::new(false));
    let vm_done = done.clone();
    let vm_thread = std::thread::Builder::new()
        .name("cove-vm".into())
        .spawn(move || {
            let result = vm.run();
            vm_done.store(true, Ordering::Release);
            (vm, result)
        })
        .map_err(RunError::Signals)?;
    if let Err(e) = crate::window::run_window(controller.clone(), frames, done.clone()) {
        eprintln!("cove: {e}");
    }
    if !done.load(Ordering::Acquire) {
        // The window went away some other way (its display closed): stop the VM too.
        controller.quit();
    }
    vm_thread
        .join()
        .map_err(|_| RunError::Signals(std::io::Error::other("the VM thread panicked")))
}

/// Serves QMP on the socket `spec` names; with `wait=on`, returns once a client connected.
fn start_qmp(vm: &Vm, spec: &QmpSpec) -> Result<QmpServer, RunError> {
    let controller = vm.controller();
    let events = controller.clone();
    let server = QmpServer::start(
        &spec.path,
        Arc::new(controller),
        Arc::new(move || events.subscribe()),
    )
    .map_err(|source| RunError::Qmp {
        path: spec.path.clone(),
        source,
    })?;
    if spec.wait {
        log::info!("waiting for a QMP client on {}", spec.path.display());
        server.wait_for_client(None);
    }
    Ok(server)
}

fn print_statistics(vm: &Vm) {
    let stats = vm.statistics();
    let recovered: Vec<String> = stats
        .recovered_instructions
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    eprintln!(
        "cove: stats: boots={} kvm_emulated_instructions={} kvm_exits={} recovered_instructions=[{}]",
        stats.boots,
        stats.kvm_emulated_instructions,
        stats.kvm_exits,
        recovered.join(" ")
    );
}

/// SIGINT, SIGTERM and SIGHUP stop the VM cleanly (the terminal is restored on the way out).
fn watch_signals(handle: VmHandle) -> Result<(), RunError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(RunError::Signals)?;
    std::thread::Builder::new()
        .name("cove-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                log::info!("signal {signal}: stopping the VM");
                handle.stop();
            }
        })
        .map_err(RunError::Signals)?;
    Ok(())
}

/// Feeds stdin to the guest's serial port, acting on Ctrl-A escapes. At end of input the VM
/// keeps running, as QEMU's does.
fn forward_stdin(handle: VmHandle) {
    let spawned = std::thread::Builder::new()
        .name("cove-stdin".into())
        .spawn(move || {
            let mut parser = EscapeParser::default();
            let mut buf = [0u8; 1024];
            let mut stdin = std::io::stdin().lock();
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log::warn!("console input closed: {e}");
                        return;
                    }
                };
                for action in parser.feed(&buf[..n]) {
                    match action {
                        ConsoleAction::Send(bytes) => {
                            if !handle.serial_input(&bytes) {
                                log::debug!("console input dropped: the VM is between boots");
                            }
                        }
                        ConsoleAction::Break => {
                            handle.serial_break();
                        }
                        ConsoleAction::Quit => {
                            handle.stop();
                            return;
                        }
                        ConsoleAction::Help => {
                            let _ = std::io::stderr().write_all(HELP.as_bytes());
                        }
                    }
                }
            }
        });
    if let Err(e) = spawned {
        log::warn!("no console input: cannot start the stdin thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use emu::config::DiskConfig;

    fn run_args(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let argv = ["cove", "run", "--kernel", "/k"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            Some(Command::Run(run)) => Ok(run),
            other => panic!("`cove run` parsed as {other:?}"),
        }
    }

    #[test]
    fn disks_and_rng_reach_the_config() {
        let config = config_from_args(&run_args(&[]).unwrap());
        assert!(config.disks.is_empty());
        assert!(config.rng);

        let args = run_args(&[
            "--disk",
            "root.img",
            "--disk",
            "data,,1.img,serial=D1,readonly=on",
            "--no-rng",
        ])
        .unwrap();
        let config = config_from_args(&args);
        assert_eq!(
            config.disks,
            vec![
                DiskConfig::new("root.img"),
                DiskConfig {
                    path: "data,1.img".into(),
                    read_only: true,
                    serial: Some("D1".into()),
                },
            ]
        );
        assert!(!config.rng);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn bad_disk_syntax_is_a_usage_error() {
        let err = run_args(&["--disk", "a.img,cache=none"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(text.contains("unknown disk option \"cache\""), "{text}");
    }

    #[test]
    fn invalid_configs_exit_2() {
        let args = run_args(&[
            "--disk",
            "/nonexistent/a.img",
            "--disk",
            "/nonexistent/a.img",
        ])
        .unwrap();
        let err = config_from_args(&args).validate().unwrap_err();
        assert!(err.contains("given twice"), "{err}");
        assert_eq!(RunError::InvalidConfig(err).exit_code(), ExitCode::from(2));
    }
}
