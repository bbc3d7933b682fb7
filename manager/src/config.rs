//! manager's configuration: every option has a default or is required, an environment
//! variable (`MANAGER_*`, see [`SERVICE`]) and a key in the TOML file given with
//! `--config` (see `config/manager.example.toml`).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::key_wrap::KeyWrapChoice;
use clap::{Args, Parser};
use contract::claims::JwsAlgorithm;
use service_kit::config::Service;
use service_kit::connections::ConnectionOptions;
use service_kit::logging::LogFormat;
use service_kit::rate_limit::RateLimitOptions;
use service_kit::token::TokenOptions;

/// manager's name, environment-variable prefix and default token label.
pub const SERVICE: Service = Service {
    name: "manager",
    env_prefix: "MANAGER",
};

/// manager (App A): seals secrets for vault and issues access tokens signed in its token.
#[derive(Debug, Clone, Parser)]
#[command(name = "manager", version, args_override_self = true)]
pub struct Config {
    /// HTTPS API address. Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,

    /// The token: module, label, PIN file, sessions and time bounds.
    #[command(flatten)]
    pub token: TokenOptions,

    /// The signing keys.
    #[command(flatten)]
    pub signing: SigningKeyOptions,
    /// How often the signing keys are re-read from the token (to pick up
    /// `manager-admin rotate-signing-key` / `retire-signing-key`), in seconds.
    #[arg(long, default_value_t = 30)]
    pub key_refresh_seconds: u64,

    /// Server certificate chain (PEM).
    #[arg(long)]
    pub tls_cert: PathBuf,
    /// Label of the server certificate's private key in the token (ECDSA P-256 or RSA), or
    /// a PKCS#11 URI with `object=`; TLS handshakes are signed inside the token.
    #[arg(long, default_value = "manager-tls")]
    pub tls_key_label: String,

    /// Base URL of vault's internal (mutual-TLS) listener.
    #[arg(long, default_value = "https://127.0.0.1:8002")]
    pub vault_url: String,
    /// CA (PEM) that issued vault's server certificate.
    #[arg(long)]
    pub vault_ca: PathBuf,
    /// Name (SAN) vault's internal certificate must carry, whatever host `vault_url` names:
    /// another certificate from the same CA (manager's own, say) is refused.
    #[arg(long, default_value = "vault.internal")]
    pub vault_server_name: String,
    /// Client certificate (PEM) presented to vault's internal listener.
    #[arg(long)]
    pub client_cert: PathBuf,
    /// Label of the client certificate's private key in the token, or a PKCS#11 URI with
    /// `object=`.
    #[arg(long, default_value = "manager-client-tls")]
    pub client_key_label: String,
    /// vault's public wrapping key as a JWK file (exported at provisioning). When unset,
    /// manager asks vault's internal API for its current key and re-asks every
    /// `key_refresh_seconds`, which is what makes wrapping-key rotation reach manager.
    #[arg(long)]
    pub vault_public_key: Option<PathBuf>,
    /// Content-key wrapping: `auto` (the `alg` vault publishes with its wrapping key: the
    /// OAEP its token opens, RSA-OAEP-256 where it does SHA-256), or RSA-OAEP (SHA-1; the
    /// only one SoftHSM2 2.6.1 opens) or RSA-OAEP-256 to force one.
    #[arg(long, default_value = "auto")]
    pub key_wrap: KeyWrapChoice,
    /// Bound on one call to vault, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub vault_timeout_ms: u64,

    /// `iss` of issued tokens: manager's public URL.
    #[arg(long, default_value = "https://127.0.0.1:8000")]
    pub issuer: String,
    /// `aud` of issued tokens: vault's audience.
    #[arg(long, default_value = "vault")]
    pub audience: String,
    /// Token lifetime when the request gives no `ttl_seconds`, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub default_ttl_seconds: u64,
    /// Largest `ttl_seconds` accepted, in seconds.
    #[arg(long, default_value_t = 86_400)]
    pub max_ttl_seconds: u64,
    /// Largest `max_reads` accepted.
    #[arg(long, default_value_t = 1000)]
    pub max_reads_limit: u32,
    /// Largest secret (`key_data`, UTF-8 bytes) accepted; larger gets 413.
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_secret_bytes: usize,

