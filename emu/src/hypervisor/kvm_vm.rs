//! The KVM VM: opening `/dev/kvm`, the in-kernel irqchip and PIT, guest memory slots, and
//! interrupt lines backed by `KVM_IRQ_LINE`.

use crate::arch::x86_64::layout::{KVM_IDENTITY_MAP_ADDRESS, KVM_TSS_ADDRESS};
use crate::interrupt::InterruptLine;
use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Cap, Kvm, VmFd};
use std::sync::Arc;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// Why KVM could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// `/dev/kvm` does not exist (ENOENT, ENODEV or ENXIO).
    #[error("no /dev/kvm: KVM is not available on this host (is the kvm module loaded, and is hardware virtualization enabled?)")]
    NoKvm,
    /// `/dev/kvm` exists but opening it was refused (EACCES or EPERM).
    #[error("no permission to open /dev/kvm (add your user to the 'kvm' group, or run as root)")]
    NoPermission,
    /// Opening `/dev/kvm` failed for another reason.
    #[error("cannot open /dev/kvm: {0}")]
    Open(kvm_ioctls::Error),
    /// The host's KVM lacks a capability Cove needs (irqchip, user memory, ext CPUID),
    /// or a guest memory region has no host mapping.
    #[error("KVM does not provide {0}, which Cove needs")]
    MissingCapability(&'static str),
    /// A KVM ioctl failed while creating the VM; `what` names it.
    #[error("{what} failed: {source}")]
    Ioctl {
        /// The ioctl's name, e.g. `"KVM_CREATE_VM"`.
        what: &'static str,
        /// The ioctl's error.
        source: kvm_ioctls::Error,
    },
    /// The VM has more vCPUs than `KVM_CAP_MAX_VCPUS` allows.
    #[error("this KVM host allows at most {max} vCPUs; the VM asks for {requested}")]
    TooManyCpus {
        /// vCPUs in the VM's config.
        requested: usize,
        /// The host's limit (`KVM_CAP_MAX_VCPUS`).
        max: usize,
    },
}

fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> KvmError {
    move |source| KvmError::Ioctl { what, source }
}

/// Opens `/dev/kvm`, turning the common failures into errors a user can act on.
pub fn open_kvm() -> Result<Kvm, KvmError> {
    open_kvm_at("/dev/kvm")
}

/// Opens a KVM device node at `path` (tests point it elsewhere).
pub fn open_kvm_at(path: &str) -> Result<Kvm, KvmError> {
    let cpath = std::ffi::CString::new(path).map_err(|_| KvmError::NoKvm)?;
    Kvm::new_with_path(&cpath).map_err(|e| match e.errno() {
        libc::ENOENT | libc::ENODEV | libc::ENXIO => KvmError::NoKvm,
        libc::EACCES | libc::EPERM => KvmError::NoPermission,
        _ => KvmError::Open(e),
    })
}

/// A KVM VM with its irqchip.
pub struct KvmVm {
    /// The open `/dev/kvm`, for system-wide queries such as the supported CPUID.
    pub kvm: Kvm,
    /// The VM file descriptor, shared with vCPU setup, IRQ lines and doorbells.
    pub fd: Arc<VmFd>,
}

impl KvmVm {
    /// Creates the VM and its in-kernel interrupt controllers (PIC, IOAPIC, local APICs). With
    /// `in_kernel_pit`, KVM's PIT drives IRQ0; otherwise the machine adds a userspace one.
    pub fn create(kvm: Kvm, cpus: usize, in_kernel_pit: bool) -> Result<Self, KvmError> {
        for (cap, name) in [
            (Cap::Irqchip, "an in-kernel irqchip (KVM_CAP_IRQCHIP)"),
            (Cap::UserMemory, "user memory regions (KVM_CAP_USER_MEMORY)"),
            (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(KvmError::MissingCapability(name));
            }
        }
        let max = kvm.get_max_vcpus();
        if cpus > max {
            return Err(KvmError::TooManyCpus {
                requested: cpus,
                max,
            });
        }
        let fd = kvm.create_vm().map_err(ioctl("KVM_CREATE_VM"))?;
        // These two only matter on Intel hosts; elsewhere KVM may refuse them harmlessly.
        if let Err(e) = fd.set_tss_address(KVM_TSS_ADDRESS as usize) {
            log::debug!("KVM_SET_TSS_ADDR: {e}");
        }
        if let Err(e) = fd.set_identity_map_address(KVM_IDENTITY_MAP_ADDRESS) {
            log::debug!("KVM_SET_IDENTITY_MAP_ADDR: {e}");
        }
        fd.create_irq_chip().map_err(ioctl("KVM_CREATE_IRQCHIP"))?;
        if in_kernel_pit {
            let config = kvm_pit_config {
                flags: KVM_PIT_SPEAKER_DUMMY,
                ..Default::default()
            };
            fd.create_pit2(config).map_err(ioctl("KVM_CREATE_PIT2"))?;
        }
        Ok(Self {
            kvm,
            fd: Arc::new(fd),
        })
    }

    /// Maps every region of `memory` into the guest.
    pub fn map_memory(&self, memory: &GuestMemoryMmap) -> Result<(), KvmError> {
        for (slot, region) in memory.iter().enumerate() {
            let host = memory
                .get_host_address(region.start_addr())
                .map_err(|_| KvmError::MissingCapability("a host mapping for guest memory"))?;
            let region_desc = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host as u64,
            };
            // SAFETY: the region is a live mapping owned by `memory`, which the machine keeps
            // alive for as long as the VM exists; KVM only accesses it while the VM runs.
            unsafe { self.fd.set_user_memory_region(region_desc) }
                .map_err(ioctl("KVM_SET_USER_MEMORY_REGION"))?;
        }
        Ok(())
    }

    /// An interrupt line on `gsi`.
    pub fn irq_line(&self, gsi: u32) -> Arc<KvmIrqLine> {
        Arc::new(KvmIrqLine {
            vm: self.fd.clone(),
            gsi,
        })
    }
}

/// A GSI driven through `KVM_IRQ_LINE` (both the PIC and the IOAPIC see it).
pub struct KvmIrqLine {
    vm: Arc<VmFd>,
    gsi: u32,
}

impl KvmIrqLine {
    /// Drives `gsi` through `KVM_IRQ_LINE` on `vm`.
    pub fn new(vm: Arc<VmFd>, gsi: u32) -> Self {
        Self { vm, gsi }
    }
}

impl InterruptLine for KvmIrqLine {
    fn set_level(&self, high: bool) {
        if let Err(e) = self.vm.set_irq_line(self.gsi, high) {
            log::warn!(
                "cannot set IRQ {} {}: {e}",
                self.gsi,
                if high { "high" } else { "low" }
            );
        }
    }
}
