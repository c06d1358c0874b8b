//! Finding and decoding the instruction KVM could not emulate.
//!
//! KVM reports the bytes it fetched in the exit's data (`kvm_run.emulation_failure`):
//! `data[0]` holds flags, and when [`KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES`] is
//! set, the bytes of `data[1..]` hold the number of instruction bytes followed by up to 15
//! bytes. KVM pads the rest with `0x90`, and the count is what its emulator fetched, which can
//! be more or less than one instruction. Without the flag, or when the reported bytes end
//! before the instruction does, the bytes are read from guest memory at CS.base + RIP.

use iced_x86::{Decoder, DecoderError, DecoderOptions, Formatter, Instruction, IntelFormatter};
use kvm_bindings::{kvm_regs, kvm_sregs, KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES};

use super::registers::EFER_LMA;
use super::{CpuAccessError, GuestCpu};

/// The longest x86 instruction, prefixes included.
pub const MAX_INSTRUCTION_LEN: usize = 15;

const PAGE_SIZE: u64 = 0x1000;

/// Where the instruction bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteSource {
    /// The emulation-failure exit's data.
    ExitData,
    /// Guest memory at CS.base + RIP.
    GuestMemory,
}

/// A decoded instruction with exactly its own bytes.
#[derive(Debug, Clone)]
pub struct DecodedInstruction {
    /// The instruction as `iced-x86` decoded it.
    pub instruction: Instruction,
    /// The instruction's bytes (`instruction.len()` of them).
    pub bytes: Vec<u8>,
    /// The code size it was decoded with: 16, 32 or 64.
    pub bitness: u32,
    /// Whether the bytes came from the exit's data or were read from guest memory.
    pub source: ByteSource,
}

/// Why no instruction could be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeFailure {
    /// Whatever bytes were found (possibly none).
    pub bytes: Vec<u8>,
    /// Why decoding failed, e.g. too few bytes or an invalid encoding.
    pub reason: String,
}

/// The code size of the current mode: 64 in long mode with a 64-bit code segment
/// (EFER.LMA and CS.L), 32 with a 32-bit code segment (CS.D), otherwise 16.
pub fn code_bitness(sregs: &kvm_sregs) -> u32 {
    if sregs.efer & EFER_LMA != 0 && sregs.cs.l != 0 {
        64
    } else if sregs.cs.db != 0 {
        32
    } else {
        16
    }
}

/// The instruction bytes carried by an emulation-failure exit, if it carries any. `exit_data`
/// is `kvm_run.internal.data[..ndata]`.
pub fn bytes_from_exit_data(exit_data: &[u64]) -> Option<Vec<u8>> {
    let (&flags, rest) = exit_data.split_first()?;
    if flags & u64::from(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) == 0 {
        return None;
    }
    let raw: Vec<u8> = rest.iter().flat_map(|word| word.to_le_bytes()).collect();
    let (&len, bytes) = raw.split_first()?;
    let len = usize::from(len);
    if len == 0 || len > MAX_INSTRUCTION_LEN || len > bytes.len() {
        return None;
    }
    Some(bytes[..len].to_vec())
}

/// The linear address of the instruction: CS.base + RIP, with CS.base ignored in 64-bit mode
/// and the sum truncated to 32 bits outside it.
pub fn instruction_address(regs: &kvm_regs, sregs: &kvm_sregs) -> u64 {
    match code_bitness(sregs) {
        64 => regs.rip,
        16 => sregs.cs.base.wrapping_add(regs.rip & 0xffff) & 0xffff_ffff,
        _ => sregs.cs.base.wrapping_add(regs.rip & 0xffff_ffff) & 0xffff_ffff,
    }
}

/// Reads up to [`MAX_INSTRUCTION_LEN`] bytes at the instruction address. A read that runs
/// into an unmapped page returns the bytes before that page; an unmapped first page is an
/// error.
pub fn read_instruction_bytes(
    cpu: &impl GuestCpu,
    regs: &kvm_regs,
    sregs: &kvm_sregs,
) -> Result<Vec<u8>, CpuAccessError> {
    let start = instruction_address(regs, sregs);
    let to_page_end = PAGE_SIZE - (start % PAGE_SIZE);
    // `to_page_end` is at most a page, so the conversion cannot truncate.
    let first_len = MAX_INSTRUCTION_LEN.min(to_page_end as usize);
    let mut bytes = vec![0u8; MAX_INSTRUCTION_LEN];
    cpu.read_virtual(start, &mut bytes[..first_len])?;
    if first_len < MAX_INSTRUCTION_LEN {
        let next_page = start.wrapping_add(first_len as u64);
        if cpu
            .read_virtual(next_page, &mut bytes[first_len..])
            .is_err()
        {
            bytes.truncate(first_len);
        }
    }
    Ok(bytes)
}

