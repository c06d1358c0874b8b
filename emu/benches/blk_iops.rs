//! 4 KiB random reads per second: a virtio-blk device on a raw image, driven through the
//! CPU-less device harness as a guest driver would drive it (MSI-X, EVENT_IDX), at queue depth
//! 1 and 32, against plain `pread` of the same offsets from the same file in the same process.
//! The ratio says what the device path (rings, chain walk, request parsing, the worker thread's
//! wake-up and the interrupt) costs on top of the host read itself.
//!
//! ```sh
//! cargo bench -p emu --features harness --bench blk_iops     # or bash bench/blk_iops.sh
//! BENCH_SECONDS=10 cargo bench -p emu --features harness --bench blk_iops
//! ```
//!
//! The image (256 MiB) is made on tmpfs (/dev/shm) so the host read is a page-cache copy, not
//! a disk; where there is no /dev/shm it goes to the temporary directory, and the bench says so.
//! Every read is checked: each 4 KiB block of the image starts with its own block number.

use emu::harness::virtio::{Buffer, VirtioDriver};
use emu::harness::Harness;
use emu::virtio::block::request::{kind, status};
use emu::virtio::features;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vm_memory::GuestAddress;

const IMAGE_SIZE: u64 = 256 << 20;
const BLOCK: u64 = 4096;
const BLOCKS: u64 = IMAGE_SIZE / BLOCK;
const SECTORS_PER_BLOCK: u64 = BLOCK / 512;
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;
const TIMEOUT: Duration = Duration::from_secs(5);

/// xorshift64: the same offsets for every measurement, no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn block(&mut self) -> u64 {
        self.next() % BLOCKS
    }
}

/// The image file, removed when the bench ends.
struct Image(PathBuf);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn create_image() -> std::io::Result<Image> {
    let name = format!("cove-blk-iops-{}.img", std::process::id());
    let shm = Path::new("/dev/shm");
    let (image, mut file) = match File::create(shm.join(&name)) {
        Ok(file) => (Image(shm.join(&name)), file),
        Err(e) => {
            let path = std::env::temp_dir().join(&name);
            println!(
                "note: cannot use /dev/shm ({e}); the image is in {}, so reads may reach a disk",
                path.display()
            );
            (Image(path.clone()), File::create(&path)?)
        }
    };
    let mut fill = XorShift(SEED ^ 0x5555);
    let mut chunk = vec![0u8; 1 << 20];
    for first in (0..BLOCKS).step_by(chunk.len() / BLOCK as usize) {
        for (i, block) in chunk.chunks_exact_mut(BLOCK as usize).enumerate() {
            block[..8].copy_from_slice(&(first + i as u64).to_le_bytes());
            for word in block[8..].chunks_exact_mut(8) {
                word.copy_from_slice(&fill.next().to_le_bytes());
            }
        }
        file.write_all(&chunk)?;
    }
    Ok(image)
}

fn seconds() -> f64 {
    std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| *s > 0.0)
        .unwrap_or(3.0)
}

#[derive(Clone, Copy)]
enum Wait {
    /// Sleep on the queue's MSI vector, asking for it with used_event: a guest's interrupt path.
    Interrupt,
    /// Poll the used ring without sleeping: a polling driver.
    Spin,
}

/// Requests per second through the device harness.
fn harness_iops(path: &Path, depth: usize, wait: Wait, duration: Duration) -> f64 {
    let h = Harness::new(64 << 20);
    let address = h
        .pci
        .add_raw_disk(path, true, None, 1)
        .expect("virtio-blk on the image");
    let mut d = VirtioDriver::probe(&h, address);
    let accepted = d.init(features::RING_EVENT_IDX);
    assert_ne!(accepted & features::RING_EVENT_IDX, 0, "EVENT_IDX refused");
    assert!(d.msix_cap.is_some(), "no MSI-X");

    struct Slot {
        header: GuestAddress,
        data: GuestAddress,
        status: GuestAddress,
        block: u64,
    }
    let mut slots: Vec<Slot> = (0..depth)
        .map(|_| Slot {
            header: h.alloc(16, 16),
            data: h.alloc(BLOCK, BLOCK),
            status: h.alloc(1, 1),
            block: 0,
        })
        .collect();
    let mut slot_of_head = [usize::MAX; 256];
    let mut rng = XorShift(SEED);
    let mut done = 0u64;
    let start = Instant::now();
    while start.elapsed() < duration {
        for (i, slot) in slots.iter_mut().enumerate() {
            slot.block = rng.block();
            let mut header = [0u8; 16];
            header[0..4].copy_from_slice(&kind::IN.to_le_bytes());
            header[8..16].copy_from_slice(&(slot.block * SECTORS_PER_BLOCK).to_le_bytes());
            h.write_mem(slot.header, &header);
            h.write_mem(slot.status, &[0xff]);
            let head = d.add_chain(
                0,
                &[
                    Buffer::readable(slot.header, 16),
                    Buffer::writable(slot.data, BLOCK as u32),
                    Buffer::writable(slot.status, 1),
                ],
            );
            slot_of_head[usize::from(head)] = i;
        }
        // One doorbell for the batch, as a driver adding several requests rings once.
        d.notify(0);
        for _ in 0..depth {
            let used = match wait {
                Wait::Interrupt => d.wait_used_interrupt(0, TIMEOUT),
                Wait::Spin => d.wait_used_spin(0, TIMEOUT),
            }
            .expect("the device returned the request");
            let slot = &slots[slot_of_head[used.id as usize]];
            assert_eq!(used.len, BLOCK as u32 + 1, "bytes written");
            let got = h.read_mem(slot.status, 1)[0];
            assert_eq!(got, status::OK, "status of block {}", slot.block);
            let first = h.read_mem(slot.data, 8);
            assert_eq!(
                first,
                slot.block.to_le_bytes(),
                "data of block {}",
                slot.block
            );
        }
        done += depth as u64;
    }
    done as f64 / start.elapsed().as_secs_f64()
}

/// Requests per second of plain `pread`, same offsets, same file.
fn pread_iops(path: &Path, duration: Duration) -> f64 {
    let file = File::open(path).expect("open the image");
    let mut buf = vec![0u8; BLOCK as usize];
    let mut rng = XorShift(SEED);
    let mut done = 0u64;
    let start = Instant::now();
    while start.elapsed() < duration {
        let block = rng.block();
        file.read_exact_at(&mut buf, block * BLOCK).expect("pread");
        assert_eq!(buf[..8], block.to_le_bytes(), "data of block {block}");
        done += 1;
    }
    done as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes --bench; a filter argument has nothing to select here.
    let duration = Duration::from_secs_f64(seconds());
    let image = create_image().expect("create the image");
    println!(
        "blk_iops: 4 KiB random reads, {} MiB image at {}, {:.1} s per measurement",
        IMAGE_SIZE >> 20,
        image.0.display(),
        duration.as_secs_f64()
    );

    let pread = pread_iops(&image.0, duration);
    println!(
        "  {:<34} {:>10.0} req/s  {:>7.2} us/req",
        "pread (std read_exact_at)",
        pread,
        1e6 / pread
    );
    for (wait, name) in [(Wait::Interrupt, "interrupt"), (Wait::Spin, "polling")] {
        for depth in [1, 32] {
            let iops = harness_iops(&image.0, depth, wait, duration);
            println!(
                "  {:<34} {:>10.0} req/s  {:>7.2} us/req  harness/pread {:.3}",
                format!("harness, QD {depth}, {name} wait"),
                iops,
                1e6 / iops,
                iops / pread
            );
        }
    }
}
