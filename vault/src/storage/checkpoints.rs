//! The `audit_checkpoints` table: signed checkpoints of the audit chain, written by the
//! background signer and read by `audit-verify`. Nothing here takes the lock that orders
//! audit appends: a checkpoint covers records that are already committed and never change,
//! so reading the head and storing a checkpoint (one insert of its own, never part of a
//! request's transaction) need no more than the database's own statement-level locking.

use sqlx::Row;

use super::{Store, StoreError};

/// What the checkpoint signer decides on: the chain's head and what no checkpoint covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointState {
    /// The newest record's `seq` and chain hash; `None` while the trail is empty.
    pub head: Option<(i64, String)>,
    /// The newest checkpointed record at or before the head (0: none). A row claiming a
    /// record beyond the head is not counted: it is no checkpoint of this chain, and must not
    /// stop checkpoints from being signed.
    pub covered: i64,
    /// When the oldest record after `covered` was appended, seconds since the Unix epoch.
    pub oldest_uncovered_at: Option<i64>,
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The record it covers.
    pub seq: i64,
    /// That record's chain hash.
    pub hash: String,
    /// Signing time, seconds since the Unix epoch.
    pub signed_at: i64,
    /// The audit key's kid.
    pub kid: String,
    /// The compact JWS: the only column `audit-verify` trusts.
    pub jws: String,
}

impl Store {
    /// The head and what the newest checkpoint covers; three reads by primary key.
    pub async fn checkpoint_state(&self) -> Result<CheckpointState, StoreError> {
        let head = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        let Some(head) = head else {
            return Ok(CheckpointState {
                head: None,
                covered: 0,
                oldest_uncovered_at: None,
            });
        };
        let (head_seq, head_hash): (i64, String) = (head.try_get("seq")?, head.try_get("hash")?);
        let covered = sqlx::query("SELECT seq FROM audit_checkpoints WHERE seq <= $1 ORDER BY seq DESC LIMIT 1")
            .bind(head_seq)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| row.try_get::<i64, _>("seq"))
            .transpose()?
            .unwrap_or(0);
        let oldest_uncovered_at = sqlx::query("SELECT at FROM audit WHERE seq > $1 ORDER BY seq LIMIT 1")
            .bind(covered)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| row.try_get::<i64, _>("at"))
            .transpose()?;
        Ok(CheckpointState {
            head: Some((head_seq, head_hash)),
            covered,
            oldest_uncovered_at,
        })
    }

    /// Stores `checkpoint`; false when one for the same record is there already (another
    /// replica signed the same head first), which is not an error.
    pub async fn add_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, signed_at, kid, jws) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (seq) DO NOTHING",
        )
        .bind(checkpoint.seq)
        .bind(&checkpoint.hash)
        .bind(checkpoint.signed_at)
        .bind(&checkpoint.kid)
        .bind(&checkpoint.jws)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// Every stored checkpoint's JWS, in `seq` order. One per thousand records or so by
    /// default (a JWS is about 500 bytes), so the list stays small next to the trail.
    pub async fn checkpoints(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT jws FROM audit_checkpoints ORDER BY seq")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| row.try_get::<String, _>("jws").map_err(StoreError::from))
            .collect()
    }
}
