//! `hsm-admin`: provisions keys inside a token, exports their public halves, issues
//! certificates with a token-held CA key, measures a key's operation rate, and checks that
//! a token can serve the services.
//!
//! Used by `softhsm-setup/setup.sh`; works the same against a real HSM.

mod check;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// Provision and inspect keys in a PKCS#11 token.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// PKCS#11 module (shared library) to load (or module-path in a --token URI).
    #[arg(long, env = "PKCS11_MODULE", default_value = "/usr/lib/softhsm/libsofthsm2.so")]
    module: PathBuf,
    /// Label of the token to use, or a PKCS#11 URI (RFC 7512) `pkcs11:token=LABEL` that may
    /// also give module-path and pin-source (a --module or --pin-file given too must agree).
    #[arg(long, env = "PKCS11_TOKEN_LABEL")]
    token: String,
    /// File holding the user PIN (mode 0600); required unless the --token URI has pin-source.
    #[arg(long, env = "PKCS11_PIN_FILE")]
    pin_file: Option<PathBuf>,
    /// Instances of the module to load: behind p11-kit-client.so each is a connection of
    /// its own, which p11-kit's server answers one request at a time (for `bench`). A module
    /// that keeps one state per process (SoftHSM in process) is one whatever this says.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check what manager and vault need of the token, live with throwaway session keys
    /// (nothing is left in the token), and print the configuration that follows. Exit 0 if
    /// the token can serve, 1 if it cannot, 2 if it could not be opened.
    Check {
        /// Sessions that must be open at once (the services' pkcs11_sessions).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
        sessions: u32,
        /// Print one JSON document instead of the table.
        #[arg(long)]
        json: bool,
    },
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
        /// CKA_LABEL of the key pair, or a PKCS#11 URI with object=.
        #[arg(long)]
        label: String,
        /// JOSE `alg` to record in the JWK, e.g. RS256 or RSA-OAEP.
        #[arg(long)]
        alg: String,
        /// JWK `use`: sig (the private key must be sign-only) or enc (decrypt/unwrap).
        #[arg(long = "use")]
        use_: String,
        /// Where to write the JWK.
        #[arg(long)]
        jwk_out: PathBuf,
        /// Where to write the SPKI PEM.
        #[arg(long)]
        pem_out: PathBuf,
    },
    /// Generate a TLS (or CA) key pair in the token unless one with this label exists, and
    /// write its public key (SPKI PEM) for `issue-certificate`.
    GenerateTlsKey {
        /// CKA_LABEL of the key pair, or a PKCS#11 URI with object=.
        #[arg(long)]
        label: String,
        /// CKA_ID of the key pair, hex.
        #[arg(long)]
        id: String,
        /// ecdsa-p256 or rsa-2048.
        #[arg(long = "type", default_value = "ecdsa-p256")]
        key_type: hsm::TlsKeyType,
        /// Where to write the public key (SPKI PEM).
        #[arg(long)]
        public_key_out: PathBuf,
    },
    /// Write a self-signed CA certificate for the CA key labelled LABEL (signed in the token).
    CaCertificate {
        /// CKA_LABEL of the CA key pair, or a PKCS#11 URI with object=.
        #[arg(long)]
        label: String,
        /// The CA's common name; `issue-certificate` must be given the same.
        #[arg(long, default_value = DEV_CA_NAME)]
        common_name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Where to write the certificate (PEM).
        #[arg(long)]
        out: PathBuf,
    },
    /// Issue a certificate for a public key (SPKI PEM) with the CA key labelled CA_LABEL in
    /// this token; the subject's private key is never needed.
    IssueCertificate {
        /// CKA_LABEL of the CA key pair, or a PKCS#11 URI with object=.
        #[arg(long)]
        ca_label: String,
        /// The CA certificate's common name (as given to `ca-certificate`).
        #[arg(long, default_value = DEV_CA_NAME)]
        ca_common_name: String,
        /// The subject's public key (SPKI PEM, from `generate-tls-key`).
        #[arg(long)]
        public_key: PathBuf,
        /// Subject common name.
        #[arg(long)]
        common_name: String,
        /// subjectAltName: a DNS name or IP address; repeat for several.
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// server (serverAuth) or client (clientAuth).
        #[arg(long, value_enum)]
        purpose: Purpose,
        /// Validity in days.
        #[arg(long, default_value_t = 825)]
        days: u32,
        /// Where to write the certificate (PEM).
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a certificate signing request (PKCS#10, signed in the token) for the TLS key
    /// labelled LABEL, for an external CA.
    Csr {
        /// CKA_LABEL of the key pair, or a PKCS#11 URI with object=.
        #[arg(long)]
        label: String,
        /// Subject common name.
        #[arg(long)]
        common_name: String,
        /// subjectAltName: a DNS name or IP address; repeat for several.
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// Where to write the request (PEM).
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign with the TLS key labelled LABEL from CONCURRENCY threads for SECONDS and print
    /// the rate (ECDSA P-256 for EC keys, RSA-PSS-SHA256 for RSA keys).
    Bench {
        /// CKA_LABEL of the key pair, or a PKCS#11 URI with object=.
        #[arg(long)]
        label: String,
        /// How long to measure.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Parallel signers (one session each).
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
    },
}

impl Cli {
    /// Resolves a PKCS#11 URI in `--token` and in the command's key label into the plain
    /// token label, module, PIN file and key label the commands use. `module_explicit`:
    /// `--module` (or its variable) was given, so a URI's module-path must agree with it.
    fn resolve_uris(&mut self, module_explicit: bool) -> anyhow::Result<()> {
        let module = hsm::ConfiguredPath {
            option: "--module",
            value: Some(&self.module),
            explicit: module_explicit,
        };
        let pin_file = hsm::ConfiguredPath {
            option: "--pin-file",
            value: self.pin_file.as_deref(),
            explicit: self.pin_file.is_some(),
        };
        let token = hsm::TokenSelection::resolve(&self.token, module, pin_file).context("option --token")?;
        let (option, label) = match &mut self.command {
            Command::Check { .. } | Command::InitToken { .. } => return self.take(token),
            Command::GenerateRsa { key, .. } | Command::ImportRsa { key, .. } => ("--label", &mut key.label),
            Command::ExportPublic { label, .. }
            | Command::GenerateTlsKey { label, .. }
            | Command::CaCertificate { label, .. }
            | Command::Csr { label, .. }
            | Command::Bench { label, .. } => ("--label", label),
            Command::IssueCertificate { ca_label, .. } => ("--ca-label", ca_label),
        };
        *label = token.key_label(label).with_context(|| format!("option {option}"))?;
        self.take(token)
    }

    /// Keeps `token`'s label, module and PIN file as the options' values.
    fn take(&mut self, token: hsm::TokenSelection) -> anyhow::Result<()> {
        self.token = token.label;
        if let Some(module) = token.module {
            self.module = module;
        }
        self.pin_file = token.pin_file;
        Ok(())
    }
}

/// Common name of the development CA `softhsm-setup/setup.sh` creates.
const DEV_CA_NAME: &str = "secret-store dev CA";

#[derive(Clone, Copy, ValueEnum)]
enum Purpose {
    Server,
    Client,
}

/// Which key pair and what it may do.
#[derive(Args)]
struct KeyPairArgs {
    /// CKA_LABEL of the key pair, or a PKCS#11 URI with object=.
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
async fn main() -> anyhow::Result<ExitCode> {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let resolved = cli
        .resolve_uris(matches.value_source("module") != Some(ValueSource::DefaultValue))
        .and_then(|()| {
            cli.pin_file
                .clone()
                .context("no PIN file: give --pin-file, or pin-source in the --token URI")
        });
    let pin_file = match resolved {
        Ok(pin_file) => pin_file,
        // `check` tells a token that cannot serve (1) from one it could not open (2).
        Err(e) if matches!(cli.command, Command::Check { .. }) => {
            eprintln!("hsm-admin check: {e:#}");
            return Ok(ExitCode::from(check::NOT_CHECKED));
        }
        Err(e) => return Err(e),
    };
    if let Command::Check { sessions, json } = cli.command {
        let target = check::Target {
            module: &cli.module,
            token: &cli.token,
            pin_file: &pin_file,
            connections: cli.connections,
        };
        let format = if json {
            check::Format::Json
        } else {
            check::Format::Table
        };
        return Ok(check::run(&target, sessions as usize, format).await);
    }
    let module = hsm::Module::load_connections(&cli.module, cli.connections)?;
    let pin = hsm::read_pin_file(&pin_file)?;
    match cli.command {
        Command::InitToken { so_pin_file } => {
            let so_pin = hsm::read_pin_file(&so_pin_file)?;
            match hsm::initialize_token(&module, &cli.token, &so_pin, &pin)? {
                hsm::TokenInit::Created => println!("initialised token {:?}", cli.token),
                hsm::TokenInit::PinCompleted => {
                    println!(
                        "token {:?} had no user PIN (an interrupted init-token): set it",
                        cli.token
                    )
                }
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
            let components = hsm::RsaPrivateComponents::from_pkcs1_der(&der)
                .with_context(|| format!("{} is not a PKCS#1 RSAPrivateKey (DER)", pkcs1_der.display()))?;
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
            // The JWK's use says what the private key must be for: its public half is read
            // from it only if it is protected and has exactly that usage.
            let usage = match use_.as_str() {
                "sig" => hsm::KeyUsage::Sign,
                "enc" => hsm::KeyUsage::Decrypt,
                other => anyhow::bail!("--use must be sig or enc, not {other:?}"),
            };
            let pool = connect(&module, &cli.token, pin).await?;
            let components = hsm::rsa_public_key(&pool, &label, usage).await?;
            let key = contract::jwk::RsaPublicKey::from_components(components.modulus(), components.exponent())?;
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
        Command::GenerateTlsKey {
            label,
            id,
            key_type,
            public_key_out,
        } => {
            let pool = connect(&module, &cli.token, pin).await?;
            let id = decode_hex(&id).context("--id must be hex")?;
            match hsm::generate_tls_key_pair(&pool, &label, &id, key_type).await? {
                hsm::Generated::Created => println!("generated {key_type} key pair {label:?} in token {:?}", cli.token),
                hsm::Generated::AlreadyPresent => println!("key pair {label:?} already in token {:?}", cli.token),
            }
            let public = hsm::tls_public_key(&pool, &label).await?;
            write_file(
                &public_key_out,
                &contract::jwk::pem_encode("PUBLIC KEY", public.spki_der()),
            )?;
        }
        Command::CaCertificate {
            label,
            common_name,
            days,
            out,
        } => {
            let pool = connect(&module, &cli.token, pin).await?;
            let key = hsm::TokenTlsKey::load(pool, &label).await?;
            let pem = hsm_admin::certificates::ca_certificate(&key, &common_name, days)?;
            write_file(&out, &pem)?;
            println!(
                "wrote CA certificate {common_name:?} for key {label:?} to {}",
                out.display()
            );
        }
        Command::IssueCertificate {
            ca_label,
            ca_common_name,
            public_key,
            common_name,
            names,
            purpose,
            days,
            out,
        } => {
            use rustls::pki_types::SubjectPublicKeyInfoDer;
            use rustls::pki_types::pem::PemObject;
            let spki = SubjectPublicKeyInfoDer::from_pem_file(&public_key)
                .with_context(|| format!("reading a PUBLIC KEY PEM from {}", public_key.display()))?;
            let subject = hsm::PublicKeyInfo::from_spki_der(spki.as_ref())
                .with_context(|| format!("{} is neither a P-256 nor an RSA public key", public_key.display()))?;
            let request = hsm_admin::certificates::CertificateRequest {
                common_name: common_name.clone(),
                names,
                purpose: match purpose {
                    Purpose::Server => hsm_admin::certificates::Purpose::Server,
                    Purpose::Client => hsm_admin::certificates::Purpose::Client,
                },
                days,
            };
            let pool = connect(&module, &cli.token, pin).await?;
            let ca = hsm::TokenTlsKey::load(pool, &ca_label).await?;
            let pem = hsm_admin::certificates::issue_certificate(&ca, &ca_common_name, &subject, &request)?;
            write_file(&out, &pem)?;
            println!("issued {common_name:?} ({}) to {}", subject.key_type(), out.display());
        }
        Command::Csr {
            label,
            common_name,
            names,
            out,
        } => {
            let pool = connect(&module, &cli.token, pin).await?;
            let key = hsm::TokenTlsKey::load(pool, &label).await?;
            let pem = hsm_admin::certificates::certificate_signing_request(&key, &common_name, names)?;
            write_file(&out, &pem)?;
            println!("wrote a signing request for {label:?} to {}", out.display());
        }
        Command::Bench {
            label,
            seconds,
            concurrency,
        } => {
            let threads = concurrency.max(1);
            let pool = connect_with(&module, &cli.token, pin, threads).await?;
            let key = hsm::TokenTlsKey::load(pool, &label).await?;
            let rate = bench(&key, Duration::from_secs(seconds), threads)?;
            println!(
                "{} sign/s: {rate:.0} ({} thread(s), {} connection(s), {})",
                key.public_key_info().key_type(),
                threads,
                module.connections(),
                module.path().display()
            );
        }
        Command::Check { .. } => unreachable!("handled before the module is loaded"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Signs 32-byte messages with `key` from `threads` threads until `duration` has passed;
/// operations per second over all threads.
fn bench(key: &hsm::TokenTlsKey, duration: Duration, threads: usize) -> anyhow::Result<f64> {
    let scheme = key.preferred_scheme();
    let started = std::time::Instant::now();
    let counts = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> hsm::Result<u64> {
                    let mut done = 0u64;
                    while started.elapsed() < duration {
                        key.sign(scheme, &done.to_be_bytes().repeat(4))?;
                        done += 1;
                    }
                    Ok(done)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| anyhow::anyhow!("a bench thread panicked"))?
                    .map_err(anyhow::Error::from)
            })
            .sum::<anyhow::Result<u64>>()
    })?;
    Ok(counts as f64 / started.elapsed().as_secs_f64())
}

fn write_file(path: &std::path::Path, content: &str) -> anyhow::Result<()> {
    std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))
}

async fn connect(module: &hsm::Module, token: &str, pin: secrecy::SecretString) -> anyhow::Result<hsm::TokenPool> {
    connect_with(module, token, pin, 1).await
}

async fn connect_with(
    module: &hsm::Module,
    token: &str,
    pin: secrecy::SecretString,
    sessions: usize,
) -> anyhow::Result<hsm::TokenPool> {
    let config = hsm::TokenConfig {
        token_label: token.to_owned(),
        pin,
        sessions,
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
