//! The 16550A UART behind the serial console (COM1 at 0x3f8, IRQ 4).
//!
//! This module owns the UART's registers, its 16-byte receive FIFO, a host-side input queue that
//! feeds that FIFO, the transmit path to a host writer, and the UART's interrupt line.
//!
//! It is written by hand rather than taken from vm-superio: vm-superio's `Serial` cannot inject a
//! break condition (LSR.BI), which Cove needs for magic SysRq over the serial console (the Ctrl-A B
//! escape, and tests that power the guest off with break + 'o'), and it has no host-side input
//! queue beyond its FIFO, so pasted text is lost as soon as the guest falls 16 bytes behind.
//!
//! Model:
//! - Transmission is instant: a THR write goes to the output writer at once and THR is empty
//!   again immediately, which raises a new "THR empty" event.
//! - Host input ([`Serial::enqueue_input`], [`Serial::send_break`]) goes into a pending queue of at
//!   most [`PENDING_LIMIT`] entries (the oldest are dropped beyond that, and counted). The receive
//!   FIFO is refilled from it whenever the guest reads RBR, so the FIFO never overruns from host
//!   input. Only loopback writes into a full FIFO overrun (LSR.OE).
//! - A break is a 0x00 character; when it reaches the top of the FIFO, LSR.BI is set (and stays
//!   set until LSR is read), which raises the receiver-line-status interrupt if IER.ELSI is set.
//! - Receive "timeout" is not modelled separately: data is reported available as soon as the FIFO
//!   is non-empty, whatever the trigger level.
//! - The interrupt line is level-driven: high while an enabled interrupt is pending and MCR.OUT2 is
//!   set (on PCs OUT2 gates the IRQ line; Linux's 8250 driver sets it for ISA ports), low
//!   otherwise. In loopback OUT2 is forced inactive as on real hardware, so the line stays low.
//!   ISA IRQ 4 is edge-triggered, so a new event (THR empty, host input) while the line is already
//!   high is signalled by taking the line low and high again.

use std::collections::VecDeque;
use std::io::Write;

use crate::bus::{write_le, BusDevice};
use crate::interrupt::SharedLine;

/// Size of the receive FIFO when FIFOs are enabled.
pub const FIFO_SIZE: usize = 16;
/// Most host input entries (bytes and breaks) held while the guest is not reading.
pub const PENDING_LIMIT: usize = 64 * 1024;

// Register offsets.
const RBR_THR_DLL: u64 = 0;
const IER_DLM: u64 = 1;
const IIR_FCR: u64 = 2;
const LCR: u64 = 3;
const MCR: u64 = 4;
const LSR: u64 = 5;
const MSR: u64 = 6;
const SCR: u64 = 7;

// IER bits.
const IER_ERBFI: u8 = 0x01;
const IER_ETBEI: u8 = 0x02;
const IER_ELSI: u8 = 0x04;
const IER_EDSSI: u8 = 0x08;

// IIR values.
const IIR_NONE: u8 = 0x01;
const IIR_MSR: u8 = 0x00;
const IIR_THRE: u8 = 0x02;
const IIR_RDA: u8 = 0x04;
const IIR_RLS: u8 = 0x06;
const IIR_FIFO_ENABLED: u8 = 0xc0;

// FCR bits.
const FCR_ENABLE: u8 = 0x01;
const FCR_CLEAR_RX: u8 = 0x02;
const FCR_CLEAR_TX: u8 = 0x04;

// LCR bits.
const LCR_DLAB: u8 = 0x80;

// MCR bits.
const MCR_DTR: u8 = 0x01;
const MCR_RTS: u8 = 0x02;
const MCR_OUT1: u8 = 0x04;
const MCR_OUT2: u8 = 0x08;
const MCR_LOOP: u8 = 0x10;

// LSR bits.
const LSR_DR: u8 = 0x01;
const LSR_OE: u8 = 0x02;
const LSR_BI: u8 = 0x10;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;
const LSR_FIFO_ERR: u8 = 0x80;

// MSR bits.
const MSR_CTS: u8 = 0x10;
const MSR_DSR: u8 = 0x20;
const MSR_RI: u8 = 0x40;
const MSR_DCD: u8 = 0x80;
const MSR_TERI: u8 = 0x04;

