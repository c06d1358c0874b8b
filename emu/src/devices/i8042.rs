//! The i8042 PS/2 controller at ports 0x60 (data) and 0x64 (status and command), with a PS/2
//! keyboard behind it and no mouse.
//!
//! This module owns the controller (command byte, output buffer, output port) and the keyboard's
//! command handling and output queue. The controller's reset line is the machine's: command 0xFE
//! (pulse reset) or an output-port write with bit 0 clear sends [`PowerRequest::Reset`].
//!
//! Written by hand rather than wrapping vm-superio's i8042, which only implements the reset
//! command: Linux's probe needs the self-tests, the command byte, the keyboard's reset and
//! identify replies and a working output buffer, which would all have to be written here anyway.
//!
//! Model:
//! - Port 0x61 sits between the two ports, so the controller is reached through two bus
//!   adapters ([`data_port`], [`command_port`]), each inserted with length 1.
//! - Commands complete at once: the input buffer is never full (status IBF always 0).
//! - Output comes from a queue: controller replies first, then keyboard bytes while the keyboard
//!   interface is enabled. The head of the queue is the output buffer (status OBF).
//! - IRQ 1 is driven as a level: high while the output buffer holds non-aux data and the command
//!   byte enables the keyboard interrupt. Each read of the data port lowers it, and the next byte
//!   raises it again, so every byte makes a new edge for the edge-triggered ISA input.
//! - The aux (mouse) port exists but nothing is plugged in: bytes sent with 0xD4 are answered with
//!   0xFE (resend, i.e. no device), and there is no IRQ 12. Linux's aux IRQ test then times out
//!   and it carries on without a mouse.
//! - Scancodes pushed with [`I8042::push_scancode`] reach the guest unchanged: the caller sends
//!   what the guest should read (set 1 while the command byte's translate bit is on, which is the
//!   default, as PC firmware leaves it).

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;

use super::{PowerRequest, PowerSink};
use crate::bus::{write_le, BusDevice};
use crate::interrupt::SharedLine;

/// Most bytes the keyboard holds for the guest; more are dropped.
pub const KEYBOARD_QUEUE_LIMIT: usize = 256;

// Status register bits.
const STR_OBF: u8 = 0x01;
const STR_SYS: u8 = 0x04;
const STR_CMD: u8 = 0x08;
const STR_UNLOCKED: u8 = 0x10;
const STR_AUXDATA: u8 = 0x20;

// Controller command byte bits.
const CTR_KBDINT: u8 = 0x01;
const CTR_SYS: u8 = 0x04;
const CTR_KBDDIS: u8 = 0x10;
const CTR_AUXDIS: u8 = 0x20;
const CTR_XLATE: u8 = 0x40;
/// What PC firmware leaves behind: keyboard interrupt on, system flag, aux off, translation on.
const CTR_DEFAULT: u8 = CTR_KBDINT | CTR_SYS | CTR_AUXDIS | CTR_XLATE;

// Output port bits.
const OUT_RESET: u8 = 0x01;
const OUT_A20: u8 = 0x02;

// Controller commands.
const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_AUX_DISABLE: u8 = 0xa7;
const CMD_AUX_ENABLE: u8 = 0xa8;
const CMD_AUX_TEST: u8 = 0xa9;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_KBD_TEST: u8 = 0xab;
const CMD_KBD_DISABLE: u8 = 0xad;
const CMD_KBD_ENABLE: u8 = 0xae;
const CMD_READ_INPUT: u8 = 0xc0;
const CMD_READ_OUTPUT: u8 = 0xd0;
const CMD_WRITE_OUTPUT: u8 = 0xd1;
const CMD_WRITE_KBD_OBUF: u8 = 0xd2;
const CMD_WRITE_AUX_OBUF: u8 = 0xd3;
const CMD_WRITE_AUX: u8 = 0xd4;
const CMD_READ_TEST: u8 = 0xe0;

