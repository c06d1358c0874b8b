//! A small virtio-pci driver for device tests: finds the capabilities, negotiates features,
//! sets up split queues in guest memory, programs MSI-X, submits descriptor chains (well-formed
//! or deliberately broken) and waits for used entries.

use super::pci::PciFunction;
use super::Harness;
use crate::pci::config_space::{CAP_ID_MSIX, CAP_ID_VENDOR};
use crate::pci::PciAddress;
use crate::virtio::pci::{cap_type, common};
use crate::virtio::{features, status};
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};
use vm_memory::{Address, Bytes, GuestAddress};

/// Descriptor flag: the chain continues at `next` (virtio 1.2 2.7.5, `VIRTQ_DESC_F_NEXT`).
pub const DESC_F_NEXT: u16 = virtio_bindings::virtio_ring::VRING_DESC_F_NEXT as u16;
/// Descriptor flag: the device writes this buffer (`VIRTQ_DESC_F_WRITE`).
pub const DESC_F_WRITE: u16 = virtio_bindings::virtio_ring::VRING_DESC_F_WRITE as u16;
/// Descriptor flag: the buffer is a table of indirect descriptors (`VIRTQ_DESC_F_INDIRECT`).
pub const DESC_F_INDIRECT: u16 = virtio_bindings::virtio_ring::VRING_DESC_F_INDIRECT as u16;

/// The MSI data the driver programs for vector `n`: easy to recognise in the recorder.
pub fn msi_data(vector: u16) -> u32 {
    0x4000 + u32::from(vector)
}

/// One buffer of a chain to submit.
#[derive(Clone, Copy, Debug)]
pub struct Buffer {
    /// Guest-physical address of the buffer.
    pub address: GuestAddress,
    /// Length in bytes.
    pub len: u32,
    /// Whether the device writes it (device-writable) rather than reads it.
    pub writable: bool,
}

impl Buffer {
    /// A buffer the device reads.
    pub fn readable(address: GuestAddress, len: u32) -> Self {
        Self {
            address,
            len,
            writable: false,
        }
    }
    /// A buffer the device writes.
    pub fn writable(address: GuestAddress, len: u32) -> Self {
        Self {
            address,
            len,
            writable: true,
        }
    }
}

/// A raw descriptor, for tests that build broken chains by hand.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawDescriptor {
    /// Guest-physical buffer address (`addr`).
    pub address: u64,
    /// Buffer length in bytes (`len`).
    pub len: u32,
    /// `DESC_F_*` flags.
    pub flags: u16,
    /// Index of the next descriptor, used when `flags` has [`DESC_F_NEXT`].
    pub next: u16,
}

/// The driver's side of a split queue.
#[derive(Clone, Copy, Debug)]
pub struct DriverQueue {
    /// The queue's index (`queue_select`).
    pub index: u16,
    /// Number of descriptors in the ring (`queue_size`).
    pub size: u16,
    /// Guest-physical address of the descriptor table.
    pub desc: GuestAddress,
    /// Guest-physical address of the available (driver) ring.
    pub avail: GuestAddress,
    /// Guest-physical address of the used (device) ring.
    pub used: GuestAddress,
    /// The MSI-X vector the queue interrupts through.
    pub vector: u16,
    next_desc: u16,
    avail_idx: u16,
    last_used: u16,
}

/// An entry the device returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsedElement {
    /// Head descriptor index of the chain the device used.
    pub id: u32,
    /// Bytes the device wrote into the chain's writable buffers.
    pub len: u32,
}

