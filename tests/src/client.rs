//! Talking to the services as a user does: HTTPS trusting only the dev CA, the API's
//! requests, and reading its answers.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use contract::error_code::ErrorCode;
use contract::wire::StoreKeyResponse;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::dev::dev_dir;

/// A status and a JSON body (Null when the body is not JSON).
pub type Answer = (StatusCode, Value);

/// An HTTPS client trusting only the dev CA, presenting `identity` (certificate chain file
/// and its key) when given.
pub fn https_client(identity: Option<(&Path, Arc<dyn rustls::sign::SigningKey>)>) -> Result<reqwest::Client> {
    let tls = service_kit::tls::client_config(&dev_dir()?.join("tls/ca.pem"), identity)?;
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// Status and JSON body of a response.
pub async fn answer(response: reqwest::Response) -> Result<Answer> {
    let status = response.status();
    let bytes = response.bytes().await?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// Asserts the contract's error shape (a code and a message) and returns the code.
pub fn error_code(body: &Value) -> Result<ErrorCode> {
    let code = body["error"]["code"]
        .as_str()
        .ok_or_else(|| anyhow!("not an error body: {body}"))?;
    body["error"]["message"]
        .as_str()
        .ok_or_else(|| anyhow!("error body without message: {body}"))?;
    Ok(ErrorCode::from_wire(code))
}

/// The JSON of part `index` (0 header, 1 payload) of a compact JWS/JWE.
pub fn compact_part(token: &str, index: usize) -> Result<Value> {
    use base64::Engine;
    let part = token.split('.').nth(index).ok_or_else(|| anyhow!("no part {index}"))?;
    Ok(serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part)?,
    )?)
}

/// `GET /api/keys/{key_id}` at the vault listening on `vault` with an optional
/// `Authorization` header value.
pub async fn read_at(
    http: &reqwest::Client,
    vault: SocketAddr,
    key_id: &str,
    authorization: Option<&str>,
) -> Result<Answer> {
    let mut request = http.get(format!("https://{vault}/api/keys/{key_id}"));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    answer(request.send().await?).await
}

/// A user of the system: stores secrets at manager, reads, destroys and revokes at a vault.
#[derive(Clone)]
pub struct Client {
    /// The HTTPS client (trusting the dev CA).
    pub http: reqwest::Client,
    manager: SocketAddr,
}

impl Client {
    /// A client of the manager listening on `manager`.
    pub fn new(manager: SocketAddr) -> Result<Self> {
        Ok(Self {
            http: https_client(None)?,
            manager,
        })
    }

    /// `https://<manager>/<path>`.
    pub fn manager_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.manager)
    }

    /// `POST /api/keys` with a JSON body; any status.
    pub async fn post_keys(&self, body: &Value) -> Result<Answer> {
        answer(self.http.post(self.manager_url("/api/keys")).json(body).send().await?).await
    }

    /// `POST /api/keys` with `body`, insisting on `201`.
    pub async fn store_json(&self, body: &Value) -> Result<StoreKeyResponse> {
        let (status, answer) = self.post_keys(body).await?;
        if status != StatusCode::CREATED {
            bail!("store answered {status}: {answer}");
        }
        Ok(serde_json::from_value(answer)?)
    }

    /// Stores `key_data` for `user_id`, insisting on `201`.
    pub async fn store(&self, user_id: &str, key_data: &str) -> Result<StoreKeyResponse> {
        self.store_json(&json!({"user_id": user_id, "key_data": key_data}))
            .await
    }

    /// `GET /api/keys/{key_id}` at `vault` with the access token.
    pub async fn read(&self, vault: SocketAddr, key_id: &str, token: &str) -> Result<Answer> {
        read_at(&self.http, vault, key_id, Some(&format!("Bearer {token}"))).await
    }

    /// `DELETE /api/keys/{key_id}` at `vault` with the access token.
    pub async fn destroy(&self, vault: SocketAddr, key_id: &str, token: &str) -> Result<Answer> {
        let url = format!("https://{vault}/api/keys/{key_id}");
        answer(self.http.delete(url).bearer_auth(token).send().await?).await
    }

    /// `POST /api/tokens/revoke` at `vault` with the access token.
    pub async fn revoke(&self, vault: SocketAddr, token: &str) -> Result<Answer> {
        let url = format!("https://{vault}/api/tokens/revoke");
        answer(self.http.post(url).bearer_auth(token).send().await?).await
    }
}
