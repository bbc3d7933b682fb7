//! The one fixture for token tests: the `hsm-test` token that `softhsm-setup/setup.sh`
//! provisions in each PKCS#11 implementation the tests run on, and [`token_tests!`], which
//! runs a test on each of them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::{Module, Result, TokenConfig};

/// A PKCS#11 implementation the token tests run on, each with a `hsm-test` token that
/// `softhsm-setup/setup.sh` initialised (and nothing else in it: tests make their keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token {
    /// SoftHSM2 2.6.1, Debian's package; configured by `SOFTHSM2_CONF` (`.dev/softhsm2.conf`).
    SoftHsm,
    /// Kryoptic (crates.io, a PKCS#11 3.x token over OpenSSL keeping its objects in SQLite),
    /// built by `softhsm-setup/kryoptic.sh`; configured by `KRYOPTIC_CONF`
    /// (`.dev/kryoptic/kryoptic.conf`).
    Kryoptic,
}

impl Token {
    /// `.dev/`, or `.dev/kryoptic/`: where `setup.sh` put this implementation's PIN files.
    fn dev_dir(self) -> PathBuf {
        let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.dev");
        match self {
            Token::SoftHsm => dev,
            Token::Kryoptic => dev.join("kryoptic"),
        }
    }

    /// The shared library.
    fn module_path(self) -> PathBuf {
        match self {
            Token::SoftHsm => PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"),
            // A link to the module cached outside the repository.
            Token::Kryoptic => self.dev_dir().join("libkryoptic_pkcs11.so"),
        }
    }

    /// The environment variable the module reads its configuration (which token files)
    /// from; `.cargo/config.toml` sets both for every cargo-run process.
    fn config_variable(self) -> &'static str {
        match self {
            Token::SoftHsm => "SOFTHSM2_CONF",
            Token::Kryoptic => "KRYOPTIC_CONF",
        }
    }

    /// The user PIN file of the `hsm-test` token.
    fn pin_file(self) -> PathBuf {
        self.dev_dir().join("pins/hsm-test.pin")
    }

    /// The value of [`Self::config_variable`]; panics, naming it, if it is unset.
    fn config(self) -> OsString {
        let variable = self.config_variable();
        std::env::var_os(variable)
            .unwrap_or_else(|| panic!("{variable} is unset: run the tests through cargo (.cargo/config.toml) or make"))
    }
}

/// The module of `token`, loaded once per process (SoftHSM crashes on parallel
/// initialisation). The two are independent libraries with their own state: both are loaded
/// side by side in one test process.
pub(crate) fn module(token: Token) -> Result<Module> {
    static SOFTHSM: Mutex<Option<Module>> = Mutex::new(None);
    static KRYOPTIC: Mutex<Option<Module>> = Mutex::new(None);
    let loaded = match token {
        Token::SoftHsm => &SOFTHSM,
        Token::Kryoptic => &KRYOPTIC,
    };
    let mut slot = loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(module) = slot.as_ref() {
        return Ok(module.clone());
    }
    // Unset, the module would look for its tokens elsewhere and find no `hsm-test`.
    token.config();
    let module = Module::load(&token.module_path())?;
    *slot = Some(module.clone());
    Ok(module)
}

/// Pool configuration for the `hsm-test` token of `token`.
pub(crate) fn hsm_test_config(token: Token) -> Result<TokenConfig> {
    Ok(TokenConfig {
        token_label: "hsm-test".into(),
        pin: crate::read_pin_file(&token.pin_file())?,
        sessions: 2,
        slot_discovery_timeout: Duration::from_secs(5),
        operation_timeout: Duration::from_secs(30),
    })
}

/// PKCS#11 login state is per process and token: one session logging out logs every
/// session of the process out, and SoftHSM rewrites the token's file on every C_Login. A
/// test logs in only while holding this exclusively ([`connect`]) and holds it shared while
/// it uses a token, so that no login lands in another test's operation; the test that
/// logs out on purpose holds it exclusively throughout. One lock serves both
/// implementations: simpler, and logins are rare.
pub(crate) static LOGIN_STATE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Held for as long as a test uses a `hsm-test` token.
pub(crate) type LoginGuard = tokio::sync::RwLockReadGuard<'static, ()>;

