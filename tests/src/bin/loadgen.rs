//! `loadgen`: store and read throughput of the real services, for `make bench`.
//!
//! Starts vault and manager like the end-to-end tests do (SoftHSM2 in `.dev/`, TLS on
//! loopback), then for a fixed time keeps `--concurrency` requests in flight: first
//! `POST /api/keys` (one RSA signature in manager's token each), then
//! `GET /api/keys/{key_id}` (one RSA-OAEP decryption in vault's token each). Prints one
//! line per phase. Compare with `openssl speed rsa2048` from the same run (the Makefile
//! target prints both), never with a number from another machine.

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
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let sessions = args.sessions.to_string();
    let duration = Duration::from_secs(args.seconds);
    let service_args = ["--pkcs11-sessions", sessions.as_str()];
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
