//! Target `virtio_gpu_queues`: the virtio-gpu control queue and cursor queue, served
//! synchronously by the very handler the device's `activate` returns for its worker thread,
//! over guest memory whose contents the fuzzer chooses (descriptors, commands, backing pages),
//! with the host's side (display resizes, screendumps, config reads) in between.
//!
//! Input layout:
//!
//! | bytes | meaning |
//! |---|---|
//! | 0 | control queue size: `1 << (b % 9)`, so 1 to 256 |
//! | 1 | cursor queue size: `1 << (b % 9)` |
//! | 2 | flags: [`flag::EVENT_IDX`], [`flag::CURSOR_FIRST`], [`flag::HEADLESS`], [`flag::NO_CURSOR_QUEUE`], [`flag::ACK_EVENTS`] |
//! | 3 | scanouts: `1 + b % 16` |
//! | 4 | rounds (notifications of both queues): `1 + b % 4` |
//! | 5 | before each round after the first, the driver adds this to both `avail.idx` |
//! | 6 | before each round after the first, the host resizes scanout `b % 17` (16: none) ... |
//! | 7 | ... to `16 * (1 + b)` x `12 * (1 + b)` pixels |
//! | 8.. | guest memory from address 0 (at most [`MEMORY_SIZE`] bytes; the rest is zero): the control queue's rings at [`CONTROL_RINGS`], the cursor queue's at [`CURSOR_RINGS`], commands, responses and resource backing anywhere |
//!
//! Missing control bytes read as zero. Rings the transport would refuse end the run before
//! activation. Checked on every input, besides "no panic": what the device tells the scanout
//! sink keeps the sink's contract ([`CheckingSink`]), screendumps have the size they claim,
//! and the config space reports the scanouts the device was built with.

use crate::rings;
use emu::scanout::{CursorImage, PixelFormat, Rect, ScanoutSink, SharedSink, Surface};
use emu::virtio::gpu::protocol::MAX_SCANOUTS;
use emu::virtio::gpu::state::MAX_DIMENSION;
use emu::virtio::gpu::{Gpu, GpuOptions};
use emu::virtio::queue_service::QueueLayout;
use emu::virtio::VirtioDevice;
use parking_lot::Mutex;
use std::sync::Arc;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Guest RAM, from address 0.
pub const MEMORY_SIZE: usize = 1 << 20;
/// Control bytes before the guest memory image.
pub const CONTROL_LEN: usize = 8;
/// Where the control queue's rings start (packed: descriptors, available, used).
pub const CONTROL_RINGS: u64 = 0;
/// Where the cursor queue's rings start.
pub const CURSOR_RINGS: u64 = 0x2000;
/// The first byte after both queues' rings at their largest.
pub const FIRST_FREE: u64 = 0x4000;
/// Host memory for resources: small, so the fuzzer hits the budget and stays fast.
pub const BUDGET: u64 = 4 << 20;
/// The device's queue size (virtio-gpu offers 256 entries on both queues).
const MAX_QUEUE: u16 = 256;
/// The largest cursor image the device may hand the sink.
const MAX_CURSOR: u32 = 256;

/// Bits of control byte 2.
pub mod flag {
    /// VIRTIO_F_RING_EVENT_IDX negotiated.
    pub const EVENT_IDX: u8 = 1;
    /// Each round serves the cursor queue before the control queue.
    pub const CURSOR_FIRST: u8 = 2;
    /// No scanout sink (a headless VM).
    pub const HEADLESS: u8 = 4;
    /// The driver enables only the control queue.
    pub const NO_CURSOR_QUEUE: u8 = 8;
    /// After each round the driver writes `events_read` back to `events_clear`.
    pub const ACK_EVENTS: u8 = 16;
}

