//! Access tokens made outside manager, the way an attacker would make them: any header and
//! claims, signed by any key — an attacker's own, or manager's signing key in its token
//! (what someone who owns manager's host and PIN can do).

use anyhow::Result;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::tokens::dev_pool;

/// A compact JWS with `header` and `claims`, signed by `sign` over the signing input.
pub fn forge(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// A compact JWS with `header` and `claims` signed RS256 inside manager's token by its
/// signing key `manager-signing` (the `.dev/` token, whose keys the services' copies share).
pub async fn signed_by_managers_token(header: &Value, claims: &Value) -> Result<String> {
    let input = forge(header, claims, |_| Vec::new());
    let input = input.trim_end_matches('.');
    let signer = hsm::Signer::new(
        dev_pool("manager").await?,
        "manager-signing",
        hsm::RsaScheme::Pkcs1Sha256,
    );
    let signature = signer.sign(input.as_bytes()).await?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}
