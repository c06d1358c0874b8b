//! Split virtqueues for the device targets that serve several queues (`virtio_gpu_queues`,
//! `virtio_input_queues`): rings packed at a fixed guest address, turned into the
//! [`ReadyQueue`] a device's `activate` takes, and the guest-side writer the seed generators
//! use to put descriptors, chains and buffers in a guest memory image.

use emu::virtio::queue_service::{ready_queue, QueueLayout};
use emu::virtio::{features, Activation, ReadyQueue, Service, VirtioDevice, VirtioInterrupt};
use std::sync::Arc;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

/// The rings of a `size`-entry queue back to back from `base`: descriptor table, available
/// ring, then the used ring at the next 4-byte boundary.
pub fn packed_layout(base: u64, max_size: u16, size: u16) -> QueueLayout {
    let entries = u64::from(size);
    let avail = base + 16 * entries;
    let used = (avail + 6 + 2 * entries).next_multiple_of(4);
    QueueLayout {
        max_size,
        size,
        desc: GuestAddress(base),
        avail: GuestAddress(avail),
        used: GuestAddress(used),
    }
}

/// Bytes the rings of a `size`-entry queue take from their base ([`packed_layout`]).
pub fn packed_len(size: u16) -> u64 {
    let layout = packed_layout(0, size, size);
    layout.used.0 + 6 + 8 * u64::from(size)
}

/// Queue `index` as the transport hands it to `activate` at DRIVER_OK, or `None` where the
/// transport would refuse the layout. The doorbell is a real eventfd nobody rings: the fuzz
/// target calls the device's handler itself.
pub fn ready(
    index: u16,
    layout: QueueLayout,
    event_idx: bool,
    memory: &GuestMemoryMmap,
) -> Option<ReadyQueue> {
    let queue = ready_queue(layout, event_idx, memory).ok()?;
    let doorbell = EventFd::new(libc::EFD_NONBLOCK).expect("an eventfd for the doorbell");
    Some(ReadyQueue {
        index,
        queue,
        doorbell,
    })
}

/// DRIVER_OK as the fuzzed driver set it up: readies the queues in `enabled` (each at
/// `layout(index)`) and activates `device` on them, with EVENT_IDX when `event_idx`. None when
/// a queue or the activation is refused; else the service and the interrupt it signals.
pub fn activate(
    device: &mut dyn VirtioDevice,
    enabled: &[u16],
    layout: impl Fn(u16) -> QueueLayout,
    event_idx: bool,
    memory: &GuestMemoryMmap,
) -> Option<(Service, Arc<VirtioInterrupt>)> {
    let mut queues = Vec::new();
    for &index in enabled {
        queues.push(ready(index, layout(index), event_idx, memory)?);
    }
    let interrupt = Arc::new(VirtioInterrupt::detached(2));
    let features = features::VERSION_1
        | if event_idx {
            features::RING_EVENT_IDX
        } else {
            0
        };
    let service = device
        .activate(Activation {
            memory: memory.clone(),
            features,
            queues,
            interrupt: interrupt.clone(),
        })
        .ok()?;
    Some((service, interrupt))
}

/// A driver's view of one queue while a seed is being written: where its rings are and the
/// next free descriptor and available slot.
pub struct DriverRing {
    /// The rings.
    pub layout: QueueLayout,
    next_desc: u16,
    /// Chains made available so far (the available index).
    pub avail_idx: u16,
}

/// `VIRTQ_DESC_F_NEXT`.
pub const DESC_F_NEXT: u16 = 1;
/// `VIRTQ_DESC_F_WRITE`.
pub const DESC_F_WRITE: u16 = 2;
/// `VIRTQ_DESC_F_INDIRECT`.
pub const DESC_F_INDIRECT: u16 = 4;

/// A guest buffer of a chain: (address, length, device-writable).
pub type Buffer = (u64, u32, bool);

/// A guest memory image being written from address 0, with a bump allocator for buffers.
pub struct Image {
    /// The bytes from address 0.
    pub bytes: Vec<u8>,
    next_free: u64,
}

