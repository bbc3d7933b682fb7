//! Building vault from its configuration and serving both listeners until a signal.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::Handle;
use secrecy::SecretString;
use service_kit::keyring::KeyRing;

use crate::access_token::{Expectations, Verifier};
use crate::checkpoint::signer::{AuditKey, Checkpointer, Policy};
use crate::config::{Config, SERVICE};
use crate::jwks::JwksSource;
use crate::opener::Opener;
use crate::storage::Store;
use crate::{AppState, internal_app, public_app};

/// Opens the token, manager's keys, the TLS keys and then the database; serves until SIGINT/SIGTERM.
/// Every start-up failure comes back with context naming what could not be used.
pub async fn run(config: Config, env_pin: Option<SecretString>) -> anyhow::Result<()> {
    let pool = config.token.connect(SERVICE, env_pin).await?;
    let label = &config.wrapping.wrapping_key_label;
    let keys = Arc::new(
        KeyRing::load(
            pool.clone(),
            label,
            hsm::KeyUsage::Decrypt,
            &config.wrapping.wrapping_kids,
        )
        .await
        .with_context(|| format!("cannot read wrapping keys {label:?}"))?,
    );
    let opener = Opener::probe(keys.clone()).await?;
    let audit_key = AuditKey::load(&pool, &config.audit.key.audit_key_label).await?;
    let jwks_ca = config.manager_jwks_ca.as_ref().unwrap_or(&config.client_ca);
    let source = JwksSource::new(&config.manager_jwks, jwks_ca)?;
    let expectations = Expectations {
        algorithms: config.token_algorithms.clone(),
        issuer: config.issuer.clone(),
        audience: config.audience.clone(),
        leeway_seconds: config.leeway_seconds,
    };
    let verifier = Verifier::new(
        source,
        &expectations,
        Duration::from_secs(config.jwks_min_refresh_seconds),
    )
    .await?;
    // Each listener's key its own handshake sessions: a flood on the public port cannot
    // make manager's handshakes on the internal one fail.
    let handshake_sessions = Some(config.connections.handshake_budget());
    let key = service_kit::token::tls_key(&pool, &config.tls_key_label, handshake_sessions).await?;
    let (internal_cert, internal_key) = match &config.internal_tls_cert {
        Some(internal) => (
            internal,
            service_kit::token::tls_key(&pool, &config.internal_tls_key_label, handshake_sessions).await?,
        ),
        None => (&config.tls_cert, key.clone()),
    };
    let public_tls = service_kit::tls::server_config(&config.tls_cert, key).context("public listener TLS")?;
    let internal_tls = service_kit::tls::mutual_tls_server_config(
        internal_cert,
        internal_key,
        &config.client_ca,
        &config.manager_client_name,
    )
    .context("internal listener TLS")?;
    // Storage last: a start-up that fails on the token or TLS never creates or migrates a database.
    let database_url = &config.storage.database_url;
    let store = Store::open(database_url, service_kit::clock::unix_now)
        .await
        .with_context(|| format!("cannot open database {}", redact_url(database_url)))?;
    let checkpoints = Checkpointer::new(
        audit_key,
        store.clone(),
        Policy::from(&config.audit),
        service_kit::clock::unix_now,
    );
    tokio::spawn(checkpoints.run_forever());

    tokio::spawn(
        keys.clone()
            .refresh_forever(Duration::from_secs(config.key_refresh_seconds.max(1)), "wrapping key"),
    );
    let state = Arc::new(AppState {
        verifier,
        store,
        opener,
    });
    tokio::spawn(sweep_forever(
        state.clone(),
        Duration::from_secs(config.sweep_interval_seconds.max(1)),
    ));
    tokio::spawn(refresh_jwks_forever(
        state.clone(),
        Duration::from_secs(config.jwks_refresh_seconds.max(1)),
    ));
    tracing::info!(
        kid = %keys.keys().current().kid,
        token = %config.token.token_label,
        key_wrap = %state.opener.preferred_key_wrap(),
        "vault ready"
    );

    service_kit::connections::check_descriptor_budget(&config.connections, 2);
    let (public_handle, internal_handle) = (Handle::new(), Handle::new());
    let public = service_kit::serve::serve_https(
        "public",
        config.listen_public,
        public_tls,
        &config.connections,
        public_app(state.clone(), config.rate_limit.limiter()),
        public_handle.clone(),
    )
    .await?;
    let internal = service_kit::serve::serve_https(
        "internal",
        config.listen_internal,
        internal_tls,
        &config.connections,
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
async fn sweep_forever(state: Arc<AppState>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match state.store.sweep(service_kit::clock::unix_now()).await {
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