/// One received character: a byte, or a break (read as 0x00 with LSR.BI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RxChar {
    Byte(u8),
    Break,
}

impl RxChar {
    fn value(self) -> u8 {
        match self {
            RxChar::Byte(b) => b,
            RxChar::Break => 0,
        }
    }
}

/// A 16550A UART.
pub struct Serial {
    irq: SharedLine,
    output: Box<dyn Write + Send>,
    output_failed: bool,

    ier: u8,
    fcr: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    /// Sticky LSR bits (OE, BI), cleared by reading LSR.
    lsr_errors: u8,
    /// Modem status delta bits (MSR 3:0), cleared by reading MSR.
    msr_deltas: u8,
    /// A "THR empty" interrupt is pending.
    thre_pending: bool,

    rx_fifo: VecDeque<RxChar>,
    pending: VecDeque<RxChar>,
    dropped: u64,

    /// The level the interrupt line was last driven to.
    line_high: bool,
}

impl Serial {
    /// A UART that raises `irq` and writes what the guest transmits to `output`.
    pub fn new(irq: SharedLine, output: Box<dyn Write + Send>) -> Self {
        Self {
            irq,
            output,
            output_failed: false,
            ier: 0,
            fcr: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            // 115200 baud: what firmware usually leaves behind.
            dll: 1,
            dlm: 0,
            lsr_errors: 0,
            msr_deltas: 0,
            thre_pending: false,
            rx_fifo: VecDeque::with_capacity(FIFO_SIZE),
            pending: VecDeque::new(),
            dropped: 0,
            line_high: false,
        }
    }

    /// Queues bytes typed or pasted on the host for the guest to read.
    pub fn enqueue_input(&mut self, bytes: &[u8]) {
        let was_empty = self.rx_fifo.is_empty();
        for &b in bytes {
            self.accept(RxChar::Byte(b));
        }
        self.host_input_arrived(was_empty);
    }

    /// Sends a break condition: the guest receives a 0x00 character with LSR.BI set. Linux treats
    /// a break followed by a character as a magic SysRq on the serial console.
    pub fn send_break(&mut self) {
        let was_empty = self.rx_fifo.is_empty();
        self.accept(RxChar::Break);
        self.host_input_arrived(was_empty);
    }

    /// Host input not yet read by the guest (the receive FIFO included).
    pub fn pending_input(&self) -> usize {
        self.pending.len() + self.rx_fifo.len()
    }

    /// Host input entries dropped because the pending queue was full.
    pub fn dropped_input(&self) -> u64 {
        self.dropped
    }

    /// Takes a character from the host: into the FIFO if nothing is waiting ahead of it and there
    /// is room, else into the pending queue.
    fn accept(&mut self, c: RxChar) {
        if self.pending.is_empty() && self.rx_fifo.len() < self.fifo_capacity() {
            self.push_fifo(c);
        } else {
            self.push_pending(c);
        }
    }

    fn push_pending(&mut self, c: RxChar) {
        if self.pending.len() >= PENDING_LIMIT {
            self.pending.pop_front();
            self.dropped += 1;
        }
        self.pending.push_back(c);
    }

    fn host_input_arrived(&mut self, was_empty: bool) {
        self.refill();
        // New data for a guest that is already being interrupted: give edge-triggered inputs a
        // fresh edge so the event is not lost.
        let new_data = was_empty && !self.rx_fifo.is_empty();
        self.update_irq(new_data && self.ier & IER_ERBFI != 0);
    }

    fn fifo_enabled(&self) -> bool {
        self.fcr & FCR_ENABLE != 0
    }

    fn fifo_capacity(&self) -> usize {
        if self.fifo_enabled() {
            FIFO_SIZE
        } else {
            1
        }
    }

    fn loopback(&self) -> bool {
        self.mcr & MCR_LOOP != 0
    }

    /// Moves host input into the receive FIFO while there is room.
    fn refill(&mut self) {
        while self.rx_fifo.len() < self.fifo_capacity() {
            let Some(c) = self.pending.pop_front() else {
                break;
            };
            self.push_fifo(c);
        }
    }

