//! Target `virtio_blk_queue`: one virtio-blk request queue served synchronously, exactly as the
//! device's worker thread serves it ([`serve_queue`] handing each chain to [`execute`]), over
//! guest memory whose contents the fuzzer chooses, on a small raw disk image.
//!
//! Input layout (numbers little-endian):
//!
//! | bytes | meaning |
//! |---|---|
//! | 0 | queue size: `1 << (b % 9)`, so 1 to 256 |
//! | 1 | flags: [`flag::EVENT_IDX`], [`flag::READ_ONLY`], [`flag::OWN_LAYOUT`] |
//! | 2 | notifications: `1 + b % 4` |
//! | 3 | before each notification after the first, the driver adds this to `avail.idx` |
//! | 4..16 | with [`flag::OWN_LAYOUT`]: the descriptor table, available ring and used ring addresses (u32 each); without it the rings are packed from address 0 ([`packed_layout`]) |
//! | 16.. | guest memory from address 0 (at most [`MEMORY_SIZE`] bytes; the rest is zero): descriptor table, available ring (flags, idx, ring, used_event), request headers, buffers |
//!
//! Missing control bytes read as zero. The queue goes through the transport's own checks
//! ([`ready_queue`]); a layout the transport would refuse ends the run there.

use emu::block::RawDisk;
use emu::virtio::block::request::{execute, RequestContext, ID_BYTES};
use emu::virtio::block::{LIMITS, QUEUE_SIZE};
use emu::virtio::queue_service::{ready_queue, serve_queue, QueueLayout};
use emu::virtio::VirtioInterrupt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Guest RAM, from address 0.
pub const MEMORY_SIZE: usize = 1 << 20;
/// The disk behind the queue: 128 sectors.
pub const DISK_SIZE: u64 = 64 << 10;
/// Control bytes before the guest memory image.
pub const CONTROL_LEN: usize = 16;
const SERIAL: &[u8; ID_BYTES] = b"cove-fuzz-serial\0\0\0\0";

/// Bits of control byte 1.
pub mod flag {
    /// VIRTIO_F_RING_EVENT_IDX negotiated.
    pub const EVENT_IDX: u8 = 1;
    /// The disk is opened read-only.
    pub const READ_ONLY: u8 = 2;
    /// Ring addresses come from control bytes 4..16.
    pub const OWN_LAYOUT: u8 = 4;
}

/// The control bytes, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Control {
    pub size_log2: u8,
    pub flags: u8,
    pub extra_notifications: u8,
    pub avail_step: u8,
    /// Descriptor table, available ring, used ring (with [`flag::OWN_LAYOUT`]).
    pub rings: [u32; 3],
}

impl Control {
    pub fn decode(data: &[u8]) -> Self {
        let mut raw = [0u8; CONTROL_LEN];
        let n = data.len().min(CONTROL_LEN);
        raw[..n].copy_from_slice(&data[..n]);
        let word = |i: usize| u32::from_le_bytes([raw[i], raw[i + 1], raw[i + 2], raw[i + 3]]);
        Self {
            size_log2: raw[0],
            flags: raw[1],
            extra_notifications: raw[2],
            avail_step: raw[3],
            rings: [word(4), word(8), word(12)],
        }
    }

    pub fn encode(&self) -> [u8; CONTROL_LEN] {
        let mut raw = [0u8; CONTROL_LEN];
        raw[0] = self.size_log2;
        raw[1] = self.flags;
        raw[2] = self.extra_notifications;
        raw[3] = self.avail_step;
        for (i, ring) in self.rings.iter().enumerate() {
            raw[4 + 4 * i..8 + 4 * i].copy_from_slice(&ring.to_le_bytes());
        }
        raw
    }

    pub fn queue_size(&self) -> u16 {
        1 << (self.size_log2 % 9)
    }

    pub fn notifications(&self) -> u32 {
        1 + u32::from(self.extra_notifications % 4)
    }

    pub fn event_idx(&self) -> bool {
        self.flags & flag::EVENT_IDX != 0
    }

    pub fn read_only(&self) -> bool {
        self.flags & flag::READ_ONLY != 0
    }

    pub fn layout(&self) -> QueueLayout {
        let size = self.queue_size();
        let (desc, avail, used) = if self.flags & flag::OWN_LAYOUT != 0 {
            let [desc, avail, used] = self.rings.map(u64::from);
            (desc, avail, used)
        } else {
            packed_layout(size)
        };
        QueueLayout {
            max_size: QUEUE_SIZE,
            size,
            desc: GuestAddress(desc),
            avail: GuestAddress(avail),
            used: GuestAddress(used),
        }
    }
}

