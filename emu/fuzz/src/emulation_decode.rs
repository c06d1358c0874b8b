//! Target `emulation_decode`: the emulation-failure path KVM's `KVM_EXIT_INTERNAL_ERROR` takes
//! ([`handle_emulation_failure`]): instruction fetch through the guest's page tables
//! ([`emu::hypervisor::emulation::page_walk`]), decoding, and every recovery handler, on a
//! [`FuzzCpu`] whose registers, exit data and guest memory the fuzzer chooses.
//!
//! Input layout (numbers little-endian):
//!
//! | bytes | meaning |
//! |---|---|
//! | 0 | mode: `b % 6`, see [`mode`] |
//! | 1 | flags: [`flag`] |
//! | 2 | exit data words: `b % 4` (0: none; else a flags word with the instruction-bytes flag, then `b % 4 - 1` words of length byte and bytes), taken from the bytes after the header |
//! | 3 | reserved |
//! | 4..8 | MXCSR |
//! | 8..10 | x87 status word; 10..12 x87 control word |
//! | 12..20 | RIP; 20..28 RFLAGS; 28..36 CR3 |
//! | 36..164 | RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP, R8..R15 |
//! | 164.. | the exit data words (8 bytes each), then guest memory from physical address 0 (at most [`MEMORY_SIZE`] bytes; the rest is zero) |
//!
//! Missing header bytes read as zero. Property: nothing panics, and the outcome is either
//! [`Outcome::Recovered`] or [`Outcome::Failed`] with a report.

use emu::hypervisor::emulation::page_walk::{self, Piece};
use emu::hypervisor::emulation::registers::{
    CR0_MP, CR0_NE, CR0_PE, CR0_PG, CR0_WP, CR4_LA57, CR4_OSFXSR, CR4_PAE, CR4_PSE, EFER_LMA,
};
use emu::hypervisor::emulation::{handle_emulation_failure, CpuAccessError, GuestCpu, Outcome};
use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Guest RAM, from physical address 0.
pub const MEMORY_SIZE: usize = 1 << 20;
/// Header bytes before the exit data and memory image.
pub const HEADER_LEN: usize = 164;
const EFER_LME: u64 = 1 << 8;
const EFER_NXE: u64 = 1 << 11;
/// `KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES`.
pub const EXIT_FLAG_INSTRUCTION_BYTES: u64 = 1;

/// CPU modes (header byte 0, modulo 6).
pub mod mode {
    /// Real mode.
    pub const REAL: u8 = 0;
    /// 32-bit protected mode, paging off.
    pub const PROTECTED: u8 = 1;
    /// 32-bit protected mode with two-level paging.
    pub const PAGED_32: u8 = 2;
    /// 32-bit protected mode with PAE paging.
    pub const PAE: u8 = 3;
    /// Long mode, four-level paging.
    pub const LONG: u8 = 4;
    /// Long mode, five-level paging (LA57).
    pub const LONG_LA57: u8 = 5;
}

/// Bits of header byte 1.
pub mod flag {
    /// CR0.WP set.
    pub const WP: u8 = 1;
    /// CPL 3 (user-mode CS and SS).
    pub const USER: u8 = 2;
    /// CR4.PSE set (large pages in two-level paging).
    pub const PSE: u8 = 4;
    /// EFER.NXE set.
    pub const NXE: u8 = 8;
    /// CR4.OSFXSR clear (SSE instructions raise #UD).
    pub const NO_OSFXSR: u8 = 16;
    /// A failing `inject_exception` (as KVM fails when one is already queued).
    pub const INJECT_FAILS: u8 = 32;
}