    /// Puts a character into the FIFO (the caller made room), noting a break that reaches the top.
    fn push_fifo(&mut self, c: RxChar) {
        self.rx_fifo.push_back(c);
        if self.rx_fifo.len() == 1 {
            self.char_at_top();
        }
    }

    fn char_at_top(&mut self) {
        if self.rx_fifo.front() == Some(&RxChar::Break) {
            self.lsr_errors |= LSR_BI;
        }
    }

    fn read_rbr(&mut self) -> u8 {
        let Some(c) = self.rx_fifo.pop_front() else {
            return 0;
        };
        self.char_at_top();
        self.refill();
        self.update_irq(false);
        c.value()
    }

    fn write_thr(&mut self, value: u8) {
        if self.loopback() {
            if self.rx_fifo.len() >= self.fifo_capacity() {
                // The character is lost; the receiver reports an overrun.
                self.lsr_errors |= LSR_OE;
            } else {
                self.push_fifo(RxChar::Byte(value));
            }
        } else {
            self.transmit(value);
        }
        // Writing THR clears the THR-empty interrupt; as transmission is instant, THR is empty
        // again right away, which is a new event.
        self.thre_pending = true;
        self.update_irq(self.ier & IER_ETBEI != 0);
    }

    fn transmit(&mut self, value: u8) {
        let result = self
            .output
            .write_all(&[value])
            .and_then(|()| self.output.flush());
        if let Err(e) = result {
            if !self.output_failed {
                log::warn!("serial: writing console output failed: {e}; further errors not logged");
                self.output_failed = true;
            }
        }
    }

    fn lsr(&self) -> u8 {
        let mut lsr = LSR_THRE | LSR_TEMT | self.lsr_errors;
        if !self.rx_fifo.is_empty() {
            lsr |= LSR_DR;
        }
        if self.fifo_enabled() && self.rx_fifo.contains(&RxChar::Break) {
            lsr |= LSR_FIFO_ERR;
        }
        lsr
    }

    /// The modem status lines (MSR 7:4).
    fn modem_status(&self) -> u8 {
        if self.loopback() {
            let mut msr = 0;
            if self.mcr & MCR_RTS != 0 {
                msr |= MSR_CTS;
            }
            if self.mcr & MCR_DTR != 0 {
                msr |= MSR_DSR;
            }
            if self.mcr & MCR_OUT1 != 0 {
                msr |= MSR_RI;
            }
            if self.mcr & MCR_OUT2 != 0 {
                msr |= MSR_DCD;
            }
            msr
        } else {
            // A null-modem console: carrier, data set ready and clear to send are always on.
            MSR_DCD | MSR_DSR | MSR_CTS
        }
    }

    fn write_mcr(&mut self, value: u8) {
        let before = self.modem_status();
        self.mcr = value & 0x1f;
        let after = self.modem_status();
        let changed = before ^ after;
        // Delta bits: DCTS (0), DDSR (1), TERI (2, RI going low), DDCD (3).
        let mut deltas = 0;
        if changed & MSR_CTS != 0 {
            deltas |= 0x01;
        }
        if changed & MSR_DSR != 0 {
            deltas |= 0x02;
        }
        if changed & MSR_RI != 0 && after & MSR_RI == 0 {
            deltas |= MSR_TERI;
        }
        if changed & MSR_DCD != 0 {
            deltas |= 0x08;
        }
        self.msr_deltas |= deltas;
        self.update_irq(false);
    }

    fn write_fcr(&mut self, value: u8) {
        let was_enabled = self.fifo_enabled();
        self.fcr = value & !(FCR_CLEAR_RX | FCR_CLEAR_TX);
        // Changing the FIFO enable clears both FIFOs, as does the clear bit. Host input that has
        // not reached the FIFO is kept: it is still "on the wire".
        if value & FCR_CLEAR_RX != 0 || was_enabled != self.fifo_enabled() {
            self.rx_fifo.clear();
            self.lsr_errors &= !LSR_BI;
        }
        // Transmission is instant, so the transmit FIFO is always empty already.
        self.refill();
        self.update_irq(false);
    }

