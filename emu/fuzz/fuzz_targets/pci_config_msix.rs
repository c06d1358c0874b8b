//! Guest configuration-space, config-port, ECAM and MSI-X BAR accesses to a virtio-rng PCI
//! device: see `emu_fuzz::pci_config_msix` for the input layout.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    emu_fuzz::pci_config_msix::run(data);
});
