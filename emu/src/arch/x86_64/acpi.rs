//! ACPI tables of the x86_64 machine: RSDP, XSDT, FADT, FACS, DSDT, MADT and MCFG.
//!
//! The tables are written into the legacy BIOS area at [`layout::ACPI_START`], RSDP first, so
//! the kernel finds them through `boot_params.acpi_rsdp_addr` and through its legacy RSDP scan.
//! The FADT describes the fixed hardware modelled by [`crate::devices::acpi_pm`] and
//! [`crate::devices::reset`]; the MADT describes the local APICs and the IOAPIC.
//!
//! [`AcpiTables`] is the builder: it takes whole tables with [`AcpiTables::add_table`] and DSDT
//! objects with [`AcpiTables::add_sb_object`]. [`create_acpi_tables`] adds the PCI host bridge
//! from [`super::pci_acpi`]: the MCFG table, and `\_SB_.PCI0` and `\_SB_.MRES` in the DSDT.
//!
//! ```text
//! ACPI_START  RSDP (36 bytes, revision 2, XSDT address only)
//!   +8 align  XSDT -> FADT, MADT, added tables (MCFG)
//!   +8 align  FADT (revision 6.5) -> FACS, DSDT (32- and 64-bit pointers)
//!   +64 align FACS
//!   +8 align  DSDT
//!   +8 align  MADT
//!   +8 align  added tables, in the order they were added (MCFG)
//! ```

use super::layout::{self, ports, ACPI_S5_SLEEP_TYPE};
use super::pci_acpi;
use acpi_tables::facs::FACS;
use acpi_tables::fadt::{FADTBuilder, Flags, PmProfile};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{EnabledStatus, IoApic, ProcessorLocalApic};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::{aml, Aml};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub use super::acpi_oem::{OEM_ID, OEM_REVISION, OEM_TABLE_ID};

/// Length of the common header of system description tables.
const HEADER_LEN: usize = 36;
/// Offset of the checksum byte in a system description table header.
const CHECKSUM_OFFSET: usize = 9;
const TABLE_ALIGN: u64 = 8;
/// The FACS must sit on a 64-byte boundary (ACPI 6.5, 5.2.10).
const FACS_ALIGN: u64 = 64;
const RSDP_ALIGN: u64 = 16;
const _: () = assert!(layout::ACPI_START.is_multiple_of(RSDP_ALIGN));

/// DSDT revision 2: AML integers are 64 bits wide.
const DSDT_REVISION: u8 = 2;
/// MADT revision of ACPI 6.3 and later.
const MADT_REVISION: u8 = 5;

/// MADT flag: the platform also has dual 8259 PICs.
const MADT_PCAT_COMPAT: u32 = 1;
const MADT_TYPE_INTERRUPT_SOURCE_OVERRIDE: u8 = 2;
const MADT_TYPE_LOCAL_APIC_NMI: u8 = 4;
/// MPS INTI flags: active high (polarity 01), level triggered (trigger mode 11).
const MPS_INTI_ACTIVE_HIGH_LEVEL: u16 = 0x000d;
/// MPS INTI flags: active high (polarity 01), edge triggered (trigger mode 01).
const MPS_INTI_ACTIVE_HIGH_EDGE: u16 = 0x0005;
/// "All processors" in a local APIC NMI structure.
const ALL_PROCESSORS: u8 = 0xff;

/// IA-PC boot architecture flags: legacy devices (bit 0), 8042 (bit 1), no VGA (bit 2).
const IAPC_BOOT_ARCH: u16 = (1 << 0) | (1 << 1) | (1 << 2);
/// P_LVL2_LAT above 100 and P_LVL3_LAT above 1000 say C2 and C3 are not supported.
const P_LVL2_LAT_NONE: u16 = 101;
const P_LVL3_LAT_NONE: u16 = 1001;

