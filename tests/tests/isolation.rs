//! Isolation mode: each token served by its own `p11-kit server` process, the services
//! loading `p11-kit-client.so` — the way a network HSM looks to them.

use std::time::Duration;

use anyhow::Result;
use e2e::{TokenServer, error_code, https_client, read_at, start_manager_isolated, start_vault_isolated};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn store_and_read_work_with_both_tokens_behind_p11_kit_servers_and_ps256() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let vault_tokens = TokenServer::start(dir.path(), "vault").await?;
    let manager_tokens = TokenServer::start(dir.path(), "manager").await?;
    // PS256 goes through CKM_RSA_PKCS_PSS over a software digest, which p11-kit 0.24 forwards.
    let vault = start_vault_isolated(
        dir.path(),
        &dir.path().join("v.db"),
        &vault_tokens,
        &["--token-algorithms", "PS256"],
    )
    .await?;
    let manager = start_manager_isolated(
        dir.path(),
        vault.addr("internal"),
        &manager_tokens,
        &["--signing-algorithm", "PS256"],
    )
    .await?;
    let http = https_client(None)?;
    let response = http
        .post(format!("https://{}/api/keys", manager.addr("api")))
        .json(&json!({"user_id": "sam", "key_data": "behind p11-kit"}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::CREATED);
    let stored: contract::wire::StoreKeyResponse = response.json().await?;
    assert_eq!(e2e::compact_part(&stored.access_token, 0)?["alg"], "PS256");
    let (status, body) = read_at(
        &http,
        vault.addr("public"),
        &stored.key_id,
        Some(&format!("Bearer {}", stored.access_token)),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decrypted_key"], "behind p11-kit");
    Ok(())
}

#[tokio::test]
async fn a_token_server_outage_gives_503s_then_vault_recovers_without_a_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut vault_tokens = TokenServer::start(dir.path(), "vault").await?;
    let vault = start_vault_isolated(dir.path(), &dir.path().join("v.db"), &vault_tokens, &[]).await?;
    let manager = e2e::start_manager(dir.path(), vault.addr("internal"), &[]).await?;
    let http = https_client(None)?;
    let response = http
        .post(format!("https://{}/api/keys", manager.addr("api")))
        .json(&json!({"user_id": "tia", "key_data": "survives an outage"}))
        .send()
        .await?;
    let stored: contract::wire::StoreKeyResponse = response.json().await?;
    let bearer = format!("Bearer {}", stored.access_token);
    let read = || read_at(&http, vault.addr("public"), &stored.key_id, Some(&bearer));
    assert_eq!(read().await?.0, StatusCode::OK);

    vault_tokens.kill()?;
    for _ in 0..5 {
        let (status, body) = read().await?;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(error_code(&body)?, "hsm_unavailable");
    }
    let ready = http
        .get(format!("https://{}/readyz", vault.addr("public")))
        .send()
        .await?;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    // A new connection needs a handshake signature from the token: it fails, promptly.
    let healthz = format!("https://{}/healthz", vault.addr("public"));
    let fresh = https_client(None)?.get(&healthz).send().await;
    assert!(fresh.is_err(), "no TLS key, no handshake: {fresh:?}");

    vault_tokens.restart().await?;
    let mut last = (StatusCode::SERVICE_UNAVAILABLE, serde_json::Value::Null);
    for _ in 0..100 {
        last = read().await?;
        assert_ne!(last.0, StatusCode::INTERNAL_SERVER_ERROR, "{}", last.1);
        if last.0 == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(last.0, StatusCode::OK, "vault must recover by itself: {}", last.1);
    assert_eq!(last.1["decrypted_key"], "survives an outage");
    // New handshakes are signed again, through the restarted server.
    let fresh = https_client(None)?.get(&healthz).send().await?;
    assert_eq!(fresh.status(), StatusCode::OK);
    Ok(())
}

/// Runs vault through `p11-kit-client.so` against `server_address`; it must fail at start-up
/// within seconds. Returns stderr and its last line.
async fn vault_start_up_fails(dir: &std::path::Path, server_address: &str, args: &[&str]) -> Result<(String, String)> {
    let mut command = e2e::service_command("vault", dir)?;
    command
        .env("P11_KIT_SERVER_ADDRESS", server_address)
        .args([
            "--pkcs11-module",
            e2e::P11_KIT_CLIENT,
            "--listen-public",
            "127.0.0.1:0",
            "--listen-internal",
            "127.0.0.1:0",
        ])
        .arg("--database-url")
        .arg(format!("sqlite://{}", dir.join("v.db").display()))
        .args(args)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(30), command.output()).await??;
    assert!(!output.status.success(), "vault {args:?} should have failed");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let last = stderr.lines().last().unwrap_or_default().to_owned();
    Ok((stderr, last))
}

#[tokio::test]
async fn without_a_token_server_start_up_fails_within_seconds_with_a_clear_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let absent = format!("unix:path={}", dir.path().join("absent.sock").display());
    let (stderr, last) = vault_start_up_fails(dir.path(), &absent, &[]).await?;
    assert!(last.starts_with("vault: cannot open token \"vault\""), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn through_a_token_server_a_wrong_label_or_pin_fails_start_up_with_a_clear_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TokenServer::start(dir.path(), "vault").await?;
    let (stderr, last) =
        vault_start_up_fails(dir.path(), &server.address(), &["--token-label", "no-such-token"]).await?;
    assert!(last.contains("no token labelled \"no-such-token\""), "{stderr}");

    let pin_file = dir.path().join("wrong.pin");
    std::fs::write(&pin_file, "definitely-not-the-pin\n")?;
    std::fs::set_permissions(&pin_file, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let pin_arg = pin_file.to_string_lossy().into_owned();
    let (stderr, last) = vault_start_up_fails(dir.path(), &server.address(), &["--pin-file", &pin_arg]).await?;
    assert!(last.contains("refused the PIN"), "{stderr}");
    assert!(!stderr.contains("definitely-not-the-pin"));
    Ok(())
}
