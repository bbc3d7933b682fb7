//! manager's entry point: configuration, logging, then [`manager::startup::run`].

use manager::config::SERVICE;
use secrecy::SecretString;

#[tokio::main]
async fn main() {
    // Before anything holds a secret; reported once logging exists.
    let core_dumps = service_kit::process::forbid_core_dumps();
    service_kit::logging::init_logging();
    service_kit::process::warn_if_allowed(&core_dumps);
    let result = async {
        let config = service_kit::config::parse_layered::<manager::Config>(SERVICE)?;
        // The PIN may come from the environment; the library never reads it itself.
        let env_pin = std::env::var(SERVICE.pin_env_var()).ok().map(SecretString::from);
        manager::startup::run(config, env_pin).await
    }
    .await;
    service_kit::report::exit("manager", result)
}
