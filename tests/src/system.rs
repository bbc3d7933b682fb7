//! The whole system as a test sees it: vault and manager together ([`System`]), or several
//! vault replicas on one PostgreSQL database ([`Replicas`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use contract::wire::StoreKeyResponse;
use serde_json::Value;

use crate::client::{Answer, Client};
use crate::dev::{binary, free_port};
use crate::launch::Launch;
use crate::process::Service;
use crate::tokens::Implementation;

/// vault and manager running together on a private token copy and SQLite database.
pub struct System {
    /// Temporary directory with the database, token copy and logs.
    pub dir: tempfile::TempDir,
    /// The vault process.
    pub vault: Service,
    /// The manager process.
    pub manager: Service,
    /// A user of both.
    pub client: Client,
    /// The PKCS#11 implementation holding both services' tokens.
    pub implementation: Implementation,
}

impl System {
    /// Starts vault, then manager pointed at it.
    pub async fn start() -> Result<Self> {
        Self::start_with(&[], &[]).await
    }

    /// Like [`System::start`] with extra arguments for each service.
    pub async fn start_with(vault_args: &[&str], manager_args: &[&str]) -> Result<Self> {
        Self::start_on(Implementation::SoftHsm, vault_args, manager_args).await
    }

    /// Like [`System::start_with`], with both tokens in `implementation`.
    pub async fn start_on(implementation: Implementation, vault_args: &[&str], manager_args: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let vault = Launch::vault(dir.path())
            .on(implementation)
            .args(vault_args)
            .start()
            .await?;
        let manager = Launch::manager(dir.path(), vault.addr("internal"))
            .on(implementation)
            .args(manager_args)
            .start()
            .await?;
        let client = Client::new(manager.addr("api"))?;
        Ok(Self {
            dir,
            vault,
            manager,
            client,
            implementation,
        })
    }

    /// Like [`System::start_with`], but vault learns manager's keys from manager's
    /// `/.well-known/jwks.json` (as needed for key rotation) instead of the exported file;
    /// returns once vault has them.
    pub async fn start_with_jwks_url(vault_args: &[&str], manager_args: &[&str]) -> Result<Self> {
        Self::start_with_jwks_url_on(Implementation::SoftHsm, vault_args, manager_args).await
    }

    /// Like [`System::start_with_jwks_url`], with both tokens in `implementation`.
    pub async fn start_with_jwks_url_on(
        implementation: Implementation,
        vault_args: &[&str],
        manager_args: &[&str],
    ) -> Result<Self> {
        let port = free_port()?;
        let jwks = format!("https://127.0.0.1:{port}/.well-known/jwks.json");
        let listen = format!("127.0.0.1:{port}");
        let vault_args: Vec<&str> = ["--manager-jwks", jwks.as_str()]
            .into_iter()
            .chain(vault_args.iter().copied())
            .collect();
        let manager_args: Vec<&str> = ["--listen", listen.as_str()]
            .into_iter()
            .chain(manager_args.iter().copied())
            .collect();
        let system = Self::start_on(implementation, &vault_args, &manager_args).await?;
        crate::wait_ready(&system.client.http, &system.vault_url("/readyz")).await?;
        Ok(system)
    }

    /// Runs an admin binary (`manager-admin`, `vault-admin`) against this system's token
    /// copy and the dev configuration of the service it administers.
    pub fn admin(&self, name: &str, args: &[&str]) -> Result<std::process::Output> {
        let service = name.trim_end_matches("-admin");
        let (variable, conf) = self.implementation.private_copy(self.dir.path())?;
        let output = std::process::Command::new(binary(name)?)
            .env(variable, conf)
            .arg("--config")
            .arg(self.implementation.service_config(service)?)
            .args(args)
            .output()?;
        Ok(output)
    }

    /// The HTTPS client (trusting the dev CA).
    pub fn http(&self) -> &reqwest::Client {
        &self.client.http
    }

    /// The body of `GET url` as text (`/metrics`).
    pub async fn text(&self, url: &str) -> Result<String> {
        Ok(self.http().get(url).send().await?.text().await?)
    }

