//! The parsers that see attacker-controlled bytes, one entry point per fuzz target.
//!
//! Each `pub fn <target>(data: &[u8])` hands `data` to the workspace's real parser — the
//! same function the services call, never a copy — and panics if a property the code
//! promises fails: the parser itself panics, an error repeats a value the code says it
//! never repeats, or a value does not survive a round trip through its serializer. The
//! libFuzzer targets in `fuzz/` are one-line calls of these; the property tests in
//! `tests/` run them on stable, on arbitrary bytes and on mutations of the seed corpus in
//! `fuzz/corpus/<target>/`.
//!
//! Non-goals: opening envelopes or anything else that needs a PKCS#11 token, and the HTTP
//! plumbing around the parsers (routing, TLS, limits).
//!
//! ```
//! // Anything at all: a target returns when the parser refuses it, and panics only when
//! // a property fails.
//! fuzzing::envelope(b"eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d");
//! fuzzing::store_key_request(br#"{"user_id": "alice", "key_data": 4111111111111111}"#);
//! ```

mod access_token;
mod claims;
mod der;
mod envelope;
mod json_body;
mod jwk;
mod runtime;

pub use access_token::{ACCESS_TOKEN_AUDIENCE, ACCESS_TOKEN_ISSUER, access_token};
pub use claims::{access_claims, holder_share};
pub use der::{der_element, pkcs1_private_key, rsa_components, spki};
pub use envelope::{FIXED_SHARE, envelope};
pub use json_body::{store_envelope_request, store_key_request};
pub use jwk::jwk_document;

/// A fuzz target: returns on any input its parser refuses or accepts, panics when a
/// property fails.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/` call it.
pub const TARGETS: [(&str, Target); 11] = [
    ("access_token", access_token),
    ("access_claims", access_claims),
    ("holder_share", holder_share),
    ("envelope", envelope),
    ("jwk_document", jwk_document),
    ("store_key_request", store_key_request),
    ("store_envelope_request", store_envelope_request),
    ("der_element", der_element),
    ("spki", spki),
    ("pkcs1_private_key", pkcs1_private_key),
    ("rsa_components", rsa_components),
];
