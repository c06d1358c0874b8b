//! The command-line syntax of `cove` (clap): its global options, subcommands and their
//! arguments.

use clap::{Args, Parser, Subcommand};
use emu::config::{DiskConfig, HostProfileChoice, MemorySize};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "cove",
    version,
    about = "Cove: virtual machines on Linux KVM",
    after_help = "Run `cove` with no subcommand to open the desktop app on the VM library."
)]
pub struct Cli {
    /// Where the VM library lives (default: the user's data directory).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// With the desktop app: start this library VM as soon as the app opens.
    #[arg(long, value_name = "NAME")]
    pub open: Option<String>,
    /// Without a subcommand, cove opens the desktop app on the VM library.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Boot a VM headless, with its serial console on this terminal.
    ///
    /// Console escapes: Ctrl-A X quits, Ctrl-A B sends a break (magic SysRq on Linux),
    /// Ctrl-A Ctrl-A sends Ctrl-A, Ctrl-A H shows help.
    Run(RunArgs),
    /// List the VMs in the library.
    List,
    /// Add a VM to the library.
    Create(CreateArgs),
    /// Start a VM from the library.
    Start(StartArgs),
    /// Change the settings of a VM in the library (while it is not running).
    Edit(EditArgs),
    /// Delete a VM from the library, with its folder and disks.
    Delete(DeleteArgs),
    /// Say which OS an installer ISO holds (osinfo-db): its short ID and name, or `unknown`
    /// and the ISO's volume ID.
    DetectOs(DetectOsArgs),
    /// Send one QMP command to a running VM's control socket and print the reply.
    ///
    /// Example: `cove qmp /tmp/vm.qmp query-status`, or
    /// `cove qmp /tmp/vm.qmp query-block '{}'`. Events that arrive meanwhile are not printed.
    Qmp(QmpArgs),
    /// Run one library VM in a process of its own, for the app (not for users).
    #[command(hide = true)]
    VmHost(VmHostArgs),
}

/// `cove vm-host`: what the app hands the VM process it starts.
#[derive(Args, Debug)]
pub struct VmHostArgs {
    /// The VM's folder in the library.
    pub dir: PathBuf,
    /// on: confine the process with seccomp filters per thread kind; off: for debugging only
    /// (logged).
    #[arg(long, value_enum, default_value = "on")]
    pub sandbox: SandboxMode,
    /// Seconds without an app before the guest's power button is pressed.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub orphan_grace: u64,
    /// Seconds the guest then has to shut down before it is turned off.
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    pub orphan_shutdown: u64,
    /// Allow the debug actions tests use (drawing a test frame, a forbidden call, an abort).
    #[arg(long)]
    pub debug_commands: bool,
}

/// Whether the VM process is sandboxed.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxMode {
    On,
    Off,
}

/// Direct kernel boot, shared by `cove run` and `cove create`.
#[derive(Args, Debug)]
pub struct KernelArgs {
    /// Kernel to boot: a bzImage or an uncompressed ELF vmlinux.
    #[arg(long, value_name = "PATH")]
    pub kernel: PathBuf,
    /// Initial ramdisk.
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, value_name = "ARGS", default_value = "console=ttyS0")]
    pub append: String,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The VM's name (unique in the library).
    #[arg(long)]
    pub name: String,
    #[command(flatten)]
    pub boot: KernelArgs,
    /// Number of vCPUs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cpus: u8,
    /// Guest RAM, e.g. 512M or 2G.
    #[arg(long, value_name = "SIZE", default_value = "512M")]
    pub memory: MemorySize,
    /// Size of a new, empty disk for the VM (e.g. 8G); none if not given.
    #[arg(long, value_name = "SIZE")]
    pub disk_size: Option<MemorySize>,
    /// Give the VM a display (virtio GPU, keyboard, tablet).
    #[arg(long)]
    pub display: bool,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// The VM's name.
    pub name: String,
    /// none (serial console on this terminal) or window.
    #[arg(long, value_enum, default_value = "none")]
    pub display: DisplayMode,
    /// Serve QMP on a Unix socket.
    #[arg(long, value_name = "unix:PATH[,server=on][,wait=off]")]
    pub qmp: Option<QmpSpec>,
}

#[derive(Args, Debug)]
pub struct EditArgs {
    /// The VM's name.
    pub name: String,
    /// A new name.
    #[arg(long)]
    pub rename: Option<String>,
    #[arg(long, value_name = "N")]
    pub cpus: Option<u8>,
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<MemorySize>,
    /// Boot this kernel directly (bzImage or ELF vmlinux); the VM then boots without firmware.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// An initial ramdisk for the kernel ("" removes it).
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// A new kernel command line.
    #[arg(long, value_name = "ARGS")]
    pub append: Option<String>,
}

