//! `hsm-admin`: provisions keys inside a token and exports their public halves.
//!
//! Used by `softhsm-setup/setup.sh`; works the same against a real HSM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

/// Provision and inspect keys in a PKCS#11 token.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// PKCS#11 module (shared library) to load.
    #[arg(long, env = "PKCS11_MODULE", default_value = "/usr/lib/softhsm/libsofthsm2.so")]
    module: PathBuf,
    /// Label of the token to use.
    #[arg(long, env = "PKCS11_TOKEN_LABEL")]
    token: String,
    /// File holding the user PIN (mode 0600).
    #[arg(long, env = "PKCS11_PIN_FILE")]
    pin_file: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Initialise a token with this label in a free slot, unless it exists.
    InitToken {
        /// File holding the security officer PIN (mode 0600).
        #[arg(long)]
        so_pin_file: PathBuf,
    },
    /// Generate an RSA key pair in the token unless one with this label exists.
    GenerateRsa {
        /// CKA_LABEL of the key pair.
        #[arg(long)]
        label: String,
        /// CKA_ID of the key pair, hex.
        #[arg(long)]
        id: String,
        /// What the private key may do.
        #[arg(long, value_enum)]
        usage: Usage,
        /// Modulus length in bits.
        #[arg(long, default_value_t = 2048)]
        bits: u64,
    },
    /// Write the public key labelled LABEL as JWK (kid = RFC 7638 thumbprint) and PEM.
    ExportPublic {
        /// CKA_LABEL of the key pair.
        #[arg(long)]
        label: String,
        /// JOSE `alg` to record in the JWK, e.g. RS256 or RSA-OAEP.
        #[arg(long)]
        alg: String,
        /// JWK `use`: sig or enc.
        #[arg(long = "use")]
        use_: String,
        /// Where to write the JWK.
        #[arg(long)]
        jwk_out: PathBuf,
        /// Where to write the SPKI PEM.
        #[arg(long)]
        pem_out: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Usage {
    Sign,
    Decrypt,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let module = hsm::Module::load(&cli.module)?;
    let pin = hsm::read_pin_file(&cli.pin_file)?;
    match cli.command {
        Command::InitToken { so_pin_file } => {
            let so_pin = hsm::read_pin_file(&so_pin_file)?;
            match hsm::initialize_token(&module, &cli.token, &so_pin, &pin)? {
                hsm::TokenInit::Created => println!("initialised token {:?}", cli.token),
                hsm::TokenInit::AlreadyPresent => {
                    println!("token {:?} already initialised", cli.token)
                }
            }
        }
        Command::GenerateRsa { label, id, usage, bits } => {
            let id = decode_hex(&id).context("--id must be hex")?;
            let usage = match usage {
                Usage::Sign => hsm::KeyUsage::Sign,
                Usage::Decrypt => hsm::KeyUsage::Decrypt,
            };
            let pool = connect(&module, &cli.token, pin).await?;
            let outcome = hsm::generate_rsa_key_pair(
                &pool,
                hsm::RsaKeySpec {
                    label: label.clone(),
                    id,
                    bits,
                    usage,
                },
            )
            .await?;
            match outcome {
                hsm::Generated::Created => println!("generated RSA-{bits} key pair {label:?} in token {:?}", cli.token),
                hsm::Generated::AlreadyPresent => {
                    println!("key pair {label:?} already in token {:?}", cli.token)
                }
            }
        }
        Command::ExportPublic {
            label,
            alg,
            use_,
            jwk_out,
            pem_out,
        } => {
            let pool = connect(&module, &cli.token, pin).await?;
            let key = hsm::rsa_public_key(&pool, &label).await?;
            let jwk = serde_json::to_string_pretty(&key.to_jwk(&alg, &use_))?;
            std::fs::write(&jwk_out, jwk + "\n").with_context(|| format!("writing {}", jwk_out.display()))?;
            std::fs::write(&pem_out, key.spki_pem()?).with_context(|| format!("writing {}", pem_out.display()))?;
            println!(
                "exported {label:?} (kid {}) to {} and {}",
                key.thumbprint(),
                jwk_out.display(),
                pem_out.display()
            );
        }
    }
    Ok(())
}

async fn connect(module: &hsm::Module, token: &str, pin: secrecy::SecretString) -> anyhow::Result<hsm::TokenPool> {
    let config = hsm::TokenConfig {
        token_label: token.to_owned(),
        pin,
        sessions: 1,
        slot_discovery_timeout: Duration::from_secs(10),
        operation_timeout: Duration::from_secs(120),
    };
    hsm::TokenPool::connect(module, config)
        .await
        .with_context(|| format!("could not open token {token:?} in {}", module.path().display()))
}

fn decode_hex(hex: &str) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(
        hex.len().is_multiple_of(2) && !hex.is_empty(),
        "odd or empty hex string"
    );
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).context("not hex"))
        .collect()
}
