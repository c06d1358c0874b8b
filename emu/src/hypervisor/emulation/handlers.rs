//! The recoveries, one function per instruction. Each one first checks what the architecture
//! checks (CPL, CR0/CR4 bits, reserved bits) and injects the exception a real processor would
//! raise, then reads its operands, and only then changes vCPU state.
//!
//! What is not modelled: segment limit and type checks on memory operands (flat segments are
//! assumed), alignment checks, CPUID feature bits (which cannot be hidden on the hosts this
//! exists for), and page faults: an operand in unmapped guest memory fails the recovery with a
//! clear reason rather than injecting a made-up #PF.

use iced_x86::{Code, Instruction, Mnemonic, OpKind, Register};
use kvm_bindings::{kvm_regs, kvm_sregs};

use super::decode::DecodedInstruction;
use super::kind::RecoveredKind;
use super::registers::{
    cpl, protected_mode, read_gpr, segment_base, write_gpr, CR0_EM, CR0_MP, CR0_NE, CR0_TS,
    CR4_OSFXSR, RFLAGS_AC, RFLAGS_AF, RFLAGS_CF, RFLAGS_OF, RFLAGS_PF, RFLAGS_SF, RFLAGS_ZF,
};
use super::{CpuAccessError, GuestCpu};

/// #BP, breakpoint.
pub const VECTOR_BP: u8 = 3;
/// #UD, invalid opcode.
pub const VECTOR_UD: u8 = 6;
/// #NM, device not available.
pub const VECTOR_NM: u8 = 7;
/// #GP, general protection.
pub const VECTOR_GP: u8 = 13;
/// #MF, x87 floating-point error.
pub const VECTOR_MF: u8 = 16;

/// FSW.ES: an unmasked x87 exception is pending.
const FSW_ES: u16 = 1 << 7;
/// The six x87 exception flags in FSW, and their masks in FCW.
const X87_EXCEPTIONS: u16 = 0x3f;

/// Which recovery applies to a decoded instruction, if any.
pub fn classify(instruction: &Instruction) -> Option<RecoveredKind> {
    Some(match instruction.code() {
        Code::Int3 => RecoveredKind::Int3,
        Code::Wait => RecoveredKind::Fwait,
        Code::Ldmxcsr_m32 => RecoveredKind::Ldmxcsr,
        Code::Stmxcsr_m32 => RecoveredKind::Stmxcsr,
        Code::Verw_rm16 | Code::Verw_r32m16 | Code::Verw_r64m16 => RecoveredKind::Verw,
        Code::Clac => RecoveredKind::Clac,
        Code::Stac => RecoveredKind::Stac,
        Code::Popcnt_r16_rm16 | Code::Popcnt_r32_rm32 | Code::Popcnt_r64_rm64 => {
            RecoveredKind::Popcnt
        }
        // The fences ignore ModRM.rm, so each has several codes (Lfence, Lfence_E9, ...).
        _ => match instruction.mnemonic() {
            Mnemonic::Lfence => RecoveredKind::Lfence,
            Mnemonic::Sfence => RecoveredKind::Sfence,
            Mnemonic::Mfence => RecoveredKind::Mfence,
            _ => return None,
        },
    })
}

/// Carries out the recovery for `kind`. `Ok` holds a description of what was done, `Err` why
/// it could not be done.
pub fn recover(
    kind: RecoveredKind,
    cpu: &mut impl GuestCpu,
    regs: kvm_regs,
    sregs: kvm_sregs,
    decoded: &DecodedInstruction,
) -> Result<String, String> {
    let mut emulation = Emulation {
        cpu,
        regs,
        sregs,
        instruction: &decoded.instruction,
        bitness: decoded.bitness,
    };
    match kind {
        RecoveredKind::Int3 => int3(&mut emulation),
        RecoveredKind::Fwait => fwait(&mut emulation),
        RecoveredKind::Ldmxcsr => ldmxcsr(&mut emulation),
        RecoveredKind::Stmxcsr => stmxcsr(&mut emulation),
        RecoveredKind::Lfence | RecoveredKind::Sfence | RecoveredKind::Mfence => {
            fence(&mut emulation)
        }
        RecoveredKind::Verw => verw(&mut emulation),
        RecoveredKind::Clac => set_ac(&mut emulation, false),
        RecoveredKind::Stac => set_ac(&mut emulation, true),
        RecoveredKind::Popcnt => popcnt(&mut emulation),
    }
}

