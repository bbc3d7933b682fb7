//! The machine's own figures, measured in the same run as the services: L (`openssl speed`),
//! T and T_iso (`hsm-admin bench`, SoftHSM in process and through `p11-kit server`), the
//! `fdatasync` rate of the data directory, and what the record says about the machine.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

/// The key `hsm-admin bench` signs with, made in a private copy of the `hsm-test` token.
const BENCH_KEY: &str = "bench-rsa";
const BENCH_TOKEN: &str = "hsm-test";

/// nproc, kernel, CPU model and the measured git revision.
pub fn info() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    json!({
        "nproc": std::thread::available_parallelism().map_or(0, usize::from),
        "kernel": kernel.trim(),
        "cpu": cpu,
        "git_rev": git(&["rev-parse", "HEAD"]),
        // Changes in the tree the binaries were built from that the revision does not hold.
        "git_dirty_paths": git(&["status", "--porcelain"]).lines().map(str::to_owned).collect::<Vec<_>>(),
    })
}

/// L: `openssl speed rsa2048` signatures per second with `processes` processes.
pub fn openssl_rsa(processes: usize, seconds: u64) -> Result<f64> {
    let output = Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string()])
        .args(["-multi", &processes.to_string(), "rsa2048"])
        .output()
        .context("running openssl speed")?;
    let text = String::from_utf8_lossy(&output.stdout);
    // `rsa 2048 bits 0.000965s 0.000030s   1036.4  33856.0`: sign/s is the sixth field.
    text.lines()
        .find(|l| l.starts_with("rsa 2048 bits"))
        .and_then(|l| l.split_whitespace().nth(5))
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| anyhow!("no rsa 2048 line in openssl speed's output: {text}"))
}

/// T and T_iso: RSA-2048 signatures per second from `threads` threads, with SoftHSM in
/// `hsm-admin`'s process and then through a `p11-kit server`, on a private copy of the
/// `.dev/` tokens (the key is made there, never in `.dev/`).
pub async fn token_rates(threads: usize, seconds: u64) -> Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    e2e::hsm_admin(
        dir.path(),
        BENCH_TOKEN,
        &[
            "generate-tls-key",
            "--label",
            BENCH_KEY,
            "--id",
            "b2",
            "--type",
            "rsa-2048",
            "--public-key-out",
            &dir.path().join("bench-rsa.pem").display().to_string(),
        ],
    )?;
    let bench = [
        "bench",
        "--label",
        BENCH_KEY,
        "--seconds",
        &seconds.to_string(),
        "--concurrency",
        &threads.to_string(),
    ];
    let in_process = parse_rate(&e2e::hsm_admin(dir.path(), BENCH_TOKEN, &bench)?)?;
    let server = e2e::TokenServer::start(dir.path(), BENCH_TOKEN).await?;
    let output = Command::new(e2e::binary("hsm-admin")?)
        .env("SOFTHSM2_CONF", e2e::tokens::private_softhsm(dir.path())?)
        .env("P11_KIT_SERVER_ADDRESS", server.address())
        .arg("--module")
        .arg(e2e::tokens::p11kit_client()?)
        .args(["--token", BENCH_TOKEN, "--pin-file"])
        .arg(e2e::dev_dir()?.join(format!("pins/{BENCH_TOKEN}.pin")))
        // One connection per thread, as the services' `pkcs11_connections = "auto"` opens:
        // p11-kit serves each connection one request at a time.
        .args(["--connections", &threads.to_string()])
        .args(bench)
        .output()?;
    if !output.status.success() {
        bail!(
            "hsm-admin bench through p11-kit: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let isolated = parse_rate(&String::from_utf8_lossy(&output.stdout))?;
    Ok((in_process, isolated))
}

/// The rate in `RSA sign/s: 1790 (2 thread(s), …)`.
fn parse_rate(text: &str) -> Result<f64> {
    text.split_once("sign/s:")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("no rate in hsm-admin bench's output: {text}"))
}

/// Writes 4 KiB and `fdatasync`s it, over and over, in `dir`: the commit pattern of a
/// database that makes every write durable. Counts into `done` until `stop` is set.
fn sync_loop(dir: &Path, stop: &AtomicBool, done: &AtomicU64) -> Result<()> {
    let path = dir.join(format!("fdatasync-{}.bin", uuid::Uuid::new_v4().simple()));
    let mut file = std::fs::File::create(&path)?;
    let block = [0x5a_u8; 4096];
    let result = (|| {
        while !stop.load(Ordering::Relaxed) {
            file.write_all(&block)?;
            file.sync_data()?;
            done.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// `fdatasync`s per second in `dir`, measured for `duration`.
pub fn fdatasync_rate(dir: &Path, duration: Duration) -> Result<f64> {
    let disk = BusyDisk::start(dir)?;
    std::thread::sleep(duration);
    disk.stop()
}

/// A thread keeping the disk of a directory busy with `fdatasync`s (the busy-disk rows:
/// another tenant of the disk that commits as fast as it can).
pub struct BusyDisk {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    started: Instant,
    thread: std::thread::JoinHandle<Result<()>>,
}

impl BusyDisk {
    /// Starts the loop in `dir`.
    pub fn start(dir: &Path) -> Result<Self> {
        let (stop, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let thread = std::thread::Builder::new().name("busy-disk".into()).spawn({
            let (dir, stop, done) = (dir.to_owned(), stop.clone(), done.clone());
            move || sync_loop(&dir, &stop, &done)
        })?;
        Ok(Self {
            stop,
            done,
            started: Instant::now(),
            thread,
        })
    }

    /// Stops the loop; its `fdatasync`s per second.
    pub fn stop(self) -> Result<f64> {
        self.stop.store(true, Ordering::Relaxed);
        let elapsed = self.started.elapsed();
        self.thread
            .join()
            .map_err(|_| anyhow!("the fdatasync loop panicked"))??;
        Ok(self.done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64())
    }
}
