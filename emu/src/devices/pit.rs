//! The Intel 8254 programmable interval timer (ports 0x40-0x43) and the PC's port 0x61 (NMI
//! status and speaker control), in userspace.
//!
//! This module owns the three counters, port 0x61, and a timer thread ("cove-pit") that raises
//! IRQ 0 when counter 0's output rises. It exists for hosts where KVM's in-kernel PIT is unusable:
//! on nested KVM without hardware virtualization (see `shared/PVM-NOTES.md`) the guest kernel runs
//! emulated and a full-rate timer interrupt livelocks it. So the PIT's time base can be slowed
//! down: with `slowdown` N, every count takes N times longer than programmed, for the interrupt
//! and for counter reads alike. The guest then sees a consistent PIT that happens to run slowly;
//! a guest that calibrates its TSC against counter 2 will find it N times faster than it is.
//!
//! Model:
//! - Counter values are computed from the (scaled) time elapsed since the count was loaded, so
//!   nothing ticks while nobody looks. Time comes from a [`Clock`], which tests replace.
//! - Modes 0-5 are modelled as far as reads and the interrupt need: count values, OUT, and the
//!   gate (counter 2's gate is port 0x61 bit 0; counters 0 and 1 have theirs tied high). Modes 1
//!   and 5 start counting when the count is written, as QEMU does, as well as on a gate rising
//!   edge. In modes 2 and 3 a new count takes effect at once rather than at the end of the
//!   current period. BCD counting is supported.
//! - After a control word, a counter waits for its count (nothing counts or fires before the
//!   guest programs it; there is no firmware here to set up the 18.2 Hz tick).
//! - IRQ 0 is edge-triggered: the thread pulses it at each rising edge of counter 0's OUT, which
//!   is every period in modes 2 and 3, and once at terminal count in modes 0, 1, 4 and 5. If the
//!   thread falls behind, it fires once and schedules the next tick a period from now: missed
//!   ticks are not queued up. Periodic interrupts are limited to [`MIN_IRQ_PERIOD`] apart.
//! - Port 0x61 reads back bits 0-3 as written, toggles bit 4 (the refresh clock) on each read and
//!   shows counter 2's OUT in bit 5. The speaker itself is not modelled.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::bus::{write_le, BusDevice};
use crate::interrupt::SharedLine;

/// The 8254's input clock on a PC, in Hz.
pub const PIT_HZ: u64 = 1_193_182;
/// The shortest interval between two periodic IRQ 0 pulses, whatever the guest programs.
pub const MIN_IRQ_PERIOD: Duration = Duration::from_micros(100);

const NANOS_PER_SEC: u128 = 1_000_000_000;

const PORT_MODE: u64 = 3;

// Port 0x61 bits.
const P61_GATE2: u8 = 0x01;
const P61_WRITABLE: u8 = 0x0f;
const P61_REFRESH: u8 = 0x10;
const P61_OUT2: u8 = 0x20;

// Access modes (control word bits 5:4).
const ACCESS_LATCH: u8 = 0;
const ACCESS_LSB: u8 = 1;
const ACCESS_MSB: u8 = 2;
const ACCESS_WORD: u8 = 3;

/// A monotonic time source: the time since an arbitrary, fixed epoch.
pub trait Clock: Send + Sync {
    fn now(&self) -> Duration;
}

/// The host's monotonic clock.
pub struct RealClock {
    epoch: Instant,
}

impl RealClock {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }
}

impl Default for RealClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for RealClock {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
}

/// Converts between host time and (slowed) PIT input clock ticks.
#[derive(Debug, Clone, Copy)]
struct Timebase {
    slowdown: u32,
}

impl Timebase {
    /// Whole ticks in `d`.
    fn ticks(self, d: Duration) -> u64 {
        let t = d.as_nanos() * u128::from(PIT_HZ) / (NANOS_PER_SEC * u128::from(self.slowdown));
        u64::try_from(t).unwrap_or(u64::MAX)
    }

