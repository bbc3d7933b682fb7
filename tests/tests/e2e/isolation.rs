//! Isolation mode: each token served by its own `p11-kit server` process, the services
//! loading `p11-kit-client.so` — the way a network HSM looks to them.

use std::time::Duration;

use anyhow::Result;
use contract::error_code::ErrorCode;
use e2e::{Client, Implementation, Launch, TokenServer, error_code, https_client};
use reqwest::StatusCode;

#[tokio::test]
async fn store_and_read_work_with_both_tokens_behind_p11_kit_servers_and_ps256() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let vault_tokens = TokenServer::start(dir.path(), "vault").await?;
    let manager_tokens = TokenServer::start(dir.path(), "manager").await?;
    // PS256 goes through CKM_RSA_PKCS_PSS over a software digest, which p11-kit 0.24 forwards.
    let vault = Launch::vault(dir.path())
        .token_server(&vault_tokens)
        .args(&["--token-algorithms", "PS256"])
        .start()
        .await?;
    let manager = Launch::manager(dir.path(), vault.addr("internal"))
        .token_server(&manager_tokens)
        .args(&["--signing-algorithm", "PS256"])
        .start()
        .await?;
    let client = Client::new(manager.addr("api"))?;
    let stored = client.store("sam", "behind p11-kit").await?;
    assert_eq!(e2e::compact_part(&stored.access_token, 0)?["alg"], "PS256");
    let (status, body) = client
        .read(vault.addr("public"), &stored.key_id, &stored.access_token)
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decrypted_key"], "behind p11-kit");
    Ok(())
}

/// Kryoptic behind p11-kit 0.24.1, which forwards CKM_RSA_PKCS_OAEP with its SHA-256
/// parameters: vault finds it opens RSA-OAEP-256 through the server and manager seals with it.
#[tokio::test]
async fn store_and_read_work_on_kryoptic_behind_p11_kit_servers_with_rsa_oaep_256() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let vault_tokens = TokenServer::start_on(Implementation::Kryoptic, dir.path(), "vault").await?;
    let manager_tokens = TokenServer::start_on(Implementation::Kryoptic, dir.path(), "manager").await?;
    let vault = Launch::vault(dir.path())
        .on(Implementation::Kryoptic)
        .token_server(&vault_tokens)
        .start()
        .await?;
    let manager = Launch::manager(dir.path(), vault.addr("internal"))
        .on(Implementation::Kryoptic)
        .token_server(&manager_tokens)
        .start()
        .await?;
    let client = Client::new(manager.addr("api"))?;
    let stored = client.store("kai", "kryoptic behind p11-kit").await?;
    let (status, body) = client
        .read(vault.addr("public"), &stored.key_id, &stored.access_token)
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decrypted_key"], "kryoptic behind p11-kit");
    assert!(
        vault.log_text().contains("key_wrap=RSA-OAEP-256"),
        "vault publishes RSA-OAEP-256: {}",
        vault.log_text()
    );
    Ok(())
}

#[tokio::test]
async fn a_token_server_outage_gives_503s_then_vault_recovers_without_a_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut vault_tokens = TokenServer::start(dir.path(), "vault").await?;
    let vault = Launch::vault(dir.path()).token_server(&vault_tokens).start().await?;
    let manager = Launch::manager(dir.path(), vault.addr("internal")).start().await?;
    let client = Client::new(manager.addr("api"))?;
    let http = &client.http;
    let stored = client.store("tia", "survives an outage").await?;
    let read = || client.read(vault.addr("public"), &stored.key_id, &stored.access_token);
    assert_eq!(read().await?.0, StatusCode::OK);

    vault_tokens.kill()?;
    for _ in 0..5 {
        let (status, body) = read().await?;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(error_code(&body)?, ErrorCode::HsmUnavailable);
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
    let mut command = Launch::vault(dir).args(args).command()?;
    command
        .env("P11_KIT_SERVER_ADDRESS", server_address)
        .arg("--pkcs11-module")
        .arg(e2e::tokens::p11kit_client()?)
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
