//! What an operator sees of the services: latency histograms on `/metrics`, for requests
//! and token calls, and log lines as JSON objects (`log_format = "json"`).

use anyhow::{Context, Result, ensure};
use e2e::System;
use reqwest::StatusCode;

/// The value of the series `series` (name and exact label text) in `metrics`.
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Checks the histogram `name{labels}` in `metrics`: every bucket from 1 ms to 10 s and
/// `+Inf`, `le` ascending, counts cumulative (never falling), `+Inf` equal to `_count`, a
/// `_sum`; returns `_count`.
fn histogram_count(metrics: &str, name: &str, labels: &str) -> Result<f64> {
    let prefix = format!("{name}_bucket{{{labels},le=\"");
    let buckets: Vec<(&str, f64)> = metrics
        .lines()
        .filter_map(|line| {
            let (le, count) = line.strip_prefix(&prefix)?.split_once("\"} ")?;
            Some((le, count.parse().ok()?))
        })
        .collect();
    ensure!(
        buckets.len() == 14,
        "{name}{{{labels}}}: buckets {buckets:?}\n{metrics}"
    );
    ensure!(buckets.first().map(|b| b.0) == Some("0.001"), "{buckets:?}");
    ensure!(buckets.last().map(|b| b.0) == Some("+Inf"), "{buckets:?}");
    for pair in buckets.windows(2) {
        let (lower, upper) = (&pair[0], &pair[1]);
        ensure!(upper.1 >= lower.1, "{name}{{{labels}}} is not cumulative: {buckets:?}");
        if upper.0 != "+Inf" {
            ensure!(upper.0.parse::<f64>()? > lower.0.parse::<f64>()?, "{buckets:?}");
        }
    }
    let count = value(metrics, &format!("{name}_count{{{labels}}}")).context("no _count")?;
    let sum = value(metrics, &format!("{name}_sum{{{labels}}}")).context("no _sum")?;
    ensure!(
        buckets.last().map(|b| b.1) == Some(count),
        "+Inf is not _count: {buckets:?} {count}"
    );
    ensure!(sum >= 0.0, "{name}_sum{{{labels}}} {sum}");
    Ok(count)
}

