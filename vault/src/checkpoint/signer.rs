//! The background task that signs checkpoints of the chain's head, in vault's token, and
//! stores and logs them.
//!
//! It runs beside the requests, never in their way: it reads the head once a second, signs
//! outside every lock, stores with one insert of its own, and a failure (token down,
//! database down) is logged and retried with backoff while requests carry on. It shares the
//! token's session pool with requests, taking one session for one signature per checkpoint. Replicas sharing a database each run it; they
//! decide from the same rows, so they mostly agree, and when two sign the same head the
//! table keeps the first (one row per record) — the other is still logged, and verifies.

use std::time::Duration;

use service_kit::keyring::{self, KeyRingError};
use service_kit::report::error_chain;

use super::{Checkpoint, assemble, signing_input};
use crate::config::AuditOptions;
use crate::storage::{CheckpointState, Clock, Store, StoreError, StoredCheckpoint};

/// How often the head is looked at: a checkpoint follows its due time within about this.
const POLL: Duration = Duration::from_secs(1);

/// Longest wait between attempts while signing or storing fails.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// When a checkpoint is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Once this many records are not covered by a checkpoint (at least 1).
    pub records: u64,
    /// Once the oldest record not covered is this many seconds old (at least 1): no record
    /// stays unsigned much longer, however quiet the trail.
    pub max_age_seconds: u64,
}

impl Policy {
    /// Whether `state` calls for a checkpoint of its head at `now` (seconds since the Unix
    /// epoch): there are records no checkpoint covers, and enough of them or an old enough one.
    pub fn due(&self, state: &CheckpointState, now: u64) -> bool {
        let Some((head, _)) = &state.head else {
            return false;
        };
        let uncovered = u64::try_from(head - state.covered).unwrap_or(0);
        if uncovered == 0 {
            return false;
        }
        let old_enough = state.oldest_uncovered_at.is_some_and(|at| {
            let age = i64::try_from(now).unwrap_or(i64::MAX).saturating_sub(at);
            u64::try_from(age).unwrap_or(0) >= self.max_age_seconds.max(1)
        });
        uncovered >= self.records.max(1) || old_enough
    }
}

impl From<&AuditOptions> for Policy {
    fn from(options: &AuditOptions) -> Self {
        Self {
            records: options.audit_checkpoint_records,
            max_age_seconds: options.audit_checkpoint_seconds,
        }
    }
}

/// Why the audit key cannot be used; vault does not start without it.
#[derive(Debug, thiserror::Error)]
pub enum AuditKeyError {
    /// No usable sign-only RSA key under the label (or the token could not be read).
    #[error(
        "cannot use audit key {label:?} in token {token:?}; a keyed audit trail needs it: generate it with \
         `hsm-admin generate-rsa --label {label} --id 03 --usage sign` (softhsm-setup/setup.sh does for .dev/)"
    )]
    Read {
        /// The configured label.
        label: String,
        /// The token.
        token: String,
        /// Why.
        #[source]
        source: KeyRingError,
    },
    /// The key is there but the token does not sign with it.
    #[error("audit key {label:?} in token {token:?} does not sign")]
    SelfTest {
        /// The key's label.
        label: String,
        /// The token.
        token: String,
        /// The token's refusal.
        #[source]
        source: hsm::Error,
    },
}

/// vault's audit key: the newest generation of the sign-only RSA key `audit_key_label`
/// (generations as in [`service_kit::keyring`]), used with RS256.
pub struct AuditKey {
    signer: hsm::Signer,
    kid: String,
}

impl AuditKey {
    /// Reads the key from the token and signs a test message with it, so that a missing or
    /// unusable key stops start-up instead of the first checkpoint.
    pub async fn load(pool: &hsm::TokenPool, label: &str) -> Result<Self, AuditKeyError> {
        let token = pool.token_label().to_owned();
        let keys = keyring::read(pool, label, hsm::KeyUsage::Sign)
            .await
            .map_err(|source| AuditKeyError::Read {
                label: label.to_owned(),
                token: token.clone(),
                source,
            })?;
        let current = keys.current();
        let signer = hsm::Signer::new(pool.clone(), current.label.clone(), hsm::RsaScheme::Pkcs1Sha256);
        signer
            .sign(b"vault audit key start-up self test")
            .await
            .map_err(|source| AuditKeyError::SelfTest {
                label: current.label.clone(),
                token,
                source,
            })?;
        Ok(Self {
            signer,
            kid: current.kid.clone(),
        })
    }

    /// The kid checkpoints are signed under.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `checkpoint` in the token: its compact JWS.
    ///
    /// # Errors
    /// The token's ([`hsm::Error::is_unavailable`] while it is down).
    pub async fn sign(&self, checkpoint: &Checkpoint) -> Result<String, hsm::Error> {
        let input = signing_input(&self.kid, checkpoint);
        let signature = self.signer.sign(input.as_bytes()).await?;
        Ok(assemble(&input, &signature))
    }
}

