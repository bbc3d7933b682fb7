//! No private key byte in the service processes: with the tokens behind `p11-kit server`,
//! a scan of vault's and manager's whole memory finds none of the secret material of the
//! keys they use — the wrapping key, the signing key, vault's audit key and every TLS key, all imported from
//! software so the test knows what to look for — while the same scan of `openssl s_server`
//! holding such a key finds it.
//!
//! `MEMSCAN_IN_PROCESS=1 cargo test -p e2e --test memory_scan -- --nocapture` runs the same
//! scan with SoftHSM loaded into the services (ISOLATION=0), to report what it sees there;
//! that mode promises nothing structurally (SoftHSM decrypts keys in the caller's process and
//! merely wipes its buffers afterwards).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::memscan::{rsa_secrets, scan};
use e2e::openssl::{openssl, openssl_rsa_key};
use e2e::{Client, Launch, TokenServer};
use reqwest::StatusCode;

/// A software RSA key: its PEM and PKCS#1 DER files and the byte strings that betray it
/// (d, p, q big- and little-endian, PKCS#1 and PKCS#8 DER).
struct SoftwareKey {
    pem: std::path::PathBuf,
    pkcs1: std::path::PathBuf,
    secrets: Vec<(String, Vec<u8>)>,
}

fn software_key(dir: &Path, name: &str) -> Result<SoftwareKey> {
    let pem = dir.join(format!("{name}.pem"));
    let pkcs1 = dir.join(format!("{name}.pkcs1.der"));
    let pkcs8 = dir.join(format!("{name}.pkcs8.der"));
    let (pem_s, pkcs1_s, pkcs8_s) = (pem.to_string_lossy(), pkcs1.to_string_lossy(), pkcs8.to_string_lossy());
    openssl_rsa_key(&pem)?;
    openssl(&[
        "rsa",
        "-in",
        &pem_s,
        "-traditional",
        "-outform",
        "DER",
        "-out",
        &pkcs1_s,
    ])?;
    // `openssl pkey -outform DER` writes PKCS#1 for RSA keys in OpenSSL 3.0; pkcs8 -topk8 is PKCS#8.
    openssl(&[
        "pkcs8", "-topk8", "-nocrypt", "-in", &pem_s, "-outform", "DER", "-out", &pkcs8_s,
    ])?;
    let pkcs1_der = std::fs::read(&pkcs1)?;
    let pkcs8_der = std::fs::read(&pkcs8)?;
    ensure!(
        pkcs8_der != pkcs1_der && pkcs8_der.len() > pkcs1_der.len(),
        "PKCS#8 wraps PKCS#1"
    );
    let mut patterns = rsa_secrets(name, &pkcs1_der)?;
    patterns.push((format!("{name} PKCS#1 DER"), pkcs1_der));
    patterns.push((format!("{name} PKCS#8 DER"), pkcs8_der));
    Ok(SoftwareKey {
        pem,
        pkcs1,
        secrets: patterns,
    })
}

/// Imports the key into this test's copy of `token` under `label`, sensitive and
/// non-extractable.
fn import(dir: &Path, token: &str, label: &str, id: &str, usage: &str, key: &SoftwareKey) -> Result<()> {
    let pkcs1 = key.pkcs1.to_string_lossy();
    let args = [
        "import-rsa",
        "--label",
        label,
        "--id",
        id,
        "--usage",
        usage,
        "--pkcs1-der",
        &pkcs1,
    ];
    e2e::hsm_admin(dir, token, &args).map(drop)
}

/// Imports `key` as the sign-only TLS key `label` of `token` and has the dev CA (signing in
/// its own token, from the public key alone) certify it for `purpose` and `name`.
/// Returns the certificate's path.
fn import_tls_key(
    dir: &Path,
    (token, label, id): (&str, &str, &str),
    key: &SoftwareKey,
    (purpose, names): (&str, &[&str]),
) -> Result<String> {
    import(dir, token, label, id, "sign", key)?;
    let public_key = dir.join(format!("{label}.pub.pem")).to_string_lossy().into_owned();
    let cert = dir.join(format!("{label}.crt")).to_string_lossy().into_owned();
    openssl(&["rsa", "-in", &key.pem.to_string_lossy(), "-pubout", "-out", &public_key])?;
    let mut args = vec![
        "issue-certificate",
        "--ca-label",
        "dev-ca",
        "--public-key",
        &public_key,
        "--common-name",
        label,
        "--purpose",
        purpose,
        "--out",
        &cert,
    ];
    for name in names {
        args.extend(["--name", name]);
    }
    e2e::hsm_admin(dir, "dev-ca", &args)?;
    Ok(cert)
}

