//! The JWE envelope: what vault parses from manager's store request and from every row.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contract::envelope::{Binding, CONTENT_ENCRYPTION, Envelope, EnvelopeError, KeyWrap, ProtectedHeader, Version};
use contract::share::HolderShare;

/// The holder's share some seed envelopes are sealed with (32 bytes of `0x11`), so that the
/// target reaches the branch where a share fits. A fixture, never a real share.
pub const FIXED_SHARE: &str = "ERERERERERERERERERERERERERERERERERERERERERE";

/// Parses `data` as a compact envelope and checks what vault relies on: the parts come
/// back byte for byte when re-serialized (what `rewrap` writes), the header is consistent
/// with the version and algorithms it names, the binding and share checks accept exactly
/// what the header records, and no key that is not the content key opens it.
pub fn envelope(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = match Envelope::parse(text) {
        Ok(parsed) => parsed,
        Err(error) => return check_refusal(text, &error),
    };
    let header = parsed.header();

    assert_eq!(parsed.with_encrypted_key(parsed.encrypted_key()), text, "re-serialized");
    let rewrapped = parsed.with_encrypted_key(b"another wrapped key");
    let reparsed = Envelope::parse(&rewrapped).expect("a rewrapped envelope parses");
    assert_eq!(reparsed.header(), header);
    assert_eq!(reparsed.encrypted_key(), b"another wrapped key");

    assert_eq!(header.enc, CONTENT_ENCRYPTION);
    assert_eq!(parsed.key_wrap().jose_name(), header.alg);
    assert_eq!(header.version().ok(), Some(parsed.version()));
    let json = serde_json::to_vec(header).expect("a header serializes");
    let back: ProtectedHeader = serde_json::from_slice(&json).expect("a serialized header parses");
    assert_eq!(&back, header, "header round trip");

    let own = Binding {
        key_id: &header.key_id,
        user_id: &header.user_id,
    };
    assert!(parsed.check_binding(own).is_ok());
    let other_owner = format!("{}.", header.user_id);
    assert!(matches!(
        parsed.check_binding(Binding {
            user_id: &other_owner,
            ..own
        }),
        Err(EnvelopeError::BindingMismatch)
    ));

    check_shares(&parsed);
}

fn check_shares(parsed: &Envelope) {
    let fixed = HolderShare::from_base64url(FIXED_SHARE).expect("the fixture share is well-formed");
    let fits_fixed = parsed.header().share_check.as_deref() == Some(fixed.check_value().as_str());
    let (needed, refused) = match parsed.version() {
        Version::V1 => (None, Some(&fixed)),
        Version::V2 => (Some(&fixed), None),
    };
    assert!(
        matches!(parsed.check_share(refused), Err(EnvelopeError::ShareMismatch)),
        "a share where none belongs, or none where one is needed"
    );
    let accepted = parsed.check_share(needed).is_ok();
    assert_eq!(accepted, parsed.version() == Version::V1 || fits_fixed);
    for unwrapped in [&[0u8; 32][..], &[0u8; 31], &[]] {
        assert!(
            parsed.open(unwrapped, needed).is_err(),
            "an envelope opened with a key that is not its content key"
        );
    }
}

/// A refusal names at most the `alg` or `enc` it does not support, exactly as the header
/// wrote it; every other message is the code's own text.
fn check_refusal(text: &str, error: &EnvelopeError) {
    match error {
        EnvelopeError::Malformed(_) | EnvelopeError::UnsupportedVersion => {}
        EnvelopeError::UnsupportedAlgorithm(name) => {
            let header = text
                .split('.')
                .next()
                .and_then(|part| URL_SAFE_NO_PAD.decode(part).ok());
            let header: ProtectedHeader = header
                .and_then(|json| serde_json::from_slice(&json).ok())
                .expect("an algorithm is judged only in a header that parsed");
            assert!(
                *name == header.enc || (*name == header.alg && name.parse::<KeyWrap>().is_err()),
                "refused {name:?}, which is neither the header's alg nor its enc"
            );
            // The message never repeats the name: it is request text.
            assert_eq!(error.to_string(), "unsupported envelope algorithm (alg or enc)");
        }
        other => panic!("parsing alone reported {other:?}"),
    }
}
