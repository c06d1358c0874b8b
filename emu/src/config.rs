//! The serializable description of a VM.
//!
//! One [`VmConfig`] serves the GUI, the CLI and the on-disk library (TOML). It says what the VM
//! is, not how it is built: the machine builder turns it into a running VM.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
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
    /// How the guest starts: a kernel to load directly, or firmware.
    pub boot: BootSource,
    /// Which host quirks to work around.
    #[serde(default)]
    pub host_profile: HostProfileChoice,
    /// What a guest reboot does.
    #[serde(default)]
    pub on_reboot: RebootAction,
    /// Disks, in the order the guest sees them (virtio-blk: the first is `/dev/vda`).
    #[serde(default)]
    pub disks: Vec<DiskConfig>,
    /// Whether the guest gets a virtio-rng device (entropy from the host).
    #[serde(default = "default_true")]
    pub rng: bool,
    /// A graphical display (virtio-gpu with a keyboard and tablet), or none.
    #[serde(default)]
    pub display: DisplayConfig,
}

/// The VM's display hardware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisplayConfig {
    /// virtio-gpu, virtio keyboard and virtio tablet are present.
    #[serde(default)]
    pub enabled: bool,
    /// The display size offered at boot (the window's size follows later).
    #[serde(default = "default_display_width")]
    pub width: u32,
    /// The display height in pixels offered at boot.
    #[serde(default = "default_display_height")]
    pub height: u32,
}

impl Default for DisplayConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            width: default_display_width(),
            height: default_display_height(),
        }
    }
}

fn default_display_width() -> u32 {
    1024
}

fn default_display_height() -> u32 {
    768
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
fn default_true() -> bool {
    true
}

/// How the guest starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BootSource {
    /// Direct kernel boot: a bzImage or an ELF vmlinux.
    Kernel {
        /// Path of the kernel image, a bzImage or an ELF vmlinux.
        kernel: PathBuf,
        /// Path of an initial ramdisk, loaded at the top of low RAM.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        initrd: Option<PathBuf>,
        /// Kernel command line (at most 2048 bytes); empty means none.
        #[serde(default)]
        cmdline: String,
    },
    /// Firmware boot from the VM's disks, or from an installer ISO. Cove cannot boot firmware
    /// yet: such a VM is kept in the library and refuses to start with a clear error.
    Firmware {
        /// Installer ISO to boot from, if any (not used yet: firmware boot is unimplemented).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cdrom: Option<PathBuf>,
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

/// The most disks one VM may have.
pub const MAX_DISKS: usize = 16;

/// The longest disk serial: virtio-blk's GET_ID request answers with at most 20 bytes.
pub const MAX_DISK_SERIAL_LEN: usize = 20;

/// A disk image (or host block device) the guest sees as a block device.
///
/// On the command line (`--disk`) a disk is written `PATH[,readonly=on|off][,serial=ID]`: the
/// path first, then options in any order.
///
/// - `readonly` takes `on`/`off`, `true`/`false`, `yes`/`no` or `1`/`0`.
/// - `serial` is what the guest reads as the disk's serial number (virtio-blk GET_ID, Linux's
///   `/sys/block/vda/serial`): 1 to 20 bytes of printable ASCII.
/// - A comma that is part of the path (or of the serial) is written twice, as in QEMU:
///   `--disk 'old,,new.img,readonly=on'` is the file `old,new.img`, read-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// The image file or host block device.
    pub path: PathBuf,
    /// The guest may read the disk but not write it.
    #[serde(default)]
    pub read_only: bool,
    /// The disk's serial number as the guest sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

impl DiskConfig {
    /// A writable disk without a serial.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            read_only: false,
            serial: None,
        }
    }

    /// Checks what the command-line syntax checks, for disks that came from elsewhere (a TOML
    /// config, the GUI).
    pub fn validate(&self) -> Result<(), String> {
        if self.path.as_os_str().is_empty() {
            return Err("disk path is empty".into());
        }
        match &self.serial {
            Some(serial) => check_disk_serial(serial),
            None => Ok(()),
        }
    }
}