#[derive(Args, Debug)]
pub struct DetectOsArgs {
    /// The ISO image.
    pub path: PathBuf,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// The VM's name.
    pub name: String,
    /// Delete without asking.
    #[arg(long, short)]
    pub yes: bool,
}

#[derive(Args, Debug)]
pub struct QmpArgs {
    /// The VM's QMP socket (the PATH of `cove run --qmp unix:PATH`).
    pub socket: PathBuf,
    /// The command, e.g. query-status, stop, cont, system_powerdown, quit.
    pub command: String,
    /// The command's arguments as a JSON object.
    pub arguments: Option<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub boot: KernelArgs,
    /// Guest RAM, e.g. 512M or 2G.
    #[arg(long, value_name = "SIZE", default_value = "512M")]
    pub memory: MemorySize,
    /// Number of vCPUs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cpus: u8,
    /// A disk image for the guest, as a virtio-blk device; repeat for more (at most 16).
    ///
    /// The guest sees the disks in this order: the first is /dev/vda, the second /dev/vdb.
    /// Options, in any order: readonly=on|off (also true/false, yes/no, 1/0) and serial=ID
    /// (1 to 20 printable ASCII characters). A comma that is part of the path is written as
    /// two commas: --disk 'a,,b.img,readonly=on' is the file a,b.img.
    #[arg(long = "disk", value_name = "PATH[,readonly=on][,serial=ID]")]
    pub disks: Vec<DiskConfig>,
    /// No virtio-rng device (by default the guest gets one, fed from the host's entropy).
    #[arg(long)]
    pub no_rng: bool,
    /// Exit when the guest reboots instead of restarting it.
    #[arg(long)]
    pub no_reboot: bool,
    /// Host quirks to work around: auto (detect), none, or pvm (nested KVM without hardware
    /// virtualization).
    #[arg(long, value_name = "PROFILE", default_value = "auto")]
    pub host_profile: HostProfileChoice,
    /// Name of the VM, shown in logs.
    #[arg(long, default_value = "cove-vm")]
    pub name: String,
    /// Print VM statistics (boots, emulated and recovered instructions) on exit.
    #[arg(long)]
    pub stats: bool,
    /// Where the guest's display goes: none (headless; the serial console is on this
    /// terminal) or window (a window with the guest's screen, keyboard and pointer).
    #[arg(long, value_enum, default_value = "none")]
    pub display: DisplayMode,
    /// Give a headless VM a virtio GPU, keyboard and tablet anyway (for QMP screendump).
    #[arg(long)]
    pub gpu: bool,
    /// Serve QMP, QEMU's control protocol, on a Unix socket (mode 0600). `wait=on` holds the
    /// VM until a client connects.
    #[arg(long, value_name = "unix:PATH[,server=on][,wait=off]")]
    pub qmp: Option<QmpSpec>,
}

/// Where the guest's display goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DisplayMode {
    None,
    Window,
}

/// Where and how to serve QMP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QmpSpec {
    pub path: PathBuf,
    /// Start the VM only once a client connected.
    pub wait: bool,
}

impl std::str::FromStr for QmpSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(',');
        let address = parts.next().unwrap_or_default();
        let Some(path) = address.strip_prefix("unix:").filter(|p| !p.is_empty()) else {
            return Err(format!(
                "QMP address {address:?} is not supported: use unix:PATH"
            ));
        };
        let mut spec = QmpSpec {
            path: PathBuf::from(path),
            wait: false,
        };
        for option in parts {
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| format!("QMP option {option:?} needs a value (key=on|off)"))?;
            let on = match value {
                "on" | "yes" | "true" => true,
                "off" | "no" | "false" => false,
                other => return Err(format!("QMP option {key}: {other:?} is not on or off")),
            };
            match key {
                "server" if on => {}
                "server" => {
                    return Err("cove serves QMP itself: server=off is not supported".into())
                }
                "wait" => spec.wait = on,
                other => {
                    return Err(format!(
                        "unknown QMP option {other:?} (expected server or wait)"
                    ))
                }
            }
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod qmp_spec_tests {
    use super::QmpSpec;

    #[test]
    fn parses_qemu_style_socket_specs() {
        assert_eq!(
            "unix:/tmp/q.sock".parse::<QmpSpec>(),
            Ok(QmpSpec {
                path: "/tmp/q.sock".into(),
                wait: false
            })
        );
        assert_eq!(
            "unix:/tmp/q.sock,server=on,wait=on"
                .parse::<QmpSpec>()
                .map(|s| s.wait),
            Ok(true)
        );
        for bad in [
            "tcp:localhost:4444",
            "unix:",
            "unix:/x,server=off",
            "unix:/x,wait",
            "unix:/x,wait=maybe",
            "unix:/x,nowait=on",
        ] {
            assert!(bad.parse::<QmpSpec>().is_err(), "{bad}");
        }
    }
}
