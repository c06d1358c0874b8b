//! ACPI description of the PCI host bridge: segment 0, bus 0.
//!
//! Linux finds the PCI host bridge through three things, all built here:
//!
//! - the MCFG table ([`mcfg_table`]), which gives the enhanced configuration space (ECAM) of
//!   segment 0 at [`layout::PCI_ECAM_START`], buses 0 to [`layout::PCI_ECAM_LAST_BUS`];
//! - `\_SB_.PCI0` ([`pci_root_bridge`]), the PCI Express root bridge (`PNP0A08`, compatible with
//!   `PNP0A03`): its `_CRS` hands out the bus numbers, the configuration mechanism #1 ports, the
//!   I/O ports around them and the 32-bit BAR window, and its `_PRT` routes the INTx pins of every
//!   slot of bus 0 to IOAPIC inputs with [`intx_gsi`];
//! - `\_SB_.MRES` ([`MotherboardResources`]), a `PNP0C02` device that reserves the ECAM range:
//!   Linux only uses MMCONFIG when the range from the MCFG is claimed by a motherboard resource
//!   (or reserved in e820, which [`super::boot::e820_map`] also does).
//!
//! ```text
//! Device (PCI0) {
//!     _HID EISAID("PNP0A08"), _CID EISAID("PNP0A03"), _ADR 0, _SEG 0, _UID 0, _BBN 0
//!     _CRS: WordBusNumber 0-0xff, IO 0xcf8 (8 ports), WordIO 0-0xcf7, WordIO 0xd00-0xffff,
//!           DWordMemory PCI_MMIO_WINDOW (non-prefetchable)
//!     _PRT: Package { (slot << 16) | 0xffff, pin, 0, intx_gsi(slot, pin) } for each slot and pin
//! }
//! Device (MRES) { _HID EISAID("PNP0C02"), _UID 0, _CRS: Memory32Fixed PCI_ECAM }
//! ```

