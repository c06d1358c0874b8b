//! Each recovery against a fake vCPU: the exceptions a real processor would raise, the state
//! it changes, and the failures it reports.

use super::*;
use crate::hypervisor::emulation::recover::{
    handle_emulation_failure, FailureReport, Outcome, Recovered,
};
use crate::hypervisor::emulation::registers::CR0_PE;
use crate::hypervisor::emulation::test_support::{exit_data_with_bytes, FakeCpu, CODE_ADDR};

const RFLAGS_FIXED: u64 = 0x2;
const ARITH_FLAGS: u64 = RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF | RFLAGS_SF | RFLAGS_OF;

/// Runs the recovery with the bytes both in memory at RIP and in the exit data.
fn run(cpu: &mut FakeCpu, bytes: &[u8]) -> Outcome {
    cpu.place_code(bytes);
    handle_emulation_failure(cpu, &exit_data_with_bytes(bytes))
}

fn recovered(outcome: Outcome) -> Recovered {
    match outcome {
        Outcome::Recovered(recovered) => recovered,
        Outcome::Failed(report) => panic!("expected a recovery, got: {report}"),
    }
}

fn failed(outcome: Outcome) -> FailureReport {
    match outcome {
        Outcome::Failed(report) => report,
        Outcome::Recovered(recovered) => panic!("expected a failure, got {recovered:?}"),
    }
}

#[test]
fn int3_injects_bp_after_the_instruction() {
    let mut cpu = FakeCpu::long_mode();
    let result = recovered(run(&mut cpu, &[0xcc]));
    assert_eq!(result.kind, RecoveredKind::Int3);
    assert_eq!(result.rip, CODE_ADDR);
    assert_eq!(cpu.regs.rip, CODE_ADDR + 1);
    assert_eq!(cpu.injected, vec![(VECTOR_BP, None)]);
}

#[test]
fn int3_fetched_from_memory_when_the_exit_has_no_bytes() {
    let mut cpu = FakeCpu::long_mode();
    cpu.place_code(&[0xcc]);
    let result = recovered(handle_emulation_failure(&mut cpu, &[0]));
    assert_eq!(result.kind, RecoveredKind::Int3);
    assert_eq!(cpu.regs.rip, CODE_ADDR + 1);
    assert_eq!(cpu.injected, vec![(VECTOR_BP, None)]);
}

#[test]
fn exit_bytes_are_used_over_memory() {
    let mut cpu = FakeCpu::long_mode();
    cpu.place_code(&[0x0f, 0xae, 0xe8]); // lfence in memory, int3 reported by KVM
    let result = recovered(handle_emulation_failure(
        &mut cpu,
        &exit_data_with_bytes(&[0xcc]),
    ));
    assert_eq!(result.kind, RecoveredKind::Int3);
    assert_eq!(cpu.regs.rip, CODE_ADDR + 1);
}

#[test]
fn fwait_without_pending_exception_is_skipped() {
    let mut cpu = FakeCpu::long_mode();
    // IE is flagged but masked by FCW: nothing is pending.
    cpu.fsw = 0x0001;
    cpu.fcw = 0x037f;
    let result = recovered(run(&mut cpu, &[0x9b]));
    assert_eq!(result.kind, RecoveredKind::Fwait);
    assert_eq!(cpu.regs.rip, CODE_ADDR + 1);
    assert!(cpu.injected.is_empty());
}

#[test]
fn fwait_with_pending_exception_injects_mf() {
    let mut cpu = FakeCpu::long_mode();
    cpu.fsw = 0x0004; // ZE flagged, ES not yet set
    cpu.fcw = 0x037b; // ZE unmasked
    let result = recovered(run(&mut cpu, &[0x9b]));
    assert_eq!(result.kind, RecoveredKind::Fwait);
    assert_eq!(
        cpu.regs.rip, CODE_ADDR,
        "a fault leaves RIP at the instruction"
    );
    assert_eq!(cpu.injected, vec![(VECTOR_MF, None)]);

    let mut cpu = FakeCpu::long_mode();
    cpu.fsw = FSW_ES;
    recovered(run(&mut cpu, &[0x9b]));
    assert_eq!(cpu.regs.rip, CODE_ADDR);
    assert_eq!(cpu.injected, vec![(VECTOR_MF, None)]);
}

#[test]
fn fwait_with_cr0_ne_clear_and_pending_exception_fails() {
    let mut cpu = FakeCpu::long_mode();
    cpu.sregs.cr0 &= !CR0_NE;
    cpu.fsw = FSW_ES | 1;
    cpu.fcw = 0x037e;
    let report = failed(run(&mut cpu, &[0x9b]));
    assert!(report.reason.contains("FERR#"), "{}", report.reason);
    assert_eq!(report.decoded.as_deref(), Some("fwait"));
    assert_eq!(cpu.regs.rip, CODE_ADDR);
    assert!(cpu.injected.is_empty());
}

