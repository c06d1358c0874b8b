//! [`GuestCpu`] for a real KVM vCPU, and reading the emulation-failure data out of `kvm_run`.
//!
//! Registers go through `KVM_GET/SET_REGS` and `KVM_GET_SREGS`, the x87 control and status
//! words through `KVM_GET_FPU`, exceptions through `KVM_GET/SET_VCPU_EVENTS`. MXCSR goes
//! through `KVM_GET/SET_XSAVE`: `KVM_GET_FPU` reports it as 0 and `KVM_SET_FPU` ignores it
//! (measured on this project's hosts, and so in the kernel source), and `KVM_SET_XSAVE` only
//! takes it when XSTATE_BV marks the SSE state present. Guest-virtual memory is
//! translated one page at a time, by `KVM_TRANSLATE` when it gives an answer and by the
//! software walk in [`super::page_walk`] otherwise. Writes, and every access from CPL 3, are
//! also checked against the access rights of the software walk, so that recovery never writes
//! where the guest itself could not.

use kvm_bindings::{
    kvm_regs, kvm_run, kvm_sregs, kvm_xsave, Xsave, KVM_EXIT_INTERNAL_ERROR,
    KVM_INTERNAL_ERROR_EMULATION,
};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::page_walk::{self, Piece};
use super::registers::cpl;
use super::{CpuAccessError, GuestCpu};

/// Where things are in the XSAVE area, in 32-bit words: MXCSR at byte 24, MXCSR_MASK at byte
/// 28, and the low half of XSTATE_BV at byte 512.
const XSAVE_MXCSR: usize = 6;
const XSAVE_MXCSR_MASK: usize = 7;
const XSAVE_XSTATE_BV: usize = 128;
/// The SSE component's bit in XSTATE_BV.
const XSTATE_SSE: u32 = 1 << 1;
/// The mask to assume when the FXSAVE area reports MXCSR_MASK as 0 (processors without DAZ).
const MXCSR_MASK_WITHOUT_DAZ: u32 = 0xffbf;

/// An upper bound, in bytes, of the guest XSAVE area that `KVM_SET_XSAVE` copies in: the size
/// XSAVE needs for every component the processor supports in XCR0 (CPUID.(EAX=0DH,ECX=0):ECX),
/// of which KVM's guest area holds a subset. Never less than `sizeof(kvm_xsave)`.
fn xsave_area_bound() -> usize {
    use std::arch::x86_64::__cpuid_count;
    const CPUID_XSAVE: u32 = 1 << 26;
    // Newer toolchains have CPUID as a safe function; 1.85 (the MSRV) does not.
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86_64 processor and only reads identification registers.
    let (features, xsave) = unsafe { (__cpuid_count(1, 0), __cpuid_count(0xd, 0)) };
    let legacy = std::mem::size_of::<kvm_xsave>();
    if features.ecx & CPUID_XSAVE == 0 {
        return legacy;
    }
    legacy.max(xsave.ecx as usize)
}

/// The data of an emulation-failure exit (`KVM_EXIT_INTERNAL_ERROR` with suberror
/// `KVM_INTERNAL_ERROR_EMULATION`): `internal.data[..ndata]`, to pass to
/// [`super::handle_emulation_failure`]. `None` for any other exit.
pub fn emulation_failure_data(run: &kvm_run) -> Option<Vec<u64>> {
    if run.exit_reason != KVM_EXIT_INTERNAL_ERROR {
        return None;
    }
    // SAFETY: for KVM_EXIT_INTERNAL_ERROR the kernel fills the `internal` member of the union,
    // and that member is plain integers, for which every bit pattern is valid.
    let internal = unsafe { run.__bindgen_anon_1.internal };
    if internal.suberror != KVM_INTERNAL_ERROR_EMULATION {
        return None;
    }
    let ndata = usize::try_from(internal.ndata)
        .unwrap_or(usize::MAX)
        .min(internal.data.len());
    Some(internal.data[..ndata].to_vec())
}

/// A KVM vCPU and its VM's memory, as recovery sees them. Use it only while the vCPU is not
/// running (between `KVM_RUN` calls on the vCPU's own thread).
pub struct KvmGuestCpu<'a> {
    /// The vCPU whose registers are read and written.
    pub vcpu: &'a VcpuFd,
    /// The VM's guest memory, for guest-virtual accesses after translation.
    pub memory: &'a GuestMemoryMmap,
}

