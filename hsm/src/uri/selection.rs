//! What a token or key option may name with a PKCS#11 URI, resolved into the label, module
//! and PIN file the rest of the code takes.
//!
//! This crate selects tokens and keys by label alone, so a URI may say `token=`, `object=`,
//! `type=private` and where the module and the PIN file are (`module-path`, `pin-source`).
//! Every other attribute would narrow the choice in a way nothing here checks, and a
//! selector that is silently ignored can pick another token: those are refused.
//! `module-name` is refused too, not searched for: which library is loaded stays explicit.

use std::path::{Path, PathBuf};

use super::{ObjectType, Pkcs11Uri, UriAttribute, UriError, is_pkcs11_uri};

/// Why an option's value (a label or a PKCS#11 URI) does not name a token or key this crate
/// can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The URI does not parse.
    #[error(transparent)]
    Uri(#[from] UriError),
    /// An attribute the selection here does not check, refused rather than ignored.
    #[error("PKCS#11 URI attribute {attribute} is not supported here: {reason}")]
    NotSupported {
        /// The attribute.
        attribute: UriAttribute,
        /// Why, and what to write instead.
        reason: &'static str,
    },
    /// A token URI without `token=` (or with an empty one).
    #[error("the PKCS#11 URI names no token: give token=LABEL")]
    NoToken,
    /// A key URI without `object=` (or with an empty one).
    #[error("the PKCS#11 URI names no key: give object=LABEL")]
    NoObject,
    /// A key URI whose `type` is not `private`.
    #[error("the PKCS#11 URI names an object of type {found}: keys here are private keys (type=private, or no type)")]
    NotPrivateKey {
        /// The type it names.
        found: ObjectType,
    },
    /// `module-path` is not absolute: which library it loads would depend on the working
    /// directory.
    #[error("PKCS#11 URI attribute module-path must be an absolute path")]
    RelativeModulePath,
    /// `pin-source` is neither an absolute path nor a local `file:` URI (a relative path, a
    /// command, another scheme, a remote host); not quoted: it may be a PIN written there by
    /// mistake.
    #[error(
        "PKCS#11 URI attribute pin-source must be an absolute file path or a local file: URI (file:/path or file:///path)"
    )]
    PinSourceNotFile,
    /// The token URI's module or PIN file differs from the one an option sets explicitly.
    #[error(
        "the URI's {attribute} {} conflicts with {option} {}: set only one of them, or the same in both",
        from_uri.display(),
        configured.display()
    )]
    Conflict {
        /// `module-path` or `pin-source`.
        attribute: UriAttribute,
        /// The URI's path.
        from_uri: PathBuf,
        /// The option's name as the operator writes it.
        option: String,
        /// The option's path.
        configured: PathBuf,
    },
    /// A key URI names another token, module or PIN file than the one in use.
    #[error("the key's PKCS#11 URI has {attribute} {from_uri:?}, but the token in use has {}", in_use.as_deref().map_or_else(|| "none".to_owned(), |v| format!("{v:?}")))]
    KeyElsewhere {
        /// `token`, `module-path` or `pin-source`.
        attribute: UriAttribute,
        /// The URI's value.
        from_uri: String,
        /// The one in use (`None`: no PIN file, the PIN comes from elsewhere).
        in_use: Option<String>,
    },
}

/// A path that a token URI can also give (the module, the PIN file), as an option of the
/// caller has it.
#[derive(Debug, Clone, Copy)]
pub struct ConfiguredPath<'a> {
    /// The option's name as the operator writes it (`pkcs11_module`, `--module`), for errors.
    pub option: &'a str,
    /// Its value, a built-in default included.
    pub value: Option<&'a Path>,
    /// Whether the operator set it (command line, environment, configuration file) rather
    /// than it being the default: only a value set explicitly can conflict with the URI's.
    pub explicit: bool,
}

