//! A software walk of the guest's page tables: guest-virtual (linear) to guest-physical.
//!
//! Covers paging off (identity), 32-bit paging (4 KiB pages, and 4 MiB pages with CR4.PSE,
//! including PSE-36 address bits), PAE paging (4 KiB and 2 MiB pages), and 4- and 5-level
//! long-mode paging (4 KiB, 2 MiB and 1 GiB pages; 5 levels with CR4.LA57). Entries are read
//! from guest memory; PAE's PDPTEs are read from memory too rather than from the processor's
//! cached copies. Only the present, writable and user bits are interpreted: reserved bits,
//! protection keys, NX and SMAP/SMEP are not checked.

use kvm_bindings::kvm_sregs;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::registers::{CR0_PG, CR0_WP, CR4_LA57, CR4_PAE, CR4_PSE, EFER_LMA};
use super::CpuAccessError;

const PTE_PRESENT: u64 = 1 << 0;
const PTE_WRITABLE: u64 = 1 << 1;
const PTE_USER: u64 = 1 << 2;
/// Page size: the entry maps a large page instead of pointing to a table.
const PTE_LARGE: u64 = 1 << 7;
/// Physical address bits 12..51 of a 64-bit entry.
const PHYSICAL_ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Where a guest-virtual address maps, and what every level of the walk allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// The guest-physical address the guest-virtual address maps to.
    pub gpa: u64,
    /// R/W set at every level.
    pub writable: bool,
    /// U/S set at every level.
    pub user: bool,
}

impl Translation {
    fn identity(gpa: u64) -> Self {
        Translation {
            gpa,
            writable: true,
            user: true,
        }
    }

    /// Whether an access is allowed: user-mode accesses need a user page, and writes need a
    /// writable page when made from user mode or when CR0.WP is set.
    pub fn permits(&self, write: bool, user_mode: bool, cr0_wp: bool) -> bool {
        if user_mode && !self.user {
            return false;
        }
        !write || self.writable || (!user_mode && !cr0_wp)
    }
}

/// Bytes in a guest page (the unit an access is split at).
const PAGE_SIZE: u64 = 0x1000;

/// One page's part of a guest-virtual access: the guest-physical address and the range of the
/// caller's buffer it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Where this part lands in guest-physical memory.
    pub gpa: u64,
    /// Its offset in the caller's buffer.
    pub start: usize,
    /// Its length in bytes, at most to the end of its page.
    pub len: usize,
}

/// Splits the access `gva..gva + len` at page boundaries, checking each page against the
/// guest's page tables and translating it with `translate`, before anything is accessed, so
/// that a failed access changes nothing. With paging on, user-mode accesses and writes need
/// the page's rights (CR0.WP honoured); supervisor reads are not checked (supervisor mode can
/// read every present page, SMAP aside).
pub fn split_access(
    memory: &impl GuestMemoryBackend,
    sregs: &kvm_sregs,
    user_mode: bool,
    access: (u64, usize, bool),
    mut translate: impl FnMut(u64) -> Result<u64, CpuAccessError>,
) -> Result<Vec<Piece>, CpuAccessError> {
    let (gva, len, write) = access;
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < len {
        let address = gva.wrapping_add(start as u64);
        // At most a page, so the conversion cannot truncate.
        let to_page_end = (PAGE_SIZE - address % PAGE_SIZE) as usize;
        let piece_len = to_page_end.min(len - start);
        if sregs.cr0 & CR0_PG != 0 && (write || user_mode) {
            let translation = walk(memory, sregs, address)?;
            if !translation.permits(write, user_mode, sregs.cr0 & CR0_WP != 0) {
                return Err(CpuAccessError::NotPermitted(address));
            }
        }
        pieces.push(Piece {
            gpa: translate(address)?,
            start,
            len: piece_len,
        });
        start += piece_len;
    }
    Ok(pieces)
}

/// Translates `gva` through the page tables described by `sregs` (CR0, CR3, CR4, EFER).
pub fn translate(
    memory: &impl GuestMemoryBackend,
    sregs: &kvm_sregs,
    gva: u64,
) -> Result<u64, CpuAccessError> {
    walk(memory, sregs, gva).map(|translation| translation.gpa)
}

