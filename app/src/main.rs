//! `cove`: the Cove desktop virtualization app. With a subcommand it is a command-line tool;
//! `cove run` boots a VM headless with its serial console on the terminal.

mod cli;
mod gui;
mod library;
mod limits;
mod logging;
mod osinfo;
mod settings;
#[cfg(test)]
mod test_support;
mod vm_controls;
mod vm_host;
mod window;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    logging::init(args.verbose);
    let Some(command) = args.command else {
        return gui::run(args.data_dir.as_deref(), args.open.as_deref());
    };
    cli::dispatch(command, args.data_dir.as_deref())
}
