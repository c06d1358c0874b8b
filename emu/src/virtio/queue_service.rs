//! The loop every device worker runs for a queue: take the available chains, let the device
//! handle each, return them as used, re-enable notifications (EVENT_IDX aware) and interrupt
//! the driver only when it asked to be. A chain the device cannot use at all puts the device
//! in DEVICE_NEEDS_RESET and stops the queue.

use super::chain::{Chain, ChainError};
use super::VirtioInterrupt;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Where the driver put a split queue, as it programmed the transport's registers.
#[derive(Clone, Copy, Debug)]
pub struct QueueLayout {
    /// The most entries the device offers.
    pub max_size: u16,
    /// The entries the driver chose.
    pub size: u16,
    /// Guest-physical address of the descriptor table (`queue_desc`).
    pub desc: GuestAddress,
    /// Guest-physical address of the available ring (`queue_driver`).
    pub avail: GuestAddress,
    /// Guest-physical address of the used ring (`queue_device`).
    pub used: GuestAddress,
}

/// Turns the driver's queue registers into a ready queue, with EVENT_IDX as negotiated. Fails,
/// saying why, when the transport must refuse the queue: a size that is not a power of two up
/// to `max_size`, misaligned rings, or rings outside guest memory. The transport uses it when
/// the driver sets DRIVER_OK; fuzzers and benchmarks use it to build queues without one.
pub fn ready_queue(
    layout: QueueLayout,
    event_idx: bool,
    memory: &GuestMemoryMmap,
) -> Result<Queue, String> {
    let QueueLayout {
        max_size,
        size,
        desc,
        avail,
        used,
    } = layout;
    let mut queue = Queue::new(max_size).map_err(|e| format!("{e:?}"))?;
    queue
        .try_set_size(size)
        .map_err(|e| format!("size {size}: {e:?}"))?;
    queue
        .try_set_desc_table_address(desc)
        .and_then(|_| queue.try_set_avail_ring_address(avail))
        .and_then(|_| queue.try_set_used_ring_address(used))
        .map_err(|e| format!("{e:?}"))?;
    queue.set_event_idx(event_idx);
    queue.set_ready(true);
    if !queue.is_valid(memory) {
        return Err(format!(
            "rings (desc {:#x}, avail {:#x}, used {:#x}, size {size}) are not in guest memory",
            desc.0, avail.0, used.0
        ));
    }
    Ok(queue)
}

/// Serves queue `index` until it is empty. `handle` returns the number of bytes it wrote into
/// the chain's buffers. Returns false when the device needs a reset.
pub fn serve_queue<F>(
    queue: &mut Queue,
    index: u16,
    memory: &GuestMemoryMmap,
    interrupt: &VirtioInterrupt,
    mut handle: F,
) -> bool
where
    F: FnMut(&Chain) -> Result<u32, ChainError>,
{
    let mut used_any = false;
    loop {
        if let Err(e) = queue.disable_notification(memory) {
            return fault(
                interrupt,
                index,
                format!("cannot update the used ring flags: {e:?}"),
            );
        }
        let chains: Vec<_> = match queue.iter(memory) {
            Ok(iter) => iter.collect(),
            Err(e) => return fault(interrupt, index, format!("bad available ring: {e:?}")),
        };
        for chain in chains {
            let head = chain.head_index();
            let written = match Chain::collect(chain).and_then(|chain| handle(&chain)) {
                Ok(written) => written,
                Err(e) => return fault(interrupt, index, e.to_string()),
            };
            if let Err(e) = queue.add_used(memory, head, written) {
                return fault(
                    interrupt,
                    index,
                    format!("cannot return chain {head}: {e:?}"),
                );
            }
            used_any = true;
        }
        match queue.enable_notification(memory) {
            Ok(true) => continue,
            Ok(false) => break,
            Err(e) => {
                return fault(
                    interrupt,
                    index,
                    format!("cannot re-enable notifications: {e:?}"),
                )
            }
        }
    }
    if used_any {
        match queue.needs_notification(memory) {
            Ok(true) => interrupt.signal_queue(index),
            Ok(false) => {}
            Err(e) => {
                return fault(
                    interrupt,
                    index,
                    format!("cannot read the used event: {e:?}"),
                )
            }
        }
    }
    true
}

