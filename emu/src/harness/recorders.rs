//! Interrupt recorders: what the harness puts where KVM's irqchip would be. MSI messages and
//! INTx levels are recorded so tests can wait for them.

use crate::interrupt::{InterruptLine, MsiController, MsiMessage, MsiVector, SharedLine};
use parking_lot::{Condvar, Mutex};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records every MSI message sent, in order, and how many were sent with each data value.
#[derive(Default)]
pub struct MsiRecorder {
    log: Arc<MsiLog>,
}

#[derive(Default)]
struct MsiLog {
    sent: Mutex<Sent>,
    changed: Condvar,
}

#[derive(Default)]
struct Sent {
    messages: Vec<MsiMessage>,
    /// Messages per data value, so counting and waiting do not scan the whole log.
    counts: HashMap<u32, usize>,
}

impl MsiRecorder {
    fn lock(&self) -> parking_lot::MutexGuard<'_, Sent> {
        self.log.sent.lock()
    }

    /// Every message sent so far.
    pub fn sent(&self) -> Vec<MsiMessage> {
        self.lock().messages.clone()
    }

    /// How many messages with `data` were sent.
    pub fn count(&self, data: u32) -> usize {
        self.lock().counts.get(&data).copied().unwrap_or(0)
    }

    /// Waits until at least `n` messages with `data` were sent; false on timeout.
    pub fn wait_count(&self, data: u32, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut sent = self.lock();
        loop {
            if sent.counts.get(&data).copied().unwrap_or(0) >= n {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            self.log.changed.wait_for(&mut sent, deadline - now);
        }
    }
}

impl MsiController for MsiRecorder {
    fn allocate_vectors(
        &self,
        count: usize,
    ) -> Result<Vec<Arc<dyn MsiVector>>, crate::interrupt::MsiError> {
        Ok((0..count)
            .map(|_| {
                Arc::new(RecordedVector {
                    log: self.log.clone(),
                    message: Mutex::new(MsiMessage::default()),
                }) as Arc<dyn MsiVector>
            })
            .collect())
    }
}

struct RecordedVector {
    log: Arc<MsiLog>,
    message: Mutex<MsiMessage>,
}

impl MsiVector for RecordedVector {
    fn configure(&self, message: MsiMessage) {
        *self.message.lock() = message;
    }

    fn trigger(&self) {
        let message = *self.message.lock();
        let mut sent = self.log.sent.lock();
        sent.messages.push(message);
        *sent.counts.entry(message.data).or_default() += 1;
        drop(sent);
        self.log.changed.notify_all();
    }
}

/// Records the level of every INTx line.
#[derive(Default)]
pub struct IntxRecorder {
    levels: Arc<Mutex<BTreeMap<u32, bool>>>,
}

impl IntxRecorder {
    /// The line for `gsi`.
    pub fn line(&self, gsi: u32) -> SharedLine {
        Arc::new(RecordedLine {
            gsi,
            levels: self.levels.clone(),
        })
    }

    /// Whether `gsi` is high now.
    pub fn level(&self, gsi: u32) -> bool {
        self.levels.lock().get(&gsi).copied().unwrap_or(false)
    }
}

struct RecordedLine {
    gsi: u32,
    levels: Arc<Mutex<BTreeMap<u32, bool>>>,
}

impl InterruptLine for RecordedLine {
    fn set_level(&self, high: bool) {
        self.levels.lock().insert(self.gsi, high);
    }
}
