//! The events that reach a running machine, and how a run ends.

use crate::control::ShutdownReason;
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
    /// Pause or resume the vCPUs.
    Pause,
    Resume,
}

/// How one boot of the machine ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    PowerOff,
    /// The machine reset; `guest` says whether the guest asked.
    Reset {
        guest: bool,
    },
    Stopped(ShutdownReason),
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
