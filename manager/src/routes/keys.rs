//! `POST /api/keys`: seal a secret for vault, have vault store it, return a token.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use contract::envelope::{Binding, seal};
use contract::share::HolderShare;
use contract::wire::{ErrorBody, StoreEnvelopeRequest, StoreKeyRequest, StoreKeyResponse};
use service_kit::json::{AppJson, JsonBodyError};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::ApiError;
use crate::issuer::Grant;
use crate::state::{AppState, Limits};

/// `POST /api/keys`.
pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/api/keys", post(store_key))
}

/// Stores a secret and returns its `key_id` and access token.
///
/// The token is signed before vault is asked to store, and returned only after vault
/// acknowledged a durable write: if vault fails, the token is discarded and nothing
/// usable exists. The holder's share the envelope needs is drawn here, goes into the token
/// and nowhere else: manager forgets it when this function returns.
#[utoipa::path(
    post,
    path = "/api/keys",
    tag = "keys",
    operation_id = "store_key",
    request_body(content = StoreKeyRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Stored; the token unlocks the secret at vault",
            body = StoreKeyResponse,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, description = "`invalid_json`, `invalid_request`, `invalid_user_id`, `invalid_key_data`, `invalid_ttl`, `invalid_max_reads`", body = ErrorBody),
        (status = 413, description = "`secret_too_large`, `payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "`internal_error`: the secret could not be sealed", body = ErrorBody),
        (status = 502, description = "`vault_rejected`; nothing stored", body = ErrorBody),
        (status = 503, description = "`vault_unavailable`, `hsm_unavailable`; nothing stored", body = ErrorBody),
    )
)]
pub(crate) async fn store_key(
    State(state): State<Arc<AppState>>,
    body: Result<AppJson<StoreKeyRequest>, JsonBodyError>,
) -> Result<Response, ApiError> {
    let AppJson(request) = body?;
    let ttl_seconds = validate(&request, &state.limits)?;
    let key_id = uuid::Uuid::new_v4().to_string();
    let now = service_kit::clock::unix_now();

    let recipient = state.vault_key.recipient(&state.vault).await?;
    let share = HolderShare::generate()?;
    let envelope = seal(
        &recipient,
        state.key_wrap.for_recipient(&recipient),
        Binding {
            key_id: &key_id,
            user_id: &request.user_id,
        },
        &share,
        request.key_data.as_bytes(),
    )?;
    let issued = state
        .issuer
        .issue(Grant {
            user_id: &request.user_id,
            key_id: &key_id,
            now,
            ttl_seconds,
            share,
        })
        .await?;
    let store = StoreEnvelopeRequest {
        user_id: request.user_id.clone(),
        envelope,
        expires_at: issued.claims.exp,
        max_reads: request.max_reads,
    };
    state.vault.store(&key_id, &store).await?;

    tracing::info!(%key_id, user_id = %request.user_id, jti = %issued.claims.jti, exp = issued.claims.exp, "secret stored");
    let expires_at = i64::try_from(issued.claims.exp)
        .ok()
        .and_then(|exp| OffsetDateTime::from_unix_timestamp(exp).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
    let body = StoreKeyResponse {
        message: "Key stored successfully".into(),
        key_id,
        access_token: issued.jwt,
        token_type: "Bearer".into(),
        expires_at,
    };
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Checks the request against the limits; returns the effective TTL.
fn validate(request: &StoreKeyRequest, limits: &Limits) -> Result<u64, ApiError> {
    let user_id = &request.user_id;
    let user_ok = (1..=128).contains(&user_id.len())
        && user_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'));
    if !user_ok {
        return Err(ApiError::InvalidUserId);
    }
    let size = request.key_data.len();
    if size == 0 {
        return Err(ApiError::EmptySecret);
    }
    if size > limits.max_secret_bytes {
        return Err(ApiError::SecretTooLarge {
            size,
            limit: limits.max_secret_bytes,
        });
    }
    let ttl = request.ttl_seconds.unwrap_or(limits.default_ttl_seconds);
    if ttl == 0 || ttl > limits.max_ttl_seconds {
        return Err(ApiError::InvalidTtl {
            max: limits.max_ttl_seconds,
        });
    }
    if let Some(max_reads) = request.max_reads
        && (max_reads == 0 || max_reads > limits.max_reads_limit)
    {
        return Err(ApiError::InvalidMaxReads {
            max: limits.max_reads_limit,
        });
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    const LIMITS: Limits = Limits {
        max_secret_bytes: 8,
        default_ttl_seconds: 60,
        max_ttl_seconds: 120,
        max_reads_limit: 5,
    };

    fn request(user_id: &str, key_data: &str, ttl_seconds: Option<u64>) -> StoreKeyRequest {
        StoreKeyRequest {
            user_id: user_id.into(),
            key_data: Zeroizing::new(key_data.into()),
            ttl_seconds,
            max_reads: None,
        }
    }

    #[test]
    fn max_reads_must_be_between_one_and_the_limit() {
        for (max_reads, ok) in [
            (Some(1), true),
            (Some(5), true),
            (None, true),
            (Some(0), false),
            (Some(6), false),
        ] {
            let request = StoreKeyRequest {
                max_reads,
                ..request("a", "x", None)
            };
            assert_eq!(validate(&request, &LIMITS).is_ok(), ok, "{max_reads:?}");
        }
    }

    #[test]
    fn accepts_a_valid_request_and_applies_the_default_ttl() {
        assert_eq!(
            validate(&request("alice@example.com", "s3cret", None), &LIMITS).ok(),
            Some(60)
        );
        assert_eq!(validate(&request("a", "x", Some(120)), &LIMITS).ok(), Some(120));
    }

    #[test]
    fn refuses_bad_user_ids() {
        for user in ["", "has space", "semi;colon", &"x".repeat(129), "ünïcode"] {
            assert!(
                matches!(
                    validate(&request(user, "x", None), &LIMITS),
                    Err(ApiError::InvalidUserId)
                ),
                "{user:?}"
            );
        }
    }

    #[test]
    fn refuses_empty_and_oversize_secrets_and_out_of_range_ttls() {
        assert!(matches!(
            validate(&request("a", "", None), &LIMITS),
            Err(ApiError::EmptySecret)
        ));
        assert!(matches!(
            validate(&request("a", "123456789", None), &LIMITS),
            Err(ApiError::SecretTooLarge { size: 9, limit: 8 })
        ));
        assert!(matches!(
            validate(&request("a", "x", Some(0)), &LIMITS),
            Err(ApiError::InvalidTtl { .. })
        ));
        assert!(matches!(
            validate(&request("a", "x", Some(121)), &LIMITS),
            Err(ApiError::InvalidTtl { .. })
        ));
    }
}
