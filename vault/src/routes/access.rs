//! Who may call the public API: extractors that admit a request only with a valid access
//! token, and the one path by which every refusal reaches the audit trail.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Path, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use contract::claims::AccessClaims;
use service_kit::report::error_chain;

use crate::access_token::{AccessTokenError, bearer_token};
use crate::audit::{AuditEntry, AuditEvent};
use crate::error::{ApiError, Refused, check_key_id};
use crate::state::AppState;
use crate::storage::{Lookup, StoredSecret};

/// A request carrying a valid access token (signature, algorithm, issuer, audience, time,
/// scope), revoked or not: what revoking needs.
pub struct Verified(pub AccessClaims);

impl FromRequestParts<Arc<AppState>> for Verified {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let claims = state.verifier.verify(bearer_token(&parts.headers)?).await?;
        Ok(Verified(claims))
    }
}

/// A request for the secret `key_id` (the path's) carrying a valid, unrevoked access token
/// for exactly that secret. Checked in this order: the key_id's form (400, before anything
/// else looks at the request), token (401), not revoked (401), names this key (403);
/// whether the secret exists (404) and the token's subject owns it (403) is the handler's
/// to check, with the row looked up here in the same round trip as the revocation.
pub struct Authorized {
    /// The secret the path names.
    pub key_id: String,
    /// The token's claims.
    pub claims: AccessClaims,
    /// The row stored under `key_id` when the request was admitted (expired or not).
    pub secret: Option<StoredSecret>,
}

impl FromRequestParts<Arc<AppState>> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let Path(key_id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::InvalidKeyId)?;
        check_key_id(&key_id)?;
        let Verified(claims) = Verified::from_request_parts(parts, state).await?;
        let Lookup { revoked, secret } = state.store.lookup(&key_id, &claims.jti).await?;
        if revoked {
            return Err(AccessTokenError::Revoked.into());
        }
        if claims.key_id != key_id {
            return Err(ApiError::WrongKey);
        }
        Ok(Authorized { key_id, claims, secret })
    }
}

/// Middleware for the public API: every request refused after its caller showed a token
/// manager signed (a response marked [`Refused`] as audited) is appended to the audit trail
/// as `denied`, with the reason, the path's key_id and the client, before the answer leaves
/// vault. Refusals before that are only counted (`http_refusals_total`): a flood of them
/// from anyone on the network writes nothing durable. A failed audit write is logged; the
/// request is refused either way.
pub async fn audit_refusals(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    params: Result<RawPathParams, RawPathParamsRejection>,
    request: Request,
    next: Next,
) -> Response {
    // Only a key_id of the allowed form goes on the trail, so a record's size is bounded.
    let key_id = params.ok().and_then(|params| {
        params
            .iter()
            .find(|(name, value)| *name == "key_id" && check_key_id(value).is_ok())
            .map(|(_, value)| value.to_owned())
    });
    let response = next.run(request).await;
    if let Some(Refused { code, audited: true }) = response.extensions().get::<Refused>() {
        let entry = AuditEntry {
            event: AuditEvent::Denied,
            key_id,
            user_id: None,
            jti: None,
            client: Some(peer.ip().to_string()),
            outcome: code.as_str().to_owned(),
        };
        if let Err(e) = state.store.audit(entry).await {
            tracing::error!(error = %error_chain(&e), "could not audit a denial");
        }
    }
    response
}
