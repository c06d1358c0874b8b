//! Runs a built machine: one thread per vCPU, and a loop on the calling thread that acts on
//! power requests, failures and host commands until the machine stops.

use super::builder::Machine;
use super::events::{MachineEvent, RunOutcome};
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
}

impl Machine {
    /// Runs until the guest powers off or resets, a vCPU fails, or the host stops it.
    pub fn run(
        mut self,
        events: &Receiver<MachineEvent>,
        sender: &Sender<MachineEvent>,
        recovery: &Arc<RecoveryStats>,
        on_state: &dyn Fn(RunState),
    ) -> (RunOutcome, RunFigures) {
        install_kick_handler();
        let control = Arc::new(RunControl::default());
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
            let spawned = std::thread::Builder::new()
                .name(format!("cove-vcpu{index}"))
                .spawn(move || run_vcpu(vcpu, ctx));
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
        on_state(RunState::Running);

        let outcome = match outcome {
            Some(o) => o,
            None => self.event_loop(events, &control, &handles, on_state),
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
        (outcome, self.figures())
    }

    fn event_loop(
        &self,
        events: &Receiver<MachineEvent>,
        control: &Arc<RunControl>,
        handles: &[JoinHandle<()>],
        on_state: &dyn Fn(RunState),
    ) -> RunOutcome {
        loop {
            let event = match events.recv() {
                Ok(e) => e,
                Err(_) => return RunOutcome::Stopped,
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
                    return RunOutcome::Reset;
                }
                MachineEvent::Vcpu(VcpuEvent::Failed { cpu, report }) => {
                    log::error!("vCPU {cpu} stopped the VM: {report}");
                    return RunOutcome::Failed(format!("vCPU {cpu}: {report}"));
                }
                MachineEvent::Stop => return RunOutcome::Stopped,
                MachineEvent::PowerButton => {
                    log::info!("pressing the ACPI power button");
                    self.acpi_pm
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .press_power_button();
                }
                MachineEvent::Pause => {
                    control.set_state(RunState::Paused);
                    let live = handles.iter().filter(|h| !h.is_finished()).count();
                    if !kick_until(handles, ACK_TIMEOUT, || control.parked() >= live) {
                        log::warn!("not every vCPU acknowledged the pause");
                    }
                    on_state(RunState::Paused);
                }
                MachineEvent::Resume => {
                    control.set_state(RunState::Running);
                    on_state(RunState::Running);
                }
            }
        }
    }

    fn figures(&self) -> RunFigures {
        let sum = |name: &str| self.vcpu_stats.iter().filter_map(|s| s.read(name)).sum();
        RunFigures {
            kvm_emulated_instructions: sum("insn_emulation"),
            kvm_exits: sum("exits"),
        }
    }
}
