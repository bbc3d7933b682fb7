//! Building manager from its configuration and serving until a signal.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use axum_server::Handle;
use contract::envelope::Recipient;
use contract::jwk::Jwk;
use secrecy::SecretString;
use service_kit::keyring::KeyRing;

use crate::app;
use crate::config::{Config, SERVICE};
use crate::issuer::{Issuer, rsa_scheme};
use crate::state::{AppState, Limits};
use crate::vault_client::VaultClient;
use crate::vault_key::VaultKey;

/// Opens the token and checks the signing key, loads vault's public key, then serves
/// until SIGINT/SIGTERM. Start-up failures come back with context naming the culprit.
pub async fn run(config: Config, env_pin: Option<SecretString>) -> anyhow::Result<()> {
    let algorithm = config.signing.signing_algorithm;
    let key_wrap = config.key_wrap;
    let pool = config.token.connect(SERVICE, env_pin).await?;
    let label = &config.signing.signing_key_label;
    let keys = Arc::new(
        KeyRing::load(pool.clone(), label, hsm::KeyUsage::Sign, &config.signing.signing_kids)
            .await
            .with_context(|| format!("cannot read signing keys {label:?}"))?,
    );
    let current = keys.keys().current().clone();
    hsm::Signer::new(pool.clone(), current.label.clone(), rsa_scheme(algorithm))
        .sign(b"start-up self test")
        .await
        .with_context(|| format!("the signing key {:?} cannot sign", current.label))?;
    tokio::spawn(
        keys.clone()
            .refresh_forever(Duration::from_secs(config.key_refresh_seconds.max(1)), "signing key"),
    );
    let issuer = Issuer::new(keys, algorithm, config.issuer.clone(), config.audience.clone());

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

    let client_key = service_kit::token::tls_key(&pool, &config.client_key_label, None).await?;
    let client_tls = service_kit::tls::pinned_client_config(
        &config.vault_ca,
        &config.vault_server_name,
        Some((&config.client_cert, client_key)),
    )
    .context("client TLS for vault")?;
    let vault = VaultClient::new(
        &config.vault_url,
        client_tls,
        Duration::from_millis(config.vault_timeout_ms),
    )?;
    let server_key = service_kit::token::tls_key(
        &pool,
        &config.tls_key_label,
        Some(config.connections.handshake_budget()),
    )
    .await?;
    let server_tls = service_kit::tls::server_config(&config.tls_cert, server_key).context("server TLS")?;

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
        vault_key,
        key_wrap,
        vault,
        limits,
    });

    tokio::spawn(refresh_vault_key_forever(
        state.clone(),
        Duration::from_secs(config.key_refresh_seconds.max(1)),
    ));
    let handle = Handle::new();
    service_kit::connections::check_descriptor_budget(&config.connections, 1);
    let listener = service_kit::serve::serve_https(
        "api",
        config.listen,
        server_tls,
        &config.connections,
        app(state, max_body_bytes, config.rate_limit.limiter()),
        handle.clone(),
    )
    .await?;
    tokio::spawn(service_kit::serve::shutdown_on_signal(vec![handle]));
    listener.stopped().await?;
    Ok(())
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
