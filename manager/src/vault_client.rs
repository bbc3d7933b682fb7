//! manager's client for vault's internal API, over mutual TLS.

use std::time::Duration;

use contract::error_code::ErrorCode;
use contract::wire::{ErrorBody, StoreEnvelopeRequest};
use reqwest::StatusCode;

/// Why vault did not store an envelope.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// No answer: connection refused, TLS failure, timeout.
    #[error("vault is unreachable")]
    Unreachable(#[source] reqwest::Error),
    /// vault answered 5xx (its token or database is down).
    #[error("vault is unavailable (HTTP {0})")]
    Unavailable(StatusCode),
    /// vault's wrapping key is unusable.
    #[error("vault's wrapping key is unusable")]
    BadKey(#[source] contract::envelope::EnvelopeError),
    /// vault refused the request (4xx): a bug or misconfiguration on one side.
    #[error("vault refused the envelope (HTTP {status}, {code})")]
    Rejected {
        /// vault's status.
        status: StatusCode,
        /// vault's error code.
        code: ErrorCode,
    },
}

/// How long an unused connection to vault stays pooled.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// Talks to vault's internal listener with manager's client certificate.
pub struct VaultClient {
    http: reqwest::Client,
    base_url: String,
}

impl VaultClient {
    /// `tls` must trust vault's CA and present manager's client certificate.
    pub fn new(base_url: &str, tls: rustls::ClientConfig, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(timeout)
            .connect_timeout(timeout)
            // Under vault's default idle bound (60 s), so that manager drops a pooled
            // connection before vault closes it under a request in flight.
            .pool_idle_timeout(POOL_IDLE)
            .build()?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// Stores an envelope; returns once vault has committed it (201, or 200 for a retry
    /// of the identical envelope).
    pub async fn store(&self, key_id: &str, request: &StoreEnvelopeRequest) -> Result<(), VaultError> {
        let response = self
            .http
            .put(format!("{}/internal/keys/{key_id}", self.base_url))
            .json(request)
            .send()
            .await
            .map_err(VaultError::Unreachable)?;
        let status = response.status();
        if status == StatusCode::CREATED || status == StatusCode::OK {
            return Ok(());
        }
        if status.is_server_error() {
            return Err(VaultError::Unavailable(status));
        }
        let code = response
            .json::<ErrorBody>()
            .await
            .map_or(ErrorCode::Unknown, |b| b.error.code);
        Err(VaultError::Rejected { status, code })
    }

    /// vault's current wrapping key.
    pub async fn wrapping_key(&self) -> Result<contract::jwk::Jwk, VaultError> {
        let response = self
            .http
            .get(format!("{}/internal/wrapping-key", self.base_url))
            .send()
            .await
            .map_err(VaultError::Unreachable)?;
        if !response.status().is_success() {
            return Err(VaultError::Unavailable(response.status()));
        }
        response.json().await.map_err(VaultError::Unreachable)
    }

    /// Whether vault's internal listener answers (and accepts our certificate).
    pub async fn check(&self) -> Result<(), VaultError> {
        let response = self
            .http
            .get(format!("{}/internal/healthz", self.base_url))
            .send()
            .await
            .map_err(VaultError::Unreachable)?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(VaultError::Unavailable(response.status()))
        }
    }
}