#[test]
fn fwait_with_ts_and_mp_injects_nm() {
    let mut cpu = FakeCpu::long_mode();
    cpu.sregs.cr0 |= CR0_TS | CR0_MP;
    recovered(run(&mut cpu, &[0x9b]));
    assert_eq!(cpu.regs.rip, CODE_ADDR);
    assert_eq!(cpu.injected, vec![(VECTOR_NM, None)]);
}

#[test]
fn ldmxcsr_loads_a_valid_value() {
    let mut cpu = FakeCpu::long_mode();
    cpu.regs.rax = 0x2000;
    cpu.write_bytes(0x2000, &0x1fa0u32.to_le_bytes());
    let result = recovered(run(&mut cpu, &[0x0f, 0xae, 0x10])); // ldmxcsr [rax]
    assert_eq!(result.kind, RecoveredKind::Ldmxcsr);
    assert_eq!(cpu.mxcsr, 0x1fa0);
    assert_eq!(cpu.regs.rip, CODE_ADDR + 3);
    assert!(cpu.injected.is_empty());
}

#[test]
fn ldmxcsr_rip_relative() {
    let mut cpu = FakeCpu::long_mode();
    // ldmxcsr [rip+0xff9]: next RIP is 0x1007, so the operand is at 0x2000.
    cpu.write_bytes(0x2000, &0x9f80u32.to_le_bytes());
    recovered(run(&mut cpu, &[0x0f, 0xae, 0x15, 0xf9, 0x0f, 0x00, 0x00]));
    assert_eq!(cpu.mxcsr, 0x9f80);
    assert_eq!(cpu.regs.rip, CODE_ADDR + 7);
}

#[test]
fn ldmxcsr_with_gs_prefix_uses_the_gs_base() {
    let mut cpu = FakeCpu::long_mode();
    cpu.sregs.gs.base = 0x3000;
    cpu.sregs.ds.base = 0x5000; // ignored in 64-bit mode
    cpu.regs.rax = 0x10;
    cpu.write_bytes(0x3010, &0x1f00u32.to_le_bytes());
    cpu.write_bytes(0x0010, &0x0040u32.to_le_bytes());
    let result = recovered(run(&mut cpu, &[0x65, 0x0f, 0xae, 0x10])); // ldmxcsr gs:[rax]
    assert_eq!(cpu.mxcsr, 0x1f00);
    assert_eq!(
        cpu.regs.rip,
        CODE_ADDR + 4,
        "the prefix counts in the length"
    );
    assert!(result.detail.contains("0x3010"), "{}", result.detail);
}

#[test]
fn ldmxcsr_in_32_bit_mode_uses_the_ds_base() {
    let mut cpu = FakeCpu::protected_mode_32();
    cpu.sregs.ds.base = 0x2000;
    cpu.regs.rbx = 0x40;
    cpu.write_bytes(0x2040, &0x1f81u32.to_le_bytes());
    recovered(run(&mut cpu, &[0x0f, 0xae, 0x13])); // ldmxcsr [ebx]
    assert_eq!(cpu.mxcsr, 0x1f81);
    assert_eq!(cpu.regs.rip, CODE_ADDR + 3);
}

#[test]
fn ldmxcsr_with_reserved_bits_injects_gp0() {
    let mut cpu = FakeCpu::long_mode();
    cpu.regs.rax = 0x2000;
    cpu.write_bytes(0x2000, &0x0001_1f80u32.to_le_bytes());
    let result = recovered(run(&mut cpu, &[0x0f, 0xae, 0x10]));
    assert_eq!(result.kind, RecoveredKind::Ldmxcsr);
    assert_eq!(cpu.mxcsr, 0x1f80, "MXCSR unchanged");
    assert_eq!(
        cpu.regs.rip, CODE_ADDR,
        "a fault leaves RIP at the instruction"
    );
    assert_eq!(cpu.injected, vec![(VECTOR_GP, Some(0))]);
}

