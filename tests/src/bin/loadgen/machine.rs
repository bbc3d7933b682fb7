//! The machine's own figures, measured in the same run as the services: L (`openssl speed`),
//! the tokens' signature rates (`hsm-admin bench`: SoftHSM2 and Kryoptic in process, SoftHSM2
//! through `p11-kit server`), the `fdatasync` rate of the data directory, and what the
//! record says about the machine.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use e2e::Implementation;
use serde_json::{Value, json};

use crate::report::SignRates;

/// The token `hsm-admin bench` signs in: a private copy of `hsm-test`, so the bench keys
/// are made there, never in `.dev/`.
const BENCH_TOKEN: &str = "hsm-test";

/// A key `hsm-admin bench` signs with.
#[derive(Clone, Copy, Debug)]
enum BenchKey {
    /// RSA-2048, signing RSA-PSS-SHA256.
    Rsa2048,
    /// ECDSA P-256.
    EcdsaP256,
}

impl BenchKey {
    /// Its CKA_LABEL in the token copy.
    fn label(self) -> &'static str {
        match self {
            BenchKey::Rsa2048 => "bench-rsa",
            BenchKey::EcdsaP256 => "bench-ecdsa",
        }
    }

    /// Its CKA_ID (hex), unlike any key `softhsm-setup/setup.sh` provisions.
    fn id(self) -> &'static str {
        match self {
            BenchKey::Rsa2048 => "b2",
            BenchKey::EcdsaP256 => "b3",
        }
    }

    /// `hsm-admin generate-tls-key --type`, and how `hsm-admin bench` names the key type.
    fn key_type(self) -> &'static str {
        match self {
            BenchKey::Rsa2048 => "rsa-2048",
            BenchKey::EcdsaP256 => "ecdsa-p256",
        }
    }
}

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

/// Private copies of both implementations' `hsm-test` tokens holding the bench keys.
pub struct BenchTokens {
    /// The copies, the public keys and the p11-kit socket.
    dir: tempfile::TempDir,
    /// Seconds per measurement.
    seconds: u64,
}

impl BenchTokens {
    /// Copies the tokens of both implementations and makes each bench key in each copy.
    pub fn provision(seconds: u64) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        for implementation in [Implementation::SoftHsm, Implementation::Kryoptic] {
            for key in [BenchKey::Rsa2048, BenchKey::EcdsaP256] {
                let public_key = dir.path().join(format!("{}-{implementation:?}.pem", key.label()));
                e2e::hsm_admin_on(
                    implementation,
                    dir.path(),
                    BENCH_TOKEN,
                    &[
                        "generate-tls-key",
                        "--label",
                        key.label(),
                        "--id",
                        key.id(),
                        "--type",
                        key.key_type(),
                        "--public-key-out",
                        &public_key.display().to_string(),
                    ],
                )?;
            }
        }
        Ok(Self { dir, seconds })
    }

    /// The `hsm-admin bench` arguments for `key` from `threads` threads.
    fn bench_args(&self, key: BenchKey, threads: usize) -> [String; 7] {
        let (seconds, threads) = (self.seconds.to_string(), threads.to_string());
        [
            "bench",
            "--label",
            key.label(),
            "--seconds",
            &seconds,
            "--concurrency",
            &threads,
        ]
        .map(str::to_owned)
    }

    /// Signatures per second with `key` from `threads` threads, `implementation` loaded in
    /// `hsm-admin`'s process.
    fn rate(&self, implementation: Implementation, key: BenchKey, threads: usize) -> Result<f64> {
        let args = self.bench_args(key, threads);
        let output = e2e::hsm_admin_on(
            implementation,
            self.dir.path(),
            BENCH_TOKEN,
            &args.each_ref().map(String::as_str),
        )?;
        parse_rate(&output, key)
    }

    /// The rates of `implementation` in process: RSA-2048 from `threads` threads and one,
    /// ECDSA P-256 from `threads`.
    pub fn in_process(&self, implementation: Implementation, threads: usize) -> Result<SignRates> {
        Ok(SignRates {
            rsa: self.rate(implementation, BenchKey::Rsa2048, threads)?,
            rsa_1: self.rate(implementation, BenchKey::Rsa2048, 1)?,
            ecdsa: self.rate(implementation, BenchKey::EcdsaP256, threads)?,
        })
    }

    /// T_iso: RSA-2048 signatures per second from `threads` threads, SoftHSM2 behind a
    /// `p11-kit server`.
    pub async fn through_p11kit(&self, threads: usize) -> Result<f64> {
        let dir = self.dir.path();
        let server = e2e::TokenServer::start(dir, BENCH_TOKEN).await?;
        let output = Command::new(e2e::binary("hsm-admin")?)
            .env("SOFTHSM2_CONF", e2e::tokens::private_softhsm(dir)?)
            .env("P11_KIT_SERVER_ADDRESS", server.address())
            .arg("--module")
            .arg(e2e::tokens::p11kit_client()?)
            .args(["--token", BENCH_TOKEN, "--pin-file"])
            .arg(Implementation::SoftHsm.pin_file(BENCH_TOKEN)?)
            // One connection per thread, as the services' `pkcs11_connections = "auto"` opens:
            // p11-kit serves each connection one request at a time.
            .args(["--connections", &threads.to_string()])
            .args(self.bench_args(BenchKey::Rsa2048, threads))
            .output()?;
        if !output.status.success() {
            bail!(
                "hsm-admin bench through p11-kit: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        parse_rate(&String::from_utf8_lossy(&output.stdout), BenchKey::Rsa2048)
    }
}

/// The rate in `rsa-2048 sign/s: 1790 (2 thread(s), …)`, insisting on `key`'s type.
fn parse_rate(text: &str, key: BenchKey) -> Result<f64> {
    let key_type = key.key_type();
    text.split_once(&format!("{key_type} sign/s:"))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("no {key_type} rate in hsm-admin bench's output: {text}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_rate_of_the_key_type_asked_for() -> Result<()> {
        let line = "rsa-2048 sign/s: 1790 (2 thread(s), 1 connection(s), /usr/lib/softhsm/libsofthsm2.so)\n";
        assert_eq!(parse_rate(line, BenchKey::Rsa2048)?, 1790.0);
        assert!(parse_rate(line, BenchKey::EcdsaP256).is_err());
        Ok(())
    }
}
