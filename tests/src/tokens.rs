//! The SoftHSM2 tokens the tests use: private copies of `.dev/tokens` for the services,
//! `p11-kit server`s in front of them (isolation mode), the `.dev/` tokens opened in this
//! process, and `hsm-admin`.
//!
//! Each test's services get **their own copy** of the token directory: SoftHSM rewrites a
//! token's file on every C_Login, and processes logging in to one token at the same instant
//! read it torn (measured: a third of 12 simultaneous starts saw the token missing or
//! CKR_GENERAL_ERROR). The copies hold the same keys and PINs, so kids and certificates are
//! those of `.dev/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::dev::{SOFTHSM, binary, dev_dir, script, stdout_of};

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

/// The PKCS#11 implementations the tests run the services on, each provisioned by
/// `softhsm-setup/setup.sh` with the same tokens, keys and certificates (from one dev CA):
/// SoftHSM2 in `.dev/`, Kryoptic in `.dev/kryoptic/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implementation {
    /// SoftHSM2 2.6.1 as Debian packages it; its configuration is `SOFTHSM2_CONF`.
    SoftHsm,
    /// Kryoptic (crates.io), a PKCS#11 3.x token over OpenSSL keeping its objects in
    /// SQLite; its configuration is `KRYOPTIC_CONF`.
    Kryoptic,
}

impl Implementation {
    /// Where its PINs, exported keys, certificates and service configurations are.
    pub fn dev_dir(self) -> Result<PathBuf> {
        let dev = dev_dir()?;
        Ok(match self {
            Self::SoftHsm => dev,
            Self::Kryoptic => {
                let dir = dev.join("kryoptic");
                if !dir.join("kryoptic.conf").is_file() {
                    bail!(
                        "{} is not provisioned: run `make setup` (softhsm-setup/setup.sh) again",
                        dir.display()
                    );
                }
                dir
            }
        })
    }

    /// Its PKCS#11 module: Debian's SoftHSM2, or the link to the cached Kryoptic build.
    pub fn module(self) -> Result<PathBuf> {
        Ok(match self {
            Self::SoftHsm => PathBuf::from(SOFTHSM),
            Self::Kryoptic => self.dev_dir()?.join("libkryoptic_pkcs11.so"),
        })
    }

    /// The configuration file `softhsm-setup/setup.sh` wrote for `service` on it.
    pub fn service_config(self, service: &str) -> Result<PathBuf> {
        Ok(self.dev_dir()?.join(format!("{service}.toml")))
    }

    /// The user PIN file of `token`.
    pub fn pin_file(self, token: &str) -> Result<PathBuf> {
        Ok(self.dev_dir()?.join(format!("pins/{token}.pin")))
    }

    /// The environment variable naming its configuration, and a configuration for a private
    /// copy of its tokens in `dir` (made once).
    pub fn private_copy(self, dir: &Path) -> Result<(&'static str, PathBuf)> {
        match self {
            Self::SoftHsm => Ok(("SOFTHSM2_CONF", private_softhsm(dir)?)),
            Self::Kryoptic => Ok(("KRYOPTIC_CONF", private_kryoptic(dir)?)),
        }
    }
}

/// Copies `.dev/kryoptic/tokens` into `dir/kryoptic-tokens` (once) and returns a Kryoptic
/// configuration whose slots are the copies.
pub fn private_kryoptic(dir: &Path) -> Result<PathBuf> {
    let conf = dir.join("kryoptic.conf");
    if !conf.exists() {
        let source = Implementation::Kryoptic.dev_dir()?;
        let _files = DEV_TOKEN_FILES.lock().unwrap_or_else(|p| p.into_inner());
        let tokens = dir.join("kryoptic-tokens");
        copy_dir(&source.join("tokens"), &tokens)?;
        let text = std::fs::read_to_string(source.join("kryoptic.conf"))?;
        let from = source.join("tokens").display().to_string();
        anyhow::ensure!(text.contains(&from), "{} names no token under {from}", source.display());
        std::fs::write(&conf, text.replace(&from, &tokens.display().to_string()))?;
    }
    Ok(conf)
}

