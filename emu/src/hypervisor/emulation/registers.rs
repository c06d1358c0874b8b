//! Architectural register helpers for recovery: general-purpose registers addressed by their
//! `iced-x86` names, segment bases, the current privilege level and the control-register and
//! RFLAGS bits the recoveries look at.

use iced_x86::Register;
use kvm_bindings::{kvm_regs, kvm_sregs};

/// RFLAGS.CF (carry).
pub const RFLAGS_CF: u64 = 1 << 0;
/// RFLAGS.PF (parity).
pub const RFLAGS_PF: u64 = 1 << 2;
/// RFLAGS.AF (auxiliary carry).
pub const RFLAGS_AF: u64 = 1 << 4;
/// RFLAGS.ZF (zero).
pub const RFLAGS_ZF: u64 = 1 << 6;
/// RFLAGS.SF (sign).
pub const RFLAGS_SF: u64 = 1 << 7;
/// RFLAGS.OF (overflow).
pub const RFLAGS_OF: u64 = 1 << 11;
/// RFLAGS.VM (virtual-8086 mode).
pub const RFLAGS_VM: u64 = 1 << 17;
/// RFLAGS.AC (alignment check / SMAP override).
pub const RFLAGS_AC: u64 = 1 << 18;

/// CR0.PE (protected mode).
pub const CR0_PE: u64 = 1 << 0;
/// CR0.MP (monitor coprocessor).
pub const CR0_MP: u64 = 1 << 1;
/// CR0.EM (x87 emulation).
pub const CR0_EM: u64 = 1 << 2;
/// CR0.TS (task switched).
pub const CR0_TS: u64 = 1 << 3;
/// CR0.NE (native x87 error reporting).
pub const CR0_NE: u64 = 1 << 5;
/// CR0.WP (supervisor write protection).
pub const CR0_WP: u64 = 1 << 16;
/// CR0.PG (paging).
pub const CR0_PG: u64 = 1 << 31;

/// CR4.PSE (4 MiB pages in 32-bit paging).
pub const CR4_PSE: u64 = 1 << 4;
/// CR4.PAE (physical address extension).
pub const CR4_PAE: u64 = 1 << 5;
/// CR4.OSFXSR (the OS supports FXSAVE/FXRSTOR and SSE).
pub const CR4_OSFXSR: u64 = 1 << 9;
/// CR4.LA57 (5-level paging).
pub const CR4_LA57: u64 = 1 << 12;

/// EFER.LMA (long mode active).
pub const EFER_LMA: u64 = 1 << 10;

/// The 64-bit register with the given number (0 = RAX ... 15 = R15).
fn gpr64(regs: &kvm_regs, number: usize) -> Option<u64> {
    Some(match number {
        0 => regs.rax,
        1 => regs.rcx,
        2 => regs.rdx,
        3 => regs.rbx,
        4 => regs.rsp,
        5 => regs.rbp,
        6 => regs.rsi,
        7 => regs.rdi,
        8 => regs.r8,
        9 => regs.r9,
        10 => regs.r10,
        11 => regs.r11,
        12 => regs.r12,
        13 => regs.r13,
        14 => regs.r14,
        15 => regs.r15,
        _ => return None,
    })
}

fn gpr64_mut(regs: &mut kvm_regs, number: usize) -> Option<&mut u64> {
    Some(match number {
        0 => &mut regs.rax,
        1 => &mut regs.rcx,
        2 => &mut regs.rdx,
        3 => &mut regs.rbx,
        4 => &mut regs.rsp,
        5 => &mut regs.rbp,
        6 => &mut regs.rsi,
        7 => &mut regs.rdi,
        8 => &mut regs.r8,
        9 => &mut regs.r9,
        10 => &mut regs.r10,
        11 => &mut regs.r11,
        12 => &mut regs.r12,
        13 => &mut regs.r13,
        14 => &mut regs.r14,
        15 => &mut regs.r15,
        _ => return None,
    })
}

/// Where an 8-bit register lives: the 64-bit register number and the bit shift (8 for AH..BH).
fn gpr8_location(reg: Register) -> Option<(usize, u32)> {
    // iced numbers 8-bit registers AL CL DL BL AH CH DH BH SPL BPL SIL DIL R8L..R15L as 0..19.
    match reg.number() {
        n @ 0..=3 => Some((n, 0)),
        n @ 4..=7 => Some((n - 4, 8)),
        n @ 8..=19 => Some((n - 4, 0)),
        _ => None,
    }
}

/// Reads a general-purpose register of any size; `None` for anything that is not a GPR.
pub fn read_gpr(regs: &kvm_regs, reg: Register) -> Option<u64> {
    if reg.is_gpr8() {
        let (number, shift) = gpr8_location(reg)?;
        return Some((gpr64(regs, number)? >> shift) & 0xff);
    }
    let mask = if reg.is_gpr16() {
        0xffff
    } else if reg.is_gpr32() {
        0xffff_ffff
    } else if reg.is_gpr64() {
        u64::MAX
    } else {
        return None;
    };
    Some(gpr64(regs, reg.number())? & mask)
}

