//! The app's `settings.toml` parser on arbitrary file contents: see `emu_fuzz::settings_toml`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    emu_fuzz::settings_toml::run(data);
});
