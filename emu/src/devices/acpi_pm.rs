//! ACPI fixed hardware: the PM1a event block (PM1_STS, PM1_EN), the PM1a control block
//! (PM1_CNT) and the PM timer, as one port I/O device of [`ports::ACPI_PM_LEN`] bytes at
//! [`ports::ACPI_PM_BASE`], the registers the FADT points at.
//!
//! ```text
//! offset 0..2   PM1_STS  write 1 to clear: TMR_STS (0), PWRBTN_STS (8), WAK_STS (15)
//! offset 2..4   PM1_EN   TMR_EN (0), PWRBTN_EN (8)
//! offset 4..6   PM1_CNT  SCI_EN (0, always 1), BM_RLD (1), SLP_TYP (10-12), SLP_EN (13, write-only)
//! offset 6..8   reserved (reads 0)
//! offset 8..12  PM_TMR   24-bit counter at 3.579545 MHz
//! ```
//!
//! The platform is always in ACPI mode (the FADT has no SMI command port), so SCI_EN reads 1.
//! The SCI is a level interrupt, high while an enabled event's status bit is set. Writing SLP_EN
//! with the `_S5` sleep type powers the machine off; other sleep states are not supported.
//! Accesses of any width at any offset inside the block work, e.g. PM1_STS and PM1_EN as one
//! dword.
//!
//! TMR_STS is computed when the guest touches the block, so with TMR_EN set the timer's SCI is
//! raised at the next access after the counter's top bit flips, not asynchronously. Linux does
//! not use the timer event.

use crate::arch::x86_64::layout::{ports, ACPI_S5_SLEEP_TYPE};
use crate::bus::BusDevice;
use crate::devices::{PowerRequest, PowerSink};
use crate::interrupt::SharedLine;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frequency of the ACPI PM timer.
pub const PM_TIMER_HZ: u64 = 3_579_545;
/// Width of the PM timer counter (defined with the platform layout, which the FADT also uses).
pub use crate::arch::x86_64::layout::PM_TIMER_BITS;

const LEN: usize = ports::ACPI_PM_LEN as usize;
const PM1_STS: usize = (ports::ACPI_PM1_EVT - ports::ACPI_PM_BASE) as usize;
const PM1_EN: usize = PM1_STS + ports::ACPI_PM1_EVT_LEN as usize / 2;
const PM1_CNT: usize = (ports::ACPI_PM1_CNT - ports::ACPI_PM_BASE) as usize;
const PM_TMR: usize = (ports::ACPI_PM_TMR - ports::ACPI_PM_BASE) as usize;
const _: () = assert!(PM_TMR + ports::ACPI_PM_TMR_LEN as usize <= LEN);

// PM1_STS and PM1_EN.
const TMR_STS: u16 = 1 << 0;
const PWRBTN_STS: u16 = 1 << 8;
const WAK_STS: u16 = 1 << 15;
const TMR_EN: u16 = TMR_STS;
const PWRBTN_EN: u16 = PWRBTN_STS;
/// The events that raise the SCI when both their status and enable bits are set.
const SCI_EVENTS: u16 = TMR_STS | PWRBTN_STS;
/// GBL_EN and RTC_EN are stored because ACPICA checks that they stick (it disables the
/// global lock, and reports an RTC error, otherwise); Cove raises neither event.
const GBL_EN: u16 = 1 << 5;
const RTC_EN: u16 = 1 << 10;
const EN_MASK: u16 = TMR_EN | GBL_EN | PWRBTN_EN | RTC_EN;

// PM1_CNT.
const SCI_EN: u16 = 1 << 0;
const BM_RLD: u16 = 1 << 1;
const SLP_TYP_SHIFT: u32 = 10;
const SLP_TYP_MASK: u16 = 0x7 << SLP_TYP_SHIFT;
const SLP_EN: u16 = 1 << 13;
/// The PM1_CNT bits that hold a value (SCI_EN is fixed, GBL_RLS and SLP_EN are write-only).
const CNT_STORED: u16 = BM_RLD | SLP_TYP_MASK;

const TIMER_MASK: u64 = (1 << PM_TIMER_BITS) - 1;

/// Monotonic time since the device was created.
type Clock = Box<dyn Fn() -> Duration + Send>;

/// The ACPI PM1a event and control blocks and the PM timer.
pub struct AcpiPm {
    sci: SharedLine,
    power: Arc<dyn PowerSink>,
    clock: Clock,
    /// PWRBTN_STS and WAK_STS; TMR_STS is derived from the timer.
    status: u16,
    enable: u16,
    /// The stored bits of PM1_CNT ([`CNT_STORED`]).
    control: u16,
    /// How many times the timer's top bit had flipped when the guest last cleared TMR_STS.
    tmr_flips_seen: u64,
    sci_level: bool,
}

