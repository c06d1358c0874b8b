//! Guest RAM: its layout around the 32-bit MMIO hole, and its allocation.
//!
//! RAM below [`MMIO_HOLE_START`] is mapped from guest physical 0; the rest continues at 4 GiB.
//! Memory is anonymous, private and mapped without reservation, so untouched guest pages cost
//! the host nothing.

use crate::arch::x86_64::layout::{MMIO_HOLE_END, MMIO_HOLE_START};
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Guest memory as Cove uses it.
pub type GuestMemory = GuestMemoryMmap<()>;

/// The smallest guest Cove builds: room for the boot structures, a kernel and its page tables.
pub const MIN_MEMORY: u64 = 32 << 20;

/// Why guest memory could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The size in bytes is below [`MIN_MEMORY`] (32 MiB).
    #[error("guest memory of {0} bytes is too small (the minimum is 32M)")]
    TooSmall(u64),
    /// The size is more than the host's physical RAM.
    #[error("guest memory of {requested} bytes is more than the host's {host} bytes of RAM")]
    MoreThanHost {
        /// Guest RAM asked for, in bytes.
        requested: u64,
        /// The host's physical RAM, in bytes.
        host: u64,
    },
    /// The size in bytes is not a multiple of 4 KiB.
    #[error("guest memory size {0:#x} is not a multiple of 4 KiB")]
    Unaligned(u64),
    /// The host could not map the guest RAM (`mmap` failed); the text says why.
    #[error("cannot allocate guest memory: {0}")]
    Allocate(String),
}

/// The guest physical RAM ranges for `size` bytes of RAM.
pub fn ram_ranges(size: u64) -> Vec<(GuestAddress, usize)> {
    let low = size.min(MMIO_HOLE_START);
    let mut ranges = vec![(GuestAddress(0), low as usize)];
    if size > low {
        ranges.push((GuestAddress(MMIO_HOLE_END), (size - low) as usize));
    }
    ranges
}

/// Checks `size` against Cove's limits and the host's RAM (when known).
pub fn validate_size(size: u64, host_ram: Option<u64>) -> Result<(), MemoryError> {
    if size < MIN_MEMORY {
        return Err(MemoryError::TooSmall(size));
    }
    if !size.is_multiple_of(4096) {
        return Err(MemoryError::Unaligned(size));
    }
    if let Some(host) = host_ram {
        if size > host {
            return Err(MemoryError::MoreThanHost {
                requested: size,
                host,
            });
        }
    }
    Ok(())
}

/// Allocates guest RAM of `size` bytes.
pub fn create_guest_memory(size: u64) -> Result<GuestMemory, MemoryError> {
    validate_size(size, crate::host::host_memory_bytes())?;
    GuestMemoryMmap::from_ranges(&ram_ranges(size))
        .map_err(|e| MemoryError::Allocate(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestMemoryBackend};

    #[test]
    fn splits_around_the_hole() {
        assert_eq!(ram_ranges(512 << 20), vec![(GuestAddress(0), 512 << 20)]);
        let r = ram_ranges(4 << 30);
        assert_eq!(r[0], (GuestAddress(0), MMIO_HOLE_START as usize));
        assert_eq!(r[1], (GuestAddress(1 << 32), (1 << 30) as usize));
    }

    #[test]
    fn validates_sizes() {
        assert!(matches!(
            validate_size(0, None),
            Err(MemoryError::TooSmall(0))
        ));
        assert!(matches!(
            validate_size((64 << 20) + 1, None),
            Err(MemoryError::Unaligned(_))
        ));
        assert!(matches!(
            validate_size(8 << 30, Some(4 << 30)),
            Err(MemoryError::MoreThanHost { .. })
        ));
        assert!(validate_size(64 << 20, Some(4 << 30)).is_ok());
    }

    #[test]
    fn allocates_usable_memory() {
        let mem = create_guest_memory(64 << 20).unwrap();
        mem.write_obj(0xdead_beef_u32, GuestAddress(0x1000))
            .unwrap();
        assert_eq!(
            mem.read_obj::<u32>(GuestAddress(0x1000)).unwrap(),
            0xdead_beef
        );
        assert_eq!(mem.last_addr(), GuestAddress((64 << 20) - 1));
    }
}
