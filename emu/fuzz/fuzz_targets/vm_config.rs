//! The `vm.toml` loader on arbitrary file contents: parsing never panics, and a configuration
//! that parses and validates writes back to TOML that parses to the same configuration.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = emu::config::VmConfig::from_toml(text) else {
        return;
    };
    if config.validate().is_err() {
        return;
    }
    let written = config.to_toml().expect("a valid config serializes");
    let again = emu::config::VmConfig::from_toml(&written).expect("written TOML parses");
    assert_eq!(again, config, "round trip changed the config");
});
