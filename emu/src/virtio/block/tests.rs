//! virtio-blk through the device harness: the test is the guest driver.

use super::feature;
use super::request::{kind, status as blk_status};
use crate::block::raw::allocated_bytes;
use crate::harness::pci::{enumerate, PciFunction};
use crate::harness::virtio::{
    msi_data, Buffer, RawDescriptor, VirtioDriver, DESC_F_NEXT, DESC_F_WRITE,
};
use crate::harness::Harness;
use crate::pci::PciAddress;
use crate::virtio::{features, status};
use std::path::{Path, PathBuf};
use std::time::Duration;
use vm_memory::GuestAddress;

const WAIT: Duration = Duration::from_secs(5);
const MIB: u64 = 1 << 20;

struct TempImage(PathBuf);

impl TempImage {
    fn new(tag: &str, size: u64) -> Self {
        let path = std::env::temp_dir().join(format!(
            "cove-blk-{tag}-{}-{:?}.img",
            std::process::id(),
            std::thread::current().id()
        ));
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(size).unwrap();
        Self(path)
    }
}

impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn harness_with_disk(path: &Path, read_only: bool, queues: u16) -> (Harness, PciAddress) {
    let harness = Harness::new(64 * MIB);
    let address = harness
        .pci
        .add_raw_disk(path, read_only, Some("cove-serial-0001".into()), queues)
        .unwrap();
    (harness, address)
}

/// A request in guest memory: header, data buffer, status byte.
struct Request {
    header: GuestAddress,
    data: GuestAddress,
    status: GuestAddress,
}

fn request(h: &Harness, kind: u32, sector: u64, data_len: u64) -> Request {
    let header = h.alloc(16, 16);
    let mut raw = [0u8; 16];
    raw[0..4].copy_from_slice(&kind.to_le_bytes());
    raw[8..16].copy_from_slice(&sector.to_le_bytes());
    h.write_mem(header, &raw);
    let data = h.alloc(data_len.max(1), 512);
    let status = h.alloc(1, 1);
    h.write_mem(status, &[0xee]);
    Request {
        header,
        data,
        status,
    }
}

fn status_of(h: &Harness, r: &Request) -> u8 {
    h.read_mem(r.status, 1)[0]
}

fn run(d: &mut VirtioDriver, buffers: &[Buffer]) -> u32 {
    let head = d.submit(0, buffers);
    let used = d
        .wait_used(0, WAIT)
        .expect("the device returned the request");
    assert_eq!(used.id, u32::from(head));
    used.len
}

fn read(d: &mut VirtioDriver, sector: u64, len: u32) -> (u8, Vec<u8>) {
    let h = d.harness;
    let r = request(h, kind::IN, sector, u64::from(len));
    run(
        d,
        &[
            Buffer::readable(r.header, 16),
            Buffer::writable(r.data, len),
            Buffer::writable(r.status, 1),
        ],
    );
    (status_of(h, &r), h.read_mem(r.data, len as usize))
}

fn write(d: &mut VirtioDriver, sector: u64, data: &[u8]) -> u8 {
    let h = d.harness;
    let r = request(h, kind::OUT, sector, data.len() as u64);
    h.write_mem(r.data, data);
    run(
        d,
        &[
            Buffer::readable(r.header, 16),
            Buffer::readable(r.data, data.len() as u32),
            Buffer::writable(r.status, 1),
        ],
    );
    status_of(h, &r)
}

fn simple(d: &mut VirtioDriver, kind: u32) -> u8 {
    let h = d.harness;
    let r = request(h, kind, 0, 0);
    run(
        d,
        &[
            Buffer::readable(r.header, 16),
            Buffer::writable(r.status, 1),
        ],
    );
    status_of(h, &r)
}

fn ranges(d: &mut VirtioDriver, kind: u32, sector: u64, sectors: u32, flags: u32) -> u8 {
    let h = d.harness;
    let r = request(h, kind, 0, 16);
    let mut range = [0u8; 16];
    range[0..8].copy_from_slice(&sector.to_le_bytes());
    range[8..12].copy_from_slice(&sectors.to_le_bytes());
    range[12..16].copy_from_slice(&flags.to_le_bytes());
    h.write_mem(r.data, &range);
    run(
        d,
        &[
            Buffer::readable(r.header, 16),
            Buffer::readable(r.data, 16),
            Buffer::writable(r.status, 1),
        ],
    );
    status_of(h, &r)
}

