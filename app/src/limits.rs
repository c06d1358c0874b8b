//! What this host can give a VM, checked the same way by the CLI, the wizard, the edit dialog
//! and every start; and the human wording of sizes and I/O errors that those checks use.

use std::path::Path;

/// Memory kept back for the host: a VM may have at most the host's RAM less this.
fn memory_reserve(host_bytes: u64) -> u64 {
    (host_bytes / 8).max(512 << 20)
}

/// Above this share of the host's RAM, memory is allowed with a warning.
const MEMORY_WARN_PERCENT: u64 = 75;

/// The least memory a VM may have.
pub const MIN_MEMORY: u64 = 64 << 20;

/// What this host can give a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostLimits {
    /// Host CPUs: the most vCPUs a VM may have.
    pub cpus: u8,
    /// Host RAM in bytes.
    pub memory_bytes: u64,
}

impl HostLimits {
    /// This host's CPUs and memory.
    pub fn detect() -> Self {
        Self {
            cpus: emu::host::host_cpus().clamp(1, 255) as u8,
            memory_bytes: emu::host::host_memory_bytes()
                .unwrap_or(1 << 30)
                .max(MIN_MEMORY * 2),
        }
    }

    /// The most memory a VM may have here.
    pub fn max_memory(&self) -> u64 {
        self.memory_bytes
            .saturating_sub(memory_reserve(self.memory_bytes))
            .max(MIN_MEMORY)
    }

    /// Why `cpus` vCPUs cannot be, if they cannot.
    pub fn cpus_error(&self, cpus: u32) -> Option<String> {
        if cpus == 0 {
            return Some("A VM needs at least 1 CPU.".into());
        }
        (cpus > u32::from(self.cpus)).then(|| {
            format!(
                "{cpus} CPUs is more than this host has: choose 1 to {}.",
                self.cpus
            )
        })
    }

    /// Why `bytes` of memory cannot be, if they cannot.
    pub fn memory_error(&self, bytes: u64) -> Option<String> {
        if bytes < MIN_MEMORY {
            return Some(format!(
                "{} of memory is too little: a VM needs at least {}.",
                human_size(bytes),
                human_size(MIN_MEMORY)
            ));
        }
        (bytes > self.max_memory()).then(|| {
            format!(
                "{} of memory is more than this host can give: it has {}, and at most {} can go \
                 to a VM.",
                human_size(bytes),
                human_size(self.memory_bytes),
                human_size(self.max_memory())
            )
        })
    }

    /// A warning for memory that is allowed but leaves the host little.
    pub fn memory_warning(&self, bytes: u64) -> Option<String> {
        (self.memory_error(bytes).is_none()
            && bytes > self.memory_bytes / 100 * MEMORY_WARN_PERCENT)
            .then(|| {
                format!(
                    "{} is over {MEMORY_WARN_PERCENT}% of this host's {}: the host may slow down.",
                    human_size(bytes),
                    human_size(self.memory_bytes)
                )
            })
    }

    /// The first error of a VM's CPUs and memory.
    pub fn vm_error(&self, cpus: u32, memory_bytes: u64) -> Option<String> {
        self.cpus_error(cpus)
            .or_else(|| self.memory_error(memory_bytes))
    }
}

/// Why a new disk of `bytes` cannot be made in the folder `dir`, if it cannot: larger than the
/// file system allows for one file (asked of the file system itself).
pub fn disk_size_error(bytes: u64, dir: &Path) -> Option<String> {
    if bytes == 0 {
        return None;
    }
    let too_large = || {
        format!(
            "A {} disk is larger than the file system of {} allows for one file.",
            human_size(bytes),
            dir.display()
        )
    };
    if i64::try_from(bytes).is_err() {
        return Some(too_large());
    }
    let probe = dir.join(format!(".cove-size-probe-{}", std::process::id()));
    let file = match std::fs::File::create(&probe) {
        Ok(f) => f,
        Err(e) => {
            return Some(format!(
                "Cannot make a disk in {}: {}.",
                dir.display(),
                describe_io(&e)
            ))
        }
    };
    let result = file.set_len(bytes);
    drop(file);
    let _ = std::fs::remove_file(&probe);
    match result {
        Ok(()) => None,
        Err(e)
            if e.raw_os_error() == Some(libc::EFBIG) || e.raw_os_error() == Some(libc::EINVAL) =>
        {
            Some(format!(
                "A {} disk is larger than the file system of {} allows for one file.",
                human_size(bytes),
                dir.display()
            ))
        }
        Err(e) => Some(format!(
            "Cannot make a {} disk in {}: {}.",
            human_size(bytes),
            dir.display(),
            describe_io(&e)
        )),
    }
}

/// A size in binary units, as people read it: "512 MiB", "1.5 GiB", "10 TiB".
pub fn human_size(bytes: u64) -> String {
    const UNITS: [(&str, u32); 5] = [
        ("PiB", 50),
        ("TiB", 40),
        ("GiB", 30),
        ("MiB", 20),
        ("KiB", 10),
    ];
    for (unit, shift) in UNITS {
        let scale = 1u64 << shift;
        if bytes >= scale {
            let whole = bytes / scale;
            let tenths = (bytes % scale) * 10 / scale;
            return if tenths == 0 || whole >= 100 {
                format!("{whole} {unit}")
            } else {
                format!("{whole}.{tenths} {unit}")
            };
        }
    }
    format!("{bytes} bytes")
}

/// An I/O error as a sentence fragment, without Rust's "(os error N)".
pub fn describe_io(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: HostLimits = HostLimits {
        cpus: 2,
        memory_bytes: 24 << 30,
    };

    #[test]
    fn limits_and_their_words() {
        assert!(HOST.cpus_error(0).unwrap().contains("at least 1"));
        assert!(HOST.cpus_error(64).unwrap().contains("choose 1 to 2"));
        assert!(HOST.cpus_error(2).is_none());
        let e = HOST.memory_error(10 << 40).unwrap();
        assert!(
            e.contains("10 TiB") && e.contains("24 GiB") && e.contains("21 GiB"),
            "{e}"
        );
        assert!(HOST.memory_error(32 << 20).unwrap().contains("64 MiB"));
        assert!(HOST.memory_error(2 << 30).is_none());
        assert!(HOST.memory_warning(20 << 30).unwrap().contains("75%"));
        assert!(HOST.memory_warning(2 << 30).is_none());
        assert_eq!(human_size(1536 << 20), "1.5 GiB");
        assert_eq!(human_size(512), "512 bytes");
        let e = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(describe_io(&e), "no such file or directory");
    }

    #[test]
    fn disk_sizes_are_asked_of_the_file_system() {
        let dir = std::env::temp_dir();
        assert!(disk_size_error(1 << 30, &dir).is_none());
        let e = disk_size_error(u64::MAX / 2, &dir).unwrap();
        assert!(e.contains("larger than the file system"), "{e}");
    }
}