/// A virtio-pci function driven from the test.
pub struct VirtioDriver<'h> {
    /// The harness the driver's accesses go through.
    pub harness: &'h Harness,
    /// The virtio function's PCI configuration space.
    pub function: PciFunction<'h>,
    /// MMIO address of the common configuration structure (`VIRTIO_PCI_CAP_COMMON_CFG`).
    pub common: u64,
    /// MMIO address of the ISR status byte (`VIRTIO_PCI_CAP_ISR_CFG`).
    pub isr: u64,
    /// MMIO address of the device-specific configuration (`VIRTIO_PCI_CAP_DEVICE_CFG`).
    pub device_config: u64,
    /// MMIO address of the notification region (`VIRTIO_PCI_CAP_NOTIFY_CFG`).
    pub notify: u64,
    /// `notify_off_multiplier`: bytes between doorbells per unit of `queue_notify_off`.
    pub notify_multiplier: u32,
    /// Config offset of the MSI-X capability, if the function has one.
    pub msix_cap: Option<usize>,
    /// MMIO address of the MSI-X table (0 without MSI-X).
    pub msix_table: u64,
    /// Queues set up with [`VirtioDriver::setup_queue`], at most one per index.
    pub queues: Vec<DriverQueue>,
    /// Features accepted by the last successful [`VirtioDriver::negotiate`].
    pub features: u64,
}

impl<'h> VirtioDriver<'h> {
    /// Finds the function's virtio capabilities and its BAR, and enables it on the bus.
    pub fn probe(harness: &'h Harness, address: PciAddress) -> Self {
        let function = PciFunction::new(harness, address);
        function.enable();
        let mut regions = [0u64; 6];
        let mut notify_multiplier = 0;
        for cap in function.capabilities(CAP_ID_VENDOR) {
            let cfg_type = function.read8(cap + 3);
            let bar = usize::from(function.read8(cap + 4));
            let offset = u64::from(function.read32(cap + 8));
            let (base, _) = function
                .memory_bar(bar)
                .expect("virtio capability names a memory BAR");
            if usize::from(cfg_type) < regions.len() && regions[usize::from(cfg_type)] == 0 {
                regions[usize::from(cfg_type)] = base + offset;
            }
            if cfg_type == cap_type::NOTIFY {
                notify_multiplier = function.read32(cap + 16);
            }
        }
        let msix_cap = function.capabilities(CAP_ID_MSIX).first().copied();
        let msix_table = msix_cap.map_or(0, |cap| {
            let table = function.read32(cap + 4);
            let (base, _) = function
                .memory_bar((table & 7) as usize)
                .expect("MSI-X table BAR");
            base + u64::from(table & !7)
        });
        Self {
            harness,
            function,
            common: regions[usize::from(cap_type::COMMON)],
            isr: regions[usize::from(cap_type::ISR)],
            device_config: regions[usize::from(cap_type::DEVICE)],
            notify: regions[usize::from(cap_type::NOTIFY)],
            notify_multiplier,
            msix_cap,
            msix_table,
            queues: Vec::new(),
            features: 0,
        }
    }

    /// Reads `device_status` from the common configuration.
    pub fn status(&self) -> u8 {
        self.harness.readb(self.common + common::DEVICE_STATUS)
    }

    /// Writes `device_status`; 0 resets the device.
    pub fn set_status(&self, value: u8) {
        self.harness
            .writeb(self.common + common::DEVICE_STATUS, value)
    }

    /// Resets the device (status 0) and forgets the driver's queues.
    pub fn reset(&mut self) {
        self.set_status(0);
        self.queues.clear();
    }

    /// The 64 `device_feature` bits, read as two 32-bit halves via `device_feature_select`.
    pub fn device_features(&self) -> u64 {
        let h = self.harness;
        h.writel(self.common + common::DEVICE_FEATURE_SELECT, 0);
        let low = h.readl(self.common + common::DEVICE_FEATURE);
        h.writel(self.common + common::DEVICE_FEATURE_SELECT, 1);
        let high = h.readl(self.common + common::DEVICE_FEATURE);
        (u64::from(high) << 32) | u64::from(low)
    }