use super::acpi_oem::{OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use super::layout::{
    self, ports, PCI_ECAM_LAST_BUS, PCI_ECAM_SIZE, PCI_ECAM_START, PCI_INTX_GSI_BASE,
    PCI_INTX_GSI_COUNT, PCI_MMIO_WINDOW_SIZE, PCI_MMIO_WINDOW_START,
};
use acpi_tables::mcfg::MCFG;
use acpi_tables::{aml, Aml, AmlSink};

/// Device slots on a PCI bus.
pub const PCI_SLOTS: u8 = 32;
/// INTx pins of a PCI function: INTA (0) to INTD (3).
pub const PCI_INTX_PINS: u8 = 4;
/// The PCI segment (domain) of the host bridge.
pub const PCI_SEGMENT: u16 = 0;
/// The bus number of the host bridge's root bus.
pub const PCI_ROOT_BUS: u8 = 0;

/// One bus takes 1 MiB of ECAM: 32 devices x 8 functions x 4 KiB.
const ECAM_BUS_SIZE: u64 = 1 << 20;
const _: () = assert!(PCI_ECAM_SIZE == (PCI_ECAM_LAST_BUS as u64 + 1) * ECAM_BUS_SIZE);

/// The ECAM and the BAR window are described with 32-bit descriptors: both must sit below 4 GiB,
/// and must not overlap (the ECAM belongs to MRES, the BAR window to PCI0).
const _: () = assert!(PCI_ECAM_START + PCI_ECAM_SIZE <= 1 << 32);
const _: () = assert!(PCI_MMIO_WINDOW_START + PCI_MMIO_WINDOW_SIZE <= 1 << 32);
const _: () = assert!(
    PCI_MMIO_WINDOW_START + PCI_MMIO_WINDOW_SIZE <= PCI_ECAM_START
        || PCI_ECAM_START + PCI_ECAM_SIZE <= PCI_MMIO_WINDOW_START
);
const ECAM_BASE: u32 = PCI_ECAM_START as u32;
const ECAM_LEN: u32 = PCI_ECAM_SIZE as u32;
const MMIO_MIN: u32 = PCI_MMIO_WINDOW_START as u32;
const MMIO_MAX: u32 = (PCI_MMIO_WINDOW_START + PCI_MMIO_WINDOW_SIZE - 1) as u32;

/// Configuration mechanism #1 ports (0xcf8-0xcff), consumed by the bridge itself; the I/O ports
/// below and above them are passed down to the bus.
const _: () = assert!(ports::PCI_CONFIG_ADDRESS + ports::PCI_CONFIG_LEN <= 0xffff);
const CONFIG_PORT: u16 = ports::PCI_CONFIG_ADDRESS as u16;
const CONFIG_LEN: u8 = ports::PCI_CONFIG_LEN as u8;
const IO_BELOW_CONFIG_MAX: u16 = CONFIG_PORT - 1;
const IO_ABOVE_CONFIG_MIN: u16 = CONFIG_PORT + CONFIG_LEN as u16;
/// The I/O BAR window lies in the ports passed down to the bus.
const _: () = assert!(
    layout::PCI_IO_WINDOW_START >= IO_ABOVE_CONFIG_MIN as u64
        && layout::PCI_IO_WINDOW_START + layout::PCI_IO_WINDOW_SIZE <= 0x1_0000
);

/// A `_PRT` address whose function field is 0xffff: every function of the slot.
const PRT_ALL_FUNCTIONS: u32 = 0xffff;

/// The IOAPIC input (GSI) that INTx pin `pin` (0 = INTA to 3 = INTD) of device slot `slot` on
/// bus 0 raises: [`layout::PCI_INTX_GSI_BASE`] + (`slot` + `pin`) mod
/// [`layout::PCI_INTX_GSI_COUNT`], so the devices' INTA lines are spread over the shared lines.
///
/// This is the one place the mapping is defined: the DSDT's `_PRT` announces it and the PCI
/// devices raise their interrupts with it. The Interrupt Pin register of configuration space
/// counts from 1 (1 = INTA); subtract 1 before calling.
pub fn intx_gsi(slot: u8, pin: u8) -> u32 {
    PCI_INTX_GSI_BASE + (u32::from(slot) + u32::from(pin)) % PCI_INTX_GSI_COUNT
}

/// The MCFG table: one allocation, the ECAM of segment 0 at [`layout::PCI_ECAM_START`] for buses
/// 0 to [`layout::PCI_ECAM_LAST_BUS`]. 60 bytes, checksum included.
pub fn mcfg_table() -> Vec<u8> {
    let mut mcfg = MCFG::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    mcfg.add_ecam(PCI_ECAM_START, PCI_SEGMENT, PCI_ROOT_BUS, PCI_ECAM_LAST_BUS);
    let mut bytes = Vec::new();
    mcfg.to_aml_bytes(&mut bytes);
    bytes
}

/// The `\_SB_.PCI0` device; see [`pci_root_bridge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciRootBridge {
    slots: u8,
}

/// The PCI root bridge of segment 0, bus 0, whose `_PRT` routes slots 0 to `slots - 1` (at most
/// [`PCI_SLOTS`]; more are clamped to it). Add it with
/// [`super::acpi::AcpiTables::add_sb_object`].
pub fn pci_root_bridge(slots: u8) -> PciRootBridge {
    PciRootBridge {
        slots: slots.min(PCI_SLOTS),
    }
}

impl PciRootBridge {
    /// The slots whose INTx pins `_PRT` routes.
    pub fn slots(&self) -> u8 {
        self.slots
    }

