//! One deployment under measurement: manager and one or more vaults on SoftHSM2 or
//! Kryoptic, each token in the service's process or behind its own `p11-kit server`, on
//! SQLite or PostgreSQL.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Result, bail};
use e2e::{Client, Implementation, Launch, Service, TokenServer};
use serde_json::{Value, json};
use sqlx::Connection;

/// The name of a PKCS#11 implementation in the table and the JSON.
pub fn implementation_name(implementation: Implementation) -> &'static str {
    match implementation {
        Implementation::SoftHsm => "softhsm2",
        Implementation::Kryoptic => "kryoptic",
    }
}

/// Where the tokens are.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Mode {
    /// SoftHSM loaded in each service's process.
    InProcess,
    /// Each token behind its own `p11-kit server`; the services load `p11-kit-client.so`.
    Isolation,
}

impl Mode {
    /// The name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Mode::InProcess => "in-process",
            Mode::Isolation => "isolation",
        }
    }
}

/// vault's storage and how many vaults share it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backend {
    /// One vault on its SQLite file.
    Sqlite,
    /// This many vault replicas on one PostgreSQL database.
    Postgres(usize),
}

impl Backend {
    /// The name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Vault processes.
    pub fn replicas(self) -> usize {
        match self {
            Backend::Sqlite => 1,
            Backend::Postgres(n) => n,
        }
    }
}

/// What one deployment runs on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Setup {
    /// The services' tokens' implementation, with its provisioned configuration (on
    /// Kryoptic vault wraps with RSA-OAEP-256, which it finds the token offers).
    pub implementation: Implementation,
    /// Where the tokens are.
    pub mode: Mode,
    /// vault's storage.
    pub backend: Backend,
}

impl Setup {
    /// How the progress lines name it.
    pub fn label(self) -> String {
        format!(
            "{} {} {}×{}",
            implementation_name(self.implementation),
            self.mode.name(),
            self.backend.name(),
            self.backend.replicas()
        )
    }
}

/// The running services of one setup; killed when dropped.
/// Fields drop in order: the services, then their token servers, then the directory.
pub struct Deployment {
    /// The vault processes (replicas share the database).
    pub vaults: Vec<Service>,
    /// The manager process, storing through the first vault.
    pub manager: Service,
    /// A user of the API.
    pub client: Client,
    /// The PostgreSQL database, dropped by [`Deployment::finish`].
    database: Option<String>,
    _token_servers: Vec<TokenServer>,
    /// Token copies, database (SQLite), logs and wrk scripts.
    pub dir: tempfile::TempDir,
}

