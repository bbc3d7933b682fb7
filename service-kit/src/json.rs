//! The JSON body extractor and the one function that writes the contract's error body.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use contract::error_code::ErrorCode;
use contract::wire::{ErrorBody, ErrorDetail};
use serde::de::DeserializeOwned;

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
    /// Not JSON at all: 400.
    #[error("request body is not valid JSON")]
    Syntax,
    /// JSON, but not the expected shape (missing field, wrong type, unknown field): 400.
    /// Carries serde's description, which names the field and never echoes values.
    #[error("request body has the wrong shape: {0}")]
    Shape(String),
    /// The body could not be read: 400.
    #[error("request body could not be read")]
    Unreadable,
}

impl From<JsonRejection> for JsonBodyError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => JsonBodyError::NotJson,
            JsonRejection::JsonSyntaxError(_) => JsonBodyError::Syntax,
            JsonRejection::JsonDataError(e) => JsonBodyError::Shape(shape_message(&e.body_text())),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => JsonBodyError::TooLarge,
            _ => JsonBodyError::Unreadable,
        }
    }
}

/// serde's messages look like "Failed to deserialize the JSON body into the target
/// type: missing field `user_id` at line 1 column 2"; keep the useful part.
fn shape_message(text: &str) -> String {
    text.rsplit_once("target type: ")
        .map_or(text, |(_, tail)| tail)
        .to_owned()
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