/// A pool on the `hsm-test` token of `token` with `config`, logged in while no other test
/// uses a token; the guard keeps others from logging in (or out) while this test uses it.
pub(crate) async fn connect(token: Token, config: TokenConfig) -> Result<(crate::TokenPool, LoginGuard)> {
    let exclusive = LOGIN_STATE.write().await;
    let pool = crate::TokenPool::connect(&module(token)?, config).await?;
    Ok((pool, exclusive.downgrade()))
}

/// Runs each named token test once per [`Token`]: for `async fn name(token: Token) ->
/// Result<()>` in the invoking module it adds a module `name` with the tests `softhsm` and
/// `kryoptic`, so that `cargo test` lists `…::name::softhsm` and `…::name::kryoptic`.
///
/// The tests themselves stay plain functions beside the invocation, where rustfmt and
/// clippy see them; the macro writes only the two calls. A leading attribute replaces
/// `#[tokio::test]`, e.g. `token_tests!(#[tokio::test(flavor = "multi_thread")] name);`.
macro_rules! token_tests {
    (#[$test:meta] $($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[$test]
                async fn softhsm() -> $crate::Result<()> {
                    super::$name($crate::test_support::Token::SoftHsm).await
                }

                #[$test]
                async fn kryoptic() -> $crate::Result<()> {
                    super::$name($crate::test_support::Token::Kryoptic).await
                }
            }
        )+
    };
    ($($name:ident),+ $(,)?) => {
        $crate::test_support::token_tests!(#[tokio::test] $($name),+);
    };
}
pub(crate) use token_tests;

/// A fresh key pair with a unique label in a `hsm-test` token, destroyed by
/// [`TestKey::destroy`].
pub(crate) struct TestKey {
    pub(crate) pool: crate::TokenPool,
    pub(crate) label: String,
    _login: LoginGuard,
}

impl TestKey {
    pub(crate) async fn generate(token: Token, usage: crate::KeyUsage) -> Result<Self> {
        let (pool, login) = connect(token, hsm_test_config(token)?).await?;
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
    pub(crate) public: crate::RsaPublicComponents,
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
            public: crate::RsaPublicComponents::new(&components.n, &components.e).expect("RSA-2048"),
            spki,
        }
    }

    /// Writes the key into the `hsm-test` token of `token` as a public-key object labelled
    /// `label` the way an attacker without the PIN would: from another process (login state
    /// is per process, and this one's pools are logged in) whose session never logs in.
    /// SoftHSM2 2.6 takes it (as a CKA_PRIVATE=false object); Kryoptic 1.5 stores no token
    /// object without a login and refuses (CKR_USER_NOT_LOGGED_IN): then `Err` carries
    /// pkcs11-tool's report, for the test's failure message.
    pub(crate) fn plant_without_login(&self, token: Token, label: &str) -> std::result::Result<(), String> {
        let dir = tempfile_dir("planted");
        let der = dir.join("planted.pub.der");
        std::fs::write(&der, &self.spki).expect("write SPKI");
        // No --login and no PIN: pkcs11-tool opens a read-write session and creates the
        // object in it as it is.
        let output = std::process::Command::new("pkcs11-tool")
            .arg("--module")
            .arg(token.module_path())
            .env(token.config_variable(), token.config())
            .args(["--token-label", "hsm-test", "--type", "pubkey", "--label", label])
            .arg("--write-object")
            .arg(&der)
            .output()
            .expect("pkcs11-tool runs (softhsm-setup/setup.sh installs opensc)");
        std::fs::remove_dir_all(&dir).ok();
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }
}

/// A fresh directory under the system's temporary directory.
pub(crate) fn tempfile_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{what}-{}-{:x}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
