//! [`VmController`]: commands and queries for one VM, safe from any thread at any time. A
//! command made while the VM is between boots or not yet started takes effect when it can
//! (a pause holds the next boot paused); one made after the VM ended does nothing, and a pause
//! or resume then says so.

use super::screendump::{screendump, ImageFormat};
use crate::config::VmConfig;
use crate::machine::display_port::DisplayPort;
use crate::machine::report::{TimedEvent, VmEvent, VmReport, VmStatus};
use crate::machine::{Vm, VmHandle};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest [`VmController::pause`] and [`VmController::resume`] wait for the vCPUs.
pub const PAUSE_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a waiting pause or resume checks that the VM still exists.
const SETTLE_POLL: Duration = Duration::from_millis(50);

/// One vCPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuInfo {
    /// The vCPU's index, 0-based, as QMP's `cpu-index`.
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
    /// Path of the image file, from the config.
    pub path: PathBuf,
    /// Whether the guest sees the disk read-only.
    pub read_only: bool,
    /// The image format; always `"raw"`.
    pub format: &'static str,
    /// Bytes the guest sees (None when the image cannot be read now).
    pub size: Option<u64>,
    /// The serial number the guest sees, from the config.
    pub serial: Option<String>,
}

/// Commands and queries for one VM. Cheap to clone; every clone controls the same VM.
#[derive(Clone)]
pub struct VmController {
    handle: VmHandle,
    report: Arc<VmReport>,
    display: Option<DisplayPort>,
    config: Arc<VmConfig>,
}

impl Vm {
    /// The control API for this VM (commands, queries, events), for any thread.
    pub fn controller(&self) -> VmController {
        VmController {
            handle: self.handle(),
            report: self.report(),
            display: self.display(),
            config: Arc::new(self.config().clone()),
        }
    }
}

impl VmController {
    /// The display's host side (input, size, snapshots), when the VM has a display.
    pub fn display(&self) -> Option<&DisplayPort> {
        self.display.as_ref()
    }

    /// Writes what the guest's display shows to `path`.
    pub fn screendump(&self, path: &std::path::Path, format: ImageFormat) -> Result<(), String> {
        match &self.display {
            Some(display) => screendump(display, path, format),
            None => Err("this VM has no display".into()),
        }
    }

    /// The VM's name, from its config.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The run status as `query-status` reports it: prelaunch, running, paused, and so on.
    pub fn status(&self) -> VmStatus {
        self.report.status()
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
        self.report.emit(VmEvent::Powerdown);
    }

    /// Turns the VM off now (SHUTDOWN follows).
    pub fn quit(&self) {
        self.handle.quit();
    }

    /// The vCPUs, in index order, with their host thread ids.
    pub fn cpus(&self) -> Vec<CpuInfo> {
        self.report
            .vcpu_threads()
            .into_iter()
            .enumerate()
            .map(|(index, thread_id)| CpuInfo {
                index: index as u8,
                thread_id,
            })
            .collect()
    }

    /// The configured disks, in config order, with their current sizes.
    pub fn block_devices(&self) -> Vec<BlockInfo> {
        self.config
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
        self.report.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::ConsoleOutput;

    fn vm() -> Vm {
        let config =
            VmConfig::from_toml("[boot]\nkind = \"kernel\"\nkernel = \"/k\"\n").expect("config");
        Vm::new(config, ConsoleOutput::new(std::io::sink()))
    }

    /// The VM, not yet booted, acting on what the controller asks (the controller's view of
    /// the machine's lifecycle, moved here from `machine::vm`).
    #[test]
    fn a_pause_before_a_boot_is_acknowledged_after_the_status_and_the_stop_event() {
        let vm = vm();
        let events = vm.controller().subscribe();
        let handle = vm.handle();
        let first = handle.pause();
        let second = handle.pause();
        let mut start_paused = false;
        assert_eq!(vm.pending_events(&mut start_paused), None);
        assert!(start_paused, "the next boot starts paused");
        assert_eq!(first.try_recv(), Ok(Ok(())));
        assert_eq!(second.try_recv(), Ok(Ok(())), "already paused: success");
        assert_eq!(vm.controller().status(), VmStatus::Paused);
        assert_eq!(events.try_recv().map(|e| e.event), Ok(VmEvent::Stop));
        assert!(events.try_recv().is_err(), "one STOP only");

        let resumed = handle.resume();
        assert_eq!(vm.pending_events(&mut start_paused), None);
        assert!(!start_paused);
        assert_eq!(resumed.try_recv(), Ok(Ok(())));
        assert_eq!(vm.controller().status(), VmStatus::Running);
        assert_eq!(events.try_recv().map(|e| e.event), Ok(VmEvent::Resume));
    }

    #[test]
    fn the_controller_returns_once_the_pause_took_effect_with_stop_already_sent() {
        let vm = vm();
        let controller = vm.controller();
        let events = controller.subscribe();
        let asker = std::thread::spawn(move || {
            let result = controller.pause();
            // The STOP event is already queued when pause returns.
            (result, events.try_recv().map(|e| e.event))
        });
        let mut start_paused = false;
        // The VM, between boots, acts on what arrives.
        while !asker.is_finished() {
            assert_eq!(vm.pending_events(&mut start_paused), None);
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let (result, event) = asker.join().expect("asker");
        assert_eq!(result, Ok(()));
        assert_eq!(event, Ok(VmEvent::Stop));
        assert_eq!(vm.controller().status(), VmStatus::Paused);
    }

    #[test]
    fn pause_and_resume_of_an_ended_vm_are_errors() {
        let vm = vm();
        let controller = vm.controller();
        // It ends while a pause waits for its answer.
        let asker = std::thread::spawn(move || controller.pause());
        vm.report().set_status(VmStatus::Shutdown);
        let err = asker.join().expect("asker").unwrap_err();
        assert!(err.contains("ended"), "{err}");
        // Asked after it ended.
        for result in [vm.controller().pause(), vm.controller().resume()] {
            let err = result.unwrap_err();
            assert!(err.contains("it has ended (shutdown)"), "{err}");
        }
        let mut start_paused = false;
        vm.pending_events(&mut start_paused);
        assert!(!start_paused, "no pause was queued after the end");
    }
}
