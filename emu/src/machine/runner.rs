//! Runs a built machine: one thread per vCPU, and a loop on the calling thread that acts on
//! power requests, failures and host commands until the machine stops.

use super::builder::Machine;
use super::events::{MachineEvent, RunOutcome};
use crate::control::controller::ControlState;
use crate::control::{ShutdownReason, VmEvent};
use crate::devices::PowerRequest;
use crate::hypervisor::emulation::RecoveryStats;
use crate::hypervisor::run_control::{install_kick_handler, kick_until, RunControl, RunState};
use crate::hypervisor::vcpu::{run_vcpu, VcpuContext, VcpuEvent};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long to wait for vCPU threads to acknowledge a pause or a stop.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Figures from one run of a machine.
#[derive(Debug, Clone, Default)]
pub struct RunFigures {
    /// Instructions KVM's in-kernel emulator ran (KVM statistic `insn_emulation`).
    pub kvm_emulated_instructions: u64,
    /// vCPU exits to KVM (KVM statistic `exits`).
    pub kvm_exits: u64,
    /// Whether the vCPUs were paused when the run ended (a reset keeps a paused VM paused).
    pub ended_paused: bool,
}

impl Machine {
    /// Runs until the guest powers off or resets, a vCPU fails, or the host stops it.
    pub(crate) fn run(
        mut self,
        events: &Receiver<MachineEvent>,
        sender: &Sender<MachineEvent>,
        recovery: &Arc<RecoveryStats>,
        state: &Arc<ControlState>,
        start_paused: bool,
        on_state: &dyn Fn(RunState),
    ) -> (RunOutcome, RunFigures) {
        install_kick_handler();
        let control = Arc::new(RunControl::default());
        if start_paused {
            control.set_state(RunState::Paused);
        }
        let mut handles: Vec<JoinHandle<()>> = Vec::new();
        let mut outcome = None;
        for (index, vcpu) in self.vcpus.drain(..).enumerate() {
            let tx = sender.clone();
            let ctx = VcpuContext {
                index: index as u8,
                pio: self.pio.clone(),
                mmio: self.mmio.clone(),
                memory: self.memory.clone(),
                control: control.clone(),
                recovery: recovery.clone(),
                events: Arc::new(move |e| {
                    let _ = tx.send(MachineEvent::Vcpu(e));
                }),
            };
            let threads = state.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("cove-vcpu{index}"))
                .spawn(move || {
                    // SAFETY: gettid has no preconditions and cannot fail.
                    let tid = unsafe { libc::gettid() };
                    if let Some(slot) = threads
                        .vcpu_threads
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_mut(index)
                    {
                        *slot = Some(tid);
                    }
                    run_vcpu(vcpu, ctx)
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    outcome = Some(RunOutcome::Failed(format!(
                        "cannot start vCPU thread {index}: {e}"
                    )));
                    break;
                }
            }
        }
        on_state(control.state());

        let mut paused = start_paused;
        let outcome = match outcome {
            Some(o) => o,
            None => self.event_loop(events, &control, &handles, state, &mut paused, on_state),
        };

        control.set_state(RunState::Stopping);
        if !kick_until(&handles, ACK_TIMEOUT, || {
            handles.iter().all(|h| h.is_finished())
        }) {
            log::error!("vCPU threads did not stop within {ACK_TIMEOUT:?}");
        }
        for h in handles {
            if h.join().is_err() {
                log::error!("a vCPU thread panicked");
            }
        }
        if let Some(pit) = &self.pit {
            pit.lock().unwrap_or_else(|e| e.into_inner()).stop();
        }
        on_state(RunState::Stopping);
        let mut figures = self.figures();
        figures.ended_paused = paused;
        (outcome, figures)
    }

    fn event_loop(
        &self,
        events: &Receiver<MachineEvent>,
        control: &Arc<RunControl>,
        handles: &[JoinHandle<()>],
        state: &ControlState,
        paused: &mut bool,
        on_state: &dyn Fn(RunState),
    ) -> RunOutcome {
        loop {
            let event = match events.recv() {
                Ok(e) => e,
                Err(_) => return RunOutcome::Stopped(ShutdownReason::HostSignal),
            };
            match event {
                MachineEvent::Power(PowerRequest::PowerOff)
                | MachineEvent::Vcpu(VcpuEvent::Power(PowerRequest::PowerOff)) => {
                    log::info!("guest powered off");
                    return RunOutcome::PowerOff;
                }
                MachineEvent::Power(PowerRequest::Reset)
                | MachineEvent::Vcpu(VcpuEvent::Power(PowerRequest::Reset)) => {
                    log::info!("guest reset");
                    return RunOutcome::Reset { guest: true };
                }
                MachineEvent::Reset => {
                    log::info!("reset by the host");
                    return RunOutcome::Reset { guest: false };
                }
                MachineEvent::Vcpu(VcpuEvent::Failed { cpu, report }) => {
                    log::error!("vCPU {cpu} stopped the VM: {report}");
                    state.events.emit(VmEvent::EmulationFailure {
                        cpu,
                        report: report.clone(),
                    });
                    return RunOutcome::Failed(format!("vCPU {cpu}: {report}"));
                }
                MachineEvent::Stop(reason) => return RunOutcome::Stopped(reason),
                MachineEvent::PowerButton => {
                    log::info!("pressing the ACPI power button");
                    self.acpi_pm
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .press_power_button();
                }
                MachineEvent::Pause => {
                    if *paused {
                        continue;
                    }
                    control.set_state(RunState::Paused);
                    let live = handles.iter().filter(|h| !h.is_finished()).count();
                    if !kick_until(handles, ACK_TIMEOUT, || control.parked() >= live) {
                        log::warn!("not every vCPU acknowledged the pause");
                    }
                    *paused = true;
                    on_state(RunState::Paused);
                    state.events.emit(VmEvent::Stop);
                }
                MachineEvent::Resume => {
                    if !*paused {
                        continue;
                    }
                    control.set_state(RunState::Running);
                    *paused = false;
                    on_state(RunState::Running);
                    state.events.emit(VmEvent::Resume);
                }
            }
        }
    }

    fn figures(&self) -> RunFigures {
        let sum = |name: &str| self.vcpu_stats.iter().filter_map(|s| s.read(name)).sum();
        RunFigures {
            kvm_emulated_instructions: sum("insn_emulation"),
            kvm_exits: sum("exits"),
            ended_paused: false,
        }
    }
}
