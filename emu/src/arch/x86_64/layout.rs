//! The guest physical address map of a Cove x86_64 machine.
//!
//! ```text
//! 0x0000_0500  GDT, then IDT
//! 0x0000_7000  zero page (Linux boot_params)
//! 0x0000_8ff0  initial stack (grows down)
//! 0x0000_9000  page tables: PML4, PDPT, 4 x PD (identity map of the low 4 GiB, 2 MiB pages)
//! 0x0002_0000  kernel command line
//! 0x0009_fc00  EBDA (reserved)
//! 0x000e_0000  ACPI tables: RSDP first, where the kernel's legacy scan also finds it (reserved)
//! 0x0010_0000  kernel (bzImage protected-mode part; ELF kernels go where their headers say)
//! ...          RAM, initrd at its top below 896 MiB
//! 0xc000_0000  32-bit MMIO hole up to 4 GiB:
//!              0xc000_0000 PCI BAR window (512 MiB), 0xe000_0000 PCI ECAM (256 MiB, buses 0-255),
//!              IOAPIC 0xfec0_0000, LAPIC 0xfee0_0000
//! 0x1_0000_0000 RAM above the hole
//! ```

pub const GDT_START: u64 = 0x500;
pub const IDT_START: u64 = 0x520;
pub const ZERO_PAGE_START: u64 = 0x7000;
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
pub const PML4_START: u64 = 0x9000;
pub const PDPT_START: u64 = 0xa000;
/// Four page directories follow the PDPT, one per GiB of the identity map.
pub const PD_START: u64 = 0xb000;
pub const CMDLINE_START: u64 = 0x20000;
/// The largest command line Cove passes (Linux's x86 COMMAND_LINE_SIZE).
pub const CMDLINE_MAX_SIZE: usize = 2048;
pub const EBDA_START: u64 = 0x9fc00;
pub const ACPI_START: u64 = 0xe0000;
pub const ACPI_END: u64 = 0x10_0000;
pub const HIMEM_START: u64 = 0x10_0000;
/// Highest address an initrd may end at, unless the kernel says less (initrd_addr_max).
pub const INITRD_MAX_END: u64 = 0x3800_0000;

pub const MMIO_HOLE_START: u64 = 0xc000_0000;
pub const MMIO_HOLE_END: u64 = 0x1_0000_0000;
pub const IOAPIC_START: u64 = 0xfec0_0000;

/// Where PCI memory BARs are placed: the low part of the MMIO hole.
pub const PCI_MMIO_WINDOW_START: u64 = 0xc000_0000;
pub const PCI_MMIO_WINDOW_SIZE: u64 = 0x2000_0000;
/// PCI Express enhanced configuration space (ECAM): 1 MiB per bus, buses 0 to
/// [`PCI_ECAM_LAST_BUS`]. Announced by the ACPI MCFG table and reserved in e820.
pub const PCI_ECAM_START: u64 = 0xe000_0000;
pub const PCI_ECAM_SIZE: u64 = 0x1000_0000;
pub const PCI_ECAM_LAST_BUS: u8 = 0xff;
/// Port I/O space PCI I/O BARs are taken from.
pub const PCI_IO_WINDOW_START: u64 = 0xc000;
pub const PCI_IO_WINDOW_SIZE: u64 = 0x4000;
/// The first IOAPIC input used for PCI INTx; PCI slots share [`PCI_INTX_GSI_COUNT`] lines from
/// here (slot `s`, pin `p` (0 = INTA) goes to `PCI_INTX_GSI_BASE + (s + p) % PCI_INTX_GSI_COUNT`).
pub const PCI_INTX_GSI_BASE: u32 = 16;
pub const PCI_INTX_GSI_COUNT: u32 = 8;
pub const LAPIC_START: u64 = 0xfee0_0000;

/// Identity-mapped TSS and EPT identity map pages that KVM needs on Intel hosts; they sit in the
/// MMIO hole, below the IOAPIC.
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;
pub const KVM_IDENTITY_MAP_ADDRESS: u64 = 0xfffb_c000;

/// Port I/O addresses of the platform devices.
pub mod ports {
    pub const PIT: u64 = 0x40;
    pub const PIT_LEN: u64 = 4;
    pub const SPEAKER: u64 = 0x61;
    pub const I8042: u64 = 0x60;
    pub const CMOS: u64 = 0x70;
    pub const CMOS_LEN: u64 = 2;
    pub const POST: u64 = 0x80;
    pub const COM1: u64 = 0x3f8;
    pub const COM1_IRQ: u32 = 4;
    /// PCI configuration mechanism #1: address register at 0xcf8, data window 0xcfc-0xcff.
    pub const PCI_CONFIG_ADDRESS: u64 = 0xcf8;
    pub const PCI_CONFIG_LEN: u64 = 8;
    pub const UART_LEN: u64 = 8;
    /// ACPI fixed hardware: PM1a event block (status, enable), control block, PM timer.
    pub const ACPI_PM_BASE: u64 = 0x600;
    pub const ACPI_PM1_EVT: u64 = ACPI_PM_BASE;
    pub const ACPI_PM1_EVT_LEN: u8 = 4;
    pub const ACPI_PM1_CNT: u64 = ACPI_PM_BASE + 4;
    pub const ACPI_PM1_CNT_LEN: u8 = 2;
    pub const ACPI_PM_TMR: u64 = ACPI_PM_BASE + 8;
    pub const ACPI_PM_TMR_LEN: u8 = 4;
    pub const ACPI_PM_LEN: u64 = 12;
    pub const ACPI_SCI_IRQ: u32 = 9;
    /// The PC reset control register ("RST_CNT"); also the ACPI FADT reset register.
    pub const RESET_CONTROL: u64 = 0xcf9;
    /// Writing this value to [`RESET_CONTROL`] resets the machine.
    pub const RESET_VALUE: u8 = 0x06;
}

/// The value of SLP_TYP that the DSDT's `_S5` object names, and the ACPI PM device treats as
/// "power off".
pub const ACPI_S5_SLEEP_TYPE: u8 = 5;

/// Width of the ACPI PM timer counter: 24 bits, so the FADT leaves TMR_VAL_EXT clear. The PM
/// device (`crate::devices::acpi_pm`) counts this wide and the FADT announces it.
pub const PM_TIMER_BITS: u32 = 24;