/// The control bytes, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Control {
    /// Control queue size, log2 (modulo 9).
    pub control_log2: u8,
    /// Cursor queue size, log2 (modulo 9).
    pub cursor_log2: u8,
    /// [`flag`] bits.
    pub flags: u8,
    /// Scanouts minus one (modulo 16).
    pub scanouts: u8,
    /// Rounds minus one (modulo 4).
    pub extra_rounds: u8,
    /// Added to both available indexes before each round after the first.
    pub avail_step: u8,
    /// The scanout the host resizes (modulo 17).
    pub resize: u8,
    /// The size it resizes to.
    pub resize_to: u8,
}

impl Control {
    /// Decodes the first [`CONTROL_LEN`] bytes (missing ones are zero).
    pub fn decode(data: &[u8]) -> Self {
        let mut raw = [0u8; CONTROL_LEN];
        let n = data.len().min(CONTROL_LEN);
        raw[..n].copy_from_slice(&data[..n]);
        Self {
            control_log2: raw[0],
            cursor_log2: raw[1],
            flags: raw[2],
            scanouts: raw[3],
            extra_rounds: raw[4],
            avail_step: raw[5],
            resize: raw[6],
            resize_to: raw[7],
        }
    }

    /// The bytes [`Control::decode`] turns back into `self`.
    pub fn encode(&self) -> [u8; CONTROL_LEN] {
        [
            self.control_log2,
            self.cursor_log2,
            self.flags,
            self.scanouts,
            self.extra_rounds,
            self.avail_step,
            self.resize,
            self.resize_to,
        ]
    }

    /// Number of scanouts the GPU is built with.
    pub fn scanout_count(&self) -> usize {
        1 + usize::from(self.scanouts % 16)
    }

    /// Where queue `index` (0 control, 1 cursor) has its rings.
    pub fn layout(&self, index: u16) -> QueueLayout {
        let (base, log2) = match index {
            0 => (CONTROL_RINGS, self.control_log2),
            _ => (CURSOR_RINGS, self.cursor_log2),
        };
        rings::packed_layout(base, MAX_QUEUE, 1 << (log2 % 9))
    }

    fn has(&self, bit: u8) -> bool {
        self.flags & bit != 0
    }
}

/// What the device told the sink.
#[derive(Default)]
pub struct Record {
    /// The mode each scanout was last configured with.
    pub modes: Vec<Option<(u32, u32, PixelFormat)>>,
    /// Rectangles updated, per call.
    pub updates: Vec<(u32, Rect)>,
    /// Cursor images set (None: hidden).
    pub cursors: Vec<Option<(u32, u32)>>,
    /// Cursor positions.
    pub positions: Vec<(u32, u32, u32)>,
}

/// A scanout sink that checks the contract the display's sink relies on: scanout indices in
/// range, modes of a sane size, updates only of a configured scanout, of a surface of exactly
/// the configured size whose pixels fill it, with a non-empty dirty rectangle inside it, and
/// cursor images of a cursor's size with their hot spot inside and all their pixels.
pub struct CheckingSink {
    scanouts: usize,
    /// What it was told.
    pub record: Mutex<Record>,
}

impl CheckingSink {
    fn new(scanouts: usize) -> Self {
        Self {
            scanouts,
            record: Mutex::new(Record {
                modes: vec![None; scanouts],
                ..Record::default()
            }),
        }
    }
}

impl ScanoutSink for CheckingSink {
    fn configure(&self, index: u32, mode: Option<(u32, u32, PixelFormat)>) {
        assert!((index as usize) < self.scanouts, "configure({index})");
        if let Some((width, height, _)) = mode {
            assert!(
                (1..=MAX_DIMENSION).contains(&width) && (1..=MAX_DIMENSION).contains(&height),
                "mode {width}x{height}"
            );
        }
        self.record.lock().modes[index as usize] = mode;
    }

    fn update(&self, index: u32, surface: &Surface, dirty: Rect) {
        assert!((index as usize) < self.scanouts, "update({index})");
        let mut record = self.record.lock();
        let Some((width, height, _)) = record.modes[index as usize] else {
            panic!("update of scanout {index}, which is not configured");
        };
        assert_eq!(
            (surface.width, surface.height),
            (width, height),
            "surface size differs from the configured mode"
        );
        assert_eq!(
            surface.pixels.len() as u64,
            u64::from(width) * u64::from(height) * 4,
            "surface pixels"
        );
        assert!(
            dirty.width > 0 && dirty.height > 0 && dirty.fits_in(width, height),
            "dirty {dirty:?} in {width}x{height}"
        );
        record.updates.push((index, dirty));
    }

