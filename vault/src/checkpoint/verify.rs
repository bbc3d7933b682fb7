//! `vault-admin audit-verify`'s check of a trail against signed checkpoints, in the same
//! pass that verifies the hash chain (a page at a time: memory grows with the checkpoints,
//! not the records).
//!
//! Checkpoints come from the database and from files of off-host copies (their log lines,
//! or bare JWS lines), so deleting checkpoint rows does not hide a rewrite from an auditor
//! who kept them. Each must carry a valid signature by an audit key, and the chain's hash
//! at its record must be the signed one. The first that fails is named, with the records
//! that may have changed: those after the previous good checkpoint, up to it.

use std::collections::BTreeMap;
use std::fmt;

use super::report::{FirstFailure, TrailReport};
use super::sources::{Candidate, Source};
use super::{AuditKeys, Checkpoint, CheckpointError, Unverified};
use crate::audit::{AuditRecord, ChainBreak, ChainVerifier};

/// Why a checkpoint fails.
#[derive(Debug)]
pub enum Failure {
    /// Not a checkpoint signed by an audit key.
    Signature(CheckpointError),
    /// Genuine, but the chain's hash at its record is another.
    HashDiffers {
        /// The chain's hash there now.
        chain: String,
    },
    /// Genuine, but the chain ends before its record: records were deleted.
    Deleted {
        /// The chain's last record.
        chain_end: i64,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Signature(e) => write!(f, "{e}"),
            Failure::HashDiffers { chain } => write!(f, "the chain's hash there ({chain}) is not the signed one"),
            Failure::Deleted { chain_end } => write!(f, "the chain ends at record {chain_end}, before it"),
        }
    }
}

/// One distinct checkpoint (the same JWS from several sources counts once).
#[derive(Debug)]
struct Entry {
    source: Source,
    /// What it claims (verified or not: for ordering and messages).
    claims: Checkpoint,
    /// Whether its signature verified (it may still not match the chain).
    genuine: bool,
    /// `None` while unchecked (or unreachable past a chain break); `Some(Ok)` when good.
    outcome: Option<Result<(), Failure>>,
}

/// Checks the records of one pass against the checkpoints.
pub struct TrailCheck {
    /// By claimed seq; several may claim one record.
    entries: BTreeMap<i64, Vec<Entry>>,
    /// Checkpoints that are not even readable.
    unreadable: Vec<(Source, CheckpointError)>,
    /// How many were read from each origin (in the order first seen), duplicates included.
    read: Vec<(String, usize)>,
    distinct: usize,
}

impl TrailCheck {
    /// Verifies every candidate's signature with `keys` (identical JWS counted once, under
    /// the first source), ready for the records.
    pub fn new(candidates: Vec<Candidate>, keys: &AuditKeys) -> Self {
        let mut check = Self {
            entries: BTreeMap::new(),
            unreadable: Vec::new(),
            read: Vec::new(),
            distinct: 0,
        };
        let mut seen = std::collections::HashSet::new();
        for candidate in candidates {
            let origin = candidate.source.origin();
            match check.read.iter_mut().find(|(seen, _)| *seen == origin) {
                Some((_, count)) => *count += 1,
                None => check.read.push((origin, 1)),
            }
            if !seen.insert(candidate.jws.clone()) {
                continue;
            }
            check.distinct += 1;
            let unverified = match Unverified::parse(&candidate.jws) {
                Ok(unverified) => unverified,
                Err(e) => {
                    check.unreadable.push((candidate.source, e));
                    continue;
                }
            };
            let claims = unverified.claims().clone();
            let outcome = unverified.verify(keys).err().map(|e| Err(Failure::Signature(e)));
            check.entries.entry(claims.seq).or_default().push(Entry {
                source: candidate.source,
                claims,
                genuine: outcome.is_none(),
                outcome,
            });
        }
        check
    }

    /// Whether there is anything to check (then audit keys are needed).
    pub fn is_empty(&self) -> bool {
        self.distinct == 0
    }

    /// Compares a record that verified in the chain with the checkpoints of its seq.
    pub fn observe(&mut self, record: &AuditRecord) {
        if let Some(entries) = self.entries.get_mut(&record.seq) {
            for entry in entries.iter_mut().filter(|entry| entry.outcome.is_none()) {
                entry.outcome = Some(if entry.claims.hash == record.hash {
                    Ok(())
                } else {
                    Err(Failure::HashDiffers {
                        chain: record.hash.clone(),
                    })
                });
            }
        }
    }

