//! Moving stored content keys to the newest wrapping key (`vault-admin rewrap`), and
//! counting the secrets still wrapped to a key (before `retire-wrapping-key` destroys it).
//!
//! A content key is unwrapped inside the token with the key it is wrapped to now and
//! wrapped to the newest public key; the plaintext is never produced. Each batch commits on
//! its own and a row is only updated if it is unchanged, so a killed run resumes where it
//! stopped.

use std::time::Duration;

use contract::envelope::{Envelope, EnvelopeError, Recipient};

use crate::opener::{OpenError, Opener, wrapped_to};
use crate::storage::{Rewrapped, Store, StoreError, StoredSecret};

/// Why a rewrap stopped. Batches committed before it stay committed.
#[derive(Debug, thiserror::Error)]
pub enum RewrapError {
    /// The database failed.
    #[error("storage")]
    Storage(#[from] StoreError),
    /// A stored envelope is not one vault can read.
    #[error("secret {key_id}: the stored envelope is malformed")]
    Envelope {
        /// The row.
        key_id: String,
        /// Why.
        #[source]
        source: EnvelopeError,
    },
    /// A content key could not be unwrapped.
    #[error("secret {key_id}: cannot unwrap its content key")]
    Unwrap {
        /// The row.
        key_id: String,
        /// Why.
        #[source]
        source: OpenError,
    },
    /// An unwrapped content key could not be wrapped to the newest key.
    #[error("secret {key_id}: cannot wrap its content key to the newest wrapping key")]
    Wrap {
        /// The row.
        key_id: String,
        /// Why (a content key that is not 32 bytes, or the crypto library).
        #[source]
        source: EnvelopeError,
    },
    /// The newest wrapping key cannot be wrapped to.
    #[error("the newest wrapping key is unusable")]
    Recipient(#[source] EnvelopeError),
}

/// How a rewrap paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Secrets per transaction (at least 1).
    pub batch_size: u32,
    /// Pause between batches, to spare a busy token.
    pub delay: Duration,
}

/// Rewraps every content key not yet wrapped to the newest wrapping key. `progress` is told
/// the running total and the last key_id after each committed batch. Returns the total.
pub async fn rewrap(
    store: &Store,
    opener: &Opener,
    pacing: Pacing,
    mut progress: impl FnMut(u64, &str),
) -> Result<u64, RewrapError> {
    let keys = opener.keys().keys();
    let current = keys.current();
    let recipient = Recipient::from_public_key(&current.public).map_err(RewrapError::Recipient)?;
    let (mut after, mut total) = (String::new(), 0u64);
    loop {
        let batch = store
            .rewrap_candidates(&current.kid, &after, pacing.batch_size.max(1))
            .await?;
        let Some(last) = batch.last() else { break };
        after = last.key_id.clone();
        let mut updates = Vec::with_capacity(batch.len());
        for secret in batch {
            let new_envelope = rewrapped(opener, &recipient, &current.kid, &secret).await?;
            updates.push(Rewrapped {
                key_id: secret.key_id,
                old_envelope: secret.envelope,
                new_envelope,
                wrap_kid: current.kid.clone(),
            });
        }
        total += store.apply_rewrap(&updates).await?;
        progress(total, &after);
        tokio::time::sleep(pacing.delay).await;
    }
    Ok(total)
}

/// `secret`'s envelope with its content key wrapped to `recipient` (unchanged if it already is).
async fn rewrapped(
    opener: &Opener,
    recipient: &Recipient,
    current: &str,
    secret: &StoredSecret,
) -> Result<String, RewrapError> {
    let malformed = |source| RewrapError::Envelope {
        key_id: secret.key_id.clone(),
        source,
    };
    let envelope = Envelope::parse(&secret.envelope).map_err(malformed)?;
    if wrapped_to(secret, Some(&envelope)) == Some(current) {
        return Ok(secret.envelope.clone());
    }
    let cek = opener
        .unwrap_content_key(secret, &envelope)
        .await
        .map_err(|source| RewrapError::Unwrap {
            key_id: secret.key_id.clone(),
            source,
        })?;
    let wrapped = recipient
        .wrap_content_key(envelope.key_wrap(), &cek)
        .map_err(|source| RewrapError::Wrap {
            key_id: secret.key_id.clone(),
            source,
        })?;
    Ok(envelope.with_encrypted_key(&wrapped))
}

/// How many stored secrets still have their content key wrapped to `kid`. A row whose
/// envelope cannot be parsed counts only if `rewrap` recorded `kid` for it.
pub async fn secrets_wrapped_to(store: &Store, current: &str, kid: &str) -> Result<u64, StoreError> {
    let (mut after, mut count) = (String::new(), 0);
    loop {
        let batch = store.rewrap_candidates(current, &after, 500).await?;
        let Some(last) = batch.last() else { return Ok(count) };
        after = last.key_id.clone();
        for secret in &batch {
            let envelope = Envelope::parse(&secret.envelope).ok();
            if wrapped_to(secret, envelope.as_ref()) == Some(kid) {
                count += 1;
            }
        }
    }
}
