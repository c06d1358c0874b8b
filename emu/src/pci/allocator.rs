//! Address-range allocation for BARs: first fit within a window, naturally aligned, with ranges
//! given back when a device goes away (ready for hotplug).

use std::collections::BTreeMap;

/// Hands out aligned ranges of one window.
#[derive(Debug)]
pub struct RangeAllocator {
    start: u64,
    end: u64,
    /// base -> length of every range in use.
    used: BTreeMap<u64, u64>,
}

impl RangeAllocator {
    /// A window `[start, start + size)`.
    pub fn new(start: u64, size: u64) -> Self {
        Self {
            start,
            end: start.saturating_add(size),
            used: BTreeMap::new(),
        }
    }

    /// The lowest free range of `size` bytes aligned to `align` (a power of two).
    pub fn allocate(&mut self, size: u64, align: u64) -> Option<u64> {
        if size == 0 || !align.is_power_of_two() {
            return None;
        }
        let mut candidate = align_up(self.start, align)?;
        for (&base, &len) in &self.used {
            if candidate.checked_add(size)? <= base {
                break;
            }
            candidate = candidate.max(align_up(base + len, align)?);
        }
        if candidate.checked_add(size)? > self.end {
            return None;
        }
        self.used.insert(candidate, size);
        Some(candidate)
    }

    /// Gives back the range starting at `base`.
    pub fn release(&mut self, base: u64) {
        self.used.remove(&base);
    }
}

fn align_up(value: u64, align: u64) -> Option<u64> {
    value.checked_add(align - 1).map(|v| v & !(align - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_alignment_and_first_fit() {
        let mut a = RangeAllocator::new(0xc000_0000, 0x10_0000);
        assert_eq!(a.allocate(0x1000, 0x1000), Some(0xc000_0000));
        assert_eq!(a.allocate(0x8000, 0x8000), Some(0xc000_8000));
        assert_eq!(a.allocate(0x1000, 0x1000), Some(0xc000_1000));
        a.release(0xc000_0000);
        assert_eq!(a.allocate(0x1000, 0x1000), Some(0xc000_0000));
    }

    #[test]
    fn window_exhaustion() {
        let mut a = RangeAllocator::new(0, 0x2000);
        assert_eq!(a.allocate(0x2000, 0x2000), Some(0));
        assert_eq!(a.allocate(0x10, 0x10), None);
        assert_eq!(a.allocate(0, 1), None);
        assert_eq!(a.allocate(0x10, 3), None);
        let mut top = RangeAllocator::new(u64::MAX - 0xfff, 0x1000);
        assert_eq!(top.allocate(0x2000, 0x1000), None);
    }
}
