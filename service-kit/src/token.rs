//! A service's PKCS#11 token: its options, the PKCS#11 URIs they may hold, and opening it
//! with errors that name it.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::parser::ValueSource;
use secrecy::SecretString;

use crate::config::{ConfigError, Service};

/// The token options every service (and its admin tool) has, under the same names, file
/// keys and environment variables (`<PREFIX>_PKCS11_MODULE`, …; see [`Service`]).
///
/// `token_label` and every option whose id ends in [`KEY_LABEL_SUFFIX`] may hold a
/// PKCS#11 URI (RFC 7512) instead of a label; the configuration layer resolves those into
/// the plain values these fields then hold (see [`crate::config::parse_layered`]).
#[derive(Debug, Clone, clap::Args)]
pub struct TokenOptions {
    /// PKCS#11 module to load (or `module-path` in a `token_label` URI).
    #[arg(long, default_value = "/usr/lib/softhsm/libsofthsm2.so")]
    pub pkcs11_module: PathBuf,
    /// Label of the service's token, or a PKCS#11 URI `pkcs11:token=LABEL` that may also
    /// give `module-path` and `pin-source` (an explicitly set `pkcs11_module` or `pin_file`
    /// must then agree); defaults to the service's name.
    #[arg(long)]
    pub token_label: String,
    /// File with the token's user PIN, mode 0600 (or `pin-source` in a `token_label` URI);
    /// or the PIN itself in the service's `<PREFIX>_PKCS11_PIN` (its help names it); never
    /// on the command line.
    #[arg(long)]
    pub pin_file: Option<PathBuf>,
    /// PKCS#11 sessions (and concurrent token operations).
    #[arg(long, default_value_t = 4)]
    pub pkcs11_sessions: usize,
    /// Instances of the module, each its own connection to a token server: `auto` (one per
    /// session, up to 4, for p11-kit-client.so, whose server answers each connection one
    /// request at a time; one for any other module) or a number. A module that keeps one
    /// state per process (SoftHSM loaded in process) is always one.
    #[arg(long, default_value = "auto")]
    pub pkcs11_connections: Connections,
    /// Bound on one token operation, queueing included, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub pkcs11_timeout_ms: u64,
    /// Bound on finding the token at start-up and after a token failure, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub slot_discovery_timeout_ms: u64,
}

impl TokenOptions {
    /// For admin tools, which share the service's options: at most two sessions on one
    /// connection are plenty for one command, and they wait longer than a service would (at least 10 s to find
    /// the token, 2 min per operation: key generation on a slow HSM), since nobody is
    /// queueing behind them.
    pub fn for_admin(&self) -> Self {
        Self {
            pkcs11_sessions: self.pkcs11_sessions.clamp(1, 2),
            pkcs11_connections: Connections::Exactly(std::num::NonZeroUsize::MIN),
            slot_discovery_timeout_ms: self.slot_discovery_timeout_ms.max(10_000),
            pkcs11_timeout_ms: self.pkcs11_timeout_ms.max(120_000),
            ..self.clone()
        }
    }

    /// Loads the module, finds the token by label and logs in. `env_pin` is the value of
    /// `service`'s PIN variable, read by `main` (library code reads no environment); the
    /// PIN file wins over it.
    ///
    /// A PIN from the environment is accepted with a warning: the environment a process
    /// was started with lives on its initial stack, which `unsetenv` does not touch, so the
    /// PIN stays in `/proc/PID/environ` (and in whatever started the process) for as long as
    /// it runs. The warning names the variable, never the value.
    pub async fn connect(&self, service: Service, env_pin: Option<SecretString>) -> anyhow::Result<hsm::TokenPool> {
        let variable = service.pin_env_var();
        let pin = match (&self.pin_file, env_pin) {
            (Some(path), env_pin) => {
                if env_pin.is_some() {
                    tracing::warn!(
                        variable = %variable,
                        "the PIN file is used and this PIN variable ignored, but its value stays readable \
                         in /proc/PID/environ while the process runs: unset it"
                    );
                }
                hsm::read_pin_file(path)?
            }
            (None, Some(pin)) => {
                tracing::warn!(
                    variable = %variable,
                    "token PIN taken from the environment: it stays readable in /proc/PID/environ \
                     while the process runs; use pin_file in production"
                );
                pin
            }
            (None, None) => {
                anyhow::bail!("no token PIN: set --pin-file (or pin_file in the config file) or {variable}")
            }
        };
        let connections = match self.pkcs11_connections {
            Connections::Auto => hsm::Module::default_connections(&self.pkcs11_module, self.pkcs11_sessions),
            Connections::Exactly(count) => count.get(),
        };
        let module = hsm::Module::load_connections(&self.pkcs11_module, connections)?;
        let config = hsm::TokenConfig {
            token_label: self.token_label.clone(),
            pin,
            sessions: self.pkcs11_sessions,
            slot_discovery_timeout: Duration::from_millis(self.slot_discovery_timeout_ms),
            operation_timeout: Duration::from_millis(self.pkcs11_timeout_ms),
        };
        hsm::TokenPool::connect(&module, config).await.with_context(|| {
            format!(
                "cannot open token {:?} with module {}",
                self.token_label,
                self.pkcs11_module.display()
            )
        })
    }
}

