//! Per-client rate limits: past its burst a client gets 429 with the JSON error body and
//! `Retry-After`, on manager's and vault's APIs alike, while health checks and the JWKS
//! stay reachable; after the wait it is served again.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use contract::error_code::ErrorCode;
use e2e::{Launch, error_code, https_client};
use reqwest::{Response, StatusCode};
use serde_json::json;

/// One request a second, bursts of three: thirty requests in a row must run into the limit
/// unless each took longer than a second.
const LIMIT: [&str; 4] = ["--rate-limit-per-second", "1", "--rate-limit-burst", "3"];
const ATTEMPTS: usize = 30;

/// Checks a 429 answer and returns its Retry-After.
async fn limited(response: Response) -> Result<Duration> {
    ensure!(response.status() == StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .context("429 without Retry-After")?
        .to_str()?
        .parse()?;
    ensure!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    let body: serde_json::Value = response.json().await?;
    ensure!(error_code(&body)? == ErrorCode::RateLimited, "{body}");
    Ok(Duration::from_secs(retry_after))
}

/// Sends requests until one is limited: returns the answers before it (each must be `ok`)
/// and the limited one's Retry-After.
async fn until_limited<F: Future<Output = reqwest::Result<Response>>>(
    ok: StatusCode,
    send: impl Fn() -> F,
) -> Result<(Vec<Response>, Duration)> {
    let mut served = Vec::new();
    for _ in 0..ATTEMPTS {
        let response = send().await?;
        match response.status() {
            status if status == ok => served.push(response),
            StatusCode::TOO_MANY_REQUESTS => return Ok((served, limited(response).await?)),
            other => bail!("answered {other} before any 429"),
        }
    }
    bail!("never limited in {ATTEMPTS} requests")
}

#[tokio::test]
async fn past_its_burst_a_client_gets_429_with_retry_after_and_health_stays_reachable() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let vault = Launch::vault(dir.path()).args(&LIMIT).start().await?;
    let manager = Launch::manager(dir.path(), vault.addr("internal"))
        .args(&LIMIT)
        .start()
        .await?;
    let http = https_client(None)?;
    let store = || {
        http.post(format!("https://{}/api/keys", manager.addr("api")))
            .json(&json!({"user_id": "rae", "key_data": "throttled"}))
            .send()
    };

    // manager: the first stores succeed, then 429 (vault's internal listener is not limited).
    let (mut created, wait) = until_limited(StatusCode::CREATED, store).await?;
    ensure!(created.len() >= 3, "the burst is served first ({})", created.len());
    let stored: contract::wire::StoreKeyResponse = created.pop().context("a store")?.json().await?;
    for path in ["/healthz", "/readyz", "/.well-known/jwks.json"] {
        let status = http
            .get(format!("https://{}{path}", manager.addr("api")))
            .send()
            .await?
            .status();
        ensure!(status == StatusCode::OK, "{path} while limited: {status}");
    }
    tokio::time::sleep(wait).await;
    ensure!(
        store().await?.status() == StatusCode::CREATED,
        "served again after Retry-After"
    );

    // vault: the same for reads of one secret, with its own buckets.
    let bearer = format!("Bearer {}", stored.access_token);
    let read = || {
        http.get(format!("https://{}/api/keys/{}", vault.addr("public"), stored.key_id))
            .header("authorization", &bearer)
            .send()
    };
    let (reads, wait) = until_limited(StatusCode::OK, read).await?;
    ensure!(reads.len() >= 3, "the burst is served first ({})", reads.len());
    for path in ["/healthz", "/readyz"] {
        let status = http
            .get(format!("https://{}{path}", vault.addr("public")))
            .send()
            .await?
            .status();
        ensure!(status == StatusCode::OK, "{path} while limited: {status}");
    }
    tokio::time::sleep(wait).await;
    let response = read().await?;
    ensure!(
        response.status() == StatusCode::OK,
        "read after Retry-After: {}",
        response.status()
    );
    let body: serde_json::Value = response.json().await?;
    ensure!(body["decrypted_key"] == "throttled");
    Ok(())
}
