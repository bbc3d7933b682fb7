//! The only crate in the workspace that speaks PKCS#11.
//!
//! It gives the services a few types over [`cryptoki`]: a [`Module`] loaded once per
//! process, a [`TokenPool`] of logged-in sessions on one token (found by label), a
//! [`Signer`] for RSA signatures, a [`Decrypter`] for RSA-OAEP, a [`TokenTlsKey`] that signs
//! TLS handshakes for rustls, public-key export as plain components, key-pair provisioning
//! and token initialisation. Keys are taken only from protected private objects (CKA_PRIVATE,
//! sensitive, never extractable, one usage): a session without the PIN can create public
//! objects, so a public key object alone is never trusted. At most as many calls as the pool has sessions run at once:
//! async callers' calls on tokio's blocking pool, rustls' synchronous signatures on the
//! calling thread (see [`TokenTlsKey`]). A session lost to a token failure is re-opened, not
//! fatal.
//!
//! Non-goals: symmetric crypto in the token (vault opens AES-GCM in process: that works on
//! every token and through p11-kit 0.24, which does not forward CKM_AES_GCM), key material of
//! any kind in this process, and what keys are called outside it (JWKs, `kid`s, certificates
//! are for the callers).
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
//! let signer = hsm::Signer::new(pool, "manager-signing", hsm::RsaScheme::Pkcs1Sha256);
//! let signature = signer.sign(b"header.payload").await?;
//! # Ok(()) }
//! ```

mod check;
mod decrypt;
pub mod der;
mod error;
mod export;
mod generations;
mod key_policy;
mod keys;
mod lane;
mod module;
mod observe;
#[cfg(test)]
mod p11_kit_tests;
mod pin;
mod pool;
mod provision;
mod public_key;
mod restrictions;
mod sign;
mod tls_key;
mod token_init;
mod uri;

#[cfg(test)]
mod test_support;

pub use check::{
    CheckOptions, CheckResult, CkRv, Configuration, Item, Need, Observed, Outcome, Problem, SessionLimit, Shortfall,
    TokenFacts, TokenReport, Verdict, check_token,
};
pub use decrypt::{Decrypter, OaepHash};
pub use error::{Error, Operation, Result};
pub use export::{MIN_RSA_BITS, RsaPublicComponents, rsa_public_key};
pub use generations::{
    IgnoredKeyObject, KeyGenerations, LabeledPublicKey, generation_label, key_generation, rsa_key_generations,
};
pub use key_policy::IgnoreReason;
pub use keys::KeyClass;
pub use module::Module;
pub use observe::{CallObserver, observe_calls};
pub use pin::read_pin_file;
pub use pool::{TokenConfig, TokenPool};
pub use provision::{
    Generated, KeyUsage, RsaKeySpec, RsaPrivateComponents, destroy_key_pair, generate_rsa_key_pair, import_rsa_key_pair,
};
pub use public_key::{PublicKeyInfo, TlsKeyType, UnknownTlsKeyType, tls_public_key};
pub use sign::{RsaScheme, Signer};
pub use tls_key::{TokenTlsKey, generate_tls_key_pair};
pub use token_init::{TokenInit, initialize_token};
pub use uri::{
    ConfiguredPath, NameError, ObjectType, Pkcs11Uri, TokenSelection, UriAttribute, UriComponent, UriError,
    is_pkcs11_uri,
};
