//! virtio-input: a keyboard and a tablet (absolute pointer with buttons and wheel). The host
//! side pushes evdev events into an [`InputQueue`]; the device's worker moves them, in order,
//! into the buffers the driver made available on the event queue.

pub mod config;

use super::queue_service::serve_queue;
use super::{device_type, features, ActivateError, Activation, Service, VirtioDevice};
use crate::virtio::chain::SegmentCursor;
use config::InputConfig;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use virtio_queue::{QueueOwnedT, QueueT};
use vmm_sys_util::eventfd::EventFd;

const QUEUE_SIZE: u16 = 64;
/// Events held while the guest takes none; beyond this the oldest are dropped.
const MAX_PENDING: usize = 4096;

/// evdev event types and codes Cove uses.
pub mod evdev {
    /// Event type: end of a frame of events.
    pub const EV_SYN: u16 = 0x00;
    /// Event type: key or button press (value 1) or release (0).
    pub const EV_KEY: u16 = 0x01;
    /// Event type: relative axis motion (wheels).
    pub const EV_REL: u16 = 0x02;
    /// Event type: absolute axis position (the tablet).
    pub const EV_ABS: u16 = 0x03;
    /// `EV_SYN` code: the frame is complete.
    pub const SYN_REPORT: u16 = 0;
    /// `EV_REL` code: horizontal wheel.
    pub const REL_HWHEEL: u16 = 0x06;
    /// `EV_REL` code: vertical wheel.
    pub const REL_WHEEL: u16 = 0x08;
    /// `EV_ABS` code: X axis, 0 to [`TABLET_MAX`].
    pub const ABS_X: u16 = 0x00;
    /// `EV_ABS` code: Y axis, 0 to [`TABLET_MAX`].
    pub const ABS_Y: u16 = 0x01;
    /// Left mouse button.
    pub const BTN_LEFT: u16 = 0x110;
    /// Right mouse button.
    pub const BTN_RIGHT: u16 = 0x111;
    /// Middle mouse button.
    pub const BTN_MIDDLE: u16 = 0x112;
    /// Side (back) mouse button.
    pub const BTN_SIDE: u16 = 0x113;
    /// Extra (forward) mouse button.
    pub const BTN_EXTRA: u16 = 0x114;
    /// The highest keyboard key code offered.
    pub const KEY_MAX_KEYBOARD: u16 = 0x2ff;
    /// The tablet's absolute range on both axes.
    pub const TABLET_MAX: u32 = 0x7fff;
}

/// One evdev event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputEvent {
    /// Event type, one of the `EV_*` constants.
    pub kind: u16,
    /// Key, button or axis code, meaning depends on `kind`.
    pub code: u16,
    /// Key state, axis position or relative motion (two's complement for negative).
    pub value: u32,
}

impl InputEvent {
    /// An event of type `kind` with `code` and `value`.
    pub fn new(kind: u16, code: u16, value: u32) -> Self {
        Self { kind, code, value }
    }

    /// A key or button event: value 1 when `pressed`, 0 when released.
    pub fn key(code: u16, pressed: bool) -> Self {
        Self::new(evdev::EV_KEY, code, u32::from(pressed))
    }

    /// `EV_SYN`/`SYN_REPORT`, ending a frame of events.
    pub fn sync() -> Self {
        Self::new(evdev::EV_SYN, evdev::SYN_REPORT, 0)
    }

    fn bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0..2].copy_from_slice(&self.kind.to_le_bytes());
        b[2..4].copy_from_slice(&self.code.to_le_bytes());
        b[4..8].copy_from_slice(&self.value.to_le_bytes());
        b
    }
}

/// Events on their way to the guest. Owned by the VM (it outlives reboots); the current
/// machine's device drains it.
pub struct InputQueue {
    pending: Mutex<VecDeque<InputEvent>>,
    wake: EventFd,
}

impl InputQueue {
    /// An empty queue with its wake-up eventfd.
    pub fn new() -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            pending: Mutex::new(VecDeque::new()),
            wake: EventFd::new(libc::EFD_NONBLOCK)?,
        }))
    }

    /// Queues `events` (a frame: end it with [`InputEvent::sync`]) for the guest.
    pub fn send(&self, events: &[InputEvent]) {
        let mut pending = self.pending.lock();
        for event in events {
            if pending.len() >= MAX_PENDING {
                pending.pop_front();
                log::debug!("virtio-input: guest is not taking events; dropping the oldest");
            }
            pending.push_back(*event);
        }
        drop(pending);
        let _ = self.wake.write(1);
    }

    fn pop(&self) -> Option<InputEvent> {
        self.pending.lock().pop_front()
    }

    fn push_front(&self, event: InputEvent) {
        self.pending.lock().push_front(event);
    }
}

