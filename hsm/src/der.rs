//! The little DER reading the workspace needs (public keys, PKCS#1 imports, the tests'
//! key scanners); no general parser.

/// The value of the DER element at the start of `input` if its tag is `tag`, and what
/// follows it. Definite lengths up to 64 KiB only (enough for RSA keys up to 8192 bits), in
/// their shortest form as DER requires (BER's longer forms of the same length are refused,
/// so that one key has one encoding).
pub fn value(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        l if l < 0x80 => (usize::from(l), rest),
        0x81 => (usize::from(*rest.first()?), rest.get(1..)?),
        0x82 => (
            usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?])),
            rest.get(2..)?,
        ),
        _ => return None,
    };
    let shortest = match first {
        0x81 => len >= 0x80,
        0x82 => len > 0xff,
        _ => true,
    };
    if !shortest {
        return None;
    }
    (found == tag && rest.len() >= len).then(|| rest.split_at(len))
}

/// The whole DER element (tag, length and value) at the start of `input` if its tag is `tag`.
pub fn element(input: &[u8], tag: u8) -> Option<&[u8]> {
    let (_, rest) = value(input, tag)?;
    Some(&input[..input.len() - rest.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_lengths_are_read_and_truncation_is_refused() {
        assert_eq!(value(&[0x02, 0x01, 0x05, 0xff], 0x02), Some((&[0x05][..], &[0xff][..])));
        let long = [&[0x04, 0x81, 0x80][..], &[7u8; 0x80]].concat();
        assert_eq!(value(&long, 0x04).map(|(v, r)| (v.len(), r.len())), Some((0x80, 0)));
        assert_eq!(element(&long, 0x04), Some(&long[..]));
        assert_eq!(value(&[0x04, 0x82, 0x01], 0x04), None, "truncated length");
        assert_eq!(value(&[0x04, 0x81], 0x04), None, "truncated length");
        assert_eq!(value(&[0x02, 0x05, 0x00], 0x02), None, "truncated value");
        assert_eq!(value(&[0x02, 0x01, 0x05], 0x30), None, "another tag");
        assert_eq!(value(&[0x02, 0x83, 0, 0, 1, 0], 0x02), None, "lengths past 64 KiB");
    }

    #[test]
    fn lengths_in_a_longer_form_than_needed_are_refused() {
        assert_eq!(
            value(&[0x02, 0x81, 0x01, 0x05], 0x02),
            None,
            "0x81 for a length under 128"
        );
        assert_eq!(
            value(&[0x02, 0x82, 0x00, 0x01, 0x05], 0x02),
            None,
            "0x82 for a length under 256"
        );
        let long = [&[0x04, 0x82, 0x00, 0x80][..], &[7u8; 0x80]].concat();
        assert_eq!(value(&long, 0x04), None, "0x82 for 128");
    }
}
