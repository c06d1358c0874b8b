//! x86_64 platform set-up: guest physical layout, boot protocol, page tables and descriptor
//! tables, CPUID, MSRs and ACPI tables (with the PCI host bridge's MCFG and DSDT devices).

pub mod acpi;
pub mod acpi_oem;
pub mod boot;
pub mod cpuid;
pub mod layout;
pub mod pci_acpi;
pub mod regs;