// Keyboard commands and replies.
const KBD_SET_LEDS: u8 = 0xed;
const KBD_ECHO: u8 = 0xee;
const KBD_SCANCODE_SET: u8 = 0xf0;
const KBD_IDENTIFY: u8 = 0xf2;
const KBD_TYPEMATIC: u8 = 0xf3;
const KBD_ENABLE: u8 = 0xf4;
const KBD_DISABLE: u8 = 0xf5;
const KBD_DEFAULTS: u8 = 0xf6;
const KBD_RESEND: u8 = 0xfe;
const KBD_RESET: u8 = 0xff;
const KBD_ACK: u8 = 0xfa;
const KBD_SELF_TEST_OK: u8 = 0xaa;
const KBD_ID: u8 = 0xab;
/// The second identify byte: 0x83 as the keyboard sends it, 0x41 once the controller translates.
const KBD_ID2: u8 = 0x83;
const KBD_ID2_TRANSLATED: u8 = 0x41;
const AUX_NO_DEVICE: u8 = 0xfe;

/// Where a controller command's data byte (written to port 0x60) goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataTarget {
    Ram(u8),
    OutputPort,
    KeyboardOutput,
    AuxOutput,
    Aux,
}

/// The keyboard command waiting for its parameter byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyboardParam {
    Leds,
    ScancodeSet,
    Typematic,
}

/// A byte on its way to the output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OutByte {
    value: u8,
    aux: bool,
}

/// The PS/2 keyboard behind the controller.
#[derive(Debug)]
struct Keyboard {
    queue: VecDeque<u8>,
    scanning: bool,
    scancode_set: u8,
    awaiting: Option<KeyboardParam>,
    last_sent: u8,
}

impl Keyboard {
    fn new() -> Self {
        Self {
            queue: VecDeque::new(),
            scanning: true,
            scancode_set: 2,
            awaiting: None,
            last_sent: KBD_ACK,
        }
    }

    fn send(&mut self, value: u8) {
        if self.queue.len() < KEYBOARD_QUEUE_LIMIT {
            self.queue.push_back(value);
        }
    }

    /// Handles a byte the guest sent to the keyboard.
    fn write(&mut self, value: u8, translated: bool) {
        if let Some(param) = self.awaiting.take() {
            match param {
                KeyboardParam::ScancodeSet if value == 0 => {
                    self.send(KBD_ACK);
                    self.send(self.scancode_set);
                }
                KeyboardParam::ScancodeSet if (1..=3).contains(&value) => {
                    self.scancode_set = value;
                    self.send(KBD_ACK);
                }
                KeyboardParam::ScancodeSet => self.send(AUX_NO_DEVICE),
                KeyboardParam::Leds | KeyboardParam::Typematic => self.send(KBD_ACK),
            }
            return;
        }
        match value {
            KBD_RESET => {
                self.queue.clear();
                self.scanning = true;
                self.scancode_set = 2;
                self.send(KBD_ACK);
                self.send(KBD_SELF_TEST_OK);
            }
            KBD_IDENTIFY => {
                self.send(KBD_ACK);
                self.send(KBD_ID);
                self.send(if translated {
                    KBD_ID2_TRANSLATED
                } else {
                    KBD_ID2
                });
            }
            KBD_ECHO => self.send(KBD_ECHO),
            KBD_RESEND => self.send(self.last_sent),
            KBD_SET_LEDS | KBD_SCANCODE_SET | KBD_TYPEMATIC => {
                self.awaiting = Some(match value {
                    KBD_SET_LEDS => KeyboardParam::Leds,
                    KBD_SCANCODE_SET => KeyboardParam::ScancodeSet,
                    _ => KeyboardParam::Typematic,
                });
                self.send(KBD_ACK);
            }
            KBD_ENABLE => {
                self.scanning = true;
                self.send(KBD_ACK);
            }
            KBD_DISABLE | KBD_DEFAULTS => {
                // 0xF5 stops scanning; both restore the defaults.
                self.scanning = value == KBD_DEFAULTS;
                self.scancode_set = 2;
                self.send(KBD_ACK);
            }
            _ => self.send(KBD_ACK),
        }
    }
}

/// The i8042 controller with its keyboard.
pub struct I8042 {
    power: Arc<dyn PowerSink>,
    kbd_irq: SharedLine,
    irq_high: bool,

