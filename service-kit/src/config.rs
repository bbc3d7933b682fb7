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
    parse_layered_from(std::env::args_os().collect(), std::env::var_os(config_env))
}

/// Like [`parse_layered`], but keys of the file that `T` has no option for are skipped:
/// for admin tools that read a service's configuration file for the few options they need.
pub fn parse_layered_ignoring_unknown<T: Parser>(config_env: &str) -> Result<T, ConfigFileError> {
    layered(
        std::env::args_os().collect(),
        std::env::var_os(config_env),
        UnknownKeys::Skip,
    )
}

/// What to do with a file key no option matches.
#[derive(Clone, Copy, PartialEq, Eq)]
enum UnknownKeys {
    Refuse,
    Skip,
}

/// [`parse_layered`] with explicit arguments (program name first) and value of the
/// config-file variable.
pub fn parse_layered_from<T: Parser>(args: Vec<OsString>, config_env: Option<OsString>) -> Result<T, ConfigFileError> {
    layered(args, config_env, UnknownKeys::Refuse)
}

fn layered<T: Parser>(
    args: Vec<OsString>,
    config_env: Option<OsString>,
    unknown: UnknownKeys,
) -> Result<T, ConfigFileError> {
    let mut command = T::command();
    if let Some(path) = config_path(&args).or_else(|| config_env.map(PathBuf::from)) {
        let known: HashSet<String> = command.get_arguments().map(|a| a.get_id().to_string()).collect();
        for (key, value) in read_table(&path)? {
            if !known.contains(&key) || key == "config" {
                if unknown == UnknownKeys::Skip {
                    continue;
                }
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

/// Checks that `example` (a reference TOML file) documents exactly the options of `T`,
/// and that every option has an environment variable `<env_prefix>_<OPTION>`. Returns
/// what is missing or extra, for a unit test that keeps docs and code in step.
pub fn check_documented<T: clap::CommandFactory>(example: &str, env_prefix: &str) -> Result<(), String> {
    let table: toml::Table = toml::from_str(example).map_err(|e| format!("example does not parse: {e}"))?;
    let documented: HashSet<String> = table.keys().cloned().collect();
    let command = T::command();
    let mut options = HashSet::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().to_string();
        if id == "help" || id == "version" {
            continue;
        }
        let expected = format!("{env_prefix}_{}", id.to_uppercase());
        if arg.get_env().map(|e| e.to_string_lossy().into_owned()) != Some(expected.clone()) {
            return Err(format!("option {id} should be settable as {expected}"));
        }
        if id != "config" {
            options.insert(id);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in service configuration.
    #[derive(Debug, Parser)]
    struct Demo {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = "built-in")]
        name: String,
        #[arg(long, default_value_t = 1)]
        count: u32,
        #[arg(long, value_delimiter = ',', default_value = "a")]
        list: Vec<String>,
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
    fn the_file_overrides_defaults_and_the_command_line_overrides_the_file() -> Result<(), ConfigFileError> {
        let (_dir, path) = file("name = \"from-file\"\ncount = 7\nlist = [\"x\", \"y\"]\n");
        let path = path.to_string_lossy().into_owned();
        let from_file: Demo = parse_layered_from(args(&["--config", &path]), None)?;
        assert_eq!((from_file.name.as_str(), from_file.count), ("from-file", 7));
        assert_eq!(from_file.list, ["x", "y"]);
        let overridden: Demo = parse_layered_from(args(&["--config", &path, "--count", "9"]), None)?;
        assert_eq!((overridden.name.as_str(), overridden.count), ("from-file", 9));
        let via_env: Demo = parse_layered_from(args(&[]), Some(path.into()))?;
        assert_eq!(via_env.count, 7);
        let defaults: Demo = parse_layered_from(args(&[]), None)?;
        assert_eq!((defaults.name.as_str(), defaults.count), ("built-in", 1));
        Ok(())
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error_not_ignored() {
        let (_dir, path) = file("nmae = \"typo\"\n");
        let result = parse_layered_from::<Demo>(args(&["--config", &path.to_string_lossy()]), None);
        assert!(matches!(result, Err(ConfigFileError::UnknownKey { ref key, .. }) if key == "nmae"));
    }
}