/// Why one round of checkpointing failed; the next round tries again.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointTaskError {
    /// The database could not be read or written.
    #[error("storage")]
    Storage(#[from] StoreError),
    /// The token did not sign.
    #[error("the token did not sign the checkpoint")]
    Sign(#[from] hsm::Error),
}

/// Signs checkpoints of `store`'s audit chain with `key` as `policy` says.
pub struct Checkpointer {
    key: AuditKey,
    store: Store,
    policy: Policy,
    clock: Clock,
}

impl Checkpointer {
    /// A signer for `store`'s chain; `clock` stamps checkpoints (`iat`) and ages records.
    pub fn new(key: AuditKey, store: Store, policy: Policy, clock: Clock) -> Self {
        Self {
            key,
            store,
            policy,
            clock,
        }
    }

    /// Signs and stores a checkpoint of the head if one is due, and logs it (one info line
    /// carrying the JWS, for log pipelines to ship off the host); the checkpoint, if any.
    pub async fn checkpoint_if_due(&self) -> Result<Option<StoredCheckpoint>, CheckpointTaskError> {
        let state = self.store.checkpoint_state().await?;
        let now = (self.clock)();
        if !self.policy.due(&state, now) {
            return Ok(None);
        }
        let Some((seq, hash)) = state.head else {
            return Ok(None);
        };
        let checkpoint = Checkpoint { seq, hash, iat: now };
        let jws = self.key.sign(&checkpoint).await?;
        let stored = StoredCheckpoint {
            seq,
            signed_at: i64::try_from(now).unwrap_or(i64::MAX),
            hash: checkpoint.hash,
            kid: self.key.kid.clone(),
            jws,
        };
        // Logged once signed, whatever the table then says: the log is the off-host copy,
        // and a row already there for this record may not be genuine.
        let inserted = self.store.add_checkpoint(&stored).await;
        tracing::info!(
            seq,
            hash = %stored.hash,
            kid = %stored.kid,
            stored = matches!(inserted, Ok(true)),
            checkpoint = %stored.jws,
            "audit checkpoint"
        );
        inserted?;
        Ok(Some(stored))
    }

    /// Checkpoints forever: looks every second, and after a failure waits twice as long as
    /// before (up to a minute) so that a token outage is not logged every second.
    pub async fn run_forever(self) {
        tracing::info!(
            kid = %self.key.kid,
            every_records = self.policy.records,
            every_seconds = self.policy.max_age_seconds,
            "signing audit checkpoints"
        );
        let mut wait = POLL;
        loop {
            tokio::time::sleep(wait).await;
            wait = match self.checkpoint_if_due().await {
                Ok(_) => POLL,
                Err(e) => {
                    let next = (wait * 2).min(MAX_BACKOFF);
                    tracing::warn!(
                        error = %error_chain(&e),
                        retry_in_seconds = next.as_secs(),
                        "cannot sign an audit checkpoint; requests are not affected, retrying"
                    );
                    next
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(head: i64, covered: i64, oldest_uncovered_at: Option<i64>) -> CheckpointState {
        CheckpointState {
            head: (head > 0).then(|| (head, "ab".repeat(32))),
            covered,
            oldest_uncovered_at,
        }
    }

    const POLICY: Policy = Policy {
        records: 1000,
        max_age_seconds: 60,
    };

    #[test]
    fn nothing_is_due_without_uncovered_records() {
        assert!(!POLICY.due(&state(0, 0, None), 1_000));
        assert!(!POLICY.due(&state(500, 500, None), 1_000_000));
    }

    #[test]
    fn a_checkpoint_is_due_every_n_records() {
        assert!(!POLICY.due(&state(999, 0, Some(1_000)), 1_000));
        assert!(POLICY.due(&state(1000, 0, Some(1_000)), 1_000));
        assert!(!POLICY.due(&state(1999, 1000, Some(1_000)), 1_000));
        assert!(POLICY.due(&state(2500, 1000, Some(1_000)), 1_000));
    }

    #[test]
    fn a_checkpoint_is_due_once_the_oldest_uncovered_record_is_m_seconds_old() {
        assert!(!POLICY.due(&state(3, 0, Some(1_000)), 1_059));
        assert!(POLICY.due(&state(3, 0, Some(1_000)), 1_060));
        // A clock stepped back is not a reason to sign early, nor a panic.
        assert!(!POLICY.due(&state(3, 0, Some(1_000)), 10));
    }

    #[test]
    fn zero_is_taken_as_one() {
        let eager = Policy {
            records: 0,
            max_age_seconds: 0,
        };
        assert!(eager.due(&state(1, 0, Some(5)), 5));
        assert!(!eager.due(&state(1, 1, None), 5));
    }
}