/// The rings of a `size`-entry queue back to back from address 0: descriptor table, available
/// ring, then the used ring at the next 4-byte boundary. Returns (desc, avail, used).
pub fn packed_layout(size: u16) -> (u64, u64, u64) {
    let size = u64::from(size);
    let avail = 16 * size;
    let used = (avail + 6 + 2 * size).next_multiple_of(4);
    (0, avail, used)
}

/// What a run left behind, for the seed checks.
pub struct Outcome {
    /// The transport accepted the queue layout.
    pub accepted: bool,
    /// A chain or ring put the device in DEVICE_NEEDS_RESET.
    pub needs_reset: bool,
    pub layout: QueueLayout,
    pub memory: GuestMemoryMmap,
}

struct Disks {
    rw: RawDisk,
    ro: RawDisk,
}

/// The two disks, created once per process: on tmpfs where there is one, and unlinked as soon
/// as they are open.
fn disks() -> &'static Disks {
    static DISKS: OnceLock<Disks> = OnceLock::new();
    DISKS.get_or_init(|| Disks {
        rw: scratch_disk("rw", false),
        ro: scratch_disk("ro", true),
    })
}

fn scratch_disk(tag: &str, read_only: bool) -> RawDisk {
    let name = format!("cove-fuzz-blk-{}-{tag}.img", std::process::id());
    let shm = Path::new("/dev/shm").join(&name);
    let (path, file) = match File::create(&shm) {
        Ok(file) => (shm, file),
        Err(_) => {
            let path: PathBuf = std::env::temp_dir().join(&name);
            let file = File::create(&path).expect("create the fuzz disk image");
            (path, file)
        }
    };
    let pattern: Vec<u8> = (0..DISK_SIZE).map(|i| (i / 512) as u8 ^ i as u8).collect();
    file.write_all_at(&pattern, 0)
        .expect("fill the fuzz disk image");
    drop(file);
    let disk = RawDisk::open(&path, read_only).expect("open the fuzz disk image");
    let _ = std::fs::remove_file(&path);
    disk
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
    let layout = control.layout();
    let mut outcome = Outcome {
        accepted: false,
        needs_reset: false,
        layout,
        memory: memory.clone(),
    };
    let Ok(mut queue) = ready_queue(layout, control.event_idx(), &memory) else {
        return outcome;
    };
    outcome.accepted = true;

    let disks = disks();
    let disk = if control.read_only() {
        &disks.ro
    } else {
        &disks.rw
    };
    let interrupt = VirtioInterrupt::detached(1);
    let mut buffer = Vec::new();
    let mut ctx = RequestContext {
        disk,
        serial: SERIAL,
        limits: &LIMITS,
        buffer: &mut buffer,
    };
    let avail_idx = layout.avail.0 + 2;
    for round in 0..control.notifications() {
        if round > 0 {
            // The driver makes more entries available (the rings are in guest memory: the
            // transport checked them).
            let idx: u16 = memory.read_obj(GuestAddress(avail_idx)).unwrap_or(0);
            let _ = memory.write_obj(
                idx.wrapping_add(u16::from(control.avail_step)),
                GuestAddress(avail_idx),
            );
        }
        if !serve_queue(&mut queue, 0, &memory, &interrupt, |chain| {
            execute(chain, &memory, &mut ctx)
        }) {
            // The worker stops serving until the driver resets the device.
            break;
        }
    }
    outcome.needs_reset = interrupt.needs_reset();
    outcome
}

/// Well-formed inputs for the seed corpus (`seeds/virtio_blk_queue/`), one request type each,
/// plus a batch over two notifications with EVENT_IDX and an indirect chain.
pub mod seeds {
    use super::{flag, packed_layout, Control, CONTROL_LEN};
    use emu::virtio::block::request::{kind, status};

    const DESC_F_NEXT: u16 = 1;
    const DESC_F_WRITE: u16 = 2;
    const DESC_F_INDIRECT: u16 = 4;

    /// One seed input and what running it must give.
    pub struct Seed {
        pub name: &'static str,
        pub bytes: Vec<u8>,
        /// The chains the device must return.
        pub chains: u16,
        /// (guest address of a status byte, the status the device must write there)
        pub statuses: Vec<(u64, u8)>,
    }

    /// What a request carries besides its header and status byte.
    enum Payload {
        None,
        ToDevice(Vec<u8>),
        FromDevice(u32),
    }

