//! The emulation-failure recovery path (instruction fetch through the page walk, decoding,
//! recovery handlers) on fuzzer-chosen registers and guest memory: see
//! `emu_fuzz::emulation_decode` for the input layout.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    emu_fuzz::emulation_decode::run(data);
});
