//! Initial vCPU state for the 64-bit Linux entry: page tables, GDT/IDT, segment and control
//! registers, general registers, FPU, MSRs and the local APIC's LINT pins.
//!
//! The boot vCPU starts in long mode with the low 4 GiB identity-mapped; the others wait for the
//! INIT/SIPI sequence the guest sends through the in-kernel local APIC.

use super::layout::{BOOT_STACK_POINTER, GDT_START, IDT_START, PDPT_START, PD_START, PML4_START};
use kvm_bindings::{kvm_fpu, kvm_lapic_state, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// GDT entries: null, 64-bit code, data, TSS.
const GDT_TABLE: [u64; 4] = [
    gdt_entry(0, 0, 0),
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x808b, 0, 0xfffff),
];
const CODE_SELECTOR: u16 = 0x08;
const DATA_SELECTOR: u16 = 0x10;
const TSS_SELECTOR: u16 = 0x18;

const CR0_PE: u64 = 1 << 0;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

const PTE_PRESENT_RW: u64 = 0x3;
const PDE_2M_PAGE: u64 = 0x83;

/// Why the boot-time vCPU state could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write boot page tables or descriptor tables to guest memory: {0}")]
pub struct RegsError(String);

/// A GDT descriptor from packed flags (as in the access/flags bytes), base and limit.
const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((flags as u64 & 0x0000_f0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// The KVM segment register for a GDT descriptor.
fn segment(selector: u16, descriptor: u64) -> kvm_segment {
    let bit = |n: u32| ((descriptor >> n) & 1) as u8;
    let limit = ((descriptor & 0xffff) | ((descriptor >> 32) & 0xf_0000)) as u32;
    let granular = bit(55) == 1;
    kvm_segment {
        base: ((descriptor >> 16) & 0xff_ffff) | ((descriptor >> 32) & 0xff00_0000),
        limit: if granular {
            (limit << 12) | 0xfff
        } else {
            limit
        },
        selector,
        type_: ((descriptor >> 40) & 0xf) as u8,
        present: bit(47),
        dpl: ((descriptor >> 45) & 3) as u8,
        db: bit(54),
        s: bit(44),
        l: bit(53),
        g: bit(55),
        avl: bit(52),
        unusable: 0,
        padding: 0,
    }
}

/// Writes the GDT, an empty IDT and the identity-mapping page tables.
pub fn write_boot_tables(memory: &GuestMemoryMmap) -> Result<(), RegsError> {
    let w = |value: u64, addr: u64| {
        memory
            .write_obj(value, GuestAddress(addr))
            .map_err(|e| RegsError(e.to_string()))
    };
    for (i, entry) in GDT_TABLE.iter().enumerate() {
        w(*entry, GDT_START + 8 * i as u64)?;
    }
    w(0, IDT_START)?;
    w(PDPT_START | PTE_PRESENT_RW, PML4_START)?;
    for gib in 0..4u64 {
        let pd = PD_START + gib * 0x1000;
        w(pd | PTE_PRESENT_RW, PDPT_START + gib * 8)?;
        for i in 0..512u64 {
            w(((gib << 30) | (i << 21)) | PDE_2M_PAGE, pd + i * 8)?;
        }
    }
    Ok(())
}

/// Long-mode segment and control registers for the boot vCPU.
pub fn boot_sregs(mut sregs: kvm_sregs) -> kvm_sregs {
    sregs.gdt.base = GDT_START;
    sregs.gdt.limit = (GDT_TABLE.len() * 8 - 1) as u16;
    sregs.idt.base = IDT_START;
    sregs.idt.limit = 7;
    sregs.cs = segment(CODE_SELECTOR, GDT_TABLE[1]);
    let data = segment(DATA_SELECTOR, GDT_TABLE[2]);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment(TSS_SELECTOR, GDT_TABLE[3]);
    sregs.cr3 = PML4_START;
    sregs.cr4 |= CR4_PAE;
    sregs.cr0 |= CR0_PE | CR0_ET | CR0_NE | CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
    sregs
}

/// General registers for the 64-bit entry: RIP at the entry, RSI at the zero page.
pub fn boot_regs(entry: GuestAddress, boot_params: GuestAddress) -> kvm_regs {
    kvm_regs {
        rip: entry.0,
        rsp: BOOT_STACK_POINTER,
        rbp: BOOT_STACK_POINTER,
        rsi: boot_params.0,
        rflags: 0x2,
        ..Default::default()
    }
}

/// The FPU at reset.
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

/// MSRs every vCPU starts with: SYSCALL/SYSENTER state cleared, fast strings on, MTRRs enabled
/// with write-back as the default type.
pub fn boot_msrs() -> Vec<kvm_msr_entry> {
    const MSR_IA32_SYSENTER_CS: u32 = 0x174;
    const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
    const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
    const MSR_STAR: u32 = 0xc000_0081;
    const MSR_LSTAR: u32 = 0xc000_0082;
    const MSR_CSTAR: u32 = 0xc000_0083;
    const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
    const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
    const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
    const MISC_ENABLE_FAST_STRING: u64 = 1;
    const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
    const MTRR_ENABLE_WRITE_BACK: u64 = (1 << 11) | 6;
    [
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_LSTAR, 0),
        (MSR_CSTAR, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WRITE_BACK),
    ]
    .into_iter()
    .map(|(index, data)| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    })
    .collect()
}