/// The option naming the token; its default is the service's name.
pub(crate) const TOKEN_LABEL: &str = "token_label";

/// The option naming the module.
const PKCS11_MODULE: &str = "pkcs11_module";

/// The option naming the PIN file.
pub(crate) const PIN_FILE: &str = "pin_file";

/// Every option whose id ends so names a private key in the service's token
/// (`wrapping_key_label`, `tls_key_label`, …): by its label, or by a PKCS#11 URI with
/// `object=` (and `type=private` or none; a `token=`, `module-path` or `pin-source` in it
/// must be the service's).
pub const KEY_LABEL_SUFFIX: &str = "_key_label";

/// Resolves the PKCS#11 URIs among `command`'s token and key options, as `matches` holds
/// them, into the plain values the rest of the service uses: `None` when no option holds a
/// URI (nothing changes), else `command` made to yield the token's label, the module and
/// PIN file its URI gives, and each key's label, when it parses the same sources again.
///
/// `set_in_file(id)` tells whether the configuration file set option `id`: clap sees a file
/// value as a default, but it is as explicit as the command line, and an explicit module or
/// PIN file must agree with the URI's.
pub(crate) fn resolve_uris(
    mut command: clap::Command,
    matches: &clap::ArgMatches,
    set_in_file: impl Fn(&str) -> bool,
) -> Result<Option<clap::Command>, ConfigError> {
    let ids: Vec<String> = command.get_arguments().map(|arg| arg.get_id().to_string()).collect();
    let has = |id: &str| ids.iter().any(|known| known == id);
    // The value the option ends up with, as given (before its value parser).
    let raw = |id: &str| {
        if has(id) {
            matches.get_raw(id)?.next_back()?.to_str()
        } else {
            None
        }
    };
    let token = raw(TOKEN_LABEL).unwrap_or_default();
    let keys: Vec<(&str, &str)> = ids
        .iter()
        .filter(|id| id.ends_with(KEY_LABEL_SUFFIX))
        .filter_map(|id| Some((id.as_str(), raw(id)?)))
        .collect();
    if !hsm::is_pkcs11_uri(token) && !keys.iter().any(|(_, value)| hsm::is_pkcs11_uri(value)) {
        return Ok(None);
    }
    let set = |id: &str| {
        has(id)
            && (set_in_file(id)
                || matches!(
                    matches.value_source(id),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                ))
    };
    let configured = |option: &'static str| hsm::ConfiguredPath {
        option,
        value: raw(option).map(Path::new),
        explicit: set(option),
    };
    let (module, pin_file) = (raw(PKCS11_MODULE), raw(PIN_FILE));
    let uri_error = |option: &str| {
        let option = option.to_owned();
        move |source| ConfigError::Pkcs11Uri { option, source }
    };
    let selection = hsm::TokenSelection::resolve(token, configured(PKCS11_MODULE), configured(PIN_FILE))
        .map_err(uri_error(TOKEN_LABEL))?;
    if selection.label != token {
        command = command.mut_arg(TOKEN_LABEL, |arg| {
            arg.value_parser(ResolvedLabel::new(token, &selection.label))
        });
    }
    for (id, given, resolved) in [
        (PKCS11_MODULE, module, &selection.module),
        (PIN_FILE, pin_file, &selection.pin_file),
    ] {
        // Only where the option was not set: an explicit one equals the URI's already.
        if let Some(path) = resolved
            .as_ref()
            .filter(|path| has(id) && given.map(Path::new) != Some(path.as_path()))
        {
            command = command.mut_arg(id, |arg| arg.default_value(path.clone().into_os_string()));
        }
    }
    for (id, value) in keys {
        let label = selection.key_label(value).map_err(uri_error(id))?;
        if label != value {
            command = command.mut_arg(id, |arg| arg.value_parser(ResolvedLabel::new(value, &label)));
        }
    }
    Ok(Some(command))
}