impl AcpiPm {
    /// The device, raising `sci` (the SCI, a level-triggered line) and sending power-off
    /// requests to `power`.
    pub fn new(sci: SharedLine, power: Arc<dyn PowerSink>) -> Self {
        let start = Instant::now();
        Self::with_clock(sci, power, Box::new(move || start.elapsed()))
    }

    fn with_clock(sci: SharedLine, power: Arc<dyn PowerSink>, clock: Clock) -> Self {
        Self {
            sci,
            power,
            clock,
            status: 0,
            enable: 0,
            control: 0,
            tmr_flips_seen: 0,
            sci_level: false,
        }
    }

    /// Presses the fixed-feature power button: sets PWRBTN_STS, which raises the SCI when the
    /// guest has set PWRBTN_EN.
    pub fn press_power_button(&mut self) {
        self.status |= PWRBTN_STS;
        let ticks = self.ticks();
        self.update_sci(ticks);
    }

    /// PM timer ticks since the device was created, not wrapped.
    fn ticks(&self) -> u64 {
        let nanos = (self.clock)().as_nanos();
        // Truncating keeps the low bits right; it takes 160 000 years to matter anyway.
        (nanos * u128::from(PM_TIMER_HZ) / 1_000_000_000) as u64
    }

    /// How many times the counter's top bit has flipped after `ticks` ticks.
    fn top_bit_flips(ticks: u64) -> u64 {
        ticks >> (PM_TIMER_BITS - 1)
    }

    fn pm1_status(&self, ticks: u64) -> u16 {
        let timer = if Self::top_bit_flips(ticks) != self.tmr_flips_seen {
            TMR_STS
        } else {
            0
        };
        self.status | timer
    }

    fn update_sci(&mut self, ticks: u64) {
        let level = self.pm1_status(ticks) & self.enable & SCI_EVENTS != 0;
        if level != self.sci_level {
            self.sci_level = level;
            self.sci.set_level(level);
        }
    }

    /// PM1_CNT was written with SLP_EN set.
    fn sleep(&mut self) {
        let sleep_type = (self.control & SLP_TYP_MASK) >> SLP_TYP_SHIFT;
        if sleep_type == u16::from(ACPI_S5_SLEEP_TYPE) {
            log::info!("guest entered ACPI S5: powering off");
            self.power.request(PowerRequest::PowerOff);
        } else {
            log::warn!("guest asked for unsupported ACPI sleep type {sleep_type}: ignored");
        }
    }

    fn registers(&self, ticks: u64) -> [u8; LEN] {
        let mut regs = [0u8; LEN];
        regs[PM1_STS..PM1_STS + 2].copy_from_slice(&self.pm1_status(ticks).to_le_bytes());
        regs[PM1_EN..PM1_EN + 2].copy_from_slice(&self.enable.to_le_bytes());
        regs[PM1_CNT..PM1_CNT + 2].copy_from_slice(&(self.control | SCI_EN).to_le_bytes());
        let timer = (ticks & TIMER_MASK) as u32;
        regs[PM_TMR..PM_TMR + 4].copy_from_slice(&timer.to_le_bytes());
        regs
    }
}

/// The block index of byte `i` of an access at `offset`, if it is inside the block.
fn index(offset: u64, i: usize) -> Option<usize> {
    let at = offset.checked_add(i as u64)?;
    usize::try_from(at).ok().filter(|&at| at < LEN)
}

/// The value written to the 16-bit register at `at` and the mask of the bits written.
fn written16(value: &[u8; LEN], mask: &[u8; LEN], at: usize) -> (u16, u16) {
    let v = u16::from_le_bytes([value[at], value[at + 1]]);
    let m = u16::from_le_bytes([mask[at], mask[at + 1]]);
    (v & m, m)
}

