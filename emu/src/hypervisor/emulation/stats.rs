//! Counters of emulation-failure recoveries, per instruction kind, shared by all vCPU threads
//! (relaxed atomics: each bump is one uncontended add).

use std::sync::atomic::{AtomicU64, Ordering};

use super::recover::{Outcome, RecoveredKind};

/// How many times each instruction was recovered, and how many failures were not.
#[derive(Debug, Default)]
pub struct RecoveryStats {
    recovered: [AtomicU64; RecoveredKind::ALL.len()],
    failed: AtomicU64,
}

impl RecoveryStats {
    /// All counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one recovery of `kind`.
    pub fn record_recovery(&self, kind: RecoveredKind) {
        self.recovered[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one emulation failure that could not be recovered.
    pub fn record_failure(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the result of `handle_emulation_failure`.
    pub fn record(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Recovered(recovered) => self.record_recovery(recovered.kind),
            Outcome::Failed(_) => self.record_failure(),
        }
    }

    /// Recoveries of `kind` so far.
    pub fn count(&self, kind: RecoveredKind) -> u64 {
        self.recovered[kind.index()].load(Ordering::Relaxed)
    }

    /// Failures that could not be recovered so far.
    pub fn failures(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// All recoveries so far.
    pub fn total(&self) -> u64 {
        self.recovered
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum()
    }

    /// `(kind name, count)` for every kind, in [`RecoveredKind::ALL`] order, zeros included.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        RecoveredKind::ALL
            .iter()
            .map(|&kind| (kind.name(), self.count(kind)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::emulation::recover::{FailureReport, Recovered};
    use std::sync::Arc;

    #[test]
    fn counts_per_kind_and_total() {
        let stats = RecoveryStats::new();
        stats.record_recovery(RecoveredKind::Int3);
        stats.record_recovery(RecoveredKind::Ldmxcsr);
        stats.record_recovery(RecoveredKind::Ldmxcsr);
        stats.record(&Outcome::Recovered(Recovered {
            kind: RecoveredKind::Popcnt,
            rip: 0,
            detail: String::new(),
        }));
        stats.record(&Outcome::Failed(FailureReport {
            rip: 0,
            bytes: vec![],
            decoded: None,
            reason: String::new(),
        }));
        assert_eq!(stats.count(RecoveredKind::Ldmxcsr), 2);
        assert_eq!(stats.count(RecoveredKind::Fwait), 0);
        assert_eq!(stats.total(), 4);
        assert_eq!(stats.failures(), 1);
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.len(), RecoveredKind::ALL.len());
        assert_eq!(snapshot[0], ("int3", 1));
        assert!(snapshot.contains(&("ldmxcsr", 2)));
        assert!(snapshot.contains(&("popcnt", 1)));
        assert!(snapshot.contains(&("verw", 0)));
    }

    #[test]
    fn counts_from_several_threads() {
        let stats = Arc::new(RecoveryStats::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let stats = Arc::clone(&stats);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        stats.record_recovery(RecoveredKind::Fwait);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("counter thread");
        }
        assert_eq!(stats.count(RecoveredKind::Fwait), 4000);
        assert_eq!(stats.total(), 4000);
    }
}