fn ioctl(name: &'static str) -> impl Fn(kvm_ioctls::Error) -> CpuAccessError {
    move |error| CpuAccessError::Ioctl(format!("{name}: {error}"))
}

impl<'a> KvmGuestCpu<'a> {
    /// Wraps `vcpu` and `memory`; the vCPU must not be running while this is used.
    pub fn new(vcpu: &'a VcpuFd, memory: &'a GuestMemoryMmap) -> Self {
        KvmGuestCpu { vcpu, memory }
    }

    fn translate(&self, sregs: &kvm_sregs, gva: u64) -> Result<u64, CpuAccessError> {
        if let Ok(translation) = self.vcpu.translate_gva(gva) {
            if translation.valid != 0 {
                return Ok(translation.physical_address);
            }
        }
        page_walk::translate(self.memory, sregs, gva)
    }

    /// Translates every page of `gva..gva + len` before anything is accessed, so that a failed
    /// access changes nothing.
    fn pieces(&self, gva: u64, len: usize, write: bool) -> Result<Vec<Piece>, CpuAccessError> {
        let sregs = self.sregs()?;
        let user_mode = cpl(&self.regs()?, &sregs) == 3;
        page_walk::split_access(
            self.memory,
            &sregs,
            user_mode,
            (gva, len, write),
            |address| self.translate(&sregs, address),
        )
    }
}