fn driver(h: &Harness, address: PciAddress) -> VirtioDriver<'_> {
    let mut d = VirtioDriver::probe(h, address);
    d.init(features::RING_EVENT_IDX | features::RING_INDIRECT_DESC | all_blk_features());
    d
}

fn all_blk_features() -> u64 {
    feature::SEG_MAX
        | feature::RO
        | feature::BLK_SIZE
        | feature::FLUSH
        | feature::MQ
        | feature::DISCARD
        | feature::WRITE_ZEROES
}

#[test]
fn enumerates_as_a_modern_virtio_block_device() {
    let image = TempImage::new("enum", 8 * MIB);
    let (h, address) = harness_with_disk(&image.0, false, 1);
    let found = enumerate(&h);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].class_code, 0x06_00_00, "host bridge at 00:00.0");
    let blk = found.iter().find(|f| f.address == address).unwrap();
    assert_eq!((blk.vendor_id, blk.device_id), (0x1af4, 0x1042));
    let f = PciFunction::new(&h, address);
    assert_eq!(f.read8(0x08), 1, "modern devices have revision 1");
    // The same function through ECAM.
    assert_eq!(f.ecam_read32(0), f.read32(0));
    let (bar, size) = f.memory_bar(0).unwrap();
    assert_eq!(size, 0x8000);
    assert!((0xc000_0000..0xe000_0000).contains(&bar));
    // INTA is wired, and the interrupt line register says where.
    assert_eq!(f.read8(0x3d), 1);
    assert!(f.read8(0x3c) >= 16);

    let d = driver(&h, address);
    assert_eq!(d.config_read64(0), 8 * MIB / 512, "capacity in sectors");
    assert_eq!(d.config_read32(20), 512, "blk_size");
    assert_eq!(d.num_queues(), 1);
    assert_eq!(d.status() & status::DRIVER_OK, status::DRIVER_OK);
}

#[test]
fn every_request_type() {
    let image = TempImage::new("types", 8 * MIB);
    let (h, address) = harness_with_disk(&image.0, false, 1);
    let mut d = driver(&h, address);
    assert_eq!(
        d.features & (feature::FLUSH | feature::DISCARD | feature::WRITE_ZEROES),
        feature::FLUSH | feature::DISCARD | feature::WRITE_ZEROES
    );

    // OUT then IN.
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    assert_eq!(write(&mut d, 8, &pattern), blk_status::OK);
    let on_disk = std::fs::read(&image.0).unwrap();
    assert_eq!(&on_disk[8 * 512..8 * 512 + 4096], &pattern[..]);
    let (st, back) = read(&mut d, 8, 4096);
    assert_eq!(st, blk_status::OK);
    assert_eq!(back, pattern);
    assert!(
        h.msi.wait_count(msi_data(0), 1, WAIT),
        "MSI-X vector 0 fired"
    );

    // FLUSH.
    assert_eq!(simple(&mut d, kind::FLUSH), blk_status::OK);

    // GET_ID.
    let r = request(&h, kind::GET_ID, 0, 20);
    let len = run(
        &mut d,
        &[
            Buffer::readable(r.header, 16),
            Buffer::writable(r.data, 20),
            Buffer::writable(r.status, 1),
        ],
    );
    assert_eq!(status_of(&h, &r), blk_status::OK);
    assert_eq!(len, 21);
    assert_eq!(&h.read_mem(r.data, 20)[..16], b"cove-serial-0001");

    // DISCARD punches a hole the host can see.
    let big = vec![0x5au8; MIB as usize];
    assert_eq!(write(&mut d, 2048, &big), blk_status::OK);
    let before = allocated_bytes(&image.0).unwrap();
    assert_eq!(ranges(&mut d, kind::DISCARD, 2048, 2048, 0), blk_status::OK);
    let after = allocated_bytes(&image.0).unwrap();
    assert!(
        after + MIB / 2 <= before,
        "discard freed blocks: {before} -> {after}"
    );
    assert_eq!(read(&mut d, 2048, 4096).1, vec![0; 4096]);

    // WRITE_ZEROES, with and without unmap.
    assert_eq!(write(&mut d, 4096, &big), blk_status::OK);
    assert_eq!(
        ranges(&mut d, kind::WRITE_ZEROES, 4096, 1024, 0),
        blk_status::OK
    );
    assert_eq!(read(&mut d, 4096, 4096).1, vec![0; 4096]);
    let before = allocated_bytes(&image.0).unwrap();
    assert_eq!(
        ranges(&mut d, kind::WRITE_ZEROES, 5120, 1024, 1),
        blk_status::OK
    );
    assert!(
        allocated_bytes(&image.0).unwrap() < before,
        "unmap freed blocks"
    );
    assert_eq!(read(&mut d, 5120, 512).1, vec![0; 512]);
    // The unzeroed part is intact.
    let on_disk = std::fs::read(&image.0).unwrap();
    assert!(on_disk[4096 * 512..5120 * 512].iter().all(|&b| b == 0));
}

