//! x86_64 platform set-up: guest physical layout, boot protocol, page tables and descriptor
//! tables, CPUID, MSRs and ACPI tables.

pub mod acpi;
pub mod boot;
pub mod cpuid;
pub mod layout;
pub mod regs;
