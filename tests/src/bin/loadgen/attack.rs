//! `--attack`: what hostile traffic costs a legitimate client. One client stores and reads
//! in turn, first calm, then while `e2e::attack::Attack::everything` runs from other
//! loopback addresses; prints both latencies and their ratio.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use e2e::System;
use reqwest::StatusCode;

/// One client's store-then-read latency, calm and under attack, same services, same run.
pub async fn latency_under_attack(service_args: &[&str], duration: Duration) -> Result<()> {
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