    fn cursor_image(&self, index: u32, image: Option<&CursorImage>) {
        assert!((index as usize) < self.scanouts, "cursor_image({index})");
        if let Some(image) = image {
            assert!(
                (1..=MAX_CURSOR).contains(&image.width) && (1..=MAX_CURSOR).contains(&image.height),
                "cursor {}x{}",
                image.width,
                image.height
            );
            assert!(image.hot_x < image.width && image.hot_y < image.height);
            assert_eq!(
                image.rgba.len() as u64,
                u64::from(image.width) * u64::from(image.height) * 4
            );
        }
        self.record
            .lock()
            .cursors
            .push(image.map(|i| (i.width, i.height)));
    }

    fn cursor_position(&self, index: u32, x: u32, y: u32) {
        assert!((index as usize) < self.scanouts, "cursor_position({index})");
        self.record.lock().positions.push((index, x, y));
    }
}

/// What a run left behind, for the seed checks.
pub struct Outcome {
    /// The transport accepted the rings and the device activated.
    pub activated: bool,
    /// A chain or ring put the device in DEVICE_NEEDS_RESET.
    pub needs_reset: bool,
    /// Guest memory after the run.
    pub memory: GuestMemoryMmap,
    /// What the sink was told.
    pub sink: Arc<CheckingSink>,
}

/// Runs one input. Never panics on any input; a panic is a bug in emu.
pub fn run(data: &[u8]) -> Outcome {
    let control = Control::decode(data);
    let image = data.get(CONTROL_LEN..).unwrap_or(&[]);
    let image = &image[..image.len().min(MEMORY_SIZE)];
    let memory =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEMORY_SIZE)]).expect("fuzz guest memory");
    memory
        .write_slice(image, GuestAddress(0))
        .expect("the image fits in guest memory");
    let scanouts = control.scanout_count();
    let sink = Arc::new(CheckingSink::new(scanouts));
    let mut outcome = Outcome {
        activated: false,
        needs_reset: false,
        memory: memory.clone(),
        sink: sink.clone(),
    };
    let shared: Option<SharedSink> = if control.has(flag::HEADLESS) {
        None
    } else {
        Some(sink)
    };
    let (mut gpu, handle) = Gpu::new(
        &GpuOptions {
            scanouts,
            width: 1024,
            height: 768,
            budget: BUDGET,
        },
        shared,
    );
    let event_idx = control.has(flag::EVENT_IDX);
    let enabled: &[u16] = if control.has(flag::NO_CURSOR_QUEUE) {
        &[0]
    } else {
        &[0, 1]
    };
    let Some((mut service, interrupt)) =
        rings::activate(&mut gpu, enabled, |i| control.layout(i), event_idx, &memory)
    else {
        return outcome;
    };
    outcome.activated = true;

    let order = if control.has(flag::CURSOR_FIRST) {
        [1, 0]
    } else {
        [0, 1]
    };
    'rounds: for round in 0..=u32::from(control.extra_rounds % 4) {
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
            let side = 16 * (1 + u32::from(control.resize_to));
            handle.set_display_size(usize::from(control.resize % 17), side, side * 3 / 4);
        }
        for slot in order {
            // As the worker: a false return stops serving until the driver resets the device.
            if !(service.handler)(slot) {
                break 'rounds;
            }
        }
        check_host_view(&mut gpu, &handle, scanouts, control.has(flag::ACK_EVENTS));
    }
    outcome.needs_reset = interrupt.needs_reset();
    outcome
}

