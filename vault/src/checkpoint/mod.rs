//! Signed checkpoints of the audit chain. The hash chain alone is not keyed: whoever can
//! write the database can edit record k and recompute every hash after it. A checkpoint is
//! the chain's head (a record's `seq` and chain hash) signed inside vault's token with a
//! sign-only key (`audit_key_label`), so a rewrite of any record at or before a checkpoint
//! no longer matches a signature the writer cannot make. Records after the newest
//! checkpoint are not covered: their deletion or rewrite stays undetectable until the
//! next checkpoint is signed (`audit_checkpoint_records` / `audit_checkpoint_seconds`).
//!
//! A checkpoint is a compact JWS (RFC 7515), RS256, `kid` = the audit key's RFC 7638
//! thumbprint (as every kid in this system), `typ` = [`CHECKPOINT_TYPE`], payload
//! [`Checkpoint`]. Any JOSE library can check one with the exported public key. The JWS
//! signing input is built here and signed in the token, as manager's access tokens are
//! (jsonwebtoken has no external-signer entry point); verification uses aws-lc directly,
//! accepting RS256 only, whatever the header says.
//!
//! [`signer`] signs them in the background; `vault-admin audit-verify` reads them
//! ([`sources`]), checks a trail against them ([`verify`]) and prints the [`report`].

pub mod report;
pub mod signer;
pub mod sources;
pub mod verify;

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contract::jwk::RsaPublicKey;
use serde::{Deserialize, Serialize};

/// The only signature algorithm of checkpoints (PKCS#1 v1.5: what every token signs,
/// through p11-kit too).
pub const ALGORITHM: &str = "RS256";

/// The JWS `typ` of a checkpoint, so that it is never mistaken for another signed object.
pub const CHECKPOINT_TYPE: &str = "vault-audit-checkpoint+jwt";

/// What a checkpoint vouches for: the audit record `seq` had chain hash `hash` when it was
/// signed, and so (through the chain) did every record before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The record covered (and all before it), from 1.
    pub seq: i64,
    /// That record's chain hash: lowercase hex SHA-256, as in the `audit` table.
    pub hash: String,
    /// When it was signed, seconds since the Unix epoch.
    pub iat: u64,
}

/// The protected header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
    kid: String,
}

