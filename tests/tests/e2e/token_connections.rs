//! Isolation mode's token connections: p11-kit's server answers each connection one request
//! at a time, so a service behind it holds one connection (one `p11-kit-remote` process)
//! per PKCS#11 session, up to four, unless `pkcs11_connections` says otherwise.

use std::path::Path;

use anyhow::Result;
use e2e::{Client, Launch, TokenServer};
use reqwest::StatusCode;

#[tokio::test]
async fn behind_token_servers_each_service_holds_one_connection_per_session_up_to_four() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let vault_tokens = TokenServer::start(dir.path(), "vault").await?;
    let manager_tokens = TokenServer::start(dir.path(), "manager").await?;
    let vault = Launch::vault(dir.path())
        .token_server(&vault_tokens)
        .args(&["--pkcs11-sessions", "2"])
        .start()
        .await?;
    let manager = Launch::manager(dir.path(), vault.addr("internal"))
        .token_server(&manager_tokens)
        .args(&["--pkcs11-sessions", "6"])
        .start()
        .await?;
    assert_eq!(token_connections(dir.path(), "vault")?, 2);
    assert_eq!(token_connections(dir.path(), "manager")?, 4);

    let client = Client::new(manager.addr("api"))?;
    for n in 0..8 {
        let secret = format!("through one of several connections {n}");
        let stored = client.store(&format!("conn-{n}"), &secret).await?;
        let (status, body) = client
            .read(vault.addr("public"), &stored.key_id, &stored.access_token)
            .await?;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["decrypted_key"], secret.as_str());
    }
    assert_eq!(
        token_connections(dir.path(), "vault")?,
        2,
        "calls reuse the connections"
    );
    assert_eq!(token_connections(dir.path(), "manager")?, 4);
    Ok(())
}

#[tokio::test]
async fn pkcs11_connections_sets_the_count() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let vault_tokens = TokenServer::start(dir.path(), "vault").await?;
    let _vault = Launch::vault(dir.path())
        .token_server(&vault_tokens)
        .args(&["--pkcs11-sessions", "4", "--pkcs11-connections", "1"])
        .start()
        .await?;
    assert_eq!(token_connections(dir.path(), "vault")?, 1);
    Ok(())
}

/// The `p11-kit-remote` processes serving `token` of the test in `dir`: p11-kit starts one
/// per client connection, with the token's URI on its command line and the test's private
/// SoftHSM configuration in its environment.
fn token_connections(dir: &Path, token: &str) -> Result<usize> {
    let conf = format!("SOFTHSM2_CONF={}", e2e::tokens::private_softhsm(dir)?.display());
    let uri = format!("pkcs11:token={token}");
    let mut count = 0;
    for entry in std::fs::read_dir("/proc")? {
        let path = entry?.path();
        if !std::fs::read_link(path.join("exe")).is_ok_and(|exe| exe.ends_with("p11-kit-remote")) {
            continue;
        }
        // The process may have ended since: it does not count.
        let (Ok(cmdline), Ok(environ)) = (std::fs::read(path.join("cmdline")), std::fs::read(path.join("environ")))
        else {
            continue;
        };
        let has = |list: &[u8], wanted: &str| list.split(|b| *b == 0).any(|item| item == wanted.as_bytes());
        if has(&cmdline, &uri) && has(&environ, &conf) {
            count += 1;
        }
    }
    Ok(count)
}