/// Why the ACPI tables could not be built or written.
#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    /// The vCPU count is 0; the MADT describes 1 to 255 processors.
    #[error("the MADT cannot describe {0} vCPUs (1 to 255 are supported)")]
    InvalidCpuCount(u8),
    /// An `acpi_tables` builder rejected a table; the text says which and why.
    #[error("malformed ACPI table: {0}")]
    InvalidTable(String),
    /// The tables do not fit between their start and [`layout::ACPI_END`] (1 MiB).
    #[error(
        "ACPI tables need {size:#x} bytes, more than the {available:#x} bytes from {start:#x}"
    )]
    TooLarge {
        /// Total size of all tables, in bytes.
        size: u64,
        /// Bytes free from `start` up to the end of the ACPI region.
        available: u64,
        /// Guest-physical address the tables would start at.
        start: u64,
    },
    /// Writing the finished tables into guest memory failed.
    #[error("cannot write ACPI tables to guest memory: {0}")]
    GuestMemory(#[source] vm_memory::GuestMemoryError),
}

/// Builds the machine's ACPI tables and writes them into guest memory.
pub struct AcpiTables {
    cpus: u8,
    /// Complete tables referenced from the XSDT after the FADT and MADT.
    tables: Vec<Vec<u8>>,
    /// AML objects at the root of the DSDT namespace, after `_S5_`.
    root_objects: Vec<u8>,
    /// AML objects inside `Scope(\_SB_)`.
    sb_objects: Vec<u8>,
}

impl AcpiTables {
    /// Tables for a machine with `cpus` vCPUs, APIC IDs 0 to `cpus - 1`.
    pub fn new(cpus: u8) -> Result<Self, AcpiError> {
        if cpus == 0 {
            return Err(AcpiError::InvalidCpuCount(cpus));
        }
        Ok(Self {
            cpus,
            tables: Vec::new(),
            root_objects: Vec::new(),
            sb_objects: Vec::new(),
        })
    }

    /// Adds a complete system description table (header included) to the XSDT. Its checksum
    /// is recomputed when the tables are written.
    pub fn add_table(&mut self, table: Vec<u8>) -> Result<(), AcpiError> {
        if table.len() < HEADER_LEN {
            return Err(AcpiError::InvalidTable(format!(
                "{} bytes is shorter than a table header",
                table.len()
            )));
        }
        let length = u32::from_le_bytes([table[4], table[5], table[6], table[7]]);
        if usize::try_from(length).ok() != Some(table.len()) {
            return Err(AcpiError::InvalidTable(format!(
                "table {:?} says it is {length} bytes long but is {} bytes",
                String::from_utf8_lossy(&table[..4]),
                table.len()
            )));
        }
        self.tables.push(table);
        Ok(())
    }

    /// Adds an AML object (a `Device`, a `Name`, ...) to the root of the DSDT namespace.
    pub fn add_root_object(&mut self, object: &dyn Aml) {
        object.to_aml_bytes(&mut self.root_objects);
    }

    /// Adds an AML object (typically a `Device`) inside the DSDT's `\_SB_` scope.
    pub fn add_sb_object(&mut self, object: &dyn Aml) {
        object.to_aml_bytes(&mut self.sb_objects);
    }

    /// Lays the tables out from [`layout::ACPI_START`] and writes them into `memory`. Returns
    /// the address of the RSDP.
    pub fn write(&self, memory: &GuestMemoryMmap) -> Result<GuestAddress, AcpiError> {
        let image = self.build(layout::ACPI_START)?;
        memory
            .write_slice(&image, GuestAddress(layout::ACPI_START))
            .map_err(AcpiError::GuestMemory)?;
        Ok(GuestAddress(layout::ACPI_START))
    }

