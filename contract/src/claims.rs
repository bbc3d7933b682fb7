//! The access token: its claims and its signature algorithm, what manager signs and vault
//! checks.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::share::HolderShare;

/// The access token's signature algorithm (JWS `alg`, RFC 7518 §3): RSA with SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwsAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt.
    Ps256,
}

impl JwsAlgorithm {
    /// The JOSE `alg` name.
    pub fn jose_name(self) -> &'static str {
        match self {
            JwsAlgorithm::Rs256 => "RS256",
            JwsAlgorithm::Ps256 => "PS256",
        }
    }
}

impl fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.jose_name())
    }
}

/// An `alg` this system does not sign or accept access tokens with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported token algorithm {0:?} (supported: RS256, PS256)")]
pub struct UnsupportedAlgorithm(pub String);

impl FromStr for JwsAlgorithm {
    type Err = UnsupportedAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "RS256" => Ok(JwsAlgorithm::Rs256),
            "PS256" => Ok(JwsAlgorithm::Ps256),
            other => Err(UnsupportedAlgorithm(other.to_owned())),
        }
    }
}

/// The only scope manager grants: read the one secret named in `key_id`.
pub const READ_SCOPE: &str = "secrets:read";

/// JWT claims of an access token (RFC 7519 names plus `key_id` and `scope`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// manager's issuer URL.
    pub iss: String,
    /// vault's audience.
    pub aud: String,
    /// The owner's user_id.
    pub sub: String,
    /// The one secret this token unlocks.
    pub key_id: String,
    /// Unique token id (for revocation).
    pub jti: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Not before, seconds since the Unix epoch.
    pub nbf: u64,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Space-separated scopes.
    pub scope: String,
    /// The holder's share of a version-2 secret (base64url): with vault's token, what opens
    /// it. Absent from tokens issued before split trust. Never logged: its `Debug` is
    /// redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<HolderShare>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip_and_unknown_ones_are_refused() {
        for algorithm in [JwsAlgorithm::Rs256, JwsAlgorithm::Ps256] {
            assert_eq!(algorithm.jose_name().parse::<JwsAlgorithm>(), Ok(algorithm));
        }
        for refused in ["HS256", "none", "rs256", ""] {
            assert!(refused.parse::<JwsAlgorithm>().is_err(), "{refused:?}");
        }
    }
}
