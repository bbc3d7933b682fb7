//! Everything that can go wrong, and the one mapping from it to an exit code.

use std::fmt;
use std::path::PathBuf;

use contract::error_code::ErrorCode;

/// The process's exit status on failure; `--help` documents each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 1: anything the other groups do not cover.
    Other = 1,
    /// 2: bad arguments, configuration or input, or a request the API calls malformed (clap's
    /// own usage errors exit 2 as well).
    Usage = 2,
    /// 3: no such secret, or it expired, was destroyed or used up its reads.
    Gone = 3,
    /// 4: the token is missing, invalid, expired, revoked or for another secret.
    Refused = 4,
    /// 5: a service is unreachable, rate-limits us or failed; retrying may help.
    Unavailable = 5,
}

impl Exit {
    /// The group of an API error code. `status` only decides for a code this build does not
    /// know (a newer server's) or an error answer without our JSON body.
    pub fn for_api(code: ErrorCode, status: u16) -> Self {
        match code {
            ErrorCode::InvalidJson
            | ErrorCode::InvalidRequest
            | ErrorCode::UnsupportedMediaType
            | ErrorCode::PayloadTooLarge
            | ErrorCode::NotFound
            | ErrorCode::MethodNotAllowed
            | ErrorCode::InvalidUserId
            | ErrorCode::InvalidKeyData
            | ErrorCode::SecretTooLarge
            | ErrorCode::InvalidTtl
            | ErrorCode::InvalidMaxReads
            | ErrorCode::InvalidKeyId => Exit::Usage,
            ErrorCode::KeyNotFound | ErrorCode::ReadLimitReached => Exit::Gone,
            ErrorCode::MissingToken
            | ErrorCode::InvalidToken
            | ErrorCode::RevokedToken
            | ErrorCode::TokenNotValidForKey => Exit::Refused,
            ErrorCode::RateLimited
            | ErrorCode::IntegrityError
            | ErrorCode::InternalError
            | ErrorCode::VaultRejected
            | ErrorCode::HsmUnavailable
            | ErrorCode::StorageUnavailable
            | ErrorCode::JwksUnavailable
            | ErrorCode::VaultUnavailable => Exit::Unavailable,
            // Answers of vault's internal listener only: this client never talks to it.
            ErrorCode::InvalidEnvelope | ErrorCode::UnknownWrappingKey | ErrorCode::KeyIdConflict => Exit::Other,
            ErrorCode::Unknown => Self::for_status(status),
        }
    }

    /// The group of an HTTP error status, for answers without a code we know.
    pub fn for_status(status: u16) -> Self {
        match status {
            400 | 405 | 413 | 415 | 422 => Exit::Usage,
            404 | 410 => Exit::Gone,
            401 | 403 => Exit::Refused,
            429 | 500..=599 => Exit::Unavailable,
            _ => Exit::Other,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit as u8)
    }
}

/// Which service answered (or did not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// manager: stores.
    Manager,
    /// vault: reads, revokes, destroys.
    Vault,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Manager => "manager",
            Service::Vault => "vault",
        })
    }
}

