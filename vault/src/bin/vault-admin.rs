//! `vault-admin`: operator commands for vault — audit verification, wrapping-key
//! rotation and rewrap. Takes the same configuration as `vault` (`--config`, `VAULT_*`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use clap::{Args, Parser, Subcommand};
use contract::envelope::Envelope;
use secrecy::SecretString;
use std::sync::Arc;
use vault::audit::verify_chain;
use vault::opener::Opener;
use vault::storage::{Rewrapped, Store};

/// Operator commands for vault.
#[derive(Parser)]
#[command(name = "vault-admin", version)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
}

/// The options `vault` has that these commands need, under the same names.
#[derive(Args)]
struct Settings {
    /// vault's TOML configuration file.
    #[arg(long, env = "VAULT_CONFIG")]
    config: Option<PathBuf>,
    /// vault's storage, as in vault's configuration.
    #[arg(long, env = "VAULT_DATABASE_URL", default_value = "sqlite://vault.db")]
    database_url: String,
    #[command(flatten)]
    token: vault::config::TokenOptions,
    /// Base label of the wrapping keys.
    #[arg(long, env = "VAULT_WRAPPING_KEY_LABEL", default_value = "vault-wrapping")]
    wrapping_key_label: String,
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
    RetireWrappingKey {
        /// The key's kid (RFC 7638 thumbprint); it may begin with `-` (base64url).
        #[arg(long, allow_hyphen_values = true)]
        kid: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let result = async {
        let cli: Cli = service_kit::config::parse_layered_ignoring_unknown("VAULT_CONFIG")?;
        let env_pin = std::env::var(vault::config::TokenOptions::PIN_ENV_VAR)
            .ok()
            .map(SecretString::from);
        run(cli, env_pin).await
    }
    .await;
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => service_kit::report::exit_status("vault-admin", Err(e)),
    }
}

async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(path) = settings.database_url.strip_prefix("sqlite://") {
        ensure!(std::path::Path::new(path).is_file(), "no database at {path}");
    }
    Ok(vault::storage::open(&settings.database_url).await?)
}

async fn connect(settings: &Settings, env_pin: Option<SecretString>) -> anyhow::Result<hsm::TokenPool> {
    service_kit::token::connect(settings.token.settings().for_admin(), env_pin).await
}

