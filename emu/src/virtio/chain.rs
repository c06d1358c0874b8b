//! Descriptor chains as devices consume them: the ordered list of guest buffers, checked for
//! the driver mistakes that make a chain unusable (loops, chains longer than the queue,
//! indices out of range), and gather/scatter helpers that only ever touch guest memory through
//! bounds-checked accesses.

use std::ops::Deref;
use virtio_queue::DescriptorChain;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory};

/// One guest buffer of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical address of the buffer.
    pub address: GuestAddress,
    /// Length in bytes.
    pub len: u32,
    /// Device-writable (VIRTQ_DESC_F_WRITE).
    pub writable: bool,
}

/// A chain the device cannot use at all: it cannot even tell where to put a reply.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    /// The chain starting at this head descriptor is unusable.
    #[error("descriptor chain starting at {0} is empty, loops, is longer than the queue or names a descriptor outside it")]
    Malformed(u16),
}

/// The buffers of one available chain, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// Index of the chain's head descriptor, which the used ring entry names.
    pub head: u16,
    /// The chain's buffers, in order (indirect tables flattened).
    pub segments: Vec<Segment>,
}

impl Chain {
    /// Walks `chain` (following an indirect table if it has one).
    pub fn collect<M>(chain: DescriptorChain<M>) -> Result<Self, ChainError>
    where
        M: Deref,
        M::Target: GuestMemory,
    {
        let head = chain.head_index();
        let mut segments = Vec::new();
        let mut last_has_next = true;
        for descriptor in chain {
            last_has_next = descriptor.has_next();
            segments.push(Segment {
                address: descriptor.addr(),
                len: descriptor.len(),
                writable: descriptor.is_write_only(),
            });
        }
        // The walk ends early (with the last descriptor still pointing on) when the chain
        // loops, runs past the queue size, or names a bad index or indirect table.
        if segments.is_empty() || last_has_next {
            return Err(ChainError::Malformed(head));
        }
        Ok(Self { head, segments })
    }

    /// The device-readable buffers, in order.
    pub fn readable(&self) -> Vec<Segment> {
        self.with_direction(false)
    }

    /// The device-writable buffers, in order.
    pub fn writable(&self) -> Vec<Segment> {
        self.with_direction(true)
    }

    fn with_direction(&self, writable: bool) -> Vec<Segment> {
        self.segments
            .iter()
            .copied()
            .filter(|s| s.writable == writable)
            .collect()
    }

    /// Total bytes in device-readable buffers.
    pub fn readable_len(&self) -> u64 {
        self.len_with_direction(false)
    }

    /// Total bytes in device-writable buffers.
    pub fn writable_len(&self) -> u64 {
        self.len_with_direction(true)
    }

    fn len_with_direction(&self, writable: bool) -> u64 {
        self.segments
            .iter()
            .filter(|s| s.writable == writable)
            .map(|s| u64::from(s.len))
            .sum()
    }
}

/// A guest memory access outside guest RAM.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("guest buffer at {address:#x} (+{len}) is outside guest memory")]
pub struct BadBuffer {
    /// Guest-physical start address.
    pub address: u64,
    /// Length in bytes.
    pub len: usize,
}

/// A cursor over a list of segments: reads or writes continue where the last one stopped.
pub struct SegmentCursor<'a> {
    segments: &'a [Segment],
    index: usize,
    offset: u32,
}

impl<'a> SegmentCursor<'a> {
    /// A cursor at the start of the first segment.
    pub fn new(segments: &'a [Segment]) -> Self {
        Self {
            segments,
            index: 0,
            offset: 0,
        }
    }

    /// Bytes left under the cursor.
    pub fn remaining(&self) -> u64 {
        self.segments[self.index.min(self.segments.len())..]
            .iter()
            .map(|s| u64::from(s.len))
            .sum::<u64>()
            - u64::from(self.offset)
    }

    /// The next contiguous piece of at most `max` bytes, advancing past it.
    fn next_piece(&mut self, max: usize) -> Option<(GuestAddress, usize)> {
        loop {
            let segment = self.segments.get(self.index)?;
            let left = segment.len - self.offset;
            if left == 0 {
                self.index += 1;
                self.offset = 0;
                continue;
            }
            let len = (left as usize).min(max);
            let address = segment.address.checked_add(u64::from(self.offset))?;
            self.offset += len as u32;
            return Some((address, len));
        }
    }

    /// Fills `buf` from guest memory; returns the bytes read (less than `buf.len()` when the
    /// segments run out).
    pub fn read<M: GuestMemory>(&mut self, memory: &M, buf: &mut [u8]) -> Result<usize, BadBuffer> {
        let mut done = 0;
        while done < buf.len() {
            let Some((address, len)) = self.next_piece(buf.len() - done) else {
                break;
            };
            memory
                .read_slice(&mut buf[done..done + len], address)
                .map_err(|_| BadBuffer {
                    address: address.0,
                    len,
                })?;
            done += len;
        }
        Ok(done)
    }

    /// Writes `data` to guest memory; returns the bytes written (less than `data.len()` when
    /// the segments run out).
    pub fn write<M: GuestMemory>(&mut self, memory: &M, data: &[u8]) -> Result<usize, BadBuffer> {
        let mut done = 0;
        while done < data.len() {
            let Some((address, len)) = self.next_piece(data.len() - done) else {
                break;
            };
            memory
                .write_slice(&data[done..done + len], address)
                .map_err(|_| BadBuffer {
                    address: address.0,
                    len,
                })?;
            done += len;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap()
    }

    fn seg(address: u64, len: u32) -> Segment {
        Segment {
            address: GuestAddress(address),
            len,
            writable: true,
        }
    }

    #[test]
    fn cursor_scatters_and_gathers_across_segments() {
        let mem = memory();
        let segments = [seg(0x100, 3), seg(0x200, 5)];
        let mut cursor = SegmentCursor::new(&segments);
        assert_eq!(cursor.remaining(), 8);
        assert_eq!(cursor.write(&mem, b"abcdefghij").unwrap(), 8);
        assert_eq!(cursor.remaining(), 0);
        let mut out = [0u8; 8];
        assert_eq!(
            SegmentCursor::new(&segments).read(&mem, &mut out).unwrap(),
            8
        );
        assert_eq!(&out, b"abcdefgh");
        assert_eq!(
            mem.read_obj::<[u8; 3]>(GuestAddress(0x100)).unwrap(),
            *b"abc"
        );
    }

    #[test]
    fn cursor_continues_where_it_stopped() {
        let mem = memory();
        let segments = [seg(0x100, 4)];
        let mut cursor = SegmentCursor::new(&segments);
        cursor.write(&mem, b"ab").unwrap();
        cursor.write(&mem, b"cd").unwrap();
        assert_eq!(
            mem.read_obj::<[u8; 4]>(GuestAddress(0x100)).unwrap(),
            *b"abcd"
        );
    }

    #[test]
    fn buffers_outside_memory_are_refused() {
        let mem = memory();
        let segments = [seg(0xfff0, 0x20)];
        let err = SegmentCursor::new(&segments)
            .write(&mem, &[1; 0x20])
            .unwrap_err();
        assert_eq!(err.address, 0xfff0);
        let segments = [seg(u64::MAX - 1, 4)];
        assert!(SegmentCursor::new(&segments)
            .read(&mem, &mut [0; 4])
            .is_err());
    }
}
