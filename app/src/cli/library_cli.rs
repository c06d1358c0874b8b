//! `cove list`, `cove create`, `cove start`, `cove edit` and `cove delete`: the VM library
//! from the command line, the same library the GUI shows; and `cove detect-os`.

use super::run::{run_config, RunError, RunOptions};
use super::{CreateArgs, DeleteArgs, EditArgs, StartArgs};
use crate::library::run_lock::{self, Activity};
use crate::library::{self, Entry, Library, LibraryError, VmEntry};
use crate::limits::HostLimits;
use emu::config::{BootSource, DisplayConfig, VmConfig};
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

fn open(data_dir: Option<&Path>) -> Result<Library, ExitCode> {
    Library::open(data_dir).map_err(|e| fail(&e))
}

/// The library and its VM called `name`, or the exit code of the error already reported.
fn open_vm(data_dir: Option<&Path>, name: &str) -> Result<(Library, VmEntry), ExitCode> {
    let library = open(data_dir)?;
    let vm = library.find(name).map_err(|e| fail(&e))?;
    Ok((library, vm))
}

fn fail(e: &LibraryError) -> ExitCode {
    eprintln!("cove: error: {e}");
    match e {
        LibraryError::Io { .. } | LibraryError::NoDataDir => ExitCode::FAILURE,
        _ => ExitCode::from(2),
    }
}

pub fn list(data_dir: Option<&Path>) -> ExitCode {
    let library = match open(data_dir) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let entries = match library.entries() {
        Ok(e) => e,
        Err(e) => return fail(&e),
    };
    if entries.is_empty() {
        println!("no VMs in {}", library.root().display());
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<24} {:<10} {:>4} {:>8} {:<8} FOLDER",
        "NAME", "STATE", "CPUS", "MEMORY", "DISPLAY"
    );
    for entry in entries {
        match entry {
            Entry::Vm(vm) => {
                let state = match run_lock::holder(&vm.dir).map(|h| h.activity) {
                    None => "stopped",
                    Some(Activity::Running) => "running",
                    Some(Activity::CopyingDisk) => "copying",
                    Some(Activity::Deleting) => "deleting",
                };
                println!(
                    "{:<24} {:<10} {:>4} {:>8} {:<8} {}",
                    vm.config.name,
                    state,
                    vm.config.cpus,
                    vm.config.memory.to_string(),
                    if vm.config.display.enabled {
                        "yes"
                    } else {
                        "no"
                    },
                    vm.dir.display()
                )
            }
            Entry::Broken { dir, error } => println!(
                "{:<24} {:<10} ({}): {}",
                "?",
                "BROKEN",
                dir.display(),
                error.split_whitespace().collect::<Vec<_>>().join(" ")
            ),
        }
    }
    ExitCode::SUCCESS
}

/// Refuses CPUs and memory this host cannot give, with the reason (exit 2).
fn check_limits(cpus: u8, memory: u64) -> Result<(), ExitCode> {
    let limits = HostLimits::detect();
    match limits.vm_error(u32::from(cpus), memory) {
        Some(e) => {
            eprintln!("cove: error: {e}");
            Err(ExitCode::from(2))
        }
        None => {
            if let Some(w) = limits.memory_warning(memory) {
                eprintln!("cove: warning: {w}");
            }
            Ok(())
        }
    }
}

