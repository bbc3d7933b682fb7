//! vault's configuration: every option has a default or is required, an environment
//! variable (`VAULT_*`, see [`SERVICE`]) and a key in the TOML file given with `--config`
//! (see `config/vault.example.toml`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser};
use contract::claims::JwsAlgorithm;
use service_kit::config::Service;
use service_kit::connections::ConnectionOptions;
use service_kit::logging::LogFormat;
use service_kit::rate_limit::RateLimitOptions;
use service_kit::token::TokenOptions;

/// vault's name, environment-variable prefix and default token label.
pub const SERVICE: Service = Service {
    name: "vault",
    env_prefix: "VAULT",
};

/// vault (App B): stores sealed secrets and releases them to holders of manager's tokens.
#[derive(Debug, Clone, Parser)]
#[command(name = "vault", version, args_override_self = true)]
pub struct Config {
    /// Public HTTPS API address (`GET /api/keys/{key_id}`). Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8001")]
    pub listen_public: SocketAddr,
    /// Internal mutual-TLS API address (`PUT /internal/keys/{key_id}`), for manager only.
    #[arg(long, default_value = "127.0.0.1:8002")]
    pub listen_internal: SocketAddr,

    /// The token: module, label, PIN file, sessions and time bounds.
    #[command(flatten)]
    pub token: TokenOptions,
    /// The wrapping keys.
    #[command(flatten)]
    pub wrapping: WrappingKeyOptions,
    /// How often the wrapping keys are re-read from the token (rotation), in seconds.
    #[arg(long, default_value_t = 30)]
    pub key_refresh_seconds: u64,

    /// Server certificate chain (PEM) of the public listener (and of the internal one
    /// unless `internal_tls_cert` is set).
    #[arg(long)]
    pub tls_cert: PathBuf,
    /// Label of that certificate's private key in the token (ECDSA P-256 or RSA), or a
    /// PKCS#11 URI with `object=`; TLS handshakes are signed inside the token.
    #[arg(long, default_value = "vault-tls")]
    pub tls_key_label: String,
    /// Server certificate chain (PEM) of the internal listener, when it has its own key.
    #[arg(long)]
    pub internal_tls_cert: Option<PathBuf>,
    /// Label of the internal listener's private key in the token, or a PKCS#11 URI with
    /// `object=` (used with `internal_tls_cert`).
    #[arg(long, default_value = "vault-internal-tls")]
    pub internal_tls_key_label: String,
    /// CA (PEM) that issued manager's client certificate.
    #[arg(long)]
    pub client_ca: PathBuf,
    /// Name (SAN) manager's client certificate must carry; other certificates from the
    /// same CA are refused.
    #[arg(long, default_value = "manager.internal")]
    pub manager_client_name: String,

    /// manager's public signing keys: a JWK or JWK Set file, or manager's
    /// `https://…/.well-known/jwks.json` (verified against `manager_jwks_ca`).
    #[arg(long)]
    pub manager_jwks: String,
    /// CA (PEM) that issued manager's server certificate, for an https `manager_jwks`;
    /// defaults to `client_ca`.
    #[arg(long)]
    pub manager_jwks_ca: Option<PathBuf>,
    /// How often manager's JWKS is re-fetched, in seconds.
    #[arg(long, default_value_t = 300)]
    pub jwks_refresh_seconds: u64,
    /// Least time between two fetches caused by tokens with unknown `kid`s, in seconds.
    #[arg(long, default_value_t = 10)]
    pub jwks_min_refresh_seconds: u64,
    /// Required `iss` of access tokens.
    #[arg(long, default_value = "https://127.0.0.1:8000")]
    pub issuer: String,
    /// Required `aud` of access tokens.
    #[arg(long, default_value = "vault")]
    pub audience: String,
    /// Accepted token signature algorithms, comma-separated (RS256, PS256). The token
    /// header's `alg` must be one of these; it is never trusted on its own.
    #[arg(long, default_value = "RS256", value_delimiter = ',')]
    pub token_algorithms: Vec<JwsAlgorithm>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    #[arg(long, default_value_t = 5)]
    pub leeway_seconds: u64,

    /// Storage.
    #[command(flatten)]
    pub storage: StorageOptions,
    /// How often expired secrets and stale revocations are purged, in seconds. Expired
    /// secrets are never served, swept or not.
    #[arg(long, default_value_t = 60)]
    pub sweep_interval_seconds: u64,
    /// Largest internal store request accepted, in bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    pub max_envelope_bytes: usize,

    /// The audit trail's signed checkpoints.
    #[command(flatten)]
    pub audit: AuditOptions,

    /// Per-client request limits on the public API (`/api/keys/…`, `/api/tokens/revoke`).
    #[command(flatten)]
    pub rate_limit: RateLimitOptions,