/// A failure of the client. No variant holds a secret or a token, so none can print one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API answered with an error.
    #[error("{service} refused ({status}, {code}): {message}")]
    Api {
        /// Who answered.
        service: Service,
        /// HTTP status.
        status: u16,
        /// The body's code; [`ErrorCode::Unknown`] for a code this build does not know or a
        /// body that is not ours.
        code: ErrorCode,
        /// The body's message (the services promise it holds no secret), control characters
        /// escaped.
        message: String,
    },
    /// No answer: connection, TLS or timeout.
    #[error("cannot reach {service}")]
    Unreachable {
        /// Who did not answer.
        service: Service,
        /// reqwest's error (names the URL, which holds at most a key id).
        #[source]
        source: reqwest::Error,
    },
    /// The TLS handshake failed: most often a certificate the configured roots do not
    /// trust (the wrong `--ca`, or someone in the middle); retrying does not help.
    #[error("TLS with {service} failed (is --ca the CA that issued its certificate?)")]
    Tls {
        /// Whose handshake.
        service: Service,
        /// reqwest's error, with rustls's reason in its chain.
        #[source]
        source: reqwest::Error,
    },
    /// A success status with a body that is not what the API promises.
    #[error("{service} answered {status} with a body that is not the API's")]
    Unexpected {
        /// Who answered.
        service: Service,
        /// HTTP status.
        status: u16,
        /// Why the body did not parse (serde_json reports positions, never the input).
        #[source]
        source: serde_json::Error,
    },
    /// The HTTPS client could not be built.
    #[error("cannot set up HTTPS")]
    Setup(#[source] reqwest::Error),
    /// A setting or an input the client refuses before sending anything.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// Reading stdin or writing stdout failed.
    #[error("{what} failed")]
    Io {
        /// "reading stdin", "writing stdout".
        what: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Why the client refuses to start a request (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// The config file could not be read.
    #[error("cannot read the config file {}", path.display())]
    ConfigRead {
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML of the expected shape. Only the parser's message is
    /// shown, not its excerpt of the file: a token pasted there must not reach a terminal.
    #[error("invalid config file {}: {}", path.display(), source.message())]
    ConfigParse {
        /// Its path.
        path: PathBuf,
        /// The parser's error.
        source: Box<toml::de::Error>,
    },
    /// A service URL that does not parse or is not https.
    #[error("invalid {service} URL {url:?}: {problem}")]
    Url {
        /// Whose URL.
        service: Service,
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The CA file could not be read or holds no certificate.
    #[error("cannot use {} as the CA: {problem}", path.display())]
    Ca {
        /// Its path.
        path: PathBuf,
        /// What is wrong with it.
        problem: &'static str,
        /// The I/O or parse error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// `store` without a user id from any layer.
    #[error("no user id: pass --user-id, set SECRET_STORE_USER_ID or user_id in the config file")]
    MissingUserId,
    /// `get`, `revoke`, `delete` without a token.
    #[error("no access token: pass --token-file PATH or set SECRET_STORE_TOKEN")]
    MissingToken,
    /// A token with characters no JWT holds (it is not shown).
    #[error("the access token from {from} is empty or holds characters a JWT never does")]
    MalformedToken {
        /// `--token-file PATH` or `SECRET_STORE_TOKEN`.
        from: String,
    },
    /// An input file could not be read.
    #[error("cannot read {what} from {}", path.display())]
    ReadFile {
        /// "the secret", "the access token".
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The token file for `store --token-file` could not be created (it must not exist yet).
    #[error("cannot create the token file {}", path.display())]
    WriteTokenFile {
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An empty secret (manager refuses it too).
    #[error("the secret is empty")]
    EmptySecret,
    /// A secret that is not UTF-8 (the API carries text).
    #[error("the secret is not UTF-8 text (the API stores text; base64-encode binary secrets)")]
    SecretNotUtf8,
}

impl Error {
    /// The exit code for this failure.
    pub fn exit(&self) -> Exit {
        match self {
            Error::Api { code, status, .. } => Exit::for_api(*code, *status),
            Error::Unreachable { .. } => Exit::Unavailable,
            Error::Tls { .. } | Error::Unexpected { .. } | Error::Io { .. } | Error::Setup(_) => Exit::Other,
            Error::Usage(_) => Exit::Usage,
        }
    }

    /// The message and its causes on one line, as printed to stderr.
    pub fn report(&self) -> String {
        let mut line = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(error) = cause {
            line.push_str(": ");
            line.push_str(&error.to_string());
            cause = error.source();
        }
        line
    }
}

/// A server's message made safe for a terminal: control characters escaped, at most 500
/// characters.
pub fn printable(message: &str) -> String {
    let mut out = String::new();
    for c in message.chars().take(500) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table `--help` prints, code by code: a known code decides whatever the status.
    #[test]
    fn every_api_code_maps_to_its_documented_group() {
        use Exit::*;
        let table = [
            ("invalid_json", Usage),
            ("invalid_request", Usage),
            ("unsupported_media_type", Usage),
            ("payload_too_large", Usage),
            ("not_found", Usage),
            ("method_not_allowed", Usage),
            ("rate_limited", Unavailable),
            ("invalid_user_id", Usage),
            ("invalid_key_data", Usage),
            ("secret_too_large", Usage),
            ("invalid_ttl", Usage),
            ("invalid_max_reads", Usage),
            ("missing_token", Refused),
            ("invalid_token", Refused),
            ("revoked_token", Refused),
            ("token_not_valid_for_key", Refused),
            ("key_not_found", Gone),
            ("read_limit_reached", Gone),
            ("invalid_key_id", Usage),
            ("invalid_envelope", Other),
            ("unknown_wrapping_key", Other),
            ("key_id_conflict", Other),
            ("integrity_error", Unavailable),
            ("internal_error", Unavailable),
            ("vault_rejected", Unavailable),
            ("hsm_unavailable", Unavailable),
            ("storage_unavailable", Unavailable),
            ("jwks_unavailable", Unavailable),
            ("vault_unavailable", Unavailable),
        ];
        assert_eq!(table.len(), ErrorCode::ALL.len());
        for (wire, exit) in table {
            let code = ErrorCode::from_wire(wire);
            assert_ne!(code, ErrorCode::Unknown, "{wire}");
            assert_eq!(Exit::for_api(code, 418), exit, "{wire}");
        }
    }

    #[test]
    fn an_unknown_code_falls_back_to_the_status() {
        for (status, exit) in [
            (400, Exit::Usage),
            (413, Exit::Usage),
            (404, Exit::Gone),
            (410, Exit::Gone),
            (401, Exit::Refused),
            (403, Exit::Refused),
            (429, Exit::Unavailable),
            (500, Exit::Unavailable),
            (503, Exit::Unavailable),
            (409, Exit::Other),
            (302, Exit::Other),
        ] {
            assert_eq!(Exit::for_api(ErrorCode::Unknown, status), exit, "{status}");
        }
    }

    #[test]
    fn exit_codes_are_the_documented_numbers() {
        let numbers: Vec<u8> = [Exit::Other, Exit::Usage, Exit::Gone, Exit::Refused, Exit::Unavailable]
            .into_iter()
            .map(|exit| exit as u8)
            .collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn usage_errors_exit_2_and_refusals_4() {
        assert_eq!(Error::from(UsageError::MissingToken).exit(), Exit::Usage);
        let refused = Error::Api {
            service: Service::Vault,
            status: 401,
            code: ErrorCode::RevokedToken,
            message: "revoked".into(),
        };
        assert_eq!(refused.exit(), Exit::Refused);
        assert_eq!(refused.report(), "vault refused (401, revoked_token): revoked");
    }

    #[test]
    fn a_servers_message_cannot_drive_the_terminal() {
        assert_eq!(printable("bad\u{1b}[2Jthing\n"), "bad\\u{1b}[2Jthing\\n");
        assert_eq!(printable(&"x".repeat(600)).len(), 500);
    }
}
