//! `secret-store`, the command-line client of manager and vault: stores a secret read from
//! stdin or a file at manager, then reads, revokes or destroys it at vault with the access
//! token read from a file or the environment.
//!
//! ```sh
//! printf %s 'correct horse battery staple' |
//!   secret-store --ca .dev/tls/ca.pem store --user-id alice --token-file alice.jwt
//! secret-store --ca .dev/tls/ca.pem get --token-file alice.jwt "$KEY_ID"
//! ```
//!
//! Secrets and tokens never travel on the command line (other local users read it in
//! `/proc`) and never appear in an error message; each failure exits with the code of its
//! group ([`error::Exit`]).
//!
//! Non-goals: wiping every copy of the secret from memory (the copies inside the HTTP stack
//! are not reachable; the process is short-lived), talking to vault's internal listener,
//! retrying (exit code 5 says when a retry may help).

pub mod api;
pub mod cli;
pub mod config;
pub mod error;
pub mod input;

use std::io::Write;

use api::{Api, StoreRequest};
use cli::{Cli, Command};
use config::{Layer, Settings};
use error::{Error, UsageError};

/// Runs `cli`, with `var` as the process environment (tests pass their own).
pub async fn run(cli: Cli, var: &dyn Fn(&str) -> Option<String>) -> Result<(), Error> {
    let user_id = match &cli.command {
        Command::Store(store) => store.user_id.as_deref(),
        _ => None,
    };
    let flags = Layer::from_flags(&cli.global, user_id);
    let file = match config::config_file(cli.global.config.as_deref(), var) {
        Some(path) => Layer::from_file(&path)?,
        None => Layer::default(),
    };
    let settings = Settings::resolve(flags, Layer::from_env(var), file)?;
    let api = Api::new(&settings)?;
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Store(store) => {
            let user_id = settings.user_id.as_deref().ok_or(UsageError::MissingUserId)?;
            let secret = input::read_secret(store.file.as_deref(), store.trim_newline)?;
            // Before storing: a token file that cannot be made must not cost the token.
            let token_file = store.token_file.as_deref().map(input::TokenFile::create).transpose()?;
            let request = StoreRequest {
                user_id,
                key_data: &secret,
                ttl_seconds: store.ttl,
                max_reads: store.max_reads,
            };
            let answer = api.store(&request).await?;
            if store.json {
                return print_json(&mut out, &answer.raw);
            }
            let stored = answer.value;
            let token = match (token_file, &store.token_file) {
                (Some(file), Some(path)) => {
                    file.write(&stored.access_token)?;
                    format!("written to {}", path.display())
                }
                _ => stored.access_token,
            };
            let lines = format!(
                "key_id: {}\ntoken: {token}\nexpires_at: {}\n",
                stored.key_id, stored.expires_at
            );
            write(&mut out, lines.as_bytes())
        }
        Command::Get(get) => {
            let token = input::read_token(get.token.token_file.as_deref(), var)?;
            let answer = api.read(&get.key_id, &token).await?;
            if get.json {
                return print_json(&mut out, &answer.raw);
            }
            write(&mut out, answer.value.decrypted_key.as_bytes())?;
            if get.newline {
                write(&mut out, b"\n")?;
            }
            Ok(())
        }
        Command::Revoke(revoke) => {
            let token = input::read_token(revoke.token.token_file.as_deref(), var)?;
            let answer = api.revoke(&token).await?;
            if revoke.json {
                return print_json(&mut out, &answer.raw);
            }
            write(&mut out, format!("revoked: token {}\n", answer.value.jti).as_bytes())
        }
        Command::Delete(delete) => {
            let token = input::read_token(delete.token.token_file.as_deref(), var)?;
            let answer = api.delete(&delete.key_id, &token).await?;
            if delete.json {
                return print_json(&mut out, &answer.raw);
            }
            write(&mut out, format!("destroyed: {}\n", answer.value.key_id).as_bytes())
        }
    }
}

/// A service's JSON answer as received, then a newline.
fn print_json(out: &mut impl Write, raw: &[u8]) -> Result<(), Error> {
    write(out, raw)?;
    write(out, b"\n")
}

fn write(out: &mut impl Write, bytes: &[u8]) -> Result<(), Error> {
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|source| Error::Io {
            what: "writing to stdout",
            source,
        })
}
