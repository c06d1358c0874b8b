//! The QMP framing and session on the bytes a client sends: see `emu_fuzz::qmp` for the input
//! layout and the checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    emu_fuzz::qmp::run(data);
});
