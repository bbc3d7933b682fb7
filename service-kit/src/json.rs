//! The JSON body extractor and the one function that writes the contract's error body.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use contract::error_code::ErrorCode;
use contract::wire::{ErrorBody, ErrorDetail};
use serde::de::DeserializeOwned;

mod shape;

pub use shape::{ShapeError, ShapeProblem};

/// Writes `{"error": {"code", "message"}}` with `status`.
pub fn error_response(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code,
            message: message.into(),
        },
    };
    (status, axum::Json(body)).into_response()
}

/// Fallback for unknown paths: 404 in the error shape.
pub async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such endpoint")
}

/// Fallback for known paths with another method: 405 in the error shape.
pub async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "method not allowed on this endpoint",
    )
}

/// The RFC 6750 §3 challenge sent with a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerChallenge {
    /// No credentials were sent: a bare `Bearer` challenge.
    Missing,
    /// A token was sent and refused: `error="invalid_token"`.
    InvalidToken,
}

/// Like [`error_response`] for 401, with the `WWW-Authenticate` challenge.
pub fn unauthorized(challenge: BearerChallenge, code: ErrorCode, message: impl Into<String>) -> Response {
    let mut response = error_response(StatusCode::UNAUTHORIZED, code, message);
    let value = match challenge {
        BearerChallenge::Missing => HeaderValue::from_static("Bearer"),
        BearerChallenge::InvalidToken => HeaderValue::from_static(r#"Bearer error="invalid_token""#),
    };
    response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    response
}

/// Why a JSON body was refused.
#[derive(Debug, thiserror::Error)]
pub enum JsonBodyError {
    /// `Content-Type` is missing or not `application/json`: 415.
    #[error("expected Content-Type: application/json")]
    NotJson,
    /// The body exceeds the route's limit: 413.
    #[error("request body too large")]
    TooLarge,
    /// Not JSON at all (including invalid UTF-8 or escapes inside strings): 400.
    #[error("request body is not valid JSON")]
    Syntax,
    /// JSON, but not the expected shape (missing field, wrong type, unknown field): 400.
    #[error("request body has the wrong shape: {0}")]
    Shape(ShapeError),
    /// The body could not be read: 400.
    #[error("request body could not be read")]
    Unreadable,
}

impl From<JsonRejection> for JsonBodyError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => JsonBodyError::NotJson,
            JsonRejection::JsonSyntaxError(_) => JsonBodyError::Syntax,
            JsonRejection::JsonDataError(e) => JsonBodyError::Shape(ShapeError::from_serde_text(&e.body_text())),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => JsonBodyError::TooLarge,
            _ => JsonBodyError::Unreadable,
        }
    }
}

impl IntoResponse for JsonBodyError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            JsonBodyError::NotJson => (StatusCode::UNSUPPORTED_MEDIA_TYPE, ErrorCode::UnsupportedMediaType),
            JsonBodyError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge),
            JsonBodyError::Syntax => (StatusCode::BAD_REQUEST, ErrorCode::InvalidJson),
            JsonBodyError::Shape(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
            JsonBodyError::Unreadable => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
        };
        error_response(status, code, self.to_string())
    }
}