/// What the host and the driver see between rounds: the config space and screendumps.
fn check_host_view(
    gpu: &mut Gpu,
    handle: &emu::virtio::gpu::GpuHandle,
    scanouts: usize,
    ack: bool,
) {
    let mut config = [0u8; 16];
    gpu.read_config(0, &mut config);
    let word =
        |i: usize| u32::from_le_bytes([config[i], config[i + 1], config[i + 2], config[i + 3]]);
    assert_eq!(word(8) as usize, scanouts, "num_scanouts");
    if ack {
        gpu.write_config(4, &config[0..4]);
    }
    for index in 0..=MAX_SCANOUTS {
        if let Some((width, height, rgba)) = handle.snapshot(index) {
            assert!(index < scanouts, "a screendump of scanout {index}");
            assert_eq!(
                rgba.len() as u64,
                u64::from(width) * u64::from(height) * 4,
                "screendump of {width}x{height}"
            );
        }
    }
}

/// Well-formed inputs for the seed corpus (`seeds/virtio_gpu_queues/`): every command a guest
/// driver sends, on both queues, plus a fenced command through an indirect table over two
/// rounds, and malformed commands.
pub mod seeds {
    use super::{flag, Control, CONTROL_LEN, FIRST_FREE};
    use crate::rings::{DriverRing, Image};
    use emu::virtio::gpu::protocol::*;

    /// `VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM`.
    const BGRX: u32 = 2;
    /// `VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM`.
    const RGBA: u32 = 67;
    /// Response buffer size: the largest response (EDID) fits.
    const RESPONSE: u32 = 24 + 8 + 1024;

    /// One seed input and what running it must give.
    pub struct Seed {
        /// File name under `seeds/virtio_gpu_queues/`.
        pub name: &'static str,
        /// The input.
        pub bytes: Vec<u8>,
        /// (guest address of a response header, the response type the device must write)
        pub responses: Vec<(u64, u32)>,
        /// Chains returned on (control, cursor).
        pub used: (u16, u16),
    }

    struct Builder {
        control: Control,
        image: Image,
        queues: [DriverRing; 2],
        responses: Vec<(u64, u32)>,
    }

    fn header(kind: u32, flags: u32, fence: u64) -> Vec<u8> {
        let mut h = Vec::with_capacity(HEADER_LEN);
        h.extend_from_slice(&kind.to_le_bytes());
        h.extend_from_slice(&flags.to_le_bytes());
        h.extend_from_slice(&fence.to_le_bytes());
        h.extend_from_slice(&[0; 8]);
        h
    }

    fn command(kind: u32, fields: &[u32]) -> Vec<u8> {
        let mut c = header(kind, 0, 0);
        for f in fields {
            c.extend_from_slice(&f.to_le_bytes());
        }
        c
    }

    impl Builder {
        fn new(control: Control) -> Self {
            let queues = [
                DriverRing::new(control.layout(0)),
                DriverRing::new(control.layout(1)),
            ];
            Self {
                control,
                image: Image::new(FIRST_FREE),
                queues,
                responses: Vec::new(),
            }
        }

        /// `cmd` on `queue` as a readable and a writable buffer, expecting `expect`.
        fn send(&mut self, queue: usize, cmd: &[u8], expect: u32) {
            let request = self.image.alloc(cmd, 8);
            let response = self.image.alloc(&[0u8; RESPONSE as usize], 8);
            self.responses.push((response, expect));
            self.queues[queue].add_chain(
                &mut self.image,
                &[
                    (request, cmd.len() as u32, false),
                    (response, RESPONSE, true),
                ],
                true,
            );
        }

        fn ctrl(&mut self, kind: u32, fields: &[u32], expect: u32) {
            self.send(0, &command(kind, fields), expect);
        }

        fn cursor(&mut self, kind: u32, fields: &[u32], expect: u32) {
            self.send(1, &command(kind, fields), expect);
        }

