//! The end-to-end tests, one binary (one link of the whole stack): the real `manager` and
//! `vault` binaries against real SoftHSM2 tokens over real TLS, one module per capability.
//! The tests written with [`on_each_token!`] run on Kryoptic too, the second PKCS#11
//! implementation (`<test>::softhsm`, `<test>::kryoptic`).

/// Runs one test body on each PKCS#11 implementation the services are provisioned on, as
/// the tests `<name>::softhsm` and `<name>::kryoptic`; the body names the implementation
/// it is given (an `e2e::Implementation`).
macro_rules! on_each_token {
    ($(#[doc = $doc:literal])* async fn $name:ident($implementation:ident) -> Result<()> $body:block) => {
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports, reason = "the body sees its file's imports")]
            use super::*;

            async fn run($implementation: e2e::Implementation) -> Result<()> $body

            #[tokio::test]
            async fn softhsm() -> Result<()> {
                run(e2e::Implementation::SoftHsm).await
            }

            #[tokio::test]
            async fn kryoptic() -> Result<()> {
                run(e2e::Implementation::Kryoptic).await
            }
        }
    };
}

mod access_tokens;
mod audit_checkpoints;
mod bad_input;
mod durability;
mod group_commit;
mod hostile_traffic;
mod isolation;
mod lifecycle;
mod log_hygiene;
mod memory_scan;
mod pkcs11_uris;
mod planted_keys;
mod rate_limit;
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
