//! Whether a token can serve the services, tried on the token itself (`hsm-admin check`):
//! what it says about its mechanisms and sessions, live operations with throwaway session
//! keys, and the configuration that follows from what worked.
//!
//! The live rows decide; the mechanism rows (C_GetMechanismInfo) only explain them: a module
//! may list a mechanism it cannot use (p11-kit 0.24 forwards SoftHSM's list, not its
//! parameters), or serve one it reports oddly. Keys are made with CKA_TOKEN false, so
//! nothing is left in the token, even when the check is interrupted.

mod ec;
mod rows;
mod rsa;
mod session_keys;
mod token;

pub use rows::{CheckResult, CkRv, Item, Need, Observed, Outcome, Problem};

use std::fmt;

use crate::decrypt::OaepHash;
use crate::error::{Operation, Result};
use crate::pool::TokenPool;
use crate::public_key::TlsKeyType;
use crate::sign::RsaScheme;

/// What the check must prove beyond what it always does.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// Sessions that must be open at once (the services' `pkcs11_sessions`).
    pub sessions: usize,
}

/// Runs every check on the token of `pool`.
///
/// Key pairs are generated as session objects and destroyed before each call returns; the
/// pool's own login stays. A second C_Login is made: run it where no other process logs
/// in to the same SoftHSM token at the same instant (SoftHSM rewrites the token's file on
/// login).
///
/// # Errors
/// Only when the token cannot be reached at all; whatever the token refuses is a row of
/// the report.
pub async fn check_token(pool: &TokenPool, options: CheckOptions) -> Result<TokenReport> {
    let sessions = options.sessions.max(1);
    let inspection = pool
        .run_with_instance(Operation::ReadTokenInfo, move |ctx, config, session| {
            token::inspect(ctx, config, session, sessions)
        })
        .await?;
    let rsa = pool
        .run_writing(Operation::GenerateKeyPair, |session| Ok(rsa::rsa_checks(session)))
        .await?;
    let ec = pool
        .run_writing(Operation::GenerateKeyPair, |session| Ok(ec::ec_checks(session)))
        .await?;
    let checks = [inspection.mechanisms, rsa, ec, inspection.sessions]
        .into_iter()
        .flatten()
        .collect();
    Ok(TokenReport {
        token: inspection.facts,
        sessions,
        checks,
    })
}

/// What the module and token say about themselves (C_GetInfo, C_GetTokenInfo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFacts {
    /// CKA_LABEL of the token.
    pub label: String,
    /// The token's manufacturer.
    pub manufacturer: String,
    /// The token's model.
    pub model: String,
    /// The token's firmware version, `major.minor`.
    pub firmware: String,
    /// The module's description and version, as C_GetInfo gives them.
    pub library: String,
    /// Most sessions the token allows.
    pub max_sessions: SessionLimit,
    /// Most read-write sessions the token allows (the pool opens read-write sessions).
    pub max_rw_sessions: SessionLimit,
}

/// A session limit from C_GetTokenInfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionLimit {
    /// At most this many.
    Max(u64),
    /// CK_EFFECTIVELY_INFINITE.
    Infinite,
    /// CK_UNAVAILABLE_INFORMATION.
    NotStated,
}

impl fmt::Display for SessionLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionLimit::Max(n) => write!(f, "{n}"),
            SessionLimit::Infinite => f.write_str("no limit"),
            SessionLimit::NotStated => f.write_str("not stated"),
        }
    }
}

/// Everything one run of [`check_token`] found.
#[derive(Debug)]
pub struct TokenReport {
    /// The token and its module.
    pub token: TokenFacts,
    /// Sessions that had to be open at once.
    pub sessions: usize,
    /// One row per check, mechanisms first.
    pub checks: Vec<CheckResult>,
}

/// What the services can be configured to on this token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Configuration {
    /// manager's token signatures (`signing_algorithm`; vault's `token_algorithms`): PS256
    /// when PSS works, else RS256.
    pub signature: RsaScheme,
    /// manager's content-key wrapping (`key_wrap`): RSA-OAEP-256 when the token decrypts
    /// OAEP with SHA-256, else RSA-OAEP.
    pub key_wrap: OaepHash,
    /// The services' TLS keys: ECDSA P-256 when it works, else RSA-2048 (signing with PSS).
    pub tls_key_type: TlsKeyType,
}

/// Whether the token can serve, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It can, configured so.
    CanServe(Configuration),
    /// It cannot, for these reasons.
    CannotServe(Vec<Shortfall>),
}

/// Why a token cannot serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortfall {
    /// Neither RS256 nor PS256 signatures work: manager cannot sign tokens.
    NoTokenSignature,
    /// OAEP decryption works with neither hash: vault cannot open content keys.
    NoOaepDecryption,
    /// Neither ECDSA P-256 nor RSA-PSS works: no TLS key type.
    NoTlsKeyType,
    /// A required check did not pass.
    Failed(Item),
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shortfall::NoTokenSignature => f.write_str("no RSA signature works (RS256 nor PS256): manager cannot sign"),
            Shortfall::NoOaepDecryption => {
                f.write_str("RSA-OAEP decryption works with no hash: vault cannot open content keys")
            }
            Shortfall::NoTlsKeyType => f.write_str("neither ECDSA P-256 nor RSA-PSS works: no TLS key type"),
            Shortfall::Failed(item) => write!(f, "{} did not pass", item.name()),
        }
    }
}

impl TokenReport {
    /// What follows from the checks: the configuration, or every reason the token cannot
    /// serve.
    pub fn verdict(&self) -> Verdict {
        let works = |item: Item| self.checks.iter().any(|c| c.item == item && c.works());
        let signature = [RsaScheme::PssSha256, RsaScheme::Pkcs1Sha256]
            .into_iter()
            .find(|&scheme| works(Item::Signature(scheme)));
        let key_wrap = [OaepHash::Sha256, OaepHash::Sha1]
            .into_iter()
            .find(|&hash| works(Item::OaepDecrypt(hash)));
        let tls_key_type = if works(Item::EcKeyPair) && works(Item::EcdsaSignature) {
            Some(TlsKeyType::EcdsaP256)
        } else if works(Item::Signature(RsaScheme::PssSha256)) {
            // TLS 1.3 signs with RSA only by PSS.
            Some(TlsKeyType::Rsa)
        } else {
            None
        };
        let mut shortfalls: Vec<Shortfall> = self
            .checks
            .iter()
            .filter(|c| c.need() == Need::Required && !c.works())
            .map(|c| Shortfall::Failed(c.item))
            .collect();
        shortfalls.extend(signature.is_none().then_some(Shortfall::NoTokenSignature));
        shortfalls.extend(key_wrap.is_none().then_some(Shortfall::NoOaepDecryption));
        shortfalls.extend(tls_key_type.is_none().then_some(Shortfall::NoTlsKeyType));
        match (signature, key_wrap, tls_key_type) {
            (Some(signature), Some(key_wrap), Some(tls_key_type)) if shortfalls.is_empty() => {
                Verdict::CanServe(Configuration {
                    signature,
                    key_wrap,
                    tls_key_type,
                })
            }
            _ => Verdict::CannotServe(shortfalls),
        }
    }
}

#[cfg(test)]
mod tests;
