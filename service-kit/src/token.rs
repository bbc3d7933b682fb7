//! Opening a service's PKCS#11 token from its configuration, with errors that name it.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use secrecy::SecretString;

/// The token options every service has.
#[derive(Debug, Clone, Copy)]
pub struct TokenSettings<'a> {
    /// PKCS#11 module.
    pub module: &'a Path,
    /// Token label.
    pub token_label: &'a str,
    /// PIN file (mode 0600), preferred over `env_pin`.
    pub pin_file: Option<&'a Path>,
    /// Name of the environment variable that may carry the PIN, for the error message.
    pub pin_env_var: &'static str,
    /// Pool size.
    pub sessions: usize,
    /// Bound on slot discovery.
    pub slot_discovery_timeout: Duration,
    /// Bound on one operation.
    pub operation_timeout: Duration,
}

/// Declares `TokenOptions`, the token options of one service — PKCS#11 module, token label,
/// PIN file, session count and the two time bounds — with environment variables
/// `<PREFIX>_PKCS11_MODULE` … and the PIN itself in `<PREFIX>_PKCS11_PIN`.
///
/// A macro rather than a type because clap takes environment-variable names as constants:
/// this way the service and its admin tool (`#[command(flatten)]`) declare the options
/// once, under the same names, keys and variables.
// rustfmt re-indents multi-line attributes inside this macro on every run: formatted by hand.
#[rustfmt::skip]
#[macro_export]
macro_rules! token_options {
    ($prefix:literal, $default_label:literal) => {
        /// The service's token.
        #[derive(Debug, Clone, clap::Args)]
        pub struct TokenOptions {
            /// PKCS#11 module to load.
            #[arg(long, env = concat!($prefix, "_PKCS11_MODULE"), default_value = "/usr/lib/softhsm/libsofthsm2.so")]
            pub pkcs11_module: std::path::PathBuf,
            /// Label of the service's token.
            #[arg(long, env = concat!($prefix, "_TOKEN_LABEL"), default_value = $default_label)]
            pub token_label: String,
            /// File with the token's user PIN, mode 0600; or the PIN itself in
            /// [`Self::PIN_ENV_VAR`]. Never accepted on the command line.
            #[arg(long, env = concat!($prefix, "_PIN_FILE"), help = concat!(
                "File with the token's user PIN, mode 0600. Alternatively set ", $prefix,
                "_PKCS11_PIN in the environment; the PIN is never accepted on the command line"
            ))]
            pub pin_file: Option<std::path::PathBuf>,
            /// PKCS#11 sessions (and concurrent token operations).
            #[arg(long, env = concat!($prefix, "_PKCS11_SESSIONS"), default_value_t = 4)]
            pub pkcs11_sessions: usize,
            /// Bound on one token operation, queueing included, in milliseconds.
            #[arg(long, env = concat!($prefix, "_PKCS11_TIMEOUT_MS"), default_value_t = 10_000)]
            pub pkcs11_timeout_ms: u64,
            /// Bound on finding the token at start-up and after a token failure, in milliseconds.
            #[arg(long, env = concat!($prefix, "_SLOT_DISCOVERY_TIMEOUT_MS"), default_value_t = 5_000)]
            pub slot_discovery_timeout_ms: u64,
        }

        impl TokenOptions {
            /// The environment variable that may carry the PIN (read by `main`).
            pub const PIN_ENV_VAR: &'static str = concat!($prefix, "_PKCS11_PIN");

            /// These options as [`TokenSettings`]($crate::token::TokenSettings).
            pub fn settings(&self) -> $crate::token::TokenSettings<'_> {
                $crate::token::TokenSettings {
                    module: &self.pkcs11_module,
                    token_label: &self.token_label,
                    pin_file: self.pin_file.as_deref(),
                    pin_env_var: Self::PIN_ENV_VAR,
                    sessions: self.pkcs11_sessions,
                    slot_discovery_timeout: std::time::Duration::from_millis(self.slot_discovery_timeout_ms),
                    operation_timeout: std::time::Duration::from_millis(self.pkcs11_timeout_ms),
                }
            }
        }
    };
}

impl TokenSettings<'_> {
    /// For admin tools, which share the service's options: at most two sessions are plenty
    /// for one command, and they wait longer than a service would (at least 10 s to find
    /// the token, 2 min per operation: key generation on a slow HSM), since nobody is
    /// queueing behind them.
    pub fn for_admin(self) -> Self {
        Self {
            sessions: self.sessions.clamp(1, 2),
            slot_discovery_timeout: self.slot_discovery_timeout.max(Duration::from_secs(10)),
            operation_timeout: self.operation_timeout.max(Duration::from_secs(120)),
            ..self
        }
    }
}

/// Loads the module, finds the token by label and logs in. `env_pin` is the value of
/// `settings.pin_env_var`, read by `main` (library code reads no environment).
pub async fn connect(settings: TokenSettings<'_>, env_pin: Option<SecretString>) -> anyhow::Result<hsm::TokenPool> {
    let pin = match (settings.pin_file, env_pin) {
        (Some(path), _) => hsm::read_pin_file(path)?,
        (None, Some(pin)) => pin,
        (None, None) => anyhow::bail!(
            "no token PIN: set --pin-file (or pin_file in the config file) or {}",
            settings.pin_env_var
        ),
    };
    let module = hsm::Module::load(settings.module)?;
    let config = hsm::TokenConfig {
        token_label: settings.token_label.to_owned(),
        pin,
        sessions: settings.sessions,
        slot_discovery_timeout: settings.slot_discovery_timeout,
        operation_timeout: settings.operation_timeout,
    };
    hsm::TokenPool::connect(&module, config).await.with_context(|| {
        format!(
            "cannot open token {:?} with module {}",
            settings.token_label,
            settings.module.display()
        )
    })
}

/// The TLS key labelled `label` in the token, for rustls, after a test signature so that
/// a key the token will not sign with stops the service at start-up, not at the first
/// handshake.
pub async fn tls_key(
    pool: &hsm::TokenPool,
    label: &str,
) -> anyhow::Result<std::sync::Arc<dyn rustls::sign::SigningKey>> {
    let context = || format!("cannot use TLS key {label:?} in token {:?}", pool.token_label());
    let key = hsm::TokenTlsKey::load(pool.clone(), label)
        .await
        .with_context(context)?;
    let probe = key.clone();
    let schemes = [
        rustls::SignatureScheme::ECDSA_NISTP256_SHA256,
        rustls::SignatureScheme::RSA_PSS_SHA256,
    ];
    tokio::task::spawn_blocking(move || {
        let signer = rustls::sign::SigningKey::choose_scheme(&probe, &schemes).context("no usable signature scheme")?;
        signer.sign(b"start-up self test").map_err(anyhow::Error::from)
    })
    .await?
    .with_context(context)?;
    Ok(std::sync::Arc::new(key))
}
