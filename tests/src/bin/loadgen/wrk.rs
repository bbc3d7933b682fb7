//! Driving the HTTP side with Debian's `wrk` and reading its figures back.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

/// The Lua that counts non-2xx answers and prints the result as JSON (see the file).
const REPORT_LUA: &str = include_str!("report.lua");
const STORE_LUA: &str = include_str!("store.lua");
const READ_LUA: &str = include_str!("read.lua");

/// Which request a run repeats.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    /// `POST /api/keys` at manager.
    Store,
    /// `GET /api/keys/{key_id}` at vault.
    Read,
}

impl Op {
    /// The name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Op::Store => "store",
            Op::Read => "read",
        }
    }
}

/// The scripts of one deployment, written once into its directory.
pub struct Scripts {
    store: PathBuf,
    read: PathBuf,
}

impl Scripts {
    /// Writes the store script and a read script over `keys` (key id, access token).
    pub fn write(dir: &Path, keys: &[(String, String)]) -> Result<Self> {
        let store = dir.join("bench-store.lua");
        std::fs::write(&store, format!("{STORE_LUA}\n{REPORT_LUA}"))?;
        let mut table = String::from("keys = {\n");
        for (id, token) in keys {
            // Both are base64url/UUID text from our own services; checked, not escaped.
            if !(id.chars().chain(token.chars())).all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                bail!("unexpected characters in a key id or token");
            }
            table.push_str(&format!("  {{ \"{id}\", \"{token}\" }},\n"));
        }
        table.push_str("}\n");
        let read = dir.join("bench-read.lua");
        std::fs::write(&read, format!("{table}{READ_LUA}\n{REPORT_LUA}"))?;
        Ok(Self { store, read })
    }

    fn path(&self, op: Op) -> &Path {
        match op {
            Op::Store => &self.store,
            Op::Read => &self.read,
        }
    }
}

/// What one `wrk` process reported.
#[derive(Clone, Debug, Default)]
pub struct WrkResult {
    /// Responses received (any status).
    pub requests: u64,
    /// Measured time, seconds.
    pub seconds: f64,
    /// Socket errors: connect, read, write, timeout.
    pub socket_errors: u64,
    /// Those by kind, `kind=count` pairs (`read`: the server closed the connection).
    pub socket_error_kinds: String,
    /// Responses that were not 2xx.
    pub non_2xx: u64,
    /// `status=count` pairs of those.
    pub statuses: String,
    /// The first such answer (status and the start of its body), for the diagnosis.
    pub first_bad: String,
    /// Latency percentiles, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// How many wrk processes were combined into this result.
    pub processes: usize,
}

impl WrkResult {
    /// Successful (2xx) responses per second.
    pub fn rps(&self) -> f64 {
        self.requests.saturating_sub(self.non_2xx) as f64 / self.seconds.max(f64::EPSILON)
    }

    /// Several concurrent processes as one: counts and rates add up; of the percentiles,
    /// which cannot be merged without the distributions, the larger is kept.
    pub fn combine(parts: &[WrkResult]) -> Self {
        let mut all = Self::default();
        let mut rate = 0.0;
        for part in parts {
            rate += part.rps();
            all.requests += part.requests;
            all.socket_errors += part.socket_errors;
            all.non_2xx += part.non_2xx;
            all.p50_ms = all.p50_ms.max(part.p50_ms);
            all.p99_ms = all.p99_ms.max(part.p99_ms);
            all.processes += part.processes;
            for (mine, theirs) in [
                (&mut all.statuses, &part.statuses),
                (&mut all.first_bad, &part.first_bad),
                (&mut all.socket_error_kinds, &part.socket_error_kinds),
            ] {
                if !theirs.is_empty() {
                    if !mine.is_empty() {
                        mine.push_str("; ");
                    }
                    mine.push_str(theirs);
                }
            }
        }
        // The same measured time, such that rps() is the sum of the parts' rates.
        all.seconds = all.requests.saturating_sub(all.non_2xx) as f64 / rate.max(f64::EPSILON);
        all
    }
}

/// Runs `op` for `duration` with `connections` spread over one wrk process per target
/// (all at once), and combines their figures.
pub async fn run(
    scripts: &Scripts,
    op: Op,
    targets: &[SocketAddr],
    connections: usize,
    duration: Duration,
) -> Result<WrkResult> {
    let url_path = match op {
        Op::Store => "/api/keys",
        Op::Read => "/",
    };
    let share = (connections / targets.len().max(1)).max(1);
    let mut runs = tokio::task::JoinSet::new();
    for target in targets {
        let (script, url) = (scripts.path(op).to_owned(), format!("https://{target}{url_path}"));
        runs.spawn(async move { one(script, url, share, duration).await });
    }
    let mut parts = Vec::new();
    while let Some(part) = runs.join_next().await {
        parts.push(part??);
    }
    Ok(WrkResult::combine(&parts))
}

/// One wrk process with one thread: on a 2-core machine the services need the cores more.
async fn one(script: PathBuf, url: String, connections: usize, duration: Duration) -> Result<WrkResult> {
    let output = tokio::process::Command::new("wrk")
        .args(["-t", "1", "-c", &connections.to_string()])
        .args(["-d", &format!("{}s", duration.as_secs().max(1))])
        .args(["--timeout", "10s", "-s"])
        .arg(script)
        .arg(url)
        .kill_on_drop(true)
        .output()
        .await
        .context("running wrk (softhsm-setup/install-wrk.sh installs it)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("wrk failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("WRK_JSON "))
        .ok_or_else(|| anyhow!("wrk printed no WRK_JSON line: {stdout}"))?;
    let v: Value = serde_json::from_str(line).with_context(|| format!("wrk's JSON: {line}"))?;
    let n = |key: &str| v[key].as_f64().unwrap_or(0.0);
    let text = |key: &str| v[key].as_str().unwrap_or_default().to_owned();
    let kinds = ["connect", "read", "write", "timeout"].map(|kind| (kind, n(&format!("errors_{kind}")) as u64));
    Ok(WrkResult {
        socket_error_kinds: kinds
            .iter()
            .filter(|(_, count)| *count > 0)
            .map(|(kind, count)| format!("{kind}={count}"))
            .collect::<Vec<_>>()
            .join(","),
        requests: n("requests") as u64,
        seconds: n("duration_us") / 1e6,
        socket_errors: kinds.iter().map(|(_, count)| count).sum(),
        non_2xx: n("non_2xx") as u64,
        statuses: text("statuses"),
        first_bad: text("first_bad"),
        p50_ms: n("p50_us") / 1e3,
        p99_ms: n("p99_us") / 1e3,
        processes: 1,
    })
}

/// `wrk`'s version line, for the record.
pub fn version() -> String {
    std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
            text.lines().next().unwrap_or_default().to_owned()
        })
        .unwrap_or_else(|_| "wrk not found".to_owned())
}