fn check_disk_serial(serial: &str) -> Result<(), String> {
    if serial.is_empty() {
        return Err("disk serial is empty".into());
    }
    if let Some(c) = serial.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(format!(
            "disk serial {serial:?} contains {c:?}: only printable ASCII is allowed"
        ));
    }
    if serial.len() > MAX_DISK_SERIAL_LEN {
        return Err(format!(
            "disk serial {serial:?} is too long: {} bytes, at most {MAX_DISK_SERIAL_LEN} (virtio-blk GET_ID)",
            serial.len()
        ));
    }
    Ok(())
}

/// `on`/`off` and friends, as `readonly=` takes them.
fn parse_switch(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// Splits `s` at single commas; a doubled comma is a literal comma.
fn split_escaped_commas(s: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != ',' {
            fields.last_mut().expect("never empty").push(c);
        } else if chars.peek() == Some(&',') {
            chars.next();
            fields.last_mut().expect("never empty").push(',');
        } else {
            fields.push(String::new());
        }
    }
    fields
}

/// Doubles commas, so [`split_escaped_commas`] gives the text back.
fn escape_commas(s: &str) -> String {
    s.replace(',', ",,")
}

impl FromStr for DiskConfig {
    type Err = String;

    /// Parses `PATH[,readonly=on|off][,serial=ID]` (see [`DiskConfig`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut fields = split_escaped_commas(s).into_iter();
        let path = fields.next().unwrap_or_default();
        if path.is_empty() {
            return Err("disk path is empty (expected PATH[,readonly=on|off][,serial=ID])".into());
        }
        let mut disk = DiskConfig::new(path);
        let mut read_only = None;
        for field in fields {
            let (key, value) = match field.split_once('=') {
                Some((key, value)) => (key, Some(value)),
                None => (field.as_str(), None),
            };
            match key {
                "" => {
                    return Err(
                        "empty disk option (a stray comma? write a comma in the path as \",,\")"
                            .into(),
                    )
                }
                "readonly" | "serial" if value.is_none() => {
                    return Err(format!("disk option {key:?} needs a value ({key}=...)"))
                }
                "readonly" => {
                    if read_only.is_some() {
                        return Err("disk option \"readonly\" is given twice".into());
                    }
                    let value = value.unwrap_or_default();
                    let on = parse_switch(value).ok_or_else(|| {
                        format!(
                            "invalid readonly value {value:?} (expected on or off; true/false, yes/no and 1/0 work too)"
                        )
                    })?;
                    read_only = Some(on);
                }
                "serial" => {
                    if disk.serial.is_some() {
                        return Err("disk option \"serial\" is given twice".into());
                    }
                    let value = value.unwrap_or_default();
                    check_disk_serial(value)?;
                    disk.serial = Some(value.to_string());
                }
                other => {
                    return Err(format!(
                        "unknown disk option {other:?} (expected readonly=on|off or serial=ID)"
                    ))
                }
            }
        }
        disk.read_only = read_only.unwrap_or(false);
        Ok(disk)
    }
}

impl fmt::Display for DiskConfig {
    /// The command-line syntax, which [`DiskConfig::from_str`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape_commas(&self.path.to_string_lossy()))?;
        if self.read_only {
            f.write_str(",readonly=on")?;
        }
        if let Some(serial) = &self.serial {
            write!(f, ",serial={}", escape_commas(serial))?;
        }
        Ok(())
    }
}

/// A size in bytes, written as `512M`, `2G`, `1048576` or `64K` in configs and on the command
/// line (binary units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemorySize(u64);

