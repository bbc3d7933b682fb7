//! No private key byte in the service processes: with the tokens behind `p11-kit server`,
//! a scan of vault's and manager's whole memory finds none of the secret material of the
//! keys they use — while the same scan of `openssl s_server` holding such a key finds it.
//!
//! `MEMSCAN_IN_PROCESS=1 cargo test -p e2e --test memory_scan -- --nocapture` runs the same
//! scan with SoftHSM loaded into the services (ISOLATION=0), to report what it sees there;
//! that mode promises nothing structurally (SoftHSM decrypts keys in the caller's process and
//! merely wipes its buffers afterwards).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::memscan::{pkcs1_integers, scan};
use e2e::{TokenServer, https_client, openssl, read_at, start_manager_isolated, start_vault_isolated};
use reqwest::StatusCode;
use serde_json::json;

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
    e2e::openssl_rsa_key(&pem)?;
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
    let ints = pkcs1_integers(&pkcs1_der)?;
    ensure!(ints.len() == 9, "not an RSAPrivateKey");
    let mut patterns = Vec::new();
    for (label, value) in [("d", &ints[3]), ("p", &ints[4]), ("q", &ints[5])] {
        let mut little = value.clone();
        little.reverse();
        patterns.push((format!("{name}.{label} big-endian"), value.clone()));
        patterns.push((format!("{name}.{label} little-endian"), little));
    }
    patterns.push((format!("{name} PKCS#1 DER"), pkcs1_der));
    patterns.push((format!("{name} PKCS#8 DER"), pkcs8_der));
    Ok(SoftwareKey {
        pem,
        pkcs1,
        secrets: patterns,
    })
}

/// Imports the key into this test's copy of `token` as the newest generation of `label`.
fn import(dir: &Path, token: &str, label: &str, usage: &str, pkcs1: &Path) -> Result<()> {
    let label = format!("{label}.99");
    let pkcs1 = pkcs1.to_string_lossy();
    let args = [
        "import-rsa",
        "--label",
        &label,
        "--id",
        "63",
        "--usage",
        usage,
        "--pkcs1-der",
        &pkcs1,
    ];
    e2e::hsm_admin(dir, token, &args).map(drop)
}

#[tokio::test]
async fn service_memory_holds_no_private_key_material_while_the_scanner_finds_it_in_openssl() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let vault_key = software_key(dir.path(), "vault-key")?;
    let manager_key = software_key(dir.path(), "manager-key")?;
    import(dir.path(), "vault", "vault-wrapping", "decrypt", &vault_key.pkcs1)?;
    import(dir.path(), "manager", "manager-signing", "sign", &manager_key.pkcs1)?;
    let (vault_pem, vault_secrets, manager_secrets) = (&vault_key.pem, &vault_key.secrets, &manager_key.secrets);

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
    let mut control = control.context("openssl s_server did not start")?;
    // Give s_server a moment past its first accept: scan until the key shows, bounded.
    let mut in_control = Vec::new();
    for _ in 0..30 {
        in_control = scan(control.id(), vault_secrets)?;
        if !in_control.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = control.kill();
    let _ = control.wait();
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
    let database = dir.path().join("v.db");
    let vault_args = ["--manager-jwks", jwks.as_str()];
    let manager_args = ["--listen", listen.as_str()];
    let vault = if in_process {
        e2e::start_vault(dir.path(), &database, &vault_args).await?
    } else {
        start_vault_isolated(dir.path(), &database, &vault_tokens, &vault_args).await?
    };
    let manager = if in_process {
        e2e::start_manager(dir.path(), vault.addr("internal"), &manager_args).await?
    } else {
        start_manager_isolated(dir.path(), vault.addr("internal"), &manager_tokens, &manager_args).await?
    };
    let http = https_client(None)?;
    e2e::wait_ready(&http, &format!("https://{}/readyz", vault.addr("public"))).await?;
    for i in 0..20 {
        let response = http
            .post(format!("https://{}/api/keys", manager.addr("api")))
            .json(&json!({"user_id": "uma", "key_data": format!("scanned {i}")}))
            .send()
            .await?;
        ensure!(response.status() == StatusCode::CREATED, "store {}", response.status());
        let stored: contract::wire::StoreKeyResponse = response.json().await?;
        let (status, _) = read_at(
            &http,
            vault.addr("public"),
            &stored.key_id,
            Some(&format!("Bearer {}", stored.access_token)),
        )
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
    let all: Vec<(String, Vec<u8>)> = vault_secrets.iter().chain(manager_secrets.iter()).cloned().collect();
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
