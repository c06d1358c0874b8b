//! The events that reach a running machine, and how a run ends.

use super::report::ShutdownReason;
use crate::devices::{PowerRequest, PowerSink};
use crate::hypervisor::vcpu::VcpuEvent;
use std::sync::mpsc::Sender;

/// Something the machine's run loop must act on.
#[derive(Debug, Clone)]
pub enum MachineEvent {
    /// From a vCPU thread.
    Vcpu(VcpuEvent),
    /// From a platform device (ACPI, i8042, reset register).
    Power(PowerRequest),
    /// The host asks the VM to stop now (Ctrl-A X, a signal, a control client's quit).
    Stop(ShutdownReason),
    /// The host resets the machine, as a reset button would.
    Reset,
    /// Press the ACPI power button (the guest decides what to do).
    PowerButton,
    /// Pause the vCPUs; the acknowledgement, if any, is answered once every vCPU is parked
    /// (after the STOP event), or with the reason it could not be.
    Pause(Option<Ack>),
    /// Resume the vCPUs; the acknowledgement, if any, is answered once they run again (after
    /// the RESUME event).
    Resume(Option<Ack>),
}

/// Where the VM reports that a pause or resume took effect, or why it did not.
pub type Ack = Sender<Result<(), String>>;

/// Answers an acknowledgement, if there is one. The asker may have given up waiting; that is
/// not an error here.
pub(crate) fn acknowledge(ack: Option<Ack>, result: Result<(), String>) {
    if let Some(ack) = ack {
        let _ = ack.send(result);
    }
}

/// How one boot of the machine ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// The guest powered off (ACPI S5).
    PowerOff,
    /// The machine reset; `guest` says whether the guest asked.
    Reset {
        /// Whether the guest asked (`false`: a control client did).
        guest: bool,
    },
    /// The host stopped the machine (quit, signal, console escape); the reason says which.
    Stopped(ShutdownReason),
    /// A vCPU failed or could not be started; the text says which and why.
    Failed(String),
}

/// How the VM as a whole ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExit {
    /// The guest powered off.
    PowerOff,
    /// The guest rebooted and the VM is set to exit on reboot.
    Rebooted,
    /// The host stopped it.
    Stopped(ShutdownReason),
    /// It could not go on (an unrecoverable emulation failure, a KVM error).
    Failed(String),
}

/// Forwards device power requests into the machine's event channel.
pub struct EventPowerSink(pub Sender<MachineEvent>);

impl PowerSink for EventPowerSink {
    fn request(&self, request: PowerRequest) {
        // The receiver is gone only once the machine has stopped; nothing is left to do then.
        let _ = self.0.send(MachineEvent::Power(request));
    }
}