#[test]
fn ldmxcsr_follows_the_processor_mxcsr_mask() {
    // MXCSR.MM (bit 17) exists on AMD processors with misaligned SSE mode.
    let mut cpu = FakeCpu::long_mode();
    cpu.regs.rax = 0x2000;
    cpu.write_bytes(0x2000, &0x0002_1f80u32.to_le_bytes());
    cpu.mxcsr_mask = 0x0002_ffff;
    recovered(run(&mut cpu, &[0x0f, 0xae, 0x10]));
    assert_eq!(cpu.mxcsr, 0x0002_1f80);
    assert_eq!(cpu.regs.rip, CODE_ADDR + 3);
    assert!(cpu.injected.is_empty());

    // DAZ (bit 6) is reserved where MXCSR_MASK is 0xffbf.
    let mut cpu = FakeCpu::long_mode();
    cpu.regs.rax = 0x2000;
    cpu.write_bytes(0x2000, &0x1fc0u32.to_le_bytes());
    cpu.mxcsr_mask = 0xffbf;
    recovered(run(&mut cpu, &[0x0f, 0xae, 0x10]));
    assert_eq!(cpu.mxcsr, 0x1f80);
    assert_eq!(cpu.injected, vec![(VECTOR_GP, Some(0))]);
}

#[test]
fn ldmxcsr_from_unmapped_memory_fails_without_changes() {
    let mut cpu = FakeCpu::long_mode();
    cpu.regs.rax = 0x4000_0000;
    let report = failed(run(&mut cpu, &[0x0f, 0xae, 0x10]));
    assert_eq!(report.decoded.as_deref(), Some("ldmxcsr [rax]"));
    assert!(
        report.reason.contains("0x40000000 is not mapped"),
        "{}",
        report.reason
    );
    assert_eq!(cpu.mxcsr, 0x1f80);
    assert_eq!(cpu.regs.rip, CODE_ADDR);
    assert!(cpu.injected.is_empty());
}

#[test]
fn ldmxcsr_without_sse_enabled_injects_ud_or_nm() {
    let mut cpu = FakeCpu::long_mode();
    cpu.sregs.cr4 &= !CR4_OSFXSR;
    recovered(run(&mut cpu, &[0x0f, 0xae, 0x10]));
    assert_eq!(cpu.injected, vec![(VECTOR_UD, None)]);
    assert_eq!(cpu.regs.rip, CODE_ADDR);

    let mut cpu = FakeCpu::long_mode();
    cpu.sregs.cr0 |= CR0_TS;
    recovered(run(&mut cpu, &[0x0f, 0xae, 0x10]));
    assert_eq!(cpu.injected, vec![(VECTOR_NM, None)]);
    assert_eq!(cpu.regs.rip, CODE_ADDR);
}

#[test]
fn stmxcsr_writes_memory() {
    let mut cpu = FakeCpu::long_mode();
    cpu.mxcsr = 0x1fa5;
    cpu.regs.rax = 0x2000;
    cpu.write_bytes(0x2000, &[0xee; 8]);
    let result = recovered(run(&mut cpu, &[0x0f, 0xae, 0x18])); // stmxcsr [rax]
    assert_eq!(result.kind, RecoveredKind::Stmxcsr);
    assert_eq!(
        cpu.read_bytes(0x2000, 8),
        vec![0xa5, 0x1f, 0, 0, 0xee, 0xee, 0xee, 0xee]
    );
    assert_eq!(cpu.regs.rip, CODE_ADDR + 3);
}

#[test]
fn stmxcsr_to_unmapped_memory_fails() {
    let mut cpu = FakeCpu::long_mode();
    cpu.regs.rax = 0x4000_0000;
    let report = failed(run(&mut cpu, &[0x0f, 0xae, 0x18]));
    assert!(report.reason.contains("writing MXCSR"), "{}", report.reason);
    assert_eq!(cpu.regs.rip, CODE_ADDR);
}

#[test]
fn fences_are_retired() {
    for (bytes, kind) in [
        ([0x0f, 0xae, 0xe8], RecoveredKind::Lfence),
        ([0x0f, 0xae, 0xf8], RecoveredKind::Sfence),
        ([0x0f, 0xae, 0xf0], RecoveredKind::Mfence),
    ] {
        let mut cpu = FakeCpu::long_mode();
        let before = cpu.regs;
        let result = recovered(run(&mut cpu, &bytes));
        assert_eq!(result.kind, kind);
        assert_eq!(
            cpu.regs,
            kvm_regs {
                rip: CODE_ADDR + 3,
                ..before
            }
        );
        assert!(cpu.injected.is_empty());
    }
}

const GDT: u64 = 0x8000;