        /// `len` bytes of `pixel` in guest memory, attached to `id` as two entries.
        fn attach(&mut self, id: u32, len: u32, pixel: [u8; 4]) {
            let pixels = pixel.repeat(len as usize / 4);
            let backing = self.image.alloc(&pixels, 4096);
            let half = len / 2;
            let mut cmd = command(CMD_RESOURCE_ATTACH_BACKING, &[id, 2]);
            for (address, size) in [(backing, half), (backing + u64::from(half), len - half)] {
                cmd.extend_from_slice(&address.to_le_bytes());
                cmd.extend_from_slice(&size.to_le_bytes());
                cmd.extend_from_slice(&0u32.to_le_bytes());
            }
            self.send(0, &cmd, RESP_OK_NODATA);
        }

        fn transfer(&mut self, id: u32, rect: [u32; 4], offset: u64, expect: u32) {
            let mut cmd = command(CMD_TRANSFER_TO_HOST_2D, &rect);
            cmd.extend_from_slice(&offset.to_le_bytes());
            cmd.extend_from_slice(&id.to_le_bytes());
            cmd.extend_from_slice(&0u32.to_le_bytes());
            self.send(0, &cmd, expect);
        }

        fn finish(self, name: &'static str) -> Seed {
            let mut bytes = self.control.encode().to_vec();
            debug_assert_eq!(bytes.len(), CONTROL_LEN);
            bytes.extend_from_slice(&self.image.bytes);
            Seed {
                name,
                bytes,
                responses: self.responses,
                used: (self.queues[0].avail_idx, self.queues[1].avail_idx),
            }
        }
    }

    fn control(flags: u8) -> Control {
        Control {
            control_log2: 5,
            cursor_log2: 3,
            flags,
            ..Control::default()
        }
    }