impl MemorySize {
    /// A size of exactly `bytes` bytes.
    pub const fn from_bytes(bytes: u64) -> Self {
        Self(bytes)
    }
    /// A size of `mib` MiB (1 MiB = 2^20 bytes).
    pub const fn from_mib(mib: u64) -> Self {
        Self(mib << 20)
    }
    /// The size in bytes.
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
    /// The text is not TOML or does not fit the [`VmConfig`] schema (unknown keys included).
    #[error("cannot parse VM config: {0}")]
    Parse(#[from] toml::de::Error),
    /// The config could not be written as TOML.
    #[error("cannot write VM config: {0}")]
    Serialize(#[from] toml::ser::Error),
}

impl VmConfig {
    /// Parses a config from TOML; does not [`validate`](Self::validate) it.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Ok(toml::from_str(text)?)
    }
    /// Writes the config as pretty-printed TOML.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// Checks what the types alone do not: at most [`MAX_DISKS`] disks, each valid (see
    /// [`DiskConfig::validate`]), and no file given as two disks (paths are compared after
    /// resolving symbolic links and `..` where the file exists).
    pub fn validate(&self) -> Result<(), String> {
        if self.disks.len() > MAX_DISKS {
            return Err(format!(
                "{} disks given; a VM can have at most {MAX_DISKS}",
                self.disks.len()
            ));
        }
        let mut seen: Vec<(PathBuf, &Path)> = Vec::with_capacity(self.disks.len());
        for disk in &self.disks {
            disk.validate()
                .map_err(|e| format!("{}: {e}", disk.path.display()))?;
            let identity = std::fs::canonicalize(&disk.path)
                .or_else(|_| std::path::absolute(&disk.path))
                .unwrap_or_else(|_| disk.path.clone());
            if let Some((_, first)) = seen.iter().find(|(id, _)| *id == identity) {
                return Err(if first.as_os_str() == disk.path.as_os_str() {
                    format!("disk {} is given twice", disk.path.display())
                } else {
                    format!(
                        "disks {} and {} are the same file",
                        first.display(),
                        disk.path.display()
                    )
                });
            }
            seen.push((identity, &disk.path));
        }
        let display = &self.display;
        let limit = crate::virtio::gpu::state::MAX_DIMENSION;
        if display.enabled
            && !((16..=limit).contains(&display.width) && (16..=limit).contains(&display.height))
        {
            return Err(format!(
                "display size {}x{} is outside 16x16 to {limit}x{limit}",
                display.width, display.height
            ));
        }
        Ok(())
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
            disks: vec![
                DiskConfig::new("/images/root.img"),
                DiskConfig {
                    path: "/images/data,old.img".into(),
                    read_only: true,
                    serial: Some("DATA-01".into()),
                },
            ],
            rng: false,
            display: DisplayConfig {
                enabled: true,
                width: 1280,
                height: 800,
            },
        };
        let text = cfg.to_toml().unwrap();
        assert!(text.contains("memory = \"256M\""), "{text}");
        assert!(text.contains("[[disks]]"), "{text}");
        assert!(text.contains("read_only = true"), "{text}");
        assert!(text.contains("serial = \"DATA-01\""), "{text}");
        assert!(text.contains("rng = false"), "{text}");
        assert_eq!(VmConfig::from_toml(&text).unwrap(), cfg);
    }

    const KERNEL_ONLY: &str = "[boot]\nkind = \"kernel\"\nkernel = \"/k\"\n";

    #[test]
    fn disks_and_rng_default_to_none_and_on() {
        let cfg = VmConfig::from_toml(KERNEL_ONLY).unwrap();
        assert!(cfg.disks.is_empty());
        assert!(cfg.rng);
        // No serial: the key is left out, not written empty.
        let mut with_disk = cfg.clone();
        with_disk.disks.push(DiskConfig::new("/d.img"));
        let text = with_disk.to_toml().unwrap();
        assert!(!text.contains("serial"), "{text}");
        assert_eq!(VmConfig::from_toml(&text).unwrap(), with_disk);
    }

    #[test]
    fn reads_disks_from_toml() {
        let text = format!(
            "rng = false\n[[disks]]\npath = \"/a.img\"\n[[disks]]\npath = \"/b.img\"\nread_only = true\nserial = \"B\"\n{KERNEL_ONLY}"
        );
        let cfg = VmConfig::from_toml(&text).unwrap();
        assert!(!cfg.rng);
        assert_eq!(
            cfg.disks,
            vec![
                DiskConfig::new("/a.img"),
                DiskConfig {
                    path: "/b.img".into(),
                    read_only: true,
                    serial: Some("B".into()),
                }
            ]
        );
        let unknown = format!("[[disks]]\npath = \"/a.img\"\ncache = \"none\"\n{KERNEL_ONLY}");
        let err = VmConfig::from_toml(&unknown).unwrap_err().to_string();
        assert!(err.contains("cache"), "{err}");
        let no_path = format!("[[disks]]\nread_only = true\n{KERNEL_ONLY}");
        assert!(VmConfig::from_toml(&no_path).is_err());
    }

