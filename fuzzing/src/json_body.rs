//! Request bodies through service-kit's JSON extractor: manager's `POST /api/keys` and
//! vault's `PUT /internal/keys/{key_id}`. Its refusals go to the client and into the log,
//! and promise to repeat nothing the body said but plain field names.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use contract::wire::{ErrorBody, StoreEnvelopeRequest, StoreKeyRequest};
use serde::de::DeserializeOwned;
use service_kit::json::{AppJson, JsonBodyError, ShapeError, ShapeProblem};

use crate::runtime::block_on;

mod keys;

/// What the refusal of a body may say about one request type.
struct Vocabulary {
    /// The type's field names, in declaration order.
    fields: &'static [&'static str],
    /// Every `expected` the type's fields and serde can state.
    expected: &'static [&'static str],
}

const STORE_KEY: Vocabulary = Vocabulary {
    fields: &["user_id", "key_data", "ttl_seconds", "max_reads"],
    expected: &[
        "a string",
        "u64",
        "u32",
        "one of `user_id`, `key_data`, `ttl_seconds`, `max_reads`",
        "struct StoreKeyRequest",
        "struct StoreKeyRequest with 4 elements",
    ],
};

const STORE_ENVELOPE: Vocabulary = Vocabulary {
    fields: &["user_id", "envelope", "expires_at", "max_reads"],
    expected: &[
        "a string",
        "u64",
        "u32",
        "one of `user_id`, `envelope`, `expires_at`, `max_reads`",
        "struct StoreEnvelopeRequest",
        "struct StoreEnvelopeRequest with 4 elements",
    ],
};

/// `data` as the body of manager's store request: a refusal repeats no value of the body.
pub fn store_key_request(data: &[u8]) {
    let _accepted: Option<StoreKeyRequest> = extract(data, &STORE_KEY);
}

/// `data` as the body of vault's internal store request: a refusal repeats no value of the
/// body, and an accepted request survives a round trip through its serializer.
pub fn store_envelope_request(data: &[u8]) {
    let Some(request) = extract::<StoreEnvelopeRequest>(data, &STORE_ENVELOPE) else {
        return;
    };
    let json = serde_json::to_vec(&request).expect("a store request serializes");
    let back: StoreEnvelopeRequest = serde_json::from_slice(&json).expect("a serialized store request parses");
    assert_eq!(back, request, "store request round trip");
}

/// The body through `AppJson<T>` as a handler receives it; refusals are checked.
fn extract<T: DeserializeOwned>(data: &[u8], vocabulary: &Vocabulary) -> Option<T> {
    let request = Request::builder()
        .method("POST")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(data.to_vec()))
        .expect("a request with a fixed method and header builds");
    match block_on(AppJson::<T>::from_request(request, &())) {
        Ok(AppJson(value)) => Some(value),
        Err(refusal) => {
            check_refusal(data, refusal, vocabulary);
            None
        }
    }
}

fn check_refusal(data: &[u8], refusal: JsonBodyError, vocabulary: &Vocabulary) {
    let message = refusal.to_string();
    assert!(
        !message.chars().any(char::is_control),
        "control character in {message:?}"
    );
    match &refusal {
        JsonBodyError::Syntax => assert_eq!(message, "request body is not valid JSON"),
        JsonBodyError::Shape(shape) => check_shape(data, shape, &message, vocabulary),
        other => panic!("a body in memory of a JSON request was refused as {other:?}"),
    }
    let response = refusal.into_response();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let bytes = block_on(axum::body::to_bytes(response.into_body(), 64 * 1024)).expect("an error body is in memory");
    let body: ErrorBody = serde_json::from_slice(&bytes).expect("an error body in the contract's shape");
    assert_eq!(body.error.message, message, "the client is told what the log is told");
}

/// The shape error is made of the type's words only — a field of the type, the kind of
/// problem, a field name the type has (or an unknown one that is a plain name and a key of
/// the body), what the type expected — so no value of the body can be in it.
fn check_shape(data: &[u8], shape: &ShapeError, message: &str, vocabulary: &Vocabulary) {
    if let Some(field) = shape.field() {
        assert!(vocabulary.fields.contains(&field), "field {field:?} is not the type's");
    }
    if let Some(name) = shape.name() {
        let allowed = match shape.problem() {
            ShapeProblem::UnknownField => is_plain(name) && keys::of(data).iter().any(|key| key == name),
            ShapeProblem::MissingField | ShapeProblem::DuplicateField => vocabulary.fields.contains(&name),
            _ => false,
        };
        assert!(allowed, "{:?} names {name:?}", shape.problem());
    }
    if let Some(expected) = shape.expected() {
        assert!(
            vocabulary.expected.contains(&expected),
            "expected {expected:?} is not the type's"
        );
    }
    let mut composed = String::from("request body has the wrong shape: ");
    if let Some(field) = shape.field() {
        composed += &format!("{field}: ");
    }
    composed += match shape.problem() {
        ShapeProblem::WrongType => "wrong type",
        ShapeProblem::OutOfRange => "out of range",
        ShapeProblem::NotAnInteger => "not an integer, or out of range",
        ShapeProblem::InvalidValue | ShapeProblem::Other => "invalid value",
        ShapeProblem::WrongLength => "wrong length",
        ShapeProblem::UnknownVariant => "unknown variant",
        ShapeProblem::MissingField => "missing field",
        ShapeProblem::DuplicateField => "duplicate field",
        ShapeProblem::UnknownField => "unknown field",
    };
    if let Some(name) = shape.name() {
        composed += &format!(" `{name}`");
    }
    if let Some(expected) = shape.expected() {
        composed += &format!(" (expected {expected})");
    }
    assert_eq!(message, composed, "the refusal says more than its parts");
}

/// The extractor's own test for a name it may repeat: a short identifier.
fn is_plain(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 32
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
