//! PostgreSQL for the tests, brought by the tests themselves: a fresh database on the
//! server named by `TEST_DATABASE_URL` when it is set, otherwise on a private cluster
//! (Debian's `postgresql` binaries, `initdb` into a temporary directory, a free port),
//! stopped when the test process ends — or, for [`PgCluster::start`], when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use sqlx::Connection;

/// A PostgreSQL server of our own.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

fn postgres_bin() -> Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (softhsm-setup/setup.sh installs it)")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .ok_or_else(|| anyhow!("no initdb under /usr/lib/postgresql/*/bin"))
}

fn id_of(user: &str, flag: &str) -> Result<u32> {
    let out = Command::new("id").args([flag, user]).output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

impl PgCluster {
    /// initdb + start on a free port; as root, the server runs as the `postgres` user.
    pub fn start() -> Result<Self> {
        let bin = postgres_bin()?;
        let dir = tempfile::tempdir()?;
        // initdb refuses to run as root; the server then runs as `postgres`.
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let data = dir.path().join("data");
        std::fs::create_dir(&data)?;
        if as_postgres {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
            let (uid, gid) = (id_of("postgres", "-u")?, id_of("postgres", "-g")?);
            std::os::unix::fs::chown(&data, Some(uid), Some(gid))?;
        }
        let cluster = Self {
            dir,
            bin,
            port: crate::dev::free_port()?,
            as_postgres,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        cluster.start_server()?;
        Ok(cluster)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<()> {
        let tool_path = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&tool_path);
            c
        } else {
            Command::new(&tool_path)
        };
        let output = command.args(args).output().with_context(|| format!("running {tool}"))?;
        if !output.status.success() {
            bail!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    fn start_server(&self) -> Result<()> {
        // fsync off: commits wait on nothing but the server, so a slow shared disk cannot push
        // a queue of audit writes past vault's 3 s pool wait. No test needs PostgreSQL to
        // survive its own crash (the outage test stops it cleanly).
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
            self.port,
            self.data()
        );
        let log = format!("{}/server.log", self.data());
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    /// Stops the server (as an outage would).
    pub fn stop(&self) -> Result<()> {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"])
    }

    /// Starts it again on the same port.
    pub fn restart(&self) -> Result<()> {
        self.start_server()
    }

    /// URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Data directory, for a watchdog.
    fn data_dir(&self) -> PathBuf {
        Path::new(&self.data()).to_owned()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }
}

/// Stops the cluster once this process is gone: a detached shell polls our PID.
fn stop_when_process_exits(cluster: &PgCluster) -> Result<()> {
    let pg_ctl = cluster.bin.join("pg_ctl");
    let stop = format!(
        "{} -D {} -m immediate -w stop",
        pg_ctl.display(),
        cluster.data_dir().display()
    );
    let stop = if cluster.as_postgres {
        format!("runuser -u postgres -- {stop}")
    } else {
        stop
    };
    let dir = cluster.dir.path().display();
    let script = format!(
        "while kill -0 {} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
        std::process::id()
    );
    Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(std::process::Stdio::null())
        .spawn()?;
    Ok(())
}

/// The server fresh databases are created on: `TEST_DATABASE_URL`'s, or one private
/// cluster per test process.
fn server_url() -> Result<String> {
    if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
        return Ok(url);
    }
    static SHARED: OnceLock<std::result::Result<(PgCluster, String), String>> = OnceLock::new();
    let shared = SHARED.get_or_init(|| {
        let started = PgCluster::start().and_then(|cluster| {
            stop_when_process_exits(&cluster)?;
            let url = cluster.url("postgres");
            Ok((cluster, url))
        });
        started.map_err(|e| format!("{e:#}"))
    });
    match shared {
        Ok((_, url)) => Ok(url.clone()),
        Err(e) => bail!("cannot start a private PostgreSQL cluster: {e}"),
    }
}

/// A database of its own for one test, on the shared server.
pub async fn fresh_database() -> Result<String> {
    let server = server_url()?;
    let name = format!("vault_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = connect_with_retry(&server).await?;
    // The name is ours (a UUID), not input: safe to splice.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let base = server.rsplit_once('/').map_or(server.as_str(), |(base, _)| base);
    Ok(format!("{base}/{name}"))
}

async fn connect_with_retry(url: &str) -> Result<sqlx::PgConnection> {
    let mut last = None;
    for _ in 0..50 {
        match sqlx::PgConnection::connect(url).await {
            Ok(conn) => return Ok(conn),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(anyhow!("cannot connect to {url}: {last:?}"))
}
