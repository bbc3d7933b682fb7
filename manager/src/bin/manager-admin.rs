//! `manager-admin`: signing-key rotation in manager's token.
//!
//! Takes the same configuration as `manager` (`--config`, `MANAGER_*`), so it finds the
//! same token, PIN and key label.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use manager::config::{SERVICE, SigningKeyOptions};
use secrecy::SecretString;
use service_kit::keyring::{self, RetireArgs};
use service_kit::token::TokenOptions;

/// Signing-key rotation for manager.
#[derive(Parser)]
#[command(name = "manager-admin", version)]
struct Cli {
    #[command(flatten)]
    token: TokenOptions,
    #[command(flatten)]
    signing: SigningKeyOptions,
    #[command(subcommand)]
    command: Command,
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
    RetireSigningKey(RetireArgs),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    service_kit::admin::main(SERVICE, "manager-admin", run).await
}

async fn run(cli: Cli, env_pin: Option<SecretString>) -> anyhow::Result<bool> {
    let pool = cli.token.for_admin().connect(SERVICE, env_pin).await?;
    let base = cli.signing.signing_key_label.as_str();
    match cli.command {
        Command::ListSigningKeys => print!("{}", keyring::list(&pool, base, hsm::KeyUsage::Sign).await?),
        Command::RotateSigningKey => {
            let generated = keyring::rotate(&pool, base, hsm::KeyUsage::Sign).await?;
            println!("generated {} kid {}", generated.label, generated.kid);
            let jwk = generated
                .public
                .to_jwk(cli.signing.signing_algorithm.jose_name(), "sig");
            println!("{}", serde_json::to_string(&jwk)?);
        }
        Command::RetireSigningKey(RetireArgs { kid }) => {
            let keys = keyring::read(&pool, base, hsm::KeyUsage::Sign).await?;
            let retiring = keys.retirable(&kid)?;
            hsm::destroy_key_pair(&pool, &retiring.label).await?;
            println!("destroyed {} (kid {kid})", retiring.label);
        }
    }
    Ok(true)
}