    struct Builder {
        control: Control,
        image: Vec<u8>,
        size: u16,
        avail: u64,
        next_desc: u16,
        chains: u16,
        next_free: u64,
        statuses: Vec<(u64, u8)>,
    }

    impl Builder {
        fn new(size_log2: u8, flags: u8) -> Self {
            let control = Control {
                size_log2,
                flags,
                ..Control::default()
            };
            let size = control.queue_size();
            let (_, avail, used) = packed_layout(size);
            Self {
                control,
                image: Vec::new(),
                size,
                avail,
                next_desc: 0,
                chains: 0,
                next_free: (used + 6 + 8 * u64::from(size)).next_multiple_of(16),
                statuses: Vec::new(),
            }
        }

        fn put(&mut self, address: u64, bytes: &[u8]) {
            let end = address as usize + bytes.len();
            if self.image.len() < end {
                self.image.resize(end, 0);
            }
            self.image[address as usize..end].copy_from_slice(bytes);
        }

        fn alloc(&mut self, bytes: &[u8], align: u64) -> u64 {
            let address = self.next_free.next_multiple_of(align);
            self.next_free = address + bytes.len() as u64;
            self.put(address, bytes);
            address
        }

        fn descriptor(&mut self, table: u64, slot: u16, buffer: (u64, u32, u16), next: u16) {
            let (address, len, flags) = buffer;
            let mut raw = [0u8; 16];
            raw[0..8].copy_from_slice(&address.to_le_bytes());
            raw[8..12].copy_from_slice(&len.to_le_bytes());
            raw[12..14].copy_from_slice(&flags.to_le_bytes());
            raw[14..16].copy_from_slice(&next.to_le_bytes());
            self.put(table + 16 * u64::from(slot), &raw);
        }

        /// Puts `head` in the available ring and publishes it.
        fn make_available(&mut self, head: u16) {
            let slot = self.chains % self.size;
            self.put(self.avail + 4 + 2 * u64::from(slot), &head.to_le_bytes());
            self.chains += 1;
            self.put(self.avail + 2, &self.chains.to_le_bytes());
        }

        /// Header, payload and status byte (0xff until the device writes it) in guest memory;
        /// returns the chain's buffers as (address, len, writable flag).
        fn request(
            &mut self,
            request: u32,
            sector: u64,
            payload: Payload,
            expect: u8,
        ) -> Vec<(u64, u32, u16)> {
            let mut header = [0u8; 16];
            header[0..4].copy_from_slice(&request.to_le_bytes());
            header[8..16].copy_from_slice(&sector.to_le_bytes());
            let mut buffers = vec![(self.alloc(&header, 16), 16, 0)];
            match payload {
                Payload::None => {}
                Payload::ToDevice(data) => {
                    buffers.push((self.alloc(&data, 16), data.len() as u32, 0));
                }
                Payload::FromDevice(len) => {
                    let at = self.alloc(&vec![0u8; len as usize], 16);
                    buffers.push((at, len, DESC_F_WRITE));
                }
            }
            let status_at = self.alloc(&[0xff], 1);
            buffers.push((status_at, 1, DESC_F_WRITE));
            self.statuses.push((status_at, expect));
            buffers
        }

        /// A request as consecutive descriptors of the queue's table.
        fn submit(&mut self, request: u32, sector: u64, payload: Payload, expect: u8) {
            let buffers = self.request(request, sector, payload, expect);
            let head = self.next_desc;
            for (i, &(address, len, flags)) in buffers.iter().enumerate() {
                let slot = (head + i as u16) % self.size;
                let last = i + 1 == buffers.len();
                let flags = if last { flags } else { flags | DESC_F_NEXT };
                self.descriptor(0, slot, (address, len, flags), (slot + 1) % self.size);
            }
            self.next_desc = (head + buffers.len() as u16) % self.size;
            self.make_available(head);
        }

        /// A request through an indirect table that one descriptor names.
        fn submit_indirect(&mut self, request: u32, sector: u64, payload: Payload, expect: u8) {
            let buffers = self.request(request, sector, payload, expect);
            let table = self.alloc(&vec![0u8; 16 * buffers.len()], 16);
            for (i, &(address, len, flags)) in buffers.iter().enumerate() {
                let last = i + 1 == buffers.len();
                let flags = if last { flags } else { flags | DESC_F_NEXT };
                self.descriptor(table, i as u16, (address, len, flags), i as u16 + 1);
            }
            let head = self.next_desc;
            let len = 16 * buffers.len() as u32;
            self.descriptor(0, head, (table, len, DESC_F_INDIRECT), 0);
            self.next_desc = (head + 1) % self.size;
            self.make_available(head);
        }

