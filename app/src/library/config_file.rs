//! Reading and writing one VM's `vm.toml` safely.
//!
//! Reading takes only a regular file of at most [`MAX_CONFIG_BYTES`], opened without following a
//! symbolic link and without blocking (a FIFO or device in its place is refused, never read).
//! Writing goes to a private temporary file that is synced and renamed over the old one, so a
//! crash leaves either the old or the new configuration.
//!
//! Paths inside a VM's configuration (disks, kernel, initrd, ISO) that are relative mean
//! "relative to the VM's folder": they are resolved against it when loaded, and paths inside the
//! folder are stored relative to it, so a library can be moved as a whole.

use emu::config::{BootSource, VmConfig};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The largest `vm.toml` Cove reads.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads `path` as text if it is a regular file of at most [`MAX_CONFIG_BYTES`].
pub fn read_limited(path: &Path) -> Result<String, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "it is a symbolic link, which Cove does not follow".to_string(),
            _ => crate::limits::describe_io(&e),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| crate::limits::describe_io(&e))?;
    if !meta.file_type().is_file() {
        return Err("it is not a regular file".into());
    }
    if meta.size() > MAX_CONFIG_BYTES {
        return Err(format!(
            "it is {}, more than the {} a VM configuration may be",
            crate::limits::human_size(meta.size()),
            crate::limits::human_size(MAX_CONFIG_BYTES)
        ));
    }
    let mut text = String::new();
    // The file may grow after the look: never read past the cap.
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| crate::limits::describe_io(&e))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err("it grew past the size a VM configuration may be".into());
    }
    Ok(text)
}

/// Writes `text` to `path` atomically: a 0600 temporary file beside it, synced, then renamed.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let temporary = dir.join(format!(".vm.toml.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        // The rename itself reaches the disk with the directory.
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// Makes every relative path of `config` relative to `dir` (the VM's folder).
pub fn resolve_paths(config: &mut VmConfig, dir: &Path) {
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() && !p.as_os_str().is_empty() {
            *p = dir.join(&*p);
        }
    };
    for disk in &mut config.disks {
        resolve(&mut disk.path);
    }
    match &mut config.boot {
        BootSource::Kernel { kernel, initrd, .. } => {
            resolve(kernel);
            if let Some(initrd) = initrd {
                resolve(initrd);
            }
        }
        BootSource::Firmware { cdrom } => {
            if let Some(cdrom) = cdrom {
                resolve(cdrom);
            }
        }
    }
}

/// The form of `config` stored on disk: paths inside `dir` become relative to it; others stay
/// absolute (a path that leaves the library is always written out in full).
pub fn storable(config: &VmConfig, dir: &Path) -> VmConfig {
    let mut stored = config.clone();
    let relative = |p: &mut PathBuf| {
        let absolute = std::path::absolute(&*p).unwrap_or_else(|_| p.clone());
        *p = match absolute.strip_prefix(dir) {
            Ok(inside) if !inside.as_os_str().is_empty() => inside.to_path_buf(),
            _ => absolute,
        };
    };
    for disk in &mut stored.disks {
        relative(&mut disk.path);
    }
    match &mut stored.boot {
        BootSource::Kernel { kernel, initrd, .. } => {
            relative(kernel);
            if let Some(initrd) = initrd {
                relative(initrd);
            }
        }
        BootSource::Firmware { cdrom } => {
            if let Some(cdrom) = cdrom {
                relative(cdrom);
            }
        }
    }
    stored
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    #[test]
    fn refuses_what_is_not_a_small_regular_file() {
        let tmp = TempDir::new("config-file");
        let link = tmp.0.join("link.toml");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(read_limited(&link).unwrap_err().contains("symbolic link"));
        let big = tmp.0.join("big.toml");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_CONFIG_BYTES + 1)
            .unwrap();
        assert!(read_limited(&big).unwrap_err().contains("more than"));
        let fifo = tmp.0.join("fifo.toml");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path only.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(read_limited(&fifo)
            .unwrap_err()
            .contains("not a regular file"));
        let good = tmp.0.join("good.toml");
        write_atomic(&good, "name = \"x\"\n").unwrap();
        assert_eq!(read_limited(&good).unwrap(), "name = \"x\"\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&good).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn paths_inside_the_folder_are_stored_relative() {
        let dir = Path::new("/lib/vms/a");
        let mut config =
            VmConfig::from_toml("[boot]\nkind = \"firmware\"\ncdrom = \"/isos/x.iso\"\n").unwrap();
        config
            .disks
            .push(emu::config::DiskConfig::new("/lib/vms/a/disk0.img"));
        config
            .disks
            .push(emu::config::DiskConfig::new("/elsewhere/d.img"));
        let stored = storable(&config, dir);
        assert_eq!(stored.disks[0].path, Path::new("disk0.img"));
        assert_eq!(stored.disks[1].path, Path::new("/elsewhere/d.img"));
        let mut loaded = stored.clone();
        resolve_paths(&mut loaded, dir);
        assert_eq!(loaded, config);
    }
}
