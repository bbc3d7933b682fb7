//! One row of the check's report: what was checked, what the services use it for, whether
//! they need it, and what came of it.

use std::fmt;

use cryptoki::error::RvError;
use cryptoki::mechanism::MechanismType;

use super::SessionLimit;
use crate::decrypt::OaepHash;
use crate::error::{Error, rv_of};
use crate::key_policy::IgnoreReason;
use crate::sign::RsaScheme;

/// One thing the services need, tried.
#[derive(Debug)]
pub struct CheckResult {
    /// What was checked.
    pub item: Item,
    /// What came of it.
    pub outcome: Outcome,
    /// What the token answered beyond the outcome (key sizes, the refusal that was wanted),
    /// for the operator.
    pub observed: Option<Observed>,
}

impl CheckResult {
    /// What the check is called in the report.
    pub fn name(&self) -> String {
        self.item.name()
    }

    /// What in the services depends on it.
    pub fn used_for(&self) -> &'static str {
        self.item.used_for()
    }

    /// Whether the services need it.
    pub fn need(&self) -> Need {
        self.item.need()
    }

    pub(super) fn works(&self) -> bool {
        matches!(self.outcome, Outcome::Works)
    }
}

/// What a check looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// C_GetMechanismInfo of a mechanism the services use.
    Mechanism(MechanismType),
    /// Two RSA-2048 key pairs generated as provisioning makes them (sensitive, never
    /// extractable, one usage each), but as session objects.
    RsaKeyPairs,
    /// The private keys take CKA_ALLOWED_MECHANISMS.
    AllowedMechanisms,
    /// The generated RSA keys pass the services' key policy.
    KeyPolicy,
    /// Reading CKA_PRIVATE_EXPONENT (and CKA_PRIME_1) of the private keys is refused.
    PrivateExponentHidden,
    /// C_WrapKey does not give out a private key.
    WrapRefused,
    /// An RSA signature made as [`crate::Signer`] makes it, verified in software.
    Signature(RsaScheme),
    /// RSA-OAEP decryption as [`crate::Decrypter`] does it, of a software ciphertext.
    OaepDecrypt(OaepHash),
    /// C_UnwrapKey of an AES-256 key wrapped with RSA-OAEP (SHA-1) in software.
    OaepUnwrap,
    /// An EC P-256 key pair, sensitive and never extractable.
    EcKeyPair,
    /// A CKM_ECDSA signature over a SHA-256 digest, verified in software.
    EcdsaSignature,
    /// C_GetTokenInfo's session limits against the sessions asked for.
    SessionLimit,
    /// That many sessions open at once.
    OpenSessions,
    /// A second C_Login while logged in is accepted.
    SecondLogin,
}

impl Item {
    /// What the check is called in the report.
    pub fn name(&self) -> String {
        match self {
            Item::Mechanism(mechanism) => format!("mechanism {mechanism}"),
            Item::RsaKeyPairs => "RSA-2048 key pairs, sensitive, non-extractable".into(),
            Item::AllowedMechanisms => "CKA_ALLOWED_MECHANISMS on private keys".into(),
            Item::KeyPolicy => "RSA keys pass the services' key policy".into(),
            Item::PrivateExponentHidden => "CKA_PRIVATE_EXPONENT cannot be read".into(),
            Item::WrapRefused => "C_WrapKey of a private key is refused".into(),
            Item::Signature(RsaScheme::Pkcs1Sha256) => "RS256 signature (CKM_SHA256_RSA_PKCS) verifies".into(),
            Item::Signature(RsaScheme::PssSha256) => "PS256 signature (CKM_RSA_PKCS_PSS) verifies".into(),
            Item::OaepDecrypt(OaepHash::Sha1) => "RSA-OAEP SHA-1 decryption (CKM_RSA_PKCS_OAEP)".into(),
            Item::OaepDecrypt(OaepHash::Sha256) => "RSA-OAEP SHA-256 decryption (CKM_RSA_PKCS_OAEP)".into(),
            Item::OaepUnwrap => "C_UnwrapKey of an AES-256 key (RSA-OAEP SHA-1)".into(),
            Item::EcKeyPair => "EC P-256 key pair, sensitive, non-extractable".into(),
            Item::EcdsaSignature => "ECDSA P-256 signature (CKM_ECDSA) verifies".into(),
            Item::SessionLimit => "session limit (C_GetTokenInfo)".into(),
            Item::OpenSessions => "sessions open at once".into(),
            Item::SecondLogin => "second C_Login accepted".into(),
        }
    }

