//! The OpenAPI documents the services serve (`GET /openapi.json`) are the checked-in ones,
//! and the real services conform to them under schemathesis 4 (installed into a private
//! venv by `softhsm-setup/schemathesis.sh`): no 500, every status, header and body as
//! documented, every error in the JSON error body.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use e2e::tokens::dev_tls_key;
use e2e::{System, https_client};
use reqwest::StatusCode;

/// Test cases per operation and phase: enough to cover every documented status, small
/// enough that both runs together take well under a minute (~5 s here; 200 took 7 s and
/// found nothing more). The seed is fixed so that a failure reproduces.
const MAX_EXAMPLES: &str = "50";

fn committed(file: &str) -> Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contract/openapi")
        .join(file);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// Without a token; the internal listener with manager's client certificate, as for
/// everything there.
#[tokio::test]
async fn each_listener_serves_its_checked_in_document_without_a_token() -> Result<()> {
    let system = System::start().await?;
    let key: Arc<dyn rustls::sign::SigningKey> = Arc::new(dev_tls_key("manager", "manager-client-tls").await?);
    let manager = https_client(Some((&e2e::dev_dir()?.join("tls/manager-client.pem"), key)))?;
    let internal = format!("https://{}/openapi.json", system.vault.addr("internal"));
    for (client, url, file) in [
        (system.http(), system.manager_url("/openapi.json"), "manager.json"),
        (system.http(), system.vault_url("/openapi.json"), "vault-public.json"),
        (&manager, internal, "vault-internal.json"),
    ] {
        let response = client.get(&url).send().await?;
        ensure!(response.status() == StatusCode::OK, "{url}: {}", response.status());
        let served = response.text().await?;
        ensure!(served == committed(file)?, "{url} differs from contract/openapi/{file}");
    }
    Ok(())
}

/// Runs schemathesis (every phase, every check but `positive_data_acceptance`: the
/// documents state the default limits, which a configuration may narrow) against manager's
/// and vault's public documents, with the access token of a stored secret.
#[tokio::test]
async fn schemathesis_finds_no_failure_in_manager_and_vault_public() -> Result<()> {
    let install = tokio::process::Command::new(e2e::dev::script("schemathesis.sh"))
        .output()
        .await
        .context("running softhsm-setup/schemathesis.sh")?;
    ensure!(
        install.status.success(),
        "schemathesis.sh: {}",
        String::from_utf8_lossy(&install.stderr)
    );
    let schemathesis = String::from_utf8(install.stdout)?.trim().to_owned();

    let system = System::start().await?;
    let stored = system.store("fuzz", "schemathesis was here").await?;
    let ca = e2e::dev_dir()?.join("tls/ca.pem");
    let reports = tempfile::tempdir()?;
    // Revocation last, alone: revoking the token first would leave the other operations
    // nothing to see but `revoked_token`.
    let vault = system.vault_url("/openapi.json");
    for (name, url, operations) in [
        ("manager", system.manager_url("/openapi.json"), None),
        ("vault-public", vault.clone(), Some("--exclude-operation-id")),
        ("vault-revoke", vault, Some("--include-operation-id")),
    ] {
        let mut command = tokio::process::Command::new(&schemathesis);
        command
            .kill_on_drop(true)
            .arg("run")
            .arg(&url)
            .arg("--tls-verify")
            .arg(&ca)
            .args(["-H", &format!("Authorization: Bearer {}", stored.access_token)])
            .args(["--checks", "all", "--exclude-checks", "positive_data_acceptance"])
            .args(operations.map(|filter| [filter, "revoke_token"]).into_iter().flatten())
            .args([
                "--max-examples",
                MAX_EXAMPLES,
                "--seed",
                "1",
                "--no-color",
                "--request-timeout",
                "30",
            ])
            .arg("--report-dir")
            .arg(reports.path().join(name))
            // Its caches (.hypothesis, .schemathesis) go there too, not into tests/.
            .current_dir(reports.path());
        let run = command.output();
        // A bound on a hang (a run takes seconds here), not a speed requirement.
        let output = tokio::time::timeout(std::time::Duration::from_secs(600), run)
            .await
            .map_err(|_| anyhow::anyhow!("schemathesis against {name} did not finish within 10 minutes"))??;
        let stdout = String::from_utf8_lossy(&output.stdout);
        println!("schemathesis against {name}:\n{stdout}");
        ensure!(
            output.status.success(),
            "schemathesis found failures in {name}:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