#[tokio::test]
async fn latency_histograms_count_every_request_and_the_token_calls() -> Result<()> {
    let system = System::start().await?;
    let mut key_ids = Vec::new();
    for n in 0..3 {
        let stored = system.store("heidi", &format!("observed {n}")).await?;
        let (status, body) = system.read(&stored.key_id, &stored.access_token).await?;
        ensure!(status == StatusCode::OK, "{body}");
        key_ids.push(stored.key_id);
    }
    let (status, _) = system.read(&key_ids[0], "bogus").await?;
    ensure!(status == StatusCode::UNAUTHORIZED);

    let vault = system.text(&system.vault_url("/metrics")).await?;
    let read = r#"method="GET",route="/api/keys/{key_id}""#;
    ensure!(vault.contains("# TYPE http_request_duration_seconds histogram\n"));
    let answered = histogram_count(
        &vault,
        "http_request_duration_seconds",
        &format!(r#"{read},status_class="2xx""#),
    )?;
    ensure!(answered == 3.0, "three reads answered 200, counted {answered}");
    let counted = value(&vault, &format!(r#"http_requests_total{{{read},status="200"}}"#));
    ensure!(
        counted == Some(answered),
        "the histogram counts what http_requests_total counts"
    );
    let refused = histogram_count(
        &vault,
        "http_request_duration_seconds",
        &format!(r#"{read},status_class="4xx""#),
    )?;
    ensure!(refused == 1.0, "one read refused, counted {refused}");
    let decrypted = histogram_count(&vault, "token_operation_duration_seconds", r#"operation="decrypt""#)?;
    ensure!(decrypted >= 3.0, "every read decrypts in the token: {decrypted}");
    histogram_count(&vault, "token_pool_wait_seconds", r#"operation="decrypt""#)?;
    for key_id in &key_ids {
        ensure!(!vault.contains(key_id.as_str()), "metrics must not carry key ids");
    }
    // The group committer: every audit record in the database was counted, in commits that
    // each carried at least one write.
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&system.database_url()).await?;
    let in_database: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit")
        .fetch_one(&mut db)
        .await?;
    let counted = value(&vault, "audit_records_total").context("audit_records_total")?;
    ensure!(
        counted == in_database as f64 && counted > 0.0,
        "audit_records_total {counted}, audit table {in_database}"
    );
    let commits = value(&vault, "storage_commits_total").context("storage_commits_total")?;
    let writes = value(&vault, "storage_committed_writes_total").context("storage_committed_writes_total")?;
    ensure!(
        commits >= 1.0 && writes >= commits,
        "{writes} writes in {commits} commits"
    );
    let timed = value(&vault, "storage_commit_duration_seconds_count").context("commit latency")?;
    ensure!(timed == commits, "{timed} commit latencies for {commits} commits");

    let manager = system.text(&system.manager_url("/metrics")).await?;
    let stores = histogram_count(
        &manager,
        "http_request_duration_seconds",
        r#"method="POST",route="/api/keys",status_class="2xx""#,
    )?;
    ensure!(stores == 3.0, "three stores answered 201, counted {stores}");
    // Access tokens and TLS handshakes are both signed in the token.
    let signed = histogram_count(&manager, "token_operation_duration_seconds", r#"operation="sign""#)?;
    ensure!(signed >= 3.0, "every store signs its access token: {signed}");
    histogram_count(&manager, "token_pool_wait_seconds", r#"operation="sign""#)?;
    Ok(())
}

#[tokio::test]
async fn json_log_lines_are_one_object_each_without_secrets() -> Result<()> {
    let json = ["--log-format", "json"];
    let system = System::start_with(&json, &json).await?;
    let secret = format!("json-log-canary-{}", uuid::Uuid::new_v4());
    let stored = system.store("ivan", &secret).await?;
    system.read(&stored.key_id, &stored.access_token).await?;
    system.read(&stored.key_id, "not-a-token").await?;
    // A refusal is logged; the field's name (a line break and an ESC in it) is not.
    let hostile = serde_json::json!({"user_id": "u", "key_data": "x", "a\nFORGED\u{1b}[31m\u{2028}": 1});
    let (status, _) = system.post_keys(&hostile).await?;
    ensure!(status == StatusCode::BAD_REQUEST);

    let signature = stored.access_token.rsplit('.').next().unwrap_or_default();
    let mut forbidden = vec![secret.clone(), signature.to_owned()];
    for pin in ["manager.pin", "vault.pin"] {
        let pin = std::fs::read_to_string(e2e::dev_dir()?.join("pins").join(pin))?;
        forbidden.push(pin.trim().to_owned());
    }
    for (service, log) in [
        ("vault", system.vault.log_text()),
        ("manager", system.manager.log_text()),
    ] {
        ensure!(log.lines().count() > 0, "{service} logged nothing");
        for line in log.lines() {
            let event: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("{service} log line is no JSON: {line:?}"))?;
            ensure!(event.is_object(), "{service}: {line}");
            ensure!(
                event["level"].is_string() && event["timestamp"].is_string(),
                "{service}: {line}"
            );
        }
        ensure!(
            !log.chars().any(|c| (c.is_control() && c != '\n') || c == '\u{2028}'),
            "{service} log carries a raw control character:\n{log}"
        );
        for value in &forbidden {
            ensure!(!log.contains(value.as_str()), "{service} logged a secret, token or PIN");
        }
    }
    let manager = system.manager.log_text();
    ensure!(
        manager.contains(r#""message":"request refused""#),
        "the refusal is logged as a JSON field:\n{manager}"
    );
    Ok(())
}
