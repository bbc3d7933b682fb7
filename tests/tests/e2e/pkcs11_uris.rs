//! PKCS#11 URIs (RFC 7512) name the real services' tokens and keys: a token URI brings its
//! module and PIN file, key URIs their objects, and a PIN written into a URI is refused.

use anyhow::{Result, anyhow};
use e2e::dev::SOFTHSM;
use e2e::{Launch, System};
use reqwest::StatusCode;

/// `service`'s token as an operator writes it: a URI that also gives the module and the
/// `.dev/` PIN file, the PIN file as a path or, with `file_scheme`, as a `file:` URI.
fn token_uri(service: &str, file_scheme: bool) -> Result<String> {
    let pin_file = e2e::dev_dir()?.join(format!("pins/{service}.pin"));
    let scheme = if file_scheme { "file:" } else { "" };
    Ok(format!(
        "pkcs11:token={service}?module-path={SOFTHSM}&pin-source={scheme}{}",
        pin_file.display()
    ))
}

#[tokio::test]
async fn services_whose_token_and_keys_are_named_by_uris_store_and_read_a_secret() -> Result<()> {
    let vault_token = token_uri("vault", false)?;
    let manager_token = token_uri("manager", true)?;
    let system = System::start_with(
        &[
            "--token-label",
            &vault_token,
            "--wrapping-key-label",
            "pkcs11:object=vault-wrapping;type=private",
            "--audit-key-label",
            "pkcs11:token=vault;object=vault-audit",
            "--tls-key-label",
            "pkcs11:object=vault-tls;type=private",
            "--internal-tls-key-label",
            "pkcs11:token=vault;object=vault-internal-tls;type=private",
        ],
        &[
            "--token-label",
            &manager_token,
            "--signing-key-label",
            "pkcs11:object=manager-signing;type=private",
            "--tls-key-label",
            "pkcs11:object=manager-tls",
            "--client-key-label",
            "pkcs11:token=manager;object=manager-client-tls",
        ],
    )
    .await?;
    let stored = system.store("alice", "named by URIs").await?;
    let (status, body) = system.read(&stored.key_id, &stored.access_token).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decrypted_key"], "named by URIs");
    let log = system.vault.log_text();
    let ready = log
        .lines()
        .find(|line| line.contains("vault ready"))
        .ok_or_else(|| anyhow!("no ready line in {log}"))?;
    assert!(
        ready.contains("token=vault "),
        "the token is known by its label: {ready}"
    );
    Ok(())
}

#[tokio::test]
async fn a_pin_value_in_the_token_uri_stops_start_up_naming_pin_value_without_printing_the_pin() -> Result<()> {
    const PIN: &str = "7c1d-canary-2e9f";
    for name in ["vault", "manager"] {
        let uri = format!("pkcs11:token={name}?pin-value={PIN}");
        let stderr = Launch::failure_of(name, &["--token-label", &uri]).await?;
        assert!(
            stderr.contains("token_label") && stderr.contains("pin-value is refused"),
            "{name}: {stderr}"
        );
        assert!(
            !stderr.contains(PIN) && !stderr.contains("canary"),
            "{name} printed the PIN: {stderr}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_token_uri_whose_module_contradicts_the_configured_module_stops_start_up_naming_both() -> Result<()> {
    // The development configuration sets pkcs11_module explicitly, to SoftHSM.
    let uri = "pkcs11:token=vault?module-path=/opt/other/libpkcs11.so";
    let stderr = Launch::failure_of("vault", &["--token-label", uri]).await?;
    assert!(
        stderr.contains("module-path /opt/other/libpkcs11.so") && stderr.contains(&format!("pkcs11_module {SOFTHSM}")),
        "{stderr}"
    );
    Ok(())
}
