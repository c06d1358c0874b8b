//! Follows the VM's events for the app: a reset blanks the shared screen at once (unless the
//! next boot already set a mode) and is announced, so the app marks its serial log; status
//! changes (running, paused, shut down) are passed on as they happen.

use super::hub::Hub;
use super::screen::Screen;
use emu::control::link::ToGui;
use emu::control::{TimedEvent, VmController, VmEvent};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// Runs until the VM's event stream ends or the hub closes.
pub fn follow(
    events: Receiver<TimedEvent>,
    screen: Option<Arc<Screen>>,
    hub: Arc<Hub>,
    controller: VmController,
) {
    while !hub.is_closed() {
        match events.recv_timeout(Duration::from_millis(100)) {
            Ok(TimedEvent {
                event: VmEvent::Reset { .. },
                timestamp,
            }) => {
                if let Some(screen) = &screen {
                    screen.clear_after_reset(timestamp);
                }
                hub.send(&ToGui::Reset, None);
            }
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        hub.set_status(controller.status());
    }
}
