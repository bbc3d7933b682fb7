//! manager's configuration: every option has a default, an environment variable
//! (`MANAGER_*`) and a key in the TOML file given with `--config` (see
//! `config/manager.example.toml`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

service_kit::token_options!("MANAGER", "manager");
service_kit::rate_limit_options!("MANAGER");

/// manager (App A): seals secrets for vault and issues access tokens signed in its token.
#[derive(Debug, Clone, Parser)]
#[command(name = "manager", version, args_override_self = true)]
pub struct Config {
    /// TOML file with defaults for every option below (keys are the option names
    /// with underscores).
    #[arg(long, env = "MANAGER_CONFIG")]
    pub config: Option<PathBuf>,

    /// HTTPS API address. Port 0 picks a free port.
    #[arg(long, env = "MANAGER_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,

    /// The token: module, label, PIN file, sessions and time bounds.
    #[command(flatten)]
    pub token: TokenOptions,

    /// Label of the RSA key pair that signs access tokens; rotated generations are
    /// labelled `<label>.1`, `<label>.2`, ... and the newest signs.
    #[arg(long, env = "MANAGER_SIGNING_KEY_LABEL", default_value = "manager-signing")]
    pub signing_key_label: String,
    /// How often the signing keys are re-read from the token (to pick up
    /// `manager-admin rotate-signing-key` / `retire-signing-key`), in seconds.
    #[arg(long, env = "MANAGER_KEY_REFRESH_SECONDS", default_value_t = 30)]
    pub key_refresh_seconds: u64,
    /// Token signature algorithm: RS256 or PS256.
    #[arg(long, env = "MANAGER_SIGNING_ALGORITHM", default_value = "RS256")]
    pub signing_algorithm: String,

    /// Server certificate chain (PEM).
    #[arg(long, env = "MANAGER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Label of the server certificate's private key in the token (ECDSA P-256 or RSA);
    /// TLS handshakes are signed inside the token.
    #[arg(long, env = "MANAGER_TLS_KEY_LABEL", default_value = "manager-tls")]
    pub tls_key_label: String,

    /// Base URL of vault's internal (mutual-TLS) listener.
    #[arg(long, env = "MANAGER_VAULT_URL", default_value = "https://127.0.0.1:8002")]
    pub vault_url: String,
    /// CA (PEM) that issued vault's server certificate.
    #[arg(long, env = "MANAGER_VAULT_CA")]
    pub vault_ca: Option<PathBuf>,
    /// Client certificate (PEM) presented to vault's internal listener.
    #[arg(long, env = "MANAGER_CLIENT_CERT")]
    pub client_cert: Option<PathBuf>,
    /// Label of the client certificate's private key in the token.
    #[arg(long, env = "MANAGER_CLIENT_KEY_LABEL", default_value = "manager-client-tls")]
    pub client_key_label: String,
    /// vault's public wrapping key as a JWK file (exported at provisioning). When unset,
    /// manager asks vault's internal API for its current key and re-asks every
    /// `key_refresh_seconds`, which is what makes wrapping-key rotation reach manager.
    #[arg(long, env = "MANAGER_VAULT_PUBLIC_KEY")]
    pub vault_public_key: Option<PathBuf>,
    /// Content-key wrapping: RSA-OAEP (SHA-1; the only one SoftHSM2 2.6.1 opens) or
    /// RSA-OAEP-256 (for HSMs that support OAEP with SHA-256).
    #[arg(long, env = "MANAGER_KEY_WRAP", default_value = "RSA-OAEP")]
    pub key_wrap: String,
    /// Bound on one call to vault, in milliseconds.
    #[arg(long, env = "MANAGER_VAULT_TIMEOUT_MS", default_value_t = 10_000)]
    pub vault_timeout_ms: u64,

    /// `iss` of issued tokens: manager's public URL.
    #[arg(long, env = "MANAGER_ISSUER", default_value = "https://127.0.0.1:8000")]
    pub issuer: String,
    /// `aud` of issued tokens: vault's audience.
    #[arg(long, env = "MANAGER_AUDIENCE", default_value = "vault")]
    pub audience: String,
    /// Token lifetime when the request gives no `ttl_seconds`, in seconds.
    #[arg(long, env = "MANAGER_DEFAULT_TTL_SECONDS", default_value_t = 3600)]
    pub default_ttl_seconds: u64,
    /// Largest `ttl_seconds` accepted, in seconds.
    #[arg(long, env = "MANAGER_MAX_TTL_SECONDS", default_value_t = 86_400)]
    pub max_ttl_seconds: u64,
    /// Largest `max_reads` accepted.
    #[arg(long, env = "MANAGER_MAX_READS_LIMIT", default_value_t = 1000)]
    pub max_reads_limit: u32,
    /// Largest secret (`key_data`, UTF-8 bytes) accepted; larger gets 413.
    #[arg(long, env = "MANAGER_MAX_SECRET_BYTES", default_value_t = 64 * 1024)]
    pub max_secret_bytes: usize,

    /// Per-client request limits on `POST /api/keys`.
    #[command(flatten)]
    pub rate_limit: RateLimitOptions,
}

/// A required option that was not given.
#[derive(Debug, thiserror::Error)]
#[error("missing required option --{0} (or its MANAGER_* variable / config key)")]
pub struct Missing(pub &'static str);

/// Returns the value of a required option or names it.
pub fn required<'a, T>(value: &'a Option<T>, name: &'static str) -> Result<&'a T, Missing> {
    value.as_ref().ok_or(Missing(name))
}

#[cfg(test)]
mod tests {
    /// Keeps `config/manager.example.toml`, the options and their `MANAGER_*` variables in step.
    #[test]
    fn the_example_config_documents_exactly_the_options() {
        let example = include_str!("../../config/manager.example.toml");
        assert_eq!(
            service_kit::config::check_documented::<super::Config>(example, "MANAGER"),
            Ok(())
        );
    }
}
