//! Recovery from instructions KVM could not emulate (`KVM_EXIT_INTERNAL_ERROR`, suberror 1).
//!
//! On hosts without hardware virtualization (and on real hosts, for vector instructions that
//! touch MMIO), KVM's instruction emulator meets instructions it does not implement. KVM_RUN
//! then returns with the vCPU state intact. This module decodes the instruction with
//! `iced-x86`, and either recovers (injects the exception the instruction raises, or emulates
//! it against the guest's registers and memory) or produces a clear report for the VM to stop
//! with.
//!
//! The code here only sees the vCPU through [`GuestCpu`], so every recovery is unit-tested
//! without KVM.

use kvm_bindings::{kvm_regs, kvm_sregs};

pub mod decode;
pub mod handlers;
pub mod kind;
pub mod kvm_cpu;
pub mod page_walk;
pub mod recover;
pub mod registers;
pub mod stats;
#[cfg(test)]
mod test_support;

pub use decode::{code_bitness, ByteSource, DecodedInstruction};
pub use kvm_cpu::{emulation_failure_data, KvmGuestCpu};
pub use page_walk::{translate, Translation};
pub use recover::{
    handle_emulation_failure, FailureReport, Outcome, Recovered, RecoveredKind, NOT_RECOVERED,
};
pub use stats::RecoveryStats;

/// The MXCSR_MASK assumed when the vCPU cannot report its own: the architecturally defined
/// bits 0..15 (flags, masks, rounding control, FZ, DAZ).
pub const DEFAULT_MXCSR_MASK: u32 = 0xffff;

/// What recovery needs from a vCPU: registers, guest-virtual memory and exception injection.
pub trait GuestCpu {
    /// The general-purpose registers, RIP and RFLAGS (`KVM_GET_REGS`).
    fn regs(&self) -> Result<kvm_regs, CpuAccessError>;
    /// Writes the general-purpose registers, RIP and RFLAGS (`KVM_SET_REGS`).
    fn set_regs(&mut self, regs: &kvm_regs) -> Result<(), CpuAccessError>;
    /// The segment, control and descriptor-table registers and EFER (`KVM_GET_SREGS`).
    fn sregs(&self) -> Result<kvm_sregs, CpuAccessError>;
    /// The SSE control/status register.
    fn mxcsr(&self) -> Result<u32, CpuAccessError>;
    /// Sets MXCSR; callers have already checked it against [`GuestCpu::mxcsr_mask`].
    fn set_mxcsr(&mut self, value: u32) -> Result<(), CpuAccessError>;
    /// The MXCSR bits software may set (MXCSR_MASK in the FXSAVE area); setting any other bit
    /// raises #GP. The default is [`DEFAULT_MXCSR_MASK`].
    fn mxcsr_mask(&self) -> Result<u32, CpuAccessError> {
        Ok(DEFAULT_MXCSR_MASK)
    }
    /// The x87 FPU status word (for `fwait`).
    fn fpu_status_word(&self) -> Result<u16, CpuAccessError>;
    /// The x87 FPU control word (for `fwait`).
    fn fpu_control_word(&self) -> Result<u16, CpuAccessError>;
    /// Reads guest-virtual memory, translating through the guest's page tables.
    fn read_virtual(&self, gva: u64, buf: &mut [u8]) -> Result<(), CpuAccessError>;
    /// Writes guest-virtual memory, translating through the guest's page tables.
    fn write_virtual(&mut self, gva: u64, buf: &[u8]) -> Result<(), CpuAccessError>;
    /// Queues an exception for delivery on the next entry.
    fn inject_exception(
        &mut self,
        vector: u8,
        error_code: Option<u32>,
    ) -> Result<(), CpuAccessError>;
}

/// A vCPU register or memory access that failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpuAccessError {
    /// A KVM ioctl on the vCPU failed; the text names the ioctl and the error.
    #[error("vCPU ioctl failed: {0}")]
    Ioctl(String),
    /// The guest page tables have no present mapping for this guest-virtual address.
    #[error("guest virtual address {0:#x} is not mapped")]
    Unmapped(u64),
    /// The guest-physical address a translation led to is not guest RAM.
    #[error("guest physical address {0:#x} is outside guest memory")]
    OutsideMemory(u64),
    /// The page tables forbid this access (write to read-only, or user access to supervisor).
    #[error(
        "guest virtual address {0:#x} does not permit this access at the current privilege level"
    )]
    NotPermitted(u64),
}
