//! virtio-rng: one queue whose writable buffers the device fills with bytes from the host's
//! getrandom(2).

use super::queue_service::serve_queue;
use super::{device_type, features, ActivateError, Activation, Service, VirtioDevice};
use crate::virtio::chain::SegmentCursor;

const QUEUE_SIZE: u16 = 64;
/// The most bytes one request gets, so a guest cannot make the worker fill gigabytes at once.
const MAX_BYTES_PER_REQUEST: usize = 64 * 1024;

/// A virtio entropy device.
#[derive(Default)]
pub struct Rng;

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        device_type::RNG
    }

    fn name(&self) -> &str {
        "virtio-rng"
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        features::RING_INDIRECT_DESC | features::RING_EVENT_IDX
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn activate(&mut self, activation: Activation) -> Result<Service, ActivateError> {
        let Activation {
            memory,
            queues,
            interrupt,
            ..
        } = activation;
        let mut buffer = vec![0u8; MAX_BYTES_PER_REQUEST];
        Service::per_queue(queues, move |index, queue| {
            serve_queue(queue, index, &memory, &interrupt, |chain| {
                let writable = chain.writable();
                let want = (chain.writable_len() as usize).min(MAX_BYTES_PER_REQUEST);
                if let Err(e) = fill_random(&mut buffer[..want]) {
                    log::warn!("virtio-rng: getrandom failed: {e}");
                    return Ok(0);
                }
                match SegmentCursor::new(&writable).write(&memory, &buffer[..want]) {
                    Ok(written) => Ok(written as u32),
                    Err(e) => {
                        log::debug!("virtio-rng: {e}");
                        Ok(0)
                    }
                }
            })
        })
    }
}

/// Fills `buf` from the kernel's random pool (getrandom(2), no flags: blocks only before the
/// pool is initialised at boot).
fn fill_random(buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: the pointer and length describe `rest`, a live, writable byte slice.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        done += n as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::harness::virtio::{msi_data, Buffer, VirtioDriver};
    use crate::harness::Harness;
    use crate::virtio::features;
    use std::time::Duration;

    #[test]
    fn fills_buffers_with_random_bytes() {
        let h = Harness::new(16 << 20);
        let address = h.pci.add_rng().unwrap();
        let mut d = VirtioDriver::probe(&h, address);
        d.init(features::RING_EVENT_IDX);
        let a = h.alloc(4096, 8);
        let b = h.alloc(100, 8);
        let head = d.submit(0, &[Buffer::writable(a, 4096), Buffer::writable(b, 100)]);
        let used = d.wait_used(0, Duration::from_secs(5)).unwrap();
        assert_eq!((used.id, used.len), (u32::from(head), 4196));
        let bytes = h.read_mem(a, 4096);
        // 4096 random bytes are not all one value, and take most byte values.
        let mut seen = [false; 256];
        bytes.iter().for_each(|&x| seen[usize::from(x)] = true);
        assert!(seen.iter().filter(|&&s| s).count() > 200);
        assert!(h.msi.wait_count(msi_data(0), 1, Duration::from_secs(5)));
        // Two requests differ.
        let c = h.alloc(64, 8);
        d.submit(0, &[Buffer::writable(c, 64)]);
        d.wait_used(0, Duration::from_secs(5)).unwrap();
        assert_ne!(h.read_mem(c, 64), bytes[..64].to_vec());
    }

    #[test]
    fn oversized_and_readable_buffers_are_bounded() {
        let h = Harness::new(16 << 20);
        let address = h.pci.add_rng().unwrap();
        let mut d = VirtioDriver::probe(&h, address);
        d.init(0);
        let big = h.alloc(1 << 20, 8);
        let readable = h.alloc(64, 8);
        h.write_mem(readable, &[0x33; 64]);
        d.submit(
            0,
            &[
                Buffer::readable(readable, 64),
                Buffer::writable(big, 1 << 20),
            ],
        );
        let used = d.wait_used(0, Duration::from_secs(5)).unwrap();
        assert_eq!(used.len as usize, super::MAX_BYTES_PER_REQUEST);
        assert_eq!(
            h.read_mem(readable, 64),
            vec![0x33; 64],
            "readable buffer untouched"
        );
        // A buffer outside guest memory: nothing written, the device carries on.
        d.submit(0, &[Buffer::writable(vm_memory::GuestAddress(1 << 40), 64)]);
        assert_eq!(d.wait_used(0, Duration::from_secs(5)).unwrap().len, 0);
    }
}
