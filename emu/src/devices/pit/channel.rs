//! One of the 8254's three counters: its programming (control word, access mode, BCD), its
//! count and OUT as functions of the (slowed) time since it was loaded, its gate, and its
//! latches. No threads and no I/O: the device in [`super`] asks it what it shows at a time.

use super::PIT_HZ;
use std::time::Duration;

const NANOS_PER_SEC: u128 = 1_000_000_000;

// Access modes (control word bits 5:4).
pub(super) const ACCESS_LATCH: u8 = 0;
pub(super) const ACCESS_LSB: u8 = 1;
pub(super) const ACCESS_MSB: u8 = 2;
pub(super) const ACCESS_WORD: u8 = 3;

/// Converts between host time and (slowed) PIT input clock ticks.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timebase {
    pub(super) slowdown: u32,
}

impl Timebase {
    /// Whole ticks in `d`.
    pub(super) fn ticks(self, d: Duration) -> u64 {
        let t = d.as_nanos() * u128::from(PIT_HZ) / (NANOS_PER_SEC * u128::from(self.slowdown));
        u64::try_from(t).unwrap_or(u64::MAX)
    }

    /// The time `ticks` ticks take, rounded up so that [`Timebase::ticks`] of it is `ticks`.
    pub(super) fn duration(self, ticks: u64) -> Duration {
        let num = u128::from(ticks) * u128::from(self.slowdown) * NANOS_PER_SEC;
        let nanos = num.div_ceil(u128::from(PIT_HZ));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Whether and how a counter is counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Counting {
    /// Waiting for a count after a control word (or the first byte of a two-byte count in mode 0).
    Idle,
    /// Counting: `base` ticks had elapsed at `start`.
    Running { start: Duration, base: u64 },
    /// Stopped by its gate after `ticks` ticks.
    Held { ticks: u64 },
}

pub(super) fn to_bcd(v: u64) -> u16 {
    let v = v % 10_000;
    ((v / 1000) << 12 | (v / 100 % 10) << 8 | (v / 10 % 10) << 4 | (v % 10)) as u16
}

/// Decodes a BCD count leniently: nibbles above 9 count at face value.
pub(super) fn from_bcd(v: u16) -> u64 {
    let d = |shift: u16| u64::from((v >> shift) & 0xf);
    d(12) * 1000 + d(8) * 100 + d(4) * 10 + d(0)
}

/// One of the 8254's three counters.
#[derive(Debug, Clone)]
pub(super) struct Channel {
    pub(super) mode: u8,
    pub(super) access: u8,
    pub(super) bcd: bool,
    /// The count as written (binary or BCD).
    pub(super) reload: u16,
    /// The first byte of a two-byte count.
    pub(super) write_lsb: Option<u8>,
    pub(super) read_msb_next: bool,
    pub(super) count_latch: Option<u16>,
    pub(super) status_latch: Option<u8>,
    pub(super) null_count: bool,
    pub(super) gate: bool,
    pub(super) counting: Counting,
}

impl Channel {
    pub(super) fn new() -> Self {
        Self {
            mode: 0,
            access: ACCESS_WORD,
            bcd: false,
            reload: 0,
            write_lsb: None,
            read_msb_next: false,
            count_latch: None,
            status_latch: None,
            null_count: true,
            gate: true,
            counting: Counting::Idle,
        }
    }

    /// The counter's modulus: 2^16, or 10^4 in BCD.
    pub(super) fn modulus(&self) -> u64 {
        if self.bcd {
            10_000
        } else {
            0x1_0000
        }
    }

    /// The programmed count N (a written 0 means the modulus).
    pub(super) fn period(&self) -> u64 {
        let n = if self.bcd {
            from_bcd(self.reload)
        } else {
            u64::from(self.reload)
        };
        if n == 0 {
            self.modulus()
        } else {
            n
        }
    }

    /// Ticks counted at `now`, or None while idle.
    pub(super) fn elapsed(&self, tb: Timebase, now: Duration) -> Option<u64> {
        match self.counting {
            Counting::Idle => None,
            Counting::Running { start, base } => {
                Some(base.saturating_add(tb.ticks(now.saturating_sub(start))))
            }
            Counting::Held { ticks } => Some(ticks),
        }
    }

    /// The counting element's value after `t` ticks, in binary.
    pub(super) fn value_at(&self, t: u64) -> u64 {
        let n = self.period();
        let m = self.modulus();
        match self.mode {
            2 => (n - t % n) % m,
            3 => {
                let p = t % n;
                let high_half = n.div_ceil(2);
                let v = if p < high_half {
                    n - 2 * p
                } else {
                    n - 2 * (p - high_half)
                };
                v % m
            }
            // Modes 0, 1, 4, 5 count down and wrap around after terminal count.
            _ => (n + m - t % m) % m,
        }
    }

    pub(super) fn count(&self, tb: Timebase, now: Duration) -> u16 {
        let value = match self.elapsed(tb, now) {
            None => return self.reload,
            Some(t) => self.value_at(t),
        };
        if self.bcd {
            to_bcd(value)
        } else {
            value as u16
        }
    }

    pub(super) fn out(&self, tb: Timebase, now: Duration) -> bool {
        let Some(t) = self.elapsed(tb, now) else {
            // After a control word OUT is low in mode 0 and high in the others.
            return self.mode != 0;
        };
        let n = self.period();
        match self.mode {
            0 | 1 => t >= n,
            2 | 3 if matches!(self.counting, Counting::Held { .. }) => true,
            2 => t % n != n - 1,
            3 => t % n < n.div_ceil(2),
            _ => t != n,
        }
    }

    pub(super) fn status(&self, tb: Timebase, now: Duration) -> u8 {
        u8::from(self.out(tb, now)) << 7
            | u8::from(self.null_count) << 6
            | self.access << 4
            | self.mode << 1
            | u8::from(self.bcd)
    }

    pub(super) fn latch_count(&mut self, tb: Timebase, now: Duration) {
        if self.count_latch.is_none() {
            self.count_latch = Some(self.count(tb, now));
            self.read_msb_next = false;
        }
    }

    pub(super) fn latch_status(&mut self, tb: Timebase, now: Duration) {
        if self.status_latch.is_none() {
            self.status_latch = Some(self.status(tb, now));
        }
    }

    pub(super) fn control(&mut self, access: u8, mode: u8, bcd: bool) {
        self.access = access;
        // Modes 6 and 7 are aliases of 2 and 3.
        self.mode = if mode >= 6 { mode - 4 } else { mode };
        self.bcd = bcd;
        self.write_lsb = None;
        self.read_msb_next = false;
        self.count_latch = None;
        self.status_latch = None;
        self.null_count = true;
        self.counting = Counting::Idle;
    }

    pub(super) fn read(&mut self, tb: Timebase, now: Duration) -> u8 {
        if let Some(status) = self.status_latch.take() {
            return status;
        }
        let value = match self.count_latch {
            Some(v) => v,
            None => self.count(tb, now),
        };
        let [lsb, msb] = value.to_le_bytes();
        let (byte, done) = match self.access {
            ACCESS_LSB => (lsb, true),
            ACCESS_MSB => (msb, true),
            _ if self.read_msb_next => (msb, true),
            _ => (lsb, false),
        };
        if self.access == ACCESS_WORD {
            self.read_msb_next = !done;
        }
        if done {
            self.count_latch = None;
        }
        byte
    }

    /// Takes one byte of a count; returns true when a whole count was loaded.
    pub(super) fn write(&mut self, value: u8, now: Duration) -> bool {
        let raw = match self.access {
            ACCESS_LSB => u16::from(value),
            ACCESS_MSB => u16::from(value) << 8,
            _ => match self.write_lsb.take() {
                Some(lsb) => u16::from_le_bytes([lsb, value]),
                None => {
                    self.write_lsb = Some(value);
                    if self.mode == 0 {
                        // Writing the first byte stops the count in mode 0.
                        self.counting = Counting::Idle;
                        return true;
                    }
                    return false;
                }
            },
        };
        self.load(raw, now);
        true
    }

    pub(super) fn load(&mut self, raw: u16, now: Duration) {
        self.reload = raw;
        self.null_count = false;
        let held_by_gate = !self.gate && matches!(self.mode, 0 | 2 | 3 | 4);
        self.counting = if held_by_gate {
            Counting::Held { ticks: 0 }
        } else {
            Counting::Running {
                start: now,
                base: 0,
            }
        };
    }

    pub(super) fn set_gate(&mut self, high: bool, tb: Timebase, now: Duration) {
        if high == self.gate {
            return;
        }
        self.gate = high;
        if self.counting == Counting::Idle {
            return;
        }
        let ticks = self.elapsed(tb, now).unwrap_or(0);
        self.counting = match (self.mode, high) {
            // Modes 0 and 4: the gate pauses and resumes counting.
            (0 | 4, false) => Counting::Held { ticks },
            (0 | 4, true) => Counting::Running {
                start: now,
                base: ticks,
            },
            // Modes 2 and 3: low stops counting (OUT high); a rising edge reloads.
            (2 | 3, false) => Counting::Held { ticks },
            // Modes 1, 2, 3 and 5: a rising edge (re)starts the count.
            (_, true) => Counting::Running {
                start: now,
                base: 0,
            },
            (_, false) => self.counting,
        };
    }

    /// The first rising edge of OUT after `base` and the period of further ones, in ticks.
    pub(super) fn next_edge(&self, base: u64) -> Option<(u64, Option<u64>)> {
        let n = self.period();
        match self.mode {
            2 | 3 => Some(((base / n + 1) * n, Some(n))),
            0 | 1 if base < n => Some((n, None)),
            4 | 5 if base <= n => Some((n + 1, None)),
            _ => None,
        }
    }
}
