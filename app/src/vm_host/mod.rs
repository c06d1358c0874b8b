//! `cove vm-host DIR` (hidden): one library VM in a process of its own, started by the app.
//!
//! The process takes the VM's run lock, serves QMP on the VM's control socket as `cove start`
//! does, and listens on its link socket for the app ([`hub`], [`accept`]): the screen travels
//! in shared memory ([`forward`]), input and commands come back. With no app attached it
//! shuts its guest down after a grace period ([`orphan`]). Its threads are confined by seccomp
//! filters per kind ([`sandbox`]) unless started with `--sandbox off`. Its log (stderr) is the
//! file the app gave it, which the app shows when the process dies.

mod accept;
mod debug;
mod events;
mod forward;
mod hub;
mod orphan;
pub mod sandbox;
mod screen;

pub use orphan::OrphanPolicy;

use crate::library::run_lock::{self, Activity, RunLock};
use crate::library::Entry;
use emu::control::link::{LinkListener, ToGui};
use emu::machine::{ConsoleOutput, Vm, VmExit};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The run lock's program name of a VM process: an app that starts finds these to attach to.
pub const PROGRAM: &str = "the Cove app (VM process)";

/// How the VM process runs.
pub struct Options {
    /// Confine the threads with seccomp.
    pub sandbox: bool,
    /// Allow the debug actions tests use.
    pub debug_commands: bool,
    /// What to do without an app.
    pub orphan: OrphanPolicy,
}

/// Runs the VM in `dir` until it ends; the exit code says how (0: it powered off or was
/// stopped, 1: it failed, 2: it could not start).
pub fn run(dir: &Path, options: &Options) -> u8 {
    // No descriptor but our own: whatever the parent leaked stays out of the VM.
    sandbox::close_inherited_fds();
    if !options.sandbox {
        log::warn!("the sandbox is off (--sandbox off): this VM process is not confined");
    }
    match start(dir, options) {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e}");
            2
        }
    }
}

fn start(dir: &Path, options: &Options) -> Result<u8, String> {
    let entry = match crate::library::load(dir) {
        Entry::Vm(vm) => vm,
        Entry::Broken { error, .. } => return Err(error),
    };
    entry.config.validate()?;
    let name = entry.config.name.clone();
    let mut lock = RunLock::acquire(dir, PROGRAM, Activity::Running)
        .map_err(|e| format!("{name} cannot start: {e}"))?;
    let hub = hub::Hub::new(entry.config.display.enabled);
    let output = ConsoleOutput::new(hub::SerialToHub(hub.clone()));
    let mut vm = Vm::new(entry.config.clone(), output);
    let controller = vm.controller();
    let screen = vm.display().map(|port| {
        let frames = display::Frames::new_shared();
        let wake = hub.clone();
        frames.set_waker(move || wake.screen_changed());
        let screen = screen::Screen::new(frames);
        port.set_sink(screen.clone());
        screen
    });

    // Confined before any other thread exists: threads made from here on inherit a filter.
    if options.sandbox {
        sandbox::confine_process()?;
        sandbox::confine_this_thread(emu::threads::ThreadKind::Control)?;
    }
    let control_path = run_lock::control_socket_path(dir);
    let events = controller.clone();
    let control = match emu::control::qmp::QmpServer::start(
        &control_path,
        Arc::new(controller.clone()),
        Arc::new(move || events.subscribe()),
    ) {
        Ok(server) => {
            lock.set_control(Some(control_path));
            Some(server)
        }
        Err(e) => {
            log::warn!(
                "{name}: no control socket at {}: {e}",
                control_path.display()
            );
            None
        }
    };
    let link_path = run_lock::link_socket_path(dir);
    let listener = Arc::new(
        LinkListener::bind(&link_path)
            .map_err(|e| format!("cannot listen for the app at {}: {e}", link_path.display()))?,
    );
    lock.set_link(Some(link_path));

    let debug = debug::DebugCommands {
        enabled: options.debug_commands,
        screen: screen.clone(),
    };
    if options.debug_commands {
        log::warn!("debug commands are allowed (--debug-commands)");
    }
    let spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
        emu::threads::spawn(emu::threads::ThreadKind::Control, name.into(), body)
            .map_err(|e| format!("cannot start the {name} thread: {e}"))
    };
    let writer = hub.clone();
    spawn("cove-link-write", Box::new(move || writer.write_loop()))?;
    {
        let (listener, hub, controller) = (listener.clone(), hub.clone(), controller.clone());
        spawn(
            "cove-link-accept",
            Box::new(move || accept::accept_loop(listener, hub, controller, debug)),
        )?;
    }
    if let Some(screen) = &screen {
        let (frames, hub) = (screen.frames().clone(), hub.clone());
        spawn(
            "cove-screen",
            Box::new(move || forward::forward_screen(frames, hub)),
        )?;
    }
    {
        let (events, screen, hub, controller) = (
            controller.subscribe(),
            screen.clone(),
            hub.clone(),
            controller.clone(),
        );
        spawn(
            "cove-vm-events",
            Box::new(move || events::follow(events, screen, hub, controller)),
        )?;
    }
    {
        let (hub, controller, policy) = (hub.clone(), controller.clone(), options.orphan);
        spawn(
            "cove-orphan",
            Box::new(move || orphan::watch(hub, controller, policy)),
        )?;
    }
    log::info!("{name}: running in VM process {}", std::process::id());

    let (failed, text) = match vm.run() {
        Ok(VmExit::PowerOff) => (false, "powered off".to_string()),
        Ok(VmExit::Rebooted) => (false, "rebooted".into()),
        Ok(VmExit::Stopped(_)) => (false, "stopped".into()),
        Ok(VmExit::Failed(report)) => (true, report),
        Err(e) => (true, format!("could not start: {e}")),
    };
    if failed {
        log::error!("{name}: {text}");
    } else {
        log::info!("{name}: {text}");
    }
    hub.set_status(controller.status());
    hub.send(&ToGui::Ended { failed, text }, None);
    hub.flush(Duration::from_secs(2));
    hub.close();
    listener.shutdown();
    if let Some(server) = control {
        server.shutdown();
    }
    drop(lock);
    Ok(u8::from(failed))
}