/// Like [`translate`], also reporting the access rights of the mapping.
pub fn walk(
    memory: &impl GuestMemoryBackend,
    sregs: &kvm_sregs,
    gva: u64,
) -> Result<Translation, CpuAccessError> {
    if sregs.cr0 & CR0_PG == 0 {
        let gpa = if sregs.efer & EFER_LMA != 0 {
            gva
        } else {
            gva & 0xffff_ffff
        };
        return Ok(Translation::identity(gpa));
    }
    if sregs.efer & EFER_LMA != 0 {
        let levels = if sregs.cr4 & CR4_LA57 != 0 { 5 } else { 4 };
        walk_long_mode(memory, sregs.cr3, gva, levels)
    } else if sregs.cr4 & CR4_PAE != 0 {
        walk_pae(memory, sregs.cr3, gva & 0xffff_ffff)
    } else {
        walk_32_bit(
            memory,
            sregs.cr3,
            sregs.cr4 & CR4_PSE != 0,
            gva & 0xffff_ffff,
        )
    }
}

fn read_u64(memory: &impl GuestMemoryBackend, gpa: u64) -> Result<u64, CpuAccessError> {
    memory
        .read_obj::<u64>(GuestAddress(gpa))
        .map_err(|_| CpuAccessError::OutsideMemory(gpa))
}

fn read_u32(memory: &impl GuestMemoryBackend, gpa: u64) -> Result<u32, CpuAccessError> {
    memory
        .read_obj::<u32>(GuestAddress(gpa))
        .map_err(|_| CpuAccessError::OutsideMemory(gpa))
}

/// Rights accumulated over the levels of a walk.
struct Rights {
    writable: bool,
    user: bool,
}

impl Rights {
    fn new() -> Self {
        Rights {
            writable: true,
            user: true,
        }
    }

    fn apply(&mut self, entry: u64) {
        self.writable &= entry & PTE_WRITABLE != 0;
        self.user &= entry & PTE_USER != 0;
    }

    fn translation(&self, gpa: u64) -> Translation {
        Translation {
            gpa,
            writable: self.writable,
            user: self.user,
        }
    }
}

/// Maps `gva` inside a page of `size` bytes whose frame is in `entry`.
fn page_address(entry: u64, size: u64, gva: u64) -> u64 {
    (entry & PHYSICAL_ADDRESS_MASK & !(size - 1)) | (gva & (size - 1))
}

fn walk_long_mode(
    memory: &impl GuestMemoryBackend,
    cr3: u64,
    gva: u64,
    levels: u32,
) -> Result<Translation, CpuAccessError> {
    // The address must be canonical: bits above the top translated bit repeat it.
    let top_bit = 12 + 9 * levels - 1;
    let upper = (gva as i64) >> top_bit;
    if upper != 0 && upper != -1 {
        return Err(CpuAccessError::Unmapped(gva));
    }
    let mut rights = Rights::new();
    let mut table = cr3 & PHYSICAL_ADDRESS_MASK;
    for level in (1..=levels).rev() {
        let shift = 12 + 9 * (level - 1);
        let entry_address = table + ((gva >> shift) & 0x1ff) * 8;
        let entry = read_u64(memory, entry_address)?;
        if entry & PTE_PRESENT == 0 {
            return Err(CpuAccessError::Unmapped(gva));
        }
        rights.apply(entry);
        if level == 1 {
            return Ok(rights.translation(page_address(entry, 1 << 12, gva)));
        }
        if entry & PTE_LARGE != 0 {
            // Large pages exist at the PD (2 MiB) and PDPT (1 GiB) levels only; elsewhere the
            // bit is reserved and the walk faults.
            if level > 3 {
                return Err(CpuAccessError::Unmapped(gva));
            }
            return Ok(rights.translation(page_address(entry, 1 << shift, gva)));
        }
        table = entry & PHYSICAL_ADDRESS_MASK;
    }
    Err(CpuAccessError::Unmapped(gva))
}

