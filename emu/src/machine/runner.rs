//! Runs a built machine: one thread per vCPU, and a loop on the calling thread that acts on
//! power requests, failures and host commands until the machine stops.

use super::builder::Machine;
use super::events::{acknowledge, MachineEvent, RunOutcome};
use super::report::{ShutdownReason, VmEvent, VmReport};
use crate::devices::PowerRequest;
use crate::hypervisor::emulation::RecoveryStats;
use crate::hypervisor::run_control::{install_kick_handler, kick_until, RunControl, RunState};
use crate::hypervisor::vcpu::{run_vcpu, VcpuContext, VcpuEvent};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long to wait for vCPU threads to acknowledge a pause, a resume or a stop.
pub(crate) const ACK_TIMEOUT: Duration = Duration::from_secs(10);

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
        report: &Arc<VmReport>,
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
            let threads = report.clone();
            let spawned = crate::threads::spawn(
                crate::threads::ThreadKind::Vcpu,
                format!("cove-vcpu{index}"),
                move || {
                    // SAFETY: gettid has no preconditions and cannot fail.
                    let tid = unsafe { libc::gettid() };
                    threads.set_vcpu_thread(index, tid);
                    run_vcpu(vcpu, ctx)
                },
            );
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
            None => self.event_loop(events, &control, &handles, report, &mut paused, on_state),
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
            pit.lock().stop();
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
        vm_report: &VmReport,
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
                    vm_report.emit(VmEvent::EmulationFailure {
                        cpu,
                        report: report.clone(),
                    });
                    return RunOutcome::Failed(format!("vCPU {cpu}: {report}"));
                }
                MachineEvent::Stop(reason) => return RunOutcome::Stopped(reason),
                MachineEvent::PowerButton => {
                    log::info!("pressing the ACPI power button");
                    self.acpi_pm.lock().press_power_button();
                }
                MachineEvent::Pause(ack) => {
                    let result = if *paused {
                        Ok(())
                    } else {
                        park(control, handles, ACK_TIMEOUT).map(|()| {
                            *paused = true;
                            on_state(RunState::Paused);
                            vm_report.emit(VmEvent::Stop);
                        })
                    };
                    acknowledge(ack, result);
                }
                MachineEvent::Resume(ack) => {
                    let result = if *paused {
                        let woken = unpark(control, ACK_TIMEOUT);
                        *paused = false;
                        on_state(RunState::Running);
                        vm_report.emit(VmEvent::Resume);
                        woken
                    } else {
                        Ok(())
                    };
                    acknowledge(ack, result);
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

/// Parks every live vCPU thread (kicking each out of the guest), within `timeout`. When one
/// does not stop in time the pause is undone, so the VM is either wholly paused or running.
fn park(control: &RunControl, handles: &[JoinHandle<()>], timeout: Duration) -> Result<(), String> {
    control.set_state(RunState::Paused);
    let live = || handles.iter().filter(|h| !h.is_finished()).count();
    if kick_until(handles, timeout, || control.parked() >= live()) {
        return Ok(());
    }
    let (parked, live) = (control.parked(), live());
    control.set_state(RunState::Running);
    Err(format!(
        "only {parked} of {live} vCPUs stopped within {} s; the VM keeps running",
        timeout.as_secs_f32()
    ))
}

/// Lets parked vCPU threads run again and waits, within `timeout`, until none is parked.
fn unpark(control: &RunControl, timeout: Duration) -> Result<(), String> {
    control.set_state(RunState::Running);
    let deadline = std::time::Instant::now() + timeout;
    while control.parked() > 0 {
        if std::time::Instant::now() >= deadline {
            return Err(format!(
                "{} vCPUs still parked {} s after the resume",
                control.parked(),
                timeout.as_secs_f32()
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A thread that behaves as a vCPU does at its checkpoints, without a guest.
    fn fake_vcpu(control: &Arc<RunControl>) -> JoinHandle<()> {
        let control = control.clone();
        std::thread::spawn(move || {
            while control.checkpoint() {
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    }

    #[test]
    fn park_returns_once_every_vcpu_is_parked_and_unpark_once_none_is() {
        install_kick_handler();
        let control = Arc::new(RunControl::default());
        let handles: Vec<_> = (0..3).map(|_| fake_vcpu(&control)).collect();
        for _ in 0..20 {
            park(&control, &handles, Duration::from_secs(10)).unwrap();
            assert_eq!(control.parked(), 3);
            assert_eq!(control.state(), RunState::Paused);
            unpark(&control, Duration::from_secs(10)).unwrap();
            assert_eq!(control.parked(), 0);
        }
        control.set_state(RunState::Stopping);
        for h in handles {
            h.join().unwrap();
        }
    }

    #[test]
    fn a_vcpu_that_does_not_stop_fails_the_pause_and_the_vm_runs_on() {
        install_kick_handler();
        let control = Arc::new(RunControl::default());
        let good = fake_vcpu(&control);
        // A vCPU stuck outside its checkpoint (a long device access, say).
        let release = Arc::new(AtomicBool::new(false));
        let stuck = {
            let release = release.clone();
            let control = control.clone();
            std::thread::spawn(move || {
                while !release.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                while control.checkpoint() {}
            })
        };
        let handles = vec![good, stuck];
        let err = park(&control, &handles, Duration::from_millis(200)).unwrap_err();
        assert!(err.contains("only 1 of 2 vCPUs stopped"), "{err}");
        assert_eq!(control.state(), RunState::Running, "the pause was undone");
        release.store(true, Ordering::Release);
        control.set_state(RunState::Stopping);
        for h in handles {
            h.join().unwrap();
        }
    }
}