fn fault(interrupt: &VirtioInterrupt, index: u16, why: String) -> bool {
    log::warn!("virtio queue {index}: {why}; the device needs a reset");
    interrupt.set_needs_reset();
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::chain::SegmentCursor;
    use vm_memory::Bytes;

    const DESC: u64 = 0x1000;
    const AVAIL: u64 = 0x2000;
    const USED: u64 = 0x3000;

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap()
    }

    fn layout(size: u16, desc: u64, avail: u64, used: u64) -> QueueLayout {
        QueueLayout {
            max_size: 16,
            size,
            desc: GuestAddress(desc),
            avail: GuestAddress(avail),
            used: GuestAddress(used),
        }
    }

    #[test]
    fn ready_queue_refuses_what_the_transport_must() {
        let mem = memory();
        assert!(ready_queue(layout(8, DESC, AVAIL, USED), true, &mem).is_ok());
        for (bad, why) in [
            (layout(3, DESC, AVAIL, USED), "size"),
            (layout(32, DESC, AVAIL, USED), "size"),
            (layout(8, DESC + 8, AVAIL, USED), "Invalid"),
            (layout(8, DESC, AVAIL, USED + 2), "Invalid"),
            (layout(8, DESC, AVAIL, 0xfff0), "not in guest memory"),
        ] {
            let err = ready_queue(bad, false, &mem).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    /// The queue service runs synchronously, without a transport or thread, on a queue from
    /// [`ready_queue`] and a detached interrupt (as the fuzz target does).
    #[test]
    fn serves_a_queue_without_a_transport() {
        let mem = memory();
        let mut queue = ready_queue(layout(8, DESC, AVAIL, USED), false, &mem).unwrap();
        // One writable 4-byte buffer at 0x4000, head 0, made available.
        let mut desc = [0u8; 16];
        desc[0..8].copy_from_slice(&0x4000u64.to_le_bytes());
        desc[8..12].copy_from_slice(&4u32.to_le_bytes());
        desc[12..14].copy_from_slice(&2u16.to_le_bytes());
        mem.write_slice(&desc, GuestAddress(DESC)).unwrap();
        mem.write_obj(0u16, GuestAddress(AVAIL + 4)).unwrap();
        mem.write_obj(1u16, GuestAddress(AVAIL + 2)).unwrap();
        let interrupt = VirtioInterrupt::detached(1);
        let served = serve_queue(&mut queue, 0, &mem, &interrupt, |chain| {
            let written = SegmentCursor::new(&chain.segments)
                .write(&mem, b"cove")
                .unwrap();
            Ok(written as u32)
        });
        assert!(served);
        assert!(!interrupt.needs_reset());
        assert_eq!(mem.read_obj::<u16>(GuestAddress(USED + 2)).unwrap(), 1);
        assert_eq!(mem.read_obj::<u32>(GuestAddress(USED + 8)).unwrap(), 4);
        assert_eq!(
            mem.read_obj::<[u8; 4]>(GuestAddress(0x4000)).unwrap(),
            *b"cove"
        );
        assert_eq!(interrupt.read_isr(), 1, "queue interrupt in the ISR");

        // A chain that loops puts the device in DEVICE_NEEDS_RESET.
        desc[12..14].copy_from_slice(&(1u16 | 2).to_le_bytes());
        desc[14..16].copy_from_slice(&0u16.to_le_bytes());
        mem.write_slice(&desc, GuestAddress(DESC)).unwrap();
        mem.write_obj(0u16, GuestAddress(AVAIL + 6)).unwrap();
        mem.write_obj(2u16, GuestAddress(AVAIL + 2)).unwrap();
        assert!(!serve_queue(&mut queue, 0, &mem, &interrupt, |_| Ok(0)));
        assert!(interrupt.needs_reset());
    }
}
