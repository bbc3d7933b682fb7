//! The audit trail: one record per event, each carrying the SHA-256 of the previous
//! record, so that editing or deleting a record breaks the chain at a nameable place.
//!
//! Records hold key_id, owner, jti, client address, outcome and time — never a secret or
//! a token. The chain alone is not keyed (an edit with every later hash recomputed verifies,
//! and so does a shorter chain): [`crate::checkpoint`] signs its head in the token.

use std::fmt;

use serde::Serialize;

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Longest text field of a record, in bytes: key_ids, user_ids, jtis, addresses and codes
/// are all far shorter; anything longer is cut (at a character boundary), so no request can
/// make a record large.
pub const MAX_FIELD_BYTES: usize = 256;

fn bounded(text: &str) -> String {
    let mut end = text.len().min(MAX_FIELD_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditEvent {
    /// An envelope was stored.
    Stored,
    /// A secret was released.
    Read,
    /// A request was refused; the outcome says why.
    Denied,
    /// A token was revoked.
    Revoked,
    /// A secret was destroyed (by DELETE or by its read limit).
    Destroyed,
    /// A secret expired and was purged.
    Expired,
}

impl AuditEvent {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::Stored => "stored",
            AuditEvent::Read => "read",
            AuditEvent::Denied => "denied",
            AuditEvent::Revoked => "revoked",
            AuditEvent::Destroyed => "destroyed",
            AuditEvent::Expired => "expired",
        }
    }
}

impl fmt::Display for AuditEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event to append; storage assigns `seq`, the time (when it appends, under the lock
/// that orders the chain, so times never decrease along it) and the hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// What happened.
    pub event: AuditEvent,
    /// The secret concerned, if any.
    pub key_id: Option<String>,
    /// Its owner or the token's subject, if known.
    pub user_id: Option<String>,
    /// The token's id, if known.
    pub jti: Option<String>,
    /// The client's address, if the event came from a request.
    pub client: Option<String>,
    /// `ok`, or the reason for a denial (`invalid_token`, `read_limit_reached`, ...).
    pub outcome: String,
}

impl AuditEntry {
    /// An entry for `event` on `key_id` with outcome `ok`.
    pub fn new(event: AuditEvent, key_id: &str) -> Self {
        Self {
            event,
            key_id: Some(key_id.to_owned()),
            user_id: None,
            jti: None,
            client: None,
            outcome: "ok".into(),
        }
    }

    /// Sets the owner / subject.
    pub fn user(mut self, user_id: &str) -> Self {
        self.user_id = Some(user_id.to_owned());
        self
    }

    /// Sets the token id.
    pub fn jti(mut self, jti: &str) -> Self {
        self.jti = Some(jti.to_owned());
        self
    }

    /// Sets the client address.
    pub fn client(mut self, client: Option<String>) -> Self {
        self.client = client;
        self
    }

    /// Sets the outcome.
    pub fn outcome(mut self, outcome: &str) -> Self {
        self.outcome = outcome.to_owned();
        self
    }
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// Seconds since the Unix epoch.
    pub at: i64,
    /// Event name.
    pub event: String,
    /// Secret id.
    pub key_id: Option<String>,
    /// Owner / subject.
    pub user_id: Option<String>,
    /// Token id.
    pub jti: Option<String>,
    /// Client address.
    pub client: Option<String>,
    /// `ok` or the reason for a denial.
    pub outcome: String,
    /// Hash of the previous record ([`GENESIS`] for the first).
    pub prev_hash: String,
    /// Hash of this record.
    pub hash: String,
}

impl AuditRecord {
    /// Builds the record that follows `prev` (`None` for the first), appended at `at`; every
    /// text field is cut to [`MAX_FIELD_BYTES`].
    pub fn next(prev: Option<(i64, &str)>, at: i64, entry: &AuditEntry) -> Self {
        let (seq, prev_hash) = prev.map_or((1, GENESIS.to_owned()), |(seq, hash)| (seq + 1, hash.to_owned()));
        let field = |value: &Option<String>| value.as_deref().map(bounded);
        let mut record = Self {
            seq,
            at,
            event: entry.event.as_str().to_owned(),
            key_id: field(&entry.key_id),
            user_id: field(&entry.user_id),
            jti: field(&entry.jti),
            client: field(&entry.client),
            outcome: bounded(&entry.outcome),
            prev_hash,
            hash: String::new(),
        };
        record.hash = record.compute_hash();
        record
    }

