//! `cove` as a command-line tool: the syntax ([`args`]) and each subcommand's work, from
//! `cove run` (one VM on this terminal) to the library commands and the QMP client.
//! [`dispatch`] hands a parsed subcommand to its module and turns the outcome into an exit code.

mod args;
mod console_escape;
mod library_cli;
pub(crate) mod qmp_client;
mod run;
mod terminal;

pub use args::*;

use std::path::Path;
use std::process::ExitCode;

/// Carries out `command`, on the library in `data_dir` where it uses one.
pub fn dispatch(command: Command, data_dir: Option<&Path>) -> ExitCode {
    let result = match command {
        Command::Run(run_args) => run::run(run_args),
        Command::Qmp(qmp_args) => return qmp_client::run(&qmp_args),
        Command::List => return library_cli::list(data_dir),
        Command::Create(create) => return library_cli::create(data_dir, &create),
        Command::Start(start) => library_cli::start(data_dir, &start),
        Command::Edit(edit) => return library_cli::edit(data_dir, &edit),
        Command::DetectOs(args) => return library_cli::detect_os(&args.path),
        Command::Delete(delete) => return library_cli::delete(data_dir, &delete),
        Command::VmHost(host) => {
            return ExitCode::from(crate::vm_host::run(
                &host.dir,
                &crate::vm_host::Options {
                    sandbox: host.sandbox == SandboxMode::On,
                    debug_commands: host.debug_commands,
                    orphan: crate::vm_host::OrphanPolicy {
                        grace: std::time::Duration::from_secs(host.orphan_grace),
                        shutdown: std::time::Duration::from_secs(host.orphan_shutdown),
                    },
                },
            ))
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cove: error: {e}");
            e.exit_code()
        }
    }
}
