//! Debug actions a test asks of a VM process started with `--debug-commands`: draw a test
//! picture as a guest's GPU driver would, make a forbidden system call from a device worker (the
//! sandbox must kill the process and name the call), or abort. Without the flag each is refused
//! with a log line; the app passes the flag only when `COVE_DEBUG_COMMANDS=1` is set.

use super::screen::Screen;
use emu::control::link::DebugAction;
use emu::control::VmController;
use emu::scanout::{PixelFormat, Rect, ScanoutSink, Surface};
use emu::threads::{spawn, ThreadKind};
use std::sync::Arc;

/// Whether debug actions are allowed, and the screen they draw on.
#[derive(Clone)]
pub struct DebugCommands {
    pub enabled: bool,
    pub screen: Option<Arc<Screen>>,
}

impl DebugCommands {
    /// Carries out `action` if allowed.
    pub fn run(&self, action: DebugAction, _controller: &VmController) {
        if !self.enabled {
            log::warn!("refused the debug action {action:?}: this VM process was started without --debug-commands");
            return;
        }
        log::warn!("debug action: {action:?}");
        match action {
            DebugAction::DrawTestFrame => {
                if let Some(screen) = &self.screen {
                    let pixels = [0x80u8; 32];
                    screen.configure(0, Some((4, 2, PixelFormat::Bgrx)));
                    let surface = Surface {
                        width: 4,
                        height: 2,
                        format: PixelFormat::Bgrx,
                        pixels: &pixels,
                    };
                    screen.update(0, &surface, Rect::new(0, 0, 4, 2));
                }
            }
            DebugAction::ForbiddenSyscall => {
                let spawned = spawn(ThreadKind::DeviceWorker, "cove-debug-worker".into(), || {
                    let program = c"/bin/true";
                    let argv = [program.as_ptr(), std::ptr::null()];
                    let envp = [std::ptr::null()];
                    // SAFETY: execve with NUL-terminated strings and NULL-terminated arrays
                    // that live across the call; under the sandbox it never returns.
                    let ret =
                        unsafe { libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
                    log::error!(
                        "the forbidden call was allowed: execve returned {ret} ({})",
                        std::io::Error::last_os_error()
                    );
                });
                if let Err(e) = spawned {
                    log::error!("cannot start the debug worker: {e}");
                }
            }
            DebugAction::Abort => std::process::abort(),
        }
    }
}