/// `axum::Json`, but rejections answer in the contract's error shape.
pub struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = JsonBodyError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(AppJson(value))
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use contract::wire::StoreKeyRequest;
    use serde::Deserialize;

    use super::*;

    /// A card number: what a mistyped secret looks like.
    const CARD: &str = "4111111111111111";

    /// What `T` makes of `body`, through the extractor the services use.
    async fn refusal<T: DeserializeOwned>(body: &str) -> JsonBodyError {
        let request = Request::builder()
            .method("POST")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .expect("request");
        match AppJson::<T>::from_request(request, &()).await {
            Ok(_) => panic!("{body} was accepted"),
            Err(e) => e,
        }
    }

    async fn shape_of<T: DeserializeOwned>(body: &str) -> ShapeError {
        match refusal::<T>(body).await {
            JsonBodyError::Shape(shape) => shape,
            other => panic!("{body}: {other:?}"),
        }
    }

    /// The shape error, after checking that neither its message nor the 400 body it
    /// becomes repeats any of `secrets`.
    async fn shape_without(body: &str, secrets: &[&str]) -> ShapeError {
        let shape = shape_of::<StoreKeyRequest>(body).await;
        let message = JsonBodyError::Shape(shape.clone()).to_string();
        let response = JsonBodyError::Shape(shape.clone()).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let bytes = axum::body::to_bytes(response.into_body(), 4096).await.expect("body");
        let answer = String::from_utf8_lossy(&bytes);
        for secret in secrets {
            assert!(!message.contains(secret), "{body}: {message:?}");
            assert!(!answer.contains(secret), "{body}: {answer}");
        }
        assert!(!message.chars().any(char::is_control), "{body}: {message:?}");
        shape
    }

    #[tokio::test]
    async fn type_errors_name_the_field_and_what_it_expected_but_not_the_value() {
        let string_field = [
            format!(r#"{{"user_id": "u", "key_data": {CARD}}}"#),
            format!(r#"{{"user_id": "u", "key_data": -{CARD}}}"#),
            format!(r#"{{"user_id": "u", "key_data": {CARD}.25}}"#),
            format!(r#"{{"user_id": "u", "key_data": [{CARD}]}}"#),
            format!(r#"{{"user_id": "u", "key_data": {{"n": {CARD}}}}}"#),
            r#"{"user_id": "u", "key_data": true}"#.to_owned(),
            r#"{"user_id": "u", "key_data": null}"#.to_owned(),
        ];
        for body in string_field {
            let shape = shape_without(&body, &[CARD, "true", "25"]).await;
            assert_eq!(shape.problem(), ShapeProblem::WrongType, "{body}");
            assert_eq!(shape.field(), Some("key_data"), "{body}");
            assert_eq!(shape.expected(), Some("a string"), "{body}");
        }
        let body = format!(r#"{{"user_id": "u", "key_data": "x", "ttl_seconds": "{CARD}"}}"#);
        let shape = shape_without(&body, &[CARD]).await;
        assert_eq!(shape.problem(), ShapeProblem::WrongType);
        assert_eq!(shape.field(), Some("ttl_seconds"));
        assert_eq!(shape.expected(), Some("u64"));
        // A string that tries to pass for the expected type's description.
        let body = r#"{"user_id": "u", "key_data": "x", "ttl_seconds": "1, expected SECRET"}"#;
        let shape = shape_without(body, &["SECRET"]).await;
        assert_eq!(shape.expected(), Some("u64"));
    }

    #[tokio::test]
    async fn integers_outside_the_type_are_out_of_range_without_the_value() {
        let huge = "98765432109876543210";
        let cases = [
            ("ttl_seconds", format!("-{CARD}"), ShapeProblem::OutOfRange),
            ("max_reads", CARD.to_owned(), ShapeProblem::OutOfRange),
            ("max_reads", huge.to_owned(), ShapeProblem::NotAnInteger),
            ("ttl_seconds", huge.to_owned(), ShapeProblem::NotAnInteger),
            ("ttl_seconds", format!("{CARD}.5"), ShapeProblem::NotAnInteger),
            ("ttl_seconds", format!("{CARD}e3"), ShapeProblem::NotAnInteger),
        ];
        for (field, value, problem) in cases {
            let body = format!(r#"{{"user_id": "u", "key_data": "x", "{field}": {value}}}"#);
            // serde renders 98765432109876543210 as 9.876543210987654e19.
            let shape = shape_without(&body, &[CARD, huge, "9876543210", "4111"]).await;
            assert_eq!(shape.problem(), problem, "{body}");
            assert_eq!(shape.field(), Some(field), "{body}");
        }
    }

    #[tokio::test]
    async fn missing_and_duplicate_fields_are_named() {
        let shape = shape_without(r#"{"key_data": "x"}"#, &[]).await;
        assert_eq!(shape.problem(), ShapeProblem::MissingField);
        assert_eq!((shape.field(), shape.name()), (None, Some("user_id")));
        let body = format!(r#"{{"user_id": "u", "key_data": "x", "key_data": "{CARD}"}}"#);
        let shape = shape_without(&body, &[CARD]).await;
        assert_eq!(shape.problem(), ShapeProblem::DuplicateField);
        assert_eq!(shape.name(), Some("key_data"));
    }

    #[tokio::test]
    async fn unknown_fields_are_named_only_when_plain() {
        let body = r#"{"user_id": "u", "key_data": "x", "admin": true}"#;
        let shape = shape_without(body, &[]).await;
        assert_eq!(shape.problem(), ShapeProblem::UnknownField);
        assert_eq!((shape.field(), shape.name()), (None, Some("admin")));
        let listed = "one of `user_id`, `key_data`, `ttl_seconds`, `max_reads`";
        assert_eq!(shape.expected(), Some(listed));
        let hostile = [
            format!("a\\nFORGED\\u001b[31m{CARD}"),
            CARD.to_owned(),
            format!("x{}", "y".repeat(40)),
            "a: missing field `b".to_owned(),
            "a`, expected `b".to_owned(),
            "é".to_owned(),
        ];
        for name in hostile {
            let body = format!(r#"{{"user_id": "u", "key_data": "x", "{name}": 1}}"#);
            let shape = shape_without(&body, &[CARD, "FORGED", "yyyy", "`b", "é"]).await;
            assert_eq!(shape.problem(), ShapeProblem::UnknownField, "{body}");
            assert_eq!((shape.field(), shape.name()), (None, None), "{body}");
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only ever deserialized")]
    struct Probe {
        kind: Kind,
        pair: [u8; 2],
    }

    #[derive(Debug, Deserialize)]
    enum Kind {
        Plain,
    }

    #[tokio::test]
    async fn variants_and_lengths_are_refused_without_the_value() {
        let shape = shape_of::<Probe>(&format!(r#"{{"kind": "x{CARD}", "pair": [1, 2]}}"#)).await;
        assert_eq!(
            (shape.problem(), shape.field()),
            (ShapeProblem::UnknownVariant, Some("kind"))
        );
        assert!(!shape.to_string().contains(CARD), "{shape}");
        let shape = shape_of::<Probe>(r#"{"kind": "Plain", "pair": [1]}"#).await;
        assert_eq!(
            (shape.problem(), shape.field()),
            (ShapeProblem::WrongLength, Some("pair"))
        );
        let shape = shape_of::<Probe>(r#"{"kind": "Plain", "pair": [1, 1234567]}"#).await;
        assert_eq!(
            (shape.problem(), shape.field()),
            (ShapeProblem::OutOfRange, Some("pair[1]"))
        );
        assert!(!shape.to_string().contains("1234567"), "{shape}");
    }

    #[tokio::test]
    async fn bad_strings_are_syntax_errors_with_a_fixed_message() {
        let bodies: [&[u8]; 5] = [
            b"{\"user_id\": \"u\", \"key_data\": \"\xff4111111111111111\"}",
            br#"{"user_id": "u", "key_data": "\q4111111111111111"}"#,
            br#"{"user_id": "u", "key_data": "\ud8004111111111111111"}"#,
            b"{\"user_id\": \"u\", \"key_data\": \"a\n4111111111111111\"}",
            br#"{"user_id": "u", "key_data": 1e4000}"#,
        ];
        for body in bodies {
            let request = Request::builder()
                .method("POST")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_vec()))
                .expect("request");
            let refusal = AppJson::<StoreKeyRequest>::from_request(request, &()).await.err();
            assert!(
                matches!(refusal, Some(JsonBodyError::Syntax)),
                "{}: {refusal:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn text_that_is_not_serdes_is_not_repeated() {
        let shape = ShapeError::from_serde_text("something else entirely: 4111111111111111");
        assert_eq!((shape.problem(), shape.field()), (ShapeProblem::Other, None));
        assert_eq!(shape.to_string(), "invalid value");
    }
}
