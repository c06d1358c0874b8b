//! The VM process's listener: it accepts the app (the one that started it, or one that restarts
//! later) and carries out what the app sends — input, the display size, serial input and the
//! toolbar's commands. Everything from the app is checked; a message that does not decode ends
//! that connection with a log line, never the VM.

use super::debug::DebugCommands;
use super::hub::Hub;
use emu::control::link::{Command, LinkListener, LinkSocket, ToGui, ToVm, MAX_MESSAGE_BYTES};
use emu::control::VmController;
use std::sync::Arc;

/// Accepts apps until the listener is shut down.
pub fn accept_loop(
    listener: Arc<LinkListener>,
    hub: Arc<Hub>,
    controller: VmController,
    debug: DebugCommands,
) {
    loop {
        let socket = match listener.accept() {
            Ok(socket) => socket,
            Err(e) => {
                if !hub.is_closed() {
                    log::warn!("the link stopped accepting: {e}");
                }
                return;
            }
        };
        let Ok(reader) = socket.try_clone() else {
            continue;
        };
        let Some(number) = hub.attach(socket) else {
            continue;
        };
        let (hub, controller, debug) = (hub.clone(), controller.clone(), debug.clone());
        let spawned = std::thread::Builder::new()
            .name("cove-link-read".into())
            .spawn(move || read_loop(&reader, number, &hub, &controller, &debug));
        if let Err(e) = spawned {
            log::error!("cannot read from the app: {e}");
        }
    }
}

fn read_loop(
    socket: &LinkSocket,
    number: u64,
    hub: &Arc<Hub>,
    controller: &VmController,
    debug: &DebugCommands,
) {
    let mut buffer = vec![0u8; MAX_MESSAGE_BYTES];
    let why = loop {
        let received = match socket.receive(&mut buffer) {
            Ok(Some(received)) => received,
            Ok(None) => break "it closed the link".to_string(),
            Err(e) => break format!("reading failed: {e}"),
        };
        if received.fd.is_some() {
            break "it sent a descriptor; the app never does".into();
        }
        match ToVm::decode(&buffer[..received.len]) {
            Ok(message) => apply(message, hub, controller, debug),
            Err(e) => break format!("it sent a bad message: {e}"),
        }
    };
    hub.detach(number, &why);
}

fn apply(message: ToVm, hub: &Arc<Hub>, controller: &VmController, debug: &DebugCommands) {
    let display = controller.display();
    match message {
        ToVm::Keyboard(events) => {
            if let Some(port) = display {
                port.send_keyboard(&events);
            }
        }
        ToVm::Tablet(events) => {
            if let Some(port) = display {
                port.send_tablet(&events);
            }
        }
        ToVm::DisplaySize { width, height } => {
            if let Some(port) = display {
                port.set_display_size(width.clamp(1, 16384), height.clamp(1, 16384));
            }
        }
        ToVm::SerialInput(bytes) => {
            if !controller.serial_input(&bytes) {
                hub.send(
                    &ToGui::Notice("the VM is between boots; input dropped".into()),
                    None,
                );
            }
        }
        ToVm::Command(command) => run_command(command, hub, controller),
        ToVm::Debug(action) => debug.run(action, controller),
    }
}

/// Pause and resume wait for the vCPUs, so they run on a thread of their own: input keeps
/// flowing meanwhile.
fn run_command(command: Command, hub: &Arc<Hub>, controller: &VmController) {
    match command {
        Command::Reset => controller.reset(),
        Command::PowerDown => controller.power_down(),
        Command::Quit => controller.quit(),
        Command::Pause | Command::Resume => {
            let (hub, controller) = (hub.clone(), controller.clone());
            let _ = std::thread::Builder::new()
                .name("cove-link-pause".into())
                .spawn(move || {
                    let result = if command == Command::Pause {
                        controller.pause()
                    } else {
                        controller.resume()
                    };
                    if let Err(e) = result {
                        hub.send(&ToGui::Notice(e), None);
                    }
                });
        }
    }
}