    /// SHA-256 (hex) over a JSON array of every field but `hash`: unambiguous, so no two
    /// different records share an input.
    pub fn compute_hash(&self) -> String {
        let canonical = serde_json::json!([
            self.seq,
            self.at,
            self.event,
            self.key_id,
            self.user_id,
            self.jti,
            self.client,
            self.outcome,
            self.prev_hash
        ]);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.to_string().as_bytes());
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Where and why the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at record {seq}: {reason}")]
pub struct ChainBreak {
    /// The first record that does not verify (or the first missing sequence number).
    pub seq: i64,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Checks a chain one record at a time, in `seq` order, so that a trail of any length is
/// verified in constant memory.
#[derive(Debug, Clone, Default)]
pub struct ChainVerifier {
    last: Option<(i64, String)>,
    count: usize,
}

impl ChainVerifier {
    /// Checks the next record against the ones before it.
    pub fn push(&mut self, record: &AuditRecord) -> Result<(), ChainBreak> {
        let expected_seq = self.last.as_ref().map_or(1, |(seq, _)| seq + 1);
        if record.seq != expected_seq {
            return Err(ChainBreak {
                seq: expected_seq,
                reason: "record missing (sequence gap)",
            });
        }
        let expected_prev = self.last.as_ref().map_or(GENESIS, |(_, hash)| hash.as_str());
        if record.prev_hash != expected_prev {
            return Err(ChainBreak {
                seq: record.seq,
                reason: "previous-hash link does not match",
            });
        }
        if record.compute_hash() != record.hash {
            return Err(ChainBreak {
                seq: record.seq,
                reason: "record content does not match its hash",
            });
        }
        self.last = Some((record.seq, record.hash.clone()));
        self.count += 1;
        Ok(())
    }

    /// How many records verified so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The last verified record's seq and hash ([`GENESIS`] at 0 for an empty chain).
    pub fn head(&self) -> (i64, &str) {
        self.last
            .as_ref()
            .map_or((0, GENESIS), |(seq, hash)| (*seq, hash.as_str()))
    }
}

/// Verifies `records` (in `seq` order); returns how many verified.
pub fn verify_chain(records: &[AuditRecord]) -> Result<usize, ChainBreak> {
    let mut verifier = ChainVerifier::default();
    for record in records {
        verifier.push(record)?;
    }
    Ok(verifier.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<AuditRecord> {
        let mut records: Vec<AuditRecord> = Vec::new();
        for i in 0..n {
            let entry = AuditEntry::new(AuditEvent::Read, &format!("k{i}"))
                .user("alice")
                .jti("j");
            let prev = records.last().map(|r| (r.seq, r.hash.as_str()));
            records.push(AuditRecord::next(prev, 1_000 + i as i64, &entry));
        }
        records
    }

    #[test]
    fn an_untouched_chain_verifies() {
        assert_eq!(verify_chain(&chain(5)), Ok(5));
        assert_eq!(verify_chain(&[]), Ok(0));
    }

    #[test]
    fn an_edited_record_is_named() {
        let mut records = chain(5);
        records[2].outcome = "denied".into();
        assert_eq!(verify_chain(&records).map_err(|b| b.seq), Err(3));
    }

    #[test]
    fn a_deleted_record_is_named() {
        let mut records = chain(5);
        records.remove(1);
        assert_eq!(verify_chain(&records).map_err(|b| b.seq), Err(2));
    }

    #[test]
    fn fields_longer_than_the_bound_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_FIELD_BYTES);
        let entry = AuditEntry::new(AuditEvent::Denied, &long).outcome(&long);
        let record = AuditRecord::next(None, 1, &entry);
        let key_id = record.key_id.clone().unwrap_or_default();
        assert_eq!(key_id.len(), MAX_FIELD_BYTES);
        assert!(record.outcome.len() <= MAX_FIELD_BYTES && record.outcome.starts_with('é'));
        assert_eq!(verify_chain(&[record]), Ok(1));
    }

    #[test]
    fn a_rehashed_edit_still_breaks_the_next_link() {
        let mut records = chain(5);
        records[2].user_id = Some("mallory".into());
        records[2].hash = records[2].compute_hash();
        assert_eq!(verify_chain(&records).map_err(|b| b.seq), Err(4));
    }
}
