//! The 8254 and port 0x61 against a fake clock: counts, OUT, gates, latches, BCD, the
//! slowdown, and the timer thread's IRQ 0 pulses.

use super::*;
use crate::testing::RecordingLine;

#[derive(Default)]
struct FakeClock {
    now: Mutex<Duration>,
}

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        *self.now.lock()
    }
}

impl FakeClock {
    /// Advances by `ticks` ticks of a PIT slowed down `slowdown` times.
    fn advance_ticks(&self, ticks: u64, slowdown: u32) {
        let d = Timebase { slowdown }.duration(ticks);
        *self.now.lock() += d;
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
        self.pit.lock().write(port, &[value]);
    }
    fn inb(&self, port: u64) -> u8 {
        let mut d = [0u8];
        self.pit.lock().read(port, &mut d);
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
        self.pit.lock().shared.clone()
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
    let mut pit = r.pit.lock();
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
    assert!(pit.lock().is_running());
    let started = Instant::now();
    {
        let mut p = pit.lock();
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
    let fired = pit.lock().fired();
    assert!(
        fired == rises || fired == rises + 1,
        "{fired} fired, {rises} seen"
    );
}

#[test]
fn stop_and_drop_join_the_thread() {
    let line = Arc::new(RecordingLine::default());
    let pit = Pit::new(line.clone(), 1);
    let shared = pit.lock().shared.clone();
    {
        let mut p = pit.lock();
        p.write(PORT_MODE, &[0x34]);
        p.write(0, &[0x00]);
        p.write(0, &[0x10]); // ~3.4 ms
    }
    std::thread::sleep(Duration::from_millis(20));
    pit.lock().stop();
    assert!(!pit.lock().is_running());
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
    pit.lock().start().unwrap();
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
