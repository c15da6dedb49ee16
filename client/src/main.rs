//! `pim`: the client of pimd, the just-in-time group membership daemon.
#![forbid(unsafe_code)]

mod alerts;
mod cli;
mod colour;
mod commands;
mod csv;
mod doctor;
mod error;
mod fleet;
mod groups;
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
                let prefix = colour::paint("pim:", colour::Style::Error, colour::stderr());
                let _ = writeln!(std::io::stderr().lock(), "{prefix} {message}");
            }
            ExitCode::from(failure.exit_code())
        }
    }
}
