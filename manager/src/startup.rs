//! Building manager from its configuration and serving until a signal.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use axum_server::Handle;
use contract::envelope::{KeyWrap, Recipient};
use contract::jwk::Jwk;
use secrecy::SecretString;

use crate::app;
use crate::config::{Config, required};
use crate::issuer::TokenIssuer;
use crate::keyring::KeyRing;
use crate::state::{AppState, Limits};
use crate::vault_client::VaultClient;
use crate::vault_key::VaultKey;

/// Opens the token and checks the signing key, loads vault's public key, then serves
/// until SIGINT/SIGTERM. Start-up failures come back with context naming the culprit.
pub async fn run(config: Config, env_pin: Option<SecretString>) -> anyhow::Result<()> {
    let algorithm: hsm::SignatureAlgorithm = config.signing_algorithm.parse()?;
    let key_wrap: KeyWrap = config.key_wrap.parse().context("--key-wrap")?;
    let pool = service_kit::token::connect(config.token.settings(), env_pin).await?;
    let keys = Arc::new(
        KeyRing::load(pool.clone(), &config.signing_key_label, algorithm)
            .await
            .with_context(|| format!("cannot read signing keys {:?}", config.signing_key_label))?,
    );
    let current = keys.current();
    hsm::Signer::new(pool.clone(), current.label.clone(), algorithm)
        .sign(b"start-up self test")
        .await
        .with_context(|| format!("the signing key {:?} cannot sign", current.label))?;
    tokio::spawn(refresh_forever(
        keys.clone(),
        Duration::from_secs(config.key_refresh_seconds.max(1)),
    ));
    let issuer = TokenIssuer::new(
        pool.clone(),
        algorithm,
        keys.clone(),
        config.issuer.clone(),
        config.audience.clone(),
    );

    let vault_key = match &config.vault_public_key {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let jwk: Jwk = serde_json::from_str(&text).with_context(|| format!("{} is not a JWK", path.display()))?;
            let recipient =
                Recipient::from_jwk(&jwk).with_context(|| format!("vault public key {}", path.display()))?;
            VaultKey::File(Arc::new(recipient))
        }
        None => VaultKey::Vault(RwLock::new(None)),
    };

    let client_key = service_kit::token::tls_key(&pool, &config.client_key_label).await?;
    let client_tls = contract::tls::client_config(
        required(&config.vault_ca, "vault-ca")?,
        Some((required(&config.client_cert, "client-cert")?, client_key)),
    )
    .context("client TLS for vault")?;
    let vault = VaultClient::new(
        &config.vault_url,
        client_tls,
        Duration::from_millis(config.vault_timeout_ms),
    )?;
    let server_key = service_kit::token::tls_key(&pool, &config.tls_key_label).await?;
    let server_tls =
        contract::tls::server_config(required(&config.tls_cert, "tls-cert")?, server_key).context("server TLS")?;

    let limits = Limits {
        max_secret_bytes: config.max_secret_bytes,
        default_ttl_seconds: config.default_ttl_seconds,
        max_ttl_seconds: config.max_ttl_seconds,
        max_reads_limit: config.max_reads_limit,
    };
    // JSON escapes can make a body up to six times its secret (\uXXXX); the secret
    // limit itself is checked after parsing, with its own clear error.
    let max_body_bytes = config.max_secret_bytes.saturating_mul(6).saturating_add(4096);
    tracing::info!(kid = %current.kid, alg = %algorithm, key_wrap = %key_wrap, "manager ready");
    let state = Arc::new(AppState {
        issuer,
        keys,
        vault_key,
        key_wrap,
        vault,
        pool,
        limits,
    });

    tokio::spawn(refresh_vault_key_forever(
        state.clone(),
        Duration::from_secs(config.key_refresh_seconds.max(1)),
    ));
    let handle = Handle::new();
    let listener = service_kit::serve::serve_https(
        "api",
        config.listen,
        server_tls,
        app(state, max_body_bytes, config.rate_limit.limiter()),
        handle.clone(),
    )
    .await?;
    tokio::spawn(service_kit::serve::shutdown_on_signal(vec![handle]));
    listener.stopped().await?;
    Ok(())
}

/// Re-reads the signing keys every `interval`, so a rotation or retirement done with
/// `manager-admin` takes effect without a restart.
async fn refresh_forever(keys: Arc<KeyRing>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let before = keys.current();
        match keys.refresh().await {
            Ok(()) if keys.current() != before => {
                tracing::info!(kid = %keys.current().kid, label = %keys.current().label, "signing key changed")
            }
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %service_kit::report::error_chain(&e), "cannot refresh signing keys"),
        }
    }
}

/// Re-asks vault for its current wrapping key every `interval` (no-op for a file key).
async fn refresh_vault_key_forever(state: Arc<AppState>, interval: Duration) {
    if matches!(state.vault_key, VaultKey::File(_)) {
        return;
    }
    loop {
        if let Err(e) = state.vault_key.refresh(&state.vault).await {
            tracing::warn!(error = %service_kit::report::error_chain(&e), "cannot fetch vault's wrapping key");
        }
        tokio::time::sleep(interval).await;
    }
}
