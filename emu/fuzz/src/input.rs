//! Target `virtio_input_queues`: a virtio-input device (keyboard or tablet) as a guest driver
//! sees it: config-space writes of `select`/`subsel` and reads at any offset and size, then
//! its event queue and status queue, served synchronously by the very handler the device's
//! `activate` returns for its worker thread, over guest memory the fuzzer fills, while the
//! host pushes fuzzer-chosen events.
//!
//! Input layout (numbers little-endian):
//!
//! | bytes | meaning |
//! |---|---|
//! | 0 | flags: [`flag::TABLET`], [`flag::EVENT_IDX`], [`flag::NO_STATUS_QUEUE`], [`flag::HOST_FIRST`] |
//! | 1 | event queue size: `1 << (b % 7)`, so 1 to 64 |
//! | 2 | status queue size: `1 << (b % 7)` |
//! | 3 | rounds: `1 + b % 4` |
//! | 4 | before each round after the first, the driver adds this to both `avail.idx` |
//! | 5 | config operations: `b % (MAX_CONFIG_OPS + 1)` |
//! | 6 | host events: `b % (MAX_EVENTS + 1)`, spread evenly over the rounds |
//! | 7..135 | [`MAX_CONFIG_OPS`] config operations of [`CONFIG_OP_LEN`] bytes ([`ConfigOp`]) |
//! | 135..647 | [`MAX_EVENTS`] host events of 8 bytes: type (u16), code (u16), value (u32) |
//! | 647.. | guest memory from address 0 (at most [`MEMORY_SIZE`] bytes; the rest is zero): the event queue's rings at [`EVENT_RINGS`], the status queue's at [`STATUS_RINGS`], buffers anywhere |
//!
//! The config operations run first, as a driver's probe does; then the device is activated and
//! each round rings every doorbell (the event queue's, the status queue's, and the host's). The
//! areas are fixed, so changing a count never moves guest memory. Checked on every input,
//! besides "no panic": every config read fills exactly the bytes asked for, and the config
//! space always reads back the `select`/`subsel` last written, a `size` of at most 128, zeros
//! after `size` bytes of data, and zeros past its end.

use crate::rings;
use emu::virtio::input::{Input, InputEvent, InputQueue};
use emu::virtio::queue_service::QueueLayout;
use emu::virtio::VirtioDevice;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Guest RAM, from address 0.
pub const MEMORY_SIZE: usize = 64 << 10;
/// Control bytes before the config operations.
pub const CONTROL_LEN: usize = 7;
/// Config operations an input can hold.
pub const MAX_CONFIG_OPS: usize = 32;
/// Bytes per config operation.
pub const CONFIG_OP_LEN: usize = 4;
/// Host events an input can hold.
pub const MAX_EVENTS: usize = 64;
/// Bytes per host event.
pub const EVENT_LEN: usize = 8;
/// Where the config operations start.
pub const CONFIG_OPS_AT: usize = CONTROL_LEN;
/// Where the host events start.
pub const EVENTS_AT: usize = CONFIG_OPS_AT + MAX_CONFIG_OPS * CONFIG_OP_LEN;
/// Where the guest memory image starts.
pub const IMAGE_AT: usize = EVENTS_AT + MAX_EVENTS * EVENT_LEN;
/// Where the event queue's rings start.
pub const EVENT_RINGS: u64 = 0;
/// Where the status queue's rings start.
pub const STATUS_RINGS: u64 = 0x1000;
/// The first byte after both queues' rings at their largest.
pub const FIRST_FREE: u64 = 0x2000;
/// The device's queue size (virtio-input offers 64 entries on both queues).
const MAX_QUEUE: u16 = 64;
/// Size of `virtio_input_config`: select, subsel, size, 5 reserved, 128 bytes of data.
pub const CONFIG_LEN: usize = 136;

/// Bits of control byte 0.
pub mod flag {
    /// A tablet (otherwise a keyboard).
    pub const TABLET: u8 = 1;
    /// VIRTIO_F_RING_EVENT_IDX negotiated.
    pub const EVENT_IDX: u8 = 2;
    /// The driver enables only the event queue.
    pub const NO_STATUS_QUEUE: u8 = 4;
    /// Each round rings the host's doorbell first (otherwise last).
    pub const HOST_FIRST: u8 = 8;
}