impl Deployment {
    /// Starts the vaults one after another (their logins must not overlap, see
    /// `e2e::tokens`), then manager. `service_args` go to every service.
    pub async fn start(setup: Setup, service_args: &[&str]) -> Result<Self> {
        let Setup {
            implementation,
            mode,
            backend,
        } = setup;
        if mode == Mode::Isolation && implementation != Implementation::SoftHsm {
            // e2e::TokenServer serves SoftHSM2 token copies only.
            bail!(
                "isolation mode runs on SoftHSM2 only, not {}",
                implementation_name(implementation)
            );
        }
        let dir = tempfile::tempdir()?;
        let mut token_servers = Vec::new();
        if mode == Mode::Isolation {
            token_servers.push(TokenServer::start(dir.path(), "vault").await?);
            token_servers.push(TokenServer::start(dir.path(), "manager").await?);
        }
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres(_) => Some(e2e::pg::fresh_database().await?),
        };
        let mut vaults = Vec::new();
        for _ in 0..backend.replicas() {
            let mut vault = Launch::vault(dir.path()).on(implementation);
            if let Some(url) = &database {
                vault = vault.database(url);
            }
            if let Some(server) = token_servers.first() {
                vault = vault.token_server(server);
            }
            vaults.push(vault.args(service_args).start().await?);
        }
        let mut manager = Launch::manager(dir.path(), vaults[0].addr("internal")).on(implementation);
        if let Some(server) = token_servers.get(1) {
            manager = manager.token_server(server);
        }
        let manager = manager.args(service_args).start().await?;
        let client = Client::new(manager.addr("api"))?;
        for vault in &vaults {
            e2e::wait_ready(&client.http, &format!("https://{}/readyz", vault.addr("public"))).await?;
        }
        e2e::wait_ready(&client.http, &client.manager_url("/readyz")).await?;
        Ok(Self {
            vaults,
            manager,
            client,
            database,
            _token_servers: token_servers,
            dir,
        })
    }

    /// The directory vault's SQLite file (and the wrk scripts) are in.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// manager's API listener.
    pub fn manager_addr(&self) -> SocketAddr {
        self.manager.addr("api")
    }

    /// Every vault's public listener.
    pub fn vault_addrs(&self) -> Vec<SocketAddr> {
        self.vaults.iter().map(|v| v.addr("public")).collect()
    }

    /// Stores `count` secrets without a read limit (each read succeeds) and with the
    /// longest lifetime manager allows by default; their key ids and access tokens.
    pub async fn secrets_to_read(&self, count: usize) -> Result<Vec<(String, String)>> {
        let mut stores = tokio::task::JoinSet::new();
        for i in 0..count {
            let client = self.client.clone();
            stores.spawn(async move {
                let body = json!({"user_id": "bench", "key_data": format!("read me {i}"), "ttl_seconds": 86_400});
                client.store_json(&body).await
            });
        }
        let mut keys = Vec::new();
        while let Some(stored) = stores.join_next().await {
            let stored = stored??;
            keys.push((stored.key_id, stored.access_token));
        }
        Ok(keys)
    }

    /// Each service's peak resident set so far (`VmHWM`, KiB): `manager`, `vault`, `vault_2`, …
    pub fn peak_rss(&self) -> Value {
        let mut rss = serde_json::Map::new();
        rss.insert("manager".into(), json!(vm_hwm(&self.manager)));
        for (i, vault) in self.vaults.iter().enumerate() {
            let name = if i == 0 {
                "vault".to_owned()
            } else {
                format!("vault_{}", i + 1)
            };
            rss.insert(name, json!(vm_hwm(vault)));
        }
        Value::Object(rss)
    }

    /// Stops the services and drops the PostgreSQL database they used.
    pub async fn finish(mut self) -> Result<()> {
        for vault in &mut self.vaults {
            vault.kill().await?;
        }
        self.manager.kill().await?;
        if let Some(url) = self.database.take() {
            drop_database(&url).await?;
        }
        Ok(())
    }
}

/// `VmHWM` of a live service, in KiB; `None` once it is gone.
fn vm_hwm(service: &Service) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", service.pid()?)).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `DROP DATABASE` of a database `e2e::pg::fresh_database` made, from the server's
/// `postgres` database.
async fn drop_database(url: &str) -> Result<()> {
    let Some((server, name)) = url.rsplit_once('/') else {
        bail!("unexpected database URL");
    };
    if !name.starts_with("vault_test_") || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("not a database loadgen made: {name}");
    }
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres")).await?;
    // The name was checked above: ours, not input.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    admin.close().await?;
    Ok(())
}

/// `fsync` and `synchronous_commit` of the PostgreSQL server the rows ran on (the private
/// cluster of `e2e::pg` runs with both off; a real server usually has both on).
pub async fn postgres_settings() -> Result<Value> {
    let url = e2e::pg::fresh_database().await?;
    let mut conn = sqlx::PgConnection::connect(&url).await?;
    let mut settings = serde_json::Map::new();
    for name in ["fsync", "synchronous_commit", "server_version"] {
        let row: (String,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SHOW {name}")))
            .fetch_one(&mut conn)
            .await?;
        settings.insert(name.into(), json!(row.0));
    }
    conn.close().await?;
    drop_database(&url).await?;
    settings.insert(
        "external_server".into(),
        json!(std::env::var_os("TEST_DATABASE_URL").is_some()),
    );
    Ok(Value::Object(settings))
}
