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
/// session of the process out, and SoftHSM rewrites the token's file on every C_Login. A
/// test logs in only while holding this exclusively ([`connect`]) and holds it shared while
/// it uses the token, so that no login lands in another test's operation; the test that
/// logs out on purpose holds it exclusively throughout.
pub(crate) static LOGIN_STATE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Held for as long as a test uses the `hsm-test` token.
pub(crate) type LoginGuard = tokio::sync::RwLockReadGuard<'static, ()>;

/// A pool on the `hsm-test` token with `config`, logged in while no other test uses the
/// token; the guard keeps others from logging in (or out) while this test uses it.
pub(crate) async fn connect(config: TokenConfig) -> Result<(crate::TokenPool, LoginGuard)> {
    let exclusive = LOGIN_STATE.write().await;
    let pool = crate::TokenPool::connect(&module()?, config).await?;
    Ok((pool, exclusive.downgrade()))
}

/// A fresh key pair with a unique label in the `hsm-test` token, destroyed by
/// [`TestKey::destroy`].
pub(crate) struct TestKey {
    pub(crate) pool: crate::TokenPool,
    pub(crate) label: String,
    _login: LoginGuard,
}

impl TestKey {
    pub(crate) async fn generate(usage: crate::KeyUsage) -> Result<Self> {
        let (pool, login) = connect(hsm_test_config()?).await?;
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

pub(crate) fn rand_suffix() -> u64 {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes).expect("system RNG");
    u64::from_le_bytes(bytes)
}

/// Runs `openssl` (installed by `setup.sh`), an independent implementation to check against;
/// returns its stdout and panics with its stderr if it fails.
pub(crate) fn openssl(args: &[&str]) -> Vec<u8> {
    let output = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs (softhsm-setup/setup.sh installs it)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// An attacker's RSA-2048 public key, made in software.
pub(crate) struct PlantedKey {
    pub(crate) modulus: Vec<u8>,
    spki: Vec<u8>,
}

impl PlantedKey {
    pub(crate) fn generate() -> Self {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::KeyPair;
        let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("keygen");
        let components = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(key.public_key());
        let spki = key.public_key().as_der().expect("SPKI").as_ref().to_vec();
        Self {
            modulus: components.n,
            spki,
        }
    }

    /// Writes the key into the `hsm-test` token as a public-key object labelled `label`
    /// the way an attacker without the PIN can: from another process (login state is per
    /// process, and this one's pools are logged in) whose session never logs in.
    pub(crate) fn plant_without_login(&self, label: &str) {
        let dir = tempfile_dir("planted");
        let der = dir.join("planted.pub.der");
        std::fs::write(&der, &self.spki).expect("write SPKI");
        let module = std::env::var_os("PKCS11_MODULE")
            .map_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"), PathBuf::from);
        // No --login and no PIN: pkcs11-tool opens a read-write session and creates the
        // object in it as it is.
        let output = std::process::Command::new("pkcs11-tool")
            .arg("--module")
            .arg(&module)
            .args(["--token-label", "hsm-test", "--type", "pubkey", "--label", label])
            .arg("--write-object")
            .arg(&der)
            .output()
            .expect("pkcs11-tool runs (softhsm-setup/setup.sh installs opensc)");
        std::fs::remove_dir_all(&dir).ok();
        assert!(
            output.status.success(),
            "pkcs11-tool --write-object without login: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A fresh directory under the system's temporary directory.
pub(crate) fn tempfile_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{what}-{}-{:x}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
