//! `vault-admin`: operator commands that work on vault's database directly.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vault::audit::verify_chain;
use vault::storage::{SqliteStore, Store};

/// Operator commands for vault.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// vault's SQLite database.
    #[arg(long, env = "VAULT_DATABASE")]
    database: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify the audit trail's hash chain; name the first broken record and exit 1 if any.
    AuditVerify,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = async {
        if !cli.database.is_file() {
            anyhow::bail!("no database at {}", cli.database.display());
        }
        let store = SqliteStore::open(&cli.database).await?;
        match cli.command {
            Command::AuditVerify => {
                let records = store.audit_records().await?;
                match verify_chain(&records) {
                    Ok(count) => {
                        let head = records.last().map_or(vault::audit::GENESIS, |r| r.hash.as_str());
                        println!("audit chain verified: {count} records, head {head}");
                        Ok(true)
                    }
                    Err(broken) => {
                        println!("{broken}");
                        Ok(false)
                    }
                }
            }
        }
    }
    .await;
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => service_kit::report::exit_status("vault-admin", Err(e)),
    }
}