/// A GDT with: 0x10 64-bit code, 0x18 writable data DPL 0, 0x20 read-only data DPL 0,
/// 0x28 writable data DPL 3; limit 0x2f.
fn cpu_with_gdt() -> FakeCpu {
    let mut cpu = FakeCpu::long_mode();
    let entries: [u64; 6] = [
        0,
        0,
        0x00af_9b00_0000_ffff,
        0x00cf_9300_0000_ffff,
        0x00cf_9100_0000_ffff,
        0x00cf_f300_0000_ffff,
    ];
    for (i, entry) in entries.iter().enumerate() {
        cpu.write_bytes(GDT + 8 * i as u64, &entry.to_le_bytes());
    }
    cpu.sregs.gdt.base = GDT;
    cpu.sregs.gdt.limit = 0x2f;
    cpu
}

/// Runs `verw ax` with AX = `selector` and returns ZF.
fn verw_zf(cpu: &mut FakeCpu, selector: u16) -> bool {
    cpu.regs.rax = 0xdead_0000 | u64::from(selector);
    cpu.regs.rip = CODE_ADDR;
    let result = recovered(run(cpu, &[0x0f, 0x00, 0xe8])); // verw ax
    assert_eq!(result.kind, RecoveredKind::Verw);
    assert_eq!(cpu.regs.rip, CODE_ADDR + 3);
    cpu.regs.rflags & RFLAGS_ZF != 0
}

#[test]
fn verw_memory_operand_with_kernel_data_selector_sets_zf() {
    let mut cpu = cpu_with_gdt();
    cpu.regs.rflags = RFLAGS_FIXED | RFLAGS_CF;
    cpu.regs.rax = 0x2000;
    cpu.write_bytes(0x2000, &0x18u16.to_le_bytes());
    recovered(run(&mut cpu, &[0x0f, 0x00, 0x28])); // verw [rax]
    assert_eq!(
        cpu.regs.rflags,
        RFLAGS_FIXED | RFLAGS_CF | RFLAGS_ZF,
        "only ZF changes"
    );
    assert_eq!(cpu.regs.rip, CODE_ADDR + 3);
    assert!(cpu.injected.is_empty());
}

#[test]
fn verw_clears_zf_for_unwritable_selectors() {
    let mut cpu = cpu_with_gdt();
    cpu.regs.rflags = RFLAGS_FIXED | RFLAGS_ZF;
    assert!(!verw_zf(&mut cpu, 0x20), "read-only data");
    cpu.regs.rflags |= RFLAGS_ZF;
    assert!(!verw_zf(&mut cpu, 0x10), "code segment");
    cpu.regs.rflags |= RFLAGS_ZF;
    assert!(!verw_zf(&mut cpu, 0x00), "null selector");
    cpu.regs.rflags |= RFLAGS_ZF;
    assert!(!verw_zf(&mut cpu, 0x30), "beyond the GDT limit");
    cpu.regs.rflags |= RFLAGS_ZF;
    assert!(!verw_zf(&mut cpu, 0x1b), "RPL 3 above DPL 0");
    cpu.regs.rflags |= RFLAGS_ZF;
    assert!(!verw_zf(&mut cpu, 0x1c), "LDT not loaded");
    assert_eq!(cpu.regs.rflags, RFLAGS_FIXED);
}

#[test]
fn verw_respects_cpl() {
    let mut cpu = cpu_with_gdt();
    assert!(verw_zf(&mut cpu, 0x18));
    assert!(verw_zf(&mut cpu, 0x28), "DPL 3 data is writable from CPL 0");
    cpu.enter_user_mode();
    assert!(
        !verw_zf(&mut cpu, 0x18),
        "DPL 0 data is not writable from CPL 3"
    );
    assert!(verw_zf(&mut cpu, 0x2b));
}

#[test]
fn verw_in_real_mode_injects_ud() {
    let mut cpu = FakeCpu::real_mode();
    recovered(run(&mut cpu, &[0x0f, 0x00, 0xe8]));
    assert_eq!(cpu.injected, vec![(VECTOR_UD, None)]);
    assert_eq!(cpu.regs.rip, CODE_ADDR);
    assert_eq!(cpu.sregs.cr0 & CR0_PE, 0);
}

#[test]
fn clac_and_stac_change_ac() {
    let mut cpu = FakeCpu::long_mode();
    cpu.regs.rflags = RFLAGS_FIXED | RFLAGS_AC | RFLAGS_ZF;
    let result = recovered(run(&mut cpu, &[0x0f, 0x01, 0xca])); // clac
    assert_eq!(result.kind, RecoveredKind::Clac);
    assert_eq!(cpu.regs.rflags, RFLAGS_FIXED | RFLAGS_ZF);
    assert_eq!(cpu.regs.rip, CODE_ADDR + 3);

    let result = recovered(run(&mut cpu, &[0x0f, 0x01, 0xcb])); // stac
    assert_eq!(result.kind, RecoveredKind::Stac);
    assert_eq!(cpu.regs.rflags, RFLAGS_FIXED | RFLAGS_ZF | RFLAGS_AC);
    assert_eq!(cpu.regs.rip, CODE_ADDR + 6);
    assert!(cpu.injected.is_empty());
}