    /// `Package { Package { (slot << 16) | 0xffff, pin, 0, gsi }, ... }`: a source of 0 means
    /// the last element is a GSI, not an interrupt link device.
    fn prt(&self) -> aml::PackageBuilder {
        let mut prt = aml::PackageBuilder::new();
        for slot in 0..self.slots {
            let address = (u32::from(slot) << 16) | PRT_ALL_FUNCTIONS;
            for pin in 0..PCI_INTX_PINS {
                let gsi = intx_gsi(slot, pin);
                prt.add_element(&aml::Package::new(vec![&address, &pin, &aml::ZERO, &gsi]));
            }
        }
        prt
    }
}

impl Aml for PciRootBridge {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        let bus_numbers =
            aml::AddressSpace::<u16>::new_bus_number(PCI_ROOT_BUS.into(), PCI_ECAM_LAST_BUS.into());
        let config_ports = aml::IO::new(CONFIG_PORT, CONFIG_PORT, 1, CONFIG_LEN);
        let io_below = aml::AddressSpace::<u16>::new_io(0, IO_BELOW_CONFIG_MAX, None);
        let io_above = aml::AddressSpace::<u16>::new_io(IO_ABOVE_CONFIG_MIN, 0xffff, None);
        let mmio = aml::AddressSpace::<u32>::new_memory(
            aml::AddressSpaceCacheable::NotCacheable,
            true,
            MMIO_MIN,
            MMIO_MAX,
            None,
        );
        let crs = aml::ResourceTemplate::new(vec![
            &bus_numbers,
            &config_ports,
            &io_below,
            &io_above,
            &mmio,
        ]);
        let prt = self.prt();

        let segment = PCI_SEGMENT;
        let bus = PCI_ROOT_BUS;
        aml::Device::new(
            "PCI0".into(),
            vec![
                &aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0A08")),
                &aml::Name::new("_CID".into(), &aml::EISAName::new("PNP0A03")),
                &aml::Name::new("_ADR".into(), &aml::ZERO),
                &aml::Name::new("_SEG".into(), &segment),
                &aml::Name::new("_UID".into(), &aml::ZERO),
                &aml::Name::new("_BBN".into(), &bus),
                &aml::Name::new("_CRS".into(), &crs),
                &aml::Name::new("_PRT".into(), &prt),
            ],
        )
        .to_aml_bytes(sink);
    }
}

/// `\_SB_.MRES`, a motherboard resources device (`PNP0C02`) that claims the ECAM range, so Linux
/// accepts the MCFG's MMCONFIG area.
///
/// The range is a `Memory32Fixed` descriptor, which always means "this device consumes it": the
/// crate's DWord/QWord address space descriptors are always marked ResourceProducer (what a
/// bridge's window is), which is wrong for a device that only occupies the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MotherboardResources;

