//! The end-to-end tests, one binary (one link of the whole stack): the real `manager` and
//! `vault` binaries against real SoftHSM2 tokens over real TLS, one module per capability.
//! The tests written with [`on_each_token!`] run on Kryoptic too, the second PKCS#11
//! implementation (`<test>::softhsm`, `<test>::kryoptic`).

/// Runs each named test once per PKCS#11 implementation the services are provisioned on:
/// for `async fn name(implementation: e2e::Implementation) -> Result<()>` in the invoking
/// module it adds a module `name` with the tests `softhsm` and `kryoptic`, so that `cargo
/// test` lists `…::name::softhsm` and `…::name::kryoptic`. The tests stay plain functions
/// beside the invocation, where rustfmt and clippy see them (as `hsm`'s `token_tests!`).
macro_rules! on_each_token {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn softhsm() -> anyhow::Result<()> {
                    super::$name(e2e::Implementation::SoftHsm).await
                }

                #[tokio::test]
                async fn kryoptic() -> anyhow::Result<()> {
                    super::$name(e2e::Implementation::Kryoptic).await
                }
            }
        )+
    };
}

mod access_tokens;
mod audit_checkpoints;
mod bad_input;
mod cli;
mod containers;
mod durability;
mod group_commit;
mod hostile_traffic;
mod isolation;
mod lifecycle;
mod log_hygiene;
mod memory_scan;
mod observability;
mod openapi;
mod pkcs11_uris;
mod planted_keys;
mod provisioning;
mod rate_limit;
mod readme;
mod replicas;
mod rotation;
mod split_trust;
mod startup;
mod storage;
mod tls_keys;
mod token_check;
mod token_connections;
mod transport;
mod workflow;
mod wrapping_rotation;
