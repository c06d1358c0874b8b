//! The MC146818 CMOS RTC and its NVRAM, at ports 0x70 (index) and 0x71 (data).
//!
//! This module owns the 128 bytes of CMOS memory, the real-time clock registers and the memory
//! size bytes a PC BIOS leaves there. It raises no interrupts: update, alarm and periodic
//! interrupts are not modelled (register C always reads 0 flags).
//!
//! - The time (registers 0x00-0x09 and the century at 0x32) is the host's UTC wall clock at the
//!   moment of the read, plus an offset the guest sets by writing the time. Register B selects
//!   BCD or binary (DM, bit 2) and 12 or 24 hour mode (bit 1); the default is BCD, 24 hour.
//! - Register A never shows an update in progress (UIP clear), so a guest never waits for one.
//! - Setting the time: while register B's SET bit is on, time writes are staged and read back as
//!   written; clearing SET turns the staged date into an offset from the host clock. A time write
//!   without SET applies at once. Impossible dates roll over (31 February reads as 3 March)
//!   rather than fail.
//! - Bit 7 of the index port masks NMIs on a PC; Cove has no NMI source there, so it is ignored.

use crate::bus::{write_le, BusDevice};

const SECONDS: usize = 0x00;
const MINUTES: usize = 0x02;
const HOURS: usize = 0x04;
const DAY_OF_WEEK: usize = 0x06;
const DAY_OF_MONTH: usize = 0x07;
const MONTH: usize = 0x08;
const YEAR: usize = 0x09;
const REG_A: usize = 0x0a;
const REG_B: usize = 0x0b;
const REG_C: usize = 0x0c;
const REG_D: usize = 0x0d;
/// Where PC firmware (and ACPI's FADT default) keeps the century.
const CENTURY: usize = 0x32;

/// The registers that make up the clock, in the order [`DateTime::fields`] lists them.
const TIME_REGS: [usize; 8] = [
    SECONDS,
    MINUTES,
    HOURS,
    DAY_OF_WEEK,
    DAY_OF_MONTH,
    MONTH,
    YEAR,
    CENTURY,
];

const REG_A_UIP: u8 = 0x80;
/// 32.768 kHz time base, 1024 Hz periodic rate: what PC firmware programs.
const REG_A_DEFAULT: u8 = 0x26;
const REG_B_SET: u8 = 0x80;
const REG_B_DM_BINARY: u8 = 0x04;
const REG_B_24H: u8 = 0x02;
const REG_D_VRT: u8 = 0x80;
const HOUR_PM: u8 = 0x80;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Seconds since the Unix epoch, UTC.
pub type WallClock = Box<dyn Fn() -> i64 + Send>;

fn host_wall_clock() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DateTime {
    year: i64,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    /// 1 (Sunday) to 7, as the RTC counts.
    weekday: u8,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9).rem_euclid(12);
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl DateTime {
    fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let tod = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Self {
            year,
            month: month as u8,
            day: day as u8,
            hour: (tod / 3600) as u8,
            minute: (tod / 60 % 60) as u8,
            second: (tod % 60) as u8,
            // 1970-01-01 was a Thursday (5 when Sunday is 1).
            weekday: ((days + 4).rem_euclid(7) + 1) as u8,
        }
    }

    fn to_unix(self) -> i64 {
        days_from_civil(self.year, i64::from(self.month), i64::from(self.day)) * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }
}

fn to_bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

/// Decodes BCD leniently: nibbles above 9 count at face value instead of failing.
fn from_bcd(v: u8) -> u8 {
    (v >> 4) * 10 + (v & 0x0f)
}

/// The MC146818 RTC with its 128 bytes of CMOS memory.
pub struct Cmos {
    index: u8,
    nvram: [u8; 128],
    /// Guest time minus host time, in seconds.
    offset: i64,
    clock: WallClock,
}