    /// The time `ticks` ticks take, rounded up so that [`Timebase::ticks`] of it is `ticks`.
    fn duration(self, ticks: u64) -> Duration {
        let num = u128::from(ticks) * u128::from(self.slowdown) * NANOS_PER_SEC;
        let nanos = num.div_ceil(u128::from(PIT_HZ));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Whether and how a counter is counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counting {
    /// Waiting for a count after a control word (or the first byte of a two-byte count in mode 0).
    Idle,
    /// Counting: `base` ticks had elapsed at `start`.
    Running { start: Duration, base: u64 },
    /// Stopped by its gate after `ticks` ticks.
    Held { ticks: u64 },
}

fn to_bcd(v: u64) -> u16 {
    let v = v % 10_000;
    ((v / 1000) << 12 | (v / 100 % 10) << 8 | (v / 10 % 10) << 4 | (v % 10)) as u16
}

/// Decodes a BCD count leniently: nibbles above 9 count at face value.
fn from_bcd(v: u16) -> u64 {
    let d = |shift: u16| u64::from((v >> shift) & 0xf);
    d(12) * 1000 + d(8) * 100 + d(4) * 10 + d(0)
}

/// One of the 8254's three counters.
#[derive(Debug, Clone)]
struct Channel {
    mode: u8,
    access: u8,
    bcd: bool,
    /// The count as written (binary or BCD).
    reload: u16,
    /// The first byte of a two-byte count.
    write_lsb: Option<u8>,
    read_msb_next: bool,
    count_latch: Option<u16>,
    status_latch: Option<u8>,
    null_count: bool,
    gate: bool,
    counting: Counting,
}

impl Channel {
    fn new() -> Self {
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
    fn modulus(&self) -> u64 {
        if self.bcd {
            10_000
        } else {
            0x1_0000
        }
    }

    /// The programmed count N (a written 0 means the modulus).
    fn period(&self) -> u64 {
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
    fn elapsed(&self, tb: Timebase, now: Duration) -> Option<u64> {
        match self.counting {
            Counting::Idle => None,
            Counting::Running { start, base } => {
                Some(base.saturating_add(tb.ticks(now.saturating_sub(start))))
            }
            Counting::Held { ticks } => Some(ticks),
        }
    }

    /// The counting element's value after `t` ticks, in binary.
    fn value_at(&self, t: u64) -> u64 {
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

    fn count(&self, tb: Timebase, now: Duration) -> u16 {
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

    fn out(&self, tb: Timebase, now: Duration) -> bool {
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

    fn status(&self, tb: Timebase, now: Duration) -> u8 {
        u8::from(self.out(tb, now)) << 7
            | u8::from(self.null_count) << 6
            | self.access << 4
            | self.mode << 1
            | u8::from(self.bcd)
    }

    fn latch_count(&mut self, tb: Timebase, now: Duration) {
        if self.count_latch.is_none() {
            self.count_latch = Some(self.count(tb, now));
            self.read_msb_next = false;
        }
    }

    fn latch_status(&mut self, tb: Timebase, now: Duration) {
        if self.status_latch.is_none() {
            self.status_latch = Some(self.status(tb, now));
        }
    }

    fn control(&mut self, access: u8, mode: u8, bcd: bool) {
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

    fn read(&mut self, tb: Timebase, now: Duration) -> u8 {
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
    fn write(&mut self, value: u8, now: Duration) -> bool {
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

    fn load(&mut self, raw: u16, now: Duration) {
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

    fn set_gate(&mut self, high: bool, tb: Timebase, now: Duration) {
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
    fn next_edge(&self, base: u64) -> Option<(u64, Option<u64>)> {
        let n = self.period();
        match self.mode {
            2 | 3 => Some(((base / n + 1) * n, Some(n))),
            0 | 1 if base < n => Some((n, None)),
            4 | 5 if base <= n => Some((n + 1, None)),
            _ => None,
        }
    }
}

/// Everything the bus devices and the timer thread share.
struct PitState {
    tb: Timebase,
    channels: [Channel; 3],
    port61: u8,
    refresh: bool,
    /// When counter 0's OUT next rises, and the period after that.
    ch0_next: Option<Duration>,
    ch0_period: Option<Duration>,
    fired: u64,
    stop: bool,
}

impl PitState {
    fn new(slowdown: u32) -> Self {
        Self {
            tb: Timebase {
                slowdown: slowdown.max(1),
            },
            channels: [Channel::new(), Channel::new(), Channel::new()],
            port61: 0,
            refresh: false,
            ch0_next: None,
            ch0_period: None,
            fired: 0,
            stop: false,
        }
    }

    /// Recomputes when IRQ 0 fires next, after counter 0 changed.
    fn schedule_ch0(&mut self) {
        self.ch0_next = None;
        self.ch0_period = None;
        let ch = &self.channels[0];
        let Counting::Running { start, base } = ch.counting else {
            return;
        };
        if let Some((edge, period)) = ch.next_edge(base) {
            self.ch0_next = Some(start.saturating_add(self.tb.duration(edge - base)));
            self.ch0_period = period.map(|p| self.tb.duration(p).max(MIN_IRQ_PERIOD));
        }
        log::debug!(
            "pit: counter 0 programmed (mode {}): next IRQ 0 in {:?}, period {:?}",
            ch.mode,
            self.ch0_next.map(|n| n.saturating_sub(start)),
            self.ch0_period
        );
    }

    /// Takes the pending IRQ 0 edge if it is due at `now`, scheduling the next one.
    fn take_due(&mut self, now: Duration) -> bool {
        match self.ch0_next {
            Some(deadline) if deadline <= now => {
                self.ch0_next = self.ch0_period.map(|p| {
                    let next = deadline.saturating_add(p);
                    if next <= now {
                        now.saturating_add(p)
                    } else {
                        next
                    }
                });
                self.fired += 1;
                true
            }
            _ => false,
        }
    }

    fn read_counter(&mut self, index: usize, now: Duration) -> u8 {
        let tb = self.tb;
        self.channels[index].read(tb, now)
    }

    fn write_counter(&mut self, index: usize, value: u8, now: Duration) -> bool {
        let changed = self.channels[index].write(value, now);
        if changed && index == 0 {
            self.schedule_ch0();
        }
        changed
    }

    fn write_mode(&mut self, value: u8, now: Duration) -> bool {
        let tb = self.tb;
        let select = value >> 6;
        let access = (value >> 4) & 3;
        if select == 3 {
            // Read-back: bit 5 clear latches counts, bit 4 clear latches status; bits 1-3
            // select counters 0-2.
            for (i, ch) in self.channels.iter_mut().enumerate() {
                if value & (2 << i) == 0 {
                    continue;
                }
                if value & 0x20 == 0 {
                    ch.latch_count(tb, now);
                }
                if value & 0x10 == 0 {
                    ch.latch_status(tb, now);
                }
            }
            return false;
        }
        let index = usize::from(select);
        if access == ACCESS_LATCH {
            self.channels[index].latch_count(tb, now);
            return false;
        }
        self.channels[index].control(access, (value >> 1) & 7, value & 1 != 0);
        if index == 0 {
            self.schedule_ch0();
        }
        index == 0
    }

    fn read_port61(&mut self, now: Duration) -> u8 {
        self.refresh = !self.refresh;
        let mut value = self.port61 & P61_WRITABLE;
        if self.refresh {
            value |= P61_REFRESH;
        }
        if self.channels[2].out(self.tb, now) {
            value |= P61_OUT2;
        }
        value
    }

    fn write_port61(&mut self, value: u8, now: Duration) {
        self.port61 = value & P61_WRITABLE;
        let tb = self.tb;
        self.channels[2].set_gate(value & P61_GATE2 != 0, tb, now);
    }
}

struct Shared {
    state: Mutex<PitState>,
    wake: Condvar,
    clock: Arc<dyn Clock>,
    irq0: SharedLine,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, PitState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The timer thread: sleeps until counter 0's next rising edge and pulses IRQ 0.
fn run_timer(shared: Arc<Shared>) {
    let mut st = shared.lock();
    loop {
        if st.stop {
            return;
        }
        let now = shared.clock.now();
        if st.take_due(now) {
            log::trace!("pit: IRQ 0");
            drop(st);
            shared.irq0.pulse();
            st = shared.lock();
            continue;
        }
        st = match st.ch0_next {
            None => shared.wake.wait(st).unwrap_or_else(|e| e.into_inner()),
            Some(deadline) => {
                shared
                    .wake
                    .wait_timeout(st, deadline.saturating_sub(now))
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
    }
}

/// The 8254 PIT at ports 0x40-0x43 (a bus device of length 4), with its timer thread.
pub struct Pit {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Pit {
    /// A PIT on the host's clock whose counts take `slowdown` times longer than programmed
    /// (1 = real time; 0 counts as 1), with its timer thread already running. Should the thread
    /// fail to start, that is logged and the PIT works without IRQ 0 ([`Pit::is_running`] says
    /// so); [`Pit::try_new`] returns the error instead.
    pub fn new(irq0: SharedLine, slowdown: u32) -> Arc<Mutex<Pit>> {
        let pit = Self::with_clock(irq0, slowdown, Arc::new(RealClock::new()));
        if let Err(e) = pit.lock().unwrap_or_else(|e| e.into_inner()).start() {
            log::error!("pit: cannot start the timer thread, IRQ 0 will not fire: {e}");
        }
        pit
    }

    /// As [`Pit::new`], failing if the timer thread cannot be started.
    pub fn try_new(irq0: SharedLine, slowdown: u32) -> std::io::Result<Arc<Mutex<Pit>>> {
        let pit = Self::with_clock(irq0, slowdown, Arc::new(RealClock::new()));
        pit.lock().unwrap_or_else(|e| e.into_inner()).start()?;
        Ok(pit)
    }

    /// A PIT on `clock`, with no timer thread until [`Pit::start`].
    pub fn with_clock(irq0: SharedLine, slowdown: u32, clock: Arc<dyn Clock>) -> Arc<Mutex<Pit>> {
        Arc::new(Mutex::new(Pit {
            shared: Arc::new(Shared {
                state: Mutex::new(PitState::new(slowdown)),
                wake: Condvar::new(),
                clock,
                irq0,
            }),
            thread: None,
        }))
    }

    /// Starts the timer thread, if it is not running.
    pub fn start(&mut self) -> std::io::Result<()> {
        if self.thread.is_some() {
            return Ok(());
        }
        self.shared.lock().stop = false;
        let shared = self.shared.clone();
        let handle = std::thread::Builder::new()
            .name("cove-pit".into())
            .spawn(move || run_timer(shared))?;
        self.thread = Some(handle);
        Ok(())
    }

    /// Stops the timer thread and waits for it to end. Counters still read correctly.
    pub fn stop(&mut self) {
        let Some(handle) = self.thread.take() else {
            return;
        };
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        if handle.join().is_err() {
            log::error!("pit: the timer thread panicked");
        }
    }

    /// Whether the timer thread is running.
    pub fn is_running(&self) -> bool {
        self.thread.is_some()
    }

    /// How many times IRQ 0 has been pulsed.
    pub fn fired(&self) -> u64 {
        self.shared.lock().fired
    }
}

impl Drop for Pit {
    fn drop(&mut self) {
        self.stop();
    }
}

impl BusDevice for Pit {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if data.is_empty() {
            return;
        }
        let value = match offset {
            0..=2 => {
                let now = self.shared.clock.now();
                self.shared.lock().read_counter(offset as usize, now)
            }
            // The mode register is write-only.
            _ => 0xff,
        };
        write_le(data, u64::from(value));
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else {
            return;
        };
        let now = self.shared.clock.now();
        let mut st = self.shared.lock();
        let ch0_changed = match offset {
            0..=2 => st.write_counter(offset as usize, value, now) && offset == 0,
            PORT_MODE => st.write_mode(value, now),
            _ => false,
        };
        drop(st);
        if ch0_changed {
            self.shared.wake.notify_all();
        }
    }
}

/// Port 0x61, a bus device of length 1 that shares the PIT's state.
pub struct SpeakerPort {
    shared: Arc<Shared>,
}

/// The port 0x61 device for `pit`. It does not keep the PIT (or its thread) alive.
pub fn speaker_port(pit: &Arc<Mutex<Pit>>) -> SpeakerPort {
    let pit = pit.lock().unwrap_or_else(|e| e.into_inner());
    SpeakerPort {
        shared: pit.shared.clone(),
    }
}

impl BusDevice for SpeakerPort {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        if data.is_empty() {
            return;
        }
        let now = self.shared.clock.now();
        let value = self.shared.lock().read_port61(now);
        write_le(data, u64::from(value));
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        if let Some(&value) = data.first() {
            let now = self.shared.clock.now();
            self.shared.lock().write_port61(value, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::RecordingLine;

    #[derive(Default)]
    struct FakeClock {
        now: Mutex<Duration>,
    }

    impl Clock for FakeClock {
        fn now(&self) -> Duration {
            *self.now.lock().unwrap()
        }
    }

    impl FakeClock {
        /// Advances by `ticks` ticks of a PIT slowed down `slowdown` times.
        fn advance_ticks(&self, ticks: u64, slowdown: u32) {
            let d = Timebase { slowdown }.duration(ticks);
            *self.now.lock().unwrap() += d;
        }
    }

    struct Rig {
        pit: Arc<Mutex<Pit>>,
        p61: SpeakerPort,
        clock: Arc<FakeClock>,
        slowdown: u32,
    }

    impl Rig {
        fn new(slowdown: u32) -> Self {
            let clock = Arc::new(FakeClock::default());
            let line: SharedLine = Arc::new(RecordingLine::default());
            let pit = Pit::with_clock(line, slowdown, clock.clone());
            let p61 = speaker_port(&pit);
            Self {
                pit,
                p61,
                clock,
                slowdown,
            }
        }
        fn out(&self, port: u64, value: u8) {
            self.pit.lock().unwrap().write(port, &[value]);
        }
        fn inb(&self, port: u64) -> u8 {
            let mut d = [0u8];
            self.pit.lock().unwrap().read(port, &mut d);
            d[0]
        }
        fn read16(&self, port: u64) -> u16 {
            u16::from_le_bytes([self.inb(port), self.inb(port)])
        }
        fn latch_read(&self, ch: u8) -> u16 {
            self.out(PORT_MODE, ch << 6);
            self.read16(u64::from(ch))
        }
        fn advance(&self, ticks: u64) {
            self.clock.advance_ticks(ticks, self.slowdown);
        }
        fn p61_read(&mut self) -> u8 {
            let mut d = [0u8];
            self.p61.read(0, &mut d);
            d[0]
        }
        fn state(&self) -> Arc<Shared> {
            self.pit.lock().unwrap().shared.clone()
        }
    }

    #[test]
    fn timebase_round_trips() {
        for slowdown in [1, 10, 1000] {
            let tb = Timebase { slowdown };
            for ticks in [0, 1, 1193, 65536, 1 << 40] {
                assert_eq!(tb.ticks(tb.duration(ticks)), ticks);
            }
        }
        assert_eq!(
            Timebase { slowdown: 1 }.ticks(Duration::from_secs(1)),
            PIT_HZ
        );
        assert_eq!(
            Timebase { slowdown: 10 }.ticks(Duration::from_secs(10)),
            PIT_HZ
        );
    }

    #[test]
    fn mode2_count_progresses() {
        for slowdown in [1, 10] {
            let r = Rig::new(slowdown);
            // Linux's periodic tick: counter 0, LSB then MSB, mode 2, count 1193.
            r.out(PORT_MODE, 0x34);
            r.out(0, (1193 & 0xff) as u8);
            r.out(0, (1193 >> 8) as u8);
            assert_eq!(r.latch_read(0), 1193);
            r.advance(100);
            assert_eq!(r.latch_read(0), 1093);
            r.advance(1000);
            assert_eq!(r.latch_read(0), 93);
            // Reloads after N ticks, never reads 0.
            r.advance(93);
            assert_eq!(r.latch_read(0), 1193);
            r.advance(1192);
            assert_eq!(r.latch_read(0), 1);
            // Unlatched reads alternate LSB and MSB of the live count.
            r.advance(2);
            assert_eq!(r.read16(0), 1192);
        }
    }

    #[test]
    fn latch_freezes_the_value() {
        let r = Rig::new(1);
        r.out(PORT_MODE, 0x34);
        r.out(0, 0x00);
        r.out(0, 0x10); // 0x1000
        r.advance(0x100);
        r.out(PORT_MODE, 0x00);
        r.advance(0x200);
        // A second latch before the first is read does not replace it.
        r.out(PORT_MODE, 0x00);
        assert_eq!(r.read16(0), 0x0f00);
        // After both bytes the latch is released and reads follow the count again.
        assert_eq!(r.read16(0), 0x0d00);
        // LSB-only access: one read releases the latch.
        r.out(PORT_MODE, 0x54); // counter 1, LSB, mode 2
        r.out(1, 0x80);
        r.advance(0x10);
        r.out(PORT_MODE, 0x40);
        r.advance(0x10);
        assert_eq!(r.inb(1), 0x70);
        assert_eq!(r.inb(1), 0x60);
    }

    #[test]
    fn read_back_status_and_count() {
        let r = Rig::new(1);
        r.out(PORT_MODE, 0xb0); // counter 2, LSB/MSB, mode 0, binary
                                // Status before a count is loaded: OUT low, null count, access 3, mode 0.
        r.out(PORT_MODE, 0xe8); // read-back status only, counter 2
        assert_eq!(r.inb(2), 0x70);
        r.out(2, 0x00);
        r.out(2, 0x01); // 256
        r.advance(6);
        // Read-back count and status of counter 2: status first, then the count.
        r.out(PORT_MODE, 0xc8);
        r.advance(50);
        assert_eq!(r.inb(2), 0x30);
        assert_eq!(r.read16(2), 250);
        r.advance(300);
        r.out(PORT_MODE, 0xe8);
        assert_eq!(r.inb(2), 0xb0, "OUT high after terminal count");
        // Counters 0 and 1 untouched by a read-back that does not select them.
        r.out(PORT_MODE, 0x36); // counter 0, mode 3
        r.out(PORT_MODE, 0xe2);
        assert_eq!(
            r.inb(0),
            0x76 | 0x80,
            "mode 3 waiting for its count: OUT high"
        );
    }

    #[test]
    fn channel2_terminal_count_in_port61() {
        let mut r = Rig::new(10);
        // Linux's pit_calibrate_tsc: gate high and speaker off, counter 2 mode 0, then poll bit 5.
        let v = r.p61_read();
        r.p61.write(0, &[(v & !0x02) | 0x01]);
        r.out(PORT_MODE, 0xb0);
        let latch: u16 = 5966; // 50 ms
        r.out(2, latch as u8);
        r.out(2, (latch >> 8) as u8);
        assert_eq!(r.p61_read() & P61_OUT2, 0);
        r.advance(u64::from(latch) - 1);
        assert_eq!(r.p61_read() & P61_OUT2, 0);
        r.advance(1);
        assert_ne!(r.p61_read() & P61_OUT2, 0);
        // Bits 0-3 read back, bit 4 toggles on each read.
        let a = r.p61_read();
        let b = r.p61_read();
        assert_eq!(a & 0x0f, 0x01);
        assert_ne!(a & P61_REFRESH, b & P61_REFRESH);

        // Gate low pauses counting in mode 0.
        r.out(PORT_MODE, 0xb0);
        r.out(2, 0x00);
        r.out(2, 0x10);
        r.advance(0x100);
        r.p61.write(0, &[0x00]);
        r.advance(0x500);
        assert_eq!(r.latch_read(2), 0x0f00);
        r.p61.write(0, &[0x01]);
        r.advance(0x100);
        assert_eq!(r.latch_read(2), 0x0e00);
    }

    #[test]
    fn quick_calibrate_msb_reads() {
        // Linux's quick_pit_calibrate: counter 2, mode 0, count 0xffff, then unlatched reads.
        let mut r = Rig::new(1);
        r.p61.write(0, &[0x01]);
        r.out(PORT_MODE, 0xb0);
        r.out(2, 0xff);
        r.out(2, 0xff);
        r.advance(0x1000);
        assert_eq!(r.inb(2), 0xff);
        assert_eq!(r.inb(2), 0xef);
        let _ = r.p61_read();
    }

    #[test]
    fn one_shot_and_periodic_schedules() {
        let r = Rig::new(10);
        let shared = r.state();
        let tb = Timebase { slowdown: 10 };
        // Mode 4 one-shot (Linux's oneshot clockevent): fires once, one tick after terminal count.
        r.out(PORT_MODE, 0x38);
        r.out(0, 100);
        r.out(0, 0);
        let now = r.clock.now();
        assert_eq!(shared.lock().ch0_next, Some(now + tb.duration(101)));
        assert!(!shared.lock().take_due(now + tb.duration(100)));
        assert!(shared.lock().take_due(now + tb.duration(101)));
        assert_eq!(shared.lock().ch0_next, None);

        // Mode 2 periodic; falling far behind fires once and reschedules from now.
        r.out(PORT_MODE, 0x34);
        r.out(0, 0xa9);
        r.out(0, 0x04); // 1193
        let start = r.clock.now();
        let period = tb.duration(1193);
        assert!(shared.lock().take_due(start + period));
        assert_eq!(shared.lock().ch0_next, Some(start + period * 2));
        let late = start + period * 10 + Duration::from_micros(3);
        assert!(shared.lock().take_due(late));
        assert!(!shared.lock().take_due(late));
        assert_eq!(shared.lock().ch0_next, Some(late + period));

        // A control word stops it.
        r.out(PORT_MODE, 0x30);
        assert_eq!(shared.lock().ch0_next, None);
    }

    #[test]
    fn bcd_and_odd_accesses() {
        let r = Rig::new(1);
        r.out(PORT_MODE, 0x71); // counter 1, LSB/MSB, mode 0, BCD
        r.out(1, 0x00);
        r.out(1, 0x10); // 1000 decimal
        r.advance(1);
        assert_eq!(r.latch_read(1), 0x0999);
        r.advance(1000);
        assert_eq!(r.latch_read(1), 0x9999, "wraps at 10000");
        // Invalid BCD digits do not panic.
        r.out(PORT_MODE, 0x71);
        r.out(1, 0xff);
        r.out(1, 0xff);
        r.advance(7);
        let _ = r.latch_read(1);
        // Wide and empty accesses.
        let mut pit = r.pit.lock().unwrap();
        let mut wide = [0xaau8; 4];
        pit.read(3, &mut wide);
        assert_eq!(wide, [0xff, 0, 0, 0]);
        pit.read(0, &mut []);
        pit.write(0, &[]);
        pit.write(7, &[1]);
        // A count of 1 in mode 3 and mode 2 reads without panicking.
        pit.write(PORT_MODE, &[0x16]);
        pit.write(0, &[1]);
        pit.read(0, &mut wide);
        pit.write(PORT_MODE, &[0x14]);
        pit.write(0, &[1]);
        pit.read(0, &mut wide);
    }

    #[test]
    fn thread_fires_at_slowed_rate() {
        let line = Arc::new(RecordingLine::default());
        let pit = Pit::try_new(line.clone(), 10).unwrap();
        assert!(pit.lock().unwrap().is_running());
        let started = Instant::now();
        {
            let mut p = pit.lock().unwrap();
            // Mode 2, 1 ms programmed: 10 ms with the slowdown.
            p.write(PORT_MODE, &[0x34]);
            p.write(0, &[(1193 & 0xff) as u8]);
            p.write(0, &[(1193 >> 8) as u8]);
        }
        std::thread::sleep(Duration::from_millis(100));
        let rises = line.rises();
        let elapsed = started.elapsed();
        // About 10; generous bounds for a busy machine. Unslowed it would be about 100.
        let most = elapsed.as_millis() as u64 / 10 + 2;
        assert!((3..=most).contains(&rises), "{rises} pulses in {elapsed:?}");
        // The thread counts a pulse just before it makes it.
        let fired = pit.lock().unwrap().fired();
        assert!(
            fired == rises || fired == rises + 1,
            "{fired} fired, {rises} seen"
        );
    }

    #[test]
    fn stop_and_drop_join_the_thread() {
        let line = Arc::new(RecordingLine::default());
        let pit = Pit::new(line.clone(), 1);
        let shared = pit.lock().unwrap().shared.clone();
        {
            let mut p = pit.lock().unwrap();
            p.write(PORT_MODE, &[0x34]);
            p.write(0, &[0x00]);
            p.write(0, &[0x10]); // ~3.4 ms
        }
        std::thread::sleep(Duration::from_millis(20));
        pit.lock().unwrap().stop();
        assert!(!pit.lock().unwrap().is_running());
        assert_eq!(
            Arc::strong_count(&shared),
            2,
            "the thread's reference is gone"
        );
        let rises = line.rises();
        assert!(rises > 0);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(line.rises(), rises, "no pulses after stop");

        // Restart, then drop: the thread ends with the PIT.
        pit.lock().unwrap().start().unwrap();
        assert_eq!(Arc::strong_count(&shared), 3);
        let p61 = speaker_port(&pit);
        drop(pit);
        assert_eq!(
            Arc::strong_count(&shared),
            2,
            "only the test and port 0x61 remain"
        );
        drop(p61);
    }
}
