//! `hsm-admin`: provisions keys inside a token and exports their public halves.
//!
//! Used by `softhsm-setup/setup.sh`; works the same against a real HSM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

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
        #[command(flatten)]
        key: KeyPairArgs,
        /// Modulus length in bits.
        #[arg(long, default_value_t = 2048)]
        bits: u64,
    },
    /// Import an RSA key pair from a PKCS#1 DER file as sensitive, non-extractable token
    /// objects (for migrating software keys, and for tests that must know the secret).
    ImportRsa {
        #[command(flatten)]
        key: KeyPairArgs,
        /// PKCS#1 `RSAPrivateKey` DER file (`openssl rsa -traditional -outform DER`).
        #[arg(long)]
        pkcs1_der: PathBuf,
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

/// Which key pair and what it may do.
#[derive(Args)]
struct KeyPairArgs {
    /// CKA_LABEL of the key pair.
    #[arg(long)]
    label: String,
    /// CKA_ID of the key pair, hex.
    #[arg(long)]
    id: String,
    /// What the private key may do.
    #[arg(long, value_enum)]
    usage: Usage,
}

impl KeyPairArgs {
    /// The spec for `hsm`, with the id decoded.
    fn spec(&self, bits: u64) -> anyhow::Result<hsm::RsaKeySpec> {
        let usage = match self.usage {
            Usage::Sign => hsm::KeyUsage::Sign,
            Usage::Decrypt => hsm::KeyUsage::Decrypt,
        };
        Ok(hsm::RsaKeySpec {
            label: self.label.clone(),
            id: decode_hex(&self.id).context("--id must be hex")?,
            bits,
            usage,
        })
    }
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
        Command::GenerateRsa { key, bits } => {
            let spec = key.spec(bits)?;
            let pool = connect(&module, &cli.token, pin).await?;
            let label = key.label;
            match hsm::generate_rsa_key_pair(&pool, spec).await? {
                hsm::Generated::Created => println!("generated RSA-{bits} key pair {label:?} in token {:?}", cli.token),
                hsm::Generated::AlreadyPresent => println!("key pair {label:?} already in token {:?}", cli.token),
            }
        }
        Command::ImportRsa { key, pkcs1_der } => {
            // The modulus length comes from the imported key itself.
            let spec = key.spec(0)?;
            let der = zeroize::Zeroizing::new(
                std::fs::read(&pkcs1_der).with_context(|| format!("reading {}", pkcs1_der.display()))?,
            );
            let components = parse_pkcs1(&der).context("not a PKCS#1 RSAPrivateKey")?;
            let pool = connect(&module, &cli.token, pin).await?;
            let label = key.label;
            match hsm::import_rsa_key_pair(&pool, spec, components).await? {
                hsm::Generated::Created => println!("imported RSA key pair {label:?} into token {:?}", cli.token),
                hsm::Generated::AlreadyPresent => println!("key pair {label:?} already in token {:?}", cli.token),
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

/// PKCS#1 `RSAPrivateKey ::= SEQUENCE { version, n, e, d, p, q, dp, dq, qinv }`.
fn parse_pkcs1(der: &[u8]) -> anyhow::Result<hsm::RsaPrivateComponents> {
    fn tlv(input: &[u8], tag: u8) -> anyhow::Result<(&[u8], &[u8])> {
        anyhow::ensure!(input.len() >= 2 && input[0] == tag, "expected DER tag {tag:#x}");
        let (len, header) = match input[1] {
            l if l < 0x80 => (usize::from(l), 2),
            0x81 => (usize::from(*input.get(2).context("truncated")?), 3),
            0x82 => (
                usize::from(u16::from_be_bytes([input[2], *input.get(3).context("truncated")?])),
                4,
            ),
            _ => anyhow::bail!("unsupported DER length"),
        };
        let end = header + len;
        anyhow::ensure!(input.len() >= end, "truncated DER");
        Ok((&input[header..end], &input[end..]))
    }
    let (mut body, _) = tlv(der, 0x30)?;
    let mut ints = Vec::new();
    while !body.is_empty() {
        let (value, rest) = tlv(body, 0x02)?;
        let start = value.iter().position(|&b| b != 0).unwrap_or(value.len());
        ints.push(value[start..].to_vec());
        body = rest;
    }
    anyhow::ensure!(ints.len() == 9, "expected 9 integers, found {}", ints.len());
    let mut it = ints.into_iter().skip(1);
    let mut next = || it.next().unwrap_or_default();
    Ok(hsm::RsaPrivateComponents {
        n: next(),
        e: next(),
        d: next(),
        p: next(),
        q: next(),
        dp: next(),
        dq: next(),
        qinv: next(),
    })
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
