//! The entry point for `KVM_EXIT_INTERNAL_ERROR` / `KVM_INTERNAL_ERROR_EMULATION`:
//! [`handle_emulation_failure`] decodes the failing instruction and either recovers from it
//! ([`Outcome::Recovered`], after which `KVM_RUN` can resume) or returns a
//! [`FailureReport`] for the VM to stop with.

use std::fmt;

use super::decode::{bytes_from_exit_data, fetch_and_decode, format_intel};
use super::handlers;
pub use super::kind::RecoveredKind;
use super::GuestCpu;

/// The reason given for a decoded instruction Cove has no recovery for.
pub const NOT_RECOVERED: &str = "instruction not recovered by Cove";

/// A recovery that was carried out: the vCPU can be resumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Which instruction was recovered.
    pub kind: RecoveredKind,
    /// RIP of the instruction (before any advance).
    pub rip: u64,
    /// What was done, e.g. `"MXCSR = 0x1f80 (read from 0xffffc90000013e5c)"`.
    pub detail: String,
}

/// Why the vCPU cannot be resumed, with everything known about the instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureReport {
    /// RIP of the instruction that could not be emulated.
    pub rip: u64,
    /// The instruction's bytes (all bytes found when it could not be decoded).
    pub bytes: Vec<u8>,
    /// The instruction in Intel syntax, e.g. `"shlx eax,ebx,ecx"`.
    pub decoded: Option<String>,
    /// Why recovery gave up, e.g. [`NOT_RECOVERED`] or an unmapped operand.
    pub reason: String,
}

impl fmt::Display for FailureReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "emulation failure at RIP {:#x}: bytes [", self.rip)?;
        for (i, byte) in self.bytes.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{byte:02x}")?;
        }
        f.write_str("], instruction ")?;
        match &self.decoded {
            Some(text) => write!(f, "`{text}`")?,
            None => f.write_str("undecodable")?,
        }
        write!(f, ": {}", self.reason)
    }
}

/// The result of [`handle_emulation_failure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The instruction was carried out (or its exception injected); resume the vCPU.
    Recovered(Recovered),
    /// Nothing could be done; the VM must stop with this report.
    Failed(FailureReport),
}

