//! The holder's share: 256 random bits manager draws for each secret and hands only to the
//! caller, inside the access token. Opening a version-2 envelope needs it besides vault's
//! token, so neither server alone — host, PIN and database included — can read a stored
//! secret. Neither service stores or logs it; in memory it lives in zeroizing buffers.

use std::fmt;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// Length of a share in bytes.
pub const SHARE_LEN: usize = 32;

/// HKDF `info` of the content key a version-2 envelope is encrypted under.
const CONTENT_KEY_INFO: &[u8] = b"secret-store envelope v2: content key";
/// HKDF `info` of the share's check value, stored in the envelope header.
const CHECK_INFO: &[u8] = b"secret-store envelope v2: share check";

/// A holder's share. Its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct HolderShare(Zeroizing<[u8; SHARE_LEN]>);

/// A share claim that is not 32 bytes of base64url.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the share is not 32 bytes of base64url")]
pub struct MalformedShare;

/// The system RNG failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomFailed;

impl HolderShare {
    /// A fresh share from the system RNG.
    pub fn generate() -> Result<Self, RandomFailed> {
        let mut bytes = Zeroizing::new([0u8; SHARE_LEN]);
        SystemRandom::new().fill(bytes.as_mut()).map_err(|_| RandomFailed)?;
        Ok(Self(bytes))
    }

    /// The share as the access token's claim carries it.
    pub fn from_base64url(text: &str) -> Result<Self, MalformedShare> {
        let decoded = Zeroizing::new(URL_SAFE_NO_PAD.decode(text).map_err(|_| MalformedShare)?);
        let mut bytes = Zeroizing::new([0u8; SHARE_LEN]);
        if decoded.len() != SHARE_LEN {
            return Err(MalformedShare);
        }
        bytes.copy_from_slice(&decoded);
        Ok(Self(bytes))
    }

    /// The claim's text.
    pub fn to_base64url(&self) -> Zeroizing<String> {
        Zeroizing::new(URL_SAFE_NO_PAD.encode(self.0.as_ref()))
    }

    /// The value a version-2 envelope's header records (`share_check`): one-way, so the
    /// header reveals nothing of the share, yet vault can tell a wrong share (a bad token)
    /// from an envelope altered at rest before it asks its token for anything.
    pub fn check_value(&self) -> String {
        URL_SAFE_NO_PAD.encode(hkdf(&[], self.0.as_ref(), CHECK_INFO).as_ref())
    }

    /// Whether this share is the one `check_value` was computed from (constant time).
    pub fn matches(&self, check_value: &str) -> bool {
        let expected = self.check_value();
        verify_slices_are_equal(expected.as_bytes(), check_value.as_bytes()).is_ok()
    }

    /// The content key of a version-2 envelope: HKDF-SHA-256 with the share as salt over
    /// the key unwrapped in vault's token. Either input alone determines nothing.
    pub fn content_key(&self, unwrapped: &[u8]) -> Zeroizing<[u8; SHARE_LEN]> {
        hkdf(self.0.as_ref(), unwrapped, CONTENT_KEY_INFO)
    }
}

fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; SHARE_LEN]> {
    let mut out = Zeroizing::new([0u8; SHARE_LEN]);
    // HKDF-SHA-256 expanding to one hash length cannot fail.
    let _ = Salt::new(HKDF_SHA256, salt)
        .extract(ikm)
        .expand(&[info], HKDF_SHA256)
        .and_then(|okm| okm.fill(out.as_mut()));
    out
}

impl fmt::Debug for HolderShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HolderShare(<redacted>)")
    }
}

impl PartialEq for HolderShare {
    fn eq(&self, other: &Self) -> bool {
        verify_slices_are_equal(self.0.as_ref(), other.0.as_ref()).is_ok()
    }
}

impl Eq for HolderShare {}

impl Serialize for HolderShare {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64url())
    }
}

impl<'de> Deserialize<'de> for HolderShare {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(deserializer)?);
        HolderShare::from_base64url(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_round_trips_through_its_claim_text_and_never_prints() {
        let share = HolderShare::generate().expect("rng");
        let text = share.to_base64url();
        assert_eq!(text.len(), 43);
        assert_eq!(HolderShare::from_base64url(&text), Ok(share.clone()));
        assert!(!format!("{share:?}").contains(text.as_str()));
        for bad in ["", "AAAA", &"A".repeat(44), "!!!!"] {
            assert_eq!(HolderShare::from_base64url(bad), Err(MalformedShare), "{bad:?}");
        }
    }

    #[test]
    fn the_check_value_tells_the_right_share_from_any_other() {
        let share = HolderShare::generate().expect("rng");
        let other = HolderShare::generate().expect("rng");
        let check = share.check_value();
        assert!(share.matches(&check));
        assert!(!other.matches(&check));
        assert!(!share.matches(""));
        assert_ne!(check, share.to_base64url().as_str());
    }

    #[test]
    fn the_content_key_depends_on_both_the_share_and_the_unwrapped_key() {
        let share = HolderShare::generate().expect("rng");
        let other = HolderShare::generate().expect("rng");
        let a = share.content_key(&[1u8; 32]);
        assert_eq!(a, share.content_key(&[1u8; 32]));
        assert_ne!(a, share.content_key(&[2u8; 32]));
        assert_ne!(a, other.content_key(&[1u8; 32]));
        assert_ne!(a.as_ref(), &[1u8; 32]);
    }
}
