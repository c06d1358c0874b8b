//! `cove`: the Cove desktop virtualization app. With a subcommand it is a command-line tool;
//! `cove run` boots a VM headless with its serial console on the terminal.

mod cli;
mod console_escape;
mod gui;
mod library;
mod library_cli;
mod limits;
mod logging;
mod osinfo;
mod qmp_client;
mod run;
mod settings;
mod terminal;
#[cfg(test)]
mod test_support;
mod vm_controls;
mod window;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    logging::init(args.verbose);
    let Some(command) = args.command else {
        return gui::run(args.data_dir.as_deref(), args.open.as_deref());
    };
    let result = match command {
        cli::Command::Run(run_args) => run::run(run_args),
        cli::Command::Qmp(qmp_args) => return qmp_client::run(&qmp_args),
        cli::Command::List => return library_cli::list(args.data_dir.as_deref()),
        cli::Command::Create(create) => {
            return library_cli::create(args.data_dir.as_deref(), &create)
        }
        cli::Command::Start(start) => library_cli::start(args.data_dir.as_deref(), &start),
        cli::Command::Edit(edit) => return library_cli::edit(args.data_dir.as_deref(), &edit),
        cli::Command::DetectOs(args) => return library_cli::detect_os(&args.path),
        cli::Command::Delete(delete) => {
            return library_cli::delete(args.data_dir.as_deref(), &delete)
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
