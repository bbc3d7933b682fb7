//! The DER readers in `hsm`: elements, SubjectPublicKeyInfo, PKCS#1 private keys, and RSA
//! public components as a token reports them. Pure functions; no token involved.

use contract::jwk::RsaPublicKey;
use hsm::{PublicKeyInfo, RsaPrivateComponents, RsaPublicComponents, TlsKeyType};

/// The largest length `hsm::der` reads (two length bytes).
const MAX_DER_LEN: usize = 0xffff;

/// `data` is the tag asked for, then the input. An element that is read splits the input
/// into tag, length, value and rest exactly as its length field says, and no other tag
/// reads it.
pub fn der_element(data: &[u8]) {
    let Some((&tag, input)) = data.split_first() else {
        return;
    };
    let value = hsm::der::value(input, tag);
    let element = hsm::der::element(input, tag);
    assert_eq!(value.is_some(), element.is_some(), "value and element disagree");
    let (Some((value, rest)), Some(element)) = (value, element) else {
        return;
    };
    assert_eq!(input.first(), Some(&tag));
    assert_eq!([element, rest].concat(), input, "element and rest are not the input");
    assert!(element.ends_with(value));
    let declared = match (element.len() - value.len(), input[1]) {
        (2, short) if short < 0x80 => usize::from(short),
        (3, 0x81) => usize::from(input[2]),
        (4, 0x82) => usize::from(u16::from_be_bytes([input[2], input[3]])),
        (header, first) => panic!("a {header}-byte header with length byte {first:#04x} was read"),
    };
    assert_eq!(
        declared,
        value.len(),
        "the value is not as long as its length field says"
    );
    assert!(
        hsm::der::value(input, tag.wrapping_add(1)).is_none(),
        "read under another tag"
    );
}

/// An accepted SubjectPublicKeyInfo is kept byte for byte, and its subject public key is
/// the BIT STRING's content: a 65-byte point for P-256, a PKCS#1 `RSAPublicKey` for RSA.
pub fn spki(data: &[u8]) {
    let Some(info) = PublicKeyInfo::from_spki_der(data) else {
        return;
    };
    assert_eq!(info.spki_der(), data);
    let key = info.subject_public_key();
    assert!(data.ends_with(key), "the subject public key is not the SPKI's tail");
    match info.key_type() {
        TlsKeyType::EcdsaP256 => assert_eq!(key.len(), 65),
        TlsKeyType::Rsa => {
            let (outer, _) = hsm::der::value(data, 0x30).expect("an accepted SPKI is a SEQUENCE");
            let (bits, _) = hsm::der::value(&outer[15..], 0x03).expect("the key is a BIT STRING");
            assert_eq!(bits.split_first(), Some((&0, key)), "unused-bits byte, then the key");
            assert_eq!(key.first(), Some(&0x30), "RSAPublicKey is a SEQUENCE");
        }
    }
    assert_eq!(info.key_type().to_string().parse::<TlsKeyType>(), Ok(info.key_type()));
}

/// An accepted PKCS#1 `RSAPrivateKey` has its nine INTEGERs without leading zeros, and
/// their canonical DER re-encoding reads back to the same components.
pub fn pkcs1_private_key(data: &[u8]) {
    let Some(key) = RsaPrivateComponents::from_pkcs1_der(data) else {
        return;
    };
    let parts = components(&key);
    for part in parts {
        assert_ne!(part.first(), Some(&0), "an INTEGER kept a leading zero");
    }
    let body: Vec<u8> = std::iter::once(&[][..])
        .chain(parts)
        .flat_map(|part| encode(0x02, &integer(part)))
        .collect();
    if body.len() > MAX_DER_LEN {
        return;
    }
    let again = RsaPrivateComponents::from_pkcs1_der(&encode(0x30, &body)).expect("canonical DER is refused");
    assert_eq!(components(&again), parts, "PKCS#1 round trip");
}

/// `data` is a two-byte big-endian modulus length, the modulus, then the exponent — the
/// CKA_MODULUS and CKA_PUBLIC_EXPONENT a token reports. `contract` (JWKs, envelopes) and
/// `hsm` (the token side) each judge them: one key, one verdict, one SPKI.
pub fn rsa_components(data: &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let (n, e) = rest.split_at(usize::from(u16::from_be_bytes(*len)).min(rest.len()));
    let contract = RsaPublicKey::from_components(n, e).ok();
    let token = RsaPublicComponents::new(n, e);
    let (Some(contract), Some(token)) = (contract.as_ref(), token.as_ref()) else {
        assert_eq!(
            contract.is_some(),
            token.is_some(),
            "contract and hsm disagree on a key"
        );
        return;
    };
    assert_eq!(contract.modulus(), token.modulus());
    assert_eq!(contract.exponent(), token.exponent());
    let spki = token.spki_der();
    assert_eq!(
        contract.spki_der().ok(),
        spki,
        "contract and hsm encode the SPKI differently"
    );
    if let Some(spki) = spki {
        let info = PublicKeyInfo::from_spki_der(&spki).expect("an SPKI hsm wrote is refused by hsm");
        assert_eq!(info.key_type(), TlsKeyType::Rsa);
    }
}

fn components(key: &RsaPrivateComponents) -> [&[u8]; 8] {
    [&key.n, &key.e, &key.d, &key.p, &key.q, &key.dp, &key.dq, &key.qinv].map(Vec::as_slice)
}

/// A non-negative INTEGER's content: minimal, with a zero byte before a high bit.
fn integer(magnitude: &[u8]) -> Vec<u8> {
    match magnitude.first() {
        None => vec![0],
        Some(top) if top & 0x80 != 0 => [&[0], magnitude].concat(),
        Some(_) => magnitude.to_vec(),
    }
}

/// Tag, minimal definite length, value.
fn encode(tag: u8, value: &[u8]) -> Vec<u8> {
    let len = value.len();
    let header = match u8::try_from(len) {
        Ok(short) if short < 0x80 => vec![tag, short],
        Ok(byte) => vec![tag, 0x81, byte],
        Err(_) => [&[tag, 0x82][..], &u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes()].concat(),
    };
    [header, value.to_vec()].concat()
}
