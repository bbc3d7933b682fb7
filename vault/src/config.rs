//! vault's configuration: every option has a default, an environment variable
//! (`VAULT_*`) and a key in the TOML file given with `--config` (see
//! `config/vault.example.toml`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

service_kit::token_options!("VAULT", "vault");
service_kit::rate_limit_options!("VAULT");

/// vault (App B): stores sealed secrets and releases them to holders of manager's tokens.
#[derive(Debug, Clone, Parser)]
#[command(name = "vault", version, args_override_self = true)]
pub struct Config {
    /// TOML file with defaults for every option below (keys are the option names
    /// with underscores).
    #[arg(long, env = "VAULT_CONFIG")]
    pub config: Option<PathBuf>,

    /// Public HTTPS API address (`GET /api/keys/{key_id}`). Port 0 picks a free port.
    #[arg(long, env = "VAULT_LISTEN_PUBLIC", default_value = "127.0.0.1:8001")]
    pub listen_public: SocketAddr,
    /// Internal mutual-TLS API address (`PUT /internal/keys/{key_id}`), for manager only.
    #[arg(long, env = "VAULT_LISTEN_INTERNAL", default_value = "127.0.0.1:8002")]
    pub listen_internal: SocketAddr,

    /// The token: module, label, PIN file, sessions and time bounds.
    #[command(flatten)]
    pub token: TokenOptions,

    /// Label of the RSA key pair that unwraps content keys; rotated generations are
    /// `<label>.1`, `<label>.2`, ... and the newest is the one manager seals to.
    #[arg(long, env = "VAULT_WRAPPING_KEY_LABEL", default_value = "vault-wrapping")]
    pub wrapping_key_label: String,
    /// How often the wrapping keys are re-read from the token (rotation), in seconds.
    #[arg(long, env = "VAULT_KEY_REFRESH_SECONDS", default_value_t = 30)]
    pub key_refresh_seconds: u64,

    /// Server certificate chain (PEM) of the public listener (and of the internal one
    /// unless `internal_tls_cert` is set).
    #[arg(long, env = "VAULT_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Label of that certificate's private key in the token (ECDSA P-256 or RSA); TLS
    /// handshakes are signed inside the token.
    #[arg(long, env = "VAULT_TLS_KEY_LABEL", default_value = "vault-tls")]
    pub tls_key_label: String,
    /// Server certificate chain (PEM) of the internal listener, when it has its own key.
    #[arg(long, env = "VAULT_INTERNAL_TLS_CERT")]
    pub internal_tls_cert: Option<PathBuf>,
    /// Label of the internal listener's private key in the token (used with
    /// `internal_tls_cert`).
    #[arg(long, env = "VAULT_INTERNAL_TLS_KEY_LABEL", default_value = "vault-internal-tls")]
    pub internal_tls_key_label: String,
    /// CA (PEM) that issued manager's client certificate.
    #[arg(long, env = "VAULT_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Name (SAN) manager's client certificate must carry; other certificates from the
    /// same CA are refused.
    #[arg(long, env = "VAULT_MANAGER_CLIENT_NAME", default_value = "manager.internal")]
    pub manager_client_name: String,

    /// manager's public signing keys: a JWK or JWK Set file, or manager's
    /// `https://…/.well-known/jwks.json` (verified against `manager_jwks_ca`).
    #[arg(long, env = "VAULT_MANAGER_JWKS")]
    pub manager_jwks: Option<String>,
    /// CA (PEM) that issued manager's server certificate, for an https `manager_jwks`;
    /// defaults to `client_ca`.
    #[arg(long, env = "VAULT_MANAGER_JWKS_CA")]
    pub manager_jwks_ca: Option<PathBuf>,
    /// How often manager's JWKS is re-fetched, in seconds.
    #[arg(long, env = "VAULT_JWKS_REFRESH_SECONDS", default_value_t = 300)]
    pub jwks_refresh_seconds: u64,
    /// Least time between two fetches caused by tokens with unknown `kid`s, in seconds.
    #[arg(long, env = "VAULT_JWKS_MIN_REFRESH_SECONDS", default_value_t = 10)]
    pub jwks_min_refresh_seconds: u64,
    /// Required `iss` of access tokens.
    #[arg(long, env = "VAULT_ISSUER", default_value = "https://127.0.0.1:8000")]
    pub issuer: String,
    /// Required `aud` of access tokens.
    #[arg(long, env = "VAULT_AUDIENCE", default_value = "vault")]
    pub audience: String,
    /// Accepted token signature algorithms, comma-separated (RS256, PS256). The token
    /// header's `alg` must be one of these; it is never trusted on its own.
    #[arg(long, env = "VAULT_TOKEN_ALGORITHMS", default_value = "RS256", value_delimiter = ',')]
    pub token_algorithms: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    #[arg(long, env = "VAULT_LEEWAY_SECONDS", default_value_t = 5)]
    pub leeway_seconds: u64,

    /// Storage: `sqlite://PATH` (embedded; created if missing; WAL, synchronous=FULL) or
    /// `postgres://USER@HOST:PORT/DB` (shared by several vault replicas). The password, if
    /// any, belongs in `PGPASSWORD`/`.pgpass`, not in this URL.
    #[arg(long, env = "VAULT_DATABASE_URL", default_value = "sqlite://vault.db")]
    pub database_url: String,
    /// How often expired secrets and stale revocations are purged, in seconds. Expired
    /// secrets are never served, swept or not.
    #[arg(long, env = "VAULT_SWEEP_INTERVAL_SECONDS", default_value_t = 60)]
    pub sweep_interval_seconds: u64,
    /// Largest internal store request accepted, in bytes.
    #[arg(long, env = "VAULT_MAX_ENVELOPE_BYTES", default_value_t = 256 * 1024)]
    pub max_envelope_bytes: usize,

    /// Per-client request limits on the public API (`/api/keys/…`, `/api/tokens/revoke`).
    #[command(flatten)]
    pub rate_limit: RateLimitOptions,
}

/// A required option that was not given.
#[derive(Debug, thiserror::Error)]
#[error("missing required option --{0} (or its VAULT_* variable / config key)")]
pub struct Missing(pub &'static str);

/// Returns the value of a required option or names it.
pub fn required<'a, T>(value: &'a Option<T>, name: &'static str) -> Result<&'a T, Missing> {
    value.as_ref().ok_or(Missing(name))
}

#[cfg(test)]
mod tests {
    /// Keeps `config/vault.example.toml`, the options and their `VAULT_*` variables in step.
    #[test]
    fn the_example_config_documents_exactly_the_options() {
        let example = include_str!("../../config/vault.example.toml");
        assert_eq!(
            service_kit::config::check_documented::<super::Config>(example, "VAULT"),
            Ok(())
        );
    }
}
