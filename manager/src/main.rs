//! manager's entry point: configuration, logging, then [`manager::startup::run`].

use manager::config::SERVICE;
use secrecy::SecretString;

#[tokio::main]
async fn main() {
    service_kit::serve::init_logging();
    let result = async {
        let config = service_kit::config::parse_layered::<manager::Config>(SERVICE)?;
        // The PIN may come from the environment; the library never reads it itself.
        let env_pin = std::env::var(SERVICE.pin_env_var()).ok().map(SecretString::from);
        manager::startup::run(config, env_pin).await
    }
    .await;
    service_kit::report::exit("manager", result)
}
