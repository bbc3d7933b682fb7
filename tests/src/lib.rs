//! Harness for the end-to-end tests: starts the real `vault` and `manager` binaries
//! against the SoftHSM2 tokens provisioned in `.dev/` (by `softhsm-setup/setup.sh`), on
//! free ports, over real TLS, and talks to them with an HTTPS client that trusts only
//! the dev CA.
//!
//! Each test starts its own services with their own database **and their own copy of the
//! SoftHSM token directory** in a temporary directory, so tests run in parallel without
//! sharing state. The copy matters: SoftHSM rewrites a token's file on every C_Login, and
//! processes logging in to one token at the same instant read it torn (measured: a third
//! of 12 simultaneous starts saw the token missing or CKR_GENERAL_ERROR). The copies hold
//! the same keys and PINs, so kids and certificates are those of `.dev/`.
//! Processes are killed on drop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use contract::wire::StoreKeyResponse;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// The repository's `.dev/` directory; fails clearly when provisioning has not run.
pub fn dev_dir() -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.dev");
    if !dir.join("softhsm2.conf").is_file() {
        bail!(
            "{} is not provisioned: run `make test` (or softhsm-setup/setup.sh) first",
            dir.display()
        );
    }
    Ok(dir.canonicalize()?)
}

/// Path of a workspace binary in the same `target/<profile>/` as the running executable
/// (tests run from `target/<profile>/deps/`, `loadgen` from `target/<profile>/`).
pub fn binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .ok_or_else(|| anyhow!("unexpected executable path {}", exe.display()))?;
    if dir.ends_with("deps") {
        dir = dir
            .parent()
            .ok_or_else(|| anyhow!("unexpected executable path {}", exe.display()))?;
    }
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --workspace --bins` (make test does)",
            path.display()
        );
    }
    Ok(path)
}

/// A running service process; killed (SIGKILL) when dropped.
pub struct Service {
    child: Child,
    /// Listener name (`api`, `public`, `internal`) → bound address.
    pub listeners: HashMap<String, SocketAddr>,
    /// File receiving the service's stderr (its logs).
    pub log: PathBuf,
    _stdout: BufReader<ChildStdout>,
}

impl Service {
    /// Spawns `command` and waits for each of `listeners` to be reported on stdout.
    pub async fn spawn(mut command: Command, log: PathBuf, listeners: &[&str]) -> Result<Self> {
        let log_file = std::fs::File::create(&log)?;
        command
            .stdout(Stdio::piped())
            .stderr(log_file)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let mut child = command.spawn().context("spawning service")?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?);
        let mut found = HashMap::new();
        let wait = async {
            let mut line = String::new();
            while found.len() < listeners.len() {
                line.clear();
                if stdout.read_line(&mut line).await? == 0 {
                    bail!("service exited before listening");
                }
                if let Some(rest) = line.trim().strip_prefix("listening ") {
                    let (name, url) = rest.split_once(' ').ok_or_else(|| anyhow!("bad line {line:?}"))?;
                    let addr = url.trim_start_matches("https://").parse()?;
                    found.insert(name.to_owned(), addr);
                }
            }
            Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(60), wait).await {
            Ok(Ok(())) => Ok(Self {
                child,
                listeners: found,
                log,
                _stdout: stdout,
            }),
            Ok(Err(e)) => Err(e.context(format!(
                "service log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ))),
            Err(_) => bail!(
                "service did not listen within 60 s; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        }
    }

    /// Address of the listener called `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.listeners[name]
    }

    /// SIGKILL, and wait for the process to be gone.
    pub async fn kill(&mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// The service's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Held while this process copies `.dev/tokens` or logs in to them: a login rewrites the
/// token file, and a copy taken meanwhile would be torn.
static DEV_TOKEN_FILES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Copies `.dev/tokens` into `dir/tokens` (once) and returns a SoftHSM configuration
/// pointing at the copy.
pub fn private_softhsm(dir: &Path) -> Result<PathBuf> {
    let conf = dir.join("softhsm2.conf");
    if !conf.exists() {
        let _files = DEV_TOKEN_FILES.lock().unwrap_or_else(|p| p.into_inner());
        copy_dir(&dev_dir()?.join("tokens"), &dir.join("tokens"))?;
        let tokens = dir.join("tokens");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )?;
    }
    Ok(conf)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Command for a workspace binary with the dev configuration and the private token copy
/// in `dir`.
pub fn service_command(name: &str, dir: &Path) -> Result<Command> {
    let dev = dev_dir()?;
    let mut command = Command::new(binary(name)?);
    command
        .env("SOFTHSM2_CONF", private_softhsm(dir)?)
        .env("RUST_LOG", "info");
    command.arg("--config").arg(dev.join(format!("{name}.toml")));
    Ok(command)
}

/// Starts vault on free ports with its database at `database`.
pub async fn start_vault(dir: &Path, database: &Path, extra_args: &[&str]) -> Result<Service> {
    start_vault_on(dir, &format!("sqlite://{}", database.display()), extra_args).await
}

/// Starts vault on free ports with the storage at `database_url`.
pub async fn start_vault_on(dir: &Path, database_url: &str, extra_args: &[&str]) -> Result<Service> {
    let mut command = service_command("vault", dir)?;
    command
        .args([
            "--listen-public",
            "127.0.0.1:0",
            "--listen-internal",
            "127.0.0.1:0",
            "--database-url",
        ])
        .arg(database_url)
        .args(extra_args);
    let log = dir.join(format!("vault-{}.log", uuid::Uuid::new_v4()));
    Service::spawn(command, log, &["public", "internal"]).await
}

/// Starts manager on a free port, storing into vault's internal listener at `vault_internal`.
pub async fn start_manager(dir: &Path, vault_internal: SocketAddr, extra_args: &[&str]) -> Result<Service> {
    let mut command = service_command("manager", dir)?;
    command
        .args(["--listen", "127.0.0.1:0", "--vault-url"])
        .arg(format!("https://{vault_internal}"))
        .args(extra_args);
    let log = dir.join(format!("manager-{}.log", uuid::Uuid::new_v4()));
    Service::spawn(command, log, &["api"]).await
}

/// Runs `openssl` (installed by `setup.sh`) and returns its stdout; fails with its stderr.
pub fn openssl(args: &[&str]) -> Result<Vec<u8>> {
    let output = std::process::Command::new("openssl").args(args).output()?;
    if !output.status.success() {
        bail!("openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(output.stdout)
}

/// Runs `hsm-admin` against the token copies in `dir` (see [`private_softhsm`]) with the
/// `.dev/` PIN of `token`; insists on success and returns its stdout.
pub fn hsm_admin(dir: &Path, token: &str, args: &[&str]) -> Result<String> {
    let output = std::process::Command::new(binary("hsm-admin")?)
        .env("SOFTHSM2_CONF", private_softhsm(dir)?)
        .args(["--token", token, "--pin-file"])
        .arg(dev_dir()?.join(format!("pins/{token}.pin")))
        .args(args)
        .output()?;
    if !output.status.success() {
        bail!("hsm-admin {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Writes a new RSA-2048 private key made in software by OpenSSL to `pem` (for tests that
/// must know a key's secret: the memory scan, the key-file scan's control).
pub fn openssl_rsa_key(pem: &Path) -> Result<()> {
    let out = pem.to_string_lossy();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &out,
    ])
    .map(drop)
}

/// A loopback port that was free a moment ago (for the one case where a service must
/// know another's address before that one starts).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `url` until it answers 200, for at most 20 s.
pub async fn wait_ready(http: &reqwest::Client, url: &str) -> Result<()> {
    for _ in 0..200 {
        if http.get(url).send().await.is_ok_and(|r| r.status() == StatusCode::OK) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{url} did not become ready within 20 s")
}

/// The TLS key `label` in the `.dev/` token `token`, opened by this test process itself
/// (SoftHSM in process; `SOFTHSM2_CONF` from `.cargo/config.toml` or the Makefile) — to
/// present manager's client certificate, or to compare a certificate with its token key.
pub async fn dev_tls_key(token: &str, label: &str) -> Result<hsm::TokenTlsKey> {
    static POOLS: tokio::sync::Mutex<Vec<(String, hsm::TokenPool)>> = tokio::sync::Mutex::const_new(Vec::new());
    let mut pools = POOLS.lock().await;
    let pool = match pools.iter().find(|(name, _)| name == token) {
        Some((_, pool)) => pool.clone(),
        None => {
            let config = hsm::TokenConfig {
                token_label: token.to_owned(),
                pin: hsm::read_pin_file(&dev_dir()?.join(format!("pins/{token}.pin")))?,
                sessions: 2,
                slot_discovery_timeout: Duration::from_secs(10),
                operation_timeout: Duration::from_secs(30),
            };
            let runtime = tokio::runtime::Handle::current();
            let pool = tokio::task::spawn_blocking(move || {
                let _files = DEV_TOKEN_FILES.lock().unwrap_or_else(|p| p.into_inner());
                runtime.block_on(hsm::TokenPool::connect(&dev_module()?, config))
            })
            .await??;
            pools.push((token.to_owned(), pool.clone()));
            pool
        }
    };
    Ok(hsm::TokenTlsKey::load(pool, label).await?)
}

/// SoftHSM, loaded once per test process.
fn dev_module() -> hsm::Result<hsm::Module> {
    static MODULE: std::sync::OnceLock<hsm::Module> = std::sync::OnceLock::new();
    if let Some(module) = MODULE.get() {
        return Ok(module.clone());
    }
    let module = hsm::Module::load(Path::new(SOFTHSM))?;
    Ok(MODULE.get_or_init(|| module).clone())
}

/// Debian's SoftHSM2 module.
pub const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// An HTTPS client trusting only the dev CA, presenting `identity` (certificate chain file
/// and its key) when given.
pub fn https_client(
    identity: Option<(&Path, std::sync::Arc<dyn rustls::sign::SigningKey>)>,
) -> Result<reqwest::Client> {
    let tls = contract::tls::client_config(&dev_dir()?.join("tls/ca.pem"), identity)?;
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// vault and manager running together, as a user sees them.
pub struct System {
    /// Temporary directory with the database and logs.
    pub dir: tempfile::TempDir,
    /// The vault process.
    pub vault: Service,
    /// The manager process.
    pub manager: Service,
    /// Client trusting the dev CA.
    pub http: reqwest::Client,
}

pub mod pg;

/// A status and a JSON body (Null when the body is not JSON).
pub type Answer = (StatusCode, Value);

impl System {
    /// Starts vault, then manager pointed at it.
    pub async fn start() -> Result<Self> {
        Self::start_with(&[], &[]).await
    }

    /// Like [`System::start`] with extra arguments for each service.
    pub async fn start_with(vault_args: &[&str], manager_args: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let vault = start_vault(dir.path(), &dir.path().join("vault.db"), vault_args).await?;
        let manager = start_manager(dir.path(), vault.addr("internal"), manager_args).await?;
        Ok(Self {
            dir,
            vault,
            manager,
            http: https_client(None)?,
        })
    }

    /// Like [`System::start_with`], but vault learns manager's keys from manager's
    /// `/.well-known/jwks.json` (as needed for key rotation) instead of the exported file.
    pub async fn start_with_jwks_url(vault_args: &[&str], manager_args: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
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
        let vault = start_vault(dir.path(), &dir.path().join("vault.db"), &vault_args).await?;
        let manager = start_manager(dir.path(), vault.addr("internal"), &manager_args).await?;
        let system = Self {
            dir,
            vault,
            manager,
            http: https_client(None)?,
        };
        wait_ready(&system.http, &system.vault_url("/readyz")).await?;
        Ok(system)
    }

    /// Runs an admin binary (`manager-admin`, `vault-admin`) against this system's token
    /// copy and the dev configuration of the service it administers.
    pub fn admin(&self, name: &str, args: &[&str]) -> Result<std::process::Output> {
        let service = name.trim_end_matches("-admin");
        let output = std::process::Command::new(binary(name)?)
            .env("SOFTHSM2_CONF", private_softhsm(self.dir.path())?)
            .arg("--config")
            .arg(dev_dir()?.join(format!("{service}.toml")))
            .args(args)
            .output()?;
        Ok(output)
    }

    /// manager's published JWK Set.
    pub async fn manager_jwks(&self) -> Result<Value> {
        let response = self.http.get(self.manager_url("/.well-known/jwks.json")).send().await?;
        Ok(response.json().await?)
    }

    /// `https://<manager>/<path>`.
    pub fn manager_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.manager.addr("api"))
    }

    /// `https://<vault public>/<path>`.
    pub fn vault_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.vault.addr("public"))
    }

    /// vault's storage URL.
    pub fn database_url(&self) -> String {
        format!("sqlite://{}", self.database().display())
    }

    /// Path of vault's SQLite database.
    pub fn database(&self) -> PathBuf {
        self.dir.path().join("vault.db")
    }

    /// `POST /api/keys` with a JSON body; any status.
    pub async fn post_keys(&self, body: &Value) -> Result<Answer> {
        answer(self.http.post(self.manager_url("/api/keys")).json(body).send().await?).await
    }

    /// Stores a secret and insists on `201`.
    pub async fn store(&self, user_id: &str, key_data: &str) -> Result<StoreKeyResponse> {
        let (status, body) = self
            .post_keys(&json!({"user_id": user_id, "key_data": key_data}))
            .await?;
        if status != StatusCode::CREATED {
            bail!("store answered {status}: {body}");
        }
        Ok(serde_json::from_value(body)?)
    }

    /// `GET /api/keys/{key_id}` at vault with `Authorization: Bearer <token>`.
    pub async fn read(&self, key_id: &str, token: &str) -> Result<Answer> {
        read_at(
            &self.http,
            self.vault.addr("public"),
            key_id,
            Some(&format!("Bearer {token}")),
        )
        .await
    }
}

/// `GET /api/keys/{key_id}` at the vault listening on `vault` with an optional
/// `Authorization` header value.
pub async fn read_at(
    http: &reqwest::Client,
    vault: SocketAddr,
    key_id: &str,
    authorization: Option<&str>,
) -> Result<Answer> {
    let mut request = http.get(format!("https://{vault}/api/keys/{key_id}"));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    answer(request.send().await?).await
}

/// Status and JSON body of a response.
pub async fn answer(response: reqwest::Response) -> Result<Answer> {
    let status = response.status();
    let bytes = response.bytes().await?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// The JSON of part `index` (0 header, 1 payload) of a compact JWS/JWE.
pub fn compact_part(token: &str, index: usize) -> Result<Value> {
    use base64::Engine;
    let part = token.split('.').nth(index).ok_or_else(|| anyhow!("no part {index}"))?;
    Ok(serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part)?,
    )?)
}

/// Asserts the contract's error shape and returns its `code`.
pub fn error_code(body: &Value) -> Result<&str> {
    let code = body["error"]["code"]
        .as_str()
        .ok_or_else(|| anyhow!("not an error body: {body}"))?;
    body["error"]["message"]
        .as_str()
        .ok_or_else(|| anyhow!("error body without message: {body}"))?;
    Ok(code)
}

/// Several vault replicas sharing one database (PostgreSQL) and one token (this test's copy
/// of vault's token), with manager storing through the first — as behind a load balancer.
/// Replicas start one after another, so their logins never overlap (see the crate docs).
pub struct Replicas {
    /// Temporary directory with logs and token copies.
    pub dir: tempfile::TempDir,
    /// The vault processes.
    pub vaults: Vec<Service>,
    /// The manager process.
    pub manager: Service,
    /// Client trusting the dev CA.
    pub http: reqwest::Client,
    /// The shared database.
    pub database_url: String,
}

impl Replicas {
    /// Starts `count` vaults on `database_url`, then manager pointed at the first.
    pub async fn start(count: usize, database_url: String, vault_args: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut vaults = Vec::new();
        for _ in 0..count {
            vaults.push(start_vault_on(dir.path(), &database_url, vault_args).await?);
        }
        let manager = start_manager(dir.path(), vaults[0].addr("internal"), &[]).await?;
        Ok(Self {
            dir,
            vaults,
            manager,
            http: https_client(None)?,
            database_url,
        })
    }

    /// Public address of replica `i`.
    pub fn vault(&self, i: usize) -> SocketAddr {
        self.vaults[i].addr("public")
    }

    /// `POST /api/keys` at manager with `body`; any status.
    pub async fn post_keys(&self, body: &Value) -> Result<Answer> {
        let url = format!("https://{}/api/keys", self.manager.addr("api"));
        answer(self.http.post(url).json(body).send().await?).await
    }

    /// Stores a secret and insists on `201`.
    pub async fn store(&self, body: &Value) -> Result<StoreKeyResponse> {
        let (status, answer) = self.post_keys(body).await?;
        if status != StatusCode::CREATED {
            bail!("store answered {status}: {answer}");
        }
        Ok(serde_json::from_value(answer)?)
    }

    /// Reads at replica `i` with the token.
    pub async fn read(&self, i: usize, key_id: &str, token: &str) -> Result<Answer> {
        read_at(&self.http, self.vault(i), key_id, Some(&format!("Bearer {token}"))).await
    }
}

/// The PKCS#11 module services load in isolation mode: a client of `p11-kit server`.
pub const P11_KIT_CLIENT: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so";

/// A `p11-kit server` serving one token of the test's private SoftHSM copy from its own
/// process group (the server forks a `p11-kit-remote` per client connection), the way a
/// network HSM looks to the services.
pub struct TokenServer {
    pid: u32,
    socket: PathBuf,
    conf: PathBuf,
    token: String,
}

impl TokenServer {
    /// Starts serving `token` on `dir/<token>.sock`.
    pub async fn start(dir: &Path, token: &str) -> Result<Self> {
        let mut server = Self {
            pid: 0,
            socket: dir.join(format!("{token}.sock")),
            conf: private_softhsm(dir)?,
            token: token.to_owned(),
        };
        server.spawn().await?;
        Ok(server)
    }

    async fn spawn(&mut self) -> Result<()> {
        let _ = std::fs::remove_file(&self.socket);
        // setsid: the server and its per-connection children form one process group.
        let child = std::process::Command::new("setsid")
            .args(["p11-kit", "server", "-f", "-n"])
            .arg(&self.socket)
            .args(["--provider", SOFTHSM, &format!("pkcs11:token={}", self.token)])
            .env("SOFTHSM2_CONF", &self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting p11-kit server (softhsm-setup/setup.sh installs p11-kit)")?;
        self.pid = child.id();
        // Up to 30 s: a loaded 2-core machine can be slow to start a process.
        for _ in 0..600 {
            if self.socket.exists() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("p11-kit server did not create {}", self.socket.display())
    }

    /// `P11_KIT_SERVER_ADDRESS` for clients.
    pub fn address(&self) -> String {
        format!("unix:path={}", self.socket.display())
    }

    /// SIGKILL the server and every per-connection process it started.
    pub fn kill(&self) -> Result<()> {
        std::process::Command::new("kill")
            .args(["-9", "--", &format!("-{}", self.pid)])
            .status()?;
        Ok(())
    }

    /// Starts it again on the same socket.
    pub async fn restart(&mut self) -> Result<()> {
        self.spawn().await
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Starts vault with its token behind `server` (isolation mode).
pub async fn start_vault_isolated(
    dir: &Path,
    database: &Path,
    server: &TokenServer,
    extra_args: &[&str],
) -> Result<Service> {
    let mut command = service_command("vault", dir)?;
    command
        .env("P11_KIT_SERVER_ADDRESS", server.address())
        .args([
            "--pkcs11-module",
            P11_KIT_CLIENT,
            "--listen-public",
            "127.0.0.1:0",
            "--listen-internal",
            "127.0.0.1:0",
        ])
        .arg("--database-url")
        .arg(format!("sqlite://{}", database.display()))
        .args(extra_args);
    let log = dir.join(format!("vault-{}.log", uuid::Uuid::new_v4()));
    Service::spawn(command, log, &["public", "internal"]).await
}

/// Starts manager with its token behind `server` (isolation mode).
pub async fn start_manager_isolated(
    dir: &Path,
    vault_internal: SocketAddr,
    server: &TokenServer,
    extra_args: &[&str],
) -> Result<Service> {
    let mut command = service_command("manager", dir)?;
    command
        .env("P11_KIT_SERVER_ADDRESS", server.address())
        .args([
            "--pkcs11-module",
            P11_KIT_CLIENT,
            "--listen",
            "127.0.0.1:0",
            "--vault-url",
        ])
        .arg(format!("https://{vault_internal}"))
        .args(extra_args);
    let log = dir.join(format!("manager-{}.log", uuid::Uuid::new_v4()));
    Service::spawn(command, log, &["api"]).await
}

impl Service {
    /// The process id (for memory scans).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// Secret byte strings of an RSA key and where to look for them in a process's memory.
pub mod memscan {
    use std::io::{Read, Seek, SeekFrom};

    use anyhow::{Context, Result};

    /// The INTEGERs of a PKCS#1 `RSAPrivateKey` (version, n, e, d, p, q, dp, dq, qinv),
    /// big-endian without leading zeros.
    pub fn pkcs1_integers(der: &[u8]) -> Result<Vec<Vec<u8>>> {
        fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8])> {
            let tag = *input.first().context("empty DER")?;
            let first = *input.get(1).context("truncated DER")?;
            let (len, header) = match first {
                l if l < 0x80 => (usize::from(l), 2),
                0x81 => (usize::from(*input.get(2).context("truncated")?), 3),
                0x82 => (
                    usize::from(u16::from_be_bytes([input[2], *input.get(3).context("truncated")?])),
                    4,
                ),
                _ => anyhow::bail!("unsupported DER length"),
            };
            let body = input.get(header..header + len).context("truncated DER")?;
            Ok((tag, body, &input[header + len..]))
        }
        let (_, mut body, _) = tlv(der)?;
        let mut ints = Vec::new();
        while !body.is_empty() {
            let (_, value, rest) = tlv(body)?;
            let start = value.iter().position(|&b| b != 0).unwrap_or(value.len());
            ints.push(value[start..].to_vec());
            body = rest;
        }
        Ok(ints)
    }

    /// Which of `patterns` (name, bytes) occur anywhere in the readable memory of `pid`.
    pub fn scan(pid: u32, patterns: &[(String, Vec<u8>)]) -> Result<Vec<String>> {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
        let mut mem = std::fs::File::open(format!("/proc/{pid}/mem"))?;
        let mut found = Vec::new();
        for line in maps.lines() {
            let mut fields = line.split_whitespace();
            let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
                continue;
            };
            if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
                continue;
            }
            let Some((start, end)) = range.split_once('-') else {
                continue;
            };
            let (start, end) = (u64::from_str_radix(start, 16)?, u64::from_str_radix(end, 16)?);
            let mut region = vec![0u8; usize::try_from(end - start)?];
            if mem.seek(SeekFrom::Start(start)).is_err() || mem.read_exact(&mut region).is_err() {
                continue;
            }
            for (name, pattern) in patterns {
                if !found.contains(name) && contains(&region, pattern) {
                    found.push(name.clone());
                }
            }
        }
        Ok(found)
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        let Some((&first, rest)) = needle.split_first() else {
            return true;
        };
        let mut from = 0;
        while let Some(offset) = haystack[from..].iter().position(|&b| b == first) {
            let at = from + offset;
            if haystack.len() - at < needle.len() {
                return false;
            }
            if &haystack[at + 1..at + needle.len()] == rest {
                return true;
            }
            from = at + 1;
        }
        false
    }
}
