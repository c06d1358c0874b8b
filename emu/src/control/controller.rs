//! [`VmController`]: commands and queries for one VM, safe from any thread at any time. A
//! command made while the VM is between boots or not yet started takes effect when it can
//! (a pause holds the next boot paused); one made after the VM ended does nothing, and a pause
//! or resume then says so.

use super::events::{EventBus, TimedEvent};
use crate::config::VmConfig;
use crate::machine::display_port::{DisplayPort, ImageFormat};
use crate::machine::VmHandle;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest [`VmController::pause`] and [`VmController::resume`] wait for the vCPUs.
pub const PAUSE_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a waiting pause or resume checks that the VM still exists.
const SETTLE_POLL: Duration = Duration::from_millis(50);

/// The run status, with QMP's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmStatus {
    /// Not started yet.
    Prelaunch,
    Running,
    Paused,
    /// Ended (powered off or quit).
    Shutdown,
    /// Stopped by a failure.
    InternalError,
}

impl VmStatus {
    pub fn qmp_name(self) -> &'static str {
        match self {
            Self::Prelaunch => "prelaunch",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Shutdown => "shutdown",
            Self::InternalError => "internal-error",
        }
    }
}

/// One vCPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuInfo {
    pub index: u8,
    /// The host thread running it (the last boot's, during a reboot); None before the first
    /// boot started it.
    pub thread_id: Option<i32>,
}

/// One disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockInfo {
    /// The name clients use ("disk0", "disk1", ...).
    pub device: String,
    pub path: PathBuf,
    pub read_only: bool,
    pub format: &'static str,
    /// Bytes the guest sees (None when the image cannot be read now).
    pub size: Option<u64>,
    pub serial: Option<String>,
}

/// State the VM updates and the controller reads.
pub(crate) struct ControlState {
    pub(crate) status: Mutex<VmStatus>,
    pub(crate) events: EventBus,
    pub(crate) vcpu_threads: Mutex<Vec<Option<i32>>>,
    config: VmConfig,
}

impl ControlState {
    pub(crate) fn new(config: &VmConfig) -> Self {
        Self {
            status: Mutex::new(VmStatus::Prelaunch),
            events: EventBus::default(),
            vcpu_threads: Mutex::new(vec![None; usize::from(config.cpus)]),
            config: config.clone(),
        }
    }

    pub(crate) fn set_status(&self, status: VmStatus) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }
}

/// Commands and queries for one VM. Cheap to clone; every clone controls the same VM.
#[derive(Clone)]
pub struct VmController {
    handle: VmHandle,
    state: Arc<ControlState>,
    display: Option<DisplayPort>,
}

impl VmController {
    pub(crate) fn new(
        handle: VmHandle,
        state: Arc<ControlState>,
        display: Option<DisplayPort>,
    ) -> Self {
        Self {
            handle,
            state,
            display,
        }
    }

    /// The display's host side (input, size, snapshots), when the VM has a display.
    pub fn display(&self) -> Option<&DisplayPort> {
        self.display.as_ref()
    }

    /// Writes what the guest's display shows to `path`.
    pub fn screendump(&self, path: &std::path::Path, format: ImageFormat) -> Result<(), String> {
        match &self.display {
            Some(display) => display.screendump(path, format),
            None => Err("this VM has no display".into()),
        }
    }

    pub fn name(&self) -> &str {
        &self.state.config.name
    }

    pub fn status(&self) -> VmStatus {
        *self.state.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pauses the vCPUs and returns once every one is parked, the status says paused and the
    /// STOP event has gone out. A pause before the first boot or during a reboot holds the
    /// next boot paused and returns at once. Already paused: success, no event. Errors when
    /// the VM has ended, or when a vCPU did not stop within [`PAUSE_TIMEOUT`] (the VM then
    /// keeps running).
    pub fn pause(&self) -> Result<(), String> {
        self.ensure_alive("pause")?;
        self.settle(self.handle.pause(), "pause")
    }

    /// Resumes the vCPUs and returns once they run, the status says running and the RESUME
    /// event has gone out. Already running: success, no event. Errors as [`Self::pause`] does.
    pub fn resume(&self) -> Result<(), String> {
        self.ensure_alive("resume")?;
        self.settle(self.handle.resume(), "resume")
    }

    fn ensure_alive(&self, what: &str) -> Result<(), String> {
        match self.status() {
            VmStatus::Shutdown | VmStatus::InternalError => Err(format!(
                "cannot {what} the VM: it has ended ({})",
                self.status().qmp_name()
            )),
            _ => Ok(()),
        }
    }

    /// Waits for the VM's answer to a pause or resume, for at most [`PAUSE_TIMEOUT`]; a VM that
    /// ends meanwhile is an error at once.
    fn settle(&self, outcome: Receiver<Result<(), String>>, what: &str) -> Result<(), String> {
        let deadline = Instant::now() + PAUSE_TIMEOUT;
        loop {
            match outcome.recv_timeout(SETTLE_POLL) {
                Ok(result) => return result,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("cannot {what} the VM: it has ended"))
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.ensure_alive(what)?;
            if Instant::now() >= deadline {
                return Err(format!(
                    "the VM did not {what} within {} s",
                    PAUSE_TIMEOUT.as_secs()
                ));
            }
        }
    }

    /// Resets the machine as a reset button would (RESET follows).
    pub fn reset(&self) {
        self.handle.reset();
    }

    /// Presses the ACPI power button; the guest decides (POWERDOWN follows at once).
    pub fn power_down(&self) {
        self.handle.power_button();
        // As QEMU does, the event reports the request, whatever the guest makes of it.
        self.state.events.emit(super::VmEvent::Powerdown);
    }

    /// Turns the VM off now (SHUTDOWN follows).
    pub fn quit(&self) {
        self.handle.quit();
    }

    pub fn cpus(&self) -> Vec<CpuInfo> {
        let threads = self
            .state
            .vcpu_threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        threads
            .into_iter()
            .enumerate()
            .map(|(index, thread_id)| CpuInfo {
                index: index as u8,
                thread_id,
            })
            .collect()
    }

    pub fn block_devices(&self) -> Vec<BlockInfo> {
        self.state
            .config
            .disks
            .iter()
            .enumerate()
            .map(|(index, disk)| BlockInfo {
                device: format!("disk{index}"),
                path: disk.path.clone(),
                read_only: disk.read_only,
                format: "raw",
                size: std::fs::metadata(&disk.path)
                    .ok()
                    .map(|m| m.len() / 512 * 512),
                serial: disk.serial.clone(),
            })
            .collect()
    }

    /// Types `bytes` into the guest's serial console; false between boots (dropped).
    pub fn serial_input(&self, bytes: &[u8]) -> bool {
        self.handle.serial_input(bytes)
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> Receiver<TimedEvent> {
        self.state.events.subscribe()
    }
}
