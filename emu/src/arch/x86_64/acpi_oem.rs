//! The OEM identity every ACPI table Cove builds carries, shared by the table builders
//! ([`super::acpi`] and [`super::pci_acpi`]) so neither depends on the other for it.

/// OEM ID of every table Cove builds.
pub const OEM_ID: [u8; 6] = *b"COVE  ";
/// OEM table ID of every table Cove builds.
pub const OEM_TABLE_ID: [u8; 8] = *b"COVEVM  ";
/// OEM revision of every table Cove builds.
pub const OEM_REVISION: u32 = 1;
