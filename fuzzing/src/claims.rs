//! The access token's payload and the holder's share it carries.

use contract::claims::{AccessClaims, JwsAlgorithm};
use contract::share::{HolderShare, SHARE_LEN};

/// Parses `data` as an access token's claims (what vault reads once the signature holds)
/// and as a `JwsAlgorithm` name: claims survive a round trip through their serializer and
/// their `Debug` never shows the share; an accepted algorithm name round-trips.
pub fn access_claims(data: &[u8]) {
    if let Ok(claims) = serde_json::from_slice::<AccessClaims>(data) {
        let json = serde_json::to_vec(&claims).expect("claims serialize");
        let back: AccessClaims = serde_json::from_slice(&json).expect("serialized claims parse");
        assert_eq!(back, claims, "claims round trip");
        if let Some(share) = &claims.share {
            let text = share.to_base64url();
            assert!(!format!("{claims:?}").contains(text.as_str()), "Debug shows the share");
        }
    }
    if let Ok(name) = std::str::from_utf8(data)
        && let Ok(algorithm) = name.parse::<JwsAlgorithm>()
    {
        assert_eq!(algorithm.jose_name(), name.trim());
        assert_eq!(algorithm.to_string().parse::<JwsAlgorithm>(), Ok(algorithm));
    }
}

/// Parses `data` as a share's claim text, and as the JSON string the claims hold: an
/// accepted share is 32 bytes, written back exactly as it came (one text per share), never
/// shown by `Debug`, and matches its own check value only.
pub fn holder_share(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(share) = HolderShare::from_base64url(text)
    {
        assert_eq!(share.to_base64url().as_str(), text, "a share has one text");
        assert_eq!(text.len(), 43, "{SHARE_LEN} bytes of unpadded base64");
        assert!(!format!("{share:?}").contains(text));
        let check = share.check_value();
        assert!(share.matches(&check));
        assert!(!share.matches(text), "the share is its own check value");
        assert!(!share.matches(&check[1..]));
    }
    if let Ok(share) = serde_json::from_slice::<HolderShare>(data) {
        let json = serde_json::to_string(&share).expect("a share serializes");
        let back: HolderShare = serde_json::from_str(&json).expect("a serialized share parses");
        assert_eq!(back, share, "share round trip");
    }
}
