//! The little DER reading this crate needs (public keys, PKCS#1 imports); no general parser.

/// The value of the DER element at the start of `input` if its tag is `tag`, and what
/// follows it. Definite lengths up to 64 KiB only (enough for RSA keys up to 8192 bits).
pub(crate) fn der_value(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        l if l < 0x80 => (usize::from(l), rest),
        0x81 => (usize::from(*rest.first()?), &rest[1..]),
        0x82 => (
            usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?])),
            &rest[2..],
        ),
        _ => return None,
    };
    (found == tag && rest.len() >= len).then(|| rest.split_at(len))
}
