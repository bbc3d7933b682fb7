//! Configuration layered as command line > environment > TOML file > built-in default.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Parser;

use crate::token::{PIN_FILE, TOKEN_LABEL};

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The command line (or an environment variable, or a file value) is not what the
    /// options take; clap's error, with its usage message.
    #[error(transparent)]
    Arguments(#[from] clap::Error),
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// File path.
        path: PathBuf,
        /// I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML")]
    Parse {
        /// File path.
        path: PathBuf,
        /// Parser error with line and column.
        #[source]
        source: toml::de::Error,
    },
    /// A key that no option has: a typo must not be silently ignored.
    #[error("config file {path}: unknown key {key:?}")]
    UnknownKey {
        /// File path.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A value that is neither string, number, boolean nor a list of those.
    #[error("config file {path}: key {key:?} must be a string, number, boolean or list")]
    BadValue {
        /// File path.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A token or key option holds a PKCS#11 URI that cannot be used: malformed, selecting
    /// by what the service does not check, or contradicting another option. No message
    /// quotes a PIN.
    #[error("option {option}")]
    Pkcs11Uri {
        /// The option (its id, as in the file: `token_label`, `tls_key_label`, …).
        option: String,
        /// What is wrong with its URI.
        #[source]
        source: hsm::NameError,
    },
}

/// The service whose configuration is being read: it names every option's environment
/// variable (`<ENV_PREFIX>_<OPTION>`, e.g. `VAULT_LISTEN_PUBLIC`), the configuration file's
/// (`<ENV_PREFIX>_CONFIG`) and the PIN's (`<ENV_PREFIX>_PKCS11_PIN`), and its token label
/// defaults to its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// Program name and default token label, e.g. `vault`.
    pub name: &'static str,
    /// Prefix of its environment variables, e.g. `VAULT`.
    pub env_prefix: &'static str,
}

impl Service {
    /// The environment variable of the option `id` (clap's id: the field name).
    pub fn env_var(&self, id: &str) -> String {
        format!("{}_{}", self.env_prefix, id.to_uppercase())
    }

    /// The environment variable that may carry the token PIN (read by `main`; never an
    /// option, so that a PIN is never accepted on the command line).
    pub fn pin_env_var(&self) -> String {
        self.env_var("pkcs11_pin")
    }

    /// `T`'s command with what every service shares: a `--config FILE` option, each
    /// option's environment variable, and the token label's default.
    pub fn command<T: clap::CommandFactory>(&self) -> clap::Command {
        let mut command = T::command().arg(
            clap::Arg::new(CONFIG)
                .long(CONFIG)
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("TOML file with defaults for every option (keys are the option names with underscores)"),
        );
        let ids = option_ids(&command);
        for id in &ids {
            let env = self.env_var(id);
            command = command.mut_arg(id, |arg| arg.env(env));
        }
        if ids.contains(TOKEN_LABEL) {
            command = command.mut_arg(TOKEN_LABEL, |arg| arg.default_value(self.name).required(false));
        }
        if ids.contains(PIN_FILE) {
            let help = format!(
                "File with the token's user PIN, mode 0600 (or pin-source in a token_label URI); or the PIN \
                 itself in {} (never on the command line)",
                self.pin_env_var()
            );
            command = command.mut_arg(PIN_FILE, |arg| arg.help(help));
        }
        command
    }
}

/// The ids of `command`'s options (clap's own `--help` and `--version` left out).
fn option_ids(command: &clap::Command) -> HashSet<String> {
    command
        .get_arguments()
        .map(|arg| arg.get_id().to_string())
        .filter(|id| id != "help" && id != "version")
        .collect()
}

/// The option naming the configuration file; the parser adds it to every service.
const CONFIG: &str = "config";

/// Parses `T` from the command line and environment, with the TOML file named by
/// `--config` (or `<ENV_PREFIX>_CONFIG`) supplying defaults. File keys are the field
/// names (`listen_public`), as are the options (`--listen-public`); a file key satisfies a
/// required option.
///
/// PKCS#11 URIs in the token and key options are resolved here, once, into the plain
/// label, module and PIN file `T`'s fields hold (see [`crate::token::TokenOptions`]).
///
/// Exits with clap's usage message on bad command-line input, like `T::parse()`.
pub fn parse_layered<T: Parser>(service: Service) -> Result<T, ConfigError> {
    from_process(service, UnknownKeys::Refuse)
}

/// Like [`parse_layered`], but keys of the file that `T` has no option for are skipped:
/// for admin tools that read a service's configuration file for the few options they need.
pub fn parse_layered_ignoring_unknown<T: Parser>(service: Service) -> Result<T, ConfigError> {
    from_process(service, UnknownKeys::Skip)
}

/// The process's arguments and config-file variable, layered; clap's errors (and `--help`,
/// `--version`) end the process with clap's message and code.
fn from_process<T: Parser>(service: Service, unknown: UnknownKeys) -> Result<T, ConfigError> {
    let config_env = std::env::var_os(service.env_var(CONFIG));
    match layered(service, std::env::args_os().collect(), config_env, unknown) {
        Err(ConfigError::Arguments(e)) => e.exit(),
        other => other,
    }
}

/// What to do with a file key no option matches.
#[derive(Clone, Copy, PartialEq, Eq)]
enum UnknownKeys {
    Refuse,
    Skip,
}

/// [`parse_layered`] with explicit arguments (program name first) and value of the
/// config-file variable; returns clap's errors instead of exiting.
pub fn parse_layered_from<T: Parser>(
    service: Service,
    args: Vec<OsString>,
    config_env: Option<OsString>,
) -> Result<T, ConfigError> {
    layered(service, args, config_env, UnknownKeys::Refuse)
}

fn layered<T: Parser>(
    service: Service,
    args: Vec<OsString>,
    config_env: Option<OsString>,
    unknown: UnknownKeys,
) -> Result<T, ConfigError> {
    let mut command = service.command::<T>();
    let mut in_file = HashSet::new();
    if let Some(path) = config_path(&args).or_else(|| config_env.map(PathBuf::from)) {
        let known: HashSet<String> = command.get_arguments().map(|a| a.get_id().to_string()).collect();
        for (key, value) in read_table(&path)? {
            if !known.contains(&key) || key == CONFIG {
                if unknown == UnknownKeys::Skip {
                    continue;
                }
                return Err(ConfigError::UnknownKey { path, key });
            }
            let values = to_arg_values(&value).ok_or_else(|| ConfigError::BadValue {
                path: path.clone(),
                key: key.clone(),
            })?;
            command = command.mut_arg(&key, |arg| arg.default_values(values).required(false));
            in_file.insert(key);
        }
    }
    let matches = command.clone().try_get_matches_from(&args)?;
    // A URI's parts may come from several layers (token from the command line, module from
    // the file): resolved once all are known, then parsed again with the plain values.
    match crate::token::resolve_uris(command, &matches, |id| in_file.contains(id))? {
        None => Ok(T::from_arg_matches(&matches)?),
        Some(resolved) => Ok(T::from_arg_matches(&resolved.try_get_matches_from(args)?)?),
    }
}

/// Checks that `example` (a reference TOML file) documents exactly the options of `T`;
/// returns what is missing or extra, for a unit test that keeps docs and code in step.
pub fn check_documented<T: clap::CommandFactory>(example: &str) -> Result<(), String> {
    let table: toml::Table = toml::from_str(example).map_err(|e| format!("example does not parse: {e}"))?;
    let documented: HashSet<String> = table.keys().cloned().collect();
    let options = option_ids(&T::command());
    let mut undocumented: Vec<_> = options.difference(&documented).collect();
    let mut unknown: Vec<_> = documented.difference(&options).collect();
    undocumented.sort();
    unknown.sort();
    if undocumented.is_empty() && unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "undocumented options {undocumented:?}; example keys that are no option {unknown:?}"
        ))
    }
}

fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let arg = arg.to_str()?;
        if arg == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    None
}

fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// A file value as the option's default values: one for a scalar, one per item for an
/// array (none for an empty one).
fn to_arg_values(value: &toml::Value) -> Option<Vec<String>> {
    match value {
        toml::Value::Array(items) => items.iter().map(to_scalar).collect(),
        scalar => to_scalar(scalar).map(|value| vec![value]),
    }
}

fn to_scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(_) | toml::Value::Datetime(_) | toml::Value::Table(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::FromArgMatches;

    const DEMO: Service = Service {
        name: "demo",
        env_prefix: "DEMO",
    };

    /// A stand-in service configuration.
    #[derive(Debug, Parser)]
    struct Demo {
        #[arg(long, default_value = "built-in")]
        name: String,
        #[arg(long, default_value_t = 1)]
        count: u32,
        #[arg(long, value_delimiter = ',', default_value = "a")]
        list: Vec<String>,
        #[arg(long)]
        token_label: String,
        #[arg(long)]
        required_path: PathBuf,
    }

    fn file(contents: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("demo.toml");
        std::fs::write(&path, contents).expect("write");
        (dir, path)
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("demo")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn the_file_overrides_defaults_and_the_command_line_overrides_the_file() -> Result<(), ConfigError> {
        let (_dir, path) = file("name = \"from-file\"\ncount = 7\nlist = [\"x\", \"y\"]\nrequired_path = \"/p\"\n");
        let path = path.to_string_lossy().into_owned();
        let from_file: Demo = parse_layered_from(DEMO, args(&["--config", &path]), None)?;
        assert_eq!((from_file.name.as_str(), from_file.count), ("from-file", 7));
        assert_eq!(from_file.list, ["x", "y"]);
        assert_eq!(
            from_file.required_path,
            Path::new("/p"),
            "a file key satisfies a required option"
        );
        let overridden: Demo = parse_layered_from(DEMO, args(&["--config", &path, "--count", "9"]), None)?;
        assert_eq!((overridden.name.as_str(), overridden.count), ("from-file", 9));
        let via_env: Demo = parse_layered_from(DEMO, args(&[]), Some(path.into()))?;
        assert_eq!(via_env.count, 7);
        let defaults: Demo = parse_layered_from(DEMO, args(&["--required-path", "/q"]), None)?;
        assert_eq!((defaults.name.as_str(), defaults.count), ("built-in", 1));
        Ok(())
    }

    #[test]
    fn an_empty_list_in_the_file_is_an_empty_list() -> Result<(), ConfigError> {
        let (_dir, path) = file("list = []\nrequired_path = \"/p\"\n");
        let path = path.to_string_lossy().into_owned();
        let from_file: Demo = parse_layered_from(DEMO, args(&["--config", &path]), None)?;
        assert!(from_file.list.is_empty(), "{:?}", from_file.list);
        Ok(())
    }

    #[test]
    fn every_option_has_its_prefixed_variable_and_the_token_label_defaults_to_the_service() {
        let command = DEMO.command::<Demo>();
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" {
                continue;
            }
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert_eq!(env, Some(format!("DEMO_{}", id.to_uppercase())), "{id}");
        }
        let matches = command
            .try_get_matches_from(args(&["--required-path", "/q"]))
            .expect("parses");
        let parsed = Demo::from_arg_matches(&matches).expect("parses");
        assert_eq!(parsed.token_label, "demo");
        assert_eq!(DEMO.pin_env_var(), "DEMO_PKCS11_PIN");
    }

    /// A stand-in service with the shared token options and a key option.
    #[derive(Debug, Parser)]
    struct KeyDemo {
        #[command(flatten)]
        token: crate::token::TokenOptions,
        #[arg(long, default_value = "demo-signing")]
        signing_key_label: String,
    }

    const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

    #[test]
    fn a_token_uri_gives_the_token_module_and_pin_file_and_key_uris_their_labels() -> Result<(), ConfigError> {
        let plain: KeyDemo = parse_layered_from(DEMO, args(&[]), None)?;
        assert_eq!(plain.token.token_label, "demo");
        assert_eq!(plain.token.pkcs11_module, Path::new(SOFTHSM));
        assert_eq!(plain.token.pin_file, None);
        let parsed: KeyDemo = parse_layered_from(
            DEMO,
            args(&[
                "--token-label",
                "pkcs11:token=demo%20token?module-path=/opt/hsm.so&pin-source=file:/run/demo.pin",
                "--signing-key-label",
                "pkcs11:token=demo%20token;object=demo%3Bsigning;type=private",
            ]),
            None,
        )?;
        assert_eq!(parsed.token.token_label, "demo token");
        assert_eq!(parsed.token.pkcs11_module, Path::new("/opt/hsm.so"));
        assert_eq!(parsed.token.pin_file.as_deref(), Some(Path::new("/run/demo.pin")));
        assert_eq!(parsed.signing_key_label, "demo;signing");
        Ok(())
    }

    #[test]
    fn uris_in_the_file_resolve_as_on_the_command_line_and_agree_with_its_own_settings() -> Result<(), ConfigError> {
        let (_dir, path) = file(&format!(
            "token_label = \"pkcs11:token=t?module-path={SOFTHSM}&pin-source=/run/t.pin\"\n\
             pkcs11_module = \"{SOFTHSM}\"\n\
             pin_file = \"/run/t.pin\"\n\
             signing_key_label = \"pkcs11:object=k\"\n"
        ));
        let parsed: KeyDemo = parse_layered_from(DEMO, args(&["--config", &path.to_string_lossy()]), None)?;
        assert_eq!(parsed.token.token_label, "t");
        assert_eq!(parsed.token.pin_file.as_deref(), Some(Path::new("/run/t.pin")));
        assert_eq!(parsed.signing_key_label, "k");
        Ok(())
    }

    /// The option and error of a configuration that must be refused for its URI.
    fn refused(list: &[&str], config: Option<&Path>) -> (String, hsm::NameError) {
        let mut all = list.to_vec();
        let config = config.map(|path| path.to_string_lossy().into_owned());
        if let Some(config) = &config {
            all.extend(["--config", config.as_str()]);
        }
        match parse_layered_from::<KeyDemo>(DEMO, args(&all), None) {
            Err(ConfigError::Pkcs11Uri { option, source }) => (option, source),
            other => panic!("{list:?} {config:?}: {other:?}"),
        }
    }

    #[test]
    fn a_token_uri_that_contradicts_an_explicit_module_or_pin_file_is_refused_naming_both() {
        let uri = "pkcs11:token=t?module-path=/opt/hsm.so&pin-source=/run/t.pin";
        // The file sets the default module: explicitly, so it must agree.
        let (_dir, path) = file(&format!("pkcs11_module = \"{SOFTHSM}\"\n"));
        let (option, error) = refused(&["--token-label", uri], Some(&path));
        assert_eq!(option, "token_label");
        assert!(
            matches!(&error, hsm::NameError::Conflict { attribute: hsm::UriAttribute::ModulePath, option, configured, .. }
                if option == "pkcs11_module" && configured == Path::new(SOFTHSM)),
            "{error:?}"
        );
        let (_, error) = refused(
            &[
                "--token-label",
                uri,
                "--pkcs11-module",
                "/opt/hsm.so",
                "--pin-file",
                "/run/other.pin",
            ],
            None,
        );
        assert!(
            matches!(&error, hsm::NameError::Conflict { attribute: hsm::UriAttribute::PinSource, from_uri, .. }
                if from_uri == Path::new("/run/t.pin")),
            "{error:?}"
        );
    }

    #[test]
    fn a_key_uri_of_another_token_is_refused_naming_the_key_option() {
        let (option, error) = refused(
            &["--token-label", "t", "--signing-key-label", "pkcs11:token=u;object=k"],
            None,
        );
        assert_eq!(option, "signing_key_label");
        assert!(
            matches!(
                error,
                hsm::NameError::KeyElsewhere {
                    attribute: hsm::UriAttribute::Token,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn a_pin_value_in_a_token_uri_is_refused_without_the_pin_in_the_message() {
        let (option, error) = refused(&["--token-label", "pkcs11:token=t?pin-value=73921-canary"], None);
        assert_eq!(
            (option.as_str(), &error),
            ("token_label", &hsm::NameError::Uri(hsm::UriError::PinValue))
        );
        let error = ConfigError::Pkcs11Uri { option, source: error };
        let message = crate::report::error_chain(&error);
        assert!(message.contains("pin-value") && !message.contains("73921"), "{message}");
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error_not_ignored() {
        let (_dir, path) = file("nmae = \"typo\"\n");
        let result = parse_layered_from::<Demo>(DEMO, args(&["--config", &path.to_string_lossy()]), None);
        assert!(matches!(result, Err(ConfigError::UnknownKey { ref key, .. }) if key == "nmae"));
    }
}
