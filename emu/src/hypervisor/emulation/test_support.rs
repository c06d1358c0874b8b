//! Test doubles for the emulation module: [`FakeCpu`], a [`GuestCpu`] over a flat byte
//! vector with identity address translation that records the exceptions it is asked to
//! inject, and a builder for emulation-failure exit data.

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};

use super::registers::{CR0_MP, CR0_NE, CR0_PE, CR0_PG, CR0_WP, CR4_OSFXSR, CR4_PAE, EFER_LMA};
use super::{CpuAccessError, GuestCpu, DEFAULT_MXCSR_MASK};

/// Guest memory size of a [`FakeCpu`]: everything above is unmapped.
pub const MEMORY_SIZE: usize = 0x10000;
/// Where the fake vCPUs start executing.
pub const CODE_ADDR: u64 = 0x1000;

const EFER_LME: u64 = 1 << 8;

/// A vCPU made of plain fields; memory is `memory` at guest-virtual address 0.
#[derive(Debug, Clone)]
pub struct FakeCpu {
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub mxcsr: u32,
    pub mxcsr_mask: u32,
    pub fsw: u16,
    pub fcw: u16,
    pub memory: Vec<u8>,
    /// Every `inject_exception` call, in order.
    pub injected: Vec<(u8, Option<u32>)>,
}