    /// What in the services depends on it.
    pub fn used_for(&self) -> &'static str {
        match *self {
            Item::Mechanism(m) if m == MechanismType::RSA_PKCS_KEY_PAIR_GEN => {
                "hsm-admin generate-rsa: manager's signing key, vault's wrapping key"
            }
            Item::Mechanism(m) if m == MechanismType::SHA256_RSA_PKCS => {
                "manager: RS256 tokens; RSA TLS keys (TLS 1.2)"
            }
            Item::Mechanism(m) if m == MechanismType::RSA_PKCS_PSS => "manager: PS256 tokens; RSA TLS keys (TLS 1.3)",
            Item::Mechanism(m) if m == MechanismType::RSA_PKCS_OAEP => "vault: opening content keys",
            Item::Mechanism(m) if m == MechanismType::ECC_KEY_PAIR_GEN => "hsm-admin generate-tls-key: ecdsa-p256",
            Item::Mechanism(m) if m == MechanismType::ECDSA => "TLS handshakes and the dev CA (ecdsa-p256)",
            Item::Mechanism(_) => "",
            Item::RsaKeyPairs => "manager's signing key, vault's wrapping key (hsm-admin generate-rsa)",
            Item::AllowedMechanisms => "provisioning: keeps each key to its scheme (else a warning)",
            Item::KeyPolicy => "manager and vault use only keys that pass it",
            Item::PrivateExponentHidden => "no private key byte leaves the token",
            Item::WrapRefused => "no private key byte leaves the token",
            Item::Signature(RsaScheme::Pkcs1Sha256) => "manager: signing_algorithm RS256",
            Item::Signature(RsaScheme::PssSha256) => "manager: signing_algorithm PS256; RSA TLS keys",
            Item::OaepDecrypt(OaepHash::Sha1) => "vault: content keys of key_wrap RSA-OAEP",
            Item::OaepDecrypt(OaepHash::Sha256) => "vault: content keys of key_wrap RSA-OAEP-256",
            Item::OaepUnwrap => "nothing yet: vault decrypts content keys with C_Decrypt",
            Item::EcKeyPair => "TLS keys and the dev CA (ecdsa-p256)",
            Item::EcdsaSignature => "TLS handshakes and certificates (ecdsa-p256)",
            Item::SessionLimit => "pkcs11_sessions: concurrent token operations",
            Item::OpenSessions => "pkcs11_sessions: concurrent token operations",
            Item::SecondLogin => "a pool logging in again after recovery, or beside another",
        }
    }

    /// Whether the services need it.
    pub fn need(&self) -> Need {
        match self {
            Item::Mechanism(_) | Item::AllowedMechanisms | Item::OaepUnwrap => Need::Informational,
            Item::Signature(_) | Item::OaepDecrypt(_) | Item::EcKeyPair | Item::EcdsaSignature => Need::Alternative,
            Item::RsaKeyPairs
            | Item::KeyPolicy
            | Item::PrivateExponentHidden
            | Item::WrapRefused
            | Item::SessionLimit
            | Item::OpenSessions
            | Item::SecondLogin => Need::Required,
        }
    }
}

/// Whether the services need a check to pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The token cannot serve without it.
    Required,
    /// One of the ways to do a job: the configuration takes one that works.
    Alternative,
    /// Reported for the operator; the services do not depend on it.
    Informational,
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Need::Required => "required",
            Need::Alternative => "one of",
            Need::Informational => "info",
        })
    }
}

/// What came of a check.
#[derive(Debug)]
pub enum Outcome {
    /// It does what the services need.
    Works,
    /// The token does not offer the mechanism.
    Missing,
    /// The token refused the call.
    Refused(CkRv),
    /// The token answered, but not as the services need.
    Wrong(Problem),
    /// Not tried: it needs this check, which did not work.
    Skipped(Item),
    /// The check itself failed, without a CK_RV.
    Failed(Error),
}