    /// Reset, ACKNOWLEDGE, DRIVER, then offer `wanted & device features` and set FEATURES_OK.
    /// Returns the accepted features, or the status if the device refused them.
    pub fn negotiate(&mut self, wanted: u64) -> Result<u64, u8> {
        self.reset();
        self.set_status(status::ACKNOWLEDGE);
        self.set_status(status::ACKNOWLEDGE | status::DRIVER);
        let accepted = wanted & self.device_features();
        self.write_driver_features(accepted);
        self.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
        let now = self.status();
        if now & status::FEATURES_OK == 0 {
            return Err(now);
        }
        self.features = accepted;
        Ok(accepted)
    }

    /// Writes the driver feature registers as they are (tests use it to offer bad sets).
    pub fn write_driver_features(&self, value: u64) {
        let h = self.harness;
        h.writel(self.common + common::DRIVER_FEATURE_SELECT, 0);
        h.writel(self.common + common::DRIVER_FEATURE, value as u32);
        h.writel(self.common + common::DRIVER_FEATURE_SELECT, 1);
        h.writel(self.common + common::DRIVER_FEATURE, (value >> 32) as u32);
    }

    /// Enables MSI-X and programs vector `n` to send [`msi_data`]`(n)`, unmasked.
    pub fn enable_msix(&self) {
        let Some(cap) = self.msix_cap else {
            return;
        };
        let f = &self.function;
        let vectors = (f.read16(cap + 2) & 0x7ff) + 1;
        for n in 0..vectors {
            let entry = self.msix_table + u64::from(n) * 16;
            self.harness.writel(entry, 0xfee0_0000);
            self.harness.writel(entry + 4, 0);
            self.harness.writel(entry + 8, msi_data(n));
            self.harness.writel(entry + 12, 0);
        }
        let control = f.read16(cap + 2);
        f.write16(cap + 2, control | 0x8000);
    }

    /// Writes `config_msix_vector` and returns what reads back (`0xffff` if the device refused it).
    pub fn set_config_vector(&self, vector: u16) -> u16 {
        self.harness
            .writew(self.common + common::CONFIG_MSIX_VECTOR, vector);
        self.harness.readw(self.common + common::CONFIG_MSIX_VECTOR)
    }

    /// Reads `num_queues`: how many virtqueues the device has.
    pub fn num_queues(&self) -> u16 {
        self.harness.readw(self.common + common::NUM_QUEUES)
    }

    /// Allocates and programs queue `index` with `size` entries (0: the device's maximum),
    /// interrupting through `vector`, and enables it.
    pub fn setup_queue(&mut self, index: u16, size: u16, vector: u16) -> DriverQueue {
        let h = self.harness;
        h.writew(self.common + common::QUEUE_SELECT, index);
        let max = h.readw(self.common + common::QUEUE_SIZE);
        let size = if size == 0 { max } else { size };
        let desc = h.alloc(16 * u64::from(size), 16);
        let avail = h.alloc(6 + 2 * u64::from(size), 2);
        let used = h.alloc(6 + 8 * u64::from(size), 4);
        self.program_queue(index, size, desc, avail, used, vector);
        let queue = DriverQueue {
            index,
            size,
            desc,
            avail,
            used,
            vector,
            next_desc: 0,
            avail_idx: 0,
            last_used: 0,
        };
        self.queues.retain(|q| q.index != index);
        self.queues.push(queue);
        queue
    }

    /// Programs queue registers as given (tests use it for bad ring addresses) and enables it.
    pub fn program_queue(
        &self,
        index: u16,
        size: u16,
        desc: GuestAddress,
        avail: GuestAddress,
        used: GuestAddress,
        vector: u16,
    ) {
        let h = self.harness;
        h.writew(self.common + common::QUEUE_SELECT, index);
        h.writew(self.common + common::QUEUE_SIZE, size);
        h.writeq(self.common + common::QUEUE_DESC, desc.0);
        h.writel(self.common + common::QUEUE_DRIVER, avail.0 as u32);
        h.writel(
            self.common + common::QUEUE_DRIVER + 4,
            (avail.0 >> 32) as u32,
        );
        h.writeq(self.common + common::QUEUE_DEVICE, used.0);
        h.writew(self.common + common::QUEUE_MSIX_VECTOR, vector);
        h.writew(self.common + common::QUEUE_ENABLE, 1);
    }

