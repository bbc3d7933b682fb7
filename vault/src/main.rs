//! vault's entry point: configuration, logging, then [`vault::startup::run`].

use secrecy::SecretString;
use vault::config::SERVICE;

#[tokio::main]
async fn main() {
    // Before anything holds a secret; reported once logging exists.
    let core_dumps = service_kit::process::forbid_core_dumps();
    let result = async {
        // Read before logging starts, since it says how to log; its errors are one line on
        // stderr anyway (`report::exit`).
        let config = service_kit::config::parse_layered::<vault::Config>(SERVICE)?;
        service_kit::logging::init_logging(config.log_format);
        service_kit::process::warn_if_allowed(&core_dumps);
        // The PIN may come from the environment; the library never reads it itself.
        let env_pin = std::env::var(SERVICE.pin_env_var()).ok().map(SecretString::from);
        vault::startup::run(config, env_pin).await
    }
    .await;
    service_kit::report::exit("vault", result)
}
