//! `cove list`, `cove create`, `cove start` and `cove delete`: the VM library from the command
//! line, the same library the GUI shows.

use crate::cli::{CreateArgs, DeleteArgs, EditArgs, StartArgs};
use crate::library::{Entry, Library, LibraryError};
use crate::run::{run_config, RunError, RunOptions};
use emu::config::{BootSource, DisplayConfig, VmConfig};
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

fn open(data_dir: Option<&Path>) -> Result<Library, ExitCode> {
    Library::open(data_dir).map_err(|e| fail(&e))
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
        "{:<24} {:>4} {:>8} {:<8} FOLDER",
        "NAME", "CPUS", "MEMORY", "DISPLAY"
    );
    for entry in entries {
        match entry {
            Entry::Vm(vm) => println!(
                "{:<24} {:>4} {:>8} {:<8} {}",
                vm.config.name,
                vm.config.cpus,
                vm.config.memory.to_string(),
                if vm.config.display.enabled {
                    "yes"
                } else {
                    "no"
                },
                vm.dir.display()
            ),
            Entry::Broken { dir, error } => println!(
                "{:<24} BROKEN ({}): {}",
                "?",
                dir.display(),
                error.split_whitespace().collect::<Vec<_>>().join(" ")
            ),
        }
    }
    ExitCode::SUCCESS
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
    let library = match open(data_dir) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let vm = match library.find(&args.name) {
        Ok(vm) => vm,
        Err(e) => return Ok(fail(&e)),
    };
    run_config(
        vm.config,
        RunOptions {
            display: args.display,
            qmp: args.qmp.clone(),
            stats: false,
        },
    )
}

pub fn edit(data_dir: Option<&Path>, args: &EditArgs) -> ExitCode {
    let library = match open(data_dir) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let mut vm = match library.find(&args.name) {
        Ok(vm) => vm,
        Err(e) => return fail(&e),
    };
    if let Some(name) = &args.rename {
        vm.config.name = name.clone();
    }
    if let Some(cpus) = args.cpus {
        vm.config.cpus = cpus;
    }
    if let Some(memory) = args.memory {
        vm.config.memory = memory;
    }
    if let Some(append) = &args.append {
        match &mut vm.config.boot {
            BootSource::Kernel { cmdline, .. } => *cmdline = append.clone(),
            BootSource::Firmware { .. } => {
                eprintln!(
                    "cove: error: {} boots through firmware; it has no kernel command line",
                    vm.config.name
                );
                return ExitCode::from(2);
            }
        }
    }
    match library.update(&vm) {
        Ok(()) => {
            println!("updated {}", vm.config.name);
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

pub fn delete(data_dir: Option<&Path>, args: &DeleteArgs) -> ExitCode {
    let library = match open(data_dir) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let vm = match library.find(&args.name) {
        Ok(vm) => vm,
        Err(e) => return fail(&e),
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
    match library.delete(&args.name) {
        Ok(dir) => {
            println!("deleted {} ({})", args.name, dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}
