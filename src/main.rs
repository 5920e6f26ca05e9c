use std::process::ExitCode;

use clap::Parser;
use keepup::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match keepup::commands::run(cli.verb.command(), &cli.config) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("keepup: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
