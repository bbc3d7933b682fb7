//! manager's entry point: configuration, logging, then [`manager::startup::run`].

use secrecy::SecretString;

#[tokio::main]
async fn main() {
    service_kit::serve::init_logging();
    let result = async {
        let config = service_kit::config::parse_layered::<manager::Config>("MANAGER_CONFIG")?;
        // The PIN may come from the environment; the library never reads it itself.
        let env_pin = std::env::var(manager::config::TokenOptions::PIN_ENV_VAR)
            .ok()
            .map(SecretString::from);
        manager::startup::run(config, env_pin).await
    }
    .await;
    service_kit::report::exit("manager", result)
}