/// A vCPU of plain fields over fuzzer-written guest memory; guest-virtual addresses go through
/// emu's own page walk, and rights are checked as [`emu::hypervisor::emulation::KvmGuestCpu`]
/// checks them.
pub struct FuzzCpu {
    /// General-purpose registers, RIP, RFLAGS.
    pub regs: kvm_regs,
    /// Segments, control registers, EFER.
    pub sregs: kvm_sregs,
    /// MXCSR.
    pub mxcsr: u32,
    /// x87 status word.
    pub fsw: u16,
    /// x87 control word.
    pub fcw: u16,
    /// Guest RAM.
    pub memory: GuestMemoryMmap,
    /// Whether `inject_exception` fails.
    pub inject_fails: bool,
    /// Every exception injected.
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

/// The segment and control registers of `mode` with `flags`.
pub fn sregs_for(mode: u8, flags: u8, cr3: u64) -> kvm_sregs {
    let mut sregs = kvm_sregs {
        cr3,
        cr4: CR4_OSFXSR,
        ..Default::default()
    };
    let (cs, data) = match mode % 6 {
        mode::REAL => {
            let real = kvm_segment {
                limit: 0xffff,
                type_: 0x3,
                present: 1,
                s: 1,
                ..Default::default()
            };
            (kvm_segment { type_: 0xb, ..real }, real)
        }
        mode::PROTECTED | mode::PAGED_32 | mode::PAE => {
            sregs.cr0 = CR0_PE | CR0_MP | CR0_NE;
            if mode % 6 != mode::PROTECTED {
                sregs.cr0 |= CR0_PG;
            }
            if mode % 6 == mode::PAE {
                sregs.cr4 |= CR4_PAE;
            }
            (
                segment(0x08, 0xb, false, true),
                segment(0x10, 0x3, false, true),
            )
        }
        _ => {
            sregs.cr0 = CR0_PE | CR0_MP | CR0_NE | CR0_PG;
            sregs.cr4 |= CR4_PAE;
            if mode % 6 == mode::LONG_LA57 {
                sregs.cr4 |= CR4_LA57;
            }
            sregs.efer = EFER_LME | EFER_LMA;
            (
                segment(0x10, 0xb, true, false),
                segment(0x18, 0x3, false, true),
            )
        }
    };
    sregs.cs = cs;
    sregs.ds = data;
    sregs.es = data;
    sregs.ss = data;
    sregs.fs = data;
    sregs.gs = data;
    if flags & flag::WP != 0 {
        sregs.cr0 |= CR0_WP;
    }
    if flags & flag::PSE != 0 {
        sregs.cr4 |= CR4_PSE;
    }
    if flags & flag::NXE != 0 {
        sregs.efer |= EFER_NXE;
    }
    if flags & flag::NO_OSFXSR != 0 {
        sregs.cr4 &= !CR4_OSFXSR;
    }
    if flags & flag::USER != 0 && sregs.cr0 & CR0_PE != 0 {
        sregs.cs.selector |= 3;
        sregs.cs.dpl = 3;
        sregs.ss.selector |= 3;
        sregs.ss.dpl = 3;
    }
    sregs
}

impl FuzzCpu {
    fn user_mode(&self) -> bool {
        self.sregs.cr0 & CR0_PE != 0 && self.sregs.cs.dpl == 3
    }

    /// Translates and checks every page of `gva..gva + len` before anything is accessed, with
    /// emu's own page walk, as `KvmGuestCpu` does when KVM cannot translate.
    fn pieces(&self, gva: u64, len: usize, write: bool) -> Result<Vec<Piece>, CpuAccessError> {
        page_walk::split_access(
            &self.memory,
            &self.sregs,
            self.user_mode(),
            (gva, len, write),
            |address| page_walk::translate(&self.memory, &self.sregs, address),
        )
    }
}

impl GuestCpu for FuzzCpu {
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

    fn fpu_status_word(&self) -> Result<u16, CpuAccessError> {
        Ok(self.fsw)
    }

    fn fpu_control_word(&self) -> Result<u16, CpuAccessError> {
        Ok(self.fcw)
    }

    fn read_virtual(&self, gva: u64, buf: &mut [u8]) -> Result<(), CpuAccessError> {
        for Piece { gpa, start, len } in self.pieces(gva, buf.len(), false)? {
            self.memory
                .read_slice(&mut buf[start..start + len], GuestAddress(gpa))
                .map_err(|_| CpuAccessError::OutsideMemory(gpa))?;
        }
        Ok(())
    }

    fn write_virtual(&mut self, gva: u64, buf: &[u8]) -> Result<(), CpuAccessError> {
        let pieces = self.pieces(gva, buf.len(), true)?;
        if let Some(piece) = pieces
            .iter()
            .find(|piece| !self.memory.check_range(GuestAddress(piece.gpa), piece.len))
        {
            return Err(CpuAccessError::OutsideMemory(piece.gpa));
        }
        for Piece { gpa, start, len } in pieces {
            self.memory
                .write_slice(&buf[start..start + len], GuestAddress(gpa))
                .map_err(|_| CpuAccessError::OutsideMemory(gpa))?;
        }
        Ok(())
    }