/// The token an option names, once resolved against the module and PIN-file options: what
/// [`crate::TokenPool`] and [`crate::read_pin_file`] take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSelection {
    /// The token's label.
    pub label: String,
    /// The module to load: the URI's `module-path`, else the option's.
    pub module: Option<PathBuf>,
    /// The PIN file: the URI's `pin-source`, else the option's.
    pub pin_file: Option<PathBuf>,
}

impl TokenSelection {
    /// Resolves `token`, a label or a URI with `token=` and optionally `module-path` and
    /// `pin-source`, against the module and PIN-file options.
    ///
    /// # Errors
    ///
    /// A malformed URI; attributes other than those three; no `token=`; a relative
    /// `module-path`; a `pin-source` that is no file; a URI path that differs from an
    /// option's explicitly set one ([`NameError::Conflict`]).
    pub fn resolve(token: &str, module: ConfiguredPath<'_>, pin_file: ConfiguredPath<'_>) -> Result<Self, NameError> {
        if !is_pkcs11_uri(token) {
            return Ok(Self {
                label: token.to_owned(),
                module: module.value.map(Path::to_owned),
                pin_file: pin_file.value.map(Path::to_owned),
            });
        }
        let uri: Pkcs11Uri = token.parse()?;
        refuse_others(
            &uri,
            &[UriAttribute::Token, UriAttribute::ModulePath, UriAttribute::PinSource],
        )?;
        let label = uri
            .text(UriAttribute::Token)
            .filter(|l| !l.is_empty())
            .ok_or(NameError::NoToken)?;
        Ok(Self {
            label: label.to_owned(),
            module: settle(UriAttribute::ModulePath, module_path(&uri)?, module)?,
            pin_file: settle(UriAttribute::PinSource, pin_file_of(&uri)?, pin_file)?,
        })
    }

    /// The label of the private key `key` names in this token: `key` itself, or a URI's
    /// `object=` (with `type=private` or no type).
    ///
    /// # Errors
    ///
    /// A malformed URI; attributes other than `token`, `object`, `type`, `module-path` and
    /// `pin-source`; no `object=`; another type; a `token`, `module-path` or `pin-source`
    /// other than this selection's ([`NameError::KeyElsewhere`]).
    pub fn key_label(&self, key: &str) -> Result<String, NameError> {
        if !is_pkcs11_uri(key) {
            return Ok(key.to_owned());
        }
        let uri: Pkcs11Uri = key.parse()?;
        refuse_others(
            &uri,
            &[
                UriAttribute::Token,
                UriAttribute::Object,
                UriAttribute::Type,
                UriAttribute::ModulePath,
                UriAttribute::PinSource,
            ],
        )?;
        if let Some(found) = uri.object_type().filter(|t| *t != ObjectType::Private) {
            return Err(NameError::NotPrivateKey { found });
        }
        let elsewhere = |attribute, from_uri: String, in_use: Option<String>| NameError::KeyElsewhere {
            attribute,
            from_uri,
            in_use,
        };
        if let Some(token) = uri.text(UriAttribute::Token).filter(|t| *t != self.label) {
            return Err(elsewhere(
                UriAttribute::Token,
                token.to_owned(),
                Some(self.label.clone()),
            ));
        }
        let paths = [
            (UriAttribute::ModulePath, module_path(&uri)?, &self.module),
            (UriAttribute::PinSource, pin_file_of(&uri)?, &self.pin_file),
        ];
        for (attribute, from_uri, in_use) in paths {
            if let Some(from_uri) = from_uri.filter(|path| Some(path) != in_use.as_ref()) {
                let in_use = in_use.as_ref().map(|p| p.display().to_string());
                return Err(elsewhere(attribute, from_uri.display().to_string(), in_use));
            }
        }
        let label = uri
            .text(UriAttribute::Object)
            .filter(|l| !l.is_empty())
            .ok_or(NameError::NoObject)?;
        Ok(label.to_owned())
    }
}