    /// Builds the image of all tables as they sit in guest memory from `base` (RSDP first).
    fn build(&self, base: u64) -> Result<Vec<u8>, AcpiError> {
        let dsdt = self.dsdt();
        let madt = self.madt();
        let mut facs = Vec::new();
        FACS::new().to_aml_bytes(&mut facs);

        let mut offset = 0u64;
        let mut place = |len: usize, align: u64| {
            let at = offset.next_multiple_of(align);
            offset = at + len as u64;
            at
        };
        let rsdp_at = place(Rsdp::len(), RSDP_ALIGN);
        let xsdt_len = HEADER_LEN + 8 * (2 + self.tables.len());
        let xsdt_at = place(xsdt_len, TABLE_ALIGN);
        let fadt_at = place(acpi_tables::fadt::FADT::len(), TABLE_ALIGN);
        let facs_at = place(facs.len(), FACS_ALIGN);
        let dsdt_at = place(dsdt.len(), TABLE_ALIGN);
        let madt_at = place(madt.len(), TABLE_ALIGN);
        let table_at: Vec<u64> = self
            .tables
            .iter()
            .map(|t| place(t.len(), TABLE_ALIGN))
            .collect();
        let size = offset;

        let available = layout::ACPI_END.saturating_sub(base);
        if size > available {
            return Err(AcpiError::TooLarge {
                size,
                available,
                start: base,
            });
        }
        // Everything below ACPI_END (1 MiB) has 32-bit addresses.
        let addr32 = |at: u64| (base + at) as u32;

        let mut fadt = Vec::new();
        fadt_builder(addr32(facs_at), addr32(dsdt_at))
            .finalize()
            .to_aml_bytes(&mut fadt);

        let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
        xsdt.add_entry(base + fadt_at);
        xsdt.add_entry(base + madt_at);
        for at in &table_at {
            xsdt.add_entry(base + at);
        }
        let mut xsdt_bytes = Vec::new();
        xsdt.to_aml_bytes(&mut xsdt_bytes);
        debug_assert_eq!(xsdt_bytes.len(), xsdt_len);

        let mut rsdp = Vec::new();
        Rsdp::new(OEM_ID, base + xsdt_at).to_aml_bytes(&mut rsdp);

        let mut image = vec![0u8; size as usize];
        let mut put = |at: u64, bytes: &[u8]| {
            let at = at as usize;
            image[at..at + bytes.len()].copy_from_slice(bytes);
        };
        put(rsdp_at, &rsdp);
        put(xsdt_at, &xsdt_bytes);
        put(fadt_at, &fadt);
        put(facs_at, &facs);
        put(dsdt_at, &dsdt);
        put(madt_at, &madt);
        for (at, table) in table_at.iter().zip(&self.tables) {
            let mut table = table.clone();
            table[CHECKSUM_OFFSET] = 0;
            table[CHECKSUM_OFFSET] = checksum(&table);
            put(*at, &table);
        }
        Ok(image)
    }

    fn dsdt(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let s5 = ACPI_S5_SLEEP_TYPE;
        aml::Name::new(
            "_S5_".into(),
            &aml::Package::new(vec![&s5 as &dyn Aml, &s5, &aml::ZERO, &aml::ZERO]),
        )
        .to_aml_bytes(&mut body);
        body.extend_from_slice(&self.root_objects);
        body.extend(aml::Scope::raw("\\_SB_".into(), self.sb_objects.clone()));

        let mut dsdt = Sdt::new(
            *b"DSDT",
            HEADER_LEN as u32,
            DSDT_REVISION,
            OEM_ID,
            OEM_TABLE_ID,
            OEM_REVISION,
        );
        dsdt.append_slice(&body);
        dsdt.as_slice().to_vec()
    }

    fn madt(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&(layout::LAPIC_START as u32).to_le_bytes());
        body.extend_from_slice(&MADT_PCAT_COMPAT.to_le_bytes());
        for id in 0..self.cpus {
            ProcessorLocalApic::new(id, id, EnabledStatus::Enabled).to_aml_bytes(&mut body);
        }
        IoApic::new(self.cpus, layout::IOAPIC_START as u32, 0).to_aml_bytes(&mut body);

        // The SCI is level triggered and active high. Every other ISA IRQ is identity mapped
        // with the ISA defaults (edge, active high), IRQ 0 included: Cove routes GSI 0 to IOAPIC
        // pin 0, so there is no IRQ 0 -> GSI 2 override.
        let sci = ports::ACPI_SCI_IRQ;
        body.extend_from_slice(&[MADT_TYPE_INTERRUPT_SOURCE_OVERRIDE, 10, 0, sci as u8]);
        body.extend_from_slice(&sci.to_le_bytes());
        body.extend_from_slice(&MPS_INTI_ACTIVE_HIGH_LEVEL.to_le_bytes());

