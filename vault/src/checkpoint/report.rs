//! What `audit-verify` prints and decides: the chain's state, the checkpoints that verified,
//! the first that failed with the records it puts in question, and the unsigned tail.

use std::fmt;

use super::Checkpoint;
use super::CheckpointError;
use super::sources::Source;
use crate::audit::ChainBreak;

/// The first checkpoint that fails, and the records it puts in question.
#[derive(Debug)]
pub struct FirstFailure {
    /// Where it was read.
    pub source: Source,
    /// What it claims.
    pub claims: Checkpoint,
    /// Why it fails.
    pub reason: String,
    /// The newest good checkpoint before it (0: none): records after it, up to this one's,
    /// are the ones in question.
    pub previous_good: i64,
}

/// The outcome of `audit-verify`; `Display` is what it prints.
#[derive(Debug)]
pub struct TrailReport {
    /// Records, head seq and head hash; or where the chain breaks.
    pub chain: Result<(usize, i64, String), ChainBreak>,
    /// Distinct checkpoints that verified against the chain.
    pub good: usize,
    /// Distinct checkpoints read.
    pub distinct: usize,
    /// Checkpoints past a chain break, not compared.
    pub unchecked: usize,
    /// The first failing checkpoint (lowest record), if any.
    pub first_failure: Option<FirstFailure>,
    /// How many fail after it.
    pub later_failures: usize,
    /// The newest good checkpoint.
    pub newest_good: Option<Checkpoint>,
    /// The newest record a genuinely signed checkpoint names (matching the chain or not; 0:
    /// none): the records after it are the tail no checkpoint covers.
    pub newest_signed: i64,
    /// Checkpoints that could not be read at all.
    pub unreadable: Vec<(Source, CheckpointError)>,
    /// Checkpoints read per origin (duplicates included), in the order first seen.
    pub read: Vec<(String, usize)>,
}

impl TrailReport {
    /// Whether the trail verified: an intact chain and every checkpoint good.
    pub fn passed(&self) -> bool {
        self.chain.is_ok() && self.first_failure.is_none() && self.unreadable.is_empty()
    }
}

/// An RFC 3339 UTC time for `seconds` since the Unix epoch (the number itself if out of range).
fn utc(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| seconds.to_string())
}

impl fmt::Display for TrailReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.chain {
            Ok((count, _, head)) if self.passed() => writeln!(f, "audit chain verified: {count} records, head {head}")?,
            Ok((count, _, head)) => writeln!(f, "audit chain hash links intact: {count} records, head {head}")?,
            Err(broken) => writeln!(f, "{broken}")?,
        }
        if self.distinct == 0 {
            writeln!(f, "checkpoints: none")?;
        } else {
            let read: Vec<String> = self.read.iter().map(|(origin, n)| format!("{origin}: {n}")).collect();
            write!(
                f,
                "checkpoints verified: {} of {} ({})",
                self.good,
                self.distinct,
                read.join(", ")
            )?;
            match &self.newest_good {
                Some(newest) => writeln!(
                    f,
                    "; the newest good one covers record {}, signed {}",
                    newest.seq,
                    utc(newest.iat)
                )?,
                None => writeln!(f)?,
            }
        }
        for (source, error) in &self.unreadable {
            writeln!(f, "checkpoint FAILED ({source}): {error}")?;
        }
        if let Some(failure) = &self.first_failure {
            let seq = failure.claims.seq;
            writeln!(
                f,
                "checkpoint FAILED: record {seq} ({}, signed {}): {}",
                failure.source,
                utc(failure.claims.iat),
                failure.reason
            )?;
            let after = if failure.previous_good == 0 {
                "from the first record, no good checkpoint before it".to_owned()
            } else {
                format!("after the previous good checkpoint, record {}", failure.previous_good)
            };
            writeln!(
                f,
                "records in question: {} to {seq} ({after}, up to this checkpoint)",
                failure.previous_good + 1
            )?;
            if self.later_failures > 0 {
                writeln!(f, "{} later checkpoints fail as well", self.later_failures)?;
            }
        }
        if self.unchecked > 0 {
            writeln!(
                f,
                "{} checkpoints not compared: the chain is broken before their records",
                self.unchecked
            )?;
        }
        if let Ok((_, head, _)) = &self.chain {
            let covered = self.newest_signed;
            match head - covered {
                0 => writeln!(f, "not covered by any checkpoint: no record")?,
                n => writeln!(
                    f,
                    "not covered by any checkpoint: the last {n} records ({} to {head}); \
                     their deletion or rewrite would not show until the next checkpoint",
                    covered + 1
                )?,
            }
        }
        Ok(())
    }
}