/// The control bytes, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Control {
    /// [`flag`] bits.
    pub flags: u8,
    /// Event queue size, log2 (modulo 7).
    pub event_log2: u8,
    /// Status queue size, log2 (modulo 7).
    pub status_log2: u8,
    /// Rounds minus one (modulo 4).
    pub extra_rounds: u8,
    /// Added to both available indexes before each round after the first.
    pub avail_step: u8,
    /// Config operations to run (modulo `MAX_CONFIG_OPS + 1`).
    pub config_ops: u8,
    /// Host events to send (modulo `MAX_EVENTS + 1`).
    pub events: u8,
}

impl Control {
    /// Decodes the first [`CONTROL_LEN`] bytes (missing ones are zero).
    pub fn decode(data: &[u8]) -> Self {
        let mut raw = [0u8; CONTROL_LEN];
        let n = data.len().min(CONTROL_LEN);
        raw[..n].copy_from_slice(&data[..n]);
        Self {
            flags: raw[0],
            event_log2: raw[1],
            status_log2: raw[2],
            extra_rounds: raw[3],
            avail_step: raw[4],
            config_ops: raw[5],
            events: raw[6],
        }
    }

    /// The bytes [`Control::decode`] turns back into `self`.
    pub fn encode(&self) -> [u8; CONTROL_LEN] {
        [
            self.flags,
            self.event_log2,
            self.status_log2,
            self.extra_rounds,
            self.avail_step,
            self.config_ops,
            self.events,
        ]
    }

    /// Where queue `index` (0 events, 1 status) has its rings.
    pub fn layout(&self, index: u16) -> QueueLayout {
        let (base, log2) = match index {
            0 => (EVENT_RINGS, self.event_log2),
            _ => (STATUS_RINGS, self.status_log2),
        };
        rings::packed_layout(base, MAX_QUEUE, 1 << (log2 % 7))
    }

    fn has(&self, bit: u8) -> bool {
        self.flags & bit != 0
    }
}

/// One config-space access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigOp {
    /// A write (otherwise a read).
    pub write: bool,
    /// 1, 2, 4 or 8 bytes.
    pub size: usize,
    /// Offset into the config space (past its end too).
    pub offset: u8,
    /// A write's bytes, repeated to its size.
    pub value: [u8; 2],
}

impl ConfigOp {
    /// Decodes a [`CONFIG_OP_LEN`]-byte operation: bit 0 of byte 0 is "write", bits 1..3 the
    /// size as a power of two; byte 1 the offset; bytes 2..4 the value.
    pub fn decode(raw: [u8; CONFIG_OP_LEN]) -> Self {
        Self {
            write: raw[0] & 1 != 0,
            size: 1 << ((raw[0] >> 1) & 3),
            offset: raw[1],
            value: [raw[2], raw[3]],
        }
    }

    /// The bytes [`ConfigOp::decode`] turns back into `self`.
    pub fn encode(&self) -> [u8; CONFIG_OP_LEN] {
        let size = self.size.trailing_zeros() as u8;
        [
            u8::from(self.write) | (size << 1),
            self.offset,
            self.value[0],
            self.value[1],
        ]
    }

    fn bytes(&self) -> Vec<u8> {
        (0..self.size).map(|i| self.value[i % 2]).collect()
    }
}

/// What a run left behind, for the seed checks.
pub struct Outcome {
    /// Every config read's bytes, in order.
    pub config_reads: Vec<Vec<u8>>,
    /// The transport accepted the rings and the device activated.
    pub activated: bool,
    /// A chain or ring put the device in DEVICE_NEEDS_RESET.
    pub needs_reset: bool,
    /// Guest memory after the run.
    pub memory: GuestMemoryMmap,
}

/// Reads the whole config space and checks what every read of it must show.
fn check_config(device: &Input, select: u8, subsel: u8) {
    let mut config = [0u8; CONFIG_LEN + 8];
    device.read_config(0, &mut config);
    assert_eq!((config[0], config[1]), (select, subsel), "select/subsel");
    let size = usize::from(config[2]);
    assert!(size <= 128, "size {size}");
    assert_eq!(config[3..8], [0; 5], "reserved bytes");
    assert!(
        config[8 + size..].iter().all(|&b| b == 0),
        "bytes after size {size} or past the end are not zero"
    );
}

