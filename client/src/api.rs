//! The four API calls over HTTPS, and reading their answers into bodies or [`Error`]s.

use std::time::Duration;

use contract::error_code::ErrorCode;
use contract::wire::{DestroyResponse, ErrorBody, RevokeResponse, StoreKeyResponse};
use reqwest::{Certificate, Method, RequestBuilder, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config::Settings;
use crate::error::{Error, Service, UsageError, printable};

/// How long one request may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(30);

/// `POST /api/keys`. contract's `StoreKeyRequest` only deserializes (it is manager's
/// input), so the client writes its own.
#[derive(Serialize)]
pub struct StoreRequest<'a> {
    /// Owner.
    pub user_id: &'a str,
    /// The secret.
    pub key_data: &'a str,
    /// Lifetime, seconds; the server's default when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// Reads before vault destroys the secret; unlimited when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_reads: Option<u32>,
}

/// `200` of `GET /api/keys/{key_id}`, owning the secret (wiped on drop). contract's
/// `ReadKeyResponse` borrows a `&str`, which fails on any secret JSON has to escape (`"`,
/// `\`, a newline).
#[derive(Deserialize)]
pub struct ReadBody {
    /// The secret.
    pub decrypted_key: Zeroizing<String>,
}

/// A successful answer: its parsed body and the bytes (for `--json`), wiped on drop.
pub struct Answer<T> {
    /// The parsed body.
    pub value: T,
    /// The body as received.
    pub raw: Zeroizing<Vec<u8>>,
}

/// The two services, reached over HTTPS that trusts only the configured CAs.
pub struct Api {
    http: reqwest::Client,
    manager: Url,
    vault: Url,
}

impl Api {
    /// A client for `settings`: https only, no redirects (a bearer token must go nowhere
    /// else), `--ca`'s certificates as the only roots when given.
    pub fn new(settings: &Settings) -> Result<Self, Error> {
        let mut builder = reqwest::Client::builder()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .user_agent(concat!("secret-store/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &settings.ca {
            let ca_problem = |problem, source: Option<Box<dyn std::error::Error + Send + Sync>>| UsageError::Ca {
                path: path.clone(),
                problem,
                source,
            };
            let pem = std::fs::read(path).map_err(|e| ca_problem("cannot read it", Some(Box::new(e))))?;
            let certs = Certificate::from_pem_bundle(&pem).map_err(|e| ca_problem("not PEM", Some(Box::new(e))))?;
            if certs.is_empty() {
                return Err(ca_problem("no certificate in it", None).into());
            }
            builder = builder.tls_certs_only(certs);
        }
        let http = builder.build().map_err(Error::Setup)?;
        Ok(Self {
            http,
            manager: settings.manager_url.clone(),
            vault: settings.vault_url.clone(),
        })
    }

    /// Stores a secret at manager.
    pub async fn store(&self, request: &StoreRequest<'_>) -> Result<Answer<StoreKeyResponse>, Error> {
        let url = endpoint(&self.manager, &["api", "keys"]);
        let request = self.http.post(url).json(request);
        send(Service::Manager, request).await
    }

    /// Reads a secret at vault (counts one read).
    pub async fn read(&self, key_id: &str, token: &str) -> Result<Answer<ReadBody>, Error> {
        let url = endpoint(&self.vault, &["api", "keys", key_id]);
        send(Service::Vault, self.http.get(url).bearer_auth(token)).await
    }

    /// Revokes the token at vault.
    pub async fn revoke(&self, token: &str) -> Result<Answer<RevokeResponse>, Error> {
        let url = endpoint(&self.vault, &["api", "tokens", "revoke"]);
        send(Service::Vault, self.http.post(url).bearer_auth(token)).await
    }

    /// Destroys a secret at vault.
    pub async fn delete(&self, key_id: &str, token: &str) -> Result<Answer<DestroyResponse>, Error> {
        let url = endpoint(&self.vault, &["api", "keys", key_id]);
        send(
            Service::Vault,
            self.http.request(Method::DELETE, url).bearer_auth(token),
        )
        .await
    }
}

/// `base` with `segments` appended to its path, each percent-encoded as one segment.
fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// Sends `request`; a 2xx body parses as `T`, anything else becomes [`Error::Api`].
async fn send<T: DeserializeOwned>(service: Service, request: RequestBuilder) -> Result<Answer<T>, Error> {
    let unreachable = |source: reqwest::Error| {
        if is_tls_failure(&source) {
            Error::Tls { service, source }
        } else {
            Error::Unreachable { service, source }
        }
    };
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    let raw = Zeroizing::new(response.bytes().await.map_err(unreachable)?.to_vec());
    if status.is_success() {
        let value = serde_json::from_slice(&raw).map_err(|source| Error::Unexpected {
            service,
            status: status.as_u16(),
            source,
        })?;
        return Ok(Answer { value, raw });
    }
    let (code, message) = match serde_json::from_slice::<ErrorBody>(&raw) {
        Ok(body) => (body.error.code, printable(&body.error.message)),
        Err(_) => (
            ErrorCode::Unknown,
            format!(
                "no API error body ({})",
                status.canonical_reason().unwrap_or("unknown status")
            ),
        ),
    };
    Err(Error::Api {
        service,
        status: status.as_u16(),
        code,
        message,
    })
}

/// Whether rustls refused somewhere in `error`'s chain. tokio-rustls hands rustls's error
/// up inside `io::Error`s (nested, in hyper-util's connector), whose `source()` skips the
/// error they wrap, so the walk goes through `get_ref()` there.
fn is_tls_failure(error: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = cause {
        if error.is::<rustls::Error>() {
            return true;
        }
        cause = match error.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_a_base_path_and_encode_the_key_id_as_one_segment() {
        let base = Url::parse("https://h:1/prefix/").expect("url");
        assert_eq!(
            endpoint(&base, &["api", "keys"]).as_str(),
            "https://h:1/prefix/api/keys"
        );
        let root = Url::parse("https://h:1").expect("url");
        assert_eq!(
            endpoint(&root, &["api", "keys", "a/../b"]).as_str(),
            "https://h:1/api/keys/a%2F..%2Fb"
        );
    }

    #[test]
    fn a_secret_json_must_escape_reads_back_whole() {
        let body: ReadBody = serde_json::from_str(r#"{"decrypted_key":"a\"b\\c\nd"}"#).expect("parses");
        assert_eq!(body.decrypted_key.as_str(), "a\"b\\c\nd");
    }

    #[test]
    fn the_store_body_omits_unset_limits() {
        let body = StoreRequest {
            user_id: "alice",
            key_data: "s",
            ttl_seconds: None,
            max_reads: Some(1),
        };
        assert_eq!(
            serde_json::to_string(&body).expect("serializes"),
            r#"{"user_id":"alice","key_data":"s","max_reads":1}"#
        );
    }
}
