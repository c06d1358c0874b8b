//! Facts about the host that shape how a VM is built, and the host profile.
//!
//! On a nested KVM host without hardware virtualization (the `kvm-pvm` module), all guest kernel
//! code runs through KVM's instruction emulator. What gets a stock Linux guest through that is
//! recorded in `docs/nested-kvm.md`; [`HostProfile::Pvm`] applies it: guest command-line options
//! and a userspace PIT with a slowed tick.

use crate::config::HostProfileChoice;
use std::path::Path;

/// The host quirks a VM is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostProfile {
    /// A host with hardware virtualization: nothing to work around.
    Standard,
    /// Nested KVM on shadow paging (`kvm-pvm`).
    Pvm,
}

/// Guest kernel options the PVM profile adds, each only if the user's command line does not
/// already set that option. Why each is there is in `docs/nested-kvm.md`.
pub const PVM_CMDLINE_OPTIONS: &[&str] = &[
    "noxsave",
    "nokaslr",
    "init_on_alloc=0",
    "tsc=reliable",
    "no_timer_check",
    "8250.nr_uarts=1",
    "cryptomgr.notests",
    "audit=0",
    "nowatchdog",
    "nosoftlockup",
    "noapictimer",
    "noirqdebug",
    "clearcpuid=smap,popcnt,fsgsbase,pku,invpcid,cx16,ssse3,sse4_1,sse4_2,avx,avx2,pclmulqdq,aes,sha_ni,bmi1,bmi2,fma,f16c,movbe,vaes",
];

/// Added for single-vCPU guests only. Seen on this host with Linux 6.12:
/// - With one CPU, `noapictimer` turns the local APIC timer off, and a guest that sees the TSC
///   deadline timer also stops the PIT (apic_needs_pit() says none is needed): no timer
///   interrupt is left and the guest hangs in its first sleep. Hiding the deadline timer keeps
///   the (slowed, userspace) PIT as the tick.
/// - With several CPUs, Linux keeps the local APIC's TSC-deadline timer despite `noapictimer`,
///   and boots on it; hiding the deadline timer there leaves the APs on PIT broadcast, and AP
///   bring-up hangs. So SMP guests do not get this option.
pub const PVM_UP_CMDLINE_OPTION: &str = "lapic=notscdeadline";

/// How much slower than programmed the userspace PIT ticks under the PVM profile.
pub const PVM_PIT_SLOWDOWN: u32 = 10;

impl HostProfile {
    /// Resolves the user's choice against the host.
    pub fn resolve(choice: HostProfileChoice) -> Self {
        match choice {
            HostProfileChoice::None => Self::Standard,
            HostProfileChoice::Pvm => Self::Pvm,
            HostProfileChoice::Auto if is_pvm_host() => Self::Pvm,
            HostProfileChoice::Auto => Self::Standard,
        }
    }

    /// True when the guest needs Cove's userspace i8254 rather than KVM's in-kernel PIT.
    pub fn userspace_pit(self) -> bool {
        self == Self::Pvm
    }

    /// The slowdown factor for the PIT tick.
    pub fn pit_slowdown(self) -> u32 {
        match self {
            Self::Standard => 1,
            Self::Pvm => PVM_PIT_SLOWDOWN,
        }
    }

    /// Adds this profile's options for a guest of `cpus` vCPUs to `cmdline`, skipping any whose
    /// key the user already set. Returns the new command line and the options that were added.
    pub fn apply_to_cmdline(self, cmdline: &str, cpus: u8) -> (String, Vec<&'static str>) {
        if self == Self::Standard {
            return (cmdline.to_string(), Vec::new());
        }
        // Options after a bare `--` go to init, not the kernel: insert before it.
        let (kernel_part, init_part) = match cmdline.split_whitespace().position(|w| w == "--") {
            Some(_) => {
                let idx = cmdline.find(" -- ").map(|i| i + 1).unwrap_or(0);
                cmdline.split_at(idx)
            }
            None => (cmdline, ""),
        };
        let user_keys: Vec<&str> = kernel_part.split_whitespace().map(option_key).collect();
        let up_only = (cpus == 1).then_some(PVM_UP_CMDLINE_OPTION);
        let added: Vec<&'static str> = PVM_CMDLINE_OPTIONS
            .iter()
            .copied()
            .chain(up_only)
            .filter(|opt| !user_keys.contains(&option_key(opt)))
            .collect();
        let mut out = kernel_part.trim_end().to_string();
        for opt in &added {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(opt);
        }
        if !init_part.is_empty() {
            out.push(' ');
            out.push_str(init_part.trim());
        }
        (out, added)
    }
}

/// `key=value` → `key`; `flag` → `flag`.
fn option_key(option: &str) -> &str {
    option.split_once('=').map_or(option, |(k, _)| k)
}

/// True when `/dev/kvm` comes from the `kvm-pvm` module.
pub fn is_pvm_host() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
}

/// Logical CPUs the host has online.
pub fn host_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Total host RAM in bytes, from /proc/meminfo.
pub fn host_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_profile_leaves_cmdline_alone() {
        let (out, added) = HostProfile::Standard.apply_to_cmdline("console=ttyS0", 1);
        assert_eq!(out, "console=ttyS0");
        assert!(added.is_empty());
    }

    #[test]
    fn pvm_profile_adds_only_missing_options() {
        let (out, added) =
            HostProfile::Pvm.apply_to_cmdline("console=ttyS0 tsc=unstable noxsave", 2);
        assert!(
            out.starts_with("console=ttyS0 tsc=unstable noxsave "),
            "{out}"
        );
        assert!(!added.contains(&"noxsave"));
        assert!(!added.iter().any(|o| o.starts_with("tsc=")));
        assert!(added.contains(&"noapictimer"));
        assert_eq!(out.matches("tsc=").count(), 1);
        assert_eq!(added.len(), PVM_CMDLINE_OPTIONS.len() - 2);
        assert!(
            !out.contains(PVM_UP_CMDLINE_OPTION),
            "SMP guests keep the deadline timer"
        );
    }

    #[test]
    fn pvm_profile_keeps_init_arguments_last() {
        let (out, _) = HostProfile::Pvm.apply_to_cmdline("console=ttyS0 -- single", 1);
        assert!(out.ends_with(" -- single"), "{out}");
        assert!(out.contains("noapictimer"));
        assert!(out.contains(PVM_UP_CMDLINE_OPTION), "single vCPU: {out}");
    }

    /// Linux reads at most 127 characters of `clearcpuid=`; the list stays within that
    /// (`vpclmulqdq`, listed in the notes, never fitted and is left out).
    const CLEARCPUID_MAX: usize = 127;

    #[test]
    fn clearcpuid_fits_what_linux_reads() {
        let value = PVM_CMDLINE_OPTIONS
            .iter()
            .find_map(|o| o.strip_prefix("clearcpuid="))
            .unwrap();
        assert!(value.len() <= CLEARCPUID_MAX, "{} characters", value.len());
    }

    #[test]
    fn reads_host_facts() {
        assert!(host_cpus() >= 1);
        assert!(host_memory_bytes().unwrap_or(0) > 0);
    }
}
