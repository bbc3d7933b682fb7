//! `secret-store`: parses the command line, runs it, prints the error and exits with its code.

use std::process::ExitCode;

use clap::Parser;
use secret_store::cli::Cli;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match secret_store::run(cli, &|name| std::env::var(name).ok()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("secret-store: {}", error.report());
            error.exit().into()
        }
    }
}
