//! The serializable description of a VM.
//!
//! One [`VmConfig`] serves the GUI, the CLI and the on-disk library (TOML). It says what the VM
//! is, not how it is built: the machine builder turns it into a running VM.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A whole VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// Shown in titles and logs.
    #[serde(default = "default_name")]
    pub name: String,
    /// Number of vCPUs.
    #[serde(default = "default_cpus")]
    pub cpus: u8,
    /// Guest RAM.
    #[serde(default = "default_memory")]
    pub memory: MemorySize,
    pub boot: BootSource,
    /// Which host quirks to work around.
    #[serde(default)]
    pub host_profile: HostProfileChoice,
    /// What a guest reboot does.
    #[serde(default)]
    pub on_reboot: RebootAction,
}

fn default_name() -> String {
    "cove-vm".into()
}
fn default_cpus() -> u8 {
    1
}
fn default_memory() -> MemorySize {
    MemorySize::from_mib(512)
}

/// How the guest starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BootSource {
    /// Direct kernel boot: a bzImage or an ELF vmlinux.
    Kernel {
        kernel: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        initrd: Option<PathBuf>,
        #[serde(default)]
        cmdline: String,
    },
}

/// Which host profile to apply (see [`crate::host::HostProfile`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostProfileChoice {
    /// Detect the host and apply what it needs.
    #[default]
    Auto,
    /// Apply nothing.
    None,
    /// Apply the nested-KVM (kvm-pvm) profile whatever the host is.
    Pvm,
}

impl FromStr for HostProfileChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "none" => Ok(Self::None),
            "pvm" => Ok(Self::Pvm),
            other => Err(format!(
                "unknown host profile {other:?} (expected auto, none or pvm)"
            )),
        }
    }
}

/// What a guest-initiated reset does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RebootAction {
    /// Restart the VM, as a real machine does.
    #[default]
    Restart,
    /// Stop the VM (like QEMU's `-no-reboot`).
    Exit,
}

/// A size in bytes, written as `512M`, `2G`, `1048576` or `64K` in configs and on the command
/// line (binary units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemorySize(u64);

impl MemorySize {
    pub const fn from_bytes(bytes: u64) -> Self {
        Self(bytes)
    }
    pub const fn from_mib(mib: u64) -> Self {
        Self(mib << 20)
    }
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

/// A size string that could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid size {input:?}: {why} (examples: 512M, 2G, 65536K)")]
pub struct SizeParseError {
    input: String,
    why: &'static str,
}

impl FromStr for MemorySize {
    type Err = SizeParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| SizeParseError {
            input: s.to_string(),
            why,
        };
        let t = s.trim();
        let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
            Some(i) => t.split_at(i),
            None => (t, ""),
        };
        if digits.is_empty() {
            return Err(err("no number"));
        }
        let n: u64 = digits.parse().map_err(|_| err("number too large"))?;
        let shift = match unit.trim().to_ascii_uppercase().as_str() {
            "" | "B" => 0,
            "K" | "KB" | "KIB" => 10,
            "M" | "MB" | "MIB" => 20,
            "G" | "GB" | "GIB" => 30,
            "T" | "TB" | "TIB" => 40,
            _ => return Err(err("unknown unit")),
        };
        n.checked_mul(1u64 << shift)
            .map(Self)
            .ok_or_else(|| err("size too large"))
    }
}

impl fmt::Display for MemorySize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
            if b != 0 && b.is_multiple_of(1u64 << shift) {
                return write!(f, "{}{unit}", b >> shift);
            }
        }
        write!(f, "{b}")
    }
}

impl Serialize for MemorySize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for MemorySize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(b) => Ok(Self(b)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A config file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot parse VM config: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("cannot write VM config: {0}")]
    Serialize(#[from] toml::ser::Error),
}

impl VmConfig {
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Ok(toml::from_str(text)?)
    }
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        Ok(toml::to_string_pretty(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!("512M".parse::<MemorySize>().unwrap().bytes(), 512 << 20);
        assert_eq!("2G".parse::<MemorySize>().unwrap().bytes(), 2 << 30);
        assert_eq!("2gib".parse::<MemorySize>().unwrap().bytes(), 2 << 30);
        assert_eq!("4096".parse::<MemorySize>().unwrap().bytes(), 4096);
        assert_eq!("64K".parse::<MemorySize>().unwrap().bytes(), 64 << 10);
        assert!("".parse::<MemorySize>().is_err());
        assert!("M".parse::<MemorySize>().is_err());
        assert!("12Q".parse::<MemorySize>().is_err());
        assert!("-1M".parse::<MemorySize>().is_err());
        assert!("99999999999T".parse::<MemorySize>().is_err());
        assert_eq!(MemorySize::from_mib(1536).to_string(), "1536M");
        assert_eq!(MemorySize::from_mib(2048).to_string(), "2G");
    }

    #[test]
    fn round_trips_toml() {
        let cfg = VmConfig {
            name: "test".into(),
            cpus: 2,
            memory: MemorySize::from_mib(256),
            boot: BootSource::Kernel {
                kernel: "/boot/vmlinux".into(),
                initrd: Some("/boot/initrd".into()),
                cmdline: "console=ttyS0".into(),
            },
            host_profile: HostProfileChoice::Auto,
            on_reboot: RebootAction::Exit,
        };
        let text = cfg.to_toml().unwrap();
        assert!(text.contains("memory = \"256M\""), "{text}");
        assert_eq!(VmConfig::from_toml(&text).unwrap(), cfg);
    }

    #[test]
    fn rejects_bad_configs() {
        assert!(VmConfig::from_toml("cpus = 2").is_err());
        let bad_memory = "memory = \"lots\"\n[boot]\nkind = \"kernel\"\nkernel = \"/k\"\n";
        let err = VmConfig::from_toml(bad_memory).unwrap_err().to_string();
        assert!(err.contains("invalid size"), "{err}");
        assert!(
            VmConfig::from_toml("bogus = 1\n[boot]\nkind = \"kernel\"\nkernel = \"/k\"").is_err()
        );
    }
}