    /// Sets DRIVER_OK in the status, keeping the bits already set.
    pub fn driver_ok(&self) {
        self.set_status(self.status() | status::DRIVER_OK);
    }

    /// negotiate + MSI-X + every queue at its maximum size (vector = queue index) + DRIVER_OK.
    pub fn init(&mut self, wanted: u64) -> u64 {
        let accepted = self
            .negotiate(wanted | features::VERSION_1)
            .expect("device refused the features");
        self.enable_msix();
        let queues = self.num_queues();
        self.set_config_vector(queues);
        for index in 0..queues {
            self.setup_queue(index, 0, index);
        }
        self.driver_ok();
        accepted
    }

    /// Queue `index` as set up (panics otherwise: a test bug).
    fn queue(&self, index: u16) -> &DriverQueue {
        self.queues
            .iter()
            .find(|q| q.index == index)
            .expect("queue not set up")
    }

    fn queue_mut(&mut self, index: u16) -> &mut DriverQueue {
        self.queues
            .iter_mut()
            .find(|q| q.index == index)
            .expect("queue not set up")
    }

    /// Writes descriptor `slot` of `queue` directly.
    pub fn write_descriptor(&self, queue: &DriverQueue, slot: u16, d: RawDescriptor) {
        let mut raw = [0u8; 16];
        raw[0..8].copy_from_slice(&d.address.to_le_bytes());
        raw[8..12].copy_from_slice(&d.len.to_le_bytes());
        raw[12..14].copy_from_slice(&d.flags.to_le_bytes());
        raw[14..16].copy_from_slice(&d.next.to_le_bytes());
        self.harness
            .write_mem(GuestAddress(queue.desc.0 + 16 * u64::from(slot)), &raw);
    }

    /// Puts `buffers` in consecutive descriptors as one chain, makes it available and rings
    /// the doorbell. Returns the head index.
    pub fn submit(&mut self, index: u16, buffers: &[Buffer]) -> u16 {
        let head = self.add_chain(index, buffers);
        self.notify(index);
        head
    }

    /// Puts `buffers` in consecutive descriptors as one chain and makes it available without
    /// ringing the doorbell (a driver adding a batch rings once, with [`Self::notify`]).
    /// Returns the head index.
    pub fn add_chain(&mut self, index: u16, buffers: &[Buffer]) -> u16 {
        let queue = *self.queue_mut(index);
        assert!(!buffers.is_empty() && buffers.len() <= usize::from(queue.size));
        let head = queue.next_desc;
        for (i, buffer) in buffers.iter().enumerate() {
            let slot = (head + i as u16) % queue.size;
            let last = i + 1 == buffers.len();
            let mut flags = if buffer.writable { DESC_F_WRITE } else { 0 };
            if !last {
                flags |= DESC_F_NEXT;
            }
            self.write_descriptor(
                &queue,
                slot,
                RawDescriptor {
                    address: buffer.address.0,
                    len: buffer.len,
                    flags,
                    next: (slot + 1) % queue.size,
                },
            );
        }
        self.queue_mut(index).next_desc = (head + buffers.len() as u16) % queue.size;
        self.publish(index, head);
        head
    }

