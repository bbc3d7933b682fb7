//! JWK and JWK Set documents: what vault reads as manager's signing keys (a set, or a
//! single key) and manager as vault's wrapping key.

use contract::jwk::{Jwk, JwkSet, MIN_RSA_BITS, RsaPublicKey};
use hsm::{PublicKeyInfo, TlsKeyType};

/// Parses `data` as a JWK Set and as a single JWK, as vault's key source does, and checks
/// each key: the document survives a round trip through its serializer, and a key that is
/// accepted is at least [`MIN_RSA_BITS`], comes back unchanged from the JWK it exports to,
/// and has an SPKI that the token side's reader takes for an RSA key.
pub fn jwk_document(data: &[u8]) {
    if let Ok(set) = serde_json::from_slice::<JwkSet>(data) {
        let json = serde_json::to_vec(&set).expect("a JWK Set serializes");
        let back: JwkSet = serde_json::from_slice(&json).expect("a serialized JWK Set parses");
        assert_eq!(back, set, "JWK Set round trip");
        set.keys.iter().for_each(check_key);
    }
    if let Ok(jwk) = serde_json::from_slice::<Jwk>(data) {
        let json = serde_json::to_vec(&jwk).expect("a JWK serializes");
        let back: Jwk = serde_json::from_slice(&json).expect("a serialized JWK parses");
        assert_eq!(back, jwk, "JWK round trip");
        check_key(&jwk);
    }
}

fn check_key(jwk: &Jwk) {
    let Ok(key) = RsaPublicKey::from_jwk(jwk) else {
        return;
    };
    assert!(key.modulus_bits() >= MIN_RSA_BITS);
    assert!(
        key.modulus().first().is_some_and(|&b| b != 0),
        "modulus has a leading zero"
    );
    assert!(
        key.exponent().first().is_some_and(|&b| b != 0),
        "exponent has a leading zero"
    );

    let exported = key.to_jwk("RS256", "sig");
    assert_eq!(exported.kid.as_deref(), Some(key.thumbprint().as_str()));
    let again = RsaPublicKey::from_jwk(&exported).expect("an exported JWK is accepted");
    assert_eq!(again, key, "key round trip through its JWK");
    assert_eq!(again.thumbprint(), key.thumbprint());

    // The same components through the token side's reader: one key, one verdict.
    let components =
        hsm::RsaPublicComponents::new(key.modulus(), key.exponent()).expect("hsm refuses a key contract accepts");
    assert_eq!(
        components.spki_der(),
        key.spki_der().ok(),
        "the two SPKI encoders differ"
    );
    if let Ok(der) = key.spki_der() {
        let info = PublicKeyInfo::from_spki_der(&der).expect("an RSA SPKI we wrote is refused");
        assert_eq!(info.key_type(), TlsKeyType::Rsa);
    }
}
