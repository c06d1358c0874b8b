//! Test doubles shared by device unit tests.
//!
//! [`RecordingLine`] stands in for an interrupt line and [`RecordingPower`] for the machine's
//! power sink; both record what the device under test did so that tests can assert on it.

use crate::devices::{PowerRequest, PowerSink};
use crate::interrupt::InterruptLine;
use parking_lot::Mutex;

/// An interrupt line that records every level it is driven to, in order.
#[derive(Default)]
pub(crate) struct RecordingLine {
    levels: Mutex<Vec<bool>>,
}

impl InterruptLine for RecordingLine {
    fn set_level(&self, high: bool) {
        self.levels.lock().push(high);
    }
}

impl RecordingLine {
    /// Every level the line was driven to, oldest first.
    pub(crate) fn levels(&self) -> Vec<bool> {
        self.levels.lock().clone()
    }

    /// The line's current level: the last one driven, low if it was never driven.
    pub(crate) fn high(&self) -> bool {
        self.levels.lock().last().copied().unwrap_or(false)
    }

    /// How many times the line went from low to high (starting low).
    pub(crate) fn rising_edges(&self) -> usize {
        let levels = self.levels.lock();
        let mut prev = false;
        let mut n = 0;
        for &l in levels.iter() {
            if l && !prev {
                n += 1;
            }
            prev = l;
        }
        n
    }

    /// How many times the line was driven high, edge or not (one per pulse).
    pub(crate) fn rises(&self) -> u64 {
        self.levels.lock().iter().filter(|&&l| l).count() as u64
    }

    /// Forgets the recorded levels; the line then reads low.
    pub(crate) fn clear(&self) {
        self.levels.lock().clear();
    }
}

/// A power sink that records every request it receives, in order.
#[derive(Default)]
pub(crate) struct RecordingPower {
    requests: Mutex<Vec<PowerRequest>>,
}

impl PowerSink for RecordingPower {
    fn request(&self, request: PowerRequest) {
        self.requests.lock().push(request);
    }
}

impl RecordingPower {
    /// Every request received, oldest first.
    pub(crate) fn requests(&self) -> Vec<PowerRequest> {
        self.requests.lock().clone()
    }
}
