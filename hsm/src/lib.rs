//! The only crate in the workspace that speaks PKCS#11.
//!
//! It gives the services a few types over [`cryptoki`]: a [`Module`] loaded once per
//! process, a [`TokenPool`] of logged-in sessions on one token (found by label), a
//! [`Signer`] for JWS signatures and a [`Decrypter`] for RSA-OAEP, public-key export and
//! key-pair provisioning. Every call runs on tokio's blocking pool, bounded by the
//! session count, and a session lost to a token failure is re-opened, not fatal.
//!
//! Non-goals: symmetric crypto in the token (vault opens AES-GCM in process, see
//! DESIGN's envelope section) and key material of any kind in this process.
//!
//! ```no_run
//! # async fn demo() -> hsm::Result<()> {
//! use std::time::Duration;
//! let module = hsm::Module::load("/usr/lib/softhsm/libsofthsm2.so".as_ref())?;
//! let pool = hsm::TokenPool::connect(&module, hsm::TokenConfig {
//!     token_label: "manager".into(),
//!     pin: hsm::read_pin_file(".dev/pins/manager.pin".as_ref())?,
//!     sessions: 4,
//!     slot_discovery_timeout: Duration::from_secs(5),
//!     operation_timeout: Duration::from_secs(10),
//! }).await?;
//! let signer = hsm::Signer::new(pool, "manager-signing", hsm::SignatureAlgorithm::Rs256);
//! let signature = signer.sign(b"header.payload").await?;
//! # Ok(()) }
//! ```

pub mod certificates;
mod decrypt;
mod der;
mod error;
mod export;
mod keys;
mod pin;
mod pool;
mod provision;
mod sign;
mod tls_key;
mod token_init;

#[cfg(test)]
mod test_support;

pub use decrypt::{Decrypter, OaepHash};
pub use error::{Error, Result};
pub use export::{LabeledPublicKey, generation_label, key_generation, rsa_public_key, rsa_public_keys_labelled};
pub use pin::read_pin_file;
pub use pool::{Module, TokenConfig, TokenPool};
pub use provision::{
    Generated, KeyUsage, RsaKeySpec, RsaPrivateComponents, destroy_key_pair, generate_rsa_key_pair, import_rsa_key_pair,
};
pub use sign::{SignatureAlgorithm, Signer, UnsupportedAlgorithm};
pub use tls_key::{PublicKeyInfo, TlsKeyType, TokenTlsKey, generate_tls_key_pair, tls_public_key};
pub use token_init::{TokenInit, initialize_token};
