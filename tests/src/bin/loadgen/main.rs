//! `loadgen`: what `make bench` runs. Measures, in one run on one machine, the binaries in
//! its own `target/<profile>/` (release for `make bench`):
//!
//! - the machine's own rates: L1/L2 (`openssl speed rsa2048`, 1 and 2 processes), T and
//!   T_iso (RSA-2048 signatures in SoftHSM2 from 2 threads, in process and through
//!   `p11-kit server`), T_kryoptic (the same in Kryoptic, in process), T1 and T1_kryoptic
//!   (1 thread), T_ecdsa and T_ecdsa_kryoptic (ECDSA P-256, 2 threads), and the
//!   `fdatasync` rate of the data directory;
//! - store (`POST /api/keys`) and read (`GET /api/keys/{id}`) rates with p50/p99, driven by
//!   `wrk` at each connection count, for each token mode (in process, isolation) and each
//!   backend (SQLite; PostgreSQL with 1 and 2 vault replicas), then the same at one
//!   connection count while a thread `fdatasync`s in a loop in the data directory (busy
//!   disk), all on SoftHSM2; then store and read at one connection count with the services
//!   on Kryoptic (in process, SQLite); each row with its ratio to its token's T and each
//!   service's peak RSS.
//!
//! It prints a table and writes the figures as JSON (`target/bench/bench-<UTC>.json` and
//! `latest.json`); `--compare OLD NEW` prints two records' rows side by side. Rows with
//! failed or refused requests are flagged, and the run then exits non-zero.
//!
//! With `--attack` it measures instead what hostile traffic costs a legitimate client.

mod attack;
mod deployment;
mod machine;
mod report;
mod wrk;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;
use serde_json::json;

use deployment::{Backend, Deployment, Mode, Setup};
use e2e::Implementation;
use report::{Baseline, Row};
use wrk::{Op, Scripts};

/// Measure store and read rates of the real services next to the machine's own rates.
#[derive(Parser)]
struct Args {
    /// Seconds per row (and per phase of `--attack`).
    #[arg(long, env = "BENCH_SECONDS", default_value_t = 5)]
    seconds: u64,
    /// Seconds for each of L1, L2 and the token rates (T, T_iso, T_kryoptic, …).
    #[arg(long, default_value_t = 5)]
    baseline_seconds: u64,
    /// Connection counts, one row each per op, mode and backend.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64")]
    connections: Vec<usize>,
    /// Token modes.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "in-process,isolation")]
    modes: Vec<Mode>,
    /// Backends: `sqlite`, `postgres:N` (N vault replicas on one database; the
    /// PostgreSQL server is `TEST_DATABASE_URL`'s, else a private cluster, see `e2e::pg`).
    #[arg(long, value_delimiter = ',', value_parser = parse_backend, default_value = "sqlite,postgres:1,postgres:2")]
    backends: Vec<Backend>,
    /// Connections of the busy-disk rows (0: none).
    #[arg(long, default_value_t = 32)]
    busy_disk_connections: usize,
    /// Connections of the rows with the services on Kryoptic (in process, SQLite; 0: none).
    #[arg(long, default_value_t = 32)]
    kryoptic_connections: usize,
    /// PKCS#11 sessions per service (default: the services' own default).
    #[arg(long)]
    sessions: Option<usize>,
    /// More arguments for every service, e.g. `--service-arg=--handshake-wait-ms=1000`
    /// (repeat for several): to measure a setting before changing its default.
    #[arg(long = "service-arg", allow_hyphen_values = true)]
    service_args: Vec<String>,
    /// Secrets the read rows go round-robin over.
    #[arg(long, default_value_t = 256)]
    read_secrets: usize,
    /// Where the JSON records go.
    #[arg(long, default_value_os_t = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench"))]
    out_dir: PathBuf,
    /// Print two JSON records' figures side by side instead (OLD NEW).
    #[arg(long, num_args = 2, value_names = ["OLD", "NEW"])]
    compare: Vec<PathBuf>,
    /// Measure a legitimate client's latency calm and under attack instead.
    #[arg(long)]
    attack: bool,
}