impl Cmos {
    /// A CMOS for a machine with `mem_below_4g` bytes of RAM below the 32-bit MMIO hole and
    /// `mem_above_4g` bytes above 4 GiB, with the time taken from the host's clock.
    pub fn new(mem_below_4g: u64, mem_above_4g: u64) -> Self {
        Self::with_wall_clock(mem_below_4g, mem_above_4g, Box::new(host_wall_clock))
    }

    /// As [`Cmos::new`], with the time taken from `clock` (seconds since the Unix epoch, UTC).
    pub fn with_wall_clock(mem_below_4g: u64, mem_above_4g: u64, clock: WallClock) -> Self {
        let mut nvram = [0u8; 128];
        nvram[REG_A] = REG_A_DEFAULT;
        nvram[REG_B] = REG_B_24H;
        nvram[REG_D] = REG_D_VRT;

        // Base memory: 640 KiB.
        let base_kib: u16 = 640;
        nvram[0x15..=0x16].copy_from_slice(&base_kib.to_le_bytes());
        // Extended memory above 1 MiB, in KiB (the BIOS and the POST copy).
        let ext_kib = (mem_below_4g.saturating_sub(MIB) / KIB).min(0xffff) as u16;
        nvram[0x17..=0x18].copy_from_slice(&ext_kib.to_le_bytes());
        nvram[0x30..=0x31].copy_from_slice(&ext_kib.to_le_bytes());
        // Memory between 16 MiB and the top of 32-bit RAM, in 64 KiB units.
        let above_16m = (mem_below_4g.saturating_sub(16 * MIB) / (64 * KIB)).min(0xffff) as u16;
        nvram[0x34..=0x35].copy_from_slice(&above_16m.to_le_bytes());
        // Memory above 4 GiB, in 64 KiB units, 24 bits.
        let high = (mem_above_4g / (64 * KIB)).min(0xff_ffff) as u32;
        nvram[0x5b..=0x5d].copy_from_slice(&high.to_le_bytes()[..3]);

        Self {
            index: 0,
            nvram,
            offset: 0,
            clock,
        }
    }

    fn reg_b(&self) -> u8 {
        self.nvram[REG_B]
    }

    fn binary(&self) -> bool {
        self.reg_b() & REG_B_DM_BINARY != 0
    }

    fn encode(&self, v: u8) -> u8 {
        if self.binary() {
            v
        } else {
            to_bcd(v)
        }
    }

    fn decode(&self, v: u8) -> u8 {
        if self.binary() {
            v
        } else {
            from_bcd(v)
        }
    }

    fn encode_hour(&self, hour: u8) -> u8 {
        if self.reg_b() & REG_B_24H != 0 {
            self.encode(hour)
        } else {
            let h12 = match hour % 12 {
                0 => 12,
                h => h,
            };
            let pm = if hour >= 12 { HOUR_PM } else { 0 };
            self.encode(h12) | pm
        }
    }

    fn decode_hour(&self, v: u8) -> u8 {
        if self.reg_b() & REG_B_24H != 0 {
            self.decode(v)
        } else {
            let h = self.decode(v & !HOUR_PM) % 12;
            if v & HOUR_PM != 0 {
                h + 12
            } else {
                h
            }
        }
    }

    fn now(&self) -> DateTime {
        DateTime::from_unix((self.clock)().saturating_add(self.offset))
    }

    /// The clock registers' values for `t`, in the current format, in [`TIME_REGS`] order.
    fn time_fields(&self, t: &DateTime) -> [u8; 8] {
        let year = t.year.rem_euclid(10_000);
        [
            self.encode(t.second),
            self.encode(t.minute),
            self.encode_hour(t.hour),
            self.encode(t.weekday),
            self.encode(t.day),
            self.encode(t.month),
            self.encode((year % 100) as u8),
            self.encode((year / 100) as u8),
        ]
    }