impl Outcome {
    /// An outcome for `error`: its CK_RV when it has one.
    pub(super) fn of_error(error: Error) -> Self {
        match &error {
            Error::Pkcs11 { source, .. } | Error::DecryptionFailed(source) => match rv_of(source) {
                Some(rv) => Outcome::Refused(CkRv(rv)),
                None => Outcome::Failed(error),
            },
            _ => Outcome::Failed(error),
        }
    }
}

/// How a token's answer differs from what the services need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The signature does not verify with the key's public half.
    BadSignature,
    /// What came out is not what went in.
    WrongPlaintext,
    /// The key is not one the services would use.
    Ignored(IgnoreReason),
    /// The private exponent can be read.
    Readable,
    /// C_WrapKey gave out a private key.
    Wrapped,
    /// The mechanism lacks a capability the services use.
    LacksFlag(&'static str),
    /// The mechanism's key sizes exclude the size the services use.
    KeySize {
        /// Smallest size the token states.
        min: usize,
        /// Largest size the token states.
        max: usize,
        /// The size the services use (bits).
        needed: usize,
    },
    /// The token allows fewer sessions than asked for.
    TooFewSessions {
        /// The token's limit.
        max: u64,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::BadSignature => f.write_str("the signature does not verify"),
            Problem::WrongPlaintext => f.write_str("the result differs from what was encrypted"),
            Problem::Ignored(reason) => write!(f, "{reason}"),
            Problem::Readable => f.write_str("the private exponent can be read"),
            Problem::Wrapped => f.write_str("the private key was wrapped out of the token"),
            Problem::LacksFlag(flag) => write!(f, "no {flag} flag"),
            Problem::KeySize { min, max, needed } => write!(f, "key sizes {min}-{max}, not {needed}"),
            Problem::TooFewSessions { max } => write!(f, "at most {max} sessions"),
        }
    }
}

/// What the token answered beyond the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// C_GetMechanismInfo: key sizes and the capabilities set among those the services use.
    Mechanism {
        /// ulMinKeySize.
        min_key_size: usize,
        /// ulMaxKeySize.
        max_key_size: usize,
        /// Which of sign, verify, encrypt, decrypt, wrap, unwrap, generate_key_pair are set.
        flags: Vec<&'static str>,
    },
    /// The call answered this (the refusal a check wants, or a second login's answer).
    Answered(CkRv),
    /// The token's session limits.
    SessionLimits {
        /// ulMaxSessionCount.
        max: SessionLimit,
        /// ulMaxRwSessionCount.
        max_rw: SessionLimit,
    },
    /// Sessions opened at once, besides the pool's own.
    Opened(usize),
    /// It worked, but the result could not be verified: the token answered this to the
    /// call that would have shown it.
    Unverified(CkRv),
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Observed::Mechanism {
                min_key_size,
                max_key_size,
                flags,
            } => write!(f, "key sizes {min_key_size}-{max_key_size}; {}", flags.join(" ")),
            Observed::Answered(rv) => write!(f, "answered {rv}"),
            Observed::SessionLimits { max, max_rw } => write!(f, "max sessions {max}, read-write {max_rw}"),
            Observed::Opened(n) => write!(f, "opened {n}"),
            Observed::Unverified(rv) => write!(f, "not verified: {rv}"),
        }
    }
}

/// A CK_RV, shown by its PKCS#11 name (`CKR_ARGUMENTS_BAD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CkRv(pub RvError);

impl fmt::Display for CkRv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            RvError::VendorDefined(code) => write!(f, "CKR_VENDOR_DEFINED({code:#x})"),
            RvError::UnknownErrorCode(code) => write!(f, "CK_RV {code:#x}"),
            rv => {
                // cryptoki's variant names are the CKR_ names in camel case.
                f.write_str("CKR")?;
                for c in format!("{rv:?}").chars() {
                    if c.is_ascii_uppercase() {
                        f.write_str("_")?;
                    }
                    write!(f, "{}", c.to_ascii_uppercase())?;
                }
                Ok(())
            }
        }
    }
}
