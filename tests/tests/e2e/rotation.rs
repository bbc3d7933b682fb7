//! Signing-key rotation: old tokens keep working until their key is retired, new tokens
//! carry the new kid, and forged kids cannot make vault hammer manager's JWKS.

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use e2e::Implementation;
use e2e::System;
use reqwest::StatusCode;

fn kid_of(token: &str) -> Result<String> {
    Ok(e2e::compact_part(token, 0)?["kid"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

async fn jwks_kids(system: &System) -> Result<Vec<String>> {
    let jwks = system.manager_jwks().await?;
    Ok(jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect())
}

/// How many times manager served its JWKS, from its own /metrics.
async fn jwks_fetches(system: &System) -> Result<u64> {
    let metrics = system.text(&system.manager_url("/metrics")).await?;
    Ok(metrics
        .lines()
        .filter(|l| l.starts_with("http_requests_total{method=\"GET\",route=\"/.well-known/jwks.json\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum())
}

fn admin_ok(system: &System, args: &[&str]) -> Result<String> {
    let output = system.admin("manager-admin", args)?;
    ensure!(
        output.status.success(),
        "manager-admin {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

on_each_token!(signing_key_rotation_keeps_old_tokens_valid_until_the_old_key_is_retired);

async fn signing_key_rotation_keeps_old_tokens_valid_until_the_old_key_is_retired(
    implementation: Implementation,
) -> Result<()> {
    let system = System::start_with_jwks_url_on(
        implementation,
        &["--jwks-refresh-seconds", "1", "--jwks-min-refresh-seconds", "0"],
        &["--key-refresh-seconds", "1"],
    )
    .await?;
    let old = system.store("ivy", "before rotation").await?;
    let old_kid = kid_of(&old.access_token)?;

    admin_ok(&system, &["rotate-signing-key"])?;
    // manager picks the new generation up at its next key refresh.
    let mut new = None;
    for _ in 0..100 {
        let stored = system.store("ivy", "after rotation").await?;
        if kid_of(&stored.access_token)? != old_kid {
            new = Some(stored);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(new) = new else {
        bail!("manager never signed with the new key")
    };
    let new_kid = kid_of(&new.access_token)?;
    let mut kids = jwks_kids(&system).await?;
    kids.sort();
    let mut expected = vec![old_kid.clone(), new_kid.clone()];
    expected.sort();
    assert_eq!(kids, expected, "the JWKS lists old and new");

    assert_eq!(
        system.read(&new.key_id, &new.access_token).await?.0,
        StatusCode::OK,
        "new token"
    );
    assert_eq!(
        system.read(&old.key_id, &old.access_token).await?.0,
        StatusCode::OK,
        "old token still valid"
    );

    let refused = system.admin("manager-admin", &["retire-signing-key", "--kid", &new_kid])?;
    assert!(!refused.status.success(), "the current key cannot be retired");
    admin_ok(&system, &["retire-signing-key", "--kid", &old_kid])?;

    // vault drops the retired key at its next JWKS refresh.
    let mut status = StatusCode::OK;
    for _ in 0..100 {
        status = system.read(&old.key_id, &old.access_token).await?.0;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a token of a retired key is refused");
    assert_eq!(jwks_kids(&system).await?, vec![new_kid]);
    assert_eq!(system.read(&new.key_id, &new.access_token).await?.0, StatusCode::OK);
    Ok(())
}

/// A token whose header names a random kid (its signature never gets checked).
fn token_with_unknown_kid(genuine: &str) -> String {
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": uuid::Uuid::new_v4().to_string()});
    let payload = genuine.split('.').nth(1).unwrap_or_default();
    format!("{}.{payload}.AAAA", URL_SAFE_NO_PAD.encode(header.to_string()))
}

#[tokio::test]
async fn unknown_kids_trigger_jwks_fetches_no_faster_than_the_configured_rate() -> Result<()> {
    // Rate-limited: twenty forged kids within the window cause no fetch at all.
    let limited = System::start_with_jwks_url(&["--jwks-min-refresh-seconds", "3600"], &[]).await?;
    let stored = limited.store("jay", "x").await?;
    let before = jwks_fetches(&limited).await?;
    for _ in 0..20 {
        let (status, _) = limited
            .read(&stored.key_id, &token_with_unknown_kid(&stored.access_token))
            .await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(jwks_fetches(&limited).await?, before, "no fetch inside the rate window");
    assert_eq!(
        limited.read(&stored.key_id, &stored.access_token).await?.0,
        StatusCode::OK
    );

    // Not limited: each unknown kid makes vault look again (how a fresh rotation is found).
    let eager = System::start_with_jwks_url(&["--jwks-min-refresh-seconds", "0"], &[]).await?;
    let stored = eager.store("jay", "x").await?;
    let before = jwks_fetches(&eager).await?;
    for _ in 0..3 {
        eager
            .read(&stored.key_id, &token_with_unknown_kid(&stored.access_token))
            .await?;
    }
    assert_eq!(jwks_fetches(&eager).await?, before + 3);
    Ok(())
}

#[tokio::test]
async fn a_manager_with_pinned_kids_signs_with_no_key_made_after_them_until_it_is_pinned() -> Result<()> {
    // The kid of the signing key provisioned in `.dev/` (which the test's token copy holds).
    let exported: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        e2e::dev_dir()?.join("keys/manager-signing.jwk.json"),
    )?)?;
    let pinned = exported["kid"].as_str().unwrap_or_default().to_owned();
    let system = System::start_with(&[], &["--key-refresh-seconds", "1", "--signing-kids", &pinned]).await?;

    // Someone with the PIN (and the admin tool) makes a new generation in the token.
    let rotated = admin_ok(&system, &["rotate-signing-key"])?;
    let new_kid = rotated
        .split_whitespace()
        .skip_while(|word| *word != "kid")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    ensure!(!new_kid.is_empty() && new_kid != pinned, "rotate printed {rotated}");

    // manager's refresh sees it and says it is not used...
    let mut seen = false;
    for _ in 0..200 {
        let log = system.manager.log_text();
        if log.contains("whose kid is not pinned") && log.contains(&new_kid) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(
        seen,
        "manager never reported the unpinned generation:\n{}",
        system.manager.log_text()
    );
    // ...and keeps signing with, and publishing, only the pinned key.
    let stored = system.store("pia", "still pinned").await?;
    assert_eq!(kid_of(&stored.access_token)?, pinned);
    assert_eq!(jwks_kids(&system).await?, [pinned]);
    let (status, body) = system.read(&stored.key_id, &stored.access_token).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    Ok(())
}