/// Runs one input. Never panics on any input; a panic is a bug in emu.
pub fn run(data: &[u8]) -> Outcome {
    let control = Control::decode(data);
    let area = |at: usize, len: usize| {
        let mut raw = vec![0u8; len];
        if let Some(bytes) = data.get(at..) {
            let n = bytes.len().min(len);
            raw[..n].copy_from_slice(&bytes[..n]);
        }
        raw
    };
    let image = data.get(IMAGE_AT..).unwrap_or(&[]);
    let image = &image[..image.len().min(MEMORY_SIZE)];
    let memory =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEMORY_SIZE)]).expect("fuzz guest memory");
    memory
        .write_slice(image, GuestAddress(0))
        .expect("the image fits in guest memory");
    let mut outcome = Outcome {
        config_reads: Vec::new(),
        activated: false,
        needs_reset: false,
        memory: memory.clone(),
    };

    let events = InputQueue::new().expect("an eventfd for the host's events");
    let mut device = if control.has(flag::TABLET) {
        Input::tablet(events.clone())
    } else {
        Input::keyboard(events.clone())
    };

    // The driver's probe: config-space accesses.
    let (mut select, mut subsel) = (0u8, 0u8);
    let ops = area(CONFIG_OPS_AT, MAX_CONFIG_OPS * CONFIG_OP_LEN);
    let count = usize::from(control.config_ops) % (MAX_CONFIG_OPS + 1);
    for raw in ops.chunks_exact(CONFIG_OP_LEN).take(count) {
        let op = ConfigOp::decode([raw[0], raw[1], raw[2], raw[3]]);
        let offset = u64::from(op.offset);
        if op.write {
            let bytes = op.bytes();
            device.write_config(offset, &bytes);
            for (i, &b) in bytes.iter().enumerate() {
                match usize::from(op.offset) + i {
                    0 => select = b,
                    1 => subsel = b,
                    _ => {}
                }
            }
        } else {
            let mut buf = vec![0u8; op.size];
            device.read_config(offset, &mut buf);
            assert_eq!(buf.len(), op.size, "a read changed its size");
            if usize::from(op.offset) >= CONFIG_LEN {
                assert!(buf.iter().all(|&b| b == 0), "a read past the end");
            }
            outcome.config_reads.push(buf);
        }
        check_config(&device, select, subsel);
    }

    // DRIVER_OK: the queues the driver enabled.
    let event_idx = control.has(flag::EVENT_IDX);
    let enabled: &[u16] = if control.has(flag::NO_STATUS_QUEUE) {
        &[0]
    } else {
        &[0, 1]
    };
    let Some((mut service, interrupt)) = rings::activate(
        &mut device,
        enabled,
        |i| control.layout(i),
        event_idx,
        &memory,
    ) else {
        return outcome;
    };
    outcome.activated = true;

    let host_events: Vec<InputEvent> = area(EVENTS_AT, MAX_EVENTS * EVENT_LEN)
        .chunks_exact(EVENT_LEN)
        .take(usize::from(control.events) % (MAX_EVENTS + 1))
        .map(|e| {
            InputEvent::new(
                u16::from_le_bytes([e[0], e[1]]),
                u16::from_le_bytes([e[2], e[3]]),
                u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            )
        })
        .collect();
    let rounds = 1 + usize::from(control.extra_rounds % 4);
    let slots = service.doorbells.len();
    'rounds: for round in 0..rounds {
        if round > 0 {
            for &index in enabled {
                // The driver makes more entries available.
                let at = control.layout(index).avail.0 + 2;
                let idx: u16 = memory.read_obj(GuestAddress(at)).unwrap_or(0);
                let _ = memory.write_obj(
                    idx.wrapping_add(u16::from(control.avail_step)),
                    GuestAddress(at),
                );
            }
        }
        let (from, to) = (
            round * host_events.len() / rounds,
            (round + 1) * host_events.len() / rounds,
        );
        events.send(&host_events[from..to]);
        let order: Vec<usize> = if control.has(flag::HOST_FIRST) {
            (0..slots).rev().collect()
        } else {
            (0..slots).collect()
        };
        for slot in order {
            // As the worker: a false return stops serving until the driver resets the device.
            if !(service.handler)(slot) {
                break 'rounds;
            }
        }
        check_config(&device, select, subsel);
    }
    outcome.needs_reset = interrupt.needs_reset();
    outcome
}

/// Well-formed inputs for the seed corpus (`seeds/virtio_input_queues/`): a driver's config
/// queries of both devices, events delivered to the event queue (over two rounds, and through
/// an indirect table with EVENT_IDX), and an LED event on the status queue.
pub mod seeds {
    use super::*;
    use crate::rings::{DriverRing, Image};
    use emu::virtio::input::evdev;

    /// One seed input and what running it must give.
    pub struct Seed {
        /// File name under `seeds/virtio_input_queues/`.
        pub name: &'static str,
        /// The input.
        pub bytes: Vec<u8>,
        /// (index of a config read, the bytes it must return)
        pub reads: Vec<(usize, Vec<u8>)>,
        /// Chains returned on (event, status).
        pub used: (u16, u16),
        /// (guest address, the bytes the device must have written there)
        pub written: Vec<(u64, Vec<u8>)>,
    }