        fn finish(self, name: &'static str) -> Seed {
            let mut bytes = self.control.encode().to_vec();
            debug_assert_eq!(bytes.len(), CONTROL_LEN);
            bytes.extend_from_slice(&self.image);
            Seed {
                name,
                bytes,
                chains: self.chains,
                statuses: self.statuses,
            }
        }
    }

    fn single(name: &'static str, flags: u8, request: u32, sector: u64, payload: Payload) -> Seed {
        let expect = if flags & flag::READ_ONLY != 0 && request == kind::OUT {
            status::IOERR
        } else {
            status::OK
        };
        let mut b = Builder::new(3, flags);
        b.submit(request, sector, payload, expect);
        b.finish(name)
    }

    fn range(sector: u64, sectors: u32, flags: u32) -> Payload {
        let mut raw = vec![0u8; 16];
        raw[0..8].copy_from_slice(&sector.to_le_bytes());
        raw[8..12].copy_from_slice(&sectors.to_le_bytes());
        raw[12..16].copy_from_slice(&flags.to_le_bytes());
        Payload::ToDevice(raw)
    }

    pub fn all() -> Vec<Seed> {
        let pattern: Vec<u8> = (0..512u32).map(|i| (i * 7) as u8).collect();
        let mut seeds = vec![
            single("read", 0, kind::IN, 1, Payload::FromDevice(512)),
            single("write", 0, kind::OUT, 2, Payload::ToDevice(pattern.clone())),
            single("flush", 0, kind::FLUSH, 0, Payload::None),
            single("get_id", 0, kind::GET_ID, 0, Payload::FromDevice(20)),
            single("discard", 0, kind::DISCARD, 0, range(8, 8, 0)),
            single("write_zeroes", 0, kind::WRITE_ZEROES, 0, range(16, 8, 1)),
            single(
                "write_read_only",
                flag::READ_ONLY,
                kind::OUT,
                2,
                Payload::ToDevice(pattern.clone()),
            ),
            {
                let mut b = Builder::new(2, 0);
                b.submit_indirect(kind::IN, 3, Payload::FromDevice(1024), status::OK);
                b.finish("indirect_read")
            },
        ];
        // Three requests with EVENT_IDX: the first notification sees two of them, the driver
        // then publishes the third and notifies again.
        let mut b = Builder::new(4, flag::EVENT_IDX);
        b.control.extra_notifications = 1;
        b.control.avail_step = 1;
        b.submit(kind::OUT, 4, Payload::ToDevice(pattern), status::OK);
        b.submit(kind::IN, 4, Payload::FromDevice(512), status::OK);
        b.submit(kind::FLUSH, 0, Payload::None, status::OK);
        let avail = b.avail;
        b.put(avail + 2, &2u16.to_le_bytes());
        seeds.push(b.finish("batch_event_idx"));
        seeds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Address;

    #[test]
    fn seeds_run_to_their_expected_statuses() {
        for seed in seeds::all() {
            let outcome = run(&seed.bytes);
            assert!(outcome.accepted, "{}: queue refused", seed.name);
            assert!(!outcome.needs_reset, "{}: device needs reset", seed.name);
            let used: u16 = outcome
                .memory
                .read_obj(outcome.layout.used.unchecked_add(2))
                .unwrap();
            assert_eq!(used, seed.chains, "{}: used entries", seed.name);
            for &(address, expect) in &seed.statuses {
                let got: u8 = outcome.memory.read_obj(GuestAddress(address)).unwrap();
                assert_eq!(got, expect, "{}: status at {address:#x}", seed.name);
            }
        }
    }

    /// `COVE_UPDATE_SEEDS=1 cargo test` rewrites the seed files.
    #[test]
    fn seed_files_are_current() {
        let seeds = seeds::all();
        crate::check_seed_files(
            "virtio_blk_queue",
            seeds.iter().map(|seed| (seed.name, seed.bytes.as_slice())),
        );
    }

    #[test]
    fn short_and_hostile_inputs_end_cleanly() {
        for data in [
            &[][..],
            &[8, 0xff, 3, 0xff],
            &[8, flag::OWN_LAYOUT, 0, 0, 0xff, 0xff, 0xff, 0xff],
        ] {
            run(data);
        }
        let mut all_ones = vec![0xffu8; 4096];
        all_ones[1] = flag::EVENT_IDX;
        run(&all_ones);
    }
}