/// A virtio input device of one kind.
pub struct Input {
    config: InputConfig,
    name: &'static str,
    events: Arc<InputQueue>,
}

impl Input {
    /// A keyboard fed from `events`.
    pub fn keyboard(events: Arc<InputQueue>) -> Self {
        Self {
            config: InputConfig::keyboard(),
            name: "virtio-keyboard",
            events,
        }
    }

    /// A tablet (absolute pointer) fed from `events`.
    pub fn tablet(events: Arc<InputQueue>) -> Self {
        Self {
            config: InputConfig::tablet(),
            name: "virtio-tablet",
            events,
        }
    }
}

impl VirtioDevice for Input {
    fn device_type(&self) -> u32 {
        device_type::INPUT
    }

    fn name(&self) -> &str {
        self.name
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE, QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        features::RING_EVENT_IDX | features::RING_INDIRECT_DESC
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        self.config.read(offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.config.write(offset, data);
    }

    fn activate(&mut self, activation: Activation) -> Result<Service, ActivateError> {
        let Activation {
            memory,
            queues,
            interrupt,
            ..
        } = activation;
        let mut event_queue = None;
        let mut status_queue = None;
        let mut doorbells = Vec::new();
        for q in queues {
            doorbells.push(q.doorbell);
            match q.index {
                0 => event_queue = Some(q.queue),
                _ => status_queue = Some(q.queue),
            }
        }
        let Some(mut event_queue) = event_queue else {
            return Err(ActivateError::MissingQueue(0));
        };
        // The host's events ring the last doorbell.
        let host_slot = doorbells.len();
        doorbells.push(self.events.wake.try_clone()?);
        let has_status = status_queue.is_some();
        let events = self.events.clone();
        Ok(Service::new(doorbells, move |slot| {
            if slot == 1 && has_status && slot != host_slot {
                // The status queue (LEDs): take and return the buffers.
                if let Some(queue) = status_queue.as_mut() {
                    return serve_queue(queue, 1, &memory, &interrupt, |_| Ok(0));
                }
                return true;
            }
            deliver(&mut event_queue, &memory, &interrupt, &events)
        }))
    }
}

/// Moves pending events into available event-queue buffers, one event per buffer, in order.
fn deliver(
    queue: &mut virtio_queue::Queue,
    memory: &vm_memory::GuestMemoryMmap,
    interrupt: &super::VirtioInterrupt,
    events: &InputQueue,
) -> bool {
    let mut delivered = false;
    while let Some(event) = events.pop() {
        let chain = match queue.iter(memory) {
            Ok(mut iter) => iter.next(),
            Err(e) => {
                log::warn!("virtio-input: bad event queue: {e:?}; the device needs a reset");
                interrupt.set_needs_reset();
                return false;
            }
        };
        let Some(chain) = chain else {
            // No buffer: keep the event for when the guest gives one, and ask to be told
            // (with EVENT_IDX the guest notifies only when asked); buffers that arrived
            // meanwhile are taken at once.
            events.push_front(event);
            match queue.enable_notification(memory) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    log::warn!("virtio-input: bad event queue: {e:?}; the device needs a reset");
                    interrupt.set_needs_reset();
                    return false;
                }
            }
        };
        let head = chain.head_index();
        let written = match super::chain::Chain::collect(chain) {
            Ok(chain) => {
                let writable = chain.writable();
                SegmentCursor::new(&writable)
                    .write(memory, &event.bytes())
                    .unwrap_or(0)
            }
            Err(e) => {
                log::warn!("virtio-input: {e}; the device needs a reset");
                interrupt.set_needs_reset();
                return false;
            }
        };
        if queue.add_used(memory, head, written as u32).is_err() {
            interrupt.set_needs_reset();
            return false;
        }
        delivered = true;
    }
    if delivered && queue.needs_notification(memory).unwrap_or(true) {
        interrupt.signal_queue(0);
    }
    true
}

#[cfg(test)]
mod tests;