    /// Per-client request limits on `POST /api/keys`.
    #[command(flatten)]
    pub rate_limit: RateLimitOptions,

    /// Connection limits and timeouts of its listener.
    #[command(flatten)]
    pub connections: ConnectionOptions,

    /// Log lines on stderr: `text` (for people) or `json` (one JSON object a line, for log
    /// collectors). Default `text`.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// manager's signing keys and how they sign; `manager-admin` shares the options.
#[derive(Debug, Clone, Args)]
pub struct SigningKeyOptions {
    /// Label of the RSA key pair that signs access tokens, or a PKCS#11 URI with
    /// `object=`; rotated generations are labelled `<label>.1`, `<label>.2`, ... and the
    /// newest signs.
    #[arg(long, default_value = "manager-signing")]
    pub signing_key_label: String,
    /// Token signature algorithm: RS256 or PS256.
    #[arg(long, default_value = "RS256")]
    pub signing_algorithm: JwsAlgorithm,
    /// If set (comma-separated), only the signing-key generations with these kids are used
    /// and published: a key made in the token, even with the PIN, signs nothing until it is
    /// listed here. Empty: every usable generation.
    #[arg(long, value_delimiter = ',')]
    pub signing_kids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use service_kit::config::{ConfigError, parse_layered_from};

    use super::{Config, SERVICE};

    /// Keeps `config/manager.example.toml` and the options in step.
    #[test]
    fn the_example_config_documents_exactly_the_options() {
        let example = include_str!("../../config/manager.example.toml");
        assert_eq!(service_kit::config::check_documented::<super::Config>(example), Ok(()));
    }

    /// manager's configuration from the required options and `extra`.
    fn parse(extra: &[&str]) -> Result<Config, ConfigError> {
        let required = [
            "manager",
            "--tls-cert",
            "/t.pem",
            "--vault-ca",
            "/ca.pem",
            "--client-cert",
            "/c.pem",
        ];
        parse_layered_from(SERVICE, required.iter().chain(extra).map(Into::into).collect(), None)
    }

    #[test]
    fn the_token_and_every_key_option_take_pkcs11_uris_and_hold_plain_values() -> Result<(), ConfigError> {
        let config = parse(&[
            "--token-label",
            "pkcs11:token=manager?pin-source=/etc/manager.pin",
            "--signing-key-label",
            "pkcs11:object=manager-signing;type=private",
            "--tls-key-label",
            "pkcs11:token=manager;object=manager-tls?pin-source=file:///etc/manager.pin",
            "--client-key-label",
            "pkcs11:object=manager-client-tls",
        ])?;
        assert_eq!(config.token.token_label, "manager");
        assert_eq!(config.token.pkcs11_module, Path::new("/usr/lib/softhsm/libsofthsm2.so"));
        assert_eq!(config.token.pin_file.as_deref(), Some(Path::new("/etc/manager.pin")));
        assert_eq!(config.signing.signing_key_label, "manager-signing");
        assert_eq!(config.tls_key_label, "manager-tls");
        assert_eq!(config.client_key_label, "manager-client-tls");
        Ok(())
    }

    #[test]
    fn a_key_uri_for_a_certificate_is_refused_naming_the_option() {
        let result = parse(&["--client-key-label", "pkcs11:object=manager-client-tls;type=cert"]);
        assert!(
            matches!(&result, Err(ConfigError::Pkcs11Uri { option, source: hsm::NameError::NotPrivateKey { .. } })
                if option == "client_key_label"),
            "{result:?}"
        );
    }
}
