//! Fuzz targets for Cove's emulator core. Each target's logic lives here, so the seed
//! generators and their checks (`cargo test` in this directory) run the very code libFuzzer
//! runs.

pub mod blk;
pub mod emulation_decode;
pub mod pci_config_msix;
pub mod qmp;