fn exception_name(vector: u8) -> &'static str {
    match vector {
        VECTOR_BP => "#BP",
        VECTOR_UD => "#UD",
        VECTOR_NM => "#NM",
        VECTOR_GP => "#GP",
        VECTOR_MF => "#MF",
        _ => "an exception",
    }
}

/// Adds what was being done to a vCPU access error.
fn context<T>(
    result: Result<T, CpuAccessError>,
    what: impl FnOnce() -> String,
) -> Result<T, String> {
    result.map_err(|error| format!("{}: {error}", what()))
}

/// One recovery in progress: the vCPU, a working copy of its registers and the instruction.
struct Emulation<'a, C: GuestCpu> {
    cpu: &'a mut C,
    regs: kvm_regs,
    sregs: kvm_sregs,
    instruction: &'a Instruction,
    bitness: u32,
}

impl<C: GuestCpu> Emulation<'_, C> {
    /// RIP after the instruction, wrapped to the code size.
    fn next_rip(&self) -> u64 {
        let next = self.regs.rip.wrapping_add(self.instruction.len() as u64);
        match self.bitness {
            64 => next,
            32 => next & 0xffff_ffff,
            _ => next & 0xffff,
        }
    }

    /// Retires the instruction: advances RIP and writes the working registers back.
    fn retire(&mut self) -> Result<(), String> {
        self.regs.rip = self.next_rip();
        let regs = self.regs;
        context(self.cpu.set_regs(&regs), || {
            "writing the registers".to_string()
        })
    }

    /// Queues an exception without touching the registers.
    fn inject(&mut self, vector: u8, error_code: Option<u32>) -> Result<(), String> {
        context(self.cpu.inject_exception(vector, error_code), || {
            format!("injecting {}", exception_name(vector))
        })
    }

    /// Raises a fault: the exception is delivered with RIP still at the instruction.
    fn fault(&mut self, vector: u8, error_code: Option<u32>, why: &str) -> Result<String, String> {
        self.inject(vector, error_code)?;
        Ok(match error_code {
            Some(code) => format!("{why}: injected {}({code})", exception_name(vector)),
            None => format!("{why}: injected {}", exception_name(vector)),
        })
    }

    /// The linear address of memory operand `operand`.
    fn memory_address(&self, operand: u32) -> Result<u64, String> {
        if self.instruction.op_kind(operand) != OpKind::Memory {
            return Err(format!("operand {operand} is not a memory operand"));
        }
        let (regs, sregs, bitness) = (&self.regs, &self.sregs, self.bitness);
        let address = self
            .instruction
            .virtual_address(operand, 0, |register, _, _| {
                if register.is_segment_register() {
                    segment_base(sregs, register, bitness)
                } else {
                    read_gpr(regs, register)
                }
            })
            .ok_or_else(|| "the memory operand uses a register Cove cannot read".to_string())?;
        Ok(if bitness == 64 {
            address
        } else {
            address & 0xffff_ffff
        })
    }

    /// Reads a little-endian value of `size` (1 to 8) bytes from guest-virtual memory.
    fn read_memory(&self, address: u64, size: usize, what: &str) -> Result<u64, String> {
        let mut bytes = [0u8; 8];
        let buffer = bytes
            .get_mut(..size)
            .ok_or_else(|| format!("cannot read {size} bytes at once"))?;
        context(self.cpu.read_virtual(address, buffer), || {
            format!("reading {what} at {address:#x}")
        })?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// Reads a register operand or a memory operand of `size` bytes.
    fn read_operand(&self, operand: u32, size: usize, what: &str) -> Result<u64, String> {
        match self.instruction.op_kind(operand) {
            OpKind::Register => {
                let register = self.instruction.op_register(operand);
                read_gpr(&self.regs, register)
                    .ok_or_else(|| format!("cannot read register {register:?}"))
            }
            OpKind::Memory => {
                let address = self.memory_address(operand)?;
                self.read_memory(address, size, what)
            }
            kind => Err(format!("unexpected operand kind {kind:?}")),
        }
    }
}

/// `int3`: a trap, so #BP is delivered with RIP after the instruction.
fn int3<C: GuestCpu>(e: &mut Emulation<'_, C>) -> Result<String, String> {
    e.retire()?;
    e.inject(VECTOR_BP, None)?;
    Ok("injected #BP".to_string())
}