impl BusDevice for AcpiPm {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let ticks = self.ticks();
        let regs = self.registers(ticks);
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = index(offset, i).map_or(0xff, |at| regs[at]);
        }
        self.update_sci(ticks);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let ticks = self.ticks();
        let mut value = [0u8; LEN];
        let mut mask = [0u8; LEN];
        for (i, byte) in data.iter().enumerate() {
            if let Some(at) = index(offset, i) {
                value[at] = *byte;
                mask[at] = 0xff;
            }
        }

        let (clear, _) = written16(&value, &mask, PM1_STS);
        self.status &= !(clear & (PWRBTN_STS | WAK_STS));
        if clear & TMR_STS != 0 {
            self.tmr_flips_seen = Self::top_bit_flips(ticks);
        }

        let (bits, m) = written16(&value, &mask, PM1_EN);
        self.enable = ((self.enable & !m) | bits) & EN_MASK;

        let (bits, m) = written16(&value, &mask, PM1_CNT);
        self.control = ((self.control & !m) | bits) & CNT_STORED;
        if bits & SLP_EN != 0 {
            self.sleep();
        }

        // The PM timer is read-only.
        self.update_sci(ticks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::bus::{read_le, write_le};
    use crate::testing::{RecordingLine, RecordingPower};
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Test {
        pm: AcpiPm,
        line: Arc<RecordingLine>,
        sink: Arc<RecordingPower>,
        nanos: Arc<AtomicU64>,
    }

    fn setup() -> Test {
        let line = Arc::new(RecordingLine::default());
        let sink = Arc::new(RecordingPower::default());
        let nanos = Arc::new(AtomicU64::new(0));
        let clock = nanos.clone();
        let pm = AcpiPm::with_clock(
            line.clone(),
            sink.clone(),
            Box::new(move || Duration::from_nanos(clock.load(Ordering::SeqCst))),
        );
        Test {
            pm,
            line,
            sink,
            nanos,
        }
    }

    fn rd(pm: &mut AcpiPm, offset: u64, width: usize) -> u64 {
        let mut data = vec![0u8; width];
        pm.read(offset, &mut data);
        read_le(&data)
    }

    fn wr(pm: &mut AcpiPm, offset: u64, width: usize, value: u64) {
        let mut data = vec![0u8; width];
        write_le(&mut data, value);
        pm.write(offset, &data);
    }

    const CNT: u64 = PM1_CNT as u64;
    const EN: u64 = PM1_EN as u64;
    const TMR: u64 = PM_TMR as u64;

    #[test]
    fn enable_bits_acpica_probes_stick() {
        let mut t = setup();
        wr(&mut t.pm, EN, 2, u64::from(GBL_EN | RTC_EN | 0x4000));
        assert_eq!(
            rd(&mut t.pm, EN, 2),
            u64::from(GBL_EN | RTC_EN),
            "unknown bits are not kept"
        );
    }

    #[test]
    fn s5_powers_off() {
        let mut t = setup();
        // What ACPICA does: SLP_TYP first, then SLP_TYP | SLP_EN.
        wr(&mut t.pm, CNT, 2, 5 << 10);
        assert!(t.sink.requests().is_empty());
        assert_eq!(rd(&mut t.pm, CNT, 2), (5 << 10) | 1);
        wr(&mut t.pm, CNT, 2, (5 << 10) | (1 << 13));
        assert_eq!(t.sink.requests(), vec![PowerRequest::PowerOff]);
        // SLP_EN is write-only.
        assert_eq!(rd(&mut t.pm, CNT, 2) & (1 << 13), 0);
    }

    #[test]
    fn s5_by_high_byte_write() {
        let mut t = setup();
        wr(&mut t.pm, CNT + 1, 1, ((5 << 10) | (1 << 13)) >> 8);
        assert_eq!(t.sink.requests(), vec![PowerRequest::PowerOff]);
    }

    #[test]
    fn other_sleep_types_are_ignored() {
        let mut t = setup();
        for slp_typ in [0u64, 1, 3, 4, 7] {
            wr(&mut t.pm, CNT, 2, (slp_typ << 10) | (1 << 13));
        }
        assert!(t.sink.requests().is_empty());
    }

    #[test]
    fn sci_en_reads_one_and_is_read_only() {
        let mut t = setup();
        assert_eq!(rd(&mut t.pm, CNT, 2), 1);
        wr(&mut t.pm, CNT, 2, 0);
        assert_eq!(rd(&mut t.pm, CNT, 2), 1);
        assert_eq!(rd(&mut t.pm, CNT, 1), 1);
        // Reserved bytes read 0.
        assert_eq!(rd(&mut t.pm, 6, 2), 0);
    }

    #[test]
    fn power_button_raises_sci_when_enabled() {
        let mut t = setup();
        t.pm.press_power_button();
        assert_eq!(rd(&mut t.pm, 0, 2), 1 << 8);
        assert!(!t.line.high(), "PWRBTN_EN is clear");
        wr(&mut t.pm, EN, 2, 1 << 8);
        assert!(t.line.high());
        assert_eq!(rd(&mut t.pm, EN, 2), 1 << 8);
        // Clearing an unrelated status bit keeps the SCI up.
        wr(&mut t.pm, 0, 2, 1 << 15);
        assert!(t.line.high());
        // Clearing PWRBTN_STS drops it.
        wr(&mut t.pm, 0, 2, 1 << 8);
        assert!(!t.line.high());
        assert_eq!(rd(&mut t.pm, 0, 2), 0);
        // Pressing again with PWRBTN_EN set raises it at once; disabling lowers it.
        t.pm.press_power_button();
        assert!(t.line.high());
        wr(&mut t.pm, EN, 2, 0);
        assert!(!t.line.high());
        assert_eq!(t.line.levels(), vec![true, false, true, false]);
    }

    #[test]
    fn status_writes_of_zero_clear_nothing() {
        let mut t = setup();
        t.pm.press_power_button();
        wr(&mut t.pm, 0, 1, 0xff); // the low byte does not hold PWRBTN_STS
        assert_eq!(rd(&mut t.pm, 0, 2), 1 << 8);
        wr(&mut t.pm, 1, 1, 0x01);
        assert_eq!(rd(&mut t.pm, 0, 2), 0);
    }

    #[test]
    fn dword_access_across_status_and_enable() {
        let mut t = setup();
        t.pm.press_power_button();
        // Enable the power button event and clear nothing in one dword write.
        wr(&mut t.pm, 0, 4, (1 << 8) << 16);
        assert_eq!(rd(&mut t.pm, 0, 4), (1 << 8) | ((1 << 8) << 16));
        assert!(t.line.high());
        // A word straddling PM1_STS and PM1_EN: PWRBTN_STS high byte, then PM1_EN low byte.
        assert_eq!(rd(&mut t.pm, 1, 2), 0x0001);
        assert_eq!(rd(&mut t.pm, 3, 1), 0x01);
        // Clear the status and keep the enable in one dword write.
        wr(&mut t.pm, 0, 4, (1 << 8) | ((1 << 8) << 16));
        assert_eq!(rd(&mut t.pm, 0, 4), (1 << 8) << 16);
        assert!(!t.line.high());
    }

    #[test]
    fn timer_counts_at_3_58_mhz_and_wraps_at_24_bits() {
        let mut t = setup();
        assert_eq!(rd(&mut t.pm, TMR, 4), 0);
        t.nanos.store(1_000_000_000, Ordering::SeqCst);
        assert_eq!(rd(&mut t.pm, TMR, 4), 3_579_545);
        assert_eq!(rd(&mut t.pm, TMR, 2), 3_579_545 & 0xffff);
        assert_eq!(rd(&mut t.pm, TMR + 2, 2), 3_579_545 >> 16);
        assert_eq!(rd(&mut t.pm, TMR + 3, 1), 0, "bits 24-31 read 0");
        // Writes are ignored.
        wr(&mut t.pm, TMR, 4, 0);
        assert_eq!(rd(&mut t.pm, TMR, 4), 3_579_545);
        // Five seconds is past 2^24 ticks.
        t.nanos.store(5_000_000_000, Ordering::SeqCst);
        assert_eq!(rd(&mut t.pm, TMR, 4), 5 * 3_579_545 - (1 << 24));
        // Monotonic between wraps.
        let mut last = 0;
        for ms in 0..100u64 {
            t.nanos.store(ms * 1_000_000, Ordering::SeqCst);
            let now = rd(&mut t.pm, TMR, 4);
            assert!(now >= last);
            last = now;
        }
    }

    #[test]
    fn timer_status_follows_the_top_bit() {
        let mut t = setup();
        assert_eq!(rd(&mut t.pm, 0, 2) & 1, 0);
        // 2^23 ticks is about 2.34 s.
        t.nanos.store(2_000_000_000, Ordering::SeqCst);
        assert_eq!(rd(&mut t.pm, 0, 2) & 1, 0);
        t.nanos.store(2_400_000_000, Ordering::SeqCst);
        assert_eq!(rd(&mut t.pm, 0, 2) & 1, 1);
        wr(&mut t.pm, 0, 2, 1);
        assert_eq!(rd(&mut t.pm, 0, 2) & 1, 0);
        wr(&mut t.pm, EN, 2, 1);
        assert!(!t.line.high());
        t.nanos.store(4_700_000_000, Ordering::SeqCst);
        assert_eq!(rd(&mut t.pm, 0, 2) & 1, 1);
        assert!(t.line.high());
        wr(&mut t.pm, 0, 2, 1);
        assert!(!t.line.high());
    }

    #[test]
    fn odd_accesses_do_not_panic() {
        let mut t = setup();
        for offset in [0u64, 1, 3, 5, 7, 9, 11, 12, 100, u64::MAX - 1, u64::MAX] {
            for width in [0usize, 1, 2, 3, 4, 8, 16] {
                let mut data = vec![0u8; width];
                t.pm.read(offset, &mut data);
                t.pm.write(offset, &vec![0u8; width]);
            }
        }
        let mut data = [0u8; 4];
        t.pm.read(10, &mut data);
        assert_eq!(&data[2..], &[0xff, 0xff], "bytes past the block");
        assert!(t.sink.requests().is_empty());
    }
}
