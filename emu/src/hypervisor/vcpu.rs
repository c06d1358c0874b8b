//! vCPUs: creation and boot-time configuration, and the thread that runs each one and
//! dispatches its exits to the buses, the power logic and emulation-failure recovery.

use super::emulation::{self, KvmGuestCpu, Outcome, RecoveryStats};
use super::kvm_vm::KvmError;
use super::run_control::RunControl;
use crate::arch::x86_64::{cpuid, regs};
use crate::bus::Bus;
use crate::devices::PowerRequest;
use kvm_bindings::{Msrs, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use std::sync::Arc;
use vm_memory::{GuestAddress, GuestMemoryMmap};

const KVM_SYSTEM_EVENT_SHUTDOWN: u32 = 1;
const KVM_SYSTEM_EVENT_RESET: u32 = 2;
const KVM_SYSTEM_EVENT_CRASH: u32 = 3;

fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> KvmError {
    move |source| KvmError::Ioctl { what, source }
}

/// Creates vCPU `index` of `count` with CPUID, MSRs, FPU and local APIC LINT pins set. The boot
/// vCPU (index 0) also gets the long-mode registers to enter the kernel at `entry`.
pub fn create_vcpu(
    kvm: &Kvm,
    vm: &VmFd,
    index: u8,
    count: u8,
    entry: Option<(GuestAddress, GuestAddress)>,
) -> Result<VcpuFd, KvmError> {
    let vcpu = vm
        .create_vcpu(u64::from(index))
        .map_err(ioctl("KVM_CREATE_VCPU"))?;
    let mut cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(ioctl("KVM_GET_SUPPORTED_CPUID"))?;
    cpuid::configure_entries(cpuid.as_mut_slice(), index, count);
    vcpu.set_cpuid2(&cpuid).map_err(ioctl("KVM_SET_CPUID2"))?;

    let entries = regs::boot_msrs();
    let msrs = Msrs::from_entries(&entries)
        .map_err(|_| KvmError::MissingCapability("room for the boot MSRs"))?;
    let written = vcpu.set_msrs(&msrs).map_err(ioctl("KVM_SET_MSRS"))?;
    if written != entries.len() {
        log::debug!(
            "KVM accepted {written} of {} boot MSRs (stopped at {:#x})",
            entries.len(),
            entries.get(written).map_or(0, |e| e.index)
        );
    }
    vcpu.set_fpu(&regs::boot_fpu())
        .map_err(ioctl("KVM_SET_FPU"))?;
    let lapic = vcpu.get_lapic().map_err(ioctl("KVM_GET_LAPIC"))?;
    vcpu.set_lapic(&regs::configure_lint(lapic))
        .map_err(ioctl("KVM_SET_LAPIC"))?;

    if let Some((entry, boot_params)) = entry {
        vcpu.set_regs(&regs::boot_regs(entry, boot_params))
            .map_err(ioctl("KVM_SET_REGS"))?;
        let sregs = vcpu.get_sregs().map_err(ioctl("KVM_GET_SREGS"))?;
        vcpu.set_sregs(&regs::boot_sregs(sregs))
            .map_err(ioctl("KVM_SET_SREGS"))?;
    }
    Ok(vcpu)
}

/// What a vCPU thread reports to the machine.
#[derive(Debug, Clone)]
pub enum VcpuEvent {
    /// The guest asked for power off or reset (through KVM or a triple fault).
    Power(PowerRequest),
    /// The vCPU stopped and cannot go on; the VM must stop.
    Failed {
        /// Index of the failed vCPU.
        cpu: u8,
        /// What went wrong, e.g. a [`FailureReport`](super::emulation::FailureReport) as text.
        report: String,
    },
}

/// Everything a vCPU thread needs besides its file descriptor.
pub struct VcpuContext {
    /// The vCPU's index, 0-based; vCPU 0 is the one that boots the kernel.
    pub index: u8,
    /// The port I/O bus that `KVM_EXIT_IO` exits go to.
    pub pio: Arc<Bus>,
    /// The MMIO bus that `KVM_EXIT_MMIO` exits go to.
    pub mmio: Arc<Bus>,
    /// Guest memory, for instructions and operands during emulation-failure recovery.
    pub memory: GuestMemoryMmap,
    /// The run/pause/stop state shared with the machine.
    pub control: Arc<RunControl>,
    /// Counters of recovered and failed emulation failures.
    pub recovery: Arc<RecoveryStats>,
    /// Where the thread reports power requests and failures.
    pub events: Arc<dyn Fn(VcpuEvent) + Send + Sync>,
}

/// What one exit asks of the run loop.
enum Next {
    Continue,
    Exit,
    /// KVM_EXIT_INTERNAL_ERROR: decode and maybe recover.
    InternalError,
}

/// Runs the vCPU until the machine stops it or it fails. Owns the vCPU for that time.
pub fn run_vcpu(mut vcpu: VcpuFd, ctx: VcpuContext) {
    while ctx.control.checkpoint() {
        let next = match vcpu.run() {
            Ok(exit) => handle_exit(exit, &ctx),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Next::Continue,
            Err(e) => fail(&ctx, format!("KVM_RUN failed: {e}")),
        };
        // Internal errors need the vCPU itself, which the exit borrowed.
        let next = match next {
            Next::InternalError => handle_internal_error(&mut vcpu, &ctx),
            other => other,
        };
        if let Next::Exit = next {
            break;
        }
    }
}

fn fail(ctx: &VcpuContext, report: String) -> Next {
    (ctx.events)(VcpuEvent::Failed {
        cpu: ctx.index,
        report,
    });
    Next::Exit
}

fn power(ctx: &VcpuContext, request: PowerRequest) -> Next {
    (ctx.events)(VcpuEvent::Power(request));
    Next::Continue
}

fn handle_exit(exit: VcpuExit, ctx: &VcpuContext) -> Next {
    match exit {
        VcpuExit::IoIn(port, data) => {
            if !ctx.pio.read(u64::from(port), data) {
                log::trace!("unhandled port read {port:#x} ({} bytes)", data.len());
            }
            Next::Continue
        }
        VcpuExit::IoOut(port, data) => {
            if !ctx.pio.write(u64::from(port), data) {
                log::trace!("unhandled port write {port:#x} = {data:02x?}");
            }
            Next::Continue
        }
        VcpuExit::MmioRead(addr, data) => {
            if !ctx.mmio.read(addr, data) {
                log::debug!("unhandled MMIO read {addr:#x} ({} bytes)", data.len());
            }
            Next::Continue
        }
        VcpuExit::MmioWrite(addr, data) => {
            if !ctx.mmio.write(addr, data) {
                log::debug!("unhandled MMIO write {addr:#x} = {data:02x?}");
            }
            Next::Continue
        }
        VcpuExit::Shutdown => {
            log::warn!("vCPU {}: the guest triple-faulted; resetting the VM", ctx.index);
            power(ctx, PowerRequest::Reset)
        }
        VcpuExit::SystemEvent(kind, _) => match kind {
            KVM_SYSTEM_EVENT_SHUTDOWN => power(ctx, PowerRequest::PowerOff),
            KVM_SYSTEM_EVENT_RESET => power(ctx, PowerRequest::Reset),
            KVM_SYSTEM_EVENT_CRASH => fail(ctx, "the guest reported a crash (KVM_SYSTEM_EVENT_CRASH)".into()),
            other => {
                log::warn!("vCPU {}: ignoring KVM system event {other}", ctx.index);
                Next::Continue
            }
        },
        VcpuExit::Hlt => {
            // With the in-kernel irqchip KVM handles HLT itself; an exit here is unexpected but
            // harmless: yield and go back in.
            std::thread::yield_now();
            Next::Continue
        }
        VcpuExit::FailEntry(reason, cpu) => fail(
            ctx,
            format!("KVM could not enter the guest: hardware entry failure reason {reason:#x} on host CPU {cpu}"),
        ),
        VcpuExit::InternalError => Next::InternalError,
        VcpuExit::IoapicEoi(_) | VcpuExit::Intr => Next::Continue,
        other => fail(ctx, format!("unexpected KVM exit: {other:?}")),
    }
}

fn handle_internal_error(vcpu: &mut VcpuFd, ctx: &VcpuContext) -> Next {
    let Some(data) = emulation::emulation_failure_data(vcpu.get_kvm_run()) else {
        // SAFETY: this is only reached for KVM_EXIT_INTERNAL_ERROR, for which KVM fills the
        // `internal` member of the exit union (plain integers).
        let internal = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal };
        let ndata = (internal.ndata as usize).min(internal.data.len());
        return fail(
            ctx,
            format!(
                "KVM internal error (suberror {}, data {:#x?})",
                internal.suberror,
                &internal.data[..ndata]
            ),
        );
    };
    let mut cpu = KvmGuestCpu::new(vcpu, &ctx.memory);
    match emulation::handle_emulation_failure(&mut cpu, &data) {
        Outcome::Recovered(done) => {
            ctx.recovery.record_recovery(done.kind);
            log::debug!(
                "vCPU {}: recovered {} at {:#x}: {}",
                ctx.index,
                done.kind.name(),
                done.rip,
                done.detail
            );
            Next::Continue
        }
        Outcome::Failed(report) => {
            ctx.recovery.record_failure();
            fail(ctx, report.to_string())
        }
    }
}