    fn write_ier(&mut self, value: u8) {
        let value = value & 0x0f;
        let thre_enabled_now = value & IER_ETBEI != 0 && self.ier & IER_ETBEI == 0;
        self.ier = value;
        if thre_enabled_now {
            // THR is always empty: enabling its interrupt raises it at once.
            self.thre_pending = true;
        }
        self.update_irq(thre_enabled_now);
    }

    /// The highest-priority pending interrupt, as IIR bits 3:0.
    fn interrupt_id(&self) -> u8 {
        if self.ier & IER_ELSI != 0 && self.lsr_errors & (LSR_OE | LSR_BI) != 0 {
            IIR_RLS
        } else if self.ier & IER_ERBFI != 0 && !self.rx_fifo.is_empty() {
            IIR_RDA
        } else if self.ier & IER_ETBEI != 0 && self.thre_pending {
            IIR_THRE
        } else if self.ier & IER_EDSSI != 0 && self.msr_deltas != 0 {
            IIR_MSR
        } else {
            IIR_NONE
        }
    }

    fn read_iir(&mut self) -> u8 {
        let id = self.interrupt_id();
        if id == IIR_THRE {
            self.thre_pending = false;
            self.update_irq(false);
        }
        let fifo = if self.fifo_enabled() {
            IIR_FIFO_ENABLED
        } else {
            0
        };
        id | fifo
    }

    /// Drives the interrupt line to match the UART's state. `new_event` asks for a fresh edge
    /// when the line is already high.
    fn update_irq(&mut self, new_event: bool) {
        let gated_on = self.mcr & MCR_OUT2 != 0 && !self.loopback();
        let want = gated_on && self.interrupt_id() != IIR_NONE;
        if want != self.line_high {
            self.irq.set_level(want);
            self.line_high = want;
        } else if want && new_event {
            self.irq.set_level(false);
            self.irq.set_level(true);
        }
    }

    fn read_register(&mut self, offset: u64) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            RBR_THR_DLL if dlab => self.dll,
            RBR_THR_DLL => self.read_rbr(),
            IER_DLM if dlab => self.dlm,
            IER_DLM => self.ier,
            IIR_FCR => self.read_iir(),
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let lsr = self.lsr();
                if self.lsr_errors != 0 {
                    self.lsr_errors = 0;
                    self.update_irq(false);
                }
                lsr
            }
            MSR => {
                let msr = self.modem_status() | self.msr_deltas;
                if self.msr_deltas != 0 {
                    self.msr_deltas = 0;
                    self.update_irq(false);
                }
                msr
            }
            SCR => self.scr,
            _ => 0xff,
        }
    }

    fn write_register(&mut self, offset: u64, value: u8) {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            RBR_THR_DLL if dlab => self.dll = value,
            RBR_THR_DLL => self.write_thr(value),
            IER_DLM if dlab => self.dlm = value,
            IER_DLM => self.write_ier(value),
            IIR_FCR => self.write_fcr(value),
            LCR => self.lcr = value,
            MCR => self.write_mcr(value),
            // LSR and MSR are read-only (writes are factory test modes on real parts).
            LSR | MSR => {}
            SCR => self.scr = value,
            _ => {}
        }
    }
}