    /// Connection limits and timeouts of each of its two listeners.
    #[command(flatten)]
    pub connections: ConnectionOptions,

    /// Log lines on stderr: `text` (for people) or `json` (one JSON object a line, for log
    /// collectors). Default `text`.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// vault's wrapping keys; `vault-admin` shares the option.
#[derive(Debug, Clone, Args)]
pub struct WrappingKeyOptions {
    /// Label of the RSA key pair that unwraps content keys, or a PKCS#11 URI with
    /// `object=`; rotated generations are `<label>.1`, `<label>.2`, ... and the newest is
    /// the one manager seals to.
    #[arg(long, default_value = "vault-wrapping")]
    pub wrapping_key_label: String,
    /// If set (comma-separated), only the wrapping-key generations with these kids are
    /// used: manager seals to the newest of them and rows wrapped to any other do not open.
    /// A key made in the token, even with the PIN, is not used until it is listed here.
    /// Empty: every usable generation.
    #[arg(long, value_delimiter = ',')]
    pub wrapping_kids: Vec<String>,
}

/// Where vault keeps its rows; `vault-admin` shares the option.
#[derive(Debug, Clone, Args)]
pub struct StorageOptions {
    /// Storage: `sqlite://PATH` (embedded; created if missing; WAL, synchronous=FULL) or
    /// `postgres://USER@HOST:PORT/DB` (shared by several vault replicas). The password, if
    /// any, belongs in `PGPASSWORD`/`.pgpass`, not in this URL.
    #[arg(long, default_value = "sqlite://vault.db")]
    pub database_url: String,
}

/// When vault signs checkpoints of its audit chain, and with which key.
#[derive(Debug, Clone, Args)]
pub struct AuditOptions {
    /// The signing key.
    #[command(flatten)]
    pub key: AuditKeyOptions,
    /// A checkpoint is signed once this many audit records are not covered by one (at
    /// least 1).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub audit_checkpoint_records: u64,
    /// A checkpoint is signed once the oldest audit record not covered by one is this many
    /// seconds old (at least 1): no record stays unsigned much longer, however quiet vault is.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub audit_checkpoint_seconds: u64,
}

/// vault's audit key; `vault-admin audit-verify` shares the option.
#[derive(Debug, Clone, Args)]
pub struct AuditKeyOptions {
    /// Label of the sign-only RSA key in the token that signs audit checkpoints (RS256), or
    /// a PKCS#11 URI with `object=`; vault does not start without it. Generations
    /// `<label>.1`, ... are verified too.
    #[arg(long, default_value = "vault-audit")]
    pub audit_key_label: String,
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use service_kit::config::{ConfigError, parse_layered_from};

    use super::{Config, SERVICE};

    /// Keeps `config/vault.example.toml` and the options in step.
    #[test]
    fn the_example_config_documents_exactly_the_options() {
        let example = include_str!("../../config/vault.example.toml");
        assert_eq!(service_kit::config::check_documented::<super::Config>(example), Ok(()));
    }

    /// vault's configuration from the required options and `extra`.
    fn parse(extra: &[&str]) -> Result<Config, ConfigError> {
        let required = [
            "vault",
            "--tls-cert",
            "/t.pem",
            "--client-ca",
            "/ca.pem",
            "--manager-jwks",
            "/j.json",
        ];
        parse_layered_from(SERVICE, required.iter().chain(extra).map(Into::into).collect(), None)
    }

    #[test]
    fn the_token_and_every_key_option_take_pkcs11_uris_and_hold_plain_values() -> Result<(), ConfigError> {
        let config = parse(&[
            "--token-label",
            "pkcs11:token=vault?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/vault.pin",
            "--wrapping-key-label",
            "pkcs11:object=vault-wrapping;type=private",
            "--audit-key-label",
            "pkcs11:token=vault;object=vault-audit",
            "--tls-key-label",
            "pkcs11:object=vault%20tls",
            "--internal-tls-key-label",
            "plain-internal",
        ])?;
        assert_eq!(config.token.token_label, "vault");
        assert_eq!(config.token.pin_file.as_deref(), Some(Path::new("/etc/vault.pin")));
        assert_eq!(config.wrapping.wrapping_key_label, "vault-wrapping");
        assert_eq!(config.audit.key.audit_key_label, "vault-audit");
        assert_eq!(config.tls_key_label, "vault tls");
        assert_eq!(config.internal_tls_key_label, "plain-internal");
        Ok(())
    }

    #[test]
    fn a_key_uri_of_manager_s_token_is_refused_naming_the_option() {
        let result = parse(&["--wrapping-key-label", "pkcs11:token=manager;object=vault-wrapping"]);
        assert!(
            matches!(&result, Err(ConfigError::Pkcs11Uri { option, source: hsm::NameError::KeyElsewhere { .. } })
                if option == "wrapping_key_label"),
            "{result:?}"
        );
    }
}
