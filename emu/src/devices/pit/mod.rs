//! The Intel 8254 programmable interval timer (ports 0x40-0x43) and the PC's port 0x61 (NMI
//! status and speaker control), in userspace.
//!
//! This module owns the three counters, port 0x61, and a timer thread ("cove-pit") that raises
//! IRQ 0 when counter 0's output rises. It exists for hosts where KVM's in-kernel PIT is unusable:
//! on nested KVM without hardware virtualization (see `docs/nested-kvm.md`) the guest kernel runs
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
//!
//! `channel` models one counter; this file the device, port 0x61 and the timer thread.

use parking_lot::{Condvar, Mutex, MutexGuard};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::bus::{write_le, BusDevice};
use crate::interrupt::SharedLine;

mod channel;

use channel::{Channel, Counting, Timebase, ACCESS_LATCH};

/// The 8254's input clock on a PC, in Hz.
pub const PIT_HZ: u64 = 1_193_182;
/// The shortest interval between two periodic IRQ 0 pulses, whatever the guest programs.
pub const MIN_IRQ_PERIOD: Duration = Duration::from_micros(100);

const PORT_MODE: u64 = 3;

// Port 0x61 bits.
const P61_GATE2: u8 = 0x01;
const P61_WRITABLE: u8 = 0x0f;
const P61_REFRESH: u8 = 0x10;
const P61_OUT2: u8 = 0x20;

/// A monotonic time source: the time since an arbitrary, fixed epoch.
pub trait Clock: Send + Sync {
    /// Time elapsed since the clock's epoch.
    fn now(&self) -> Duration;
}

/// The host's monotonic clock.
pub struct RealClock {
    epoch: Instant,
}

impl RealClock {
    /// A clock whose epoch is now.
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
        self.state.lock()
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
        match st.ch0_next {
            None => shared.wake.wait(&mut st),
            Some(deadline) => {
                shared.wake.wait_for(&mut st, deadline.saturating_sub(now));
            }
        }
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
        if let Err(e) = pit.lock().start() {
            log::error!("pit: cannot start the timer thread, IRQ 0 will not fire: {e}");
        }
        pit
    }

    /// As [`Pit::new`], failing if the timer thread cannot be started.
    pub fn try_new(irq0: SharedLine, slowdown: u32) -> std::io::Result<Arc<Mutex<Pit>>> {
        let pit = Self::with_clock(irq0, slowdown, Arc::new(RealClock::new()));
        pit.lock().start()?;
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
    let pit = pit.lock();
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
mod tests;
