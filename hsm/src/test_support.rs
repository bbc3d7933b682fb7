//! The one fixture for tests against SoftHSM: the `hsm-test` token provisioned in `.dev/`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::{Module, Result, TokenConfig};

/// The PKCS#11 module, loaded once per test process (SoftHSM crashes on parallel
/// initialisation). `SOFTHSM2_CONF` comes from `.cargo/config.toml` or the Makefile.
pub(crate) fn module() -> Result<Module> {
    static MODULE: Mutex<Option<Module>> = Mutex::new(None);
    let mut slot = MODULE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(module) = slot.as_ref() {
        return Ok(module.clone());
    }
    let path = std::env::var_os("PKCS11_MODULE")
        .map_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"), PathBuf::from);
    let module = Module::load(&path)?;
    *slot = Some(module.clone());
    Ok(module)
}

/// Pool configuration for the `hsm-test` token.
pub(crate) fn hsm_test_config() -> Result<TokenConfig> {
    let pin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.dev/pins/hsm-test.pin");
    Ok(TokenConfig {
        token_label: "hsm-test".into(),
        pin: crate::read_pin_file(&pin)?,
        sessions: 2,
        slot_discovery_timeout: Duration::from_secs(5),
        operation_timeout: Duration::from_secs(30),
    })
}

/// PKCS#11 login state is per process and token: one session logging out logs every
/// session of the process out. The test that does so on purpose holds this exclusively;
/// every other test using the token holds it shared ([`login_shared`]), so that none of
/// them logs in behind its back (making its recovery check pass vacuously) or loses its
/// login mid-operation.
pub(crate) static LOGIN_STATE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Held for as long as a test uses the `hsm-test` token.
pub(crate) async fn login_shared() -> tokio::sync::RwLockReadGuard<'static, ()> {
    LOGIN_STATE.read().await
}

/// A fresh key pair with a unique label in the `hsm-test` token, destroyed by
/// [`TestKey::destroy`].
pub(crate) struct TestKey {
    pub(crate) pool: crate::TokenPool,
    pub(crate) label: String,
    _login: tokio::sync::RwLockReadGuard<'static, ()>,
}

impl TestKey {
    pub(crate) async fn generate(usage: crate::KeyUsage) -> Result<Self> {
        let login = login_shared().await;
        let pool = crate::TokenPool::connect(&module()?, hsm_test_config()?).await?;
        let label = format!("test-{:?}-{}-{:x}", usage, std::process::id(), rand_suffix());
        crate::generate_rsa_key_pair(
            &pool,
            crate::RsaKeySpec {
                label: label.clone(),
                id: vec![0x7e],
                bits: 2048,
                usage,
            },
        )
        .await?;
        Ok(Self {
            pool,
            label,
            _login: login,
        })
    }

    pub(crate) async fn destroy(self) -> Result<()> {
        crate::destroy_key_pair(&self.pool, &self.label).await
    }
}

fn rand_suffix() -> u64 {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes).expect("system RNG");
    u64::from_le_bytes(bytes)
}

/// Runs `openssl` (installed by `setup.sh`), an independent implementation to check against;
/// returns its stdout and stderr, in that order, and whether it exited 0.
pub(crate) fn openssl_output(args: &[&str]) -> (Vec<u8>, String, bool) {
    let output = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs (softhsm-setup/setup.sh installs it)");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.stdout, stderr, output.status.success())
}

/// Runs `openssl` and returns its stdout; panics if it fails.
pub(crate) fn openssl(args: &[&str]) -> Vec<u8> {
    let (stdout, stderr, ok) = openssl_output(args);
    assert!(ok, "openssl {args:?}: {stderr}");
    stdout
}