    fn disk(s: &str) -> DiskConfig {
        s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn disk_err(s: &str) -> String {
        match s.parse::<DiskConfig>() {
            Ok(d) => panic!("{s:?} parsed as {d:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn parses_disk_options() {
        assert_eq!(disk("/images/a.img"), DiskConfig::new("/images/a.img"));
        assert_eq!(disk("rel/a.img"), DiskConfig::new("rel/a.img"));
        for on in ["on", "true", "yes", "1", "ON", "Yes"] {
            assert!(disk(&format!("a.img,readonly={on}")).read_only, "{on}");
        }
        for off in ["off", "false", "no", "0", "OFF"] {
            assert!(!disk(&format!("a.img,readonly={off}")).read_only, "{off}");
        }
        let want = DiskConfig {
            path: "a.img".into(),
            read_only: true,
            serial: Some("SN 0042".into()),
        };
        assert_eq!(disk("a.img,readonly=on,serial=SN 0042"), want);
        assert_eq!(disk("a.img,serial=SN 0042,readonly=on"), want);
        // Exactly 20 bytes is allowed; '=' in a value is just a character.
        assert_eq!(
            disk("a.img,serial=ABCDEFGHIJ0123456789").serial.as_deref(),
            Some("ABCDEFGHIJ0123456789")
        );
        assert_eq!(disk("a.img,serial=x=y").serial.as_deref(), Some("x=y"));
        // A path may hold '='; only options after the first comma are parsed.
        assert_eq!(disk("/tmp/k=v.img").path, PathBuf::from("/tmp/k=v.img"));
    }

    #[test]
    fn doubled_commas_are_literal_commas() {
        assert_eq!(disk("a,,b.img").path, PathBuf::from("a,b.img"));
        let d = disk("a,,b.img,readonly=on");
        assert_eq!(d.path, PathBuf::from("a,b.img"));
        assert!(d.read_only);
        // Three commas: a literal one ending the path, then the separator.
        let d = disk("a,,,readonly=on");
        assert_eq!(d.path, PathBuf::from("a,"));
        assert!(d.read_only);
        assert_eq!(disk(",,a").path, PathBuf::from(",a"));
        assert_eq!(disk("a,serial=x,,y").serial.as_deref(), Some("x,y"));
    }

    #[test]
    fn rejects_bad_disk_options() {
        let e = disk_err("");
        assert!(e.contains("path is empty"), "{e}");
        let e = disk_err(",readonly=on");
        assert!(e.contains("path is empty"), "{e}");
        let e = disk_err("a.img,cache=none");
        assert!(e.contains("unknown disk option \"cache\""), "{e}");
        let e = disk_err("a.img,ro");
        assert!(e.contains("unknown disk option \"ro\""), "{e}");
        let e = disk_err("a.img,readonly=maybe");
        assert!(e.contains("invalid readonly value \"maybe\""), "{e}");
        let e = disk_err("a.img,readonly=");
        assert!(e.contains("invalid readonly value \"\""), "{e}");
        let e = disk_err("a.img,readonly");
        assert!(e.contains("needs a value"), "{e}");
        let e = disk_err("a.img,serial");
        assert!(e.contains("needs a value"), "{e}");
        let e = disk_err("a.img,readonly=on,readonly=off");
        assert!(e.contains("\"readonly\" is given twice"), "{e}");
        let e = disk_err("a.img,serial=a,serial=b");
        assert!(e.contains("\"serial\" is given twice"), "{e}");
        let e = disk_err("a.img,serial=ABCDEFGHIJ0123456789X");
        assert!(e.contains("too long: 21 bytes, at most 20"), "{e}");
        let e = disk_err("a.img,serial=");
        assert!(e.contains("serial is empty"), "{e}");
        let e = disk_err("a.img,serial=tab\there");
        assert!(e.contains("printable ASCII"), "{e}");
        let e = disk_err("a.img,serial=caf\u{e9}");
        assert!(e.contains("printable ASCII"), "{e}");
        let e = disk_err("a.img,");
        assert!(e.contains("empty disk option"), "{e}");
        let e = disk_err("a.img,,,");
        assert!(e.contains("empty disk option"), "{e}");
    }

    #[test]
    fn disks_display_as_they_parse() {
        for d in [
            DiskConfig::new("/a.img"),
            DiskConfig {
                path: "/odd,name,,.img".into(),
                read_only: true,
                serial: Some("s,n=1".into()),
            },
            DiskConfig {
                path: "b.img".into(),
                read_only: false,
                serial: Some("X".into()),
            },
        ] {
            let text = d.to_string();
            assert_eq!(disk(&text), d, "{text}");
        }
        assert_eq!(
            disk("a,,b,serial=S,readonly=yes").to_string(),
            "a,,b,readonly=on,serial=S"
        );
    }

    fn with_disks(disks: Vec<DiskConfig>) -> VmConfig {
        let mut cfg = VmConfig::from_toml(KERNEL_ONLY).unwrap();
        cfg.disks = disks;
        cfg
    }

    #[test]
    fn validates_disk_count_and_duplicates() {
        let sixteen: Vec<_> = (0..16)
            .map(|i| DiskConfig::new(format!("/nonexistent/d{i}.img")))
            .collect();
        assert_eq!(with_disks(sixteen.clone()).validate(), Ok(()));
        let mut seventeen = sixteen;
        seventeen.push(DiskConfig::new("/nonexistent/d16.img"));
        let e = with_disks(seventeen).validate().unwrap_err();
        assert!(e.contains("17 disks") && e.contains("at most 16"), "{e}");

        let twice = vec![
            DiskConfig::new("/nonexistent/a.img"),
            DiskConfig {
                read_only: true,
                ..DiskConfig::new("/nonexistent/a.img")
            },
        ];
        let e = with_disks(twice).validate().unwrap_err();
        assert!(e.contains("/nonexistent/a.img is given twice"), "{e}");
        // Lexically the same, even where the file does not exist.
        let dotted = vec![
            DiskConfig::new("/nonexistent/a.img"),
            DiskConfig::new("/nonexistent/./a.img"),
        ];
        let e = with_disks(dotted).validate().unwrap_err();
        assert!(e.contains("are the same file"), "{e}");
    }

    #[test]
    fn validates_same_file_through_a_symlink() {
        let dir = std::env::temp_dir().join(format!("cove-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("disk.img");
        let link = dir.join("link.img");
        std::fs::write(&file, [0u8; 512]).unwrap();
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let via_dotdot = dir
            .join("..")
            .join(dir.file_name().unwrap())
            .join("disk.img");
        let result_link =
            with_disks(vec![DiskConfig::new(&file), DiskConfig::new(&link)]).validate();
        let result_dotdot =
            with_disks(vec![DiskConfig::new(&file), DiskConfig::new(&via_dotdot)]).validate();
        let result_distinct = with_disks(vec![
            DiskConfig::new(&file),
            DiskConfig::new(dir.join("other.img")),
        ])
        .validate();
        std::fs::remove_dir_all(&dir).unwrap();
        let e = result_link.unwrap_err();
        assert!(e.contains("are the same file"), "{e}");
        let e = result_dotdot.unwrap_err();
        assert!(e.contains("are the same file"), "{e}");
        assert_eq!(result_distinct, Ok(()));
    }

    #[test]
    fn validates_disks_from_toml_as_the_cli_would() {
        let long = with_disks(vec![DiskConfig {
            serial: Some("x".repeat(21)),
            ..DiskConfig::new("/a.img")
        }]);
        let e = long.validate().unwrap_err();
        assert!(e.starts_with("/a.img: ") && e.contains("too long"), "{e}");
        let empty = with_disks(vec![DiskConfig::new("")]);
        assert!(empty.validate().unwrap_err().contains("path is empty"));
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
