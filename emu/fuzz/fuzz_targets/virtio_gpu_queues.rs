//! The virtio-gpu control and cursor queues, with every 2D command, on guest memory the
//! fuzzer writes: see `emu_fuzz::gpu` for the input layout.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    emu_fuzz::gpu::run(data);
});