    /// Puts `buffers` in an indirect table referenced by one descriptor. Returns the head.
    pub fn submit_indirect(&mut self, index: u16, buffers: &[Buffer]) -> u16 {
        let table = self.harness.alloc(16 * buffers.len() as u64, 16);
        for (i, buffer) in buffers.iter().enumerate() {
            let last = i + 1 == buffers.len();
            let mut flags = if buffer.writable { DESC_F_WRITE } else { 0 };
            if !last {
                flags |= DESC_F_NEXT;
            }
            let mut raw = [0u8; 16];
            raw[0..8].copy_from_slice(&buffer.address.0.to_le_bytes());
            raw[8..12].copy_from_slice(&buffer.len.to_le_bytes());
            raw[12..14].copy_from_slice(&flags.to_le_bytes());
            raw[14..16].copy_from_slice(&(i as u16 + 1).to_le_bytes());
            self.harness
                .write_mem(GuestAddress(table.0 + 16 * i as u64), &raw);
        }
        let queue = *self.queue_mut(index);
        let head = queue.next_desc;
        self.write_descriptor(
            &queue,
            head,
            RawDescriptor {
                address: table.0,
                len: 16 * buffers.len() as u32,
                flags: DESC_F_INDIRECT,
                next: 0,
            },
        );
        self.queue_mut(index).next_desc = (head + 1) % queue.size;
        self.make_available(index, head);
        head
    }

    /// Adds `head` to the available ring, publishes the index and rings the doorbell.
    pub fn make_available(&mut self, index: u16, head: u16) {
        self.publish(index, head);
        self.notify(index);
    }

    /// Adds `head` to the available ring and publishes the index, without the doorbell.
    pub fn publish(&mut self, index: u16, head: u16) {
        let queue = *self.queue_mut(index);
        let slot = queue.avail_idx % queue.size;
        self.harness.write_mem(
            GuestAddress(queue.avail.0 + 4 + 2 * u64::from(slot)),
            &head.to_le_bytes(),
        );
        // The device must see the entry before the index that covers it.
        fence(Ordering::Release);
        let idx = queue.avail_idx.wrapping_add(1);
        self.queue_mut(index).avail_idx = idx;
        self.set_avail_idx(index, idx);
    }

    /// Writes the available ring's index as given (tests use it to claim too many entries).
    pub fn set_avail_idx(&self, index: u16, idx: u16) {
        let queue = self.queue(index);
        self.harness
            .write_mem(GuestAddress(queue.avail.0 + 2), &idx.to_le_bytes());
    }

    /// Rings queue `index`'s doorbell.
    pub fn notify(&self, index: u16) {
        let address = self.notify + u64::from(index) * u64::from(self.notify_multiplier);
        self.harness.writew(address, index);
    }

    /// The used ring's index as the device last wrote it.
    pub fn used_idx(&self, index: u16) -> u16 {
        let queue = self.queue(index);
        self.harness
            .memory
            .read_obj(queue.used.unchecked_add(2))
            .expect("used ring in guest memory")
    }