pub fn create(data_dir: Option<&Path>, args: &CreateArgs) -> ExitCode {
    let library = match open(data_dir) {
        Ok(l) => l,
        Err(code) => return code,
    };
    if !args.boot.kernel.is_file() {
        eprintln!(
            "cove: error: kernel {} is not a readable file",
            args.boot.kernel.display()
        );
        return ExitCode::from(2);
    }
    if let Some(initrd) = args.boot.initrd.as_ref().filter(|i| !i.is_file()) {
        eprintln!(
            "cove: error: initrd {} is not a readable file",
            initrd.display()
        );
        return ExitCode::from(2);
    }
    if let Err(code) = check_limits(args.cpus, args.memory.bytes()) {
        return code;
    }
    let mut config = match VmConfig::from_toml("[boot]\nkind = \"kernel\"\nkernel = \"/\"\n") {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cove: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    config.name = args.name.clone();
    config.cpus = args.cpus;
    config.memory = args.memory;
    config.boot = BootSource::Kernel {
        kernel: absolute(&args.boot.kernel),
        initrd: args.boot.initrd.as_deref().map(absolute),
        cmdline: args.boot.append.clone(),
    };
    config.display = DisplayConfig {
        enabled: args.display,
        ..Default::default()
    };
    match library.create(config, args.disk_size.map(|s| s.bytes())) {
        Ok(vm) => {
            println!("created {} in {}", vm.config.name, vm.dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn absolute(path: &Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

pub fn start(data_dir: Option<&Path>, args: &StartArgs) -> Result<ExitCode, RunError> {
    let (library, vm) = match open_vm(data_dir, &args.name) {
        Ok(found) => found,
        Err(code) => return Ok(code),
    };
    let lock = match library.lock(&vm, "cove start", Activity::Running) {
        Ok(lock) => lock,
        Err(e) => return Ok(fail(&e)),
    };
    // Read again under the lock: an edit may have landed since.
    let vm = match library::load(&vm.dir) {
        Entry::Vm(vm) => vm,
        Entry::Broken { error, .. } => {
            eprintln!("cove: error: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    if let Err(code) = check_limits(vm.config.cpus, vm.config.memory.bytes()) {
        return Ok(code);
    }
    run_config(
        vm.config,
        RunOptions {
            display: args.display,
            qmp: args.qmp.clone(),
            stats: false,
            run_lock: Some(lock),
        },
    )
}

pub fn edit(data_dir: Option<&Path>, args: &EditArgs) -> ExitCode {
    let (library, vm) = match open_vm(data_dir, &args.name) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let only_rename = args.cpus.is_none()
        && args.memory.is_none()
        && args.append.is_none()
        && args.kernel.is_none()
        && args.initrd.is_none();
    // A rename is safe while the VM runs; anything else would not reach the running VM and
    // would be lost or half-applied, so it waits until the VM stops.
    let _lock = if only_rename {
        None
    } else {
        match library.lock(&vm, "cove edit", Activity::Running) {
            Ok(lock) => Some(lock),
            Err(e) => {
                eprintln!("cove: error: {e}; stop it before changing anything but its name");
                return ExitCode::from(2);
            }
        }
    };
    if let Some(kernel) = args.kernel.as_ref().filter(|k| !k.is_file()) {
        eprintln!(
            "cove: error: kernel {} is not a readable file",
            kernel.display()
        );
        return ExitCode::from(2);
    }
    if let Some(initrd) = args
        .initrd
        .as_ref()
        .filter(|i| !i.as_os_str().is_empty() && !i.is_file())
    {
        eprintln!(
            "cove: error: initrd {} is not a readable file",
            initrd.display()
        );
        return ExitCode::from(2);
    }
    let cpus = args.cpus.unwrap_or(vm.config.cpus);
    let memory = args.memory.map_or(vm.config.memory.bytes(), |m| m.bytes());
    if (args.cpus.is_some() || args.memory.is_some()) && check_limits(cpus, memory).is_err() {
        return ExitCode::from(2);
    }
    if args.append.is_some()
        && args.kernel.is_none()
        && matches!(vm.config.boot, BootSource::Firmware { .. })
    {
        eprintln!(
            "cove: error: {} boots through firmware, so it has no kernel command line; give it \
             a kernel with --kernel PATH (and --initrd, --append) to boot it directly",
            vm.config.name
        );
        return ExitCode::from(2);
    }
    let result = library.modify(&vm.dir, |config| {
        if let Some(name) = &args.rename {
            config.name = name.clone();
        }
        config.cpus = cpus;
        config.memory = emu::config::MemorySize::from_bytes(memory);
        if let Some(kernel) = &args.kernel {
            let cmdline = match &config.boot {
                BootSource::Kernel { cmdline, .. } => cmdline.clone(),
                BootSource::Firmware { .. } => "console=ttyS0".into(),
            };
            config.boot = BootSource::Kernel {
                kernel: absolute(kernel),
                initrd: None,
                cmdline,
            };
        }
        if let BootSource::Kernel {
            initrd, cmdline, ..
        } = &mut config.boot
        {
            if let Some(new) = &args.initrd {
                *initrd = (!new.as_os_str().is_empty()).then(|| absolute(new));
            }
            if let Some(append) = &args.append {
                *cmdline = append.clone();
            }
        }
    });
    match result {
        Ok(()) => {
            println!(
                "updated {}",
                args.rename.as_deref().unwrap_or(&vm.config.name)
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

pub fn delete(data_dir: Option<&Path>, args: &DeleteArgs) -> ExitCode {
    let (library, vm) = match open_vm(data_dir, &args.name) {
        Ok(found) => found,
        Err(code) => return code,
    };
    if !args.yes {
        eprint!(
            "delete {} and everything in {}? [y/N] ",
            vm.config.name,
            vm.dir.display()
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        if std::io::stdin().lock().read_line(&mut answer).is_err()
            || !answer.trim().eq_ignore_ascii_case("y")
        {
            eprintln!("not deleted");
            return ExitCode::FAILURE;
        }
    }
    match library.delete(&args.name, "cove delete") {
        Ok(trashed) => {
            if let Err(e) = library::trash::purge(&trashed.path) {
                eprintln!(
                    "cove: warning: {} is deleted from the library, but removing {} failed: {}",
                    args.name,
                    trashed.path.display(),
                    crate::limits::describe_io(&e)
                );
            }
            println!("deleted {} ({})", args.name, vm.dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// `cove detect-os PATH`: the osinfo short ID and name (tab-separated), or `unknown` and the
/// volume ID; exit 2 when the file is no readable ISO.
pub fn detect_os(path: &Path) -> ExitCode {
    let ids = match crate::osinfo::read_iso(path) {
        Ok(ids) => ids,
        Err(e) => {
            eprintln!(
                "cove: error: {} is not a readable ISO image: {}",
                path.display(),
                crate::limits::describe_io(&e)
            );
            return ExitCode::from(2);
        }
    };
    match crate::osinfo::OsDb::system().identify(&ids) {
        Some(os) => println!("{}\t{}", os.short_id, os.name),
        None => println!("unknown\t{}", ids.volume),
    }
    ExitCode::SUCCESS
}