impl GuestCpu for KvmGuestCpu<'_> {
    fn regs(&self) -> Result<kvm_regs, CpuAccessError> {
        self.vcpu.get_regs().map_err(ioctl("KVM_GET_REGS"))
    }

    fn set_regs(&mut self, regs: &kvm_regs) -> Result<(), CpuAccessError> {
        self.vcpu.set_regs(regs).map_err(ioctl("KVM_SET_REGS"))
    }

    fn sregs(&self) -> Result<kvm_sregs, CpuAccessError> {
        self.vcpu.get_sregs().map_err(ioctl("KVM_GET_SREGS"))
    }

    fn mxcsr(&self) -> Result<u32, CpuAccessError> {
        // The first 4096 bytes hold the legacy area whatever the guest's XSAVE size.
        Ok(self
            .vcpu
            .get_xsave()
            .map_err(ioctl("KVM_GET_XSAVE"))?
            .region[XSAVE_MXCSR])
    }

    fn set_mxcsr(&mut self, value: u32) -> Result<(), CpuAccessError> {
        let set = |region: &mut [u32; 1024]| {
            region[XSAVE_MXCSR] = value;
            region[XSAVE_XSTATE_BV] |= XSTATE_SSE;
        };
        let bound = xsave_area_bound();
        if bound <= std::mem::size_of::<kvm_xsave>() {
            let mut xsave = self.vcpu.get_xsave().map_err(ioctl("KVM_GET_XSAVE"))?;
            set(&mut xsave.region);
            // SAFETY: KVM reads the guest's XSAVE area size, at most `bound` bytes, which fit in
            // the 4096 bytes of `kvm_xsave`.
            return unsafe { self.vcpu.set_xsave(&xsave) }.map_err(ioctl("KVM_SET_XSAVE"));
        }
        let words = (bound - std::mem::size_of::<kvm_xsave>()).div_ceil(std::mem::size_of::<u32>());
        let mut xsave = Xsave::new(words).map_err(|error| {
            CpuAccessError::Ioctl(format!("allocating an XSAVE area: {error:?}"))
        })?;
        // SAFETY: `xsave` has room for `bound` bytes, at least the guest XSAVE area KVM writes.
        unsafe { self.vcpu.get_xsave2(&mut xsave) }.map_err(ioctl("KVM_GET_XSAVE2"))?;
        // SAFETY: only the fixed-size region is changed, not the length of the flexible array.
        set(unsafe { &mut xsave.as_mut_fam_struct().xsave.region });
        // SAFETY: `xsave` has room for `bound` bytes, at least the guest XSAVE area KVM reads.
        unsafe { self.vcpu.set_xsave2(&xsave) }.map_err(ioctl("KVM_SET_XSAVE2"))
    }

    fn mxcsr_mask(&self) -> Result<u32, CpuAccessError> {
        match self
            .vcpu
            .get_xsave()
            .map_err(ioctl("KVM_GET_XSAVE"))?
            .region[XSAVE_MXCSR_MASK]
        {
            0 => Ok(MXCSR_MASK_WITHOUT_DAZ),
            mask => Ok(mask),
        }
    }

    fn fpu_status_word(&self) -> Result<u16, CpuAccessError> {
        Ok(self.vcpu.get_fpu().map_err(ioctl("KVM_GET_FPU"))?.fsw)
    }

    fn fpu_control_word(&self) -> Result<u16, CpuAccessError> {
        Ok(self.vcpu.get_fpu().map_err(ioctl("KVM_GET_FPU"))?.fcw)
    }

    fn read_virtual(&self, gva: u64, buf: &mut [u8]) -> Result<(), CpuAccessError> {
        for piece in self.pieces(gva, buf.len(), false)? {
            self.memory
                .read_slice(
                    &mut buf[piece.start..piece.start + piece.len],
                    GuestAddress(piece.gpa),
                )
                .map_err(|_| CpuAccessError::OutsideMemory(piece.gpa))?;
        }
        Ok(())
    }

    fn write_virtual(&mut self, gva: u64, buf: &[u8]) -> Result<(), CpuAccessError> {
        let pieces = self.pieces(gva, buf.len(), true)?;
        // Check every piece is RAM before writing any of it.
        if let Some(piece) = pieces.iter().find(|piece| {
            !GuestMemoryBackend::check_range(self.memory, GuestAddress(piece.gpa), piece.len)
        }) {
            return Err(CpuAccessError::OutsideMemory(piece.gpa));
        }
        for piece in pieces {
            self.memory
                .write_slice(
                    &buf[piece.start..piece.start + piece.len],
                    GuestAddress(piece.gpa),
                )
                .map_err(|_| CpuAccessError::OutsideMemory(piece.gpa))?;
        }
        Ok(())
    }

    /// Queues `vector` as an already-injected exception, delivered on the next `KVM_RUN`.
    /// Fails if an exception is already queued. `flags` is left 0, so KVM keeps the vCPU's NMI,
    /// SIPI, interrupt-shadow and SMM state as it is.
    fn inject_exception(
        &mut self,
        vector: u8,
        error_code: Option<u32>,
    ) -> Result<(), CpuAccessError> {
        let mut events = self
            .vcpu
            .get_vcpu_events()
            .map_err(ioctl("KVM_GET_VCPU_EVENTS"))?;
        if events.exception.injected != 0 || events.exception.pending != 0 {
            return Err(CpuAccessError::Ioctl(format!(
                "KVM_SET_VCPU_EVENTS: exception {} is already queued",
                events.exception.nr
            )));
        }
        events.exception.injected = 1;
        events.exception.pending = 0;
        events.exception.nr = vector;
        events.exception.has_error_code = u8::from(error_code.is_some());
        events.exception.error_code = error_code.unwrap_or(0);
        events.exception_has_payload = 0;
        events.exception_payload = 0;
        events.flags = 0;
        self.vcpu
            .set_vcpu_events(&events)
            .map_err(ioctl("KVM_SET_VCPU_EVENTS"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::emulation::recover::{handle_emulation_failure, Outcome};
    use crate::hypervisor::emulation::registers::RFLAGS_ZF;
    use kvm_bindings::{
        kvm_run__bindgen_ty_1__bindgen_ty_13 as InternalExit, kvm_segment,
        kvm_userspace_memory_region, KVM_EXIT_HLT, KVM_MAX_CPUID_ENTRIES,
    };
    use kvm_ioctls::{Kvm, VcpuExit};

    fn run_with_internal_error(suberror: u32, ndata: u32, data: [u64; 16]) -> kvm_run {
        let mut run = kvm_run {
            exit_reason: KVM_EXIT_INTERNAL_ERROR,
            ..Default::default()
        };
        run.__bindgen_anon_1.internal = InternalExit {
            suberror,
            ndata,
            data,
        };
        run
    }

    #[test]
    fn failure_data_is_read_for_emulation_failures_only() {
        let mut data = [0u64; 16];
        data[0] = 1;
        data[1] = 0x9090_9090_9090_cc01;
        data[2] = 0x9090_9090_9090_9090;
        let run = run_with_internal_error(KVM_INTERNAL_ERROR_EMULATION, 8, data);
        assert_eq!(emulation_failure_data(&run), Some(data[..8].to_vec()));
        let run = run_with_internal_error(KVM_INTERNAL_ERROR_EMULATION, 40, data);
        assert_eq!(
            emulation_failure_data(&run).map(|data| data.len()),
            Some(16),
            "ndata is clamped"
        );
        let run = run_with_internal_error(2, 8, data);
        assert_eq!(emulation_failure_data(&run), None, "other suberrors");
        let mut run = run_with_internal_error(KVM_INTERNAL_ERROR_EMULATION, 8, data);
        run.exit_reason = KVM_EXIT_HLT;
        assert_eq!(emulation_failure_data(&run), None, "other exits");
    }

    const MEMORY_SIZE: usize = 0x20_0000;
    const GDT: u64 = 0x500;
    const PML4: u64 = 0x1000;
    const PDPT: u64 = 0x2000;
    const PD: u64 = 0x3000;
    const CODE: u64 = 0x10000;
    const DATA: u64 = 0x11000;

    /// ldmxcsr [DATA]; stmxcsr [DATA+0x10]; fwait; popcnt rax,rbx; verw [DATA+0x20]; lfence; hlt
    const PROGRAM: [u8; 36] = [
        0x0f, 0xae, 0x14, 0x25, 0x00, 0x10, 0x01, 0x00, // ldmxcsr [0x11000]
        0x0f, 0xae, 0x1c, 0x25, 0x10, 0x10, 0x01, 0x00, // stmxcsr [0x11010]
        0x9b, // fwait
        0xf3, 0x48, 0x0f, 0xb8, 0xc3, // popcnt rax,rbx
        0x0f, 0x00, 0x2c, 0x25, 0x20, 0x10, 0x01, 0x00, // verw [0x11020]
        0x0f, 0xae, 0xe8, // lfence
        0xf4, // hlt
        0x90, 0x90,
    ];
    const PROGRAM_END: u64 = CODE + 34;

    fn write<T: vm_memory::ByteValued>(memory: &GuestMemoryMmap, gpa: u64, value: T) {
        memory
            .write_obj(value, GuestAddress(gpa))
            .expect("inside test memory");
    }

    /// A 64-bit guest: identity-mapped first 2 MiB (one large page), flat code and data.
    fn set_up_long_mode(kvm: &Kvm, vcpu: &VcpuFd, memory: &GuestMemoryMmap) {
        write(memory, GDT, 0u64);
        write(memory, GDT + 8, 0x00af_9b00_0000_ffffu64);
        write(memory, GDT + 16, 0x00cf_9300_0000_ffffu64);
        write(memory, PML4, PDPT | 0x3);
        write(memory, PDPT, PD | 0x3);
        write(memory, PD, 0x83u64);
        memory
            .write_slice(&PROGRAM, GuestAddress(CODE))
            .expect("inside test memory");
        write(memory, DATA, 0x1fa0u32);
        write(memory, DATA + 0x20, 0x10u16);

        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .expect("KVM_GET_SUPPORTED_CPUID");
        vcpu.set_cpuid2(&cpuid).expect("KVM_SET_CPUID2");
        let mut sregs = vcpu.get_sregs().expect("KVM_GET_SREGS");
        let code = kvm_segment {
            base: 0,
            limit: 0xffff_ffff,
            selector: 0x08,
            type_: 0xb,
            present: 1,
            dpl: 0,
            db: 0,
            s: 1,
            l: 1,
            g: 1,
            avl: 0,
            unusable: 0,
            padding: 0,
        };
        let data = kvm_segment {
            selector: 0x10,
            type_: 0x3,
            db: 1,
            l: 0,
            ..code
        };
        sregs.cs = code;
        sregs.ds = data;
        sregs.es = data;
        sregs.fs = data;
        sregs.gs = data;
        sregs.ss = data;
        sregs.gdt.base = GDT;
        sregs.gdt.limit = 23;
        sregs.cr0 = 0x8005_0033; // PG WP NE ET MP PE
        sregs.cr3 = PML4;
        sregs.cr4 = 0x620; // OSXMMEXCPT OSFXSR PAE
        sregs.efer = 0x500; // LMA LME
        vcpu.set_sregs(&sregs).expect("KVM_SET_SREGS");
        let regs = kvm_regs {
            rip: CODE,
            rflags: 0x2,
            rsp: 0x8000,
            rbx: 0xf0f0,
            ..Default::default()
        };
        vcpu.set_regs(&regs).expect("KVM_SET_REGS");
    }

    enum Exit {
        Halted,
        EmulationFailure,
    }

    /// Runs a small program on a real vCPU, recovering every emulation failure through
    /// `KvmGuestCpu`. Where KVM runs the program itself (hardware virtualization), no failure
    /// happens and the checks hold all the same.
    #[test]
    fn program_completes_on_a_real_vcpu() {
        let kvm = match Kvm::new() {
            Ok(kvm) => kvm,
            Err(error) => {
                eprintln!("skipped: /dev/kvm is not available: {error}");
                return;
            }
        };
        let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEMORY_SIZE)])
            .expect("guest memory");
        let vm = kvm.create_vm().expect("KVM_CREATE_VM");
        let host = memory
            .get_host_address(GuestAddress(0))
            .expect("host mapping");
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: MEMORY_SIZE as u64,
            userspace_addr: host as u64,
        };
        // SAFETY: `memory` owns the mapping and is declared before `vm`, so it outlives the VM.
        unsafe { vm.set_user_memory_region(region) }.expect("KVM_SET_USER_MEMORY_REGION");
        let mut vcpu = vm.create_vcpu(0).expect("KVM_CREATE_VCPU");
        set_up_long_mode(&kvm, &vcpu, &memory);

        let mut recovered = Vec::new();
        for _ in 0..32 {
            let exit = match vcpu.run() {
                Ok(VcpuExit::Hlt) => Exit::Halted,
                Ok(VcpuExit::InternalError) => Exit::EmulationFailure,
                Ok(other) => panic!("unexpected exit {other:?}"),
                Err(error) if error.errno() == libc::EINTR || error.errno() == libc::EAGAIN => {
                    continue
                }
                Err(error) => panic!("KVM_RUN: {error}"),
            };
            if let Exit::Halted = exit {
                break;
            }
            let data = emulation_failure_data(vcpu.get_kvm_run()).expect("an emulation failure");
            let mut cpu = KvmGuestCpu::new(&vcpu, &memory);
            match handle_emulation_failure(&mut cpu, &data) {
                Outcome::Recovered(done) => recovered.push(done.kind.name()),
                Outcome::Failed(report) => panic!("{report}"),
            }
        }
        eprintln!("recovered on this host: {recovered:?}");

        let regs = vcpu.get_regs().expect("KVM_GET_REGS");
        assert_eq!(regs.rip, PROGRAM_END, "halted after the program");
        assert_eq!(regs.rax, 8, "popcnt rax,rbx");
        assert_ne!(
            regs.rflags & RFLAGS_ZF,
            0,
            "verw of a writable data selector"
        );
        let cpu = KvmGuestCpu::new(&vcpu, &memory);
        assert_eq!(cpu.mxcsr(), Ok(0x1fa0), "ldmxcsr");
        assert_eq!(
            memory
                .read_obj::<u32>(GuestAddress(DATA + 0x10))
                .expect("in memory"),
            0x1fa0,
            "stmxcsr"
        );
    }

    #[test]
    fn adapter_reads_translates_and_injects() {
        let Ok(kvm) = Kvm::new() else {
            eprintln!("skipped: /dev/kvm is not available");
            return;
        };
        let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEMORY_SIZE)])
            .expect("guest memory");
        let vm = kvm.create_vm().expect("KVM_CREATE_VM");
        let host = memory
            .get_host_address(GuestAddress(0))
            .expect("host mapping");
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: MEMORY_SIZE as u64,
            userspace_addr: host as u64,
        };
        // SAFETY: `memory` owns the mapping and is declared before `vm`, so it outlives the VM.
        unsafe { vm.set_user_memory_region(region) }.expect("KVM_SET_USER_MEMORY_REGION");
        let vcpu = vm.create_vcpu(0).expect("KVM_CREATE_VCPU");
        set_up_long_mode(&kvm, &vcpu, &memory);
        let mut cpu = KvmGuestCpu::new(&vcpu, &memory);

        // A read across a page boundary.
        let mut bytes = [0u8; 8];
        cpu.read_virtual(DATA - 4, &mut bytes).expect("mapped");
        assert_eq!(bytes, [0, 0, 0, 0, 0xa0, 0x1f, 0, 0]);
        cpu.write_virtual(DATA + 0x30, &[1, 2, 3])
            .expect("writable");
        assert_eq!(
            memory
                .read_obj::<[u8; 3]>(GuestAddress(DATA + 0x30))
                .expect("in memory"),
            [1, 2, 3]
        );
        let sregs = cpu.sregs().expect("sregs");
        assert_eq!(
            page_walk::translate(&memory, &sregs, DATA + 5),
            Ok(DATA + 5)
        );
        if let Ok(translation) = vcpu.translate_gva(DATA + 5) {
            assert_eq!(
                (translation.valid, translation.physical_address),
                (1, DATA + 5),
                "KVM_TRANSLATE"
            );
        }
        assert_eq!(
            cpu.read_virtual(0x4000_0000, &mut bytes),
            Err(CpuAccessError::Unmapped(0x4000_0000))
        );
        assert_eq!(
            cpu.write_virtual(0x4000_0000, &[0]),
            Err(CpuAccessError::Unmapped(0x4000_0000))
        );

        // 0x20_0000: a read-only supervisor page (at 0x5000); 0x20_1000: a writable one (at 0x6000).
        write(&memory, PD + 8, 0x4003u64);
        write(&memory, 0x4000, 0x5001u64);
        write(&memory, 0x4008, 0x6003u64);
        write(&memory, 0x5000, 0x1122_3344u32);
        cpu.read_virtual(0x20_0000, &mut bytes[..4])
            .expect("readable");
        assert_eq!(bytes[..4], [0x44, 0x33, 0x22, 0x11]);
        assert_eq!(
            cpu.write_virtual(0x20_0000, &[0]),
            Err(CpuAccessError::NotPermitted(0x20_0000))
        );
        // A write running from the writable page into an unmapped one changes nothing.
        assert_eq!(
            cpu.write_virtual(0x20_1ffe, &[9; 4]),
            Err(CpuAccessError::Unmapped(0x20_2000))
        );
        assert_eq!(
            memory
                .read_obj::<u16>(GuestAddress(0x6ffe))
                .expect("in memory"),
            0
        );
        cpu.write_virtual(0x20_1000, &[7]).expect("writable");
        assert_eq!(
            memory
                .read_obj::<u8>(GuestAddress(0x6000))
                .expect("in memory"),
            7
        );
        // From CPL 3, supervisor pages are out of reach.
        let mut user = sregs;
        user.cs.selector = 0x0b;
        user.cs.dpl = 3;
        vcpu.set_sregs(&user).expect("KVM_SET_SREGS");
        assert_eq!(
            cpu.read_virtual(0x20_1000, &mut bytes[..1]),
            Err(CpuAccessError::NotPermitted(0x20_1000))
        );
        vcpu.set_sregs(&sregs).expect("KVM_SET_SREGS");

        assert_eq!(cpu.mxcsr(), Ok(0x1f80), "MXCSR at reset");
        cpu.set_mxcsr(0x1f81).expect("set MXCSR");
        assert_eq!(cpu.mxcsr(), Ok(0x1f81));
        let mask = cpu.mxcsr_mask().expect("MXCSR_MASK");
        assert_eq!(
            mask & 0xffbf,
            0xffbf,
            "MXCSR_MASK {mask:#x} has every flag, mask and control bit"
        );
        assert_eq!(
            cpu.fpu_control_word().map(|fcw| fcw & 0x3f),
            Ok(0x3f),
            "x87 exceptions masked at reset"
        );

        cpu.inject_exception(13, Some(0)).expect("inject #GP(0)");
        let events = vcpu.get_vcpu_events().expect("KVM_GET_VCPU_EVENTS");
        assert_eq!(
            (
                events.exception.injected,
                events.exception.nr,
                events.exception.has_error_code,
                events.exception.error_code
            ),
            (1, 13, 1, 0)
        );
        let mut cpu = KvmGuestCpu::new(&vcpu, &memory);
        assert!(
            cpu.inject_exception(3, None).is_err(),
            "one exception at a time"
        );
    }
}