#[test]
fn indirect_descriptors_and_split_buffers() {
    let image = TempImage::new("indirect", 4 * MIB);
    let (h, address) = harness_with_disk(&image.0, false, 1);
    let mut d = driver(&h, address);
    assert_ne!(d.features & features::RING_INDIRECT_DESC, 0);
    let pattern: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();
    let r = request(&h, kind::OUT, 3, 1024);
    h.write_mem(r.data, &pattern);
    // Data split over two descriptors, all in an indirect table.
    let head = d.submit_indirect(
        0,
        &[
            Buffer::readable(r.header, 16),
            Buffer::readable(r.data, 100),
            Buffer::readable(GuestAddress(r.data.0 + 100), 924),
            Buffer::writable(r.status, 1),
        ],
    );
    assert_eq!(d.wait_used(0, WAIT).unwrap().id, u32::from(head));
    assert_eq!(status_of(&h, &r), blk_status::OK);
    assert_eq!(read(&mut d, 3, 1024).1, pattern);
}

#[test]
fn intx_when_msix_is_off() {
    let image = TempImage::new("intx", MIB);
    let (h, address) = harness_with_disk(&image.0, false, 1);
    let mut d = VirtioDriver::probe(&h, address);
    d.negotiate(features::VERSION_1).unwrap();
    d.setup_queue(0, 16, 0);
    d.driver_ok();
    let gsi = u32::from(PciFunction::new(&h, address).read8(0x3c));
    assert!(!h.intx.level(gsi));
    assert_eq!(simple(&mut d, kind::FLUSH), blk_status::OK);
    // The worker raises INTx after returning the chain; give it a moment.
    let deadline = std::time::Instant::now() + WAIT;
    while !h.intx.level(gsi) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(h.intx.level(gsi), "INTx raised");
    assert_eq!(d.read_isr() & 1, 1, "ISR says: queue interrupt");
    assert!(!h.intx.level(gsi), "reading the ISR lowers INTx");
    assert_eq!(d.read_isr(), 0);
    assert!(h.msi.sent().is_empty());
}

#[test]
fn read_only_disk() {
    let image = TempImage::new("ro", MIB);
    std::fs::write(&image.0, vec![0x77u8; MIB as usize]).unwrap();
    let (h, address) = harness_with_disk(&image.0, true, 1);
    let mut d = driver(&h, address);
    assert_ne!(d.features & feature::RO, 0, "RO offered");
    assert_eq!(d.features & (feature::DISCARD | feature::WRITE_ZEROES), 0);
    assert_eq!(write(&mut d, 0, &[0u8; 512]), blk_status::IOERR);
    assert_eq!(ranges(&mut d, kind::DISCARD, 0, 8, 0), blk_status::IOERR);
    assert_eq!(
        ranges(&mut d, kind::WRITE_ZEROES, 0, 8, 0),
        blk_status::IOERR
    );
    assert_eq!(simple(&mut d, kind::FLUSH), blk_status::OK);
    let (st, data) = read(&mut d, 0, 512);
    assert_eq!((st, data), (blk_status::OK, vec![0x77; 512]));
    assert!(std::fs::read(&image.0).unwrap().iter().all(|&b| b == 0x77));
}