    /// Takes the next used entry of queue `index`, if the device returned one.
    pub fn take_used(&mut self, index: u16) -> Option<UsedElement> {
        let queue = *self.queue_mut(index);
        if self.used_idx(index) == queue.last_used {
            return None;
        }
        // The device publishes the entry before the index.
        fence(Ordering::Acquire);
        let slot = queue.last_used % queue.size;
        let raw: [u8; 8] = self
            .harness
            .memory
            .read_obj(queue.used.unchecked_add(4 + 8 * u64::from(slot)))
            .expect("used ring in guest memory");
        self.queue_mut(index).last_used = queue.last_used.wrapping_add(1);
        Some(UsedElement {
            id: u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]),
            len: u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]),
        })
    }

    /// Waits for the next used entry of queue `index`, polling the used ring every 50 µs.
    pub fn wait_used(&mut self, index: u16, timeout: Duration) -> Option<UsedElement> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(used) = self.take_used(index) {
                return Some(used);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// Waits for the next used entry of queue `index` as an interrupt-driven guest driver
    /// does: with EVENT_IDX it first asks for an interrupt at the next used entry (used_event),
    /// then sleeps on the queue's MSI vector until the device sends it. Needs MSI-X on and the
    /// queue's vector unmasked (as [`Self::init`] leaves them). No sleeping poll: the wake-up
    /// is as fast as the device's interrupt.
    pub fn wait_used_interrupt(&mut self, index: u16, timeout: Duration) -> Option<UsedElement> {
        let deadline = Instant::now() + timeout;
        let queue = *self.queue_mut(index);
        let data = msi_data(queue.vector);
        let event_idx = self.features & features::RING_EVENT_IDX != 0;
        loop {
            // Count first: an interrupt sent after this point wakes the wait below.
            let seen = self.harness.msi.count(data);
            if event_idx {
                let last_used = self.queue_mut(index).last_used;
                self.set_used_event(index, last_used);
                // The device reads used_event after publishing the used index; either it sees
                // ours or we see its entry.
                fence(Ordering::SeqCst);
            }
            if let Some(used) = self.take_used(index) {
                return Some(used);
            }
            let now = Instant::now();
            if now >= deadline || !self.harness.msi.wait_count(data, seen + 1, deadline - now) {
                return self.take_used(index);
            }
        }
    }

    /// Waits for the next used entry of queue `index` by polling the used ring without
    /// sleeping: spinning for a short while, then yielding the CPU between polls. The lowest
    /// latency where a core is free for it; needs no interrupt.
    pub fn wait_used_spin(&mut self, index: u16, timeout: Duration) -> Option<UsedElement> {
        const SPINS: u64 = 256;
        let deadline = Instant::now() + timeout;
        let mut polls = 0u64;
        loop {
            if let Some(used) = self.take_used(index) {
                return Some(used);
            }
            polls += 1;
            if polls < SPINS {
                std::hint::spin_loop();
                continue;
            }
            if polls.is_multiple_of(64) && Instant::now() >= deadline {
                return None;
            }
            std::thread::yield_now();
        }
    }

    /// Waits until the device status has `bits`; false on timeout.
    pub fn wait_status(&self, bits: u8, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.status() & bits == bits {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    /// Reads the ISR (which clears it).
    pub fn read_isr(&self) -> u8 {
        self.harness.readb(self.isr)
    }

    /// Reads a byte of device-specific configuration at `offset`.
    pub fn config_read8(&self, offset: u64) -> u8 {
        self.harness.readb(self.device_config + offset)
    }
    /// Reads 2 bytes of device-specific configuration at `offset`.
    pub fn config_read16(&self, offset: u64) -> u16 {
        self.harness.readw(self.device_config + offset)
    }
    /// Reads 4 bytes of device-specific configuration at `offset`.
    pub fn config_read32(&self, offset: u64) -> u32 {
        self.harness.readl(self.device_config + offset)
    }
    /// Reads 8 bytes of device-specific configuration at `offset`, as two 4-byte reads (low first).
    pub fn config_read64(&self, offset: u64) -> u64 {
        u64::from(self.config_read32(offset)) | (u64::from(self.config_read32(offset + 4)) << 32)
    }

    /// Reads `avail_event` in the used ring (EVENT_IDX): the available index at which the
    /// device wants the next notification.
    pub fn avail_event(&self, index: u16) -> u16 {
        let queue = self.queue(index);
        let at = queue.used.0 + 4 + 8 * u64::from(queue.size);
        let raw = self.harness.read_mem(GuestAddress(at), 2);
        u16::from_le_bytes([raw[0], raw[1]])
    }

    /// Writes `used_event` in the available ring (EVENT_IDX): interrupt me when the used
    /// index passes `value`.
    pub fn set_used_event(&self, index: u16, value: u16) {
        let queue = self.queue(index);
        let at = queue.avail.0 + 4 + 2 * u64::from(queue.size);
        self.harness
            .write_mem(GuestAddress(at), &value.to_le_bytes());
    }

    /// Reads a little-endian value from guest memory.
    pub fn read_u8(&self, address: GuestAddress) -> u8 {
        self.harness
            .memory
            .read_obj(address)
            .expect("guest address")
    }
}