        // LINT1 of every local APIC is the NMI input.
        body.extend_from_slice(&[MADT_TYPE_LOCAL_APIC_NMI, 6, ALL_PROCESSORS]);
        body.extend_from_slice(&MPS_INTI_ACTIVE_HIGH_EDGE.to_le_bytes());
        body.push(1);

        let mut madt = Sdt::new(
            *b"APIC",
            HEADER_LEN as u32,
            MADT_REVISION,
            OEM_ID,
            OEM_TABLE_ID,
            OEM_REVISION,
        );
        madt.append_slice(&body);
        madt.as_slice().to_vec()
    }
}

/// A full (not hardware-reduced) FADT for Cove's fixed hardware.
fn fadt_builder(facs: u32, dsdt: u32) -> FADTBuilder {
    let io = |address: u64, len: u8, access: AccessSize| {
        GAS::new(AddressSpace::SystemIo, len * 8, 0, access, address)
    };

    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .preferred_pm_profile(PmProfile::Unspecified)
        .flag(Flags::Wbinvd)
        .flag(Flags::ProcC1)
        // No fixed-feature sleep button; the power button is a fixed feature (flag clear).
        .flag(Flags::SlpButton)
        // RTC_STS/RTC_EN are not in the PM1 registers.
        .flag(Flags::FixRtc)
        .flag(Flags::ResetRegSup);
    if layout::PM_TIMER_BITS == 32 {
        fadt = fadt.flag(Flags::TmrValExt);
    }

    fadt.firmware_ctrl = facs.into();
    fadt.x_firmware_ctrl = u64::from(facs).into();
    fadt.dsdt = dsdt.into();
    fadt.x_dsdt = u64::from(dsdt).into();

    // Always in ACPI mode: no SMI command port, SCI_EN reads 1.
    fadt.sci_int = (ports::ACPI_SCI_IRQ as u16).into();
    fadt.smi_cmd = 0.into();
    fadt.acpi_enable = 0;
    fadt.acpi_disable = 0;

    fadt.pm1a_evt_blk = (ports::ACPI_PM1_EVT as u32).into();
    fadt.pm1_evt_len = ports::ACPI_PM1_EVT_LEN;
    fadt.pm1a_cnt_blk = (ports::ACPI_PM1_CNT as u32).into();
    fadt.pm1_cnt_len = ports::ACPI_PM1_CNT_LEN;
    fadt.pm_tmr_blk = (ports::ACPI_PM_TMR as u32).into();
    fadt.pm_tmr_len = ports::ACPI_PM_TMR_LEN;
    fadt.x_pm1a_evt_blk = io(
        ports::ACPI_PM1_EVT,
        ports::ACPI_PM1_EVT_LEN,
        AccessSize::WordAccess,
    );
    fadt.x_pm1a_cnt_blk = io(
        ports::ACPI_PM1_CNT,
        ports::ACPI_PM1_CNT_LEN,
        AccessSize::WordAccess,
    );
    fadt.x_pm_tmr_blk = io(
        ports::ACPI_PM_TMR,
        ports::ACPI_PM_TMR_LEN,
        AccessSize::DwordAccess,
    );

    fadt.p_lvl2_lat = P_LVL2_LAT_NONE.into();
    fadt.p_lvl3_lat = P_LVL3_LAT_NONE.into();
    fadt.iapc_boot_arch = IAPC_BOOT_ARCH.into();

    fadt.reset_reg = io(ports::RESET_CONTROL, 1, AccessSize::ByteAccess);
    fadt.reset_value = ports::RESET_VALUE;
    fadt
}

/// The byte that makes `data` sum to zero, given that its checksum byte is zero.
fn checksum(data: &[u8]) -> u8 {
    data.iter()
        .fold(0u8, |sum, b| sum.wrapping_add(*b))
        .wrapping_neg()
}

