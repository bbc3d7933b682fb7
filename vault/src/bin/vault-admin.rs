//! `vault-admin`: operator commands for vault — audit verification, wrapping-key
//! rotation and rewrap. Takes the same configuration as `vault` (`--config`, `VAULT_*`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use clap::{Parser, Subcommand};
use contract::jwk::RsaPublicKey;
use secrecy::SecretString;
use service_kit::keyring::{self, KeyRing, RetireArgs};
use service_kit::token::TokenOptions;
use vault::checkpoint::AuditKeys;
use vault::checkpoint::sources::{Candidate, Source, checkpoints_in};
use vault::checkpoint::verify::TrailCheck;
use vault::config::{AuditKeyOptions, SERVICE, StorageOptions, WrappingKeyOptions};
use vault::jwks::JwksSource;
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
    #[command(flatten)]
    audit_key: AuditKeyOptions,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify the audit trail: its hash chain, then every signed checkpoint (signature, and
    /// the chain's hash at its record). Names the first broken record or failing checkpoint
    /// and exits 1 if any; prints how many records at the tail no checkpoint covers.
    AuditVerify(AuditVerifyArgs),
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

/// Where `audit-verify` takes checkpoints and keys from besides the database and token.
#[derive(clap::Args)]
struct AuditVerifyArgs {
    /// The audit key's public half as a JWK or JWK Set file (as `hsm-admin export-public`
    /// writes it), instead of reading it from the token: no PIN needed.
    #[arg(long)]
    audit_public_key: Option<PathBuf>,
    /// A file of checkpoints kept off the host: one JWS per line, or vault's `audit
    /// checkpoint` log lines as they are. Checked as well as the database's; repeatable.
    #[arg(long)]
    checkpoints: Vec<PathBuf>,
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

/// The audit key(s) in a JWK or JWK Set file, each under its thumbprint.
async fn audit_keys_from_file(path: &std::path::Path) -> anyhow::Result<AuditKeys> {
    let set = JwksSource::File(path.to_owned())
        .fetch()
        .await
        .with_context(|| format!("--audit-public-key {}", path.display()))?;
    let keys = set
        .keys
        .iter()
        .map(RsaPublicKey::from_jwk)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("--audit-public-key {}", path.display()))?;
    Ok(AuditKeys::new(keys))
}

/// Ok(false): the command ran and found a problem (exit 1).
async fn run(cli: Cli, env_pin: Option<SecretString>) -> anyhow::Result<bool> {
    let base = cli.wrapping.wrapping_key_label.as_str();
    let token = cli.token.for_admin();
    let connect = || token.connect(SERVICE, env_pin);
    match cli.command {
        Command::AuditVerify(args) => {
            let store = open_store(&cli.storage).await?;
            let mut candidates: Vec<Candidate> = store
                .checkpoints()
                .await?
                .into_iter()
                .map(|jws| Candidate {
                    source: Source::Database,
                    jws,
                })
                .collect();
            for path in &args.checkpoints {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
                candidates.extend(checkpoints_in(path, &text));
            }
            // Keys only when there is something to check: a trail younger than its first
            // checkpoint verifies without the token.
            let keys = match (candidates.is_empty(), &args.audit_public_key) {
                (true, _) => AuditKeys::default(),
                (false, Some(path)) => audit_keys_from_file(path).await?,
                (false, None) => {
                    let label = &cli.audit_key.audit_key_label;
                    let keys = keyring::read(&connect().await?, label, hsm::KeyUsage::Sign)
                        .await
                        .with_context(|| format!("cannot read audit key {label:?} (or give --audit-public-key)"))?;
                    AuditKeys::new(keys.iter().map(|generation| generation.public.clone()))
                }
            };
            let mut check = TrailCheck::new(candidates, &keys);
            let chain = store.verify_audit_with(1_000, |record| check.observe(record)).await?;
            let report = check.finish(chain.as_ref());
            print!("{report}");
            Ok(report.passed())
        }
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