/// Writes a general-purpose register with the architecture's merge rules: 8- and 16-bit
/// writes keep the other bits, 32-bit writes zero-extend into the 64-bit register. Returns
/// `false` (and changes nothing) for a register that is not a GPR.
pub fn write_gpr(regs: &mut kvm_regs, reg: Register, value: u64) -> bool {
    if reg.is_gpr8() {
        let Some((number, shift)) = gpr8_location(reg) else {
            return false;
        };
        let Some(slot) = gpr64_mut(regs, number) else {
            return false;
        };
        *slot = (*slot & !(0xff << shift)) | ((value & 0xff) << shift);
        return true;
    }
    let Some(slot) = gpr64_mut(regs, reg.number()) else {
        return false;
    };
    if reg.is_gpr16() {
        *slot = (*slot & !0xffff) | (value & 0xffff);
    } else if reg.is_gpr32() {
        *slot = value & 0xffff_ffff;
    } else if reg.is_gpr64() {
        *slot = value;
    } else {
        return false;
    }
    true
}

/// The base address of a segment register as used for a linear address. In 64-bit mode only
/// FS and GS have a base; ES, CS, SS and DS count as 0.
pub fn segment_base(sregs: &kvm_sregs, reg: Register, bitness: u32) -> Option<u64> {
    let segment = match reg {
        Register::ES => &sregs.es,
        Register::CS => &sregs.cs,
        Register::SS => &sregs.ss,
        Register::DS => &sregs.ds,
        Register::FS => &sregs.fs,
        Register::GS => &sregs.gs,
        _ => return None,
    };
    if bitness == 64 && !matches!(reg, Register::FS | Register::GS) {
        return Some(0);
    }
    Some(segment.base)
}

/// Whether the vCPU is in protected mode (including long mode) and not in virtual-8086 mode.
pub fn protected_mode(regs: &kvm_regs, sregs: &kvm_sregs) -> bool {
    sregs.cr0 & CR0_PE != 0 && regs.rflags & RFLAGS_VM == 0
}

/// The current privilege level: 0 in real mode, 3 in virtual-8086 mode, otherwise CS.RPL
/// (the processor keeps CS.RPL equal to CPL).
pub fn cpl(regs: &kvm_regs, sregs: &kvm_sregs) -> u8 {
    if sregs.cr0 & CR0_PE == 0 {
        0
    } else if regs.rflags & RFLAGS_VM != 0 {
        3
    } else {
        (sregs.cs.selector & 3) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_regs() -> kvm_regs {
        kvm_regs {
            rax: 0x1111_2222_3333_4444,
            rcx: 0xaaaa_bbbb_cccc_dddd,
            rsp: 0x0102_0304_0506_0708,
            r15: 0xffff_0000_ffff_0000,
            ..Default::default()
        }
    }

    #[test]
    fn reads_every_register_size() {
        let regs = sample_regs();
        assert_eq!(read_gpr(&regs, Register::RAX), Some(0x1111_2222_3333_4444));
        assert_eq!(read_gpr(&regs, Register::EAX), Some(0x3333_4444));
        assert_eq!(read_gpr(&regs, Register::AX), Some(0x4444));
        assert_eq!(read_gpr(&regs, Register::AL), Some(0x44));
        assert_eq!(read_gpr(&regs, Register::AH), Some(0x44));
        assert_eq!(read_gpr(&regs, Register::CH), Some(0xdd));
        assert_eq!(read_gpr(&regs, Register::SPL), Some(0x08));
        assert_eq!(read_gpr(&regs, Register::R15D), Some(0xffff_0000));
        assert_eq!(read_gpr(&regs, Register::R15L), Some(0x00));
        assert_eq!(read_gpr(&regs, Register::XMM0), None);
        assert_eq!(read_gpr(&regs, Register::RIP), None);
    }

    #[test]
    fn writes_follow_the_merge_rules() {
        let mut regs = sample_regs();
        assert!(write_gpr(&mut regs, Register::EAX, 0xdead_beef_1234));
        assert_eq!(regs.rax, 0xbeef_1234);
        assert!(write_gpr(&mut regs, Register::CX, 0x1234_5678));
        assert_eq!(regs.rcx, 0xaaaa_bbbb_cccc_5678);
        assert!(write_gpr(&mut regs, Register::CH, 0x99));
        assert_eq!(regs.rcx, 0xaaaa_bbbb_cccc_9978);
        assert!(write_gpr(&mut regs, Register::R15, 7));
        assert_eq!(regs.r15, 7);
        assert!(!write_gpr(&mut regs, Register::XMM1, 7));
    }

    #[test]
    fn segment_bases_depend_on_the_mode() {
        let mut sregs = kvm_sregs::default();
        sregs.ds.base = 0x1000;
        sregs.gs.base = 0xffff_8880_0000_0000;
        assert_eq!(segment_base(&sregs, Register::DS, 64), Some(0));
        assert_eq!(
            segment_base(&sregs, Register::GS, 64),
            Some(0xffff_8880_0000_0000)
        );
        assert_eq!(segment_base(&sregs, Register::DS, 32), Some(0x1000));
        assert_eq!(segment_base(&sregs, Register::RAX, 32), None);
    }

    #[test]
    fn cpl_follows_the_mode() {
        let mut regs = kvm_regs::default();
        let mut sregs = kvm_sregs::default();
        sregs.cs.selector = 0x33;
        assert_eq!(cpl(&regs, &sregs), 0, "real mode");
        sregs.cr0 = CR0_PE;
        assert_eq!(cpl(&regs, &sregs), 3);
        sregs.cs.selector = 0x10;
        assert_eq!(cpl(&regs, &sregs), 0);
        regs.rflags = RFLAGS_VM;
        assert_eq!(cpl(&regs, &sregs), 3, "virtual-8086 mode");
        assert!(!protected_mode(&regs, &sregs));
    }
}