/// The machine's ACPI tables for `cpus` vCPUs: the fixed tables, plus the MCFG and the PCI host
/// bridge (`\_SB_.PCI0`, every slot of bus 0 in its `_PRT`) and the ECAM reservation
/// (`\_SB_.MRES`).
fn machine_tables(cpus: u8) -> Result<AcpiTables, AcpiError> {
    let mut tables = AcpiTables::new(cpus)?;
    tables.add_table(pci_acpi::mcfg_table())?;
    tables.add_sb_object(&pci_acpi::pci_root_bridge(pci_acpi::PCI_SLOTS));
    tables.add_sb_object(&pci_acpi::MotherboardResources);
    Ok(tables)
}

/// Writes the machine's ACPI tables for `cpus` vCPUs from [`layout::ACPI_START`]. Returns the
/// address of the RSDP.
pub fn create_acpi_tables(memory: &GuestMemoryMmap, cpus: u8) -> Result<GuestAddress, AcpiError> {
    machine_tables(cpus)?.write(memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap()
    }

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b))
    }

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// Reads the table at `addr`, checking its length and checksum.
    fn read_table(mem: &GuestMemoryMmap, addr: u64, signature: &[u8; 4]) -> Vec<u8> {
        let mut header = [0u8; HEADER_LEN];
        mem.read_slice(&mut header, GuestAddress(addr)).unwrap();
        assert_eq!(&header[..4], signature, "signature at {addr:#x}");
        let len = u32_at(&header, 4) as usize;
        assert!(len >= HEADER_LEN);
        assert!(addr + len as u64 <= layout::ACPI_END);
        assert_eq!(addr % TABLE_ALIGN, 0);
        let mut table = vec![0u8; len];
        mem.read_slice(&mut table, GuestAddress(addr)).unwrap();
        assert_eq!(sum(&table), 0, "checksum of {signature:?}");
        assert_eq!(&table[10..16], &OEM_ID);
        table
    }

    struct Parsed {
        xsdt_entries: Vec<u64>,
        fadt: Vec<u8>,
        facs: Vec<u8>,
        dsdt: Vec<u8>,
        madt: Vec<u8>,
    }

    fn parse(mem: &GuestMemoryMmap, rsdp_addr: GuestAddress) -> Parsed {
        assert_eq!(rsdp_addr.0, layout::ACPI_START);
        assert_eq!(rsdp_addr.0 % 16, 0);
        let mut rsdp = [0u8; 36];
        mem.read_slice(&mut rsdp, rsdp_addr).unwrap();
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert_eq!(rsdp[15], 2, "revision");
        assert_eq!(sum(&rsdp[..20]), 0);
        assert_eq!(u32_at(&rsdp, 20), 36);
        assert_eq!(sum(&rsdp), 0);

        let xsdt_addr = u64_at(&rsdp, 24);
        let xsdt = read_table(mem, xsdt_addr, b"XSDT");
        let xsdt_entries: Vec<u64> = xsdt[HEADER_LEN..]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!((xsdt.len() - HEADER_LEN) % 8, 0);

        let fadt = read_table(mem, xsdt_entries[0], b"FACP");
        let madt = read_table(mem, xsdt_entries[1], b"APIC");
        let dsdt_addr = u32_at(&fadt, 40);
        assert_eq!(u64::from(dsdt_addr), u64_at(&fadt, 140), "X_DSDT");
        let dsdt = read_table(mem, u64::from(dsdt_addr), b"DSDT");

        let facs_addr = u32_at(&fadt, 36);
        assert_eq!(u64::from(facs_addr), u64_at(&fadt, 132), "X_FIRMWARE_CTRL");
        assert_eq!(facs_addr % 64, 0);
        let mut facs = vec![0u8; 64];
        mem.read_slice(&mut facs, GuestAddress(u64::from(facs_addr)))
            .unwrap();
        assert_eq!(&facs[..4], b"FACS");
        assert_eq!(u32_at(&facs, 4), 64);

        // Tables do not overlap.
        let mut spans = [
            (rsdp_addr.0, 36u64),
            (xsdt_addr, xsdt.len() as u64),
            (xsdt_entries[0], fadt.len() as u64),
            (u64::from(facs_addr), 64),
            (u64::from(dsdt_addr), dsdt.len() as u64),
            (xsdt_entries[1], madt.len() as u64),
        ];
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "{w:x?} overlap");
        }

        Parsed {
            xsdt_entries,
            fadt,
            facs,
            dsdt,
            madt,
        }
    }

    fn check_fadt(fadt: &[u8]) {
        assert_eq!(fadt.len(), 276);
        assert_eq!(fadt[8], 6, "major revision");
        assert_eq!(fadt[131], 5, "minor revision");
        assert_eq!(u16_at(fadt, 46), 9, "SCI_INT");
        assert_eq!(u32_at(fadt, 48), 0, "SMI_CMD");
        assert_eq!(u32_at(fadt, 56), ports::ACPI_PM1_EVT as u32);
        assert_eq!(u32_at(fadt, 64), ports::ACPI_PM1_CNT as u32);
        assert_eq!(u32_at(fadt, 76), ports::ACPI_PM_TMR as u32);
        assert_eq!(u32_at(fadt, 80), 0, "no GPE0 block");
        assert_eq!(&fadt[88..92], &[4, 2, 0, 4], "block lengths");
        assert_eq!(u16_at(fadt, 109), 0x7, "IAPC_BOOT_ARCH");

        let flags = u32_at(fadt, 112);
        assert_ne!(flags & Flags::ResetRegSup as u32, 0);
        assert_ne!(flags & Flags::SlpButton as u32, 0);
        assert_eq!(flags & Flags::PwrButton as u32, 0);
        assert_eq!(flags & Flags::HwReducedAcpi as u32, 0);
        assert_eq!(
            flags & Flags::TmrValExt as u32 != 0,
            layout::PM_TIMER_BITS == 32
        );

        // RESET_REG: system I/O, 8 bits, byte access, 0xcf9; RESET_VALUE 6.
        assert_eq!(&fadt[116..120], &[1, 8, 0, 1]);
        assert_eq!(u64_at(fadt, 120), 0xcf9);
        assert_eq!(fadt[128], 6);

        // X_PM1a_EVT_BLK, X_PM1a_CNT_BLK, X_PM_TMR_BLK.
        assert_eq!(&fadt[148..152], &[1, 32, 0, 2]);
        assert_eq!(u64_at(fadt, 152), ports::ACPI_PM1_EVT);
        assert_eq!(&fadt[172..176], &[1, 16, 0, 2]);
        assert_eq!(u64_at(fadt, 176), ports::ACPI_PM1_CNT);
        assert_eq!(&fadt[208..212], &[1, 32, 0, 3]);
        assert_eq!(u64_at(fadt, 212), ports::ACPI_PM_TMR);
    }

    /// Returns (local APIC (uid, id, flags), IOAPIC (id, address, gsi base), ISOs, NMIs).
    #[allow(clippy::type_complexity)]
    fn madt_entries(
        madt: &[u8],
    ) -> (
        Vec<(u8, u8, u32)>,
        Vec<(u8, u32, u32)>,
        Vec<(u8, u32, u16)>,
        Vec<Vec<u8>>,
    ) {
        let (mut lapics, mut ioapics, mut isos, mut nmis) = (vec![], vec![], vec![], vec![]);
        let mut at = 44;
        while at < madt.len() {
            let (kind, len) = (madt[at], madt[at + 1] as usize);
            assert!(len >= 2 && at + len <= madt.len());
            let e = &madt[at..at + len];
            match kind {
                0 => lapics.push((e[2], e[3], u32_at(e, 4))),
                1 => ioapics.push((e[2], u32_at(e, 4), u32_at(e, 8))),
                2 => isos.push((e[3], u32_at(e, 4), u16_at(e, 8))),
                4 => nmis.push(e.to_vec()),
                other => panic!("unexpected MADT entry type {other}"),
            }
            at += len;
        }
        assert_eq!(at, madt.len());
        (lapics, ioapics, isos, nmis)
    }

    fn check_all(cpus: u8) {
        let mem = memory();
        let rsdp = create_acpi_tables(&mem, cpus).unwrap();
        let p = parse(&mem, rsdp);
        assert_eq!(p.xsdt_entries.len(), 3);
        check_fadt(&p.fadt);
        let mcfg = read_table(&mem, p.xsdt_entries[2], b"MCFG");
        assert_eq!(mcfg, pci_acpi::mcfg_table());
        assert_eq!(p.facs[32], 1, "FACS version");

        assert_eq!(u32_at(&p.madt, 36), layout::LAPIC_START as u32);
        assert_eq!(u32_at(&p.madt, 40), 1, "PCAT_COMPAT");
        let (lapics, ioapics, isos, nmis) = madt_entries(&p.madt);
        assert_eq!(lapics.len(), cpus as usize);
        for (i, (uid, id, flags)) in lapics.iter().enumerate() {
            assert_eq!((*uid as usize, *id as usize, *flags), (i, i, 1));
        }
        assert_eq!(ioapics, vec![(cpus, layout::IOAPIC_START as u32, 0)]);
        assert_eq!(isos, vec![(9, 9, 0x000d)], "only the SCI override");
        assert_eq!(nmis, vec![vec![4, 6, 0xff, 5, 0, 1]]);

        // Name(_S5_, Package(4) { 5, 5, 0, 0 }) and Scope(\_SB_).
        let s5 = [
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04, 0x0a, 5, 0x0a, 5, 0, 0,
        ];
        assert!(p.dsdt.windows(s5.len()).any(|w| w == s5));
        check_pci_devices(&p.dsdt);
    }

    fn position(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    /// `\_SB_` holds PCI0 (with its `_PRT`) and MRES.
    fn check_pci_devices(dsdt: &[u8]) {
        // ScopeOp, PkgLength (1 to 4 bytes), \_SB_; the scope is the last object.
        let sb = position(dsdt, b"\\_SB_").unwrap();
        let len_bytes = (1..=4)
            .find(|n| dsdt[sb - 1 - n] == 0x10 && usize::from(dsdt[sb - n] >> 6) + 1 == *n)
            .unwrap();
        let lead = &dsdt[sb - len_bytes..sb];
        let pkg_len = if len_bytes == 1 {
            usize::from(lead[0] & 0x3f)
        } else {
            lead[1..]
                .iter()
                .enumerate()
                .fold(usize::from(lead[0] & 0xf), |l, (i, b)| {
                    l | usize::from(*b) << (4 + 8 * i)
                })
        };
        assert_eq!(
            sb - len_bytes + pkg_len,
            dsdt.len(),
            "\\_SB_ is the last object"
        );
        let mut pci0 = Vec::new();
        pci_acpi::pci_root_bridge(pci_acpi::PCI_SLOTS).to_aml_bytes(&mut pci0);
        let mut mres = Vec::new();
        pci_acpi::MotherboardResources.to_aml_bytes(&mut mres);
        let pci0_at = position(dsdt, &pci0).unwrap();
        let mres_at = position(dsdt, &mres).unwrap();
        assert!(sb < pci0_at && pci0_at + pci0.len() <= mres_at);
        assert!(position(&dsdt[pci0_at..], b"_PRT").unwrap() < pci0.len());
        assert!(position(dsdt, b"MRES").is_some());
    }

    #[test]
    fn one_cpu() {
        check_all(1);
    }

    #[test]
    fn sixty_four_cpus() {
        check_all(64);
    }

    #[test]
    fn most_cpus() {
        check_all(255);
    }

    /// Disassembles the tables with ACPICA's `iasl`, when it is installed (it is optional).
    #[test]
    fn iasl_disassembles_the_dsdt_and_mcfg() {
        let mem = memory();
        let p = parse(&mem, create_acpi_tables(&mem, 2).unwrap());
        let mcfg = read_table(&mem, p.xsdt_entries[2], b"MCFG");

        let dir = std::env::temp_dir().join(format!("cove-acpi-iasl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let disassemble = |name: &str, table: &[u8]| {
            let dat = dir.join(format!("{name}.dat"));
            std::fs::write(&dat, table).unwrap();
            let output = std::process::Command::new("iasl")
                .arg("-d")
                .arg(&dat)
                .current_dir(&dir)
                .output();
            let output = match output {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
                output => output.unwrap(),
            };
            assert!(
                output.status.success(),
                "iasl -d {name}: {}\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            Some(std::fs::read_to_string(dir.join(format!("{name}.dsl"))).unwrap())
        };

        let Some(dsdt) = disassemble("dsdt", &p.dsdt) else {
            println!("skipping: iasl (ACPICA tools) is not installed");
            std::fs::remove_dir_all(&dir).unwrap();
            return;
        };
        let mcfg = disassemble("mcfg", &mcfg).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        for needle in [
            "Device (PCI0)",
            "PNP0A08",
            "PNP0A03",
            "_PRT",
            "0x0003FFFF",
            "Device (MRES)",
            "PNP0C02",
            "Memory32Fixed (ReadWrite,",
            "0xE0000000",
            "0x10000000",
        ] {
            assert!(dsdt.contains(needle), "{needle} not in\n{dsdt}");
        }
        for needle in ["MCFG", "00000000E0000000", ": FF"] {
            assert!(mcfg.contains(needle), "{needle} not in\n{mcfg}");
        }
    }

    #[test]
    fn zero_cpus_is_an_error() {
        let mem = memory();
        assert!(matches!(
            create_acpi_tables(&mem, 0),
            Err(AcpiError::InvalidCpuCount(0))
        ));
    }

    #[test]
    fn memory_too_small_is_an_error() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0xe0100)]).unwrap();
        assert!(matches!(
            create_acpi_tables(&mem, 1),
            Err(AcpiError::GuestMemory(_))
        ));
    }

    #[test]
    fn added_tables_and_devices() {
        let mut tables = AcpiTables::new(2).unwrap();
        // An MCFG-like table with a wrong checksum: the builder fixes it.
        let mut mcfg = vec![0u8; 60];
        mcfg[..4].copy_from_slice(b"MCFG");
        mcfg[4..8].copy_from_slice(&60u32.to_le_bytes());
        mcfg[9] = 0x55;
        mcfg[10..16].copy_from_slice(&OEM_ID);
        tables.add_table(mcfg).unwrap();
        let hid = aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0A03"));
        tables.add_sb_object(&aml::Device::new("PCI0".into(), vec![&hid]));
        tables.add_root_object(&aml::Name::new("FOO_".into(), &7u8));

        let mem = memory();
        let rsdp = tables.write(&mem).unwrap();
        let p = parse(&mem, rsdp);
        assert_eq!(p.xsdt_entries.len(), 3);
        let mcfg = read_table(&mem, p.xsdt_entries[2], b"MCFG");
        assert_eq!(mcfg.len(), 60);
        assert!(p.dsdt.windows(4).any(|w| w == b"PCI0"));
        assert!(p.dsdt.windows(4).any(|w| w == b"FOO_"));
        // PCI0 sits inside \_SB_.
        let sb = p.dsdt.windows(4).position(|w| w == b"_SB_").unwrap();
        let pci0 = p.dsdt.windows(4).position(|w| w == b"PCI0").unwrap();
        assert!(pci0 > sb);
    }

    #[test]
    fn malformed_tables_are_rejected() {
        let mut tables = AcpiTables::new(1).unwrap();
        assert!(matches!(
            tables.add_table(vec![0; 20]),
            Err(AcpiError::InvalidTable(_))
        ));
        let mut bad_len = vec![0u8; 40];
        bad_len[4] = 44;
        assert!(matches!(
            tables.add_table(bad_len),
            Err(AcpiError::InvalidTable(_))
        ));
    }

    #[test]
    fn too_many_tables_do_not_fit() {
        let mut tables = AcpiTables::new(1).unwrap();
        let len = 64 << 10;
        for _ in 0..2 {
            let mut t = vec![0u8; len];
            t[..4].copy_from_slice(b"OEM1");
            t[4..8].copy_from_slice(&(len as u32).to_le_bytes());
            tables.add_table(t).unwrap();
        }
        assert!(matches!(
            tables.write(&memory()),
            Err(AcpiError::TooLarge { .. })
        ));
    }
}