    fn read_time_reg(&self, reg: usize) -> u8 {
        if self.reg_b() & REG_B_SET != 0 {
            // Updates are halted: the registers hold what was there or what the guest wrote.
            return self.nvram[reg];
        }
        let fields = self.time_fields(&self.now());
        TIME_REGS
            .iter()
            .position(|&r| r == reg)
            .map_or(self.nvram[reg], |i| fields[i])
    }

    /// Copies the running time into the clock registers (updates halt).
    fn freeze_time(&mut self) {
        let fields = self.time_fields(&self.now());
        for (&reg, value) in TIME_REGS.iter().zip(fields) {
            self.nvram[reg] = value;
        }
    }

    /// Makes the time in the clock registers the guest's time from now on.
    fn commit_time(&mut self) {
        let t = DateTime {
            year: i64::from(self.decode(self.nvram[CENTURY])) * 100
                + i64::from(self.decode(self.nvram[YEAR])),
            month: self.decode(self.nvram[MONTH]),
            day: self.decode(self.nvram[DAY_OF_MONTH]),
            hour: self.decode_hour(self.nvram[HOURS]),
            minute: self.decode(self.nvram[MINUTES]),
            second: self.decode(self.nvram[SECONDS]),
            weekday: 0,
        };
        if t.month == 0 || t.month > 12 || t.day == 0 || t.day > 31 || t.hour > 23 {
            log::debug!("cmos: ignoring an invalid time set by the guest: {t:?}");
            return;
        }
        self.offset = t.to_unix().saturating_sub((self.clock)());
    }

    fn read_data(&mut self) -> u8 {
        let reg = usize::from(self.index);
        match reg {
            r if TIME_REGS.contains(&r) => self.read_time_reg(r),
            REG_A => self.nvram[REG_A] & !REG_A_UIP,
            REG_C => std::mem::take(&mut self.nvram[REG_C]),
            REG_D => REG_D_VRT,
            r => self.nvram[r],
        }
    }

    fn write_data(&mut self, value: u8) {
        let reg = usize::from(self.index);
        match reg {
            r if TIME_REGS.contains(&r) => {
                let setting = self.reg_b() & REG_B_SET != 0;
                if !setting {
                    self.freeze_time();
                }
                self.nvram[r] = value;
                if !setting {
                    self.commit_time();
                }
            }
            REG_A => self.nvram[REG_A] = value & !REG_A_UIP,
            REG_B => {
                let was_setting = self.reg_b() & REG_B_SET != 0;
                let setting = value & REG_B_SET != 0;
                self.nvram[REG_B] = value;
                match (was_setting, setting) {
                    (false, true) => self.freeze_time(),
                    (true, false) => self.commit_time(),
                    _ => {}
                }
            }
            // Register C (flags) and D (valid RAM) are read-only.
            REG_C | REG_D => {}
            r => self.nvram[r] = value,
        }
    }
}