impl Image {
    /// An empty image whose allocations start at `first_free`.
    pub fn new(first_free: u64) -> Self {
        Self {
            bytes: Vec::new(),
            next_free: first_free,
        }
    }

    /// Writes `data` at `address`, growing the image.
    pub fn put(&mut self, address: u64, data: &[u8]) {
        let end = address as usize + data.len();
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.bytes[address as usize..end].copy_from_slice(data);
    }

    /// Places `data` at the next free `align`-aligned address and returns that address.
    pub fn alloc(&mut self, data: &[u8], align: u64) -> u64 {
        let address = self.next_free.next_multiple_of(align);
        self.next_free = address + data.len() as u64;
        self.put(address, data);
        address
    }

    /// Reads a little-endian u32 the image holds at `address` (0 past its end).
    pub fn u32_at(&self, address: u64) -> u32 {
        let mut raw = [0u8; 4];
        for (i, byte) in raw.iter_mut().enumerate() {
            *byte = self.bytes.get(address as usize + i).copied().unwrap_or(0);
        }
        u32::from_le_bytes(raw)
    }

    fn descriptor(&mut self, table: u64, slot: u16, buffer: Buffer, flags: u16, next: u16) {
        let (address, len, writable) = buffer;
        let flags = flags | if writable { DESC_F_WRITE } else { 0 };
        let mut raw = [0u8; 16];
        raw[0..8].copy_from_slice(&address.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..16].copy_from_slice(&next.to_le_bytes());
        self.put(table + 16 * u64::from(slot), &raw);
    }
}

impl DriverRing {
    /// A queue with nothing available yet.
    pub fn new(layout: QueueLayout) -> Self {
        Self {
            layout,
            next_desc: 0,
            avail_idx: 0,
        }
    }

    /// Puts `buffers` in consecutive descriptors as one chain and, when `publish`, makes it
    /// available (otherwise only the ring slot is written: a later `avail.idx` step publishes
    /// it). Returns the head.
    pub fn add_chain(&mut self, image: &mut Image, buffers: &[Buffer], publish: bool) -> u16 {
        let size = self.layout.size;
        let head = self.next_desc;
        for (i, &buffer) in buffers.iter().enumerate() {
            let slot = (head + i as u16) % size;
            let flags = if i + 1 < buffers.len() {
                DESC_F_NEXT
            } else {
                0
            };
            image.descriptor(self.layout.desc.0, slot, buffer, flags, (slot + 1) % size);
        }
        self.next_desc = (head + buffers.len() as u16) % size;
        self.make_available(image, head, publish);
        head
    }

    /// Puts `buffers` in an indirect table one descriptor names, and makes it available.
    pub fn add_indirect(&mut self, image: &mut Image, buffers: &[Buffer]) -> u16 {
        let table = image.alloc(&vec![0u8; 16 * buffers.len()], 16);
        for (i, &buffer) in buffers.iter().enumerate() {
            let flags = if i + 1 < buffers.len() {
                DESC_F_NEXT
            } else {
                0
            };
            image.descriptor(table, i as u16, buffer, flags, i as u16 + 1);
        }
        let head = self.next_desc;
        let len = 16 * buffers.len() as u32;
        image.descriptor(
            self.layout.desc.0,
            head,
            (table, len, false),
            DESC_F_INDIRECT,
            0,
        );
        self.next_desc = (head + 1) % self.layout.size;
        self.make_available(image, head, true);
        head
    }

    fn make_available(&mut self, image: &mut Image, head: u16, publish: bool) {
        let slot = self.avail_idx % self.layout.size;
        image.put(
            self.layout.avail.0 + 4 + 2 * u64::from(slot),
            &head.to_le_bytes(),
        );
        self.avail_idx = self.avail_idx.wrapping_add(1);
        if publish {
            image.put(self.layout.avail.0 + 2, &self.avail_idx.to_le_bytes());
        }
    }
}
