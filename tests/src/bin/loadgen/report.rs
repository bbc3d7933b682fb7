//! The figures of a run: one row per measurement, the human table, the JSON record, and the
//! comparison of two records.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::deployment::{Mode, Setup, implementation_name};
use crate::wrk::{Op, WrkResult};
use e2e::Implementation;

/// One token's signatures per second in `hsm-admin`'s process (`hsm-admin bench` on a
/// private copy of its `hsm-test` token).
#[derive(Clone, Copy, Debug)]
pub struct SignRates {
    /// RSA-2048 (RSA-PSS-SHA256) from two threads: the token's T.
    pub rsa: f64,
    /// RSA-2048 from one thread.
    pub rsa_1: f64,
    /// ECDSA P-256 from two threads (the services' TLS keys sign handshakes with it).
    pub ecdsa: f64,
}

/// The machine's own rates, measured in the same run.
#[derive(Clone, Copy, Debug)]
pub struct Baseline {
    /// `openssl speed rsa2048` sign/s, one process.
    pub l1: f64,
    /// The same with two processes.
    pub l2: f64,
    /// SoftHSM2's rates; `softhsm.rsa` is T.
    pub softhsm: SignRates,
    /// T through `p11-kit server` (SoftHSM2 behind it).
    pub t_iso: f64,
    /// Kryoptic's rates; `kryoptic.rsa` is T_kryoptic.
    pub kryoptic: SignRates,
    /// 4 KiB write + `fdatasync` per second in the data directory.
    pub fdatasync: f64,
}

impl Baseline {
    /// T of the PKCS#11 implementation the services ran on: what a row's ratio is against.
    pub fn t(&self, implementation: Implementation) -> f64 {
        match implementation {
            Implementation::SoftHsm => self.softhsm.rsa,
            Implementation::Kryoptic => self.kryoptic.rsa,
        }
    }
}

/// One measured row.
pub struct Row {
    /// The tokens' implementation, where they were, and vault's storage.
    pub setup: Setup,
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
        let Setup {
            implementation,
            mode,
            backend,
        } = self.setup;
        let mut row = json!({
            "token": implementation_name(implementation),
            "mode": mode.name(),
            "backend": backend.name(),
            "replicas": backend.replicas(),
            "connections": self.connections,
            "op": self.op.name(),
            "busy_disk": self.busy_disk.is_some(),
            "rps": round(r.rps(), 1),
            "requests": r.requests,
            "p50_ms": round(r.p50_ms, 2),
            "p99_ms": round(r.p99_ms, 2),
            "errors": r.socket_errors,
            "non_2xx": r.non_2xx,
            "ratio_to_T": round(r.rps() / base.softhsm.rsa, 3),
            "rss_kib": self.rss_kib,
            "wrk_processes": r.processes,
        });
        if mode == Mode::Isolation {
            row["ratio_to_T_iso"] = json!(round(r.rps() / base.t_iso, 3));
        }
        if implementation == Implementation::Kryoptic {
            row["ratio_to_T_kryoptic"] = json!(round(r.rps() / base.kryoptic.rsa, 3));
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
    let (soft, kry) = (&base.softhsm, &base.kryoptic);
    let _ = writeln!(
        out,
        "L1 {:.0} sign/s, L2 {:.0} sign/s (openssl speed rsa2048, 1 and 2 processes)\n\
         T {:.0} sign/s, T_iso {:.0} sign/s, T1 {:.0} sign/s (RSA-2048 in SoftHSM2, 2 threads in process, \
         through p11-kit; 1 thread)\n\
         T_kryoptic {:.0} sign/s, T1_kryoptic {:.0} sign/s (RSA-2048 in Kryoptic in process, 2 threads; 1 thread)\n\
         T_ecdsa {:.0} sign/s, T_ecdsa_kryoptic {:.0} sign/s (ECDSA P-256 in process, 2 threads; SoftHSM2, Kryoptic)\n\
         fdatasync {:.0}/s (4 KiB writes, data directory)",
        base.l1, base.l2, soft.rsa, base.t_iso, soft.rsa_1, kry.rsa, kry.rsa_1, soft.ecdsa, kry.ecdsa, base.fdatasync
    );
    // Each row against T of its own token: T_kryoptic for the rows on Kryoptic.
    let _ = writeln!(
        out,
        "{:<8} {:<10} {:<8} {:>6} {:>5} {:<6} {:>9} {:>9} {:>9} {:>6} {:>6} {:>6}  peak RSS KiB",
        "token", "mode", "backend", "vaults", "conns", "op", "req/s", "p50 ms", "p99 ms", "errors", "non2xx", "/T"
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
            "{:<8} {:<10} {:<8} {:>6} {:>5} {:<6} {:>9.0} {:>9.1} {:>9.1} {:>6} {:>6} {:>6.2}  {rss}{note}",
            implementation_name(row.setup.implementation),
            row.setup.mode.name(),
            row.setup.backend.name(),
            row.setup.backend.replicas(),
            row.connections,
            row.op.name(),
            r.rps(),
            r.p50_ms,
            r.p99_ms,
            r.socket_errors,
            r.non_2xx,
            r.rps() / base.t(row.setup.implementation),
        );
    }
    out
}