    /// All seeds.
    pub fn all() -> Vec<Seed> {
        let mut seeds = Vec::new();

        let mut b = Builder::new(control(0));
        b.ctrl(CMD_GET_DISPLAY_INFO, &[], RESP_OK_DISPLAY_INFO);
        b.ctrl(CMD_GET_EDID, &[0, 0], RESP_OK_EDID);
        seeds.push(b.finish("display_info_edid"));

        // A frame: create, back, transfer, show, flush a part, transfer a part.
        let mut b = Builder::new(control(0));
        b.ctrl(CMD_RESOURCE_CREATE_2D, &[1, BGRX, 64, 32], RESP_OK_NODATA);
        b.attach(1, 64 * 32 * 4, [0x10, 0x20, 0x30, 0]);
        b.transfer(1, [0, 0, 64, 32], 0, RESP_OK_NODATA);
        b.ctrl(CMD_SET_SCANOUT, &[0, 0, 64, 32, 0, 1], RESP_OK_NODATA);
        b.ctrl(CMD_RESOURCE_FLUSH, &[8, 4, 16, 8, 1, 0], RESP_OK_NODATA);
        b.transfer(1, [20, 10, 4, 1], (10 * 64 + 20) * 4, RESP_OK_NODATA);
        b.ctrl(CMD_RESOURCE_FLUSH, &[20, 10, 4, 1, 1, 0], RESP_OK_NODATA);
        seeds.push(b.finish("frame"));

        // The cursor: its resource on the control queue, then image and moves on the cursor
        // queue.
        let mut b = Builder::new(control(0));
        b.ctrl(CMD_RESOURCE_CREATE_2D, &[5, RGBA, 64, 64], RESP_OK_NODATA);
        b.attach(5, 64 * 64 * 4, [0x30, 0x20, 0x10, 0xff]);
        b.transfer(5, [0, 0, 64, 64], 0, RESP_OK_NODATA);
        b.cursor(
            CMD_UPDATE_CURSOR,
            &[0, 100, 50, 0, 5, 3, 4, 0],
            RESP_OK_NODATA,
        );
        b.cursor(
            CMD_MOVE_CURSOR,
            &[0, 200, 75, 0, 0, 0, 0, 0],
            RESP_OK_NODATA,
        );
        b.cursor(CMD_UPDATE_CURSOR, &[0, 0, 0, 0, 0, 0, 0, 0], RESP_OK_NODATA);
        seeds.push(b.finish("cursor"));

        // Two scanouts, one resource on both, then taken down piece by piece.
        let mut c = control(0);
        c.scanouts = 1;
        let mut b = Builder::new(c);
        b.ctrl(CMD_RESOURCE_CREATE_2D, &[3, BGRX, 32, 32], RESP_OK_NODATA);
        b.attach(3, 32 * 32 * 4, [1, 2, 3, 4]);
        b.transfer(3, [0, 0, 32, 32], 0, RESP_OK_NODATA);
        b.ctrl(CMD_SET_SCANOUT, &[0, 0, 32, 32, 0, 3], RESP_OK_NODATA);
        b.ctrl(CMD_SET_SCANOUT, &[8, 8, 16, 16, 1, 3], RESP_OK_NODATA);
        b.ctrl(CMD_RESOURCE_FLUSH, &[0, 0, 32, 32, 3, 0], RESP_OK_NODATA);
        b.ctrl(CMD_SET_SCANOUT, &[0, 0, 0, 0, 1, 0], RESP_OK_NODATA);
        b.ctrl(CMD_RESOURCE_DETACH_BACKING, &[3, 0], RESP_OK_NODATA);
        b.ctrl(CMD_RESOURCE_UNREF, &[3, 0], RESP_OK_NODATA);
        seeds.push(b.finish("two_scanouts_teardown"));

        // Malformed commands get errors, and the device carries on.
        let mut b = Builder::new(control(0));
        b.send(0, &[1, 2, 3], RESP_ERR_UNSPEC);
        b.ctrl(0x9999, &[], RESP_ERR_UNSPEC);
        b.ctrl(CMD_RESOURCE_CREATE_2D, &[7], RESP_ERR_UNSPEC);
        b.ctrl(
            CMD_RESOURCE_CREATE_2D,
            &[7, BGRX, 4096, 4096],
            RESP_ERR_OUT_OF_MEMORY,
        );
        b.ctrl(
            CMD_RESOURCE_CREATE_2D,
            &[7, 999, 8, 8],
            RESP_ERR_INVALID_PARAMETER,
        );
        b.ctrl(CMD_RESOURCE_CREATE_2D, &[7, BGRX, 8, 8], RESP_OK_NODATA);
        b.transfer(7, [0, 0, 8, 8], 0, RESP_ERR_UNSPEC);
        b.ctrl(
            CMD_RESOURCE_ATTACH_BACKING,
            &[7, u32::MAX],
            RESP_ERR_INVALID_PARAMETER,
        );
        b.ctrl(CMD_RESOURCE_ATTACH_BACKING, &[7, 3], RESP_ERR_UNSPEC);
        b.ctrl(
            CMD_RESOURCE_FLUSH,
            &[0, u32::MAX, 1, 2, 7, 0],
            RESP_ERR_INVALID_PARAMETER,
        );
        b.ctrl(
            CMD_SET_SCANOUT,
            &[0, 0, 8, 8, 9, 7],
            RESP_ERR_INVALID_SCANOUT_ID,
        );
        b.ctrl(CMD_GET_EDID, &[4, 0], RESP_ERR_INVALID_SCANOUT_ID);
        b.cursor(
            CMD_UPDATE_CURSOR,
            &[0, 0, 0, 0, 77, 0, 0, 0],
            RESP_ERR_INVALID_RESOURCE_ID,
        );
        b.cursor(
            CMD_MOVE_CURSOR,
            &[9, 0, 0, 0, 0, 0, 0, 0],
            RESP_ERR_INVALID_SCANOUT_ID,
        );
        seeds.push(b.finish("malformed"));

        // EVENT_IDX, a fenced command through an indirect table, and a second round in which
        // the driver publishes one more command and the host resizes the display; the
        // driver enables no cursor queue.
        let mut c = control(flag::EVENT_IDX | flag::ACK_EVENTS | flag::NO_CURSOR_QUEUE);
        c.extra_rounds = 1;
        c.avail_step = 1;
        c.resize_to = 79;
        let mut b = Builder::new(c);
        let fenced = header(CMD_GET_DISPLAY_INFO, FLAG_FENCE, 0x1234_5678);
        let request = b.image.alloc(&fenced, 8);
        let response = b.image.alloc(&[0u8; 24 + 16 * 24], 8);
        b.responses.push((response, RESP_OK_DISPLAY_INFO));
        b.queues[0].add_indirect(
            &mut b.image,
            &[
                (request, HEADER_LEN as u32, false),
                (response, 24 + 16 * 24, true),
            ],
        );
        let later = command(CMD_GET_DISPLAY_INFO, &[]);
        let request = b.image.alloc(&later, 8);
        let response = b.image.alloc(&[0u8; RESPONSE as usize], 8);
        b.responses.push((response, RESP_OK_DISPLAY_INFO));
        b.queues[0].add_chain(
            &mut b.image,
            &[
                (request, later.len() as u32, false),
                (response, RESPONSE, true),
            ],
            false,
        );
        seeds.push(b.finish("indirect_fenced_two_rounds"));

        // The cursor queue before the control queue in each round: its command names a
        // resource that does not exist yet.
        let mut b = Builder::new(control(flag::CURSOR_FIRST));
        b.cursor(
            CMD_UPDATE_CURSOR,
            &[0, 1, 1, 0, 9, 0, 0, 0],
            RESP_ERR_INVALID_RESOURCE_ID,
        );
        b.ctrl(CMD_RESOURCE_CREATE_2D, &[9, BGRX, 16, 16], RESP_OK_NODATA);
        seeds.push(b.finish("cursor_first"));

        seeds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Address;

    #[test]
    fn seeds_run_to_their_expected_responses() {
        for seed in seeds::all() {
            let outcome = run(&seed.bytes);
            assert!(outcome.activated, "{}: not activated", seed.name);
            assert!(!outcome.needs_reset, "{}: device needs reset", seed.name);
            let control = Control::decode(&seed.bytes);
            for (index, expect) in [(0, seed.used.0), (1, seed.used.1)] {
                let used: u16 = outcome
                    .memory
                    .read_obj(control.layout(index).used.unchecked_add(2))
                    .unwrap();
                assert_eq!(used, expect, "{}: used entries of queue {index}", seed.name);
            }
            for &(address, expect) in &seed.responses {
                let got: u32 = outcome.memory.read_obj(GuestAddress(address)).unwrap();
                assert_eq!(got, expect, "{}: response at {address:#x}", seed.name);
            }
        }
    }

    #[test]
    fn seeds_reach_the_sink() {
        let seeds = seeds::all();
        let frame = seeds.iter().find(|s| s.name == "frame").unwrap();
        let record = run(&frame.bytes).sink.record.lock().updates.clone();
        assert_eq!(record.last(), Some(&(0, Rect::new(20, 10, 4, 1))));
        let cursor = seeds.iter().find(|s| s.name == "cursor").unwrap();
        let outcome = run(&cursor.bytes);
        let record = outcome.sink.record.lock();
        assert_eq!(record.cursors, vec![Some((64, 64)), None]);
        assert_eq!(
            record.positions,
            vec![(0, 100, 50), (0, 200, 75), (0, 0, 0)]
        );
    }

    /// `COVE_UPDATE_SEEDS=1 cargo test` rewrites the seed files.
    #[test]
    fn seed_files_are_current() {
        let seeds = seeds::all();
        crate::check_seed_files(
            "virtio_gpu_queues",
            seeds.iter().map(|seed| (seed.name, seed.bytes.as_slice())),
        );
    }

    #[test]
    fn short_and_hostile_inputs_end_cleanly() {
        for data in [&[][..], &[8, 8, 0xff, 0xff, 3, 0xff, 0xff, 0xff]] {
            run(data);
        }
        let mut all_ones = vec![0xffu8; 1 << 16];
        all_ones[2] = flag::EVENT_IDX;
        run(&all_ones);
    }
}
