//! TLS boundaries and peer failures: vault's internal listener admits only manager's
//! certificate, and manager hands out no token when vault cannot store.

use std::sync::Arc;

use anyhow::Result;
use contract::error_code::ErrorCode;
use e2e::tokens::dev_tls_key;
use e2e::{Launch, System, error_code, https_client};
use reqwest::StatusCode;
use serde_json::json;

async fn manager_client_key() -> Result<Arc<dyn rustls::sign::SigningKey>> {
    Ok(Arc::new(dev_tls_key("manager", "manager-client-tls").await?))
}

fn envelope_request() -> serde_json::Value {
    json!({"user_id": "alice", "envelope": "a.b.c.d.e", "expires_at": 4_000_000_000u64})
}

#[tokio::test]
async fn the_internal_listener_refuses_clients_without_managers_certificate() -> Result<()> {
    let system = System::start().await?;
    let url = format!("https://{}/internal/keys/abc", system.vault.addr("internal"));
    let tls = e2e::dev_dir()?.join("tls");

    let anonymous = https_client(None)?;
    let refused = anonymous.put(&url).json(&envelope_request()).send().await;
    assert!(
        refused.is_err(),
        "no client certificate must fail the handshake: {refused:?}"
    );

    // A certificate from the same CA, but vault's server certificate: wrong name and EKU.
    let vault_key = dev_tls_key("vault", "vault-tls").await?;
    let impostor = https_client(Some((&tls.join("vault-server.pem"), Arc::new(vault_key))))?;
    let refused = impostor.put(&url).json(&envelope_request()).send().await;
    assert!(
        refused.is_err(),
        "a non-manager certificate must fail the handshake: {refused:?}"
    );

    // manager's own certificate gets through (and the bogus envelope is refused in JSON).
    let manager = https_client(Some((&tls.join("manager-client.pem"), manager_client_key().await?)))?;
    let (status, body) = e2e::answer(manager.put(&url).json(&envelope_request()).send().await?).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body)?, ErrorCode::InvalidEnvelope);
    Ok(())
}

#[tokio::test]
async fn vault_stores_no_new_secret_in_a_version_1_envelope() -> Result<()> {
    let system = System::start().await?;
    let jwk: contract::jwk::Jwk = serde_json::from_str(&std::fs::read_to_string(
        e2e::dev_dir()?.join("keys/vault-wrapping.jwk.json"),
    )?)?;
    let envelope = contract::envelope::seal_version_1(
        &contract::envelope::Recipient::from_jwk(&jwk)?,
        contract::envelope::KeyWrap::RsaOaep,
        contract::envelope::Binding {
            key_id: "v1",
            user_id: "alice",
        },
        b"vault alone could open this",
    )?;
    let tls = e2e::dev_dir()?.join("tls");
    let manager = https_client(Some((&tls.join("manager-client.pem"), manager_client_key().await?)))?;
    let url = format!("https://{}/internal/keys/v1", system.vault.addr("internal"));
    let request = json!({"user_id": "alice", "envelope": envelope, "expires_at": 4_000_000_000u64});
    let (status, body) = e2e::answer(manager.put(&url).json(&request).send().await?).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body)?, ErrorCode::InvalidEnvelope);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("version-1")),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn the_public_listener_does_not_offer_the_internal_api() -> Result<()> {
    let system = System::start().await?;
    let tls = e2e::dev_dir()?.join("tls");
    let manager = https_client(Some((&tls.join("manager-client.pem"), manager_client_key().await?)))?;
    let url = system.vault_url("/internal/keys/abc");
    let (status, _) = e2e::answer(manager.put(&url).json(&envelope_request()).send().await?).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn manager_answers_503_and_no_token_when_vault_is_unreachable() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // A port that was free a moment ago and has no listener now.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let manager = Launch::manager(dir.path(), closed)
        .args(&["--vault-timeout-ms", "2000"])
        .start()
        .await?;
    let http = https_client(None)?;
    let response = http
        .post(format!("https://{}/api/keys", manager.addr("api")))
        .json(&json!({"user_id": "alice", "key_data": "never stored"}))
        .send()
        .await?;
    let (status, body) = e2e::answer(response).await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body)?, ErrorCode::VaultUnavailable);
    assert!(body.get("access_token").is_none() && body.get("key_id").is_none());
    let ready = http
        .get(format!("https://{}/readyz", manager.addr("api")))
        .send()
        .await?;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    Ok(())
}

#[tokio::test]
async fn manager_stops_handing_out_tokens_when_vault_dies_mid_flight() -> Result<()> {
    let mut system = System::start().await?;
    system.store("alice", "before").await?;
    system.vault.kill().await?;
    let (status, body) = system
        .post_keys(&json!({"user_id": "alice", "key_data": "after"}))
        .await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.get("access_token").is_none());
    Ok(())
}

#[tokio::test]
async fn manager_refuses_a_vault_whose_certificate_is_not_for_vaults_internal_name() -> Result<()> {
    // Another listener with a certificate from the same CA, valid for the same address:
    // a second manager's API (localhost, 127.0.0.1 — no vault.internal).
    let system = System::start().await?;
    let impostor = Launch::manager(system.dir.path(), system.vault.addr("internal"))
        .start()
        .await?;
    let manager = Launch::manager(system.dir.path(), impostor.addr("api")).start().await?;
    let client = e2e::Client::new(manager.addr("api"))?;
    let (status, body) = client
        .post_keys(&json!({"user_id": "alice", "key_data": "not for an impostor"}))
        .await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body)?, ErrorCode::VaultUnavailable);
    assert!(
        manager.log_text().contains("not valid for name \"vault.internal\""),
        "the handshake failed on the name: {}",
        manager.log_text()
    );
    // The real vault, at its internal address, is accepted.
    let (status, body) = system
        .post_keys(&json!({"user_id": "alice", "key_data": "for vault"}))
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    Ok(())
}
