//! `vault-admin`: operator commands for vault — audit verification, wrapping-key
//! rotation and rewrap. Takes the same configuration as `vault` (`--config`, `VAULT_*`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure};
use clap::{Parser, Subcommand};
use secrecy::SecretString;
use service_kit::keyring::{self, KeyRing, RetireArgs};
use service_kit::token::TokenOptions;
use vault::config::{SERVICE, StorageOptions, WrappingKeyOptions};
use vault::opener::Opener;
use vault::rewrap::{Pacing, rewrap, secrets_wrapped_to};
use vault::storage::Store;

/// Operator commands for vault.
#[derive(Parser)]
#[command(name = "vault-admin", version)]
struct Cli {
    #[command(flatten)]
    token: TokenOptions,
    #[command(flatten)]
    wrapping: WrappingKeyOptions,
    #[command(flatten)]
    storage: StorageOptions,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify the audit trail's hash chain; name the first broken record and exit 1 if any.
    AuditVerify,
    /// List the wrapping keys (generation, label, kid); the newest is sealed to.
    ListWrappingKeys,
    /// Generate the next wrapping key generation in the token. manager seals new secrets
    /// to it once vault and manager have refreshed; old envelopes still open.
    RotateWrappingKey,
    /// Re-wrap every stored content key to the newest wrapping key, in batches that each
    /// commit. The plaintext is never produced; a killed run resumes where it stopped.
    Rewrap {
        /// Secrets per transaction.
        #[arg(long, default_value_t = 100)]
        batch_size: u32,
        /// Pause between batches, in milliseconds (to spare a busy token).
        #[arg(long, default_value_t = 0)]
        batch_delay_ms: u64,
    },
    /// Destroy the wrapping key with this kid: refused while it is the newest or any
    /// stored secret is still wrapped to it.
    RetireWrappingKey(RetireArgs),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    service_kit::admin::main(SERVICE, "vault-admin", run).await
}

/// The database, which must exist already (an admin command never creates one).
async fn open_store(storage: &StorageOptions) -> anyhow::Result<Store> {
    if let Some(path) = storage.database_url.strip_prefix("sqlite://") {
        ensure!(std::path::Path::new(path).is_file(), "no database at {path}");
    }
    Ok(Store::open(&storage.database_url, service_kit::clock::unix_now).await?)
}

/// Ok(false): the command ran and found a problem (exit 1).
async fn run(cli: Cli, env_pin: Option<SecretString>) -> anyhow::Result<bool> {
    let base = cli.wrapping.wrapping_key_label.as_str();
    let token = cli.token.for_admin();
    let connect = || token.connect(SERVICE, env_pin);
    match cli.command {
        Command::AuditVerify => match open_store(&cli.storage).await?.verify_audit(1_000).await? {
            Ok(verified) => {
                let (_, head) = verified.head();
                println!("audit chain verified: {} records, head {head}", verified.count());
                Ok(true)
            }
            Err(broken) => {
                println!("{broken}");
                Ok(false)
            }
        },
        Command::ListWrappingKeys => {
            print!(
                "{}",
                keyring::list(&connect().await?, base, hsm::KeyUsage::Decrypt).await?
            );
            Ok(true)
        }
        Command::RotateWrappingKey => {
            let generated = keyring::rotate(&connect().await?, base, hsm::KeyUsage::Decrypt).await?;
            println!("generated {} kid {}", generated.label, generated.kid);
            Ok(true)
        }
        Command::Rewrap {
            batch_size,
            batch_delay_ms,
        } => {
            let store = open_store(&cli.storage).await?;
            let opener = Opener::new(Arc::new(
                KeyRing::load(
                    connect().await?,
                    base,
                    hsm::KeyUsage::Decrypt,
                    &cli.wrapping.wrapping_kids,
                )
                .await?,
            ));
            let pacing = Pacing {
                batch_size,
                delay: Duration::from_millis(batch_delay_ms),
            };
            let total = rewrap(&store, &opener, pacing, |total, after| {
                println!("rewrapped {total} so far (through key_id {after})");
            })
            .await?;
            let current = opener.keys().keys().current().kid.clone();
            println!("rewrap complete: {total} content keys moved to {current}");
            Ok(true)
        }
        Command::RetireWrappingKey(RetireArgs { kid }) => {
            let store = open_store(&cli.storage).await?;
            let pool = connect().await?;
            let keys = keyring::read(&pool, base, hsm::KeyUsage::Decrypt).await?;
            let retiring = keys.retirable(&kid)?;
            let still = secrets_wrapped_to(&store, &keys.current().kid, &kid).await?;
            if still > 0 {
                bail!("{still} stored secrets are still wrapped to {kid}; run `vault-admin rewrap` first");
            }
            hsm::destroy_key_pair(&pool, &retiring.label).await?;
            println!("destroyed {} (kid {kid})", retiring.label);
            Ok(true)
        }
    }
}