    fn inject_exception(
        &mut self,
        vector: u8,
        error_code: Option<u32>,
    ) -> Result<(), CpuAccessError> {
        if self.inject_fails {
            return Err(CpuAccessError::Ioctl("KVM_SET_VCPU_EVENTS: busy".into()));
        }
        self.injected.push((vector, error_code));
        Ok(())
    }
}

/// The decoded header, exit data and memory image of an input.
pub fn build(data: &[u8]) -> (FuzzCpu, Vec<u64>) {
    let mut raw = [0u8; HEADER_LEN];
    let n = data.len().min(HEADER_LEN);
    raw[..n].copy_from_slice(&data[..n]);
    let u16_at = |i: usize| u16::from_le_bytes([raw[i], raw[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([raw[i], raw[i + 1], raw[i + 2], raw[i + 3]]);
    let u64_at = |i: usize| u64::from(u32_at(i)) | u64::from(u32_at(i + 4)) << 32;
    let gpr = |i: usize| u64_at(36 + 8 * i);
    let regs = kvm_regs {
        rax: gpr(0),
        rbx: gpr(1),
        rcx: gpr(2),
        rdx: gpr(3),
        rsi: gpr(4),
        rdi: gpr(5),
        rsp: gpr(6),
        rbp: gpr(7),
        r8: gpr(8),
        r9: gpr(9),
        r10: gpr(10),
        r11: gpr(11),
        r12: gpr(12),
        r13: gpr(13),
        r14: gpr(14),
        r15: gpr(15),
        rip: u64_at(12),
        rflags: u64_at(20),
    };
    let rest = data.get(HEADER_LEN..).unwrap_or(&[]);
    let words = usize::from(raw[2] % 4);
    let mut exit_data = Vec::new();
    let mut image = rest;
    if words > 0 {
        exit_data.push(EXIT_FLAG_INSTRUCTION_BYTES);
        for i in 0..words - 1 {
            let mut word = [0u8; 8];
            let chunk = rest.get(8 * i..).unwrap_or(&[]);
            let k = chunk.len().min(8);
            word[..k].copy_from_slice(&chunk[..k]);
            exit_data.push(u64::from_le_bytes(word));
        }
        image = rest.get(8 * (words - 1)..).unwrap_or(&[]);
    }
    let image = &image[..image.len().min(MEMORY_SIZE)];
    let memory =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEMORY_SIZE)]).expect("fuzz guest memory");
    memory
        .write_slice(image, GuestAddress(0))
        .expect("the image fits in guest memory");
    let cpu = FuzzCpu {
        regs,
        sregs: sregs_for(raw[0], raw[1], u64_at(28)),
        mxcsr: u32_at(4),
        fsw: u16_at(8),
        fcw: u16_at(10),
        memory,
        inject_fails: raw[1] & flag::INJECT_FAILS != 0,
        injected: Vec::new(),
    };
    (cpu, exit_data)
}

/// Runs one input. Never panics on any input; a panic is a bug in emu.
pub fn run(data: &[u8]) -> (Outcome, FuzzCpu) {
    let (mut cpu, exit_data) = build(data);
    let outcome = handle_emulation_failure(&mut cpu, &exit_data);
    if let Outcome::Failed(report) = &outcome {
        // The report must render.
        let _ = report.to_string();
    }
    (outcome, cpu)
}

/// Well-formed inputs for the seed corpus (`seeds/emulation_decode/`): instructions Cove
/// recovers, in the modes it meets them, plus one it does not.
pub mod seeds {
    use super::{flag, mode, HEADER_LEN};

    /// One seed input and whether it must recover.
    pub struct Seed {
        /// File name under `seeds/emulation_decode/`.
        pub name: &'static str,
        /// The input.
        pub bytes: Vec<u8>,
        /// Whether the outcome must be `Recovered`.
        pub recovers: bool,
    }

    struct Builder {
        header: [u8; HEADER_LEN],
        exit: Vec<u8>,
        image: Vec<u8>,
    }

    const CODE: u64 = 0x1000;
    const DATA: u64 = 0x2000;
    /// Page tables for long mode: PML4 at 0x10000, PDPT at 0x11000, PD at 0x12000 mapping the
    /// first 2 MiB with one large page, writable.
    const CR3_LONG: u64 = 0x10000;

