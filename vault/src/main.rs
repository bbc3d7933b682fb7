//! vault's entry point: configuration, logging, then [`vault::startup::run`].

use std::process::ExitCode;

use secrecy::SecretString;

#[tokio::main]
async fn main() -> ExitCode {
    service_kit::serve::init_logging();
    let config = match service_kit::config::parse_layered::<vault::Config>("VAULT_CONFIG") {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    let env_pin = std::env::var("VAULT_PKCS11_PIN")
        .ok()
        .map(SecretString::from);
    match vault::startup::run(config, env_pin).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e.as_ref()),
    }
}

/// One line on stderr naming the problem and its causes, then exit 1.
fn fail(error: &(dyn std::error::Error + 'static)) -> ExitCode {
    let mut line = format!("vault: {error}");
    let mut source = error.source();
    while let Some(inner) = source {
        line.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    eprintln!("{line}");
    ExitCode::FAILURE
}
