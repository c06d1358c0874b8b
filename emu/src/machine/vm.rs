//! A VM across its whole life: it builds a machine, runs it, and on a guest reboot builds a fresh
//! one (or stops, if so configured). [`VmHandle`] lets other threads stop it, pause it and type
//! into its serial console at any time.

use super::builder::{build_machine, BuildError};
use super::console::ConsoleOutput;
use super::display_port::DisplayPort;
use super::events::{acknowledge, MachineEvent, RunOutcome, VmExit};
use super::report::{ShutdownReason, VmEvent, VmReport, VmStatus};
use crate::config::{RebootAction, VmConfig};
use crate::devices::serial::Serial;
use crate::hypervisor::emulation::RecoveryStats;
use crate::hypervisor::run_control::RunState;
use parking_lot::Mutex;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

type SerialSlot = Arc<Mutex<Option<Arc<Mutex<Serial>>>>>;

/// Counters over the VM's life, across reboots.
#[derive(Debug, Clone, Default)]
pub struct VmStatistics {
    /// Times the machine was built and started.
    pub boots: u64,
    /// Instructions recovered after KVM emulation failures, by kind.
    pub recovered_instructions: Vec<(&'static str, u64)>,
    /// Instructions KVM's in-kernel emulator ran.
    pub kvm_emulated_instructions: u64,
    /// vCPU exits.
    pub kvm_exits: u64,
}

/// A VM and its lifecycle.
pub struct Vm {
    config: VmConfig,
    console: ConsoleOutput,
    sender: Sender<MachineEvent>,
    events: Receiver<MachineEvent>,
    serial: SerialSlot,
    state: Arc<Mutex<Option<RunState>>>,
    recovery: Arc<RecoveryStats>,
    stats: VmStatistics,
    report: Arc<VmReport>,
    display: Option<DisplayPort>,
}

impl Vm {
    /// A VM for `config` that has not booted yet; its serial output goes to `console`.
    pub fn new(config: VmConfig, console: ConsoleOutput) -> Self {
        let (sender, events) = channel();
        Self {
            console,
            sender,
            events,
            serial: Arc::new(Mutex::new(None)),
            state: Arc::new(Mutex::new(None)),
            recovery: Arc::new(RecoveryStats::default()),
            stats: VmStatistics::default(),
            report: Arc::new(VmReport::new(config.cpus)),
            display: display_port(&config),
            config,
        }
    }

    /// What the VM publishes: its status, vCPU threads and events.
    pub fn report(&self) -> Arc<VmReport> {
        self.report.clone()
    }

    /// The config the VM was created with.
    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    /// The display hardware's host side, when the VM has a display.
    pub fn display(&self) -> Option<DisplayPort> {
        self.display.clone()
    }

    /// A handle for other threads.
    pub fn handle(&self) -> VmHandle {
        VmHandle {
            sender: self.sender.clone(),
            serial: self.serial.clone(),
            state: self.state.clone(),
        }
    }

    /// The counters so far, with the recovered-instruction counts read now.
    pub fn statistics(&self) -> VmStatistics {
        let mut stats = self.stats.clone();
        stats.recovered_instructions = self.recovery.snapshot();
        stats
    }

    /// Boots the VM and runs it until it powers off, is stopped, fails, or reboots with
    /// [`RebootAction::Exit`]. Errors only when a machine cannot be built.
    pub fn run(&mut self) -> Result<VmExit, BuildError> {
        let exit = self.run_boots();
        let (status, event) = match &exit {
            Ok(VmExit::PowerOff) => (
                VmStatus::Shutdown,
                Some((true, ShutdownReason::GuestShutdown)),
            ),
            Ok(VmExit::Rebooted) => (VmStatus::Shutdown, Some((true, ShutdownReason::GuestReset))),
            Ok(VmExit::Stopped(reason)) => (VmStatus::Shutdown, Some((false, *reason))),
            Ok(VmExit::Failed(_)) => (
                VmStatus::InternalError,
                Some((false, ShutdownReason::GuestPanic)),
            ),
            Err(_) => (VmStatus::InternalError, None),
        };
        self.report.set_status(status);
        if let Some((guest, reason)) = event {
            self.report.emit(VmEvent::Shutdown { guest, reason });
        }
        exit
    }