/// The whole record of a run.
pub fn record(machine: Value, settings: Value, base: &Baseline, rows: &[Row]) -> Value {
    json!({
        // 2: the token rates beyond T and T_iso, and each row's "token".
        "schema": 2,
        "machine": machine,
        "settings": settings,
        "L1": round(base.l1, 1),
        "L2": round(base.l2, 1),
        "T": round(base.softhsm.rsa, 1),
        "T_iso": round(base.t_iso, 1),
        "T1": round(base.softhsm.rsa_1, 1),
        "T_ecdsa": round(base.softhsm.ecdsa, 1),
        "T_kryoptic": round(base.kryoptic.rsa, 1),
        "T1_kryoptic": round(base.kryoptic.rsa_1, 1),
        "T_ecdsa_kryoptic": round(base.kryoptic.ecdsa, 1),
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

/// Row by row, NEW against OLD: each rate's ratio (new / old), and the row's ratio to its
/// token's T (T_kryoptic for rows on Kryoptic) in both runs (which cancels much of a noisy
/// machine's drift). Records without the newer rates or a row's token (schema 1) show `-`
/// for those rates and had only SoftHSM2 rows.
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
    for key in [
        "L1",
        "L2",
        "T",
        "T_iso",
        "T1",
        "T_kryoptic",
        "T1_kryoptic",
        "T_ecdsa",
        "T_ecdsa_kryoptic",
        "fdatasync_per_s",
    ] {
        let (a, b) = (old[key].as_f64(), new[key].as_f64());
        let ratio = a.zip(b).map_or("-".into(), |(a, b)| format!("{:.2}", b / a));
        let _ = writeln!(out, "{key:<16} {:>10} {:>10}  ×{ratio}", fmt(a), fmt(b));
    }
    let _ = writeln!(
        out,
        "{:<53} {:>9} {:>9} {:>6}  {:>6} {:>6}  {:>8} {:>8}",
        "row", "old req/s", "new req/s", "×", "old/T", "new/T", "old p99", "new p99"
    );
    let empty = Vec::new();
    let old_rows = old["rows"].as_array().unwrap_or(&empty);
    for row in new["rows"].as_array().unwrap_or(&empty) {
        let name = row_key(row);
        let Some(before) = old_rows.iter().find(|r| row_key(r) == name) else {
            let _ = writeln!(
                out,
                "{name:<53} {:>9} {:>9.0}  (new row)",
                "-",
                row["rps"].as_f64().unwrap_or(0.0)
            );
            continue;
        };
        let (a, b) = (before["rps"].as_f64(), row["rps"].as_f64());
        let ratio = a.zip(b).map_or("-".into(), |(a, b)| format!("{:.2}", b / a));
        let _ = writeln!(
            out,
            "{name:<53} {:>9} {:>9} {ratio:>6}  {:>6} {:>6}  {:>8} {:>8}",
            fmt(a),
            fmt(b),
            fmt2(ratio_to_own_t(before)),
            fmt2(ratio_to_own_t(row)),
            fmt2(before["p99_ms"].as_f64()),
            fmt2(row["p99_ms"].as_f64()),
        );
    }
    Ok(out)
}

/// A row's token; rows of schema 1 were all on SoftHSM2.
fn token(row: &Value) -> &str {
    row["token"]
        .as_str()
        .unwrap_or(implementation_name(Implementation::SoftHsm))
}

/// The row's ratio to T of its own token.
fn ratio_to_own_t(row: &Value) -> Option<f64> {
    if token(row) == implementation_name(Implementation::Kryoptic) {
        row["ratio_to_T_kryoptic"].as_f64()
    } else {
        row["ratio_to_T"].as_f64()
    }
}

fn row_key(row: &Value) -> String {
    format!(
        "{} {} {}×{} c{} {}{}",
        token(row),
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