/// Why a checkpoint is not a valid signature over a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Not three base64url parts.
    #[error("not a compact JWS: {0}")]
    Form(&'static str),
    /// The header is not a checkpoint header.
    #[error("the header is not a checkpoint header")]
    Header(#[source] serde_json::Error),
    /// The payload is not a checkpoint.
    #[error("the payload is not a checkpoint")]
    Payload(#[source] serde_json::Error),
    /// A member holds an impossible value.
    #[error("the payload's {0} is invalid")]
    Invalid(&'static str),
    /// Another `typ`: some other signed object.
    #[error("typ {0:?} is not {CHECKPOINT_TYPE:?}")]
    Type(String),
    /// Another algorithm than RS256.
    #[error("alg {0:?} is not {ALGORITHM}")]
    Algorithm(String),
    /// No audit key with this kid is known.
    #[error("signed by kid {0}, which is not a known audit key")]
    UnknownKid(String),
    /// The signature does not verify with the key its kid names.
    #[error("the signature does not verify with audit key {0}")]
    BadSignature(String),
}

/// The JWS signing input (`header.payload`, base64url) of `checkpoint` under `kid`: what
/// the token signs with RS256.
pub fn signing_input(kid: &str, checkpoint: &Checkpoint) -> String {
    let header = Header {
        alg: ALGORITHM.to_owned(),
        typ: CHECKPOINT_TYPE.to_owned(),
        kid: kid.to_owned(),
    };
    format!("{}.{}", b64_json(&header), b64_json(checkpoint))
}

/// The compact JWS from its signing input and the token's raw RSA signature.
pub fn assemble(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn b64_json(value: &impl Serialize) -> String {
    // Serialising strings and integers cannot fail.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default())
}

/// The audit keys a checkpoint may be signed with (every generation, so checkpoints signed
/// before a rotation still verify), by kid.
#[derive(Debug, Clone, Default)]
pub struct AuditKeys {
    keys: Vec<(String, RsaPublicKey)>,
}

impl AuditKeys {
    /// The keys, each under its RFC 7638 thumbprint (a `kid` written next to a key in a
    /// file is not trusted: the thumbprint is recomputed).
    pub fn new(keys: impl IntoIterator<Item = RsaPublicKey>) -> Self {
        Self {
            keys: keys.into_iter().map(|key| (key.thumbprint(), key)).collect(),
        }
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn get(&self, kid: &str) -> Option<&RsaPublicKey> {
        self.keys.iter().find(|(k, _)| k == kid).map(|(_, key)| key)
    }
}

/// A checkpoint read from its JWS but not yet verified: its claims say what it would
/// cover, nothing more.
#[derive(Debug, Clone)]
pub struct Unverified {
    header: Header,
    checkpoint: Checkpoint,
    signing_input: String,
    signature: Vec<u8>,
}

impl Unverified {
    /// Decodes a compact JWS; the signature is not checked.
    pub fn parse(jws: &str) -> Result<Self, CheckpointError> {
        let mut parts = jws.trim().split('.');
        let (Some(header_part), Some(payload_part), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(CheckpointError::Form("it must have three parts"));
        };
        let decode = |part: &str, what| URL_SAFE_NO_PAD.decode(part).map_err(|_| CheckpointError::Form(what));
        let header_json = decode(header_part, "the header is not base64url")?;
        let payload_json = decode(payload_part, "the payload is not base64url")?;
        let header: Header = serde_json::from_slice(&header_json).map_err(CheckpointError::Header)?;
        let checkpoint: Checkpoint = serde_json::from_slice(&payload_json).map_err(CheckpointError::Payload)?;
        if checkpoint.seq < 1 {
            return Err(CheckpointError::Invalid("seq"));
        }
        if checkpoint.hash.len() != 64 || !checkpoint.hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(CheckpointError::Invalid("hash"));
        }
        Ok(Self {
            signing_input: format!("{header_part}.{payload_part}"),
            signature: decode(signature, "the signature is not base64url")?,
            header,
            checkpoint,
        })
    }

    /// What it claims, unverified.
    pub fn claims(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The kid its header names.
    pub fn kid(&self) -> &str {
        &self.header.kid
    }

    /// Checks `typ`, `alg` (RS256 only) and the signature with the key `kid` names.
    pub fn verify(self, keys: &AuditKeys) -> Result<Checkpoint, CheckpointError> {
        if self.header.typ != CHECKPOINT_TYPE {
            return Err(CheckpointError::Type(self.header.typ));
        }
        if self.header.alg != ALGORITHM {
            return Err(CheckpointError::Algorithm(self.header.alg));
        }
        let key = keys
            .get(&self.header.kid)
            .ok_or_else(|| CheckpointError::UnknownKid(self.header.kid.clone()))?;
        let components = RsaPublicKeyComponents {
            n: key.modulus(),
            e: key.exponent(),
        };
        components
            .verify(
                &RSA_PKCS1_2048_8192_SHA256,
                self.signing_input.as_bytes(),
                &self.signature,
            )
            .map_err(|_| CheckpointError::BadSignature(self.header.kid.clone()))?;
        Ok(self.checkpoint)
    }
}

#[cfg(test)]
pub(crate) mod test_keys;

#[cfg(test)]
mod tests {
    use super::test_keys::keys;
    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            seq: 1000,
            hash: "ab".repeat(32),
            iat: 1_700_000_000,
        }
    }

    #[test]
    fn a_signed_checkpoint_verifies_with_its_key_and_says_what_it_covers() -> Result<(), CheckpointError> {
        let [key, _] = keys();
        let jws = key.sign(&checkpoint());
        let unverified = Unverified::parse(&jws)?;
        assert_eq!(unverified.kid(), key.kid());
        assert_eq!(unverified.claims(), &checkpoint());
        let verified = unverified.verify(&AuditKeys::new([key.public.clone()]))?;
        assert_eq!(verified, checkpoint());
        Ok(())
    }

    #[test]
    fn the_header_names_rs256_the_checkpoint_type_and_the_thumbprint() -> Result<(), Box<dyn std::error::Error>> {
        let [key, _] = keys();
        let jws = key.sign(&checkpoint());
        let header = URL_SAFE_NO_PAD.decode(jws.split('.').next().unwrap_or_default())?;
        let header: serde_json::Value = serde_json::from_slice(&header)?;
        assert_eq!(
            header,
            serde_json::json!({"alg": "RS256", "typ": CHECKPOINT_TYPE, "kid": key.public.thumbprint()})
        );
        let payload = URL_SAFE_NO_PAD.decode(jws.split('.').nth(1).unwrap_or_default())?;
        let payload: serde_json::Value = serde_json::from_slice(&payload)?;
        assert_eq!(
            payload,
            serde_json::json!({"seq": 1000, "hash": "ab".repeat(32), "iat": 1_700_000_000u64})
        );
        Ok(())
    }

    #[test]
    fn a_checkpoint_signed_by_another_key_under_the_audit_kid_is_refused() -> Result<(), CheckpointError> {
        let [audit, forger] = keys();
        let forged = forger.sign_as(&audit.kid(), &checkpoint());
        let error = Unverified::parse(&forged)?
            .verify(&AuditKeys::new([audit.public.clone()]))
            .expect_err("forged");
        assert!(matches!(error, CheckpointError::BadSignature(_)), "{error:?}");
        Ok(())
    }

    #[test]
    fn a_checkpoint_by_an_unknown_key_is_refused() -> Result<(), CheckpointError> {
        let [audit, other] = keys();
        let error = Unverified::parse(&other.sign(&checkpoint()))?
            .verify(&AuditKeys::new([audit.public.clone()]))
            .expect_err("unknown kid");
        assert!(matches!(error, CheckpointError::UnknownKid(kid) if kid == other.kid()));
        Ok(())
    }

    /// Swapping the payload of a genuine checkpoint (another seq or hash) breaks it.
    #[test]
    fn an_edited_payload_does_not_verify() -> Result<(), CheckpointError> {
        let [key, _] = keys();
        let jws = key.sign(&checkpoint());
        let parts: Vec<&str> = jws.split('.').collect();
        let edited = Checkpoint {
            hash: "cd".repeat(32),
            ..checkpoint()
        };
        let payload = b64_json(&edited);
        let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
        let error = Unverified::parse(&tampered)?
            .verify(&AuditKeys::new([key.public.clone()]))
            .expect_err("edited");
        assert!(matches!(error, CheckpointError::BadSignature(_)));
        Ok(())
    }

    #[test]
    fn only_rs256_and_the_checkpoint_type_are_accepted() -> Result<(), CheckpointError> {
        let [key, _] = keys();
        let jws = key.sign(&checkpoint());
        let parts: Vec<&str> = jws.split('.').collect();
        let keys = AuditKeys::new([key.public.clone()]);
        for (header, expected) in [
            (
                serde_json::json!({"alg": "none", "typ": CHECKPOINT_TYPE, "kid": key.kid()}),
                "alg",
            ),
            (
                serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": key.kid()}),
                "typ",
            ),
        ] {
            let swapped = format!("{}.{}.{}", b64_json(&header), parts[1], parts[2]);
            let error = Unverified::parse(&swapped)?.verify(&keys).expect_err(expected);
            match expected {
                "alg" => assert!(matches!(error, CheckpointError::Algorithm(_)), "{error:?}"),
                _ => assert!(matches!(error, CheckpointError::Type(_)), "{error:?}"),
            }
        }
        Ok(())
    }

    #[test]
    fn malformed_checkpoints_are_named_not_trusted() {
        let [key, _] = keys();
        let good = key.sign(&checkpoint());
        let parts: Vec<&str> = good.split('.').collect();
        let bad_hash = b64_json(&serde_json::json!({"seq": 1, "hash": "XYZ", "iat": 1}));
        let bad_seq = b64_json(&serde_json::json!({"seq": 0, "hash": "ab".repeat(32), "iat": 1}));
        for (jws, check) in [
            ("", "three parts"),
            ("a.b", "three parts"),
            (&format!("{good}.x") as &str, "three parts"),
            (&format!("!!.{}.{}", parts[1], parts[2]), "header base64"),
            (&format!("{}.{}.{}", b64_json(&"x"), parts[1], parts[2]), "header json"),
            (&format!("{}.{bad_hash}.{}", parts[0], parts[2]), "hash"),
            (&format!("{}.{bad_seq}.{}", parts[0], parts[2]), "seq"),
        ] {
            let error = Unverified::parse(jws).expect_err(check);
            let expected = match check {
                "three parts" | "header base64" => matches!(error, CheckpointError::Form(_)),
                "header json" => matches!(error, CheckpointError::Header(_)),
                "hash" => matches!(error, CheckpointError::Invalid("hash")),
                _ => matches!(error, CheckpointError::Invalid("seq")),
            };
            assert!(expected, "{check}: {error:?}");
        }
    }
}