/// The control server, killed however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn service_memory_holds_no_private_key_material_while_the_scanner_finds_it_in_openssl() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // The keys vault unwraps with and manager signs with: the newest generations.
    let vault_key = software_key(dir.path(), "vault-key")?;
    let manager_key = software_key(dir.path(), "manager-key")?;
    import(dir.path(), "vault", "vault-wrapping.99", "63", "decrypt", &vault_key)?;
    import(dir.path(), "manager", "manager-signing.99", "63", "sign", &manager_key)?;
    // The key vault signs audit checkpoints with (one checkpoint per record below).
    let audit_key = software_key(dir.path(), "vault-audit-key")?;
    import(dir.path(), "vault", "scan-vault-audit", "67", "sign", &audit_key)?;
    // The TLS keys: vault's (both listeners), manager's server key and its client key.
    let vault_tls = software_key(dir.path(), "vault-tls-key")?;
    let manager_tls = software_key(dir.path(), "manager-tls-key")?;
    let client_tls = software_key(dir.path(), "manager-client-key")?;
    let vault_cert = import_tls_key(
        dir.path(),
        ("vault", "scan-vault-tls", "64"),
        &vault_tls,
        ("server", &["127.0.0.1", "vault.internal"]),
    )?;
    let manager_cert = import_tls_key(
        dir.path(),
        ("manager", "scan-manager-tls", "65"),
        &manager_tls,
        ("server", &["127.0.0.1"]),
    )?;
    let client_cert = import_tls_key(
        dir.path(),
        ("manager", "scan-manager-client-tls", "66"),
        &client_tls,
        ("client", &["manager.internal"]),
    )?;
    let (vault_pem, vault_secrets) = (&vault_key.pem, &vault_key.secrets);

    // The control: a process known to hold the vault key must show it to the scanner.
    let cert = dir.path().join("control.crt");
    let status = Command::new("openssl")
        .args(["req", "-x509", "-key"])
        .arg(vault_pem)
        .args(["-subj", "/CN=control", "-days", "1", "-out"])
        .arg(&cert)
        .stderr(Stdio::null())
        .status()?;
    ensure!(status.success(), "control certificate");
    let mut control = None;
    for _ in 0..5 {
        let accept = format!("127.0.0.1:{}", e2e::free_port()?);
        let mut child = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &accept, "-key"])
            .arg(vault_pem)
            .arg("-cert")
            .arg(&cert)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        for _ in 0..100 {
            if std::net::TcpStream::connect(&accept).is_ok() || child.try_wait()?.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if child.try_wait()?.is_none() && std::net::TcpStream::connect(&accept).is_ok() {
            control = Some(child);
            break;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let control = KillOnDrop(control.context("openssl s_server did not start")?);
    // Give s_server a moment past its first accept: scan until the key shows, bounded.
    let mut in_control = Vec::new();
    for _ in 0..30 {
        in_control = scan(control.0.id(), vault_secrets)?;
        if !in_control.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(control);
    assert!(
        !in_control.is_empty(),
        "the scanner must find the key in openssl s_server"
    );

    let vault_tokens = TokenServer::start(dir.path(), "vault").await?;
    let manager_tokens = TokenServer::start(dir.path(), "manager").await?;
    let in_process = std::env::var_os("MEMSCAN_IN_PROCESS").is_some();
    // vault follows manager's JWKS URL: manager signs with its newest (imported) key.
    let manager_port = e2e::free_port()?;
    let jwks = format!("https://127.0.0.1:{manager_port}/.well-known/jwks.json");
    let listen = format!("127.0.0.1:{manager_port}");
    // Each service checks at start-up that every certificate carries its key's public half,
    // so a successful handshake below was signed by the imported key.
    let vault_args = [
        "--manager-jwks",
        jwks.as_str(),
        "--tls-cert",
        &vault_cert,
        "--tls-key-label",
        "scan-vault-tls",
        "--internal-tls-cert",
        &vault_cert,
        "--internal-tls-key-label",
        "scan-vault-tls",
        "--audit-key-label",
        "scan-vault-audit",
        "--audit-checkpoint-records",
        "1",
    ];
    let manager_args = [
        "--listen",
        listen.as_str(),
        "--tls-cert",
        &manager_cert,
        "--tls-key-label",
        "scan-manager-tls",
        "--client-cert",
        &client_cert,
        "--client-key-label",
        "scan-manager-client-tls",
    ];
    let mut vault = Launch::vault(dir.path()).args(&vault_args);
    let manager = |vault_internal| Launch::manager(dir.path(), vault_internal).args(&manager_args);
    if !in_process {
        vault = vault.token_server(&vault_tokens);
    }
    let vault = vault.start().await?;
    let manager = if in_process {
        manager(vault.addr("internal"))
    } else {
        manager(vault.addr("internal")).token_server(&manager_tokens)
    }
    .start()
    .await?;
    let http = e2e::https_client(None)?;
    e2e::wait_ready(&http, &format!("https://{}/readyz", vault.addr("public"))).await?;
    for i in 0..20 {
        // A new client each round: new handshakes, each signed by the TLS keys in the tokens.
        let client = Client::new(manager.addr("api"))?;
        let stored = client.store("uma", &format!("scanned {i}")).await?;
        let (status, _) = client
            .read(vault.addr("public"), &stored.key_id, &stored.access_token)
            .await?;
        ensure!(status == StatusCode::OK, "read {status}");
    }
    // The imported keys were the ones in use: vault sealed to its newest generation, manager
    // signed with its newest.
    let jwks: serde_json::Value = http
        .get(format!("https://{}/.well-known/jwks.json", manager.addr("api")))
        .send()
        .await?
        .json()
        .await?;
    ensure!(
        jwks["keys"].as_array().is_some_and(|k| k.len() == 2),
        "manager lists both signing keys"
    );

    let vault_pid = vault.pid().context("vault pid")?;
    let manager_pid = manager.pid().context("manager pid")?;
    ensure!(
        vault.log_text().contains("audit checkpoint seq="),
        "vault signed no audit checkpoint with the imported key"
    );
    let all: Vec<(String, Vec<u8>)> = [
        &vault_key,
        &manager_key,
        &audit_key,
        &vault_tls,
        &manager_tls,
        &client_tls,
    ]
    .iter()
    .flat_map(|key| key.secrets.iter().cloned())
    .collect();
    assert_eq!(
        scan(vault_pid, &all)?,
        Vec::<String>::new(),
        "key material in vault's memory"
    );
    assert_eq!(
        scan(manager_pid, &all)?,
        Vec::<String>::new(),
        "key material in manager's memory"
    );
    let mode = if in_process {
        "SoftHSM in process"
    } else {
        "isolation (p11-kit server)"
    };
    println!("{mode}: control (openssl s_server) showed {in_control:?}; vault and manager showed nothing");
    Ok(())
}