#[test]
fn bad_requests_get_ioerr_or_unsupp() {
    let image = TempImage::new("bad", MIB);
    let (h, address) = harness_with_disk(&image.0, false, 1);
    let mut d = driver(&h, address);
    let sectors = MIB / 512;

    // Unknown request type.
    assert_eq!(simple(&mut d, 99), blk_status::UNSUPP);
    // Past the end, straddling the end, and overflowing.
    assert_eq!(read(&mut d, sectors, 512).0, blk_status::IOERR);
    assert_eq!(read(&mut d, sectors - 1, 1024).0, blk_status::IOERR);
    assert_eq!(read(&mut d, u64::MAX, 512).0, blk_status::IOERR);
    assert_eq!(write(&mut d, sectors, &[1; 512]), blk_status::IOERR);
    assert_eq!(
        ranges(&mut d, kind::DISCARD, sectors - 1, 2, 0),
        blk_status::IOERR
    );
    // Not a whole sector.
    assert_eq!(read(&mut d, 0, 100).0, blk_status::IOERR);
    // Range flags: unmap is not allowed on discard, unknown flags anywhere.
    assert_eq!(ranges(&mut d, kind::DISCARD, 0, 1, 1), blk_status::UNSUPP);
    assert_eq!(
        ranges(&mut d, kind::WRITE_ZEROES, 0, 1, 0x80),
        blk_status::UNSUPP
    );

    // Data buffer outside guest memory (64 MiB): IOERR, nothing written anywhere.
    let r = request(&h, kind::IN, 0, 0);
    run(
        &mut d,
        &[
            Buffer::readable(r.header, 16),
            Buffer::writable(GuestAddress(0x1_0000_0000), 512),
            Buffer::writable(r.status, 1),
        ],
    );
    assert_eq!(status_of(&h, &r), blk_status::IOERR);
    let r = request(&h, kind::IN, 0, 0);
    run(
        &mut d,
        &[
            Buffer::readable(r.header, 16),
            Buffer::writable(GuestAddress(u64::MAX - 256), 512),
            Buffer::writable(r.status, 1),
        ],
    );
    assert_eq!(status_of(&h, &r), blk_status::IOERR);
    // Header outside guest memory.
    let status = h.alloc(1, 1);
    run(
        &mut d,
        &[
            Buffer::readable(GuestAddress(0x2_0000_0000), 16),
            Buffer::writable(status, 1),
        ],
    );
    assert_eq!(h.read_mem(status, 1)[0], blk_status::IOERR);

    // Wrong direction: a writable header, a readable buffer for a read, and a write whose
    // data the device is told to fill instead.
    for (kind, header_writable, data_writable) in [
        (kind::IN, true, true),
        (kind::IN, false, false),
        (kind::OUT, false, true),
    ] {
        let r = request(&h, kind, 0, 512);
        let buffer = |address, len, writable| Buffer {
            address,
            len,
            writable,
        };
        run(
            &mut d,
            &[
                buffer(r.header, 16, header_writable),
                buffer(r.data, 512, data_writable),
                Buffer::writable(r.status, 1),
            ],
        );
        assert_eq!(status_of(&h, &r), blk_status::IOERR, "request {kind}");
    }
    // A short header.
    let r = request(&h, kind::IN, 0, 0);
    run(
        &mut d,
        &[Buffer::readable(r.header, 8), Buffer::writable(r.status, 1)],
    );
    assert_eq!(status_of(&h, &r), blk_status::IOERR);

    // Through all of it the device kept working.
    assert_eq!(d.status() & status::DEVICE_NEEDS_RESET, 0);
    assert_eq!(write(&mut d, 0, &[9; 512]), blk_status::OK);
}

fn assert_needs_reset_then_recovers(h: &Harness, address: PciAddress, d: VirtioDriver) {
    assert!(
        d.wait_status(status::DEVICE_NEEDS_RESET, WAIT),
        "device set DEVICE_NEEDS_RESET (status {:#x})",
        d.status()
    );
    // The config vector fired to tell the driver.
    let config_vector = d.num_queues();
    assert!(h.msi.wait_count(msi_data(config_vector), 1, WAIT));
    // A reset brings it back.
    drop(d);
    let mut d = driver(h, address);
    assert_eq!(d.status() & status::DEVICE_NEEDS_RESET, 0);
    assert_eq!(write(&mut d, 0, &[3; 512]), blk_status::OK);
}