/// Refuses the first attribute of `uri` not in `allowed`.
fn refuse_others(uri: &Pkcs11Uri, allowed: &[UriAttribute]) -> Result<(), NameError> {
    match uri.attributes().find(|attribute| !allowed.contains(attribute)) {
        None => Ok(()),
        Some(attribute) => Err(NameError::NotSupported {
            attribute,
            reason: why_unsupported(attribute),
        }),
    }
}

fn why_unsupported(attribute: UriAttribute) -> &'static str {
    match attribute {
        UriAttribute::Manufacturer
        | UriAttribute::Model
        | UriAttribute::Serial
        | UriAttribute::LibraryManufacturer
        | UriAttribute::LibraryDescription
        | UriAttribute::LibraryVersion
        | UriAttribute::SlotManufacturer
        | UriAttribute::SlotDescription
        | UriAttribute::SlotId => {
            "tokens are selected by label (token=) alone, and a selector left unchecked could pick another token"
        }
        UriAttribute::Id => {
            "keys are selected by label (object=) alone, and an unchecked CKA_ID could be another key's"
        }
        UriAttribute::ModuleName => {
            "give the module's absolute path with module-path, so that which library is loaded stays explicit"
        }
        UriAttribute::PinValue => "a PIN is never taken from a URI: use pin-source",
        UriAttribute::Token
        | UriAttribute::Object
        | UriAttribute::Type
        | UriAttribute::PinSource
        | UriAttribute::ModulePath => "this option names a token; keys are named in the key options",
    }
}

/// `option`'s path, unless the URI gives one: the URI's then, which an explicitly set
/// option must equal.
fn settle(
    attribute: UriAttribute,
    from_uri: Option<PathBuf>,
    option: ConfiguredPath<'_>,
) -> Result<Option<PathBuf>, NameError> {
    match (from_uri, option.value) {
        (Some(from_uri), Some(configured)) if option.explicit && from_uri != configured => Err(NameError::Conflict {
            attribute,
            from_uri,
            option: option.option.to_owned(),
            configured: configured.to_owned(),
        }),
        (Some(from_uri), _) => Ok(Some(from_uri)),
        (None, value) => Ok(value.map(Path::to_owned)),
    }
}

/// `module-path`, which must be absolute. `module-name` is refused, not searched for.
fn module_path(uri: &Pkcs11Uri) -> Result<Option<PathBuf>, NameError> {
    let Some(path) = uri.text(UriAttribute::ModulePath) else {
        return Ok(None);
    };
    let path = Path::new(path);
    if path.is_absolute() {
        Ok(Some(path.to_owned()))
    } else {
        Err(NameError::RelativeModulePath)
    }
}

/// The file `pin-source` names: a path, or a `file:` URI of this host (`file:/p`,
/// `file:///p`, `file://localhost/p`). The value was decoded once, as the PKCS#11 URI's; a
/// `file:` URI's escapes are not decoded a second time.
fn pin_file_of(uri: &Pkcs11Uri) -> Result<Option<PathBuf>, NameError> {
    let Some(source) = uri.text(UriAttribute::PinSource) else {
        return Ok(None);
    };
    let path = match source.get(..5).filter(|s| s.eq_ignore_ascii_case("file:")) {
        Some(_) => {
            let rest = &source[5..];
            let local = match rest.strip_prefix("//") {
                None => rest,
                Some(authority_and_path) => {
                    let (host, path) = authority_and_path.split_at(authority_and_path.find('/').unwrap_or(0));
                    if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
                        return Err(NameError::PinSourceNotFile);
                    }
                    path
                }
            };
            if !Path::new(local).is_absolute() {
                return Err(NameError::PinSourceNotFile);
            }
            local
        }
        // `|command` is p11-kit's; any other scheme is nothing a file is read from.
        None if source.is_empty() || source.starts_with('|') || has_scheme(source) => {
            return Err(NameError::PinSourceNotFile);
        }
        // Absolute, as module-path: a relative path would depend on the working directory,
        // and a PIN written here by mistake (as pin-value would take it) is refused unquoted
        // instead of being tried as a file name and logged.
        None if !Path::new(source).is_absolute() => return Err(NameError::PinSourceNotFile),
        None => source,
    };
    Ok(Some(PathBuf::from(path)))
}