    /// manager's published JWK Set.
    pub async fn manager_jwks(&self) -> Result<Value> {
        let response = self
            .http()
            .get(self.manager_url("/.well-known/jwks.json"))
            .send()
            .await?;
        Ok(response.json().await?)
    }

    /// `https://<manager>/<path>`.
    pub fn manager_url(&self, path: &str) -> String {
        self.client.manager_url(path)
    }

    /// vault's public listener.
    pub fn vault_addr(&self) -> SocketAddr {
        self.vault.addr("public")
    }

    /// `https://<vault public>/<path>`.
    pub fn vault_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.vault_addr())
    }

    /// vault's storage URL.
    pub fn database_url(&self) -> String {
        format!("sqlite://{}", self.database().display())
    }

    /// Path of vault's SQLite database.
    pub fn database(&self) -> PathBuf {
        self.dir.path().join("vault.db")
    }

    /// The protected header of the envelope stored for `key_id`, read from vault's database.
    pub async fn envelope_header(&self, key_id: &str) -> Result<Value> {
        use sqlx::{Connection, Row};
        let mut db = sqlx::SqliteConnection::connect(&self.database_url()).await?;
        let row = sqlx::query("SELECT envelope FROM secrets WHERE key_id = $1")
            .bind(key_id)
            .fetch_one(&mut db)
            .await?;
        db.close().await?;
        crate::compact_part(&row.get::<String, _>("envelope"), 0)
    }

    /// `POST /api/keys` with a JSON body; any status.
    pub async fn post_keys(&self, body: &Value) -> Result<Answer> {
        self.client.post_keys(body).await
    }

    /// Stores a secret and insists on `201`.
    pub async fn store(&self, user_id: &str, key_data: &str) -> Result<StoreKeyResponse> {
        self.client.store(user_id, key_data).await
    }

    /// `POST /api/keys` with `body`, insisting on `201`.
    pub async fn store_json(&self, body: &Value) -> Result<StoreKeyResponse> {
        self.client.store_json(body).await
    }

    /// `GET /api/keys/{key_id}` at vault with the access token.
    pub async fn read(&self, key_id: &str, token: &str) -> Result<Answer> {
        self.client.read(self.vault_addr(), key_id, token).await
    }

    /// `DELETE /api/keys/{key_id}` at vault with the access token.
    pub async fn destroy(&self, key_id: &str, token: &str) -> Result<Answer> {
        self.client.destroy(self.vault_addr(), key_id, token).await
    }

    /// `POST /api/tokens/revoke` at vault with the access token.
    pub async fn revoke(&self, token: &str) -> Result<Answer> {
        self.client.revoke(self.vault_addr(), token).await
    }
}

/// Several vault replicas sharing one database (PostgreSQL) and one token (this test's copy
/// of vault's token), with manager storing through the first — as behind a load balancer.
/// Replicas start one after another, so their logins never overlap (see [`crate::tokens`]).
pub struct Replicas {
    /// Temporary directory with logs and token copies.
    pub dir: tempfile::TempDir,
    /// The vault processes.
    pub vaults: Vec<Service>,
    /// The manager process.
    pub manager: Service,
    /// A user of them all.
    pub client: Client,
    /// The shared database.
    pub database_url: String,
}

impl Replicas {
    /// Starts `count` vaults on `database_url`, then manager pointed at the first.
    pub async fn start(count: usize, database_url: String, vault_args: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut vaults = Vec::new();
        for _ in 0..count {
            let vault = Launch::vault(dir.path()).database(&database_url).args(vault_args);
            vaults.push(vault.start().await?);
        }
        let manager = Launch::manager(dir.path(), vaults[0].addr("internal")).start().await?;
        let client = Client::new(manager.addr("api"))?;
        Ok(Self {
            dir,
            vaults,
            manager,
            client,
            database_url,
        })
    }

    /// Public address of replica `i`.
    pub fn vault(&self, i: usize) -> SocketAddr {
        self.vaults[i].addr("public")
    }

    /// Reads at replica `i` with the access token.
    pub async fn read(&self, i: usize, key_id: &str, token: &str) -> Result<Answer> {
        self.client.read(self.vault(i), key_id, token).await
    }
}
