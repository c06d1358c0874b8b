//! Builds a machine from a config, top to bottom: host profile, memory, KVM VM and irqchip,
//! buses and platform devices, firmware tables, kernel, vCPUs. Each step is one call, in the
//! order the hardware needs, so this file reads as the machine's wiring diagram.

use super::console::ConsoleOutput;
use super::display_port::DisplayPort;
use super::events::{EventPowerSink, MachineEvent};
use super::pci_devices::{DeviceError, PciWiring};
use crate::arch::x86_64::layout::{self, ports};
use crate::arch::x86_64::{acpi, boot, regs};
use crate::bus::{Bus, BusError, SharedDevice};
use crate::config::{BootSource, VmConfig};
use crate::devices::{acpi_pm, cmos, debug_port, i8042, pit, reset, serial, PowerSink};
use crate::host::HostProfile;
use crate::hypervisor::kvm_irq::{KvmDoorbells, KvmMsiController};
use crate::hypervisor::kvm_stats::KvmStats;
use crate::hypervisor::kvm_vm::{self, KvmError, KvmIrqLine, KvmVm};
use crate::hypervisor::vcpu::create_vcpu;
use crate::interrupt::SharedLine;
use crate::memory::{self, MemoryError};
use crate::virtio::gpu::{Gpu, GpuHandle, GpuOptions};
use crate::virtio::input::Input;
use kvm_ioctls::VcpuFd;
use parking_lot::Mutex;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use vm_memory::GuestMemoryMmap;