    impl Builder {
        fn new(mode: u8, flags: u8) -> Self {
            let mut b = Self {
                header: [0; HEADER_LEN],
                exit: Vec::new(),
                image: Vec::new(),
            };
            b.header[0] = mode;
            b.header[1] = flags;
            b.header[4..8].copy_from_slice(&0x1f80u32.to_le_bytes());
            b.header[10..12].copy_from_slice(&0x037fu16.to_le_bytes());
            b.u64_at(12, CODE);
            b.u64_at(20, 2);
            b.gpr(6, 0x8000); // rsp
            if mode == mode::LONG {
                b.u64_at(28, CR3_LONG);
                b.put(CR3_LONG, &(0x11000u64 | 7).to_le_bytes());
                b.put(0x11000, &(0x12000u64 | 7).to_le_bytes());
                b.put(0x12000, &(0x87u64).to_le_bytes());
            }
            b
        }

        fn u64_at(&mut self, i: usize, value: u64) {
            self.header[i..i + 8].copy_from_slice(&value.to_le_bytes());
        }

        fn gpr(&mut self, index: usize, value: u64) {
            self.u64_at(36 + 8 * index, value);
        }

        fn put(&mut self, address: u64, bytes: &[u8]) {
            let end = address as usize + bytes.len();
            if self.image.len() < end {
                self.image.resize(end, 0);
            }
            self.image[address as usize..end].copy_from_slice(bytes);
        }

        /// The instruction also in the exit data, as KVM reports it.
        fn exit_bytes(&mut self, code: &[u8]) {
            let mut raw = vec![code.len() as u8];
            raw.extend_from_slice(code);
            raw.resize(raw.len().next_multiple_of(8), 0);
            self.header[2] = (1 + raw.len() / 8) as u8;
            self.exit = raw;
        }

        fn finish(mut self, name: &'static str, code: &[u8], recovers: bool) -> Seed {
            self.put(CODE, code);
            let mut bytes = self.header.to_vec();
            bytes.extend_from_slice(&self.exit);
            bytes.extend_from_slice(&self.image);
            Seed {
                name,
                bytes,
                recovers,
            }
        }
    }

    /// The seeds.
    pub fn all() -> Vec<Seed> {
        // ldmxcsr [rbx]; stmxcsr [rbx]
        let ldmxcsr = [0x0f, 0xae, 0x13];
        let stmxcsr = [0x0f, 0xae, 0x1b];
        let mut seeds = Vec::new();

        let mut b = Builder::new(mode::LONG, flag::WP);
        b.gpr(1, DATA);
        b.put(DATA, &0x1f80u32.to_le_bytes());
        seeds.push(b.finish("ldmxcsr_long", &ldmxcsr, true));

        let mut b = Builder::new(mode::LONG, flag::WP);
        b.gpr(1, DATA);
        b.exit_bytes(&stmxcsr);
        seeds.push(b.finish("stmxcsr_exit_data", &stmxcsr, true));

        let mut b = Builder::new(mode::PROTECTED, 0);
        b.gpr(1, DATA);
        seeds.push(b.finish("stmxcsr_protected", &stmxcsr, true));

        let b = Builder::new(mode::REAL, 0);
        // fwait
        seeds.push(b.finish("fwait_real", &[0x9b], true));

        let b = Builder::new(mode::LONG, 0);
        // ud2 (not recovered: KVM raises #UD itself)
        seeds.push(b.finish("ud2_long", &[0x0f, 0x0b], false));

        let mut b = Builder::new(mode::LONG, 0);
        b.gpr(0, 1);
        b.gpr(1, 2);
        b.gpr(2, 3);
        // shlx eax, ebx, ecx (not recovered)
        seeds.push(b.finish("shlx_not_recovered", &[0xc4, 0xe2, 0x71, 0xf7, 0xc3], false));

        let b = Builder::new(mode::LONG, 0);
        seeds.push(b.finish("garbage", &[0xf0, 0xf0, 0xf0, 0x0f, 0xff], false));
        seeds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_reach_their_expected_outcomes() {
        for seed in seeds::all() {
            let (outcome, _) = run(&seed.bytes);
            assert_eq!(
                matches!(outcome, Outcome::Recovered(_)),
                seed.recovers,
                "{}: {outcome:?}",
                seed.name
            );
        }
    }

    /// `COVE_UPDATE_SEEDS=1 cargo test` rewrites the seed files.
    #[test]
    fn seed_files_are_current() {
        let seeds = seeds::all();
        crate::check_seed_files(
            "emulation_decode",
            seeds.iter().map(|seed| (seed.name, seed.bytes.as_slice())),
        );
    }

    #[test]
    fn short_and_hostile_inputs_end_cleanly() {
        for m in 0..6u8 {
            run(&[m]);
            run(&[m, 0xff, 3]);
            let mut all_ones = vec![0xffu8; 8192];
            all_ones[0] = m;
            run(&all_ones);
        }
    }
}
