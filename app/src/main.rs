//! `cove`: the Cove desktop virtualization app. With a subcommand it is a command-line tool;
//! `cove run` boots a VM headless with its serial console on the terminal.

mod cli;
mod console_escape;
mod logging;
mod qmp_client;
mod run;
mod terminal;
mod window;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    logging::init(args.verbose);
    let result = match args.command {
        cli::Command::Run(run_args) => run::run(run_args),
        cli::Command::Qmp(qmp_args) => return qmp_client::run(&qmp_args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cove: error: {e}");
            e.exit_code()
        }
    }
}