#[test]
fn looping_chain_needs_reset() {
    let image = TempImage::new("loop", MIB);
    let (h, address) = harness_with_disk(&image.0, false, 1);
    let mut d = driver(&h, address);
    let q = d.queues[0];
    let r = request(&h, kind::IN, 0, 512);
    d.write_descriptor(
        &q,
        0,
        RawDescriptor {
            address: r.header.0,
            len: 16,
            flags: DESC_F_NEXT,
            next: 1,
        },
    );
    d.write_descriptor(
        &q,
        1,
        RawDescriptor {
            address: r.data.0,
            len: 512,
            flags: DESC_F_NEXT | DESC_F_WRITE,
            next: 0,
        },
    );
    d.make_available(0, 0);
    assert_needs_reset_then_recovers(&h, address, d);
}

#[test]
fn status_in_a_readable_buffer_needs_reset() {
    let image = TempImage::new("rostatus", MIB);
    let (h, address) = harness_with_disk(&image.0, false, 1);
    let mut d = driver(&h, address);
    let r = request(&h, kind::FLUSH, 0, 0);
    d.submit(
        0,
        &[
            Buffer::readable(r.header, 16),
            Buffer::readable(r.status, 1),
        ],
    );
    assert_needs_reset_then_recovers(&h, address, d);
    // The readable "status" byte was never written.
    assert_eq!(h.read_mem(r.status, 1)[0], 0xee);
}

#[test]
fn descriptor_index_outside_the_queue_needs_reset() {
    let image = TempImage::new("badidx", MIB);
    let (h, address) = harness_with_disk(&image.0, false, 1);
    let mut d = driver(&h, address);
    let q = d.queues[0];
    let r = request(&h, kind::IN, 0, 512);
    d.write_descriptor(
        &q,
        0,
        RawDescriptor {
            address: r.header.0,
            len: 16,
            flags: DESC_F_NEXT,
            next: q.size + 5,
        },
    );
    d.make_available(0, 0);
    assert_needs_reset_then_recovers(&h, address, d);
}

#[test]
fn more_available_entries_than_the_queue_holds_needs_reset() {
    let image = TempImage::new("toolong", MIB);
    let (h, address) = harness_with_disk(&image.0, false, 1);
    let d = driver(&h, address);
    let size = d.queues[0].size;
    d.set_avail_idx(0, size + 3);
    d.notify(0);
    assert_needs_reset_then_recovers(&h, address, d);
}

#[test]
fn chain_longer_than_the_queue_needs_reset() {
    let image = TempImage::new("chainlen", MIB);
    let (h, address) = harness_with_disk(&image.0, false, 1);
    let mut d = VirtioDriver::probe(&h, address);
    d.negotiate(features::VERSION_1).unwrap();
    d.enable_msix();
    d.set_config_vector(1);
    let q = d.setup_queue(0, 4, 0);
    d.driver_ok();
    // An indirect table of 8 descriptors chained in a ring, in a 4-entry queue.
    let table = h.alloc(16 * 8, 16);
    for i in 0..8u16 {
        let mut raw = [0u8; 16];
        raw[0..8].copy_from_slice(&(table.0).to_le_bytes());
        raw[8..12].copy_from_slice(&16u32.to_le_bytes());
        raw[12..14].copy_from_slice(&DESC_F_NEXT.to_le_bytes());
        raw[14..16].copy_from_slice(&((i + 1) % 8).to_le_bytes());
        h.write_mem(GuestAddress(table.0 + 16 * u64::from(i)), &raw);
    }
    d.write_descriptor(
        &q,
        0,
        RawDescriptor {
            address: table.0,
            len: 128,
            flags: 4,
            next: 0,
        },
    );
    d.make_available(0, 0);
    assert!(d.wait_status(status::DEVICE_NEEDS_RESET, WAIT));
}

#[test]
fn rings_outside_guest_memory_need_reset() {
    let image = TempImage::new("rings", MIB);
    let (h, address) = harness_with_disk(&image.0, false, 1);
    let mut d = VirtioDriver::probe(&h, address);
    d.negotiate(features::VERSION_1).unwrap();
    d.enable_msix();
    d.set_config_vector(1);
    d.program_queue(
        0,
        16,
        GuestAddress(0x7fff_0000_0000),
        GuestAddress(0x1000),
        GuestAddress(0x2000),
        0,
    );
    d.driver_ok();
    assert!(d.wait_status(status::DEVICE_NEEDS_RESET, WAIT));
}