    /// Internal RAM; byte 0 is the controller command byte.
    ram: [u8; 32],
    output_port: u8,
    /// The output buffer, then what follows it from the controller.
    out: VecDeque<OutByte>,
    /// The value last read from port 0x60, returned again when the buffer is empty.
    last_read: u8,
    /// Whether the last write went to the command port (status bit 3).
    last_write_was_command: bool,
    data_target: Option<DataTarget>,
    keyboard: Keyboard,
}

impl I8042 {
    /// A controller that sends resets to `power` and raises `kbd_irq` (IRQ 1).
    pub fn new(power: Arc<dyn PowerSink>, kbd_irq: SharedLine) -> Arc<Mutex<Self>> {
        let mut ram = [0u8; 32];
        ram[0] = CTR_DEFAULT;
        Arc::new(Mutex::new(Self {
            power,
            kbd_irq,
            irq_high: false,
            ram,
            output_port: OUT_RESET | OUT_A20,
            out: VecDeque::new(),
            last_read: 0,
            last_write_was_command: false,
            data_target: None,
            keyboard: Keyboard::new(),
        }))
    }

    /// Delivers a byte from the host keyboard, exactly as the guest should read it. Dropped while
    /// the guest has disabled scanning, or when the keyboard's queue is full.
    pub fn push_scancode(&mut self, code: u8) {
        if self.keyboard.scanning {
            self.keyboard.send(code);
            self.fill_output();
        }
    }

    fn ctr(&self) -> u8 {
        self.ram[0]
    }

    fn status(&self) -> u8 {
        let mut status = STR_UNLOCKED;
        if let Some(head) = self.out.front() {
            status |= STR_OBF;
            if head.aux {
                status |= STR_AUXDATA;
            }
        }
        if self.ctr() & CTR_SYS != 0 {
            status |= STR_SYS;
        }
        if self.last_write_was_command {
            status |= STR_CMD;
        }
        status
    }

    /// Queues a controller reply.
    fn reply(&mut self, value: u8) {
        self.out.push_back(OutByte { value, aux: false });
        self.update_irq();
    }

    fn reply_aux(&mut self, value: u8) {
        self.out.push_back(OutByte { value, aux: true });
        self.update_irq();
    }

    /// Moves keyboard output into the empty output buffer while the keyboard interface is on.
    fn fill_output(&mut self) {
        if self.out.is_empty() && self.ctr() & CTR_KBDDIS == 0 {
            if let Some(value) = self.keyboard.queue.pop_front() {
                self.keyboard.last_sent = value;
                self.out.push_back(OutByte { value, aux: false });
            }
        }
        self.update_irq();
    }

    fn update_irq(&mut self) {
        let want = self.ctr() & CTR_KBDINT != 0 && self.out.front().is_some_and(|b| !b.aux);
        if want != self.irq_high {
            self.kbd_irq.set_level(want);
            self.irq_high = want;
        }
    }

    fn reset_machine(&self) {
        log::info!("i8042: the guest pulsed the reset line");
        self.power.request(PowerRequest::Reset);
    }

    fn read_data(&mut self) -> u8 {
        if let Some(b) = self.out.pop_front() {
            self.last_read = b.value;
        }
        // Reading lowers IRQ 1; if more data follows, it rises again, making a new edge (Linux's
        // handler reads one byte per interrupt).
        if self.irq_high {
            self.kbd_irq.set_level(false);
            self.irq_high = false;
        }
        self.fill_output();
        self.last_read
    }

    fn write_data(&mut self, value: u8) {
        self.last_write_was_command = false;
        match self.data_target.take() {
            Some(DataTarget::Ram(0)) => {
                self.ram[0] = value;
                self.fill_output();
            }
            Some(DataTarget::Ram(i)) => self.ram[usize::from(i & 0x1f)] = value,
            Some(DataTarget::OutputPort) => {
                self.output_port = value;
                if value & OUT_RESET == 0 {
                    self.reset_machine();
                }
            }
            Some(DataTarget::KeyboardOutput) => self.reply(value),
            Some(DataTarget::AuxOutput) => self.reply_aux(value),
            Some(DataTarget::Aux) => {
                log::trace!("i8042: byte {value:#04x} for the absent aux device");
                self.reply_aux(AUX_NO_DEVICE);
            }
            None => {
                // Talking to the keyboard re-enables its interface.
                self.ram[0] &= !CTR_KBDDIS;
                let translated = self.ctr() & CTR_XLATE != 0;
                self.keyboard.write(value, translated);
                self.fill_output();
            }
        }
    }