/// Sets LINT0 to ExtINT (the PIC's output) and LINT1 to NMI, as a PC BIOS leaves them.
pub fn configure_lint(mut lapic: kvm_lapic_state) -> kvm_lapic_state {
    const APIC_LVT0: usize = 0x350;
    const APIC_LVT1: usize = 0x360;
    const DELIVERY_MODE_MASK: u32 = 0x700;
    const MODE_EXTINT: u32 = 0x7 << 8;
    const MODE_NMI: u32 = 0x4 << 8;
    let mut update = |offset: usize, mode: u32| {
        let reg = &mut lapic.regs[offset..offset + 4];
        let bytes: [u8; 4] = [reg[0] as u8, reg[1] as u8, reg[2] as u8, reg[3] as u8];
        let value = (u32::from_le_bytes(bytes) & !DELIVERY_MODE_MASK) | mode;
        for (dst, src) in reg.iter_mut().zip(value.to_le_bytes()) {
            *dst = src as _;
        }
    };
    update(APIC_LVT0, MODE_EXTINT);
    update(APIC_LVT1, MODE_NMI);
    lapic
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_segments_decode() {
        let cs = segment(CODE_SELECTOR, GDT_TABLE[1]);
        assert_eq!(
            (cs.l, cs.db, cs.present, cs.s, cs.type_, cs.g),
            (1, 0, 1, 1, 0xb, 1)
        );
        assert_eq!(cs.limit, 0xffff_ffff);
        let ds = segment(DATA_SELECTOR, GDT_TABLE[2]);
        assert_eq!((ds.l, ds.db, ds.type_), (0, 1, 0x3));
        let tr = segment(TSS_SELECTOR, GDT_TABLE[3]);
        assert_eq!((tr.type_, tr.s, tr.present), (0xb, 0, 1));
    }

    #[test]
    fn page_tables_identity_map_4g() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        write_boot_tables(&mem).unwrap();
        let pml4: u64 = mem.read_obj(GuestAddress(PML4_START)).unwrap();
        assert_eq!(pml4 & !0xfff, PDPT_START);
        let pdpt3: u64 = mem.read_obj(GuestAddress(PDPT_START + 24)).unwrap();
        let pd3 = pdpt3 & !0xfff;
        let last: u64 = mem.read_obj(GuestAddress(pd3 + 511 * 8)).unwrap();
        assert_eq!(last & !0xfff, (4u64 << 30) - (2 << 20));
        assert_eq!(last & 0x83, 0x83);
    }

    #[test]
    fn lint_pins_are_programmed() {
        let lapic = configure_lint(kvm_lapic_state::default());
        assert_eq!(lapic.regs[0x351] as u8, 0x07);
        assert_eq!(lapic.regs[0x361] as u8, 0x04);
    }
}