#[test]
fn features_without_version_1_or_unknown_bits_are_refused() {
    let image = TempImage::new("feat", MIB);
    let (h, address) = harness_with_disk(&image.0, false, 1);
    let mut d = VirtioDriver::probe(&h, address);
    assert!(
        d.negotiate(feature::FLUSH).is_err(),
        "legacy driver refused"
    );
    d.reset();
    d.set_status(status::ACKNOWLEDGE | status::DRIVER);
    d.write_driver_features(features::VERSION_1 | (1 << 50));
    d.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
    assert_eq!(d.status() & status::FEATURES_OK, 0);
}

#[test]
fn multiqueue() {
    let image = TempImage::new("mq", MIB);
    let (h, address) = harness_with_disk(&image.0, false, 4);
    let mut d = driver(&h, address);
    assert_ne!(d.features & feature::MQ, 0);
    assert_eq!(d.num_queues(), 4);
    assert_eq!(d.config_read16(34), 4);
    for queue in 0..4u16 {
        let r = request(&h, kind::OUT, u64::from(queue), 512);
        h.write_mem(r.data, &[queue as u8 + 1; 512]);
        let head = d.submit(
            queue,
            &[
                Buffer::readable(r.header, 16),
                Buffer::readable(r.data, 512),
                Buffer::writable(r.status, 1),
            ],
        );
        assert_eq!(d.wait_used(queue, WAIT).unwrap().id, u32::from(head));
        assert_eq!(status_of(&h, &r), blk_status::OK);
        assert!(h.msi.wait_count(msi_data(queue), 1, WAIT));
    }
    let on_disk = std::fs::read(&image.0).unwrap();
    for queue in 0..4usize {
        assert!(on_disk[queue * 512..(queue + 1) * 512]
            .iter()
            .all(|&b| b == queue as u8 + 1));
    }
}

#[test]
fn event_idx_suppresses_interrupts_until_asked() {
    let image = TempImage::new("eventidx", MIB);
    let (h, address) = harness_with_disk(&image.0, false, 1);
    let mut d = driver(&h, address);
    assert_ne!(d.features & features::RING_EVENT_IDX, 0);
    // Ask for an interrupt only after the 3rd used entry (used_event = 2).
    d.set_used_event(0, 2);
    for _ in 0..2 {
        assert_eq!(simple(&mut d, kind::FLUSH), blk_status::OK);
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        h.msi.count(msi_data(0)),
        0,
        "no interrupt before used_event"
    );
    assert_eq!(simple(&mut d, kind::FLUSH), blk_status::OK);
    assert!(h.msi.wait_count(msi_data(0), 1, WAIT));
}

/// A batch added with one doorbell, collected by the interrupt-driven wait (EVENT_IDX asks
/// for each next entry) and by the polling wait.
#[test]
fn batches_with_interrupt_and_polling_waits() {
    let image = TempImage::new("waits", MIB);
    let (h, address) = harness_with_disk(&image.0, false, 1);
    let mut d = driver(&h, address);
    assert_ne!(d.features & features::RING_EVENT_IDX, 0);
    for sector in 0..8u64 {
        assert_eq!(write(&mut d, sector, &[sector as u8; 512]), blk_status::OK);
    }
    for polling in [false, true] {
        let requests: Vec<(u16, Request)> = (0..8u64)
            .map(|sector| {
                let r = request(&h, kind::IN, sector, 512);
                let head = d.add_chain(
                    0,
                    &[
                        Buffer::readable(r.header, 16),
                        Buffer::writable(r.data, 512),
                        Buffer::writable(r.status, 1),
                    ],
                );
                (head, r)
            })
            .collect();
        d.notify(0);
        let mut heads = Vec::new();
        for _ in 0..requests.len() {
            let used = if polling {
                d.wait_used_spin(0, WAIT)
            } else {
                d.wait_used_interrupt(0, WAIT)
            }
            .expect("the device returned the request");
            assert_eq!(used.len, 513);
            heads.push(used.id as u16);
        }
        assert_eq!(d.take_used(0), None, "nothing more was returned");
        for (sector, (head, r)) in requests.iter().enumerate() {
            assert!(heads.contains(head));
            assert_eq!(status_of(&h, r), blk_status::OK);
            assert_eq!(h.read_mem(r.data, 512), vec![sector as u8; 512]);
        }
    }
    assert!(
        h.msi.count(msi_data(0)) >= 1,
        "the interrupt wait was woken by MSI"
    );
}