impl BusDevice for Serial {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if data.is_empty() {
            return;
        }
        // The registers are byte-wide: a wider read returns the register in its low byte.
        let value = self.read_register(offset);
        write_le(data, u64::from(value));
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some(&value) = data.first() {
            self.write_register(offset, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::RecordingLine;
    use parking_lot::Mutex;
    use std::sync::Arc;

    /// A writer whose bytes the test can read back.
    #[derive(Clone, Default)]
    struct SharedOutput(Arc<Mutex<Vec<u8>>>);

    impl Write for SharedOutput {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct FailingOutput;

    impl Write for FailingOutput {
        fn write(&mut self, _buf: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("broken pipe"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::Error::other("broken pipe"))
        }
    }

    fn uart() -> (Serial, Arc<RecordingLine>, SharedOutput) {
        let line = Arc::new(RecordingLine::default());
        let out = SharedOutput::default();
        let serial = Serial::new(line.clone(), Box::new(out.clone()));
        (serial, line, out)
    }

    fn rd(s: &mut Serial, offset: u64) -> u8 {
        let mut data = [0u8];
        s.read(offset, &mut data);
        data[0]
    }

    fn wr(s: &mut Serial, offset: u64, value: u8) {
        s.write(offset, &[value]);
    }

    /// Sets the UART up as Linux's 8250 driver does: FIFOs on, 8N1, OUT2 | RTS | DTR.
    fn linux_setup(s: &mut Serial) {
        wr(s, IIR_FCR, FCR_ENABLE | FCR_CLEAR_RX | FCR_CLEAR_TX);
        wr(s, LCR, 0x03);
        wr(s, MCR, MCR_OUT2 | MCR_RTS | MCR_DTR);
    }

    #[test]
    fn transmits_to_output() {
        let (mut s, line, out) = uart();
        linux_setup(&mut s);
        for &b in b"hello\n" {
            assert_ne!(rd(&mut s, LSR) & LSR_THRE, 0);
            wr(&mut s, RBR_THR_DLL, b);
        }
        assert_eq!(out.0.lock().as_slice(), b"hello\n");
        // No interrupts enabled: the line never rose.
        assert!(!line.high());
        assert_eq!(rd(&mut s, LSR) & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
    }

    #[test]
    fn output_errors_do_not_panic() {
        let line = Arc::new(RecordingLine::default());
        let mut s = Serial::new(line, Box::new(FailingOutput));
        for &b in b"lost\n" {
            wr(&mut s, RBR_THR_DLL, b);
        }
        assert!(s.output_failed);
    }

    #[test]
    fn receives_with_data_ready_and_interrupt() {
        let (mut s, line, _) = uart();
        linux_setup(&mut s);
        wr(&mut s, IER_DLM, IER_ERBFI);
        assert!(!line.high());
        assert_eq!(rd(&mut s, LSR) & LSR_DR, 0);

        s.enqueue_input(b"ab");
        assert!(line.high());
        assert_eq!(rd(&mut s, IIR_FCR), IIR_RDA | IIR_FIFO_ENABLED);
        assert_ne!(rd(&mut s, LSR) & LSR_DR, 0);
        assert_eq!(rd(&mut s, RBR_THR_DLL), b'a');
        assert!(line.high());
        assert_eq!(rd(&mut s, RBR_THR_DLL), b'b');
        assert_eq!(rd(&mut s, LSR) & LSR_DR, 0);
        assert!(!line.high());
        assert_eq!(rd(&mut s, IIR_FCR), IIR_NONE | IIR_FIFO_ENABLED);
        assert_eq!(s.pending_input(), 0);
    }

    #[test]
    fn fifo_refills_from_pending_queue() {
        let (mut s, _, _) = uart();
        linux_setup(&mut s);
        let input: Vec<u8> = (0..100u8).collect();
        s.enqueue_input(&input);
        assert_eq!(s.pending_input(), 100);
        assert_eq!(s.rx_fifo.len(), FIFO_SIZE);
        let mut got = Vec::new();
        while rd(&mut s, LSR) & LSR_DR != 0 {
            got.push(rd(&mut s, RBR_THR_DLL));
        }
        assert_eq!(got, input);
        assert_eq!(s.pending_input(), 0);
    }

    #[test]
    fn host_queue_never_overruns() {
        let (mut s, _, _) = uart();
        linux_setup(&mut s);
        // FIFOs off: a one-character receive buffer.
        wr(&mut s, IIR_FCR, 0);
        let input: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        for chunk in input.chunks(700) {
            s.enqueue_input(chunk);
        }
        let mut got = Vec::new();
        loop {
            let lsr = rd(&mut s, LSR);
            assert_eq!(lsr & LSR_OE, 0, "overrun after {} bytes", got.len());
            if lsr & LSR_DR == 0 {
                break;
            }
            got.push(rd(&mut s, RBR_THR_DLL));
        }
        assert_eq!(got, input);
        assert_eq!(s.dropped_input(), 0);
    }

    #[test]
    fn pending_queue_is_bounded() {
        let (mut s, _, _) = uart();
        linux_setup(&mut s);
        let extra = 10;
        let input: Vec<u8> = (0..PENDING_LIMIT + FIFO_SIZE + extra)
            .map(|i| i as u8)
            .collect();
        s.enqueue_input(&input);
        assert_eq!(s.pending_input(), PENDING_LIMIT + FIFO_SIZE);
        assert_eq!(s.dropped_input(), extra as u64);
    }

    #[test]
    fn break_sets_bi_and_raises_line_status_interrupt() {
        let (mut s, line, _) = uart();
        linux_setup(&mut s);
        wr(&mut s, IER_DLM, IER_ERBFI | IER_ELSI);
        s.enqueue_input(b"x");
        s.send_break();
        s.enqueue_input(b"o");

        // 'x' is at the top: plain data.
        assert_eq!(rd(&mut s, IIR_FCR) & 0x0f, IIR_RDA);
        let lsr = rd(&mut s, LSR);
        assert_eq!(lsr & (LSR_DR | LSR_BI), LSR_DR);
        assert_ne!(lsr & LSR_FIFO_ERR, 0, "a break is somewhere in the FIFO");
        assert_eq!(rd(&mut s, RBR_THR_DLL), b'x');

        // The break reaches the top: BI and the line-status interrupt.
        assert!(line.high());
        assert_eq!(rd(&mut s, IIR_FCR) & 0x0f, IIR_RLS);
        let lsr = rd(&mut s, LSR);
        assert_eq!(lsr & (LSR_DR | LSR_BI), LSR_DR | LSR_BI);
        // Reading LSR cleared BI, and the interrupt falls back to data available.
        assert_eq!(rd(&mut s, LSR) & LSR_BI, 0);
        assert_eq!(rd(&mut s, IIR_FCR) & 0x0f, IIR_RDA);
        assert_eq!(rd(&mut s, RBR_THR_DLL), 0);
        assert_eq!(rd(&mut s, RBR_THR_DLL), b'o');
        assert_eq!(rd(&mut s, LSR) & (LSR_DR | LSR_BI | LSR_FIFO_ERR), 0);
        assert!(!line.high());
    }

    #[test]
    fn loopback() {
        let (mut s, line, out) = uart();
        linux_setup(&mut s);
        // What Linux's autoconfig does: loopback with RTS and OUT2 shows CTS and DCD.
        wr(&mut s, MCR, MCR_LOOP | MCR_OUT2 | MCR_RTS);
        assert_eq!(rd(&mut s, MSR) & 0xf0, MSR_DCD | MSR_CTS);
        wr(&mut s, IER_DLM, IER_ERBFI);
        wr(&mut s, RBR_THR_DLL, 0x5a);
        assert!(out.0.lock().is_empty(), "loopback does not transmit");
        assert_ne!(rd(&mut s, LSR) & LSR_DR, 0);
        assert_eq!(rd(&mut s, IIR_FCR) & 0x0f, IIR_RDA);
        // OUT2 is forced inactive in loopback, so the IRQ stays gated off.
        assert!(!line.high());
        assert_eq!(rd(&mut s, RBR_THR_DLL), 0x5a);

        // Overflowing the FIFO in loopback is an overrun.
        for i in 0..=FIFO_SIZE as u8 {
            wr(&mut s, RBR_THR_DLL, i);
        }
        assert_ne!(rd(&mut s, LSR) & LSR_OE, 0);
        assert_eq!(rd(&mut s, LSR) & LSR_OE, 0, "reading LSR clears OE");

        // Leaving loopback: the modem lines read as a connected console again.
        wr(&mut s, MCR, MCR_OUT2);
        assert_eq!(
            rd(&mut s, MSR) & 0xf0,
            MSR_DCD | MSR_DSR | MSR_CTS,
            "MSR outside loopback"
        );
    }

    #[test]
    fn dlab_registers() {
        let (mut s, _, _) = uart();
        wr(&mut s, LCR, LCR_DLAB | 0x03);
        wr(&mut s, RBR_THR_DLL, 0x0c);
        wr(&mut s, IER_DLM, 0x01);
        assert_eq!(rd(&mut s, RBR_THR_DLL), 0x0c);
        assert_eq!(rd(&mut s, IER_DLM), 0x01);
        wr(&mut s, LCR, 0x03);
        assert_eq!(rd(&mut s, IER_DLM), 0, "IER untouched by DLM write");
        assert_eq!(rd(&mut s, LCR), 0x03);
        wr(&mut s, SCR, 0xa5);
        assert_eq!(rd(&mut s, SCR), 0xa5);
        // Wide accesses: the value in the low byte, zeroes above; writes use the low byte.
        let mut wide = [0xffu8; 4];
        s.read(SCR, &mut wide);
        assert_eq!(wide, [0xa5, 0, 0, 0]);
        s.write(SCR, &[0x11, 0x22]);
        assert_eq!(rd(&mut s, SCR), 0x11);
        s.write(SCR, &[]);
        s.read(SCR, &mut []);
    }

    #[test]
    fn iir_priorities() {
        let (mut s, _, _) = uart();
        linux_setup(&mut s);
        wr(&mut s, MCR, MCR_OUT2 | MCR_RTS | MCR_DTR | MCR_LOOP);
        wr(
            &mut s,
            IER_DLM,
            IER_ERBFI | IER_ETBEI | IER_ELSI | IER_EDSSI,
        );
        // Modem status change (loopback RTS off), THR empty, data, and an overrun at once.
        wr(&mut s, MCR, MCR_OUT2 | MCR_DTR | MCR_LOOP);
        for i in 0..=FIFO_SIZE as u8 {
            wr(&mut s, RBR_THR_DLL, i);
        }
        assert_eq!(rd(&mut s, IIR_FCR) & 0x0f, IIR_RLS);
        rd(&mut s, LSR);
        assert_eq!(rd(&mut s, IIR_FCR) & 0x0f, IIR_RDA);
        while rd(&mut s, LSR) & LSR_DR != 0 {
            rd(&mut s, RBR_THR_DLL);
        }
        assert_eq!(rd(&mut s, IIR_FCR) & 0x0f, IIR_THRE);
        // Reading IIR with THRE as the source cleared it.
        assert_eq!(rd(&mut s, IIR_FCR) & 0x0f, IIR_MSR);
        assert_eq!(rd(&mut s, MSR) & 0x01, 0x01, "DCTS");
        assert_eq!(rd(&mut s, IIR_FCR), IIR_NONE | IIR_FIFO_ENABLED);
    }

    #[test]
    fn thre_interrupt_on_ier_enable() {
        let (mut s, line, _) = uart();
        linux_setup(&mut s);
        assert!(!line.high());
        wr(&mut s, IER_DLM, IER_ETBEI);
        assert!(line.high());
        assert_eq!(rd(&mut s, IIR_FCR) & 0x0f, IIR_THRE);
        assert!(!line.high(), "reading IIR cleared THRE");
        assert_eq!(rd(&mut s, IIR_FCR) & 0x0f, IIR_NONE);
        // Rewriting IER with ETBEI still set does not re-arm it.
        wr(&mut s, IER_DLM, IER_ETBEI);
        assert_eq!(rd(&mut s, IIR_FCR) & 0x0f, IIR_NONE);
        // Toggling it does.
        wr(&mut s, IER_DLM, 0);
        wr(&mut s, IER_DLM, IER_ETBEI);
        assert_eq!(rd(&mut s, IIR_FCR) & 0x0f, IIR_THRE);

        // Each THR write is a new THRE event; with the line already high, it gets a new edge.
        wr(&mut s, IER_DLM, 0);
        wr(&mut s, IER_DLM, IER_ETBEI);
        assert!(line.high());
        line.clear();
        wr(&mut s, RBR_THR_DLL, b'a');
        wr(&mut s, RBR_THR_DLL, b'b');
        assert_eq!(line.rising_edges(), 2);
        assert!(line.high());
    }

    #[test]
    fn out2_gates_the_line() {
        let (mut s, line, _) = uart();
        wr(&mut s, IIR_FCR, FCR_ENABLE);
        wr(&mut s, IER_DLM, IER_ERBFI);
        s.enqueue_input(b"z");
        assert_eq!(rd(&mut s, IIR_FCR) & 0x0f, IIR_RDA);
        assert!(!line.high(), "OUT2 clear: interrupt pending but gated");
        wr(&mut s, MCR, MCR_OUT2);
        assert!(line.high());
        wr(&mut s, MCR, 0);
        assert!(!line.high());
        // Only changes are signalled.
        assert_eq!(line.levels(), vec![true, false]);
    }
}