/// `fwait`: #NM when CR0.MP and CR0.TS are set, #MF when an unmasked x87 exception is
/// pending, otherwise nothing.
fn fwait<C: GuestCpu>(e: &mut Emulation<'_, C>) -> Result<String, String> {
    let cr0 = e.sregs.cr0;
    if cr0 & CR0_MP != 0 && cr0 & CR0_TS != 0 {
        return e.fault(VECTOR_NM, None, "CR0.MP and CR0.TS are set");
    }
    let fsw = context(e.cpu.fpu_status_word(), || {
        "reading the x87 status word".to_string()
    })?;
    let fcw = context(e.cpu.fpu_control_word(), || {
        "reading the x87 control word".to_string()
    })?;
    if fsw & FSW_ES != 0 || fsw & !fcw & X87_EXCEPTIONS != 0 {
        if cr0 & CR0_NE == 0 {
            // With CR0.NE clear the error goes out on FERR# to the interrupt controller (IRQ 13),
            // which Cove does not model.
            return Err(format!(
                "an x87 exception is pending (FSW {fsw:#06x}, FCW {fcw:#06x}) and CR0.NE is clear: \
                 FERR# reporting is not supported"
            ));
        }
        return e.fault(
            VECTOR_MF,
            None,
            &format!("x87 exception pending (FSW {fsw:#06x}, FCW {fcw:#06x})"),
        );
    }
    e.retire()?;
    Ok("no x87 exception pending: skipped".to_string())
}

/// The checks `ldmxcsr` and `stmxcsr` make before touching memory: #UD without SSE enabled
/// (CR0.EM set or CR4.OSFXSR clear), #NM with CR0.TS set.
fn sse_unavailable(sregs: &kvm_sregs) -> Option<(u8, &'static str)> {
    if sregs.cr0 & CR0_EM != 0 {
        Some((VECTOR_UD, "CR0.EM is set"))
    } else if sregs.cr4 & CR4_OSFXSR == 0 {
        Some((VECTOR_UD, "CR4.OSFXSR is clear"))
    } else if sregs.cr0 & CR0_TS != 0 {
        Some((VECTOR_NM, "CR0.TS is set"))
    } else {
        None
    }
}

/// `ldmxcsr m32`: #GP(0) for reserved bits, otherwise MXCSR is loaded.
fn ldmxcsr<C: GuestCpu>(e: &mut Emulation<'_, C>) -> Result<String, String> {
    if let Some((vector, why)) = sse_unavailable(&e.sregs) {
        return e.fault(vector, None, why);
    }
    let address = e.memory_address(0)?;
    let value = e.read_memory(address, 4, "the MXCSR operand")? as u32;
    let mask = context(e.cpu.mxcsr_mask(), || "reading MXCSR_MASK".to_string())?;
    if value & !mask != 0 {
        return e.fault(
            VECTOR_GP,
            Some(0),
            &format!("MXCSR value {value:#x} sets reserved bits"),
        );
    }
    context(e.cpu.set_mxcsr(value), || "writing MXCSR".to_string())?;
    e.retire()?;
    Ok(format!("MXCSR = {value:#x} (read from {address:#x})"))
}

/// `stmxcsr m32`: MXCSR is stored.
fn stmxcsr<C: GuestCpu>(e: &mut Emulation<'_, C>) -> Result<String, String> {
    if let Some((vector, why)) = sse_unavailable(&e.sregs) {
        return e.fault(vector, None, why);
    }
    let address = e.memory_address(0)?;
    let value = context(e.cpu.mxcsr(), || "reading MXCSR".to_string())?;
    context(e.cpu.write_virtual(address, &value.to_le_bytes()), || {
        format!("writing MXCSR to {address:#x}")
    })?;
    e.retire()?;
    Ok(format!("MXCSR {value:#x} stored to {address:#x}"))
}

/// `lfence`, `sfence`, `mfence`: the exit to userspace has already ordered everything, so the
/// instruction is retired as it is.
fn fence<C: GuestCpu>(e: &mut Emulation<'_, C>) -> Result<String, String> {
    e.retire()?;
    Ok("retired (the VM exit serialized the vCPU)".to_string())
}

