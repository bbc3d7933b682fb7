//! Traffic from the network with no credential at all: returning clients that resume TLS,
//! connections that send nothing, half a request or go idle, more connections than a
//! listener or an address may hold, and all of it at once while a legitimate client stores
//! and reads. Time bounds here are where a test gives up waiting for the server to hang up
//! (far above the server's own timeouts), never a speed threshold.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::System;
use e2e::attack::{
    Attack, closed_within, exchange, loopback, metric, open_descriptors, raw_tls_config, read_response, tcp_from,
    tls_from,
};
use reqwest::StatusCode;
use rustls::HandshakeKind;
use sqlx::{Connection, Row};
use tokio::io::AsyncWriteExt;

/// Where a test stops waiting for a connection the server should have closed.
const GIVE_UP: Duration = Duration::from_secs(30);

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
const HEALTH_THEN_CLOSE: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

async fn vault_metrics(system: &System) -> Result<String> {
    system.text(&system.vault_url("/metrics")).await
}

async fn audit_records(system: &System) -> Result<i64> {
    let mut db = sqlx::SqliteConnection::connect(&system.database_url()).await?;
    let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit")
        .fetch_one(&mut db)
        .await?
        .get("n");
    db.close().await?;
    Ok(count)
}

#[tokio::test]
async fn a_returning_client_resumes_its_tls_session_without_a_token_signature() -> Result<()> {
    let system = System::start().await?;
    let config = raw_tls_config(true)?;
    let signed = r#"tls_handshake_signatures_total{key="vault-tls",outcome="signed"}"#;

    let mut first = tls_from(loopback(1), system.vault_addr(), config.clone(), "localhost").await?;
    assert_eq!(first.get_ref().1.handshake_kind(), Some(HandshakeKind::Full));
    // Reading to the end takes in the tickets the server sends after the handshake.
    let answer = exchange(&mut first, HEALTH_THEN_CLOSE, GIVE_UP).await?;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    let before = metric(&vault_metrics(&system).await?, signed);
    let mut again = tls_from(loopback(1), system.vault_addr(), config, "localhost").await?;
    assert_eq!(
        again.get_ref().1.handshake_kind(),
        Some(HandshakeKind::Resumed),
        "the server must accept the ticket"
    );
    let answer = exchange(&mut again, HEALTH_THEN_CLOSE, GIVE_UP).await?;
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    let after = metric(&vault_metrics(&system).await?, signed);
    assert!(before >= 1.0, "full handshakes are counted");
    assert_eq!(after, before, "a resumed handshake asks the token for no signature");
    Ok(())
}

#[tokio::test]
async fn silent_half_sent_and_idle_connections_are_closed_on_every_listener() -> Result<()> {
    let bounds = [
        "--handshake-timeout-ms",
        "300",
        "--first-request-timeout-ms",
        "300",
        "--header-read-timeout-ms",
        "300",
        "--idle-timeout-seconds",
        "1",
    ];
    let system = System::start_with(&bounds, &bounds).await?;
    let config = raw_tls_config(false)?;
    let listeners = [
        ("vault public", system.vault_addr()),
        ("vault internal", system.vault.addr("internal")),
        ("manager", system.manager.addr("api")),
    ];
    for (listener, addr) in listeners {
        // A TCP connection that never starts TLS.
        let mut silent = tcp_from(loopback(2), addr).await?;
        assert!(closed_within(&mut silent, GIVE_UP).await, "{listener}: silent TCP");
    }
    for (listener, addr) in [listeners[0], listeners[2]] {
        // TLS, then nothing.
        let mut quiet = tls_from(loopback(3), addr, config.clone(), "localhost").await?;
        assert!(closed_within(&mut quiet, GIVE_UP).await, "{listener}: no request");
        // Half a request header, never finished.
        let mut half = tls_from(loopback(4), addr, config.clone(), "localhost").await?;
        half.write_all(b"GET /healthz HTTP/1.1\r\nHost: local").await?;
        assert!(closed_within(&mut half, GIVE_UP).await, "{listener}: half a header");
        // A whole request, then idle on the kept-alive connection.
        let mut idle = tls_from(loopback(5), addr, config.clone(), "localhost").await?;
        idle.write_all(HEALTH).await?;
        let head = read_response(&mut idle).await?;
        assert!(head.starts_with("HTTP/1.1 200"), "{listener}: {head}");
        assert!(
            closed_within(&mut idle, GIVE_UP).await,
            "{listener}: idle after a request"
        );
    }
    Ok(())
}

