//! Starting `vault` and `manager` the way each test needs them: the dev configuration,
//! the test's private token copy (in process, or behind a token server), a database, free
//! ports, and any extra arguments — later arguments override earlier ones.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Result;
use tokio::process::Command;

use crate::dev::binary;
use crate::process::Service;
use crate::tokens::{Implementation, TokenServer, p11kit_client};

/// How to start one service.
pub struct Launch {
    name: &'static str,
    /// The listeners it reports once it serves.
    listeners: &'static [&'static str],
    dir: PathBuf,
    implementation: Implementation,
    token_server: Option<String>,
    database_url: Option<String>,
    args: Vec<OsString>,
}

impl Launch {
    /// vault on free ports, with its SQLite database at `dir/vault.db`.
    pub fn vault(dir: &Path) -> Self {
        let database = format!("sqlite://{}", dir.join("vault.db").display());
        Self {
            name: "vault",
            listeners: &["public", "internal"],
            dir: dir.to_owned(),
            implementation: Implementation::SoftHsm,
            token_server: None,
            database_url: Some(database),
            args: ["--listen-public", "127.0.0.1:0", "--listen-internal", "127.0.0.1:0"]
                .map(OsString::from)
                .to_vec(),
        }
    }

    /// manager on a free port, storing into vault's internal listener at `vault_internal`.
    pub fn manager(dir: &Path, vault_internal: SocketAddr) -> Self {
        Self {
            name: "manager",
            listeners: &["api"],
            dir: dir.to_owned(),
            implementation: Implementation::SoftHsm,
            token_server: None,
            database_url: None,
            args: vec![
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--vault-url".into(),
                format!("https://{vault_internal}").into(),
            ],
        }
    }

    /// vault's storage (`sqlite://…` or `postgres://…`).
    pub fn database(mut self, url: &str) -> Self {
        self.database_url = Some(url.to_owned());
        self
    }

    /// Its token in `implementation` (a private copy of it, with the configuration
    /// `softhsm-setup/setup.sh` wrote for it) instead of SoftHSM2.
    pub fn on(mut self, implementation: Implementation) -> Self {
        self.implementation = implementation;
        self
    }

    /// The token behind `server` (isolation mode) instead of SoftHSM in the process.
    pub fn token_server(mut self, server: &TokenServer) -> Self {
        self.token_server = Some(server.address());
        self
    }

    /// More arguments, after (and so overriding) the ones above.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(OsString::from));
        self
    }

    /// The command, for tests that run it to completion (start-up failures).
    pub fn command(&self) -> Result<Command> {
        let mut command = Command::new(binary(self.name)?);
        let (variable, conf) = self.implementation.private_copy(&self.dir)?;
        command
            .env(variable, conf)
            .env("RUST_LOG", "info")
            .arg("--config")
            .arg(self.implementation.service_config(self.name)?);
        if let Some(address) = &self.token_server {
            command
                .env("P11_KIT_SERVER_ADDRESS", address)
                .arg("--pkcs11-module")
                .arg(p11kit_client()?);
        }
        if let Some(url) = &self.database_url {
            command.args(["--database-url", url]);
        }
        command.args(&self.args);
        Ok(command)
    }

    /// `name` (`vault`, or else manager, which is given no reachable vault: a start-up
    /// failure comes first) with the dev configuration and `args`, run to completion in a
    /// directory of its own (its own database: tests run in parallel and must never share,
    /// or race to migrate, the development database), insisting that it fails; its stderr.
    pub async fn failure_of(name: &str, args: &[&str]) -> Result<String> {
        let dir = tempfile::tempdir()?;
        let launch = match name {
            "vault" => Self::vault(dir.path()),
            _ => Self::manager(dir.path(), "127.0.0.1:9".parse()?),
        };
        launch.args(args).expect_failure().await
    }

    /// Runs the service to completion, insisting that it fails (a start-up refusal), within
    /// 30 s; returns its stderr.
    pub async fn expect_failure(&self) -> Result<String> {
        let mut command = self.command()?;
        command.kill_on_drop(true);
        let output = tokio::time::timeout(std::time::Duration::from_secs(30), command.output()).await??;
        anyhow::ensure!(
            !output.status.success(),
            "{} {:?} should have failed",
            self.name,
            self.args
        );
        Ok(String::from_utf8_lossy(&output.stderr).into_owned())
    }

    /// Starts the service and waits for its listeners.
    pub async fn start(self) -> Result<Service> {
        let log = self.dir.join(format!("{}-{}.log", self.name, uuid::Uuid::new_v4()));
        Service::spawn(self.command()?, log, self.listeners).await
    }
}
