//! Building vault from its configuration and serving both listeners until a signal.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::Handle;
use secrecy::SecretString;

use crate::config::{Config, required};
use crate::jwks::JwksSource;
use crate::opener::Opener;
use crate::storage::Store;
use crate::token::{Expectations, TokenVerifier};
use crate::{AppState, internal_app, public_app};

/// Opens the token, manager's keys, the TLS keys and then the database; serves until SIGINT/SIGTERM.
/// Every start-up failure comes back with context naming what could not be used.
pub async fn run(config: Config, env_pin: Option<SecretString>) -> anyhow::Result<()> {
    let pool = service_kit::token::connect(config.token.settings(), env_pin).await?;
    let opener = Opener::load(pool.clone(), &config.wrapping_key_label)
        .await
        .with_context(|| format!("cannot read wrapping keys {:?}", config.wrapping_key_label))?;
    let jwks_ca = match &config.manager_jwks_ca {
        Some(ca) => ca.clone(),
        None => required(&config.client_ca, "client-ca")?.clone(),
    };
    let source = JwksSource::new(required(&config.manager_jwks, "manager-jwks")?, &jwks_ca)?;
    let expectations = Expectations {
        algorithms: config.token_algorithms.clone(),
        issuer: config.issuer.clone(),
        audience: config.audience.clone(),
        leeway_seconds: config.leeway_seconds,
    };
    let verifier = TokenVerifier::new(
        source,
        &expectations,
        Duration::from_secs(config.jwks_min_refresh_seconds),
    )
    .await?;
    let cert = required(&config.tls_cert, "tls-cert")?;
    let key = service_kit::token::tls_key(&pool, &config.tls_key_label).await?;
    let (internal_cert, internal_key) = match &config.internal_tls_cert {
        Some(internal) => (
            internal,
            service_kit::token::tls_key(&pool, &config.internal_tls_key_label).await?,
        ),
        None => (cert, key.clone()),
    };
    let public_tls = contract::tls::server_config(cert, key).context("public listener TLS")?;
    let internal_tls = contract::tls::mutual_tls_server_config(
        internal_cert,
        internal_key,
        required(&config.client_ca, "client-ca")?,
        &config.manager_client_name,
    )
    .context("internal listener TLS")?;
    // Storage last: a start-up that fails on the token or TLS never creates or migrates a database.
    let store = crate::storage::open(&config.database_url)
        .await
        .with_context(|| format!("cannot open database {}", redact_url(&config.database_url)))?;

    let jwks_interval = Duration::from_secs(config.jwks_refresh_seconds.max(1));
    tokio::spawn(sweep_forever(
        store.clone(),
        Duration::from_secs(config.sweep_interval_seconds.max(1)),
    ));
    let state = Arc::new(AppState {
        verifier,
        store,
        opener,
        pool,
    });
    tokio::spawn(refresh_jwks_forever(state.clone(), jwks_interval));
    tokio::spawn(refresh_wrapping_keys_forever(
        state.clone(),
        Duration::from_secs(config.key_refresh_seconds.max(1)),
    ));
    tracing::info!(kid = %state.opener.kid(), token = %config.token.token_label, "vault ready");

    let (public_handle, internal_handle) = (Handle::new(), Handle::new());
    let public = service_kit::serve::serve_https(
        "public",
        config.listen_public,
        public_tls,
        public_app(state.clone(), config.rate_limit.limiter()),
        public_handle.clone(),
    )
    .await?;
    let internal = service_kit::serve::serve_https(
        "internal",
        config.listen_internal,
        internal_tls,
        internal_app(state, config.max_envelope_bytes),
        internal_handle.clone(),
    )
    .await?;
    tokio::spawn(service_kit::serve::shutdown_on_signal(vec![
        public_handle,
        internal_handle,
    ]));
    let (a, b) = tokio::join!(public.stopped(), internal.stopped());
    a?;
    b?;
    Ok(())
}

/// Purges expired secrets (auditing each) and stale revocations every `interval`.
/// Failures are logged and retried at the next tick; reads never serve expired rows anyway.
async fn sweep_forever(store: Arc<dyn Store>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.sweep(crate::state::unix_now()).await {
            Ok(swept) if swept.secrets + swept.revocations > 0 => {
                tracing::info!(
                    secrets = swept.secrets,
                    revocations = swept.revocations,
                    "swept expired entries"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %service_kit::report::error_chain(&e), "sweep failed"),
        }
    }
}

/// Re-fetches manager's JWKS every `interval` (picks up rotations and retirements),
/// and every second while no key has loaded yet (manager started after vault).
async fn refresh_jwks_forever(state: Arc<AppState>, interval: Duration) {
    loop {
        let wait = if state.verifier.has_keys() {
            interval
        } else {
            Duration::from_secs(1)
        };
        tokio::time::sleep(wait).await;
        if let Err(e) = state.verifier.refresh().await {
            tracing::warn!(error = %service_kit::report::error_chain(&e), "JWKS refresh failed; keeping the previous keys");
        }
    }
}

/// Re-reads the wrapping keys every `interval`, so a rotation or retirement done with
/// `vault-admin` takes effect without a restart.
async fn refresh_wrapping_keys_forever(state: Arc<AppState>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let before = state.opener.kid();
        match state.opener.refresh().await {
            Ok(()) if state.opener.kid() != before => tracing::info!(kid = %state.opener.kid(), "wrapping key changed"),
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %service_kit::report::error_chain(&e), "cannot refresh wrapping keys"),
        }
    }
}

/// The URL without a password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}