    const ID_NAME: u8 = 1;
    const ID_DEVIDS: u8 = 3;
    const EV_BITS: u8 = 0x11;
    const ABS_INFO: u8 = 0x12;
    const EV_LED: u16 = 0x11;

    struct Builder {
        control: Control,
        ops: Vec<ConfigOp>,
        events: Vec<InputEvent>,
        image: Image,
        queues: [DriverRing; 2],
        used: (u16, u16),
        written: Vec<(u64, Vec<u8>)>,
    }

    impl Builder {
        fn new(flags: u8) -> Self {
            let control = Control {
                flags,
                event_log2: 4,
                status_log2: 2,
                ..Control::default()
            };
            let queues = [
                DriverRing::new(control.layout(0)),
                DriverRing::new(control.layout(1)),
            ];
            Self {
                control,
                ops: Vec::new(),
                events: Vec::new(),
                image: Image::new(FIRST_FREE),
                queues,
                used: (0, 0),
                written: Vec::new(),
            }
        }

        /// `select` and `subsel` in one 2-byte write.
        fn select(&mut self, select: u8, subsel: u8) {
            self.ops.push(ConfigOp {
                write: true,
                size: 2,
                offset: 0,
                value: [select, subsel],
            });
        }

        fn read(&mut self, offset: u8, size: usize) {
            self.ops.push(ConfigOp {
                write: false,
                size,
                offset,
                value: [0; 2],
            });
        }

        /// An 8-byte event buffer on the event queue that `event` must fill (published now or
        /// by a later round's step).
        fn event_buffer(&mut self, event: InputEvent, publish: bool) {
            let at = self.image.alloc(&[0xee; 8], 8);
            self.queues[0].add_chain(&mut self.image, &[(at, 8, true)], publish);
            self.events.push(event);
            self.used.0 += 1;
            self.written.push((at, event_bytes(event)));
        }

        fn finish(mut self, name: &'static str, reads: Vec<(usize, Vec<u8>)>) -> Seed {
            self.control.config_ops = self.ops.len() as u8;
            self.control.events = self.events.len() as u8;
            let mut bytes = self.control.encode().to_vec();
            for op in &self.ops {
                bytes.extend_from_slice(&op.encode());
            }
            bytes.resize(EVENTS_AT, 0);
            for event in &self.events {
                bytes.extend_from_slice(&event_bytes(*event));
            }
            bytes.resize(IMAGE_AT, 0);
            bytes.extend_from_slice(&self.image.bytes);
            Seed {
                name,
                bytes,
                reads,
                used: self.used,
                written: self.written,
            }
        }
    }

    fn event_bytes(event: InputEvent) -> Vec<u8> {
        let mut raw = Vec::with_capacity(8);
        raw.extend_from_slice(&event.kind.to_le_bytes());
        raw.extend_from_slice(&event.code.to_le_bytes());
        raw.extend_from_slice(&event.value.to_le_bytes());
        raw
    }

