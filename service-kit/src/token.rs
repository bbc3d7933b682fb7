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
