//! Where vault learns manager's public signing keys: a JWK/JWKS file, or manager's
//! `/.well-known/jwks.json` over TLS verified against a configured CA.

use std::path::PathBuf;
use std::time::Duration;

use contract::jwk::{Jwk, JwkSet};

/// Why the key set could not be fetched; the previous keys stay in use.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// File path.
        path: PathBuf,
        /// I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The URL did not answer 200.
    #[error("cannot fetch {url}")]
    Fetch {
        /// The URL.
        url: String,
        /// HTTP or TLS error.
        #[source]
        source: reqwest::Error,
    },
    /// Not a JWK or JWK Set.
    #[error("not a JWK or JWK Set")]
    Parse(#[source] serde_json::Error),
    /// An empty set would lock every token out; refused.
    #[error("the key set is empty")]
    Empty,
}

/// Why a JWKS source could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum JwksSourceError {
    /// `manager_jwks` is a plain-HTTP URL: the keys that decide which tokens are genuine
    /// must come over TLS.
    #[error("manager_jwks must use https, not http")]
    PlainHttp,
    /// The CA for the URL's server is unusable.
    #[error("manager_jwks_ca")]
    Tls(#[from] service_kit::tls::TlsError),
    /// The HTTP client could not be built.
    #[error("cannot build the JWKS client")]
    Client(#[from] reqwest::Error),
}

/// A source of manager's JWKS.
pub enum JwksSource {
    /// A JWK or JWK Set file, re-read on each refresh.
    File(PathBuf),
    /// An HTTPS URL, fetched with a client that trusts only the configured CA.
    Url {
        /// Full URL of the JWKS.
        url: String,
        /// The client.
        client: reqwest::Client,
    },
}

impl JwksSource {
    /// `location` is an `https://` URL or a file path; `ca` verifies the URL's server.
    pub fn new(location: &str, ca: &std::path::Path) -> Result<Self, JwksSourceError> {
        if location.starts_with("https://") {
            let tls = service_kit::tls::client_config(ca, None)?;
            let client = reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .timeout(Duration::from_secs(10))
                .build()?;
            Ok(JwksSource::Url {
                url: location.to_owned(),
                client,
            })
        } else if location.starts_with("http://") {
            Err(JwksSourceError::PlainHttp)
        } else {
            Ok(JwksSource::File(PathBuf::from(location)))
        }
    }

    /// Fetches the current set.
    pub async fn fetch(&self) -> Result<JwkSet, JwksError> {
        let text = match self {
            JwksSource::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|source| JwksError::Read {
                    path: path.clone(),
                    source,
                })?,
            JwksSource::Url { url, client } => {
                let fetch_error = |source| JwksError::Fetch {
                    url: url.clone(),
                    source,
                };
                client
                    .get(url)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(fetch_error)?
                    .text()
                    .await
                    .map_err(fetch_error)?
            }
        };
        let set = match serde_json::from_str::<JwkSet>(&text) {
            Ok(set) => set,
            Err(_) => JwkSet {
                keys: vec![serde_json::from_str::<Jwk>(&text).map_err(JwksError::Parse)?],
            },
        };
        if set.keys.is_empty() {
            return Err(JwksError::Empty);
        }
        Ok(set)
    }

    /// For logs.
    pub fn describe(&self) -> String {
        match self {
            JwksSource::File(path) => path.display().to_string(),
            JwksSource::Url { url, .. } => url.clone(),
        }
    }
}
