//! `loadgen`: store and read throughput of the real services, for `make bench`.
//!
//! Starts vault and manager like the end-to-end tests do (SoftHSM2 in `.dev/`, TLS on
//! loopback), then for a fixed time keeps `--concurrency` requests in flight: first
//! `POST /api/keys` (one RSA signature in manager's token each), then
//! `GET /api/keys/{key_id}` (one RSA-OAEP decryption in vault's token each). Prints one
//! line per phase. Compare with `openssl speed rsa2048` from the same run (the Makefile
//! target prints both), never with a number from another machine.
//!
//! With `--attack` it measures instead what hostile traffic costs a legitimate client: one
//! client stores and reads in turn, first calm, then while `e2e::attack::Attack::everything`
//! runs from other loopback addresses, and prints both latencies and their ratio.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use e2e::{Replicas, System};
use reqwest::StatusCode;

/// Measure store and read rates.
#[derive(Parser)]
struct Args {
    /// Seconds per phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Requests in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// PKCS#11 sessions per service.
    #[arg(long, default_value_t = 2)]
    sessions: usize,
    /// Instead of SQLite, measure vault replicas on PostgreSQL, one run per count given
    /// (e.g. `1,2`); reads go round-robin over the replicas, stores through the first.
    #[arg(long, value_delimiter = ',')]
    postgres_replicas: Vec<usize>,
    /// Measure a legitimate client's latency calm and under attack instead.
    #[arg(long)]
    attack: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let sessions = args.sessions.to_string();
    let duration = Duration::from_secs(args.seconds);
    let service_args = ["--pkcs11-sessions", sessions.as_str()];
    if args.attack {
        return latency_under_attack(&service_args, duration).await;
    }
    {
        let system = System::start_with(&service_args, &service_args).await?;
        let vaults = vec![system.vault.addr("public")];
        let (store, read) = measure(system.http(), system.manager_url("/api/keys"), vaults, &args, duration).await?;
        println!("sqlite, 1 vault: store {store:.0} req/s, read {read:.0} req/s");
    }
    for &count in &args.postgres_replicas {
        let replicas = Replicas::start(count, e2e::pg::fresh_database().await?, &service_args).await?;
        let vaults = (0..count).map(|i| replicas.vault(i)).collect();
        let manager = replicas.client.manager_url("/api/keys");
        let (store, read) = measure(&replicas.client.http, manager, vaults, &args, duration).await?;
        println!("postgres, {count} vault replica(s): store {store:.0} req/s, read {read:.0} req/s");
    }
    println!(
        "(concurrency {}, {} PKCS#11 sessions per service, {} s per phase)",
        args.concurrency, args.sessions, args.seconds
    );
    Ok(())
}

/// A store phase through `manager`, then a read phase round-robin over `vaults`.
async fn measure(
    http: &reqwest::Client,
    manager: String,
    vaults: Vec<std::net::SocketAddr>,
    args: &Args,
    duration: Duration,
) -> Result<(f64, f64)> {
    let stored = Arc::new(std::sync::Mutex::new(Vec::new()));
    let store_rate = run_phase(args.concurrency, duration, {
        let (http, stored) = (http.clone(), stored.clone());
        move |i| {
            let (http, stored, manager) = (http.clone(), stored.clone(), manager.clone());
            async move {
                let body = serde_json::json!({"user_id": "bench", "key_data": format!("benchmark secret {i}")});
                let (status, answer) = e2e::answer(http.post(&manager).json(&body).send().await?).await?;
                if status != StatusCode::CREATED {
                    bail!("store answered {status}: {answer}");
                }
                let response: contract::wire::StoreKeyResponse = serde_json::from_value(answer)?;
                stored.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(response);
                Ok(())
            }
        }
    })
    .await?;
    let stored = Arc::new(stored.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone());
    let vaults = Arc::new(vaults);
    let read_rate = run_phase(args.concurrency, duration, {
        let http = http.clone();
        move |i| {
            let (http, stored, vaults) = (http.clone(), stored.clone(), vaults.clone());
            async move {
                let item = &stored[i as usize % stored.len()];
                let vault = vaults[i as usize % vaults.len()];
                let token = format!("Bearer {}", item.access_token);
                let (status, _) = e2e::read_at(&http, vault, &item.key_id, Some(&token)).await?;
                if status != StatusCode::OK {
                    bail!("read answered {status}");
                }
                Ok(())
            }
        }
    })
    .await?;
    Ok((store_rate, read_rate))
}

/// Runs `request(i)` from `concurrency` workers for `duration`; returns completed requests/s.
async fn run_phase<F, Fut>(concurrency: usize, duration: Duration, request: F) -> Result<f64>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let issued = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (issued, done, stop, request) = (issued.clone(), done.clone(), stop.clone(), request.clone());
        workers.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                request(issued.fetch_add(1, Ordering::Relaxed)).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    tokio::time::sleep(duration).await;
    let completed = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    while let Some(result) = workers.join_next().await {
        result??;
    }
    Ok(completed as f64 / elapsed.as_secs_f64())
}

/// One client's store-then-read latency, calm and under attack, same services, same run.
async fn latency_under_attack(service_args: &[&str], duration: Duration) -> Result<()> {
    let system = System::start_with(service_args, service_args).await?;
    let calm = sequential_latencies(&system, duration).await?;
    let (attack, refusals) = e2e::attack::Attack::everything(
        system.vault.addr("public"),
        system.vault.addr("internal"),
        system.manager.addr("api"),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let attacked = sequential_latencies(&system, duration).await;
    let attempts = attack.stop().await;
    let attacked = attacked?;
    for (what, calm, attacked) in [("store", &calm.0, &attacked.0), ("read", &calm.1, &attacked.1)] {
        let (p50, p99) = (percentile(calm, 0.50), percentile(calm, 0.99));
        let (a50, a99) = (percentile(attacked, 0.50), percentile(attacked, 0.99));
        println!(
            "{what}: calm p50 {p50:.1} ms p99 {p99:.1} ms ({} requests); under attack p50 {a50:.1} ms \
             p99 {a99:.1} ms ({} requests); ratio p50 {:.2}, p99 {:.2}",
            calm.len(),
            attacked.len(),
            a50 / p50,
            a99 / p99
        );
    }
    println!(
        "(attack: {attempts} connections, handshakes and requests; {} refusals answered; {} s per phase)",
        refusals.load(Ordering::Relaxed),
        duration.as_secs()
    );
    Ok(())
}

/// Store, then read what was stored, one request at a time for `duration`; every answer
/// must be a success. Returns the store and the read latencies in milliseconds.
async fn sequential_latencies(system: &System, duration: Duration) -> Result<(Vec<f64>, Vec<f64>)> {
    let (mut stores, mut reads) = (Vec::new(), Vec::new());
    let started = Instant::now();
    while started.elapsed() < duration {
        let at = Instant::now();
        let stored = system.store("bench", "latency probe").await?;
        stores.push(at.elapsed().as_secs_f64() * 1e3);
        let at = Instant::now();
        let (status, body) = system.read(&stored.key_id, &stored.access_token).await?;
        reads.push(at.elapsed().as_secs_f64() * 1e3);
        if status != StatusCode::OK {
            bail!("read answered {status}: {body}");
        }
    }
    Ok((stores, reads))
}

/// The `q` quantile (nearest rank) of `samples`.
fn percentile(samples: &[f64], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or(f64::NAN)
}