    fn write_command(&mut self, cmd: u8) {
        self.last_write_was_command = true;
        self.data_target = None;
        match cmd {
            CMD_READ_CTR..=0x3f => self.reply(self.ram[usize::from(cmd & 0x1f)]),
            CMD_WRITE_CTR..=0x7f => self.data_target = Some(DataTarget::Ram(cmd & 0x1f)),
            CMD_AUX_DISABLE => self.ram[0] |= CTR_AUXDIS,
            CMD_AUX_ENABLE => self.ram[0] &= !CTR_AUXDIS,
            CMD_AUX_TEST | CMD_KBD_TEST => self.reply(0x00),
            CMD_SELF_TEST => {
                self.ram[0] |= CTR_SYS;
                self.reply(0x55);
            }
            CMD_KBD_DISABLE => self.ram[0] |= CTR_KBDDIS,
            CMD_KBD_ENABLE => {
                self.ram[0] &= !CTR_KBDDIS;
                self.fill_output();
            }
            CMD_READ_INPUT => self.reply(0x00),
            CMD_READ_OUTPUT => self.reply(self.output_port),
            CMD_WRITE_OUTPUT => self.data_target = Some(DataTarget::OutputPort),
            CMD_WRITE_KBD_OBUF => self.data_target = Some(DataTarget::KeyboardOutput),
            CMD_WRITE_AUX_OBUF => self.data_target = Some(DataTarget::AuxOutput),
            CMD_WRITE_AUX => self.data_target = Some(DataTarget::Aux),
            CMD_READ_TEST => self.reply(0x00),
            // Pulse output lines: a 0 in bit 0 pulses the reset line.
            0xf0..=0xff if cmd & OUT_RESET == 0 => self.reset_machine(),
            0xf0..=0xff => {}
            _ => log::debug!("i8042: ignoring unknown command {cmd:#04x}"),
        }
        // Commands that change the command byte can change the interrupt state.
        self.update_irq();
    }
}

/// Which of the controller's two ports an adapter serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortKind {
    Data,
    Command,
}

/// One of the controller's ports, as a bus device of length 1.
pub struct I8042Port {
    dev: Arc<Mutex<I8042>>,
    kind: PortKind,
}

/// The data port (0x60).
pub fn data_port(dev: Arc<Mutex<I8042>>) -> I8042Port {
    I8042Port {
        dev,
        kind: PortKind::Data,
    }
}

/// The status and command port (0x64).
pub fn command_port(dev: Arc<Mutex<I8042>>) -> I8042Port {
    I8042Port {
        dev,
        kind: PortKind::Command,
    }
}

