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
use e2e::System;
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
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let sessions = args.sessions.to_string();
    let system =
        Arc::new(System::start_with(&["--pkcs11-sessions", &sessions], &["--pkcs11-sessions", &sessions]).await?);
    let stored = Arc::new(std::sync::Mutex::new(Vec::new()));
    let duration = Duration::from_secs(args.seconds);

    let store_rate = run_phase(args.concurrency, duration, {
        let (system, stored) = (system.clone(), stored.clone());
        move |i| {
            let (system, stored) = (system.clone(), stored.clone());
            async move {
                let response = system.store("bench", &format!("benchmark secret {i}")).await?;
                stored.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(response);
                Ok(())
            }
        }
    })
    .await?;
    let stored = Arc::new(stored.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone());
    let read_rate = run_phase(args.concurrency, duration, {
        let system = system.clone();
        move |i| {
            let (system, stored) = (system.clone(), stored.clone());
            async move {
                let item = &stored[i as usize % stored.len()];
                let (status, _) = system.read(&item.key_id, &item.access_token).await?;
                if status != StatusCode::OK {
                    bail!("read answered {status}");
                }
                Ok(())
            }
        }
    })
    .await?;
    println!("store (POST /api/keys): {store_rate:.0} req/s");
    println!("read  (GET /api/keys/{{key_id}}): {read_rate:.0} req/s");
    println!(
        "(concurrency {}, {} PKCS#11 sessions per service, {} s per phase)",
        args.concurrency, args.sessions, args.seconds
    );
    Ok(())
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