impl BusDevice for Cmos {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if data.is_empty() {
            return;
        }
        let value = match offset {
            // The index register is write-only.
            0 => 0xff,
            1 => self.read_data(),
            _ => 0xff,
        };
        write_le(data, u64::from(value));
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else {
            return;
        };
        match offset {
            // Bit 7 is the NMI mask on PCs: ignored.
            0 => self.index = value & 0x7f,
            1 => self.write_data(value),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    const GIB: u64 = 1024 * MIB;

    /// 2024-02-29 13:05:09 UTC, a Thursday.
    const T0: i64 = 1_709_211_909;

    fn cmos_at(mem_below: u64, mem_above: u64) -> (Cmos, Arc<AtomicI64>) {
        let now = Arc::new(AtomicI64::new(T0));
        let clock = now.clone();
        let cmos = Cmos::with_wall_clock(
            mem_below,
            mem_above,
            Box::new(move || clock.load(Ordering::SeqCst)),
        );
        (cmos, now)
    }

    fn read_reg(c: &mut Cmos, reg: u8) -> u8 {
        c.write(0, &[reg]);
        let mut data = [0u8];
        c.read(1, &mut data);
        data[0]
    }

    fn write_reg(c: &mut Cmos, reg: u8, value: u8) {
        c.write(0, &[reg]);
        c.write(1, &[value]);
    }

    fn time_regs(c: &mut Cmos) -> [u8; 8] {
        [0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32].map(|r| read_reg(c, r))
    }

    #[test]
    fn civil_conversions_round_trip() {
        for secs in [0, T0, 951_782_400, 4_107_542_399, -86_400] {
            assert_eq!(DateTime::from_unix(secs).to_unix(), secs);
        }
        let t = DateTime::from_unix(0);
        assert_eq!((t.year, t.month, t.day, t.weekday), (1970, 1, 1, 5));
    }

    #[test]
    fn reads_bcd_time() {
        let (mut c, _) = cmos_at(512 * MIB, 0);
        assert_eq!(read_reg(&mut c, 0x0b), 0x02);
        assert_eq!(
            time_regs(&mut c),
            [0x09, 0x05, 0x13, 0x05, 0x29, 0x02, 0x24, 0x20]
        );
        // 12-hour BCD: 1 PM.
        write_reg(&mut c, 0x0b, 0x00);
        assert_eq!(read_reg(&mut c, 0x04), 0x81);
    }

    #[test]
    fn reads_binary_time() {
        let (mut c, now) = cmos_at(512 * MIB, 0);
        write_reg(&mut c, 0x0b, REG_B_24H | REG_B_DM_BINARY);
        assert_eq!(time_regs(&mut c), [9, 5, 13, 5, 29, 2, 24, 20]);
        // The clock follows the host.
        now.store(T0 + 3600 * 11, Ordering::SeqCst);
        assert_eq!(read_reg(&mut c, 0x04), 0);
        assert_eq!(read_reg(&mut c, 0x07), 1);
        assert_eq!(read_reg(&mut c, 0x08), 3);
        // 12-hour binary: midnight is 12 AM.
        write_reg(&mut c, 0x0b, REG_B_DM_BINARY);
        assert_eq!(read_reg(&mut c, 0x04), 12);
    }

    #[test]
    fn status_registers() {
        let (mut c, _) = cmos_at(512 * MIB, 0);
        assert_eq!(read_reg(&mut c, 0x0a), 0x26);
        write_reg(&mut c, 0x0a, 0xa6);
        assert_eq!(read_reg(&mut c, 0x0a) & REG_A_UIP, 0, "UIP never set");
        assert_eq!(read_reg(&mut c, 0x0d), 0x80);
        write_reg(&mut c, 0x0d, 0);
        assert_eq!(read_reg(&mut c, 0x0d), 0x80);
    }

    #[test]
    fn register_c_clears_on_read() {
        let (mut c, _) = cmos_at(512 * MIB, 0);
        c.nvram[REG_C] = 0x90;
        assert_eq!(read_reg(&mut c, 0x0c), 0x90);
        assert_eq!(read_reg(&mut c, 0x0c), 0);
        write_reg(&mut c, 0x0c, 0xff);
        assert_eq!(read_reg(&mut c, 0x0c), 0, "register C is read-only");
    }

    #[test]
    fn memory_size_512m() {
        let (mut c, _) = cmos_at(512 * MIB, 0);
        let regs = |c: &mut Cmos, r: &[u8]| r.iter().map(|&r| read_reg(c, r)).collect::<Vec<_>>();
        assert_eq!(regs(&mut c, &[0x15, 0x16]), [0x80, 0x02]);
        assert_eq!(regs(&mut c, &[0x17, 0x18, 0x30, 0x31]), [0xff; 4]);
        // (512 - 16) MiB / 64 KiB = 7936 = 0x1f00.
        assert_eq!(regs(&mut c, &[0x34, 0x35]), [0x00, 0x1f]);
        assert_eq!(regs(&mut c, &[0x5b, 0x5c, 0x5d]), [0, 0, 0]);

        let (mut small, _) = cmos_at(8 * MIB, 0);
        // 7 MiB above 1 MiB = 7168 KiB = 0x1c00; nothing above 16 MiB.
        assert_eq!(
            regs(&mut small, &[0x17, 0x18, 0x30, 0x31]),
            [0x00, 0x1c, 0x00, 0x1c]
        );
        assert_eq!(regs(&mut small, &[0x34, 0x35]), [0, 0]);
    }

    #[test]
    fn memory_size_6g() {
        // 3 GiB below the MMIO hole, 3 GiB above 4 GiB.
        let (mut c, _) = cmos_at(3 * GIB, 3 * GIB);
        let regs = |c: &mut Cmos, r: &[u8]| r.iter().map(|&r| read_reg(c, r)).collect::<Vec<_>>();
        assert_eq!(regs(&mut c, &[0x17, 0x18]), [0xff, 0xff]);
        // (3072 - 16) MiB / 64 KiB = 48896 = 0xbf00.
        assert_eq!(regs(&mut c, &[0x34, 0x35]), [0x00, 0xbf]);
        // 3 GiB / 64 KiB = 49152 = 0xc000.
        assert_eq!(regs(&mut c, &[0x5b, 0x5c, 0x5d]), [0x00, 0xc0, 0x00]);
    }

    #[test]
    fn index_masks_nmi_bit() {
        let (mut c, _) = cmos_at(512 * MIB, 0);
        write_reg(&mut c, 0x80 | 0x40, 0x5a);
        assert_eq!(read_reg(&mut c, 0x40), 0x5a);
        assert_eq!(read_reg(&mut c, 0x80 | 0x0d), 0x80);
        // 0xff selects 0x7f, the last byte.
        write_reg(&mut c, 0xff, 0x77);
        assert_eq!(read_reg(&mut c, 0x7f), 0x77);
        // Odd widths and offsets do not panic.
        let mut wide = [0u8; 4];
        c.read(1, &mut wide);
        assert_eq!(wide, [0x77, 0, 0, 0]);
        c.write(1, &[]);
        c.read(0, &mut wide);
        c.read(5, &mut []);
        c.write(9, &[1]);
    }

    #[test]
    fn guest_sets_the_clock() {
        let (mut c, now) = cmos_at(512 * MIB, 0);
        // As Linux's mc146818_set_time: SET, write the fields, clear SET.
        write_reg(&mut c, 0x0b, 0x02 | REG_B_SET);
        write_reg(&mut c, 0x09, 0x99);
        write_reg(&mut c, 0x32, 0x19);
        write_reg(&mut c, 0x08, 0x12);
        write_reg(&mut c, 0x07, 0x31);
        write_reg(&mut c, 0x04, 0x23);
        write_reg(&mut c, 0x02, 0x59);
        write_reg(&mut c, 0x00, 0x50);
        // While SET is on, the registers read as written.
        assert_eq!(read_reg(&mut c, 0x09), 0x99);
        write_reg(&mut c, 0x0b, 0x02);
        now.store(T0 + 15, Ordering::SeqCst);
        // 15 s later: 2000-01-01 00:00:05, a Saturday.
        assert_eq!(
            time_regs(&mut c),
            [0x05, 0x00, 0x00, 0x07, 0x01, 0x01, 0x00, 0x20]
        );

        // A single write without SET applies at once.
        write_reg(&mut c, 0x04, 0x10);
        assert_eq!(read_reg(&mut c, 0x04), 0x10);
        assert_eq!(read_reg(&mut c, 0x07), 0x01);

        // Nonsense is ignored rather than fatal.
        write_reg(&mut c, 0x08, 0xff);
        assert_eq!(read_reg(&mut c, 0x08), 0x01);
        write_reg(&mut c, 0x0b, 0x02 | REG_B_SET);
        write_reg(&mut c, 0x07, 0x00);
        write_reg(&mut c, 0x04, 0xff);
        write_reg(&mut c, 0x0b, 0x02);
        assert_eq!(read_reg(&mut c, 0x07), 0x01);
    }
}
