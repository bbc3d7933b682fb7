//! The command line: global options, the four subcommands, and the help text's exit codes.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// What `--help` says after the options: the exit codes and where settings come from.
const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  anything else: a TLS failure (a certificate --ca does not trust), an unexpected answer,
     an I/O error, a code this client does not know, or a code only vault's internal
     listener answers (invalid_envelope, unknown_wrapping_key, key_id_conflict)
  2  usage: bad arguments, configuration or input, or the API refused the request as malformed
     (invalid_json, invalid_request, unsupported_media_type, payload_too_large,
     invalid_user_id, invalid_key_data, invalid_ttl, invalid_max_reads, secret_too_large,
     invalid_key_id; not_found and method_not_allowed: no such endpoint, check the URLs)
  3  not found or gone: no such secret, or it expired, was destroyed or used up its reads
     (key_not_found, read_limit_reached)
  4  refused: no, an invalid, expired or revoked token, or a token for another secret
     (missing_token, invalid_token, revoked_token, token_not_valid_for_key)
  5  unavailable: cannot connect, rate limited or a server-side failure; retry later
     (rate_limited, hsm_unavailable, storage_unavailable, jwks_unavailable, vault_unavailable,
     vault_rejected, integrity_error, internal_error)

Settings: flags, then the environment (SECRET_STORE_MANAGER_URL, SECRET_STORE_VAULT_URL,
SECRET_STORE_CA, SECRET_STORE_USER_ID), then the config file (--config, SECRET_STORE_CONFIG or
$XDG_CONFIG_HOME/secret-store/client.toml; TOML keys manager_url, vault_url, ca, user_id; ca
relative to the file), then the defaults https://127.0.0.1:8000 and https://127.0.0.1:8001.
The access token is read from --token-file or SECRET_STORE_TOKEN, the secret from stdin or
--file: never from the command line, which other users can read in /proc.";

/// `secret-store [GLOBAL] <COMMAND>`.
#[derive(Debug, Parser)]
#[command(
    name = "secret-store",
    version,
    about = "Store a secret at manager; read, revoke or destroy it at vault with its access token.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Where the services are and whom to trust.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes; each overrides the environment and the config file.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// manager's base URL (https only) [default: https://127.0.0.1:8000]
    #[arg(long, global = true, value_name = "URL")]
    pub manager_url: Option<String>,
    /// vault's public base URL (https only) [default: https://127.0.0.1:8001]
    #[arg(long, global = true, value_name = "URL")]
    pub vault_url: Option<String>,
    /// Trust only the CA certificates in this PEM file [default: the system's roots]
    #[arg(long, global = true, value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// Config file [default: $XDG_CONFIG_HOME/secret-store/client.toml, if it exists]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store a secret read from stdin (or --file) at manager; print its key id, token and expiry
    Store(StoreArgs),
    /// Print a secret exactly as stored (no newline added unless --newline); counts one read
    Get(GetArgs),
    /// Revoke the access token at vault: it is refused from then on
    Revoke(RevokeArgs),
    /// Destroy a secret at vault, with its access token
    Delete(DeleteArgs),
}

/// `store`.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Owner of the secret (or SECRET_STORE_USER_ID, or user_id in the config file)
    #[arg(long, value_name = "ID")]
    pub user_id: Option<String>,
    /// Lifetime of the token and the secret, seconds [default: the server's, 3600]
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub ttl: Option<u64>,
    /// Reads before vault destroys the secret (1: a one-time secret) [default: unlimited]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_reads: Option<u32>,
    /// Read the secret from this file instead of stdin (byte for byte, UTF-8)
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Drop one trailing newline (\n or \r\n) from the secret, as `echo` adds
    #[arg(long)]
    pub trim_newline: bool,
    /// Write the access token to this new file (mode 0600) instead of printing it
    #[arg(long, value_name = "PATH", conflicts_with = "json")]
    pub token_file: Option<PathBuf>,
    /// Print manager's JSON answer instead of the key_id/token/expires_at lines
    #[arg(long)]
    pub json: bool,
}

/// Where `get`, `revoke` and `delete` find the access token.
#[derive(Debug, Args)]
pub struct TokenSource {
    /// Read the access token from this file [default: the SECRET_STORE_TOKEN variable]
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

/// `get KEY_ID`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The secret's id, as `store` printed it
    #[arg(value_name = "KEY_ID", value_parser = key_id)]
    pub key_id: String,
    /// The access token.
    #[command(flatten)]
    pub token: TokenSource,
    /// End the output with a newline
    #[arg(long, conflicts_with = "json")]
    pub newline: bool,
    /// Print vault's JSON answer ({"decrypted_key": …}) instead of the bare secret
    #[arg(long)]
    pub json: bool,
}

/// `revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The access token (the one revoked).
    #[command(flatten)]
    pub token: TokenSource,
    /// Print vault's JSON answer
    #[arg(long)]
    pub json: bool,
}

/// `delete KEY_ID`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The secret's id
    #[arg(value_name = "KEY_ID", value_parser = key_id)]
    pub key_id: String,
    /// The access token.
    #[command(flatten)]
    pub token: TokenSource,
    /// Print vault's JSON answer
    #[arg(long)]
    pub json: bool,
}

/// vault's `key_id` alphabet, checked here so that an id never changes the request's path.
fn key_id(value: &str) -> Result<String, &'static str> {
    let ok = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(value.to_owned())
    } else {
        Err("a key id is 1-64 characters of A-Z a-z 0-9 - _")
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every code the API answers with is in `--help`'s exit code table.
    #[test]
    fn the_help_names_every_error_code() {
        for code in contract::error_code::ErrorCode::ALL {
            assert!(AFTER_HELP.contains(code.as_str()), "{code} is not in --help");
        }
    }

    #[test]
    fn a_key_id_that_would_change_the_path_is_a_usage_error() {
        for bad in ["", "../tokens/revoke", "a/b", "a?b", "a%2F", &"x".repeat(65)] {
            let error = Cli::try_parse_from(["secret-store", "get", bad]).expect_err(bad);
            assert_eq!(error.exit_code(), 2, "{bad}");
        }
        assert!(Cli::try_parse_from(["secret-store", "get", "Ab-_09"]).is_ok());
    }

    #[test]
    fn there_is_no_flag_for_a_secret_or_a_token() {
        for flag in ["--secret", "--key-data", "--token"] {
            assert!(
                Cli::try_parse_from(["secret-store", "store", flag, "x"]).is_err(),
                "{flag}"
            );
            assert!(
                Cli::try_parse_from(["secret-store", "get", "k", flag, "x"]).is_err(),
                "{flag}"
            );
        }
    }
}
