//! The virtqueue and virtio-blk request path on guest memory the fuzzer writes: see
//! `emu_fuzz::blk` for the input layout.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    emu_fuzz::blk::run(data);
});