#[test]
fn reset_and_bar_relocation() {
    let image = TempImage::new("reloc", MIB);
    let (h, address) = harness_with_disk(&image.0, false, 1);
    let mut d = driver(&h, address);
    assert_eq!(write(&mut d, 1, &[0xab; 512]), blk_status::OK);
    // The guest moves the BAR, as an OS reassigning resources would.
    let f = PciFunction::new(&h, address);
    let (old, _) = f.memory_bar(0).unwrap();
    let new = 0xd000_0000u64;
    f.write16(0x04, 0);
    f.write32(0x10, new as u32 | 4);
    f.write32(0x14, 0);
    f.enable();
    assert_eq!(f.memory_bar(0).unwrap().0, new);
    assert_eq!(h.readl(old), u32::MAX, "nothing decodes at the old address");
    let mut d = driver(&h, address);
    assert_eq!(d.common & !0x7fff, new);
    let (st, data) = read(&mut d, 1, 512);
    assert_eq!((st, data), (blk_status::OK, vec![0xab; 512]));
}

#[test]
fn host_write_error_is_ioerr() {
    // A small tmpfs fills up; needs root to mount it (CI runs as root).
    let dir = std::env::temp_dir().join(format!("cove-full-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        let _ = std::fs::remove_dir(&dir);
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot mount a tmpfs to fill up; CI must run as root"
        );
        eprintln!("SKIPPED host_write_error_is_ioerr: mounting a tmpfs needs root");
        return;
    }
    let path = dir.join("disk.img");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(4 * MIB)
        .unwrap();
    {
        let (h, address) = harness_with_disk(&path, false, 1);
        let mut d = driver(&h, address);
        let chunk = vec![0x11u8; 128 * 1024];
        let statuses: Vec<u8> = (0..4).map(|i| write(&mut d, i * 256, &chunk)).collect();
        assert_eq!(statuses[0], blk_status::OK);
        assert!(statuses.contains(&blk_status::IOERR), "{statuses:?}");
        // The device is still fine: reads work.
        assert_eq!(read(&mut d, 0, 512).0, blk_status::OK);
        assert_eq!(d.status() & status::DEVICE_NEEDS_RESET, 0);
    }
    let _ = std::process::Command::new("umount").arg(&dir).status();
    let _ = std::fs::remove_dir(&dir);
}

/// A disk that holds nothing; the test counts who holds it.
struct NullDisk;

impl crate::block::DiskBackend for NullDisk {
    fn size(&self) -> u64 {
        MIB
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read_at(&self, buf: &mut [u8], _offset: u64) -> std::io::Result<()> {
        buf.fill(0);
        Ok(())
    }
    fn write_at(&self, _buf: &[u8], _offset: u64) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn discard(&self, _offset: u64, _len: u64) -> std::io::Result<()> {
        Ok(())
    }
    fn write_zeroes(&self, _offset: u64, _len: u64, _may_unmap: bool) -> std::io::Result<()> {
        Ok(())
    }
}

/// A reset stops the worker and drops everything the activation gave it: the queues and its
/// share of the disk. A second activation starts afresh.
#[test]
fn reset_leaves_no_worker_and_no_queues_behind() {
    let disk: std::sync::Arc<dyn crate::block::DiskBackend> = std::sync::Arc::new(NullDisk);
    let h = Harness::new(64 * MIB);
    let device = super::Block::new(
        disk.clone(),
        super::BlockOptions {
            queues: 2,
            serial: None,
        },
    );
    let address = h.add_virtio(Box::new(device)).unwrap();
    assert_eq!(std::sync::Arc::strong_count(&disk), 2, "test and device");
    let mut d = driver(&h, address);
    assert_eq!(write(&mut d, 1, &[0x5a; 512]), blk_status::OK);
    assert_eq!(std::sync::Arc::strong_count(&disk), 3, "and the worker");
    d.reset();
    assert_eq!(std::sync::Arc::strong_count(&disk), 2, "the worker is gone");
    let mut d = driver(&h, address);
    assert_eq!(read(&mut d, 1, 512).0, blk_status::OK);
    d.reset();
    assert_eq!(std::sync::Arc::strong_count(&disk), 2);
}