/// Whether `text` begins with a URI scheme (RFC 3986 §3.1: a letter, then letters, digits,
/// `+`, `-`, `.`, then `:`).
fn has_scheme(text: &str) -> bool {
    text.split_once(':').is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

    const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

    fn module(value: &str, explicit: bool) -> ConfiguredPath<'_> {
        ConfiguredPath {
            option: "pkcs11_module",
            value: Some(Path::new(value)),
            explicit,
        }
    }

    fn no_pin_file() -> ConfiguredPath<'static> {
        ConfiguredPath {
            option: "pin_file",
            value: None,
            explicit: false,
        }
    }

    #[test]
    fn a_plain_label_is_the_token_and_the_options_stay() -> Result {
        let token = TokenSelection::resolve("vault", module("/m.so", true), no_pin_file())?;
        assert_eq!(token.label, "vault");
        assert_eq!(token.module.as_deref(), Some(Path::new("/m.so")));
        assert_eq!(token.pin_file, None);
        assert_eq!(token.key_label("vault-tls")?, "vault-tls");
        Ok(())
    }

    #[test]
    fn a_token_uri_supplies_the_module_and_the_pin_file() -> Result {
        for source in [
            "/etc/p.pin",
            "file:/etc/p.pin",
            "file:///etc/p.pin",
            "file://localhost/etc/p.pin",
        ] {
            let uri = format!("pkcs11:token=my%20vault?module-path=/opt/hsm.so&pin-source={source}");
            let token = TokenSelection::resolve(&uri, module(DEFAULT_MODULE, false), no_pin_file())?;
            assert_eq!(token.label, "my vault");
            assert_eq!(token.module.as_deref(), Some(Path::new("/opt/hsm.so")));
            assert_eq!(token.pin_file.as_deref(), Some(Path::new("/etc/p.pin")), "{source}");
        }
        Ok(())
    }

    /// A relative pin-source would depend on the working directory, and one that is really
    /// a PIN (written where pin-value would have it) must not be echoed as a file name.
    #[test]
    fn a_relative_pin_source_is_refused_without_quoting_it() {
        for source in ["73921468", "pins/vault.pin", "file:vault.pin"] {
            let uri = format!("pkcs11:token=t?pin-source={source}");
            let error = TokenSelection::resolve(&uri, module(DEFAULT_MODULE, false), no_pin_file())
                .expect_err("relative pin-source");
            assert!(matches!(error, NameError::PinSourceNotFile), "{source}: {error:?}");
            assert!(!error.to_string().contains(source), "{source} quoted: {error}");
        }
    }

    #[test]
    fn a_token_uri_that_contradicts_an_explicit_option_is_refused_naming_both() -> Result {
        let uri = "pkcs11:token=t?module-path=/opt/hsm.so";
        let error = TokenSelection::resolve(uri, module("/other.so", true), no_pin_file()).expect_err("conflict");
        let message = error.to_string();
        assert!(
            message.contains("module-path /opt/hsm.so") && message.contains("pkcs11_module /other.so"),
            "{message}"
        );
        let same = TokenSelection::resolve(uri, module("/opt/hsm.so", true), no_pin_file())?;
        assert_eq!(same.module.as_deref(), Some(Path::new("/opt/hsm.so")));
        let pin_file = ConfiguredPath {
            option: "pin_file",
            value: Some(Path::new("/a.pin")),
            explicit: true,
        };
        let error = TokenSelection::resolve(
            "pkcs11:token=t?pin-source=/b.pin",
            module(DEFAULT_MODULE, false),
            pin_file,
        )
        .expect_err("conflict");
        assert!(matches!(
            error,
            NameError::Conflict {
                attribute: UriAttribute::PinSource,
                ..
            }
        ));
        Ok(())
    }

    #[test]
    fn token_uris_that_select_by_anything_but_the_label_are_refused() {
        let refused = |uri: &str| TokenSelection::resolve(uri, module(DEFAULT_MODULE, false), no_pin_file());
        for (uri, attribute) in [
            ("pkcs11:token=t;serial=42", UriAttribute::Serial),
            ("pkcs11:token=t;manufacturer=m", UriAttribute::Manufacturer),
            ("pkcs11:token=t;model=m", UriAttribute::Model),
            ("pkcs11:token=t;slot-id=1", UriAttribute::SlotId),
            ("pkcs11:token=t;slot-description=s", UriAttribute::SlotDescription),
            ("pkcs11:token=t;library-version=1", UriAttribute::LibraryVersion),
            ("pkcs11:token=t;object=k", UriAttribute::Object),
            ("pkcs11:token=t?module-name=softhsm2", UriAttribute::ModuleName),
        ] {
            assert!(
                matches!(refused(uri), Err(NameError::NotSupported { attribute: a, .. }) if a == attribute),
                "{uri}"
            );
        }
        assert_eq!(refused("pkcs11:?module-path=/m.so"), Err(NameError::NoToken));
        assert_eq!(
            refused("pkcs11:token=t?module-path=lib/m.so"),
            Err(NameError::RelativeModulePath)
        );
        for source in ["|/bin/cat /p", "env:PIN", "https://host/pin", "file://host/p", "file:p"] {
            let uri = Pkcs11Uri::default()
                .with(UriAttribute::Token, "t")
                .and_then(|u| u.with(UriAttribute::PinSource, source));
            let uri = uri.map(|u| u.to_string()).unwrap_or_default();
            assert_eq!(refused(&uri), Err(NameError::PinSourceNotFile), "{uri}");
        }
    }

    #[test]
    fn a_key_uri_names_a_private_key_of_the_token_in_use() -> Result {
        let token = TokenSelection::resolve(
            "pkcs11:token=vault?pin-source=/p.pin",
            module(DEFAULT_MODULE, false),
            no_pin_file(),
        )?;
        for key in [
            "pkcs11:object=vault-wrapping",
            "pkcs11:object=vault-wrapping;type=private",
            "pkcs11:token=vault;object=vault-wrapping?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/p.pin",
        ] {
            assert_eq!(token.key_label(key)?, "vault-wrapping", "{key}");
        }
        assert_eq!(
            token.key_label("pkcs11:token=manager;object=k"),
            Err(NameError::KeyElsewhere {
                attribute: UriAttribute::Token,
                from_uri: "manager".into(),
                in_use: Some("vault".into()),
            })
        );
        assert!(matches!(
            token.key_label("pkcs11:object=k?module-path=/other.so"),
            Err(NameError::KeyElsewhere {
                attribute: UriAttribute::ModulePath,
                ..
            })
        ));
        assert!(matches!(
            token.key_label("pkcs11:object=k?pin-source=/other.pin"),
            Err(NameError::KeyElsewhere {
                attribute: UriAttribute::PinSource,
                ..
            })
        ));
        assert_eq!(
            token.key_label("pkcs11:object=k;type=public"),
            Err(NameError::NotPrivateKey {
                found: ObjectType::Public
            })
        );
        assert_eq!(token.key_label("pkcs11:type=private"), Err(NameError::NoObject));
        assert!(matches!(
            token.key_label("pkcs11:object=k;id=%01"),
            Err(NameError::NotSupported {
                attribute: UriAttribute::Id,
                ..
            })
        ));
        assert_eq!(
            token.key_label("pkcs11:object=k?pin-value=1234"),
            Err(NameError::Uri(UriError::PinValue))
        );
        Ok(())
    }
}