    fn run_boots(&mut self) -> Result<VmExit, BuildError> {
        let mut start_paused = false;
        loop {
            let machine = build_machine(
                &self.config,
                &self.console,
                &self.sender,
                self.display.as_ref(),
            )?;
            if let Some(port) = &self.display {
                port.set_gpu(machine.gpu.clone());
            }
            if let Some(reason) = self.pending_events(&mut start_paused) {
                return Ok(VmExit::Stopped(reason));
            }
            *self.serial.lock() = Some(machine.serial.clone());
            self.stats.boots += 1;
            let state = self.state.clone();
            let report = self.report.clone();
            let (outcome, figures) = machine.run(
                &self.events,
                &self.sender,
                &self.recovery,
                &self.report,
                start_paused,
                &move |s| {
                    *state.lock() = Some(s);
                    match s {
                        RunState::Running => report.set_status(VmStatus::Running),
                        RunState::Paused => report.set_status(VmStatus::Paused),
                        RunState::Stopping => {}
                    }
                },
            );
            *self.serial.lock() = None;
            *self.state.lock() = None;
            if let Some(port) = &self.display {
                port.set_gpu(None);
            }
            self.stats.kvm_emulated_instructions += figures.kvm_emulated_instructions;
            self.stats.kvm_exits += figures.kvm_exits;
            start_paused = figures.ended_paused;
            match outcome {
                RunOutcome::PowerOff => return Ok(VmExit::PowerOff),
                RunOutcome::Stopped(reason) => return Ok(VmExit::Stopped(reason)),
                RunOutcome::Failed(report) => {
                    return Ok(VmExit::Failed(report + &self.failure_hint()))
                }
                RunOutcome::Reset { guest: true }
                    if self.config.on_reboot == RebootAction::Exit =>
                {
                    return Ok(VmExit::Rebooted)
                }
                RunOutcome::Reset { guest } => {
                    log::info!("restarting VM '{}'", self.config.name);
                    let reason = if guest {
                        ShutdownReason::GuestReset
                    } else {
                        ShutdownReason::HostReset
                    };
                    self.report.emit(VmEvent::Reset { guest, reason });
                }
            }
        }
    }

    /// Advice for a failure Cove can explain: on nested KVM, a bzImage's decompressor uses
    /// instructions the host cannot emulate.
    fn failure_hint(&self) -> String {
        let crate::config::BootSource::Kernel { kernel, .. } = &self.config.boot else {
            return String::new();
        };
        let bzimage = std::fs::File::open(kernel).ok().and_then(|mut f| {
            crate::arch::x86_64::boot::detect_format(&mut f)
                .ok()
                .flatten()
        }) == Some(crate::arch::x86_64::boot::KernelFormat::BzImage);
        let pvm = crate::host::HostProfile::resolve(self.config.host_profile)
            == crate::host::HostProfile::Pvm;
        if bzimage && pvm {
            " (this host emulates all guest kernel code and cannot run a bzImage's decompressor: \
             boot the uncompressed ELF vmlinux instead, e.g. from the kernel tree's \
             scripts/extract-vmlinux)"
                .to_string()
        } else {
            String::new()
        }
    }