/// Why a machine could not be built. Each names the problem in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The config boots through firmware, which Cove cannot do yet.
    #[error("this VM boots through firmware (from its disk or an installer ISO), which Cove cannot do yet; give it a kernel to boot directly")]
    FirmwareBoot,
    /// The config asks for 0 vCPUs.
    #[error("invalid CPU count {0}: a VM needs 1 to 255 vCPUs")]
    CpuCount(u8),
    /// Guest RAM could not be sized or allocated.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// KVM could not be opened or the VM created.
    #[error(transparent)]
    Kvm(#[from] KvmError),
    /// The kernel, initrd or command line could not be loaded.
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    /// The ACPI tables could not be built or written; the text says why.
    #[error("cannot write ACPI tables: {0}")]
    Acpi(String),
    /// The boot vCPU's initial registers or page tables could not be set.
    #[error(transparent)]
    Regs(#[from] regs::RegsError),
    /// Two platform devices claim overlapping port or MMIO ranges.
    #[error("device wiring conflict: {0}")]
    Bus(#[from] BusError),
    /// A disk or PCI device could not be added.
    #[error(transparent)]
    Device(#[from] DeviceError),
}

/// A built machine, ready to run.
pub struct Machine {
    /// The VM's name, from its config.
    pub name: String,
    /// The host profile in effect (quirks worked around for this host).
    pub profile: HostProfile,
    /// The kernel command line the guest got (the user's plus the host profile's).
    pub cmdline: String,
    /// Owns the VM file descriptor: the guest exists as long as this does.
    #[allow(dead_code)]
    pub(super) vm: KvmVm,
    pub(super) memory: GuestMemoryMmap,
    pub(super) vcpus: Vec<VcpuFd>,
    pub(super) vcpu_stats: Vec<KvmStats>,
    pub(super) pio: Arc<Bus>,
    pub(super) mmio: Arc<Bus>,
    pub(super) serial: Arc<Mutex<serial::Serial>>,
    pub(super) acpi_pm: Arc<Mutex<acpi_pm::AcpiPm>>,
    /// Kept so its timer thread lives exactly as long as the machine.
    pub(super) pit: Option<Arc<Mutex<pit::Pit>>>,
    /// The PCI root bus and, through it, every PCI device and its worker threads.
    #[allow(dead_code)]
    pub(super) pci: PciWiring,
    /// The GPU, when the VM has a display.
    pub(super) gpu: Option<GpuHandle>,
}

/// Builds the machine `config` describes. Its devices report power requests on `events`; its
/// serial console writes to `console`.
pub fn build_machine(
    config: &VmConfig,
    console: &ConsoleOutput,
    events: &Sender<MachineEvent>,
    display: Option<&DisplayPort>,
) -> Result<Machine, BuildError> {
    if config.cpus == 0 {
        return Err(BuildError::CpuCount(config.cpus));
    }
    let profile = HostProfile::resolve(config.host_profile);
    let (kernel, initrd, cmdline) = match &config.boot {
        BootSource::Kernel {
            kernel,
            initrd,
            cmdline,
        } => (kernel, initrd, cmdline),
        BootSource::Firmware { .. } => return Err(BuildError::FirmwareBoot),
    };
    let (cmdline, added) = profile.apply_to_cmdline(cmdline, config.cpus);
    if profile == HostProfile::Pvm {
        log::info!(
            "host profile pvm (nested KVM without hardware virtualization): userspace PIT slowed {}x; added guest options: {}",
            profile.pit_slowdown(),
            if added.is_empty() { "none".to_string() } else { added.join(" ") }
        );
    }

    // Memory first: it is the cheapest check of the user's numbers.
    let memory = memory::create_guest_memory(config.memory.bytes())?;

    let kvm = kvm_vm::open_kvm()?;
    let vm = KvmVm::create(kvm, usize::from(config.cpus), !profile.userspace_pit())?;
    vm.map_memory(&memory)?;

    let pio = Arc::new(Bus::new());
    let mmio = Arc::new(Bus::new());
    let power: Arc<dyn PowerSink> = Arc::new(EventPowerSink(events.clone()));
    let line = |gsi: u32| -> SharedLine { vm.irq_line(gsi) };

    let serial = Arc::new(Mutex::new(serial::Serial::new(
        line(ports::COM1_IRQ),
        Box::new(console.clone()),
    )));
    pio.insert(serial.clone(), ports::COM1, ports::UART_LEN)?;

    let keyboard = i8042::I8042::new(power.clone(), line(1));
    pio.insert(shared(i8042::data_port(keyboard.clone())), ports::I8042, 1)?;
    pio.insert(shared(i8042::command_port(keyboard)), ports::I8042 + 4, 1)?;

    let (below_4g, above_4g) = split_memory(config.memory.bytes());
    pio.insert(
        shared(cmos::Cmos::new(below_4g, above_4g)),
        ports::CMOS,
        ports::CMOS_LEN,
    )?;
    pio.insert(shared(debug_port::PostCodePort::default()), ports::POST, 1)?;

    let pit = if profile.userspace_pit() {
        let pit = pit::Pit::new(line(0), profile.pit_slowdown());
        pio.insert(pit.clone(), ports::PIT, ports::PIT_LEN)?;
        pio.insert(shared(pit::speaker_port(&pit)), ports::SPEAKER, 1)?;
        Some(pit)
    } else {
        None
    };

    let acpi_pm = Arc::new(Mutex::new(acpi_pm::AcpiPm::new(
        line(ports::ACPI_SCI_IRQ),
        power.clone(),
    )));
    pio.insert(acpi_pm.clone(), ports::ACPI_PM_BASE, ports::ACPI_PM_LEN)?;
    // The reset register shares its port with the PCI address register (0xcf8-0xcfb): the
    // PCI configuration ports answer byte accesses at 0xcf9 with it.
    let reset_port = shared(reset::ResetControl::new(power));

    let pci = attach_pci_devices(config, &vm, &memory, &pio, &mmio, reset_port)?;
    let gpu = match display {
        Some(port) => Some(attach_display(&pci, port)?),
        None => None,
    };

    let rsdp = acpi::create_acpi_tables(&memory, config.cpus)
        .map_err(|e| BuildError::Acpi(e.to_string()))?;
    regs::write_boot_tables(&memory)?;
    let entry = boot::load_kernel(
        &memory,
        &boot::BootSpec {
            kernel,
            initrd: initrd.as_deref(),
            cmdline: &cmdline,
            rsdp: Some(rsdp),
        },
    )?;

    let mut vcpus = Vec::with_capacity(usize::from(config.cpus));
    for index in 0..config.cpus {
        let boot_entry = (index == 0).then_some((entry.entry, entry.boot_params));
        vcpus.push(create_vcpu(
            &vm.kvm,
            &vm.fd,
            index,
            config.cpus,
            boot_entry,
        )?);
    }
    let vcpu_stats = vcpus.iter().filter_map(KvmStats::open).collect();

    log::info!(
        "built VM '{}': {} vCPUs, {} RAM, kernel {}, entry {:#x}",
        config.name,
        config.cpus,
        config.memory,
        kernel.display(),
        entry.entry.0
    );
    Ok(Machine {
        name: config.name.clone(),
        profile,
        cmdline,
        vm,
        memory,
        vcpus,
        vcpu_stats,
        pio,
        mmio,
        serial,
        acpi_pm,
        pit,
        pci,
        gpu,
    })
}

/// virtio-gpu (showing on the port's sink), then the virtio keyboard and tablet fed from the
/// port's queues.
fn attach_display(pci: &PciWiring, port: &DisplayPort) -> Result<GpuHandle, BuildError> {
    let (width, height) = port.size();
    let (gpu, handle) = Gpu::new(
        &GpuOptions {
            width,
            height,
            ..GpuOptions::default()
        },
        port.sink(),
    );
    pci.add_virtio(Box::new(gpu))?;
    pci.add_virtio(Box::new(Input::keyboard(port.keyboard_queue())))?;
    pci.add_virtio(Box::new(Input::tablet(port.tablet_queue())))?;
    Ok(handle)
}

/// The PCI root bus with the VM's disks (virtio-blk, one queue per vCPU) and virtio-rng.
/// Device interrupts are KVM irqfds and their doorbells KVM ioeventfds, so queue work runs on
/// the devices' own threads.
fn attach_pci_devices(
    config: &VmConfig,
    vm: &KvmVm,
    memory: &GuestMemoryMmap,
    pio: &Arc<Bus>,
    mmio: &Arc<Bus>,
    reset_port: SharedDevice,
) -> Result<PciWiring, BuildError> {
    let fd = vm.fd.clone();
    let pci = PciWiring::new(
        pio,
        mmio,
        Some(reset_port),
        Box::new(move |gsi| Arc::new(KvmIrqLine::new(fd.clone(), gsi)) as SharedLine),
        memory.clone(),
        Arc::new(KvmMsiController::new(vm.fd.clone())),
        Arc::new(KvmDoorbells::new(vm.fd.clone())),
    )?;
    let queues = u16::from(config.cpus).min(crate::virtio::block::MAX_QUEUES);
    for disk in &config.disks {
        pci.add_raw_disk(&disk.path, disk.read_only, disk.serial.clone(), queues)?;
    }
    if config.rng {
        pci.add_rng()?;
    }
    Ok(pci)
}

fn shared<D: crate::bus::BusDevice + 'static>(device: D) -> SharedDevice {
    Arc::new(Mutex::new(device))
}

/// RAM below and above the MMIO hole.
fn split_memory(total: u64) -> (u64, u64) {
    let below = total.min(layout::MMIO_HOLE_START);
    (below, total - below)
}
