//! `pim`: the client of pimd, the just-in-time group membership daemon.
#![forbid(unsafe_code)]

mod cli;
mod commands;
mod csv;
mod doctor;
mod error;
mod fleet;
mod input;
mod output;
mod reviews;
mod time;
mod verify;

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // clap prints its own usage errors and exits 2 (0 for --help and --version).
    let cli = cli::Cli::parse();
    match commands::run(cli).await {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(failure) => {
            if let Some(message) = failure.message() {
                let _ = writeln!(std::io::stderr().lock(), "pim: {message}");
            }
            ExitCode::from(failure.exit_code())
        }
    }
}
