//! The app ↔ VM-process link protocol on arbitrary datagrams: see `emu_fuzz::link`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    emu_fuzz::link::run(data);
});