/// The PKCS#11 module services load in isolation mode, `p11-kit-client.so`, found once by
/// `softhsm-setup/p11-kit.sh` for this machine's architecture.
pub fn p11kit_client() -> Result<PathBuf> {
    static FOUND: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let output = Command::new("bash")
            .arg(script("p11-kit.sh"))
            .arg("client-module")
            .output()
            .map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
    });
    found.clone().map_err(|e| anyhow::anyhow!("{e}"))
}

/// A `p11-kit server` serving one token of the test's private SoftHSM copy from its own
/// process group (started by `softhsm-setup/p11-kit.sh`), the way a network HSM looks to
/// the services. Killed with its per-connection processes when dropped.
pub struct TokenServer {
    /// The server's process group, once it runs (never 0: `kill -- -0` is our own group).
    pgid: Option<u32>,
    socket: PathBuf,
    /// The variable naming the token copy's configuration, and that configuration.
    conf: (&'static str, PathBuf),
    /// The module the server loads.
    provider: PathBuf,
    token: String,
}

impl TokenServer {
    /// Starts serving `token` of the test's SoftHSM2 copy on `dir/<token>.sock`.
    pub async fn start(dir: &Path, token: &str) -> Result<Self> {
        Self::start_on(Implementation::SoftHsm, dir, token).await
    }

    /// Starts serving `token` of the test's copy of `implementation`'s tokens on
    /// `dir/<token>.sock`.
    pub async fn start_on(implementation: Implementation, dir: &Path, token: &str) -> Result<Self> {
        let provider = implementation.module()?;
        let mut server = Self {
            pgid: None,
            socket: dir.join(format!("{token}.sock")),
            conf: implementation.private_copy(dir)?,
            provider,
            token: token.to_owned(),
        };
        server.spawn().await?;
        Ok(server)
    }

    async fn spawn(&mut self) -> Result<()> {
        let output = tokio::process::Command::new("bash")
            .arg(script("p11-kit.sh"))
            .arg("serve")
            .arg(&self.socket)
            .arg(&self.token)
            .env(self.conf.0, &self.conf.1)
            .env("PKCS11_PROVIDER", &self.provider)
            .env("P11KIT_LOG", self.socket.with_extension("log"))
            .output()
            .await
            .context("running softhsm-setup/p11-kit.sh (setup.sh installs p11-kit)")?;
        if !output.status.success() {
            bail!("{}", String::from_utf8_lossy(&output.stderr));
        }
        let pgid: u32 = String::from_utf8_lossy(&output.stdout).trim().parse()?;
        anyhow::ensure!(pgid > 1, "p11-kit.sh printed process group {pgid}");
        self.pgid = Some(pgid);
        Ok(())
    }

    /// `P11_KIT_SERVER_ADDRESS` for clients.
    pub fn address(&self) -> String {
        format!("unix:path={}", self.socket.display())
    }

    /// SIGKILL the server and every per-connection process it started.
    pub fn kill(&self) -> Result<()> {
        if let Some(pgid) = self.pgid {
            Command::new("kill").args(["-9", "--", &format!("-{pgid}")]).status()?;
        }
        Ok(())
    }

    /// SIGSTOP the server and its per-connection processes: requests to the token wait
    /// (a slow HSM) until [`TokenServer::resume`].
    pub fn pause(&self) -> Result<()> {
        self.signal("-STOP")
    }

