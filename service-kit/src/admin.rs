//! The shape every admin tool's `main` shares: its service's options (file, environment,
//! command line; keys of the service's file it has no use for are skipped), the token PIN
//! from the service's variable, then the command.

use std::future::Future;
use std::process::ExitCode;

use clap::Parser;
use secrecy::SecretString;

use crate::config::{Service, parse_layered_ignoring_unknown};
use crate::report::exit_status;

/// Parses `T` as `service`'s admin tool and runs `command` with it and the PIN from the
/// environment (this is the binary's entry point: library code reads no environment).
/// Exits 0 when the command succeeds, 1 when it ran and found a problem (`Ok(false)`), and
/// 1 with one line on stderr naming the error.
pub async fn main<T, F, Fut>(service: Service, program: &str, command: F) -> ExitCode
where
    T: Parser,
    F: FnOnce(T, Option<SecretString>) -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    // The admin tools hold the PIN and, during a rewrap, unwrapped keys: no core files.
    if let Err(allowed) = crate::process::forbid_core_dumps() {
        eprintln!("{program}: warning: {allowed}");
    }
    let result = async {
        let cli: T = parse_layered_ignoring_unknown(service)?;
        let env_pin = std::env::var(service.pin_env_var()).ok().map(SecretString::from);
        command(cli, env_pin).await
    }
    .await;
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => exit_status(program, Err(e)),
    }
}