    /// The verdict once every record was shown (`chain` is what the pass ended with).
    pub fn finish(mut self, chain: Result<&ChainVerifier, &ChainBreak>) -> TrailReport {
        if let Ok(verifier) = chain {
            let (end, _) = verifier.head();
            for entry in self.entries.range_mut(end + 1..).flat_map(|(_, e)| e.iter_mut()) {
                entry.outcome.get_or_insert(Err(Failure::Deleted { chain_end: end }));
            }
        }
        let all = || self.entries.values().flatten();
        let good = || all().filter(|entry| matches!(entry.outcome, Some(Ok(()))));
        let first = all().find(|entry| matches!(entry.outcome, Some(Err(_))));
        let first_failure = first.and_then(|entry| {
            let previous_good = good()
                .map(|good| good.claims.seq)
                .filter(|&seq| seq < entry.claims.seq)
                .max()
                .unwrap_or(0);
            let Some(Err(failure)) = &entry.outcome else {
                return None;
            };
            Some(FirstFailure {
                source: entry.source.clone(),
                claims: entry.claims.clone(),
                reason: failure.to_string(),
                previous_good,
            })
        });
        let failing = all().filter(|entry| matches!(entry.outcome, Some(Err(_)))).count();
        let newest_good = good().next_back().map(|entry| entry.claims.clone());
        let newest_signed = match chain {
            Ok(verifier) => all()
                .filter(|entry| entry.genuine && entry.claims.seq <= verifier.head().0)
                .map(|entry| entry.claims.seq)
                .max()
                .unwrap_or(0),
            Err(_) => 0,
        };
        TrailReport {
            chain: match chain {
                Ok(verifier) => Ok((verifier.count(), verifier.head().0, verifier.head().1.to_owned())),
                Err(broken) => Err(broken.clone()),
            },
            good: good().count(),
            distinct: self.distinct,
            unchecked: all().filter(|entry| entry.outcome.is_none()).count(),
            later_failures: failing.saturating_sub(1),
            first_failure,
            newest_good,
            newest_signed,
            unreadable: std::mem::take(&mut self.unreadable),
            read: std::mem::take(&mut self.read),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::sources::checkpoints_in;
    use super::super::test_keys::keys;
    use super::*;
    use crate::audit::{AuditEntry, AuditEvent};

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut records: Vec<AuditRecord> = Vec::new();
        for i in 1..=n {
            let entry = AuditEntry::new(AuditEvent::Read, &format!("k{i}")).user("alice");
            let prev = records.last().map(|r| (r.seq, r.hash.as_str()));
            records.push(AuditRecord::next(prev, 1_000 + i, &entry));
        }
        records
    }

    /// An attacker's edit of record `k` with every hash after it recomputed: a chain that
    /// verifies on its own.
    fn rewritten(mut records: Vec<AuditRecord>, k: usize) -> Vec<AuditRecord> {
        records[k - 1].outcome = "edited".into();
        for i in k - 1..records.len() {
            if i > 0 {
                records[i].prev_hash = records[i - 1].hash.clone();
            }
            records[i].hash = records[i].compute_hash();
        }
        records
    }

    fn checkpoints_of(records: &[AuditRecord], at: &[i64]) -> Vec<Candidate> {
        let [key, _] = keys();
        at.iter()
            .map(|&seq| Candidate {
                source: Source::Database,
                jws: key.sign(&Checkpoint {
                    seq,
                    hash: records[seq as usize - 1].hash.clone(),
                    iat: 1_700_000_000,
                }),
            })
            .collect()
    }

    fn run(records: &[AuditRecord], candidates: Vec<Candidate>) -> TrailReport {
        let [key, _] = keys();
        let mut check = TrailCheck::new(candidates, &AuditKeys::new([key.public.clone()]));
        let mut verifier = ChainVerifier::default();
        for record in records {
            if let Err(broken) = verifier.push(record) {
                return check.finish(Err(&broken));
            }
            check.observe(record);
        }
        check.finish(Ok(&verifier))
    }

    #[test]
    fn an_untouched_trail_passes_and_the_uncovered_tail_is_counted() {
        let records = chain(14);
        let report = run(&records, checkpoints_of(&records, &[3, 6, 9, 12]));
        assert!(report.passed(), "{report}");
        assert_eq!(report.good, 4);
        let text = report.to_string();
        assert!(text.contains("audit chain verified: 14 records"), "{text}");
        assert!(text.contains("checkpoints verified: 4 of 4 (database: 4)"), "{text}");
        assert!(text.contains("the last 2 records (13 to 14)"), "{text}");
        assert!(text.contains("signed 2023-11-14T22:13:20Z"), "{text}");
    }

    #[test]
    fn a_rewrite_with_recomputed_hashes_is_caught_at_the_next_checkpoint() {
        let original = chain(14);
        let candidates = checkpoints_of(&original, &[3, 6, 9, 12]);
        let report = run(&rewritten(original, 5), candidates);
        assert!(!report.passed(), "{report}");
        assert!(report.chain.is_ok(), "the rewritten chain's links verify");
        let failure = report.first_failure.as_ref().expect("a failure");
        assert_eq!((failure.previous_good, failure.claims.seq), (3, 6));
        assert_eq!(report.later_failures, 2);
        let text = report.to_string();
        assert!(text.contains("records in question: 4 to 6"), "{text}");
        assert!(text.contains("audit chain hash links intact: 14 records"), "{text}");
        // The genuine checkpoint of record 12 still marks where the signed part ends.
        assert!(text.contains("the last 2 records (13 to 14)"), "{text}");
    }

    #[test]
    fn an_edit_before_the_first_checkpoint_puts_everything_up_to_it_in_question() {
        let original = chain(8);
        let candidates = checkpoints_of(&original, &[4, 8]);
        let report = run(&rewritten(original, 1), candidates);
        let failure = report.first_failure.as_ref().expect("a failure");
        assert_eq!((failure.previous_good, failure.claims.seq), (0, 4));
        assert!(report.to_string().contains("records in question: 1 to 4"));
    }

    #[test]
    fn a_truncated_chain_fails_at_the_checkpoint_past_its_end() {
        let mut records = chain(14);
        let candidates = checkpoints_of(&records, &[3, 6, 9, 12]);
        records.truncate(10);
        let report = run(&records, candidates);
        let failure = report.first_failure.as_ref().expect("a failure");
        assert_eq!((failure.previous_good, failure.claims.seq), (9, 12));
        assert!(report.to_string().contains("the chain ends at record 10"), "{report}");
    }

    #[test]
    fn a_forged_checkpoint_is_named_and_does_not_count() {
        let records = chain(9);
        let [audit, forger] = keys();
        let mut candidates = checkpoints_of(&records, &[3]);
        candidates.push(Candidate {
            source: Source::Database,
            jws: forger.sign_as(
                &audit.kid(),
                &Checkpoint {
                    seq: 9,
                    hash: records[8].hash.clone(),
                    iat: 1,
                },
            ),
        });
        let report = run(&records, candidates);
        assert!(!report.passed());
        let failure = report.first_failure.as_ref().expect("a failure");
        assert_eq!((failure.previous_good, failure.claims.seq), (3, 9));
        assert!(
            failure.reason.contains("signature does not verify"),
            "{}",
            failure.reason
        );
        assert_eq!(report.good, 1);
        // A forged checkpoint covers nothing.
        assert!(report.to_string().contains("the last 6 records (4 to 9)"), "{report}");
    }

    #[test]
    fn the_same_checkpoint_from_the_database_and_a_file_counts_once() {
        let records = chain(6);
        let mut candidates = checkpoints_of(&records, &[3, 6]);
        let lines = format!(
            "# shipped from the host\n2025-01-01T00:00:00Z  INFO vault::checkpoint::signer: audit checkpoint seq=3 checkpoint={}\n\n{}\n",
            candidates[0].jws, candidates[1].jws
        );
        let from_file = checkpoints_in(Path::new("shipped.log"), &lines);
        assert_eq!(
            from_file.iter().map(|c| &c.source).collect::<Vec<_>>(),
            [
                &Source::File {
                    path: "shipped.log".into(),
                    line: 2
                },
                &Source::File {
                    path: "shipped.log".into(),
                    line: 4
                }
            ]
        );
        candidates.extend(from_file);
        let report = run(&records, candidates);
        assert!(report.passed(), "{report}");
        assert_eq!((report.good, report.distinct), (2, 2));
        assert!(report.to_string().contains("(database: 2, shipped.log: 2)"), "{report}");
    }

    #[test]
    fn a_line_that_holds_no_checkpoint_fails_naming_the_line() {
        let records = chain(3);
        let candidates = checkpoints_in(Path::new("c.txt"), "not a checkpoint at all\n");
        let report = run(&records, candidates);
        assert!(!report.passed());
        assert!(
            report.to_string().contains("checkpoint FAILED (from c.txt line 1)"),
            "{report}"
        );
    }

    #[test]
    fn checkpoints_past_a_chain_break_are_not_compared() {
        let mut records = chain(9);
        let candidates = checkpoints_of(&records, &[3, 6, 9]);
        records[4].outcome = "edited without rehashing".into();
        let report = run(&records, candidates);
        assert!(report.chain.is_err());
        assert_eq!((report.good, report.unchecked), (1, 2));
        assert!(report.first_failure.is_none());
        assert!(!report.passed());
        assert!(
            report.to_string().starts_with("audit chain broken at record 5"),
            "{report}"
        );
    }
}
