//! Settings from flags, the environment, the config file and defaults, in that order.

use std::path::{Path, PathBuf};

use reqwest::Url;
use serde::Deserialize;

use crate::cli::Global;
use crate::error::{Service, UsageError};

/// manager's URL when no layer names one.
pub const DEFAULT_MANAGER_URL: &str = "https://127.0.0.1:8000";
/// vault's public URL when no layer names one.
pub const DEFAULT_VAULT_URL: &str = "https://127.0.0.1:8001";

/// One source of settings; every field optional. Also the config file's shape
/// (`client.toml`): `manager_url`, `vault_url`, `ca`, `user_id`, nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// manager's base URL, `https://…`.
    pub manager_url: Option<String>,
    /// vault's public base URL, `https://…`.
    pub vault_url: Option<String>,
    /// PEM file of the only CAs to trust; in the file, relative to the file's directory.
    pub ca: Option<PathBuf>,
    /// Default owner for `store`.
    pub user_id: Option<String>,
}

impl Layer {
    /// The flags' layer.
    pub fn from_flags(global: &Global, user_id: Option<&str>) -> Self {
        Self {
            manager_url: global.manager_url.clone(),
            vault_url: global.vault_url.clone(),
            ca: global.ca.clone(),
            user_id: user_id.map(str::to_owned),
        }
    }

    /// The environment's layer, through `var` (the process environment in `main`); an empty
    /// variable counts as unset.
    pub fn from_env(var: &dyn Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| var(name).filter(|value| !value.is_empty());
        Self {
            manager_url: get("SECRET_STORE_MANAGER_URL"),
            vault_url: get("SECRET_STORE_VAULT_URL"),
            ca: get("SECRET_STORE_CA").map(PathBuf::from),
            user_id: get("SECRET_STORE_USER_ID"),
        }
    }

