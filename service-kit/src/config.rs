//! Configuration layered as command line > environment > TOML file > built-in default.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Parser;

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
                "File with the token's user PIN, mode 0600; or the PIN itself in {} (never on the command line)",
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

/// The option that defaults to the service's name.
const TOKEN_LABEL: &str = "token_label";

/// The option whose help names the service's PIN variable.
const PIN_FILE: &str = "pin_file";

/// Parses `T` from the command line and environment, with the TOML file named by
/// `--config` (or `<ENV_PREFIX>_CONFIG`) supplying defaults. File keys are the field
/// names (`listen_public`), as are the options (`--listen-public`); a file key satisfies a
/// required option.
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
            command = command.mut_arg(key, |arg| arg.default_values(values).required(false));
        }
    }
    let matches = command.try_get_matches_from(args)?;
    Ok(T::from_arg_matches(&matches)?)
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

    #[test]
    fn an_unknown_key_in_the_file_is_an_error_not_ignored() {
        let (_dir, path) = file("nmae = \"typo\"\n");
        let result = parse_layered_from::<Demo>(DEMO, args(&["--config", &path.to_string_lossy()]), None);
        assert!(matches!(result, Err(ConfigError::UnknownKey { ref key, .. }) if key == "nmae"));
    }
}