    /// SIGCONT after [`TokenServer::pause`].
    pub fn resume(&self) -> Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> Result<()> {
        let pgid = self.pgid.context("the token server is not running")?;
        let status = Command::new("kill")
            .args([signal, "--", &format!("-{pgid}")])
            .status()?;
        anyhow::ensure!(status.success(), "kill {signal} -{pgid} failed");
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

/// A pool on the `.dev/` token `token`, opened by this test process itself (SoftHSM in
/// process; `SOFTHSM2_CONF` from `.cargo/config.toml` or the Makefile) and shared by the
/// tests of this process — to present manager's client certificate, to compare a
/// certificate with its token key, or to make keys in the `hsm-test` token.
pub async fn dev_pool(token: &str) -> Result<hsm::TokenPool> {
    dev_pool_on(Implementation::SoftHsm, token).await
}

/// [`dev_pool`] on `implementation`'s provisioned token (Kryoptic's configuration comes from
/// `KRYOPTIC_CONF`, which `.cargo/config.toml` and the Makefile set).
pub async fn dev_pool_on(implementation: Implementation, token: &str) -> Result<hsm::TokenPool> {
    type Pools = Vec<(Implementation, String, hsm::TokenPool)>;
    static POOLS: tokio::sync::Mutex<Pools> = tokio::sync::Mutex::const_new(Vec::new());
    let mut pools = POOLS.lock().await;
    if let Some((_, _, pool)) = pools.iter().find(|(i, name, _)| *i == implementation && name == token) {
        return Ok(pool.clone());
    }
    if implementation == Implementation::Kryoptic && std::env::var_os("KRYOPTIC_CONF").is_none() {
        bail!("KRYOPTIC_CONF is not set: run the tests with cargo (.cargo/config.toml) or make test");
    }
    let config = hsm::TokenConfig {
        token_label: token.to_owned(),
        pin: hsm::read_pin_file(&implementation.pin_file(token)?)?,
        sessions: 2,
        slot_discovery_timeout: Duration::from_secs(10),
        operation_timeout: Duration::from_secs(30),
    };
    let runtime = tokio::runtime::Handle::current();
    let pool = tokio::task::spawn_blocking(move || {
        let _files = DEV_TOKEN_FILES.lock().unwrap_or_else(|p| p.into_inner());
        anyhow::Ok(runtime.block_on(hsm::TokenPool::connect(&dev_module(implementation)?, config))?)
    })
    .await??;
    pools.push((implementation, token.to_owned(), pool.clone()));
    Ok(pool)
}

/// The TLS key `label` in the `.dev/` token `token` (see [`dev_pool`]).
pub async fn dev_tls_key(token: &str, label: &str) -> Result<hsm::TokenTlsKey> {
    dev_tls_key_on(Implementation::SoftHsm, token, label).await
}

/// [`dev_tls_key`] in `implementation`'s provisioned token.
pub async fn dev_tls_key_on(implementation: Implementation, token: &str, label: &str) -> Result<hsm::TokenTlsKey> {
    Ok(hsm::TokenTlsKey::load(dev_pool_on(implementation, token).await?, label).await?)
}

/// `implementation`'s module, loaded once per test process (initialising SoftHSM twice in
/// parallel crashes it).
fn dev_module(implementation: Implementation) -> Result<hsm::Module> {
    static MODULES: std::sync::Mutex<Vec<(Implementation, hsm::Module)>> = std::sync::Mutex::new(Vec::new());
    let mut modules = MODULES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, module)) = modules.iter().find(|(i, _)| *i == implementation) {
        return Ok(module.clone());
    }
    let module = hsm::Module::load(&implementation.module()?)?;
    modules.push((implementation, module.clone()));
    Ok(module)
}

/// Runs `hsm-admin` against the token copies in `dir` (see [`private_softhsm`]) with the
/// `.dev/` PIN of `token`; insists on success and returns its stdout.
pub fn hsm_admin(dir: &Path, token: &str, args: &[&str]) -> Result<String> {
    hsm_admin_on(Implementation::SoftHsm, dir, token, args)
}

/// [`hsm_admin`] on `implementation`'s token copies in `dir`.
pub fn hsm_admin_on(implementation: Implementation, dir: &Path, token: &str, args: &[&str]) -> Result<String> {
    let (variable, conf) = implementation.private_copy(dir)?;
    let module = implementation.module()?;
    stdout_of(
        Command::new(binary("hsm-admin")?)
            .env(variable, conf)
            .arg("--module")
            .arg(module)
            .args(["--token", token, "--pin-file"])
            .arg(implementation.pin_file(token)?)
            .args(args),
        &format!("hsm-admin {args:?}"),
    )
}