    /// Acts on host commands that arrived while no machine ran (before the first boot or during
    /// a reboot): a stop ends the VM, a pause or resume decides how the next boot starts (and
    /// is acknowledged at once, the status and event already set), a power-button press goes
    /// to the new machine, and a reset is already done. Guest requests left over from the last
    /// boot (a second vCPU's reset, say) are dropped.
    pub(crate) fn pending_events(&self, start_paused: &mut bool) -> Option<ShutdownReason> {
        let mut stop = None;
        let mut power_button = false;
        while let Ok(event) = self.events.try_recv() {
            let ended = matches!(
                self.report.status(),
                VmStatus::Shutdown | VmStatus::InternalError
            );
            match event {
                MachineEvent::Stop(reason) => stop = Some(reason),
                // A pause or resume still queued when the VM has ended is answered, not obeyed:
                // the status stays what the end made it.
                MachineEvent::Pause(ack) | MachineEvent::Resume(ack) if ended => {
                    acknowledge(ack, Err("the VM has ended".into()));
                }
                MachineEvent::Pause(ack) => {
                    if !*start_paused {
                        *start_paused = true;
                        self.report.set_status(VmStatus::Paused);
                        self.report.emit(VmEvent::Stop);
                    }
                    acknowledge(ack, Ok(()));
                }
                MachineEvent::Resume(ack) => {
                    if *start_paused {
                        *start_paused = false;
                        self.report.set_status(VmStatus::Running);
                        self.report.emit(VmEvent::Resume);
                    }
                    acknowledge(ack, Ok(()));
                }
                MachineEvent::Reset => self.report.emit(VmEvent::Reset {
                    guest: false,
                    reason: ShutdownReason::HostReset,
                }),
                MachineEvent::PowerButton => power_button = true,
                _ => {}
            }
        }
        if power_button && stop.is_none() {
            let _ = self.sender.send(MachineEvent::PowerButton);
        }
        stop
    }
}

/// The display port of a VM with a display.
fn display_port(config: &VmConfig) -> Option<DisplayPort> {
    if !config.display.enabled {
        return None;
    }
    match DisplayPort::new(config.display.width, config.display.height) {
        Ok(port) => Some(port),
        Err(e) => {
            log::error!(
                "cannot set up the display's input queues: {e}; the VM runs without a display"
            );
            None
        }
    }
}

/// Controls a running [`Vm`] from any thread.
#[derive(Clone)]
pub struct VmHandle {
    sender: Sender<MachineEvent>,
    serial: SerialSlot,
    state: Arc<Mutex<Option<RunState>>>,
}

impl VmHandle {
    /// Stops the VM now (no guest shutdown), because of a signal or the console escape.
    pub fn stop(&self) {
        let _ = self
            .sender
            .send(MachineEvent::Stop(ShutdownReason::HostSignal));
    }
    /// Stops the VM now at a control client's request.
    pub fn quit(&self) {
        let _ = self
            .sender
            .send(MachineEvent::Stop(ShutdownReason::HostQuit));
    }
    /// Resets the machine, as a reset button would.
    pub fn reset(&self) {
        let _ = self.sender.send(MachineEvent::Reset);
    }
    /// Presses the ACPI power button: a polite request the guest may act on.
    pub fn power_button(&self) {
        let _ = self.sender.send(MachineEvent::PowerButton);
    }
    /// Asks for the vCPUs to pause. The receiver gets the outcome once every vCPU is parked
    /// (or why not); it is disconnected, unanswered, when the VM is gone.
    pub fn pause(&self) -> Receiver<Result<(), String>> {
        let (ack, outcome) = channel();
        let _ = self.sender.send(MachineEvent::Pause(Some(ack)));
        outcome
    }
    /// Asks for the vCPUs to run again; the receiver gets the outcome, as for [`Self::pause`].
    pub fn resume(&self) -> Receiver<Result<(), String>> {
        let (ack, outcome) = channel();
        let _ = self.sender.send(MachineEvent::Resume(Some(ack)));
        outcome
    }
    /// Whether the vCPUs run, are paused, or the VM is between boots (`None`).
    pub fn run_state(&self) -> Option<RunState> {
        *self.state.lock()
    }
    /// Types `bytes` into the guest's serial console. Returns false when no machine is running
    /// (between reboots), in which case the input is dropped.
    pub fn serial_input(&self, bytes: &[u8]) -> bool {
        match self.serial.lock().as_ref() {
            Some(serial) => {
                serial.lock().enqueue_input(bytes);
                true
            }
            None => false,
        }
    }
    /// Sends a break condition on the serial line (magic SysRq on Linux guests).
    pub fn serial_break(&self) -> bool {
        match self.serial.lock().as_ref() {
            Some(serial) => {
                serial.lock().send_break();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_is_disconnected_when_the_vm_is_gone() {
        let config =
            VmConfig::from_toml("[boot]\nkind = \"kernel\"\nkernel = \"/k\"\n").expect("config");
        let vm = Vm::new(config, ConsoleOutput::new(std::io::sink()));
        let handle = vm.handle();
        drop(vm);
        assert!(handle.pause().recv().is_err());
    }
}