/// Ok(false): the command ran and found a problem (exit 1).
async fn run(cli: Cli, env_pin: Option<SecretString>) -> anyhow::Result<bool> {
    let settings = &cli.settings;
    let base = settings.wrapping_key_label.as_str();
    match cli.command {
        Command::AuditVerify => {
            let records = open_store(settings).await?.audit_records().await?;
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
        Command::ListWrappingKeys => {
            let pool = connect(settings, env_pin).await?;
            let keys = hsm::rsa_public_keys_labelled(&pool, base).await?;
            let newest = keys.last().map(|k| k.generation);
            for key in &keys {
                let mark = if Some(key.generation) == newest {
                    " (current)"
                } else {
                    ""
                };
                println!("{}\t{}\t{}{mark}", key.generation, key.label, key.key.thumbprint());
            }
            Ok(true)
        }
        Command::RotateWrappingKey => {
            let pool = connect(settings, env_pin).await?;
            let next = hsm::rsa_public_keys_labelled(&pool, base)
                .await?
                .last()
                .map_or(0, |k| k.generation + 1);
            let label = hsm::generation_label(base, next);
            let spec = hsm::RsaKeySpec {
                label: label.clone(),
                id: next.to_be_bytes().to_vec(),
                bits: 2048,
                usage: hsm::KeyUsage::Decrypt,
            };
            hsm::generate_rsa_key_pair(&pool, spec).await?;
            let public = hsm::rsa_public_key(&pool, &label).await?;
            println!("generated {label} kid {}", public.thumbprint());
            Ok(true)
        }
        Command::Rewrap {
            batch_size,
            batch_delay_ms,
        } => {
            let store = open_store(settings).await?;
            let pool = connect(settings, env_pin).await?;
            let opener = Opener::load(pool, base).await?;
            rewrap(
                &store,
                &opener,
                batch_size.max(1),
                Duration::from_millis(batch_delay_ms),
            )
            .await?;
            Ok(true)
        }
        Command::RetireWrappingKey { kid } => {
            let store = open_store(settings).await?;
            let pool = connect(settings, env_pin).await?;
            let opener = Opener::load(pool.clone(), base).await?;
            let key = opener
                .key(&kid)
                .with_context(|| format!("no wrapping key with kid {kid}"))?;
            ensure!(
                opener.kid() != kid,
                "{kid} is the newest wrapping key ({}); rotate first",
                key.label
            );
            let still = secrets_wrapped_to(&store, &opener.kid(), &kid).await?;
            if still > 0 {
                bail!("{still} stored secrets are still wrapped to {kid}; run `vault-admin rewrap` first");
            }
            hsm::destroy_key_pair(&pool, &key.label).await?;
            println!("destroyed {} (kid {kid})", key.label);
            Ok(true)
        }
    }
}

/// Moves every content key not yet wrapped to the newest key: unwrap in the token,
/// wrap to the newest public key, write back under optimistic concurrency.
async fn rewrap(store: &Arc<dyn Store>, opener: &Opener, batch_size: u32, delay: Duration) -> anyhow::Result<()> {
    let current = opener.kid();
    let recipient = opener.current_recipient()?;
    let (mut after, mut total) = (String::new(), 0u64);
    loop {
        let batch = store.rewrap_candidates(&current, &after, batch_size).await?;
        let Some(last) = batch.last() else { break };
        after = last.key_id.clone();
        let mut updates = Vec::with_capacity(batch.len());
        for secret in batch {
            let parsed = Envelope::parse(&secret.envelope).with_context(|| format!("secret {}", secret.key_id))?;
            let from = secret.wrap_kid.clone().unwrap_or_else(|| parsed.header().kid.clone());
            let new_envelope = if from == current {
                secret.envelope.clone()
            } else {
                let cek = opener
                    .unwrap_content_key(&parsed, secret.wrap_kid.as_deref())
                    .await
                    .with_context(|| format!("unwrapping the content key of {}", secret.key_id))?;
                ensure!(
                    cek.len() == 32,
                    "secret {}: content key of {} bytes",
                    secret.key_id,
                    cek.len()
                );
                parsed.with_encrypted_key(&recipient.wrap_content_key(parsed.key_wrap(), &cek)?)
            };
            updates.push(Rewrapped {
                key_id: secret.key_id,
                old_envelope: secret.envelope,
                new_envelope,
                wrap_kid: current.clone(),
            });
        }
        total += store.apply_rewrap(&updates).await?;
        println!("rewrapped {total} so far (through key_id {after})");
        tokio::time::sleep(delay).await;
    }
    println!("rewrap complete: {total} content keys moved to {current}");
    Ok(())
}

/// How many stored secrets still have their content key wrapped to `kid`.
async fn secrets_wrapped_to(store: &Arc<dyn Store>, current: &str, kid: &str) -> anyhow::Result<u64> {
    let (mut after, mut count) = (String::new(), 0);
    loop {
        let batch = store.rewrap_candidates(current, &after, 500).await?;
        let Some(last) = batch.last() else { return Ok(count) };
        after = last.key_id.clone();
        for secret in batch {
            let wrapped_to = match secret.wrap_kid {
                Some(kid) => kid,
                None => Envelope::parse(&secret.envelope)
                    .map(|e| e.header().kid.clone())
                    .unwrap_or_default(),
            };
            if wrapped_to == kid {
                count += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kid_beginning_with_a_hyphen_is_a_value_not_a_flag() {
        let cli = Cli::try_parse_from(["vault-admin", "retire-wrapping-key", "--kid", "-656yAii4chyN"]);
        assert!(
            matches!(cli, Ok(Cli { command: Command::RetireWrappingKey { ref kid }, .. }) if kid == "-656yAii4chyN"),
            "{:?}",
            cli.err()
        );
    }
}
