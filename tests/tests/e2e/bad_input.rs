//! Bad requests get a 4xx with the JSON error body, never a 500, and store nothing.

use anyhow::Result;
use contract::error_code::ErrorCode;
use e2e::{System, answer, error_code};
use reqwest::StatusCode;
use serde_json::json;

async fn post_raw(system: &System, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> Result<e2e::Answer> {
    let mut request = system.http().post(system.manager_url("/api/keys")).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    answer(request.send().await?).await
}

/// Name, content type, body, expected status, expected error code.
type Case = (&'static str, Option<&'static str>, Vec<u8>, StatusCode, ErrorCode);

#[tokio::test]
async fn malformed_bodies_get_400_415_or_413_with_the_error_body() -> Result<()> {
    let system = System::start().await?;
    let json = Some("application/json");
    let cases: Vec<Case> = vec![
        (
            "invalid JSON",
            json,
            b"{\"user_id\": ".to_vec(),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidJson,
        ),
        (
            "not an object",
            json,
            b"[1,2,3]".to_vec(),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
        ),
        (
            "wrong type",
            json,
            br#"{"user_id": 7, "key_data": "x"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
        ),
        (
            "missing key_data",
            json,
            br#"{"user_id": "a"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
        ),
        (
            "missing user_id",
            json,
            br#"{"key_data": "x"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
        ),
        (
            "unknown field",
            json,
            br#"{"user_id": "a", "key_data": "x", "admin": true}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
        ),
        (
            "negative ttl",
            json,
            br#"{"user_id": "a", "key_data": "x", "ttl_seconds": -1}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
        ),
        (
            "no content type",
            None,
            br#"{"user_id": "a", "key_data": "x"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
        ),
        (
            "text/plain",
            Some("text/plain"),
            br#"{"user_id": "a", "key_data": "x"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
        ),
        (
            "body over the limit",
            json,
            vec![b' '; 2 * 1024 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
        ),
    ];
    for (name, content_type, body, status, code) in cases {
        let (got, body) = post_raw(&system, content_type, body).await?;
        assert_eq!(got, status, "{name}: {body}");
        assert_eq!(error_code(&body)?, code, "{name}");
    }
    Ok(())
}

#[tokio::test]
async fn invalid_fields_get_400_and_oversize_secrets_413() -> Result<()> {
    let system = System::start().await?;
    let too_big = "x".repeat(64 * 1024 + 1);
    let cases = [
        (
            json!({"user_id": "", "key_data": "x"}),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidUserId,
        ),
        (
            json!({"user_id": "a b", "key_data": "x"}),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidUserId,
        ),
        (
            json!({"user_id": "x".repeat(129), "key_data": "x"}),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidUserId,
        ),
        (
            json!({"user_id": "a", "key_data": ""}),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidKeyData,
        ),
        (
            json!({"user_id": "a", "key_data": "x", "ttl_seconds": 0}),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidTtl,
        ),
        (
            json!({"user_id": "a", "key_data": "x", "ttl_seconds": 86_401}),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidTtl,
        ),
        (
            json!({"user_id": "a", "key_data": too_big}),
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::SecretTooLarge,
        ),
    ];
    for (body, status, code) in cases {
        let (got, answer) = system.post_keys(&body).await?;
        assert_eq!(got, status, "{answer}");
        assert_eq!(error_code(&answer)?, code);
    }
    let exactly_64_kib = "y".repeat(64 * 1024);
    let stored = system.store("edge", &exactly_64_kib).await?;
    let (status, _) = system.read(&stored.key_id, &stored.access_token).await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_json() -> Result<()> {
    let system = System::start().await?;
    let (status, body) = answer(system.http().get(system.manager_url("/nope")).send().await?).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body)?, ErrorCode::NotFound);
    let (status, body) = answer(system.http().get(system.manager_url("/api/keys")).send().await?).await?;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(&body)?, ErrorCode::MethodNotAllowed);
    let (status, body) = answer(system.http().put(system.vault_url("/api/keys/abc")).send().await?).await?;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(&body)?, ErrorCode::MethodNotAllowed);
    Ok(())
}
