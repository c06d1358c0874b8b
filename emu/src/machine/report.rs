//! What a VM publishes about itself: its run status, its vCPU threads, and a broadcast of
//! timed events (status changes, resets, shutdowns, failures). The machine writes it; the
//! control plane and anyone else read it. It knows nothing of its readers.

use parking_lot::Mutex;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::SystemTime;

/// The run status, with QMP's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmStatus {
    /// Not started yet.
    Prelaunch,
    /// The vCPUs run.
    Running,
    /// The vCPUs are parked by a pause (QMP `stop`).
    Paused,
    /// Ended (powered off or quit).
    Shutdown,
    /// Stopped by a failure.
    InternalError,
}

impl VmStatus {
    /// The name QMP's `query-status` uses, e.g. `"running"`.
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

/// Something that happened to the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmEvent {
    /// The vCPUs stopped (a pause).
    Stop,
    /// The vCPUs run again.
    Resume,
    /// The machine reset; `guest` says who asked.
    Reset {
        /// Whether the guest asked (`false`: a control client did).
        guest: bool,
        /// Why, in QMP's words.
        reason: ShutdownReason,
    },
    /// The host pressed the ACPI power button.
    Powerdown,
    /// The VM stopped for good.
    Shutdown {
        /// Whether the guest asked (`false`: the host did).
        guest: bool,
        /// Why, in QMP's words.
        reason: ShutdownReason,
    },
    /// A vCPU met an instruction that neither KVM nor Cove can emulate; the VM stops.
    EmulationFailure {
        /// Index of the vCPU that failed.
        cpu: u8,
        /// The failure report: RIP, instruction bytes, decoded instruction and reason.
        report: String,
    },
}

/// Why a VM shut down or reset, in QMP's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownReason {
    /// The guest powered itself off.
    GuestShutdown,
    /// The guest rebooted.
    GuestReset,
    /// A control client asked to quit.
    HostQuit,
    /// A control client asked for a reset.
    HostReset,
    /// A signal or the console escape stopped the VM.
    HostSignal,
    /// The VM failed (an emulation failure or a KVM error).
    GuestPanic,
}

impl ShutdownReason {
    /// The name QMP uses.
    pub fn qmp_name(self) -> &'static str {
        match self {
            Self::GuestShutdown => "guest-shutdown",
            Self::GuestReset => "guest-reset",
            Self::HostQuit => "host-qmp-quit",
            Self::HostReset => "host-qmp-system-reset",
            Self::HostSignal => "host-signal",
            Self::GuestPanic => "guest-panic",
        }
    }
}

/// An event and when it happened.
#[derive(Debug, Clone)]
pub struct TimedEvent {
    /// What happened to the VM.
    pub event: VmEvent,
    /// When it was emitted, by the host's wall clock.
    pub timestamp: SystemTime,
}

/// Broadcasts events to subscribers; subscribers that went away are forgotten.
#[derive(Default)]
pub struct EventBus {
    subscribers: Mutex<Vec<Sender<TimedEvent>>>,
}

impl EventBus {
    /// A new subscription: every event from now on.
    pub fn subscribe(&self) -> Receiver<TimedEvent> {
        let (sender, receiver) = channel();
        self.subscribers.lock().push(sender);
        receiver
    }

    /// Sends `event`, stamped now, to every live subscriber.
    pub fn emit(&self, event: VmEvent) {
        log::debug!("event: {event:?}");
        let timed = TimedEvent {
            event,
            timestamp: SystemTime::now(),
        };
        self.subscribers
            .lock()
            .retain(|s| s.send(timed.clone()).is_ok());
    }
}

/// The VM's published state. The machine updates it; readers subscribe or query.
pub struct VmReport {
    status: Mutex<VmStatus>,
    events: EventBus,
    vcpu_threads: Mutex<Vec<Option<i32>>>,
}

impl VmReport {
    /// A VM of `cpus` vCPUs that has not started.
    pub fn new(cpus: u8) -> Self {
        Self {
            status: Mutex::new(VmStatus::Prelaunch),
            events: EventBus::default(),
            vcpu_threads: Mutex::new(vec![None; usize::from(cpus)]),
        }
    }

    /// The current run status.
    pub fn status(&self) -> VmStatus {
        *self.status.lock()
    }

    pub(crate) fn set_status(&self, status: VmStatus) {
        *self.status.lock() = status;
    }

    /// Sends `event` to every subscriber.
    pub fn emit(&self, event: VmEvent) {
        self.events.emit(event);
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> Receiver<TimedEvent> {
        self.events.subscribe()
    }

    /// The host thread of each vCPU (None before the first boot started it).
    pub fn vcpu_threads(&self) -> Vec<Option<i32>> {
        self.vcpu_threads.lock().clone()
    }

    pub(crate) fn set_vcpu_thread(&self, index: usize, thread_id: i32) {
        if let Some(slot) = self.vcpu_threads.lock().get_mut(index) {
            *slot = Some(thread_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subscriber_gets_every_event_and_dead_ones_are_dropped() {
        let bus = EventBus::default();
        let a = bus.subscribe();
        let b = bus.subscribe();
        bus.emit(VmEvent::Stop);
        drop(b);
        bus.emit(VmEvent::Resume);
        assert_eq!(a.try_recv().unwrap().event, VmEvent::Stop);
        assert_eq!(a.try_recv().unwrap().event, VmEvent::Resume);
        assert_eq!(bus.subscribers.lock().len(), 1);
    }
}