fn walk_pae(
    memory: &impl GuestMemoryBackend,
    cr3: u64,
    gva: u64,
) -> Result<Translation, CpuAccessError> {
    let pdpt = cr3 & 0xffff_ffe0;
    let pdpte = read_u64(memory, pdpt + ((gva >> 30) & 3) * 8)?;
    if pdpte & PTE_PRESENT == 0 {
        return Err(CpuAccessError::Unmapped(gva));
    }
    // PDPTEs carry no access rights in PAE paging.
    let mut rights = Rights::new();
    let pd = pdpte & PHYSICAL_ADDRESS_MASK;
    let pde = read_u64(memory, pd + ((gva >> 21) & 0x1ff) * 8)?;
    if pde & PTE_PRESENT == 0 {
        return Err(CpuAccessError::Unmapped(gva));
    }
    rights.apply(pde);
    if pde & PTE_LARGE != 0 {
        return Ok(rights.translation(page_address(pde, 1 << 21, gva)));
    }
    let pt = pde & PHYSICAL_ADDRESS_MASK;
    let pte = read_u64(memory, pt + ((gva >> 12) & 0x1ff) * 8)?;
    if pte & PTE_PRESENT == 0 {
        return Err(CpuAccessError::Unmapped(gva));
    }
    rights.apply(pte);
    Ok(rights.translation(page_address(pte, 1 << 12, gva)))
}