/// The value parser of a label option that was given a PKCS#11 URI: that URI parses to the
/// label it resolved to; any other value (one the URI overrode) as a plain string.
#[derive(Clone)]
struct ResolvedLabel {
    uri: OsString,
    label: String,
}

impl ResolvedLabel {
    fn new(uri: &str, label: &str) -> Self {
        Self {
            uri: uri.into(),
            label: label.to_owned(),
        }
    }
}

impl clap::builder::TypedValueParser for ResolvedLabel {
    type Value = String;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<String, clap::Error> {
        if value == self.uri {
            Ok(self.label.clone())
        } else {
            clap::builder::StringValueParser::new().parse_ref(command, arg, value)
        }
    }
}

/// How many instances of the PKCS#11 module a service loads (see
/// [`hsm::Module::load_connections`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connections {
    /// [`hsm::Module::default_connections`] for the module and the session count.
    Auto,
    /// This many, or fewer when the module keeps one state per process.
    Exactly(std::num::NonZeroUsize),
}

impl std::str::FromStr for Connections {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value == "auto" {
            return Ok(Self::Auto);
        }
        value
            .parse()
            .map(Self::Exactly)
            .map_err(|_| format!("{value:?} is neither \"auto\" nor a number of connections from 1 up"))
    }
}

/// The TLS key labelled `label` in the token, for rustls, after a test signature so that
/// a key the token will not sign with stops the service at start-up, not at the first
/// handshake. Handshake signatures are counted by outcome in
/// `tls_handshake_signatures_total`.
///
/// A server's key (which anyone who connects makes sign) takes `Some((sessions, wait))`:
/// its signatures run on that many sessions of their own and wait at most `wait` for one
/// (see [`hsm::TokenTlsKey::with_handshake_budget`]). A client's key (`None`: only the service's
/// own connections make it sign) shares the requests' sessions and waits its turn.
pub async fn tls_key(
    pool: &hsm::TokenPool,
    label: &str,
    handshake_budget: Option<(usize, std::time::Duration)>,
) -> anyhow::Result<std::sync::Arc<dyn rustls::sign::SigningKey>> {
    let context = || format!("cannot use TLS key {label:?} in token {:?}", pool.token_label());
    let mut key = hsm::TokenTlsKey::load(pool.clone(), label)
        .await
        .with_context(context)?;
    if let Some((sessions, wait)) = handshake_budget {
        key = key.with_handshake_budget(sessions, wait);
    }
    let probe = key.clone();
    tokio::task::spawn_blocking(move || probe.sign(probe.preferred_scheme(), b"start-up self test"))
        .await?
        .with_context(context)?;
    Ok(std::sync::Arc::new(CountedTlsKey(key)))
}

/// A token TLS key whose every handshake signature is counted by outcome: `signed`,
/// `busy` (its handshake sessions were all in use: the handshake failed at once) or
/// `failed` (the token refused or is unreachable, which is also logged).
#[derive(Debug)]
struct CountedTlsKey(hsm::TokenTlsKey);

#[derive(Debug)]
struct CountedTlsSigner {
    key: hsm::TokenTlsKey,
    scheme: rustls::SignatureScheme,
}

impl rustls::sign::SigningKey for CountedTlsKey {
    fn choose_scheme(&self, offered: &[rustls::SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        Some(Box::new(CountedTlsSigner {
            key: self.0.clone(),
            scheme: self.0.scheme_for(offered)?,
        }))
    }

    fn public_key(&self) -> Option<rustls::pki_types::SubjectPublicKeyInfoDer<'_>> {
        self.0.public_key()
    }

    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        self.0.algorithm()
    }
}

impl rustls::sign::Signer for CountedTlsSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let result = self.key.sign(self.scheme, message);
        let outcome = match &result {
            Ok(_) => "signed",
            Err(hsm::Error::Busy { .. }) => "busy",
            Err(error) => {
                tracing::warn!(key = self.key.label(), error = %error, "TLS handshake signature failed in the token");
                "failed"
            }
        };
        crate::metrics::transport().handshake_signature(self.key.label(), outcome);
        result.map_err(|e| rustls::Error::General(format!("token signature failed: {e}")))
    }

    fn scheme(&self) -> rustls::SignatureScheme {
        self.scheme
    }
}

#[cfg(test)]
mod tests {
    use super::Connections;

    #[test]
    fn connections_are_auto_or_a_positive_number() {
        assert_eq!("auto".parse(), Ok(Connections::Auto));
        assert_eq!("3".parse(), Ok(Connections::Exactly(3.try_into().expect("non-zero"))));
        assert!("0".parse::<Connections>().is_err());
        assert!("many".parse::<Connections>().is_err());
    }
}
