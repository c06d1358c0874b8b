//! PCI: the root bus and host bridge (configuration mechanism #1 and ECAM), configuration
//! spaces with BARs and capabilities, BAR placement, and MSI-X.

pub mod allocator;
pub mod config_space;
pub mod device;
pub mod msix;
pub mod root;

pub use config_space::{BarKind, ConfigSpace, PciHeader};
pub use device::{PciAddress, PciDevice, SharedPciDevice};
pub use root::{ConfigPorts, Ecam, PciError, PciRoot};
