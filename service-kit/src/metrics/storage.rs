//! What vault's group committer does (`vault/src/storage/group_commit.rs`): commits, the
//! writes and audit records each carries, how long each took, and batches that failed. Once
//! per process, like the transport counters: the committer has no router state.

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use super::histogram::{Histogram, histogram_header};

/// The committer's counters and commit latency.
#[derive(Default)]
pub struct Storage {
    counts: Mutex<Counts>,
    latency: Mutex<Histogram>,
}

#[derive(Default)]
struct Counts {
    commits: u64,
    writes: u64,
    audit_records: u64,
    /// A write refused alone (the rest of its batch replayed).
    failed_writes: u64,
    /// A batch whose BEGIN or COMMIT failed: none of it durable.
    failed_batches: u64,
}

/// The process's storage counters (nothing but zeros in manager).
pub fn storage() -> &'static Storage {
    static STORAGE: OnceLock<Storage> = OnceLock::new();
    STORAGE.get_or_init(Storage::default)
}

impl Storage {
    /// One transaction committed `writes` writes, `audit_records` of them audit records,
    /// in `took` (BEGIN to COMMIT, the fsync included).
    pub fn committed(&self, writes: usize, audit_records: u64, took: Duration) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.commits += 1;
        counts.writes += writes as u64;
        counts.audit_records += audit_records;
        drop(counts);
        self.latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(took.as_secs_f64());
    }

    /// A write was refused alone; the rest of its batch is applied again.
    pub fn write_failed(&self) {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).failed_writes += 1;
    }

    /// A whole batch failed to begin or commit.
    pub fn batch_failed(&self) {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failed_batches += 1;
    }

    pub(super) fn render(&self, out: &mut String) {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        for (name, help, value) in [
            (
                "storage_commits_total",
                "Write transactions committed (each one fsync; a batch of queued writes).",
                counts.commits,
            ),
            (
                "storage_committed_writes_total",
                "Writes committed; divided by storage_commits_total, the writes per commit.",
                counts.writes,
            ),
            (
                "audit_records_total",
                "Audit records appended to the hash chain and committed.",
                counts.audit_records,
            ),
            (
                "storage_failed_writes_total",
                "Writes refused alone, the rest of their batch applied again.",
                counts.failed_writes,
            ),
            (
                "storage_failed_batches_total",
                "Batches whose BEGIN or COMMIT failed: none of their writes durable.",
                counts.failed_batches,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            ));
        }
        drop(counts);
        let name = "storage_commit_duration_seconds";
        histogram_header(out, name, "Time from BEGIN to COMMIT of a write transaction.");
        self.latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .render(out, name, "");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_writes_and_audit_records_add_up_and_latency_is_a_histogram() {
        let storage = Storage::default();
        storage.committed(3, 2, Duration::from_millis(4));
        storage.committed(1, 1, Duration::from_millis(20));
        storage.write_failed();
        let mut text = String::new();
        storage.render(&mut text);
        for line in [
            "storage_commits_total 2\n",
            "storage_committed_writes_total 4\n",
            "audit_records_total 3\n",
            "storage_failed_writes_total 1\n",
            "storage_failed_batches_total 0\n",
            "storage_commit_duration_seconds_bucket{le=\"0.005\"} 1\n",
            "storage_commit_duration_seconds_bucket{le=\"+Inf\"} 2\n",
            "storage_commit_duration_seconds_count 2\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
    }
}