    /// All seeds.
    pub fn all() -> Vec<Seed> {
        let mut seeds = Vec::new();

        // A keyboard's probe: name, key bitmap, no absolute axes.
        let mut b = Builder::new(flag::NO_STATUS_QUEUE);
        b.select(ID_NAME, 0);
        b.read(2, 1);
        b.read(8, 8);
        b.select(EV_BITS, evdev::EV_KEY as u8);
        b.read(2, 1);
        b.read(8, 4);
        b.select(ABS_INFO, 0);
        b.read(2, 1);
        seeds.push(b.finish(
            "keyboard_config",
            vec![
                (0, vec![20]),
                (1, b"Cove vir".to_vec()),
                (2, vec![96]),
                (3, vec![0xfe, 0xff, 0xff, 0xff]),
                (4, vec![0]),
            ],
        ));

        // A tablet's probe: IDs, the X axis range, single-byte writes, a read past the end.
        let mut b = Builder::new(flag::TABLET);
        b.select(ID_DEVIDS, 0);
        b.read(8, 8);
        b.ops.push(ConfigOp {
            write: true,
            size: 1,
            offset: 0,
            value: [ABS_INFO, 0],
        });
        b.ops.push(ConfigOp {
            write: true,
            size: 1,
            offset: 1,
            value: [evdev::ABS_X as u8, 0],
        });
        b.read(2, 1);
        b.read(8, 8);
        b.read(200, 8);
        seeds.push(b.finish(
            "tablet_config",
            vec![
                (0, vec![6, 0, 0x27, 6, 2, 0, 1, 0]),
                (1, vec![20]),
                (2, vec![0, 0, 0, 0, 0xff, 0x7f, 0, 0]),
                (3, vec![0; 8]),
            ],
        ));

        // Tablet events into four buffers.
        let mut b = Builder::new(flag::TABLET);
        for event in [
            InputEvent::new(evdev::EV_ABS, evdev::ABS_X, 100),
            InputEvent::new(evdev::EV_ABS, evdev::ABS_Y, 200),
            InputEvent::key(evdev::BTN_LEFT, true),
            InputEvent::sync(),
        ] {
            b.event_buffer(event, true);
        }
        seeds.push(b.finish("tablet_events", Vec::new()));

        // Keyboard events over two rounds: three buffers at first, two more published by the
        // second round's step; the host's doorbell rings first.
        let mut b = Builder::new(flag::HOST_FIRST | flag::NO_STATUS_QUEUE);
        b.control.extra_rounds = 1;
        b.control.avail_step = 2;
        for (i, event) in [
            InputEvent::key(30, true),
            InputEvent::sync(),
            InputEvent::key(30, false),
            InputEvent::sync(),
            InputEvent::key(99, true),
        ]
        .into_iter()
        .enumerate()
        {
            b.event_buffer(event, i < 3);
        }
        seeds.push(b.finish("keyboard_events_two_rounds", Vec::new()));

        // The driver sets Caps Lock's LED on the status queue.
        let mut b = Builder::new(0);
        let mut led = Vec::new();
        led.extend_from_slice(&EV_LED.to_le_bytes());
        led.extend_from_slice(&1u16.to_le_bytes());
        led.extend_from_slice(&1u32.to_le_bytes());
        let at = b.image.alloc(&led, 8);
        b.queues[1].add_chain(&mut b.image, &[(at, 8, false)], true);
        b.used.1 = 1;
        seeds.push(b.finish("status_led", Vec::new()));

        // EVENT_IDX and an event buffer behind an indirect table.
        let mut b = Builder::new(flag::EVENT_IDX | flag::NO_STATUS_QUEUE);
        let at = b.image.alloc(&[0xee; 8], 8);
        b.queues[0].add_indirect(&mut b.image, &[(at, 8, true)]);
        let event = InputEvent::key(2, true);
        b.events.push(event);
        b.used.0 = 1;
        b.written.push((at, event_bytes(event)));
        seeds.push(b.finish("indirect_event_idx", Vec::new()));

        seeds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Address;

    #[test]
    fn seeds_run_to_their_expected_results() {
        for seed in seeds::all() {
            let outcome = run(&seed.bytes);
            assert!(outcome.activated, "{}: not activated", seed.name);
            assert!(!outcome.needs_reset, "{}: device needs reset", seed.name);
            for (index, expect) in &seed.reads {
                assert_eq!(
                    &outcome.config_reads[*index], expect,
                    "{}: config read {index}",
                    seed.name
                );
            }
            let control = Control::decode(&seed.bytes);
            for (index, expect) in [(0, seed.used.0), (1, seed.used.1)] {
                let used: u16 = outcome
                    .memory
                    .read_obj(control.layout(index).used.unchecked_add(2))
                    .unwrap();
                assert_eq!(used, expect, "{}: used entries of queue {index}", seed.name);
            }
            for (address, expect) in &seed.written {
                let mut got = vec![0u8; expect.len()];
                outcome
                    .memory
                    .read_slice(&mut got, GuestAddress(*address))
                    .unwrap();
                assert_eq!(&got, expect, "{}: bytes at {address:#x}", seed.name);
            }
        }
    }

    /// `COVE_UPDATE_SEEDS=1 cargo test` rewrites the seed files.
    #[test]
    fn seed_files_are_current() {
        let seeds = seeds::all();
        crate::check_seed_files(
            "virtio_input_queues",
            seeds.iter().map(|seed| (seed.name, seed.bytes.as_slice())),
        );
    }

    #[test]
    fn short_and_hostile_inputs_end_cleanly() {
        for data in [&[][..], &[0xff; CONTROL_LEN], &[0xff; IMAGE_AT + 64]] {
            run(data);
        }
        let mut all_ones = vec![0xffu8; IMAGE_AT + MEMORY_SIZE];
        all_ones[0] = flag::EVENT_IDX;
        run(&all_ones);
    }
}
