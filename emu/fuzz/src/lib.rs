//! Fuzz targets for Cove's emulator core. Each target's logic lives here, so the seed
//! generators and their checks (`cargo test` in this directory) run the very code libFuzzer
//! runs.

pub mod blk;
pub mod emulation_decode;
pub mod gpu;
pub mod input;
pub mod link;
pub mod pci_config_msix;
pub mod qmp;
pub mod rings;
pub mod settings_toml;

/// Checks that the committed seed files of `target` (under `seeds/<target>/`) are exactly what
/// its generator makes now, or rewrites them when `COVE_UPDATE_SEEDS` is set (each target's
/// `seed_files_are_current` test calls this).
#[cfg(test)]
pub(crate) fn check_seed_files<'a>(
    target: &str,
    seeds: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    let update = std::env::var_os("COVE_UPDATE_SEEDS").is_some();
    for (name, bytes) in seeds {
        let path = dir.join(name);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, bytes).unwrap();
        } else {
            let on_disk = std::fs::read(&path).unwrap_or_default();
            assert!(
                on_disk == bytes,
                "{} is stale: run COVE_UPDATE_SEEDS=1 cargo test in emu/fuzz",
                path.display()
            );
        }
    }
}