/// `verw r/m16`: ZF=1 iff the selector is not null, lies within its descriptor table's limit,
/// names a writable data segment (S=1, type bit 3 = 0, type bit 1 = 1), and that segment's DPL
/// is at least max(CPL, RPL); otherwise ZF=0. #UD in real and virtual-8086 mode. No other flag
/// changes. (The kernel uses it with its data selector to clear CPU buffers against MDS; the
/// buffer clearing itself is the host's business.)
fn verw<C: GuestCpu>(e: &mut Emulation<'_, C>) -> Result<String, String> {
    if !protected_mode(&e.regs, &e.sregs) {
        return e.fault(VECTOR_UD, None, "verw outside protected mode");
    }
    let selector = (e.read_operand(0, 2, "the verw selector")? & 0xffff) as u16;
    let (writable, why) = writable_data_segment(e, selector)?;
    if writable {
        e.regs.rflags |= RFLAGS_ZF;
    } else {
        e.regs.rflags &= !RFLAGS_ZF;
    }
    e.retire()?;
    Ok(format!(
        "selector {selector:#06x} {why}: ZF={}",
        u8::from(writable)
    ))
}

/// Whether `selector` names a data segment writable at the current privilege level, with the
/// reason in words.
fn writable_data_segment<C: GuestCpu>(
    e: &Emulation<'_, C>,
    selector: u16,
) -> Result<(bool, String), String> {
    const LOCAL: u16 = 1 << 2;
    if selector & !3 == 0 {
        return Ok((false, "is null".to_string()));
    }
    let (table, base, limit) = if selector & LOCAL != 0 {
        let ldt = &e.sregs.ldt;
        if ldt.unusable != 0 || ldt.present == 0 {
            return Ok((false, "refers to the LDT, which is not loaded".to_string()));
        }
        ("LDT", ldt.base, u64::from(ldt.limit))
    } else {
        ("GDT", e.sregs.gdt.base, u64::from(e.sregs.gdt.limit))
    };
    let offset = u64::from(selector & !7);
    if offset + 7 > limit {
        return Ok((false, format!("is beyond the {table} limit {limit:#x}")));
    }
    let mut address = base.wrapping_add(offset);
    if e.bitness != 64 {
        address &= 0xffff_ffff;
    }
    let descriptor = e.read_memory(address, 8, &format!("the {table} descriptor"))?;
    let system = descriptor & (1 << 44) == 0;
    let segment_type = (descriptor >> 40) & 0xf;
    let dpl = ((descriptor >> 45) & 3) as u8;
    let rpl = (selector & 3) as u8;
    let cpl = cpl(&e.regs, &e.sregs);
    if system || segment_type & 0b1000 != 0 || segment_type & 0b0010 == 0 {
        return Ok((false, "is not a writable data segment".to_string()));
    }
    if dpl < cpl.max(rpl) {
        return Ok((
            false,
            format!("has DPL {dpl} below max(CPL {cpl}, RPL {rpl})"),
        ));
    }
    Ok((
        true,
        format!("is writable data with DPL {dpl} at CPL {cpl}"),
    ))
}

/// `clac` / `stac`: clear or set RFLAGS.AC; #UD above CPL 0.
fn set_ac<C: GuestCpu>(e: &mut Emulation<'_, C>, set: bool) -> Result<String, String> {
    let cpl = cpl(&e.regs, &e.sregs);
    if cpl > 0 {
        return e.fault(VECTOR_UD, None, &format!("at CPL {cpl}"));
    }
    if set {
        e.regs.rflags |= RFLAGS_AC;
    } else {
        e.regs.rflags &= !RFLAGS_AC;
    }
    e.retire()?;
    Ok(format!("RFLAGS.AC = {}", u8::from(set)))
}

/// `popcnt r, r/m`: the destination gets the number of set bits (a 32-bit destination
/// zero-extends); ZF = (source == 0); CF, OF, SF, AF and PF are cleared.
fn popcnt<C: GuestCpu>(e: &mut Emulation<'_, C>) -> Result<String, String> {
    let destination = e.instruction.op0_register();
    let size = destination.size();
    if !matches!(size, 2 | 4 | 8) || destination == Register::None {
        return Err(format!("unexpected popcnt destination {destination:?}"));
    }
    let mask = if size == 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    };
    let source = e.read_operand(1, size, "the popcnt source")? & mask;
    let count = u64::from(source.count_ones());
    if !write_gpr(&mut e.regs, destination, count) {
        return Err(format!("cannot write register {destination:?}"));
    }
    e.regs.rflags &= !(RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF | RFLAGS_SF | RFLAGS_OF);
    if source == 0 {
        e.regs.rflags |= RFLAGS_ZF;
    }
    e.retire()?;
    Ok(format!(
        "{} = {count}",
        format!("{destination:?}").to_lowercase()
    ))
}

#[cfg(test)]
mod tests;
