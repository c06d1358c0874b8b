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

/// Global descriptor table: null, code, data and TSS entries, 8 bytes each.
pub const GDT_START: u64 = 0x500;
/// Interrupt descriptor table, left empty (one zero entry); the kernel installs its own.
pub const IDT_START: u64 = 0x520;
/// Linux `boot_params` ("zero page"), 4 KiB; its address is passed to the kernel in RSI.
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial RSP and RBP of the boot vCPU; the stack grows down below it.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Top-level page table (PML4) of the boot identity map.
pub const PML4_START: u64 = 0x9000;
/// Page-directory-pointer table of the boot identity map; its four entries point at [`PD_START`].
pub const PDPT_START: u64 = 0xa000;
/// Four page directories follow the PDPT, one per GiB of the identity map.
pub const PD_START: u64 = 0xb000;
/// Guest-physical address of the NUL-terminated kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// The largest command line Cove passes (Linux's x86 COMMAND_LINE_SIZE).
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// Start of the extended BIOS data area; from here to 1 MiB is reserved in e820.
pub const EBDA_START: u64 = 0x9fc00;
/// Start of the ACPI table region (RSDP first), inside the legacy BIOS scan range.
pub const ACPI_START: u64 = 0xe0000;
/// End (exclusive) of the ACPI table region: 1 MiB.
pub const ACPI_END: u64 = 0x10_0000;
/// Start of high memory, 1 MiB: where the bzImage protected-mode part is loaded.
pub const HIMEM_START: u64 = 0x10_0000;
/// Highest address an initrd may end at, unless the kernel says less (initrd_addr_max).
pub const INITRD_MAX_END: u64 = 0x3800_0000;

/// Start of the 32-bit MMIO hole, 3 GiB; RAM beyond this is remapped above 4 GiB.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// End (exclusive) of the MMIO hole, 4 GiB; RAM above the hole starts here.
pub const MMIO_HOLE_END: u64 = 0x1_0000_0000;
/// IOAPIC MMIO base, announced in the MADT.
pub const IOAPIC_START: u64 = 0xfec0_0000;

/// Where PCI memory BARs are placed: the low part of the MMIO hole.
pub const PCI_MMIO_WINDOW_START: u64 = 0xc000_0000;
/// Size of the PCI memory BAR window: 512 MiB.
pub const PCI_MMIO_WINDOW_SIZE: u64 = 0x2000_0000;
/// PCI Express enhanced configuration space (ECAM): 1 MiB per bus, buses 0 to
/// [`PCI_ECAM_LAST_BUS`]. Announced by the ACPI MCFG table and reserved in e820.
pub const PCI_ECAM_START: u64 = 0xe000_0000;
/// Size of the ECAM region: 256 MiB, 1 MiB per bus for 256 buses.
pub const PCI_ECAM_SIZE: u64 = 0x1000_0000;
/// Last bus number the ECAM region covers (and the MCFG table announces).
pub const PCI_ECAM_LAST_BUS: u8 = 0xff;
/// Port I/O space PCI I/O BARs are taken from.
pub const PCI_IO_WINDOW_START: u64 = 0xc000;
/// Size of the PCI I/O BAR window: 16 KiB of ports, 0xc000-0xffff.
pub const PCI_IO_WINDOW_SIZE: u64 = 0x4000;
/// The first IOAPIC input used for PCI INTx; PCI slots share [`PCI_INTX_GSI_COUNT`] lines from
/// here (slot `s`, pin `p` (0 = INTA) goes to `PCI_INTX_GSI_BASE + (s + p) % PCI_INTX_GSI_COUNT`).
pub const PCI_INTX_GSI_BASE: u32 = 16;
/// Number of IOAPIC inputs shared by PCI INTx, starting at [`PCI_INTX_GSI_BASE`].
pub const PCI_INTX_GSI_COUNT: u32 = 8;
/// Local APIC MMIO base, announced in the MADT.
pub const LAPIC_START: u64 = 0xfee0_0000;

/// Identity-mapped TSS and EPT identity map pages that KVM needs on Intel hosts; they sit in the
/// MMIO hole, below the IOAPIC.
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;
/// The page KVM uses for its EPT identity map (`KVM_SET_IDENTITY_MAP_ADDR`), just below the TSS.
pub const KVM_IDENTITY_MAP_ADDRESS: u64 = 0xfffb_c000;

/// Port I/O addresses of the platform devices.
pub mod ports {
    /// 8254 PIT: counters 0-2 at 0x40-0x42, mode/command register at 0x43.
    pub const PIT: u64 = 0x40;
    /// Number of PIT ports from [`PIT`].
    pub const PIT_LEN: u64 = 4;
    /// Port B (0x61): PIT channel 2 gate and speaker enable, refresh and channel 2 output bits.
    pub const SPEAKER: u64 = 0x61;
    /// i8042 data port; the status/command port is 4 above it, at 0x64.
    pub const I8042: u64 = 0x60;
    /// CMOS/RTC index port (0x70); the data port follows at 0x71.
    pub const CMOS: u64 = 0x70;
    /// Number of CMOS ports from [`CMOS`].
    pub const CMOS_LEN: u64 = 2;
    /// POST code port (0x80), written by firmware and kernels as an I/O delay.
    pub const POST: u64 = 0x80;
    /// 16550 UART COM1 base port.
    pub const COM1: u64 = 0x3f8;
    /// ISA IRQ (and IOAPIC GSI) of COM1.
    pub const COM1_IRQ: u32 = 4;
    /// PCI configuration mechanism #1: address register at 0xcf8, data window 0xcfc-0xcff.
    pub const PCI_CONFIG_ADDRESS: u64 = 0xcf8;
    /// Number of ports from [`PCI_CONFIG_ADDRESS`]: CONFIG_ADDRESS (4) and CONFIG_DATA (4).
    pub const PCI_CONFIG_LEN: u64 = 8;
    /// Number of 16550 registers from a UART's base port.
    pub const UART_LEN: u64 = 8;
    /// ACPI fixed hardware: PM1a event block (status, enable), control block, PM timer.
    pub const ACPI_PM_BASE: u64 = 0x600;
    /// PM1a_EVT_BLK: PM1 status (2 bytes) then PM1 enable (2 bytes).
    pub const ACPI_PM1_EVT: u64 = ACPI_PM_BASE;
    /// Length of PM1a_EVT_BLK in bytes, as the FADT's PM1_EVT_LEN.
    pub const ACPI_PM1_EVT_LEN: u8 = 4;
    /// PM1a_CNT_BLK: PM1 control (SCI_EN, SLP_TYP, SLP_EN).
    pub const ACPI_PM1_CNT: u64 = ACPI_PM_BASE + 4;
    /// Length of PM1a_CNT_BLK in bytes, as the FADT's PM1_CNT_LEN.
    pub const ACPI_PM1_CNT_LEN: u8 = 2;
    /// PM_TMR_BLK: the 3.579545 MHz ACPI PM timer.
    pub const ACPI_PM_TMR: u64 = ACPI_PM_BASE + 8;
    /// Length of PM_TMR_BLK in bytes, as the FADT's PM_TMR_LEN.
    pub const ACPI_PM_TMR_LEN: u8 = 4;
    /// Number of ports the ACPI PM device covers from [`ACPI_PM_BASE`].
    pub const ACPI_PM_LEN: u64 = 12;
    /// ISA IRQ of the ACPI SCI, as the FADT's SCI_INT.
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