fn parse_backend(text: &str) -> Result<Backend, String> {
    match text.split_once(':') {
        None if text == "sqlite" => Ok(Backend::Sqlite),
        Some(("postgres", n)) => match n.parse() {
            Ok(n) if n > 0 => Ok(Backend::Postgres(n)),
            _ => Err(format!("bad replica count in {text:?}")),
        },
        _ => Err(format!("{text:?}: expected sqlite or postgres:N")),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let [old, new] = args.compare.as_slice() {
        print!("{}", report::compare(old, new)?);
        return Ok(());
    }
    let sessions = args.sessions.map(|n| n.to_string());
    let mut service_args: Vec<&str> = match &sessions {
        Some(n) => vec!["--pkcs11-sessions", n.as_str()],
        None => Vec::new(),
    };
    service_args.extend(args.service_args.iter().map(String::as_str));
    if args.attack {
        return attack::latency_under_attack(&service_args, Duration::from_secs(args.seconds)).await;
    }
    bench(&args, &service_args).await
}

async fn bench(args: &Args, service_args: &[&str]) -> Result<()> {
    let stamp = utc_stamp();
    let wrk_version = wrk::version();
    if wrk_version == "wrk not found" {
        bail!("wrk is not installed: run softhsm-setup/install-wrk.sh (make bench does)");
    }
    let machine = machine::info();
    eprintln!("loadgen: {machine}");
    let base = baseline(args).await?;
    let postgres = if args.backends.iter().any(|b| matches!(b, Backend::Postgres(_))) {
        deployment::postgres_settings().await?
    } else {
        json!(null)
    };
    let mut rows = Vec::new();
    for (setup, plan) in plan(args) {
        measure_deployment(args, service_args, setup, &plan, &mut rows).await?;
    }
    let settings = json!({
        "profile": profile(),
        "seconds_per_row": args.seconds,
        "baseline_seconds": args.baseline_seconds,
        "pkcs11_sessions": args.sessions.map_or(json!("service default"), |n| json!(n)),
        "service_args": args.service_args,
        "read_secrets": args.read_secrets,
        "kryoptic_connections": args.kryoptic_connections,
        "wrk": wrk_version,
        "wrk_threads_per_process": 1,
        "postgres": postgres,
        "started_utc": stamp,
    });
    let record = report::record(machine, settings, &base, &rows);
    let path = report::write(&args.out_dir, &stamp, &record)?;
    print!("{}", report::table(&base, &rows));
    println!("(wrk -t1, {} s per row; JSON: {})", args.seconds, path.display());
    let flagged = rows.iter().filter(|r| r.flagged()).count();
    if flagged > 0 {
        bail!("{flagged} row(s) had failed or refused requests (marked !! above)");
    }
    Ok(())
}

/// L1, L2, the token rates and the `fdatasync` rate, before any service runs.
async fn baseline(args: &Args) -> Result<Baseline> {
    eprintln!("loadgen: fdatasync rate, openssl speed, hsm-admin bench (SoftHSM2, Kryoptic) …");
    let fdatasync = machine::fdatasync_rate(&std::env::temp_dir(), Duration::from_secs(2))?;
    let l1 = machine::openssl_rsa(1, args.baseline_seconds)?;
    let l2 = machine::openssl_rsa(2, args.baseline_seconds)?;
    let tokens = machine::BenchTokens::provision(args.baseline_seconds)?;
    let base = Baseline {
        l1,
        l2,
        softhsm: tokens.in_process(Implementation::SoftHsm, 2)?,
        t_iso: tokens.through_p11kit(2).await?,
        kryoptic: tokens.in_process(Implementation::Kryoptic, 2)?,
        fdatasync,
    };
    eprintln!("loadgen: {base:?}");
    Ok(base)
}

/// One row to measure: connections, the request, and whether the disk is kept busy.
type RowPlan = (usize, Op, bool);

/// The deployments to start, in order, each with its rows: every mode and backend on
/// SoftHSM2, and the Kryoptic rows right after SoftHSM2's in process on SQLite (the rows
/// they are compared with, measured as close in time as the run allows).
fn plan(args: &Args) -> Vec<(Setup, Vec<RowPlan>)> {
    let mut softhsm_rows: Vec<RowPlan> = Vec::new();
    for &c in &args.connections {
        softhsm_rows.extend([(c, Op::Store, false), (c, Op::Read, false)]);
    }
    if args.busy_disk_connections > 0 {
        let c = args.busy_disk_connections;
        softhsm_rows.extend([(c, Op::Store, true), (c, Op::Read, true)]);
    }
    let mut plan = Vec::new();
    for &mode in &args.modes {
        for &backend in &args.backends {
            let setup = Setup {
                implementation: Implementation::SoftHsm,
                mode,
                backend,
            };
            plan.push((setup, softhsm_rows.clone()));
        }
    }
    if args.kryoptic_connections > 0 {
        let c = args.kryoptic_connections;
        let kryoptic = Setup {
            implementation: Implementation::Kryoptic,
            mode: Mode::InProcess,
            backend: Backend::Sqlite,
        };
        let next_to = Setup {
            implementation: Implementation::SoftHsm,
            ..kryoptic
        };
        let at = plan
            .iter()
            .position(|(setup, _)| *setup == next_to)
            .map_or(plan.len(), |i| i + 1);
        plan.insert(at, (kryoptic, vec![(c, Op::Store, false), (c, Op::Read, false)]));
    }
    plan
}

/// The rows of one setup, on one set of services.
async fn measure_deployment(
    args: &Args,
    service_args: &[&str],
    setup: Setup,
    plan: &[RowPlan],
    rows: &mut Vec<Row>,
) -> Result<()> {
    let label = setup.label();
    eprintln!("loadgen: {label}: starting the services");
    let deployment = Deployment::start(setup, service_args).await?;
    let keys = deployment.secrets_to_read(args.read_secrets).await?;
    let scripts = Scripts::write(deployment.data_dir(), &keys)?;
    // Handshakes, connection pools and the database's first pages, not measured.
    let warm = Duration::from_secs(1);
    wrk::run(&scripts, Op::Store, &[deployment.manager_addr()], 16, warm).await?;
    wrk::run(&scripts, Op::Read, &deployment.vault_addrs(), 16, warm).await?;
    let duration = Duration::from_secs(args.seconds);
    for &(connections, op, busy) in plan {
        let targets = match op {
            Op::Store => vec![deployment.manager_addr()],
            Op::Read => deployment.vault_addrs(),
        };
        let disk = if busy {
            Some(machine::BusyDisk::start(deployment.data_dir())?)
        } else {
            None
        };
        let result = wrk::run(&scripts, op, &targets, connections, duration).await;
        let busy_disk = disk.map(machine::BusyDisk::stop).transpose()?;
        let row = Row {
            setup,
            connections,
            op,
            busy_disk,
            result: result?,
            rss_kib: deployment.peak_rss(),
        };
        eprintln!(
            "loadgen: {label} c{connections} {}{}: {:.0} req/s, p99 {:.1} ms, {} errors, {} non-2xx",
            op.name(),
            if busy { " (busy disk)" } else { "" },
            row.result.rps(),
            row.result.p99_ms,
            row.result.socket_errors,
            row.result.non_2xx
        );
        rows.push(row);
    }
    deployment.finish().await
}

/// `release` or `debug`: the directory this executable (and so the measured services) is in.
fn profile() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| {
            p.parent()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default()
}

/// Now as `YYYYMMDDTHHMMSSZ`.
fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_of_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
    }

    #[test]
    fn kryoptic_rows_follow_softhsm_in_process_on_sqlite() {
        let args = Args::parse_from(["loadgen", "--connections", "32", "--busy-disk-connections", "0"]);
        let setups: Vec<String> = plan(&args).iter().map(|(setup, _)| setup.label()).collect();
        assert_eq!(
            setups,
            [
                "softhsm2 in-process sqlite×1",
                "kryoptic in-process sqlite×1",
                "softhsm2 in-process postgres×1",
                "softhsm2 in-process postgres×2",
                "softhsm2 isolation sqlite×1",
                "softhsm2 isolation postgres×1",
                "softhsm2 isolation postgres×2",
            ]
        );
        let only_postgres = Args::parse_from(["loadgen", "--backends", "postgres:1", "--kryoptic-connections", "8"]);
        let last = plan(&only_postgres)
            .pop()
            .map(|(setup, rows)| (setup.implementation, rows.len()));
        assert_eq!(last, Some((Implementation::Kryoptic, 2)));
        let none = Args::parse_from(["loadgen", "--kryoptic-connections", "0"]);
        assert!(
            plan(&none)
                .iter()
                .all(|(setup, _)| setup.implementation == Implementation::SoftHsm)
        );
    }

    #[test]
    fn backends_parse() {
        assert_eq!(parse_backend("sqlite"), Ok(Backend::Sqlite));
        assert_eq!(parse_backend("postgres:2"), Ok(Backend::Postgres(2)));
        assert!(parse_backend("postgres:0").is_err());
        assert!(parse_backend("mysql").is_err());
    }
}
