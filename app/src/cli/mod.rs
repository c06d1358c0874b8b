//! Command-line syntax of `cove`.

use clap::{Args, Parser, Subcommand};
use emu::config::{DiskConfig, HostProfileChoice, MemorySize};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "cove", version, about = "Cove: virtual machines on Linux KVM")]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Boot a VM headless, with its serial console on this terminal.
    ///
    /// Console escapes: Ctrl-A X quits, Ctrl-A B sends a break (magic SysRq on Linux),
    /// Ctrl-A Ctrl-A sends Ctrl-A, Ctrl-A H shows help.
    Run(RunArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Kernel to boot: a bzImage or an uncompressed ELF vmlinux.
    #[arg(long, value_name = "PATH")]
    pub kernel: PathBuf,
    /// Initial ramdisk.
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, value_name = "ARGS", default_value = "console=ttyS0")]
    pub append: String,
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
}