    /// The config file's layer; a relative `ca` is taken relative to the file.
    pub fn from_file(path: &Path) -> Result<Self, UsageError> {
        let text = std::fs::read_to_string(path).map_err(|source| UsageError::ConfigRead {
            path: path.to_owned(),
            source,
        })?;
        let mut layer: Layer = toml::from_str(&text).map_err(|source| UsageError::ConfigParse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        if let (Some(ca), Some(dir)) = (&layer.ca, path.parent()) {
            layer.ca = Some(dir.join(ca));
        }
        Ok(layer)
    }

    /// Each field from `self`, else from `lower`.
    fn over(self, lower: Layer) -> Layer {
        Layer {
            manager_url: self.manager_url.or(lower.manager_url),
            vault_url: self.vault_url.or(lower.vault_url),
            ca: self.ca.or(lower.ca),
            user_id: self.user_id.or(lower.user_id),
        }
    }
}

/// Which config file to read: `--config`, else `SECRET_STORE_CONFIG` (either must exist),
/// else `$XDG_CONFIG_HOME/secret-store/client.toml` or `~/.config/secret-store/client.toml`
/// when it exists; `None` for no file.
pub fn config_file(flag: Option<&Path>, var: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let set = |name: &str| var(name).filter(|value| !value.is_empty());
    if let Some(path) = flag {
        return Some(path.to_owned());
    }
    if let Some(path) = set("SECRET_STORE_CONFIG") {
        return Some(PathBuf::from(path));
    }
    // XDG: a relative XDG_CONFIG_HOME is invalid and ignored.
    let base = set("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| set("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some(base.join("secret-store/client.toml")).filter(|path| path.is_file())
}

/// The settings a command runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// manager's base URL, https.
    pub manager_url: Url,
    /// vault's public base URL, https.
    pub vault_url: Url,
    /// The only CAs to trust; the system's roots when `None`.
    pub ca: Option<PathBuf>,
    /// Default owner for `store`.
    pub user_id: Option<String>,
}

impl Settings {
    /// Flags over environment over file over defaults; refuses a URL that is not https (the
    /// requests carry secrets and bearer tokens).
    pub fn resolve(flags: Layer, env: Layer, file: Layer) -> Result<Self, UsageError> {
        let layer = flags.over(env).over(file);
        Ok(Self {
            manager_url: https_url(
                Service::Manager,
                layer.manager_url.as_deref().unwrap_or(DEFAULT_MANAGER_URL),
            )?,
            vault_url: https_url(Service::Vault, layer.vault_url.as_deref().unwrap_or(DEFAULT_VAULT_URL))?,
            ca: layer.ca,
            user_id: layer.user_id,
        })
    }
}

fn https_url(service: Service, url: &str) -> Result<Url, UsageError> {
    let problem = |problem| UsageError::Url {
        service,
        url: url.to_owned(),
        problem,
    };
    let parsed = Url::parse(url).map_err(|_| problem("not a URL"))?;
    if parsed.scheme() != "https" {
        return Err(problem("only https is allowed: the requests carry secrets and tokens"));
    }
    if parsed.host().is_none() || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(problem("a base URL is https://host[:port][/path]"));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn layer(manager: Option<&str>, user: Option<&str>) -> Layer {
        Layer {
            manager_url: manager.map(str::to_owned),
            user_id: user.map(str::to_owned),
            ..Layer::default()
        }
    }

    #[test]
    fn flags_beat_env_beat_file_beat_defaults_field_by_field() {
        let settings = Settings::resolve(
            layer(Some("https://flag:1"), None),
            layer(Some("https://env:2"), Some("env-user")),
            Layer {
                vault_url: Some("https://file:3".into()),
                ca: Some("/file/ca.pem".into()),
                ..layer(Some("https://file:4"), Some("file-user"))
            },
        )
        .expect("resolves");
        assert_eq!(settings.manager_url.as_str(), "https://flag:1/");
        assert_eq!(settings.vault_url.as_str(), "https://file:3/");
        assert_eq!(settings.ca.as_deref(), Some(Path::new("/file/ca.pem")));
        assert_eq!(settings.user_id.as_deref(), Some("env-user"));
    }

    #[test]
    fn no_layer_means_the_local_defaults_and_the_system_roots() {
        let settings = Settings::resolve(Layer::default(), Layer::default(), Layer::default()).expect("resolves");
        assert_eq!(settings.manager_url.as_str(), "https://127.0.0.1:8000/");
        assert_eq!(settings.vault_url.as_str(), "https://127.0.0.1:8001/");
        assert_eq!(settings.ca, None);
        assert_eq!(settings.user_id, None);
    }

    #[test]
    fn plain_http_and_non_urls_are_refused() {
        for bad in [
            "http://127.0.0.1:8000",
            "127.0.0.1:8000",
            "https://h/?q=1",
            "file:///tmp/x",
        ] {
            let error = Settings::resolve(layer(Some(bad), None), Layer::default(), Layer::default());
            assert!(matches!(error, Err(UsageError::Url { .. })), "{bad}");
        }
    }

    #[test]
    fn the_environment_layer_reads_its_variables_and_ignores_empty_ones() {
        let vars = HashMap::from([
            ("SECRET_STORE_MANAGER_URL", "https://m"),
            ("SECRET_STORE_VAULT_URL", ""),
            ("SECRET_STORE_CA", "/ca.pem"),
            ("SECRET_STORE_USER_ID", "alice"),
        ]);
        let env = Layer::from_env(&|name| vars.get(name).map(|v| v.to_string()));
        assert_eq!(
            env,
            Layer {
                manager_url: Some("https://m".into()),
                vault_url: None,
                ca: Some("/ca.pem".into()),
                user_id: Some("alice".into()),
            }
        );
    }

    #[test]
    fn the_file_layer_takes_ca_relative_to_the_file_and_refuses_unknown_keys() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("client.toml");
        std::fs::write(&path, "manager_url = \"https://m\"\nca = \"tls/ca.pem\"\n")?;
        let file = Layer::from_file(&path)?;
        assert_eq!(file.manager_url.as_deref(), Some("https://m"));
        assert_eq!(file.ca, Some(dir.path().join("tls/ca.pem")));

        std::fs::write(&path, "token = \"eyJhbGciOi.secret.part\"\n")?;
        let error = Layer::from_file(&path).expect_err("unknown key");
        assert!(matches!(error, UsageError::ConfigParse { .. }));
        assert!(!error.to_string().contains("eyJhbGciOi"), "{error}");

        assert!(matches!(
            Layer::from_file(&dir.path().join("missing.toml")),
            Err(UsageError::ConfigRead { .. })
        ));
        Ok(())
    }

    /// `client/client.toml`, the reference file, parses as it is shipped.
    #[test]
    fn the_reference_config_file_parses() -> Result<(), Box<dyn std::error::Error>> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("client.toml");
        let layer = Layer::from_file(&path)?;
        assert_eq!(layer.manager_url.as_deref(), Some(DEFAULT_MANAGER_URL));
        assert_eq!(layer.vault_url.as_deref(), Some(DEFAULT_VAULT_URL));
        Ok(())
    }

    #[test]
    fn the_config_file_is_the_flag_then_the_variable_then_xdg_if_present() -> Result<(), Box<dyn std::error::Error>> {
        let xdg = tempfile::tempdir()?;
        let xdg_dir = xdg.path().to_str().ok_or("path")?.to_owned();
        let vars = HashMap::from([("XDG_CONFIG_HOME", xdg_dir.as_str()), ("HOME", "/nonexistent")]);
        let env = |name: &str| vars.get(name).map(|v| v.to_string());
        assert_eq!(config_file(None, &env), None, "absent default file: no file");

        let default = xdg.path().join("secret-store/client.toml");
        std::fs::create_dir_all(default.parent().ok_or("parent")?)?;
        std::fs::write(&default, "")?;
        assert_eq!(config_file(None, &env), Some(default));

        let mut vars = vars.clone();
        vars.insert("SECRET_STORE_CONFIG", "/etc/ss.toml");
        let env = |name: &str| vars.get(name).map(|v| v.to_string());
        assert_eq!(config_file(None, &env), Some("/etc/ss.toml".into()));
        assert_eq!(
            config_file(Some(Path::new("/flag.toml")), &env),
            Some("/flag.toml".into())
        );
        Ok(())
    }
}