#[test]
fn clac_and_stac_at_cpl3_inject_ud() {
    for bytes in [[0x0f, 0x01, 0xca], [0x0f, 0x01, 0xcb]] {
        let mut cpu = FakeCpu::long_mode();
        cpu.enter_user_mode();
        cpu.regs.rflags = RFLAGS_FIXED | RFLAGS_AC;
        recovered(run(&mut cpu, &bytes));
        assert_eq!(cpu.injected, vec![(VECTOR_UD, None)]);
        assert_eq!(cpu.regs.rflags, RFLAGS_FIXED | RFLAGS_AC);
        assert_eq!(cpu.regs.rip, CODE_ADDR);
    }
}

#[test]
fn popcnt_32_bit_zero_extends() {
    let mut cpu = FakeCpu::long_mode();
    cpu.regs.rax = u64::MAX;
    cpu.regs.rbx = 0xffff_0000_0000_00ff;
    cpu.regs.rflags = RFLAGS_FIXED | ARITH_FLAGS;
    let result = recovered(run(&mut cpu, &[0xf3, 0x0f, 0xb8, 0xc3])); // popcnt eax,ebx
    assert_eq!(result.kind, RecoveredKind::Popcnt);
    assert_eq!(cpu.regs.rax, 8);
    assert_eq!(cpu.regs.rbx, 0xffff_0000_0000_00ff);
    assert_eq!(cpu.regs.rflags, RFLAGS_FIXED);
    assert_eq!(cpu.regs.rip, CODE_ADDR + 4);
}

#[test]
fn popcnt_64_bit() {
    let mut cpu = FakeCpu::long_mode();
    cpu.regs.rbx = 0xffff_0000_0000_00ff;
    cpu.regs.rflags = RFLAGS_FIXED | RFLAGS_CF;
    recovered(run(&mut cpu, &[0xf3, 0x48, 0x0f, 0xb8, 0xc3])); // popcnt rax,rbx
    assert_eq!(cpu.regs.rax, 24);
    assert_eq!(cpu.regs.rflags, RFLAGS_FIXED);
    assert_eq!(cpu.regs.rip, CODE_ADDR + 5);
}

#[test]
fn popcnt_16_bit_keeps_the_upper_bits() {
    let mut cpu = FakeCpu::long_mode();
    cpu.regs.rax = 0x1234_5678_9abc_def0;
    cpu.regs.rbx = 0xffff_ffff_ffff_0f0f;
    recovered(run(&mut cpu, &[0x66, 0xf3, 0x0f, 0xb8, 0xc3])); // popcnt ax,bx
    assert_eq!(cpu.regs.rax, 0x1234_5678_9abc_0008);
    assert_eq!(cpu.regs.rip, CODE_ADDR + 5);
}

#[test]
fn popcnt_memory_source() {
    let mut cpu = FakeCpu::long_mode();
    cpu.regs.rcx = 0x2000;
    cpu.write_bytes(0x2000, &0x8000_0000_0000_0001u64.to_le_bytes());
    recovered(run(&mut cpu, &[0xf3, 0x48, 0x0f, 0xb8, 0x01])); // popcnt rax,[rcx]
    assert_eq!(cpu.regs.rax, 2);
    assert_eq!(cpu.regs.rip, CODE_ADDR + 5);
}

#[test]
fn popcnt_of_zero_sets_zf() {
    let mut cpu = FakeCpu::long_mode();
    cpu.regs.rax = 0x55;
    cpu.regs.rflags = RFLAGS_FIXED | RFLAGS_SF;
    recovered(run(&mut cpu, &[0xf3, 0x0f, 0xb8, 0xc3]));
    assert_eq!(cpu.regs.rax, 0);
    assert_eq!(cpu.regs.rflags, RFLAGS_FIXED | RFLAGS_ZF);
}

#[test]
fn popcnt_from_unmapped_memory_fails() {
    let mut cpu = FakeCpu::long_mode();
    cpu.regs.rcx = 0x4000_0000;
    cpu.regs.rax = 0x77;
    let report = failed(run(&mut cpu, &[0xf3, 0x48, 0x0f, 0xb8, 0x01]));
    assert_eq!(report.decoded.as_deref(), Some("popcnt rax,[rcx]"));
    assert_eq!(cpu.regs.rax, 0x77);
    assert_eq!(cpu.regs.rip, CODE_ADDR);
}
