//! The figures of a run: one row per measurement, the human table, the JSON record, and the
//! comparison of two records.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::deployment::{Backend, Mode};
use crate::wrk::{Op, WrkResult};

/// The machine's own rates, measured in the same run.
#[derive(Clone, Copy, Debug)]
pub struct Baseline {
    /// `openssl speed rsa2048` sign/s, one process.
    pub l1: f64,
    /// The same with two processes.
    pub l2: f64,
    /// RSA-2048 signatures/s, SoftHSM in process, two threads.
    pub t: f64,
    /// The same through `p11-kit server`.
    pub t_iso: f64,
    /// 4 KiB write + `fdatasync` per second in the data directory.
    pub fdatasync: f64,
}

/// One measured row.
pub struct Row {
    /// Where the tokens were.
    pub mode: Mode,
    /// vault's storage.
    pub backend: Backend,
    /// Concurrent connections over all wrk processes.
    pub connections: usize,
    /// The request repeated.
    pub op: Op,
    /// `fdatasync`s/s of the disk-busy loop running meanwhile, if it ran.
    pub busy_disk: Option<f64>,
    /// What wrk measured.
    pub result: WrkResult,
    /// Each service's peak RSS (KiB) after the row.
    pub rss_kib: Value,
}

impl Row {
    /// Whether any request failed or was refused.
    pub fn flagged(&self) -> bool {
        self.result.socket_errors > 0 || self.result.non_2xx > 0
    }

    fn json(&self, base: &Baseline) -> Value {
        let r = &self.result;
        let mut row = json!({
            "mode": self.mode.name(),
            "backend": self.backend.name(),
            "replicas": self.backend.replicas(),
            "connections": self.connections,
            "op": self.op.name(),
            "busy_disk": self.busy_disk.is_some(),
            "rps": round(r.rps(), 1),
            "requests": r.requests,
            "p50_ms": round(r.p50_ms, 2),
            "p99_ms": round(r.p99_ms, 2),
            "errors": r.socket_errors,
            "non_2xx": r.non_2xx,
            "ratio_to_T": round(r.rps() / base.t, 3),
            "rss_kib": self.rss_kib,
            "wrk_processes": r.processes,
        });
        if self.mode == Mode::Isolation {
            row["ratio_to_T_iso"] = json!(round(r.rps() / base.t_iso, 3));
        }
        if let Some(rate) = self.busy_disk {
            row["busy_disk_fdatasync_per_s"] = json!(round(rate, 0));
        }
        if self.flagged() {
            row["socket_error_kinds"] = json!(r.socket_error_kinds);
            row["statuses"] = json!(r.statuses);
            row["first_bad"] = json!(r.first_bad);
        }
        row
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// The human table of `rows`.
pub fn table(base: &Baseline, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "L1 {:.0} sign/s, L2 {:.0} sign/s (openssl speed rsa2048, 1 and 2 processes)\n\
         T {:.0} sign/s, T_iso {:.0} sign/s (RSA-2048 in SoftHSM, 2 threads; in process, through p11-kit)\n\
         fdatasync {:.0}/s (4 KiB writes, data directory)",
        base.l1, base.l2, base.t, base.t_iso, base.fdatasync
    );
    let _ = writeln!(
        out,
        "{:<10} {:<8} {:>6} {:>5} {:<6} {:>9} {:>9} {:>9} {:>6} {:>6} {:>6}  peak RSS KiB",
        "mode", "backend", "vaults", "conns", "op", "req/s", "p50 ms", "p99 ms", "errors", "non2xx", "/T"
    );
    for row in rows {
        let r = &row.result;
        let mut note = String::new();
        if let Some(rate) = row.busy_disk {
            let _ = write!(note, "  [busy disk: {rate:.0} fdatasync/s alongside]");
        }
        if r.processes > 1 {
            let _ = write!(note, "  [{} wrk, c/{0} each; p50/p99 the larger]", r.processes);
        }
        if row.flagged() {
            let _ = write!(
                note,
                "  !! FAILED REQUESTS: {} {} {}",
                r.socket_error_kinds,
                r.statuses,
                r.first_bad.replace('\n', " ")
            );
        }
        let rss = row
            .rss_kib
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k} {}", v.as_u64().map_or("?".into(), |n| n.to_string())))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<10} {:<8} {:>6} {:>5} {:<6} {:>9.0} {:>9.1} {:>9.1} {:>6} {:>6} {:>6.2}  {rss}{note}",
            row.mode.name(),
            row.backend.name(),
            row.backend.replicas(),
            row.connections,
            row.op.name(),
            r.rps(),
            r.p50_ms,
            r.p99_ms,
            r.socket_errors,
            r.non_2xx,
            r.rps() / base.t,
        );
    }
    out
}