#[tokio::test]
async fn connections_over_the_limits_are_closed_when_accepted_and_spare_the_other_listener() -> Result<()> {
    let limits = ["--max-connections", "12", "--max-connections-per-address", "4"];
    let system = System::start_with(&limits, &[]).await?;
    let config = raw_tls_config(false)?;
    let public = system.vault_addr();

    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tls_from(loopback(10), public, config.clone(), "localhost").await?);
    }
    let fifth = tls_from(loopback(10), public, config.clone(), "localhost").await;
    assert!(fifth.is_err(), "a fifth connection from one address is closed");
    // Other addresses fill the listener; whoever comes last is turned away.
    let mut refused = 0;
    for last in 11..=14 {
        for _ in 0..4 {
            match tls_from(loopback(last), public, config.clone(), "localhost").await {
                Ok(stream) => held.push(stream),
                Err(_) => refused += 1,
            }
        }
    }
    ensure!(held.len() <= 12, "{} connections held past the cap of 12", held.len());
    ensure!(
        refused >= 4,
        "a full listener turns connections away ({refused} refused)"
    );

    // The internal listener has its own cap: manager still stores through it.
    let stored = system.store("ivy", "stored while the public port is full").await?;
    // Once the held connections close the listener has room again; the server notices each
    // close on its own schedule, so the first attempts may still find it full.
    drop(held);
    let mut read = None;
    for _ in 0..100 {
        match system.read(&stored.key_id, &stored.access_token).await {
            Ok(answer) => {
                read = Some(answer);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let (status, body) = read.context("the public listener never had room again")?;
    assert_eq!(status, StatusCode::OK, "{body}");

    let metrics = vault_metrics(&system).await?;
    assert!(
        metric(
            &metrics,
            r#"connections_refused_total{listener="public",reason="address_full"}"#
        ) >= 1.0
    );
    assert!(
        metric(
            &metrics,
            r#"connections_refused_total{listener="public",reason="listener_full"}"#
        ) >= 1.0
    );
    assert_eq!(
        metric(
            &metrics,
            r#"connections_refused_total{listener="internal",reason="listener_full"}"#
        ),
        0.0
    );
    Ok(())
}

#[tokio::test]
async fn legitimate_clients_are_served_through_floods_of_idle_connections_handshakes_and_refusals() -> Result<()> {
    // A cap well under what the attack opens, so that without it the descriptors counted
    // below would pass the bound.
    let cap: usize = 64;
    let limits = [
        "--max-connections",
        "64",
        "--first-request-timeout-ms",
        "2000",
        "--handshake-timeout-ms",
        "2000",
    ];
    let system = System::start_with(&limits, &limits).await?;
    let vault_pid = system.vault.pid().expect("vault runs");
    // The legitimate client connects before the attack and keeps its connections.
    let warm_up = system.store("lee", "before the attack").await?;
    let (status, _) = system.read(&warm_up.key_id, &warm_up.access_token).await?;
    assert_eq!(status, StatusCode::OK);
    let records_before = audit_records(&system).await?;

    let (attack, refusals) = Attack::everything(
        system.vault_addr(),
        system.vault.addr("internal"),
        system.manager.addr("api"),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut most_descriptors = 0;
    let rounds: i64 = 20;
    for round in 0..rounds {
        let secret = format!("legitimate secret {round}");
        let stored = system.store("lee", &secret).await?;
        let (status, body) = system.read(&stored.key_id, &stored.access_token).await?;
        assert_eq!(status, StatusCode::OK, "round {round}: {body}");
        assert_eq!(body["decrypted_key"], secret.as_str());
        most_descriptors = most_descriptors.max(open_descriptors(vault_pid)?);
    }
    let metrics = vault_metrics(&system).await?;
    let attempts = attack.stop().await;
    eprintln!(
        "attack: {attempts} connections, handshakes and requests; {} refusals answered; vault held at most \
         {most_descriptors} descriptors; refused when accepted: {}",
        refusals.load(Ordering::Relaxed),
        metrics
            .lines()
            .filter(|l| l.starts_with("connections_refused_total{") || l.starts_with("tls_handshake_signatures_total{"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // Every legitimate request succeeded (above). The attack was real...
    assert!(refusals.load(Ordering::Relaxed) > 0, "the refusal flood was answered");
    assert!(attempts > 0);
    // ...left no durable trace beyond the legitimate stores and reads...
    assert_eq!(audit_records(&system).await? - records_before, 2 * rounds);
    // ...and never held more descriptors than its two listeners' caps allow.
    let bound = 2 * cap + 256;
    assert!(most_descriptors < bound, "vault held {most_descriptors} descriptors");
    for listener in ["public", "internal"] {
        let open = metric(&metrics, &format!("connections_open{{listener=\"{listener}\"}}"));
        assert!(open <= 64.0, "{listener}: {open} open past the cap of {cap}");
    }
    Ok(())
}