fn segment(selector: u16, type_: u8, long: bool, db: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: (selector & 3) as u8,
        db: u8::from(db),
        s: 1,
        l: u8::from(long),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

impl FakeCpu {
    fn with_sregs(sregs: kvm_sregs) -> Self {
        FakeCpu {
            regs: kvm_regs {
                rip: CODE_ADDR,
                rflags: 0x2,
                ..Default::default()
            },
            sregs,
            mxcsr: 0x1f80,
            mxcsr_mask: DEFAULT_MXCSR_MASK,
            fsw: 0,
            fcw: 0x037f,
            memory: vec![0; MEMORY_SIZE],
            injected: Vec::new(),
        }
    }

    /// A 64-bit kernel-mode vCPU (CPL 0, flat segments, paging on).
    pub fn long_mode() -> Self {
        let mut sregs = kvm_sregs {
            cr0: CR0_PE | CR0_MP | CR0_NE | CR0_WP | CR0_PG,
            cr4: CR4_PAE | CR4_OSFXSR,
            efer: EFER_LME | EFER_LMA,
            ..Default::default()
        };
        sregs.cs = segment(0x10, 0xb, true, false);
        sregs.ds = segment(0x18, 0x3, false, true);
        sregs.es = sregs.ds;
        sregs.ss = sregs.ds;
        sregs.fs = sregs.ds;
        sregs.gs = sregs.ds;
        Self::with_sregs(sregs)
    }

    /// A 32-bit protected-mode kernel vCPU without paging.
    pub fn protected_mode_32() -> Self {
        let mut sregs = kvm_sregs {
            cr0: CR0_PE | CR0_MP | CR0_NE,
            cr4: CR4_OSFXSR,
            ..Default::default()
        };
        sregs.cs = segment(0x08, 0xb, false, true);
        sregs.ds = segment(0x10, 0x3, false, true);
        sregs.es = sregs.ds;
        sregs.ss = sregs.ds;
        sregs.fs = sregs.ds;
        sregs.gs = sregs.ds;
        Self::with_sregs(sregs)
    }

    /// A real-mode vCPU with all segment bases 0.
    pub fn real_mode() -> Self {
        let mut sregs = kvm_sregs {
            cr4: CR4_OSFXSR,
            ..Default::default()
        };
        let real = kvm_segment {
            limit: 0xffff,
            type_: 0x3,
            present: 1,
            s: 1,
            ..Default::default()
        };
        sregs.cs = kvm_segment { type_: 0xb, ..real };
        sregs.ds = real;
        sregs.es = real;
        sregs.ss = real;
        sregs.fs = real;
        sregs.gs = real;
        Self::with_sregs(sregs)
    }

    /// Switches to CPL 3 by giving CS and SS user selectors.
    pub fn enter_user_mode(&mut self) {
        self.sregs.cs.selector |= 3;
        self.sregs.cs.dpl = 3;
        self.sregs.ss.selector |= 3;
        self.sregs.ss.dpl = 3;
    }

    pub fn write_bytes(&mut self, addr: u64, bytes: &[u8]) {
        let start = addr as usize;
        self.memory[start..start + bytes.len()].copy_from_slice(bytes);
    }

    pub fn read_bytes(&self, addr: u64, len: usize) -> Vec<u8> {
        let start = addr as usize;
        self.memory[start..start + len].to_vec()
    }

    /// Puts instruction bytes at the current RIP (segment bases are 0 in these vCPUs).
    pub fn place_code(&mut self, bytes: &[u8]) {
        let rip = self.regs.rip;
        self.write_bytes(rip, bytes);
    }

    fn check_range(&self, gva: u64, len: usize) -> Result<usize, CpuAccessError> {
        let size = self.memory.len() as u64;
        if gva >= size {
            return Err(CpuAccessError::Unmapped(gva));
        }
        match gva.checked_add(len as u64) {
            Some(end) if end <= size => Ok(gva as usize),
            _ => Err(CpuAccessError::Unmapped(size)),
        }
    }
}

impl GuestCpu for FakeCpu {
    fn regs(&self) -> Result<kvm_regs, CpuAccessError> {
        Ok(self.regs)
    }

    fn set_regs(&mut self, regs: &kvm_regs) -> Result<(), CpuAccessError> {
        self.regs = *regs;
        Ok(())
    }

    fn sregs(&self) -> Result<kvm_sregs, CpuAccessError> {
        Ok(self.sregs)
    }

    fn mxcsr(&self) -> Result<u32, CpuAccessError> {
        Ok(self.mxcsr)
    }

    fn set_mxcsr(&mut self, value: u32) -> Result<(), CpuAccessError> {
        self.mxcsr = value;
        Ok(())
    }

    fn mxcsr_mask(&self) -> Result<u32, CpuAccessError> {
        Ok(self.mxcsr_mask)
    }

    fn fpu_status_word(&self) -> Result<u16, CpuAccessError> {
        Ok(self.fsw)
    }

    fn fpu_control_word(&self) -> Result<u16, CpuAccessError> {
        Ok(self.fcw)
    }

    fn read_virtual(&self, gva: u64, buf: &mut [u8]) -> Result<(), CpuAccessError> {
        let start = self.check_range(gva, buf.len())?;
        buf.copy_from_slice(&self.memory[start..start + buf.len()]);
        Ok(())
    }

    fn write_virtual(&mut self, gva: u64, buf: &[u8]) -> Result<(), CpuAccessError> {
        let start = self.check_range(gva, buf.len())?;
        self.memory[start..start + buf.len()].copy_from_slice(buf);
        Ok(())
    }

    fn inject_exception(
        &mut self,
        vector: u8,
        error_code: Option<u32>,
    ) -> Result<(), CpuAccessError> {
        self.injected.push((vector, error_code));
        Ok(())
    }
}

/// Exit data laid out as KVM writes it for an emulation failure with instruction bytes:
/// flags, then the length byte and 15 bytes padded with `0x90`, then five words of exit info.
pub fn exit_data_with_bytes(bytes: &[u8]) -> Vec<u64> {
    assert!(bytes.len() <= 15, "at most 15 instruction bytes");
    let mut raw = [0x90u8; 16];
    raw[0] = bytes.len() as u8;
    raw[1..=bytes.len()].copy_from_slice(bytes);
    let mut data = vec![1];
    for chunk in raw.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        data.push(u64::from_le_bytes(word));
    }
    data.extend([0u64; 5]);
    data
}