/// The whole record of a run.
pub fn record(machine: Value, settings: Value, base: &Baseline, rows: &[Row]) -> Value {
    json!({
        "schema": 1,
        "machine": machine,
        "settings": settings,
        "L1": round(base.l1, 1),
        "L2": round(base.l2, 1),
        "T": round(base.t, 1),
        "T_iso": round(base.t_iso, 1),
        "fdatasync_per_s": round(base.fdatasync, 0),
        "rows": rows.iter().map(|r| r.json(base)).collect::<Vec<_>>(),
    })
}

/// Writes `record` to `dir/bench-<stamp>.json` and copies it to `dir/latest.json`.
pub fn write(dir: &Path, stamp: &str, record: &Value) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("bench-{stamp}.json"));
    let text = serde_json::to_string_pretty(record)? + "\n";
    std::fs::write(&path, &text)?;
    std::fs::write(dir.join("latest.json"), &text)?;
    Ok(path)
}

/// Row by row, NEW against OLD: each rate's ratio (new / old), and the row's ratio to T in
/// both runs (which cancels much of a noisy machine's drift).
pub fn compare(old: &Path, new: &Path) -> Result<String> {
    let read = |path: &Path| -> Result<Value> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    };
    let (old, new) = (read(old)?, read(new)?);
    let mut out = String::new();
    let rev = |v: &Value| {
        v["machine"]["git_rev"]
            .as_str()
            .unwrap_or("?")
            .chars()
            .take(10)
            .collect::<String>()
    };
    let _ = writeln!(out, "old {} → new {}", rev(&old), rev(&new));
    for key in ["L1", "L2", "T", "T_iso", "fdatasync_per_s"] {
        let (a, b) = (old[key].as_f64(), new[key].as_f64());
        let ratio = a.zip(b).map_or("-".into(), |(a, b)| format!("{:.2}", b / a));
        let _ = writeln!(out, "{key:<16} {:>10} {:>10}  ×{ratio}", fmt(a), fmt(b));
    }
    let _ = writeln!(
        out,
        "{:<44} {:>9} {:>9} {:>6}  {:>6} {:>6}  {:>8} {:>8}",
        "row", "old req/s", "new req/s", "×", "old/T", "new/T", "old p99", "new p99"
    );
    let empty = Vec::new();
    let old_rows = old["rows"].as_array().unwrap_or(&empty);
    for row in new["rows"].as_array().unwrap_or(&empty) {
        let name = row_key(row);
        let Some(before) = old_rows.iter().find(|r| row_key(r) == name) else {
            let _ = writeln!(
                out,
                "{name:<44} {:>9} {:>9.0}  (new row)",
                "-",
                row["rps"].as_f64().unwrap_or(0.0)
            );
            continue;
        };
        let (a, b) = (before["rps"].as_f64(), row["rps"].as_f64());
        let ratio = a.zip(b).map_or("-".into(), |(a, b)| format!("{:.2}", b / a));
        let _ = writeln!(
            out,
            "{name:<44} {:>9} {:>9} {ratio:>6}  {:>6} {:>6}  {:>8} {:>8}",
            fmt(a),
            fmt(b),
            fmt2(before["ratio_to_T"].as_f64()),
            fmt2(row["ratio_to_T"].as_f64()),
            fmt2(before["p99_ms"].as_f64()),
            fmt2(row["p99_ms"].as_f64()),
        );
    }
    Ok(out)
}

fn row_key(row: &Value) -> String {
    format!(
        "{} {}×{} c{} {}{}",
        row["mode"].as_str().unwrap_or("?"),
        row["backend"].as_str().unwrap_or("?"),
        row["replicas"],
        row["connections"],
        row["op"].as_str().unwrap_or("?"),
        if row["busy_disk"].as_bool() == Some(true) {
            " busy-disk"
        } else {
            ""
        }
    )
}

fn fmt(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{x:.0}"))
}

fn fmt2(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{x:.2}"))
}
