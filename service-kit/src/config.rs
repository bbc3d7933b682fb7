//! Configuration layered as command line > environment > TOML file > built-in default.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Parser;

/// Why the configuration file could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
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

/// Parses `T` from the command line and environment, with the TOML file named by
/// `--config` (or the `config_env` variable) supplying defaults. File keys are the
/// field names (`listen_public`), as are the options (`--listen-public`).
///
/// Exits with clap's usage message on bad command-line input, like `T::parse()`.
pub fn parse_layered<T: Parser>(config_env: &str) -> Result<T, ConfigFileError> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let mut command = T::command();
    if let Some(path) =
        config_path(&args).or_else(|| std::env::var_os(config_env).map(PathBuf::from))
    {
        let known: HashSet<String> = command
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect();
        for (key, value) in read_table(&path)? {
            if !known.contains(&key) || key == "config" {
                return Err(ConfigFileError::UnknownKey { path, key });
            }
            let value = to_arg_value(&value).ok_or_else(|| ConfigFileError::BadValue {
                path: path.clone(),
                key: key.clone(),
            })?;
            command = command.mut_arg(key, |arg| arg.default_value(value));
        }
    }
    let matches = command.get_matches_from(args);
    Ok(T::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()))
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

fn read_table(path: &Path) -> Result<toml::Table, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigFileError::Parse {
        path: path.to_owned(),
        source,
    })
}

fn to_arg_value(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(to_arg_value)
            .collect::<Option<Vec<_>>>()
            .map(|v| v.join(",")),
        toml::Value::Datetime(_) | toml::Value::Table(_) => None,
    }
}