/// Decodes the first instruction in `bytes` at `rip`.
pub fn decode_bytes(bytes: &[u8], bitness: u32, rip: u64) -> Result<Instruction, DecoderError> {
    let mut decoder = Decoder::try_with_ip(bitness, bytes, rip, DecoderOptions::NONE)
        .map_err(|_| DecoderError::InvalidInstruction)?;
    let instruction = decoder.decode();
    match decoder.last_error() {
        DecoderError::None => Ok(instruction),
        error => Err(error),
    }
}

/// Formats an instruction in Intel syntax, e.g. `shlx eax,ebx,ecx`.
pub fn format_intel(instruction: &Instruction) -> String {
    let mut formatter = IntelFormatter::new();
    let mut text = String::new();
    formatter.format(instruction, &mut text);
    text
}

fn describe(error: DecoderError) -> &'static str {
    match error {
        DecoderError::NoMoreBytes => "the bytes end before the instruction does",
        _ => "invalid instruction encoding",
    }
}

/// Finds the failing instruction's bytes (exit data first, guest memory otherwise) and decodes
/// them in the vCPU's current mode.
pub fn fetch_and_decode(
    cpu: &impl GuestCpu,
    regs: &kvm_regs,
    sregs: &kvm_sregs,
    exit_data: &[u64],
) -> Result<DecodedInstruction, DecodeFailure> {
    let bitness = code_bitness(sregs);
    let finish = |bytes: Vec<u8>, source, instruction: Instruction| {
        let len = instruction.len().min(bytes.len());
        DecodedInstruction {
            instruction,
            bytes: bytes[..len].to_vec(),
            bitness,
            source,
        }
    };

    let reported = bytes_from_exit_data(exit_data);
    if let Some(bytes) = &reported {
        match decode_bytes(bytes, bitness, regs.rip) {
            Ok(instruction) => return Ok(finish(bytes.clone(), ByteSource::ExitData, instruction)),
            Err(DecoderError::NoMoreBytes) => {} // KVM fetched too few bytes: read memory.
            Err(error) => {
                return Err(DecodeFailure {
                    bytes: bytes.clone(),
                    reason: format!("could not decode: {}", describe(error)),
                })
            }
        }
    }

    let bytes = match read_instruction_bytes(cpu, regs, sregs) {
        Ok(bytes) => bytes,
        Err(error) => {
            return Err(DecodeFailure {
                bytes: reported.unwrap_or_default(),
                reason: format!("could not decode: reading the instruction bytes failed: {error}"),
            })
        }
    };
    match decode_bytes(&bytes, bitness, regs.rip) {
        Ok(instruction) => Ok(finish(bytes, ByteSource::GuestMemory, instruction)),
        Err(error) => Err(DecodeFailure {
            bytes,
            reason: format!("could not decode: {}", describe(error)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::emulation::test_support::{exit_data_with_bytes, FakeCpu};
    use iced_x86::Code;

    #[test]
    fn bitness_follows_efer_and_cs() {
        let mut sregs = kvm_sregs::default();
        assert_eq!(code_bitness(&sregs), 16);
        sregs.cs.db = 1;
        assert_eq!(code_bitness(&sregs), 32);
        sregs.cs.l = 1;
        assert_eq!(
            code_bitness(&sregs),
            32,
            "CS.L without EFER.LMA is not 64-bit"
        );
        sregs.efer = EFER_LMA;
        sregs.cs.db = 0;
        assert_eq!(code_bitness(&sregs), 64);
        sregs.cs.l = 0;
        assert_eq!(code_bitness(&sregs), 16, "16-bit compatibility mode");
    }

    #[test]
    fn exit_data_bytes_are_unpacked() {
        let data = exit_data_with_bytes(&[0x0f, 0xae, 0x10]);
        assert_eq!(bytes_from_exit_data(&data), Some(vec![0x0f, 0xae, 0x10]));
    }

    #[test]
    fn exit_data_without_the_flag_or_with_a_bad_length_is_ignored() {
        let mut data = exit_data_with_bytes(&[0xcc]);
        data[0] = 0;
        assert_eq!(bytes_from_exit_data(&data), None);
        assert_eq!(bytes_from_exit_data(&[]), None);
        assert_eq!(bytes_from_exit_data(&[1]), None);
        // A length of 16 is more than an instruction can have.
        assert_eq!(bytes_from_exit_data(&[1, 16, 0, 0]), None);
        // A length of 9 with only 7 bytes present.
        assert_eq!(bytes_from_exit_data(&[1, 9]), None);
        assert_eq!(bytes_from_exit_data(&[1, 0, 0]), None);
    }

    #[test]
    fn bytes_come_from_memory_without_exit_data() {
        let mut cpu = FakeCpu::long_mode();
        cpu.place_code(&[0x0f, 0xae, 0xe8]); // lfence
        let regs = cpu.regs;
        let sregs = cpu.sregs;
        let decoded = fetch_and_decode(&cpu, &regs, &sregs, &[0]).expect("decodes");
        assert_eq!(decoded.source, ByteSource::GuestMemory);
        assert_eq!(decoded.instruction.code(), Code::Lfence);
        assert_eq!(decoded.bytes, vec![0x0f, 0xae, 0xe8]);
        assert_eq!(decoded.bitness, 64);
    }

    #[test]
    fn exit_data_bytes_win_over_memory() {
        let mut cpu = FakeCpu::long_mode();
        cpu.place_code(&[0x0f, 0xae, 0xe8]); // lfence in memory
        let regs = cpu.regs;
        let sregs = cpu.sregs;
        let data = exit_data_with_bytes(&[0xcc, 0x90, 0x90]);
        let decoded = fetch_and_decode(&cpu, &regs, &sregs, &data).expect("decodes");
        assert_eq!(decoded.source, ByteSource::ExitData);
        assert_eq!(decoded.instruction.code(), Code::Int3);
        assert_eq!(decoded.bytes, vec![0xcc]);
    }

    #[test]
    fn truncated_exit_data_falls_back_to_memory() {
        let mut cpu = FakeCpu::long_mode();
        cpu.place_code(&[0x0f, 0xae, 0xe8]);
        let regs = cpu.regs;
        let sregs = cpu.sregs;
        let data = exit_data_with_bytes(&[0x0f, 0xae]);
        let decoded = fetch_and_decode(&cpu, &regs, &sregs, &data).expect("decodes");
        assert_eq!(decoded.source, ByteSource::GuestMemory);
        assert_eq!(decoded.instruction.code(), Code::Lfence);
    }

    #[test]
    fn a_read_is_cut_short_at_an_unmapped_page() {
        let mut cpu = FakeCpu::long_mode();
        let last = cpu.memory.len() as u64 - 2;
        cpu.regs.rip = last;
        cpu.write_bytes(last, &[0x9b, 0xcc]);
        let bytes =
            read_instruction_bytes(&cpu, &cpu.regs, &cpu.sregs).expect("first page is mapped");
        assert_eq!(bytes, vec![0x9b, 0xcc]);
        cpu.regs.rip = cpu.memory.len() as u64 + 0x10;
        let error = read_instruction_bytes(&cpu, &cpu.regs, &cpu.sregs).unwrap_err();
        assert_eq!(error, CpuAccessError::Unmapped(cpu.regs.rip));
    }

    #[test]
    fn sixteen_bit_code_uses_cs_base() {
        let mut cpu = FakeCpu::real_mode();
        cpu.sregs.cs.base = 0x2000;
        cpu.regs.rip = 0x0010;
        cpu.write_bytes(0x2010, &[0x66, 0xf3, 0x0f, 0xb8, 0xc3]); // popcnt eax,ebx
        let regs = cpu.regs;
        let sregs = cpu.sregs;
        let decoded = fetch_and_decode(&cpu, &regs, &sregs, &[]).expect("decodes");
        assert_eq!(decoded.bitness, 16);
        assert_eq!(format_intel(&decoded.instruction), "popcnt eax,ebx");
        assert_eq!(decoded.bytes.len(), 5);
    }

    #[test]
    fn garbage_is_reported_with_its_bytes() {
        let cpu = FakeCpu::long_mode();
        let regs = cpu.regs;
        let sregs = cpu.sregs;
        // 0x06 (push es) is invalid in 64-bit mode. (Alone, iced reports it as cut short.)
        let failure = fetch_and_decode(&cpu, &regs, &sregs, &exit_data_with_bytes(&[0x06, 0x90]))
            .unwrap_err();
        assert_eq!(failure.bytes, vec![0x06, 0x90]);
        assert!(
            failure.reason.starts_with("could not decode"),
            "{}",
            failure.reason
        );
    }
}