impl BusDevice for I8042Port {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        if data.is_empty() {
            return;
        }
        let mut dev = self.dev.lock();
        let value = match self.kind {
            PortKind::Data => dev.read_data(),
            PortKind::Command => dev.status(),
        };
        write_le(data, u64::from(value));
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else {
            return;
        };
        let mut dev = self.dev.lock();
        match self.kind {
            PortKind::Data => dev.write_data(value),
            PortKind::Command => dev.write_command(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{RecordingLine, RecordingPower};

    struct Rig {
        data: I8042Port,
        cmd: I8042Port,
        dev: Arc<Mutex<I8042>>,
        line: Arc<RecordingLine>,
        power: Arc<RecordingPower>,
    }

    impl Rig {
        fn new() -> Self {
            let line = Arc::new(RecordingLine::default());
            let power = Arc::new(RecordingPower::default());
            let dev = I8042::new(power.clone(), line.clone());
            Self {
                data: data_port(dev.clone()),
                cmd: command_port(dev.clone()),
                dev,
                line,
                power,
            }
        }
        fn status(&mut self) -> u8 {
            let mut d = [0u8];
            self.cmd.read(0, &mut d);
            d[0]
        }
        fn command(&mut self, c: u8) {
            self.cmd.write(0, &[c]);
        }
        fn write(&mut self, v: u8) {
            self.data.write(0, &[v]);
        }
        fn read(&mut self) -> u8 {
            let mut d = [0u8];
            self.data.read(0, &mut d);
            d[0]
        }
        /// Reads everything in the output buffer, as Linux's i8042_flush does.
        fn drain(&mut self) -> Vec<u8> {
            let mut v = Vec::new();
            while self.status() & STR_OBF != 0 {
                v.push(self.read());
            }
            v
        }
        fn requests(&self) -> Vec<PowerRequest> {
            self.power.requests()
        }
    }

    #[test]
    fn reset_via_pulse_command() {
        let mut r = Rig::new();
        r.command(0xfe);
        assert_eq!(r.requests(), [PowerRequest::Reset]);
        // Pulsing other lines is not a reset.
        r.command(0xff);
        assert_eq!(r.requests().len(), 1);
    }

    #[test]
    fn reset_via_output_port() {
        let mut r = Rig::new();
        r.command(CMD_READ_OUTPUT);
        assert_eq!(r.drain(), [OUT_RESET | OUT_A20]);
        r.command(CMD_WRITE_OUTPUT);
        r.write(OUT_RESET | OUT_A20);
        assert!(r.requests().is_empty());
        r.command(CMD_WRITE_OUTPUT);
        r.write(OUT_A20);
        assert_eq!(r.requests(), [PowerRequest::Reset]);
    }

    #[test]
    fn self_tests() {
        let mut r = Rig::new();
        r.command(CMD_SELF_TEST);
        assert_ne!(r.status() & STR_CMD, 0);
        assert_eq!(r.drain(), [0x55]);
        r.command(CMD_KBD_TEST);
        assert_eq!(r.drain(), [0x00]);
        r.command(CMD_AUX_TEST);
        assert_eq!(r.drain(), [0x00]);
        assert_ne!(r.status() & STR_SYS, 0);
    }

    #[test]
    fn command_byte_round_trip() {
        let mut r = Rig::new();
        r.command(CMD_READ_CTR);
        assert_eq!(r.drain(), [CTR_DEFAULT]);
        r.command(CMD_WRITE_CTR);
        assert_eq!(r.status() & STR_OBF, 0);
        r.write(0x30 | CTR_XLATE);
        assert_eq!(r.status() & STR_CMD, 0);
        r.command(CMD_READ_CTR);
        assert_eq!(r.drain(), [0x30 | CTR_XLATE]);
        assert_eq!(
            r.status() & STR_SYS,
            0,
            "system flag follows the command byte"
        );
        // Aux enable/disable and keyboard enable/disable toggle their bits.
        r.command(CMD_AUX_ENABLE);
        r.command(CMD_KBD_ENABLE);
        r.command(CMD_READ_CTR);
        assert_eq!(r.drain(), [CTR_XLATE]);
        r.command(CMD_AUX_DISABLE);
        r.command(CMD_KBD_DISABLE);
        r.command(CMD_READ_CTR);
        assert_eq!(r.drain(), [CTR_AUXDIS | CTR_KBDDIS | CTR_XLATE]);
    }

    #[test]
    fn keyboard_reset_and_identify() {
        let mut r = Rig::new();
        r.push_and_drain_nothing_when_disabled();
        r.write(KBD_RESET);
        assert_eq!(r.drain(), [KBD_ACK, KBD_SELF_TEST_OK]);
        // Translation on (the default): the controller turns 0x83 into 0x41.
        r.write(KBD_IDENTIFY);
        assert_eq!(r.drain(), [KBD_ACK, KBD_ID, KBD_ID2_TRANSLATED]);
        r.command(CMD_WRITE_CTR);
        r.write(CTR_KBDINT | CTR_SYS);
        r.write(KBD_IDENTIFY);
        assert_eq!(r.drain(), [KBD_ACK, KBD_ID, KBD_ID2]);
        // Parameters are acknowledged, the scancode set can be asked for.
        r.write(KBD_SET_LEDS);
        r.write(0x07);
        r.write(KBD_SCANCODE_SET);
        r.write(0);
        r.write(KBD_ECHO);
        r.write(0x42);
        assert_eq!(
            r.drain(),
            [KBD_ACK, KBD_ACK, KBD_ACK, KBD_ACK, 2, KBD_ECHO, KBD_ACK]
        );
    }

    impl Rig {
        /// With the keyboard interface disabled, keyboard bytes wait in the keyboard.
        fn push_and_drain_nothing_when_disabled(&mut self) {
            self.command(CMD_KBD_DISABLE);
            self.dev.lock().push_scancode(0x1e);
            assert_eq!(self.status() & STR_OBF, 0);
            self.command(CMD_KBD_ENABLE);
            assert_eq!(self.drain(), [0x1e]);
        }
    }

    #[test]
    fn obf_and_irq() {
        let mut r = Rig::new();
        assert_eq!(r.status() & STR_OBF, 0);
        assert!(!r.line.high());
        r.dev.lock().push_scancode(0x1e);
        r.dev.lock().push_scancode(0x9e);
        assert_eq!(r.status() & (STR_OBF | STR_AUXDATA), STR_OBF);
        assert!(r.line.high());
        assert_eq!(r.read(), 0x1e);
        assert!(r.line.high());
        assert_eq!(r.read(), 0x9e);
        assert_eq!(r.status() & STR_OBF, 0);
        assert!(!r.line.high());
        // A read of an empty buffer returns the last byte again.
        assert_eq!(r.read(), 0x9e);
        // Separate edges per byte.
        assert_eq!(r.line.levels(), [true, false, true, false]);

        // With the keyboard interrupt off, data arrives without IRQ.
        r.command(CMD_WRITE_CTR);
        r.write(CTR_SYS | CTR_XLATE);
        r.command(CMD_WRITE_KBD_OBUF);
        r.write(0x5a);
        assert_ne!(r.status() & STR_OBF, 0);
        assert!(!r.line.high());
        // Turning it on with data waiting raises the line.
        r.command(CMD_WRITE_CTR);
        r.write(CTR_KBDINT | CTR_SYS | CTR_XLATE);
        assert!(r.line.high());
        assert_eq!(r.drain(), [0x5a]);
    }

    #[test]
    fn aux_port_without_a_mouse() {
        let mut r = Rig::new();
        // Linux's aux loop test: the byte comes back marked as aux data, without IRQ 1.
        r.command(CMD_WRITE_AUX_OBUF);
        r.write(0x5a);
        assert_eq!(r.status() & (STR_OBF | STR_AUXDATA), STR_OBF | STR_AUXDATA);
        assert!(!r.line.high());
        assert_eq!(r.drain(), [0x5a]);
        // Commands to the mouse find nobody.
        r.command(CMD_WRITE_AUX);
        r.write(0xff);
        assert_eq!(r.drain(), [AUX_NO_DEVICE]);
    }

    #[test]
    fn odd_accesses_do_not_panic() {
        let mut r = Rig::new();
        r.command(CMD_SELF_TEST);
        let mut wide = [0xffu8; 4];
        r.data.read(0, &mut wide);
        assert_eq!(wide, [0x55, 0, 0, 0]);
        r.data.read(0, &mut []);
        r.cmd.write(0, &[]);
        r.cmd.write(0, &[CMD_READ_CTR, 0xfe]);
        assert!(r.requests().is_empty());
        assert_eq!(r.drain(), [CTR_DEFAULT]);
        // Reading internal RAM beyond the command byte, and unknown commands.
        r.command(0x7f);
        r.write(0x99);
        r.command(0x3f);
        assert_eq!(r.drain(), [0x99]);
        r.command(0x00);
        r.command(0xc8);
        for _ in 0..(KEYBOARD_QUEUE_LIMIT + 10) {
            r.dev.lock().push_scancode(0x1e);
        }
        assert_eq!(r.drain().len(), KEYBOARD_QUEUE_LIMIT + 1);
    }
}
