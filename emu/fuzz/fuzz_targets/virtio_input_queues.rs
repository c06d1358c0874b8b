//! The virtio-input config space and its event and status queues, on guest memory the fuzzer
//! writes and host events it chooses: see `emu_fuzz::input` for the input layout.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    emu_fuzz::input::run(data);
});