impl Aml for MotherboardResources {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        let ecam = aml::Memory32Fixed::new(true, ECAM_BASE, ECAM_LEN);
        let crs = aml::ResourceTemplate::new(vec![&ecam]);
        aml::Device::new(
            "MRES".into(),
            vec![
                &aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0C02")),
                &aml::Name::new("_UID".into(), &aml::ZERO),
                &aml::Name::new("_CRS".into(), &crs),
            ],
        )
        .to_aml_bytes(sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    fn aml_bytes(object: &dyn Aml) -> Vec<u8> {
        let mut bytes = Vec::new();
        object.to_aml_bytes(&mut bytes);
        bytes
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn mcfg_describes_the_ecam_of_bus_0_to_255() {
        let mcfg = mcfg_table();
        assert_eq!(mcfg.len(), 60);
        assert_eq!(&mcfg[..4], b"MCFG");
        assert_eq!(u32_at(&mcfg, 4), 60, "length");
        assert_eq!(mcfg[8], 1, "revision");
        assert_eq!(mcfg.iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
        assert_eq!(&mcfg[10..16], &OEM_ID);
        assert_eq!(&mcfg[16..24], &OEM_TABLE_ID);
        assert_eq!(u32_at(&mcfg, 24), OEM_REVISION);
        assert_eq!(u64_at(&mcfg, 36), 0, "reserved");
        // The allocation: base, segment, start bus, end bus, 4 reserved bytes.
        assert_eq!(u64_at(&mcfg, 44), PCI_ECAM_START);
        assert_eq!(u64_at(&mcfg, 44), 0xe000_0000);
        assert_eq!(&mcfg[52..54], &[0, 0], "segment");
        assert_eq!(mcfg[54], 0, "start bus");
        assert_eq!(mcfg[55], 0xff, "end bus");
        assert_eq!(&mcfg[56..60], &[0; 4]);
    }

    #[test]
    fn intx_routing() {
        assert_eq!(intx_gsi(0, 0), 16);
        assert_eq!(intx_gsi(0, 3), 19);
        assert_eq!(intx_gsi(1, 0), 17);
        assert_eq!(intx_gsi(5, 2), 23);
        assert_eq!(intx_gsi(6, 2), 16, "wraps after 8 lines");
        assert_eq!(intx_gsi(31, 3), 16 + (31 + 3) % 8);
        for slot in 0..PCI_SLOTS {
            for pin in 0..PCI_INTX_PINS {
                let gsi = intx_gsi(slot, pin);
                assert!((PCI_INTX_GSI_BASE..PCI_INTX_GSI_BASE + PCI_INTX_GSI_COUNT).contains(&gsi));
            }
        }
        // The four pins of a slot go to four different lines.
        let pins: std::collections::BTreeSet<u32> = (0..4).map(|p| intx_gsi(9, p)).collect();
        assert_eq!(pins.len(), 4);
    }

    /// `Package(4) { addr, pin, 0, gsi }` as AML, the way the `_PRT` encodes it.
    fn prt_entry(slot: u8, pin: u8) -> Vec<u8> {
        let address = (u32::from(slot) << 16) | 0xffff;
        let gsi = intx_gsi(slot, pin);
        aml_bytes(&aml::Package::new(vec![&address, &pin, &aml::ZERO, &gsi]))
    }

    #[test]
    fn root_bridge_names_and_routing() {
        let pci0 = aml_bytes(&pci_root_bridge(PCI_SLOTS));
        // ExtOpPrefix DeviceOp, then a 2-byte PkgLength, then the name.
        assert_eq!(&pci0[..2], &[0x5b, 0x82]);
        assert_eq!(&pci0[4..8], b"PCI0");
        for name in [
            b"_HID", b"_CID", b"_ADR", b"_SEG", b"_UID", b"_BBN", b"_CRS", b"_PRT",
        ] {
            assert!(contains(&pci0, name), "{}", String::from_utf8_lossy(name));
        }
        // Name(_HID, EisaId("PNP0A08")), Name(_CID, EisaId("PNP0A03")).
        assert!(contains(
            &pci0,
            &[0x08, b'_', b'H', b'I', b'D', 0x0c, 0x41, 0xd0, 0x0a, 0x08]
        ));
        assert!(contains(
            &pci0,
            &[0x08, b'_', b'C', b'I', b'D', 0x0c, 0x41, 0xd0, 0x0a, 0x03]
        ));

        // _PRT: Package(128) of the slot/pin entries.
        let prt = pci0.windows(4).position(|w| w == b"_PRT").unwrap() + 4;
        assert_eq!(pci0[prt], 0x12, "PackageOp");
        let count_at = prt + 1 + usize::from((pci0[prt + 1] >> 6) + 1);
        assert_eq!(pci0[count_at], 128);
        for (slot, pin) in [(0, 0), (0, 3), (1, 0), (7, 1), (8, 0), (31, 3)] {
            assert!(
                contains(&pci0[prt..], &prt_entry(slot, pin)),
                "{slot}/{pin}"
            );
        }
        // Slot 3, INTB: Package(4) { 0x0003FFFF, One, Zero, 20 }.
        assert!(contains(
            &pci0[prt..],
            &[0x12, 0x0b, 0x04, 0x0c, 0xff, 0xff, 0x03, 0x00, 0x01, 0x00, 0x0a, 20]
        ));
    }

    #[test]
    fn root_bridge_resources() {
        let pci0 = aml_bytes(&pci_root_bridge(PCI_SLOTS));
        // WordBusNumber: type 2, min 0, max 0xff, length 0x100.
        assert!(contains(
            &pci0,
            &[0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0, 0, 0, 0, 0xff, 0, 0, 0, 0, 1]
        ));
        // IO (Decode16, 0x0cf8, 0x0cf8, 1, 8).
        assert!(contains(
            &pci0,
            &[0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08]
        ));
        // WordIO 0x0000-0x0cf7 and 0x0d00-0xffff.
        assert!(contains(
            &pci0,
            &[0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0, 0, 0, 0, 0xf7, 0x0c, 0, 0, 0xf8, 0x0c]
        ));
        assert!(contains(
            &pci0,
            &[0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0, 0, 0x00, 0x0d, 0xff, 0xff, 0, 0, 0x00, 0xf3]
        ));
        // DWordMemory over the BAR window, read-write.
        let mut mmio = vec![0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0, 0, 0, 0];
        mmio.extend_from_slice(&(PCI_MMIO_WINDOW_START as u32).to_le_bytes());
        mmio.extend_from_slice(
            &((PCI_MMIO_WINDOW_START + PCI_MMIO_WINDOW_SIZE - 1) as u32).to_le_bytes(),
        );
        mmio.extend_from_slice(&[0; 4]);
        mmio.extend_from_slice(&(PCI_MMIO_WINDOW_SIZE as u32).to_le_bytes());
        assert!(contains(&pci0, &mmio));
        // The ECAM is not part of the bridge's window.
        assert!(!contains(&pci0, &(PCI_ECAM_START as u32).to_le_bytes()));
    }

    #[test]
    fn fewer_slots_shorten_the_prt() {
        let bridge = pci_root_bridge(2);
        assert_eq!(bridge.slots(), 2);
        let pci0 = aml_bytes(&bridge);
        let prt = pci0.windows(4).position(|w| w == b"_PRT").unwrap() + 4;
        let count_at = prt + 1 + usize::from((pci0[prt + 1] >> 6) + 1);
        assert_eq!(pci0[count_at], 8);
        assert!(contains(&pci0[prt..], &prt_entry(1, 3)));
        assert!(!contains(&pci0[prt..], &prt_entry(2, 0)));
        assert_eq!(pci_root_bridge(200).slots(), PCI_SLOTS);
    }

    #[test]
    fn motherboard_resources_reserve_the_ecam() {
        let mres = aml_bytes(&MotherboardResources);
        assert_eq!(&mres[..2], &[0x5b, 0x82]);
        assert!(contains(&mres, b"MRES"));
        // Name(_HID, EisaId("PNP0C02")).
        assert!(contains(
            &mres,
            &[0x08, b'_', b'H', b'I', b'D', 0x0c, 0x41, 0xd0, 0x0c, 0x02]
        ));
        // Memory32Fixed (ReadWrite, 0xe0000000, 0x10000000).
        let mut ecam = vec![0x86, 0x09, 0x00, 0x01];
        ecam.extend_from_slice(&0xe000_0000u32.to_le_bytes());
        ecam.extend_from_slice(&0x1000_0000u32.to_le_bytes());
        assert!(contains(&mres, &ecam));
        // Name(_CRS, ResourceTemplate) holds that descriptor and the end tag only.
        let crs = mres.windows(4).position(|w| w == b"_CRS").unwrap() + 4;
        assert_eq!(
            &mres[crs..crs + 3],
            &[0x11, 0x11, 0x0a],
            "Buffer, PkgLength, size"
        );
        assert_eq!(mres[crs + 3], 14);
        assert_eq!(&mres[crs + 4..crs + 16], ecam.as_slice());
        assert_eq!(&mres[crs + 16..], &[0x79, 0x00]);
    }
}
