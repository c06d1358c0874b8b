//! The loop every device worker runs for a queue: take the available chains, let the device
//! handle each, return them as used, re-enable notifications (EVENT_IDX aware) and interrupt
//! the driver only when it asked to be. A chain the device cannot use at all puts the device
//! in DEVICE_NEEDS_RESET and stops the queue.

use super::chain::{Chain, ChainError};
use super::VirtioInterrupt;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;

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
