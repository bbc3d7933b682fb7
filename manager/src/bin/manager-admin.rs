//! `manager-admin`: signing-key rotation in manager's token.
//!
//! Takes the same configuration as `manager` (`--config`, `MANAGER_*`), so it finds the
//! same token, PIN and key label.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

/// Signing-key rotation for manager.
#[derive(Parser)]
#[command(name = "manager-admin", version)]
struct Cli {
    #[command(flatten)]
    token: TokenArgs,
    #[command(subcommand)]
    command: Command,
}

/// The options `manager` has that these commands need, under the same names.
#[derive(Args)]
struct TokenArgs {
    /// manager's TOML configuration file.
    #[arg(long, env = "MANAGER_CONFIG")]
    config: Option<std::path::PathBuf>,
    #[command(flatten)]
    token: manager::config::TokenOptions,
    /// Base label of the signing keys.
    #[arg(long, env = "MANAGER_SIGNING_KEY_LABEL", default_value = "manager-signing")]
    signing_key_label: String,
    /// Token signature algorithm recorded in the printed JWK.
    #[arg(long, env = "MANAGER_SIGNING_ALGORITHM", default_value = "RS256")]
    signing_algorithm: String,
}

#[derive(Subcommand)]
enum Command {
    /// List the signing keys (generation, label, kid); the newest signs.
    ListSigningKeys,
    /// Generate the next generation of the signing key in the token. manager signs with
    /// it from its next key refresh; tokens signed with older keys stay valid.
    RotateSigningKey,
    /// Destroy the signing key with this kid (never the current one). Tokens it signed
    /// stop verifying once vault refreshes manager's JWKS.
    RetireSigningKey {
        /// The key's kid (RFC 7638 thumbprint), as in the JWKS; it may begin with `-` (base64url).
        #[arg(long, allow_hyphen_values = true)]
        kid: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let result = async {
        let cli: Cli = service_kit::config::parse_layered_ignoring_unknown("MANAGER_CONFIG")?;
        let env_pin = std::env::var(manager::config::TokenOptions::PIN_ENV_VAR)
            .ok()
            .map(SecretString::from);
        run(cli, env_pin).await
    }
    .await;
    service_kit::report::exit_status("manager-admin", result)
}

async fn run(cli: Cli, env_pin: Option<SecretString>) -> anyhow::Result<()> {
    let args = &cli.token;
    let pool = service_kit::token::connect(args.token.settings().for_admin(), env_pin).await?;
    let base = args.signing_key_label.as_str();
    let keys: Vec<(u64, hsm::LabeledPublicKey)> = hsm::rsa_public_keys_labelled(&pool, base)
        .await?
        .into_iter()
        .map(|k| (k.generation, k))
        .collect();
    let newest = keys.last().map(|(g, _)| *g);
    match cli.command {
        Command::ListSigningKeys => {
            for (generation, key) in &keys {
                let mark = if Some(*generation) == newest { " (current)" } else { "" };
                println!("{generation}\t{}\t{}{mark}", key.label, key.key.thumbprint());
            }
        }
        Command::RotateSigningKey => {
            let next = newest.map_or(0, |g| g + 1);
            let label = if next == 0 {
                base.to_owned()
            } else {
                format!("{base}.{next}")
            };
            let spec = hsm::RsaKeySpec {
                label: label.clone(),
                id: next.to_be_bytes().to_vec(),
                bits: 2048,
                usage: hsm::KeyUsage::Sign,
            };
            hsm::generate_rsa_key_pair(&pool, spec).await?;
            let public = hsm::rsa_public_key(&pool, &label).await?;
            let algorithm: hsm::SignatureAlgorithm = args.signing_algorithm.parse()?;
            println!("generated {label} kid {}", public.thumbprint());
            println!(
                "{}",
                serde_json::to_string(&public.to_jwk(algorithm.jose_name(), "sig"))?
            );
        }
        Command::RetireSigningKey { kid } => {
            let (generation, key) = keys
                .iter()
                .find(|(_, k)| k.key.thumbprint() == kid)
                .with_context(|| format!("no signing key with kid {kid}"))?;
            anyhow::ensure!(
                Some(*generation) != newest,
                "{kid} is the current signing key ({}); rotate first, then retire it",
                key.label
            );
            hsm::destroy_key_pair(&pool, &key.label).await?;
            println!("destroyed {} (kid {kid})", key.label);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kid_beginning_with_a_hyphen_is_a_value_not_a_flag() {
        let cli = Cli::try_parse_from(["manager-admin", "retire-signing-key", "--kid", "-pSlvJo7T2q"]);
        assert!(
            matches!(cli, Ok(Cli { command: Command::RetireSigningKey { ref kid }, .. }) if kid == "-pSlvJo7T2q"),
            "{:?}",
            cli.err()
        );
    }
}