fn walk_32_bit(
    memory: &impl GuestMemoryBackend,
    cr3: u64,
    pse: bool,
    gva: u64,
) -> Result<Translation, CpuAccessError> {
    let pd = cr3 & 0xffff_f000;
    let pde = u64::from(read_u32(memory, pd + ((gva >> 22) & 0x3ff) * 4)?);
    if pde & PTE_PRESENT == 0 {
        return Err(CpuAccessError::Unmapped(gva));
    }
    let mut rights = Rights::new();
    rights.apply(pde);
    if pse && pde & PTE_LARGE != 0 {
        // A 4 MiB page: address bits 22..31 from bits 22..31, bits 32..39 from bits 13..20.
        let frame = (pde & 0xffc0_0000) | (((pde >> 13) & 0xff) << 32);
        return Ok(rights.translation(frame | (gva & 0x3f_ffff)));
    }
    let pt = pde & 0xffff_f000;
    let pte = u64::from(read_u32(memory, pt + ((gva >> 12) & 0x3ff) * 4)?);
    if pte & PTE_PRESENT == 0 {
        return Err(CpuAccessError::Unmapped(gva));
    }
    rights.apply(pte);
    Ok(rights.translation((pte & 0xffff_f000) | (gva & 0xfff)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::emulation::registers::{CR0_PE, CR0_WP};
    use vm_memory::GuestMemoryMmap;

    const P: u64 = PTE_PRESENT;
    const W: u64 = PTE_WRITABLE;
    const U: u64 = PTE_USER;
    const PS: u64 = PTE_LARGE;

    const PML5: u64 = 0x5000;
    const PML4: u64 = 0x1000;
    const PDPT: u64 = 0x2000;
    const PD: u64 = 0x3000;
    const PT: u64 = 0x4000;

    fn memory() -> GuestMemoryMmap<()> {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x100000)]).expect("test memory")
    }

    fn put64(memory: &GuestMemoryMmap<()>, table: u64, index: u64, entry: u64) {
        memory
            .write_obj(entry, GuestAddress(table + index * 8))
            .expect("in memory");
    }

    fn put32(memory: &GuestMemoryMmap<()>, table: u64, index: u64, entry: u32) {
        memory
            .write_obj(entry, GuestAddress(table + index * 4))
            .expect("in memory");
    }

    /// Long-mode tables shared by the 4- and 5-level tests:
    /// - 0x5000..0x5fff: 4 KiB page to 0x7000, writable, user
    /// - 0x6000: not present
    /// - 0x7000: 4 KiB page at a frame with NX and available high bits set, read-only
    /// - 0x20_0000..0x3f_ffff: 2 MiB page to 0x60_0000, read-only, supervisor
    /// - 0x40_0000: PD entry not present
    /// - 0x4000_0000..0x7fff_ffff: 1 GiB page to 0xc000_0000
    /// - 0x80_0000_0000: PML4 entry pointing outside guest memory
    fn long_mode_memory() -> GuestMemoryMmap<()> {
        let memory = memory();
        put64(&memory, PML5, 0, PML4 | P | W | U);
        put64(&memory, PML4, 0, PDPT | P | W | U);
        put64(&memory, PML4, 1, 0x1000_0000 | P | W);
        put64(&memory, PDPT, 0, PD | P | W | U);
        put64(&memory, PDPT, 1, 0xc000_0000 | PS | P | W);
        put64(&memory, PD, 0, PT | P | W | U);
        put64(&memory, PD, 1, 0x0060_0000 | PS | P);
        put64(&memory, PT, 5, 0x7000 | P | W | U);
        put64(&memory, PT, 6, 0x8000 | W | U);
        put64(&memory, PT, 7, (1 << 63) | (0x7ff << 52) | 0x9000 | P);
        memory
    }

    fn long_mode_sregs(cr3: u64, la57: bool) -> kvm_sregs {
        kvm_sregs {
            cr0: CR0_PE | CR0_PG | CR0_WP,
            cr3,
            cr4: CR4_PAE | if la57 { CR4_LA57 } else { 0 },
            efer: EFER_LMA | (1 << 8),
            ..Default::default()
        }
    }

    fn check_long_mode(memory: &GuestMemoryMmap<()>, sregs: &kvm_sregs) {
        let t = walk(memory, sregs, 0x5abc).expect("4 KiB page");
        assert_eq!(
            t,
            Translation {
                gpa: 0x7abc,
                writable: true,
                user: true
            }
        );
        assert_eq!(
            translate(memory, sregs, 0x6000),
            Err(CpuAccessError::Unmapped(0x6000))
        );
        assert_eq!(translate(memory, sregs, 0x7123), Ok(0x9123));
        let t = walk(memory, sregs, 0x20_1234).expect("2 MiB page");
        assert_eq!(
            t,
            Translation {
                gpa: 0x60_1234,
                writable: false,
                user: false
            }
        );
        assert_eq!(translate(memory, sregs, 0x3f_ffff), Ok(0x7f_ffff));
        assert_eq!(
            translate(memory, sregs, 0x40_0000),
            Err(CpuAccessError::Unmapped(0x40_0000))
        );
        assert_eq!(translate(memory, sregs, 0x4000_5678), Ok(0xc000_5678));
        assert_eq!(translate(memory, sregs, 0x7fff_ffff), Ok(0xffff_ffff));
        assert_eq!(
            translate(memory, sregs, 0x80_0000_0000),
            Err(CpuAccessError::OutsideMemory(0x1000_0000))
        );
    }

    #[test]
    fn four_level_paging() {
        let memory = long_mode_memory();
        let sregs = long_mode_sregs(PML4, false);
        check_long_mode(&memory, &sregs);
        // Non-canonical for 48-bit addresses.
        let gva = 0x0000_8000_0000_0000;
        assert_eq!(
            translate(&memory, &sregs, gva),
            Err(CpuAccessError::Unmapped(gva))
        );
        // Canonical upper half, PML4 entry 511 not present.
        let gva = 0xffff_ff80_0000_0000;
        assert_eq!(
            translate(&memory, &sregs, gva),
            Err(CpuAccessError::Unmapped(gva))
        );
    }

    #[test]
    fn five_level_paging() {
        let memory = long_mode_memory();
        let sregs = long_mode_sregs(PML5, true);
        check_long_mode(&memory, &sregs);
        // Canonical with 57 bits (PML5 index 1, not present), not with 48.
        let gva = 0x0001_0000_0000_0000;
        assert_eq!(
            translate(&memory, &sregs, gva),
            Err(CpuAccessError::Unmapped(gva))
        );
        let gva = 0x0100_0000_0000_0000;
        assert_eq!(
            translate(&memory, &sregs, gva),
            Err(CpuAccessError::Unmapped(gva))
        );
    }

    #[test]
    fn large_bit_in_a_pml4_entry_is_not_a_page() {
        let memory = long_mode_memory();
        put64(&memory, PML4, 2, PS | P | W);
        let sregs = long_mode_sregs(PML4, false);
        let gva = 0x100_0000_0000;
        assert_eq!(
            translate(&memory, &sregs, gva),
            Err(CpuAccessError::Unmapped(gva))
        );
    }

    #[test]
    fn paging_off_is_identity() {
        let memory = memory();
        let sregs = kvm_sregs {
            cr0: CR0_PE,
            ..Default::default()
        };
        assert_eq!(translate(&memory, &sregs, 0x1234_5678), Ok(0x1234_5678));
        assert_eq!(
            translate(&memory, &sregs, 0x1_0000_1000),
            Ok(0x1000),
            "32-bit linear addresses"
        );
    }

    #[test]
    fn pae_paging() {
        let memory = long_mode_memory();
        let pdpt = 0x6020; // 32-byte aligned
        put64(&memory, pdpt, 0, PD | P);
        let sregs = kvm_sregs {
            cr0: CR0_PE | CR0_PG,
            cr3: pdpt,
            cr4: CR4_PAE,
            ..Default::default()
        };
        assert_eq!(
            walk(&memory, &sregs, 0x5abc),
            Ok(Translation {
                gpa: 0x7abc,
                writable: true,
                user: true
            })
        );
        assert_eq!(
            translate(&memory, &sregs, 0x6000),
            Err(CpuAccessError::Unmapped(0x6000))
        );
        assert_eq!(
            walk(&memory, &sregs, 0x20_1234),
            Ok(Translation {
                gpa: 0x60_1234,
                writable: false,
                user: false
            })
        );
        let gva = 0x4000_0000;
        assert_eq!(
            translate(&memory, &sregs, gva),
            Err(CpuAccessError::Unmapped(gva)),
            "PDPTE 1 not present"
        );
    }

    #[test]
    fn thirty_two_bit_paging() {
        let memory = memory();
        let pd = 0x9000;
        let pt = 0xa000;
        put32(&memory, pd, 0, (pt | P | W | U) as u32);
        put32(&memory, pd, 1, (0x0080_0000 | PS | P | W) as u32);
        put32(&memory, pd, 2, (0x00c0_0000 | (0x3 << 13) | PS | P) as u32);
        put32(&memory, pt, 5, (0x7000 | P | W | U) as u32);
        put32(&memory, pt, 6, (0x8000 | W) as u32);
        let mut sregs = kvm_sregs {
            cr0: CR0_PE | CR0_PG,
            cr3: pd,
            cr4: CR4_PSE,
            ..Default::default()
        };
        assert_eq!(
            walk(&memory, &sregs, 0x5abc),
            Ok(Translation {
                gpa: 0x7abc,
                writable: true,
                user: true
            })
        );
        assert_eq!(
            translate(&memory, &sregs, 0x6000),
            Err(CpuAccessError::Unmapped(0x6000))
        );
        assert_eq!(
            walk(&memory, &sregs, 0x40_1234),
            Ok(Translation {
                gpa: 0x80_1234,
                writable: true,
                user: false
            })
        );
        assert_eq!(
            translate(&memory, &sregs, 0x80_0010),
            Ok(0x3_00c0_0010),
            "PSE-36 high bits"
        );
        assert_eq!(
            translate(&memory, &sregs, 0xc0_0000),
            Err(CpuAccessError::Unmapped(0xc0_0000))
        );
        // Without CR4.PSE the large bit is ignored and the entry points to a page table.
        sregs.cr4 = 0;
        assert_eq!(
            translate(&memory, &sregs, 0x40_1234),
            Err(CpuAccessError::OutsideMemory(0x80_0004))
        );
    }

    #[test]
    fn permissions() {
        let read_only_kernel = Translation {
            gpa: 0,
            writable: false,
            user: false,
        };
        assert!(read_only_kernel.permits(false, false, true));
        assert!(
            !read_only_kernel.permits(true, false, true),
            "CR0.WP protects supervisor writes"
        );
        assert!(read_only_kernel.permits(true, false, false));
        assert!(
            !read_only_kernel.permits(false, true, false),
            "user access to a kernel page"
        );
        let read_only_user = Translation {
            gpa: 0,
            writable: false,
            user: true,
        };
        assert!(read_only_user.permits(false, true, true));
        assert!(
            !read_only_user.permits(true, true, false),
            "user writes always need R/W"
        );
    }
}