/// Handles an emulation-failure exit. `exit_data` is `kvm_run.internal.data[..ndata]`.
///
/// On [`Outcome::Recovered`] the vCPU's registers, MXCSR, memory and pending exception have
/// been updated as the instruction would have; on [`Outcome::Failed`] nothing has been changed
/// unless writing the vCPU state failed part-way, which the report's reason says.
pub fn handle_emulation_failure(cpu: &mut impl GuestCpu, exit_data: &[u64]) -> Outcome {
    let failed_early = |rip: u64, reason: String| {
        Outcome::Failed(FailureReport {
            rip,
            bytes: bytes_from_exit_data(exit_data).unwrap_or_default(),
            decoded: None,
            reason,
        })
    };
    let regs = match cpu.regs() {
        Ok(regs) => regs,
        Err(error) => {
            return failed_early(0, format!("reading the vCPU registers failed: {error}"))
        }
    };
    let sregs = match cpu.sregs() {
        Ok(sregs) => sregs,
        Err(error) => {
            return failed_early(
                regs.rip,
                format!("reading the vCPU segment registers failed: {error}"),
            )
        }
    };

    let decoded = match fetch_and_decode(cpu, &regs, &sregs, exit_data) {
        Ok(decoded) => decoded,
        Err(failure) => {
            return Outcome::Failed(FailureReport {
                rip: regs.rip,
                bytes: failure.bytes,
                decoded: None,
                reason: failure.reason,
            })
        }
    };
    let text = format_intel(&decoded.instruction);
    let failed = |reason: String| {
        Outcome::Failed(FailureReport {
            rip: regs.rip,
            bytes: decoded.bytes.clone(),
            decoded: Some(text.clone()),
            reason,
        })
    };

    let Some(kind) = handlers::classify(&decoded.instruction) else {
        return failed(NOT_RECOVERED.to_string());
    };
    match handlers::recover(kind, cpu, regs, sregs, &decoded) {
        Ok(detail) => Outcome::Recovered(Recovered {
            kind,
            rip: regs.rip,
            detail,
        }),
        Err(reason) => failed(format!("recovering {} failed: {reason}", kind.name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::emulation::test_support::{exit_data_with_bytes, FakeCpu, CODE_ADDR};
    use crate::hypervisor::emulation::CpuAccessError;
    use kvm_bindings::{kvm_regs, kvm_sregs};

    fn failure(outcome: Outcome) -> FailureReport {
        match outcome {
            Outcome::Failed(report) => report,
            Outcome::Recovered(recovered) => panic!("expected a failure, got {recovered:?}"),
        }
    }

    #[test]
    fn unknown_instruction_is_reported_decoded() {
        let mut cpu = FakeCpu::long_mode();
        // shlx eax,ebx,ecx (VEX.LZ.66.0F38.W0 F7 /r)
        let bytes = [0xc4, 0xe2, 0x71, 0xf7, 0xc3];
        let before = cpu.regs;
        let report = failure(handle_emulation_failure(
            &mut cpu,
            &exit_data_with_bytes(&bytes),
        ));
        assert_eq!(report.rip, CODE_ADDR);
        assert_eq!(report.bytes, bytes.to_vec());
        assert_eq!(report.decoded.as_deref(), Some("shlx eax,ebx,ecx"));
        assert_eq!(report.reason, NOT_RECOVERED);
        assert_eq!(cpu.regs, before, "nothing changes on failure");
        assert!(cpu.injected.is_empty());
        assert_eq!(
            report.to_string(),
            "emulation failure at RIP 0x1000: bytes [c4 e2 71 f7 c3], instruction `shlx eax,ebx,ecx`: \
             instruction not recovered by Cove"
        );
    }

    #[test]
    fn garbage_is_reported_undecodable() {
        let mut cpu = FakeCpu::long_mode();
        // 0f 04 is not an instruction.
        let bytes = [0x0f, 0x04, 0x00];
        let report = failure(handle_emulation_failure(
            &mut cpu,
            &exit_data_with_bytes(&bytes),
        ));
        assert_eq!(report.decoded, None);
        assert_eq!(report.bytes, bytes.to_vec());
        assert!(
            report.reason.starts_with("could not decode"),
            "{}",
            report.reason
        );
        let line = report.to_string();
        assert!(line.contains("RIP 0x1000"), "{line}");
        assert!(line.contains("[0f 04 00]"), "{line}");
        assert!(line.contains("undecodable"), "{line}");
    }

    #[test]
    fn unreadable_code_without_exit_bytes_is_reported() {
        let mut cpu = FakeCpu::long_mode();
        cpu.regs.rip = 0x4000_0000;
        let report = failure(handle_emulation_failure(&mut cpu, &[0]));
        assert_eq!(report.rip, 0x4000_0000);
        assert!(report.bytes.is_empty());
        assert!(report.reason.contains("is not mapped"), "{}", report.reason);
        assert!(report.to_string().contains("bytes []"));
    }

    #[test]
    fn kind_names_and_indices_are_consistent() {
        for (i, kind) in RecoveredKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
            assert_eq!(kind.to_string(), kind.name());
        }
        assert_eq!(RecoveredKind::Ldmxcsr.name(), "ldmxcsr");
    }

    /// A vCPU whose register reads fail, to check nothing panics and the report says why.
    struct BrokenCpu;

    impl GuestCpu for BrokenCpu {
        fn regs(&self) -> Result<kvm_regs, CpuAccessError> {
            Err(CpuAccessError::Ioctl("KVM_GET_REGS: EIO".into()))
        }
        fn set_regs(&mut self, _: &kvm_regs) -> Result<(), CpuAccessError> {
            Err(CpuAccessError::Ioctl("KVM_SET_REGS: EIO".into()))
        }
        fn sregs(&self) -> Result<kvm_sregs, CpuAccessError> {
            Err(CpuAccessError::Ioctl("KVM_GET_SREGS: EIO".into()))
        }
        fn mxcsr(&self) -> Result<u32, CpuAccessError> {
            Err(CpuAccessError::Ioctl("KVM_GET_FPU: EIO".into()))
        }
        fn set_mxcsr(&mut self, _: u32) -> Result<(), CpuAccessError> {
            Err(CpuAccessError::Ioctl("KVM_SET_FPU: EIO".into()))
        }
        fn fpu_status_word(&self) -> Result<u16, CpuAccessError> {
            Err(CpuAccessError::Ioctl("KVM_GET_FPU: EIO".into()))
        }
        fn fpu_control_word(&self) -> Result<u16, CpuAccessError> {
            Err(CpuAccessError::Ioctl("KVM_GET_FPU: EIO".into()))
        }
        fn read_virtual(&self, gva: u64, _: &mut [u8]) -> Result<(), CpuAccessError> {
            Err(CpuAccessError::Unmapped(gva))
        }
        fn write_virtual(&mut self, gva: u64, _: &[u8]) -> Result<(), CpuAccessError> {
            Err(CpuAccessError::Unmapped(gva))
        }
        fn inject_exception(&mut self, _: u8, _: Option<u32>) -> Result<(), CpuAccessError> {
            Err(CpuAccessError::Ioctl("KVM_SET_VCPU_EVENTS: EIO".into()))
        }
    }

    #[test]
    fn register_read_failure_is_reported() {
        let report = failure(handle_emulation_failure(
            &mut BrokenCpu,
            &exit_data_with_bytes(&[0xcc]),
        ));
        assert_eq!(report.bytes, vec![0xcc]);
        assert!(
            report.reason.contains("KVM_GET_REGS: EIO"),
            "{}",
            report.reason
        );
    }
}
