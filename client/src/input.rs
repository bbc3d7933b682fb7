//! Where secrets and tokens come from and go to: stdin or a file, a token file or the
//! environment; never the command line, which any local user can read in `/proc`.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::{Error, UsageError};

/// The environment variable holding the access token when no `--token-file` is given.
pub const TOKEN_VARIABLE: &str = "SECRET_STORE_TOKEN";

/// The secret: `file`'s bytes, or stdin's to end of file, as UTF-8; one trailing newline
/// dropped when `trim_newline`. Empty or non-UTF-8 secrets are refused before sending.
pub fn read_secret(file: Option<&Path>, trim_newline: bool) -> Result<Zeroizing<String>, Error> {
    let mut bytes = Zeroizing::new(Vec::new());
    match file {
        Some(path) => {
            let mut file = std::fs::File::open(path).map_err(|source| UsageError::ReadFile {
                what: "the secret",
                path: path.to_owned(),
                source,
            })?;
            file.read_to_end(&mut bytes).map_err(|source| UsageError::ReadFile {
                what: "the secret",
                path: path.to_owned(),
                source,
            })?;
        }
        None => {
            let mut stdin = std::io::stdin().lock();
            if stdin.is_terminal() {
                eprintln!("secret-store: reading the secret from stdin until end of file (Ctrl-D)");
            }
            stdin.read_to_end(&mut bytes).map_err(|source| Error::Io {
                what: "reading the secret from stdin",
                source,
            })?;
        }
    }
    secret_from_bytes(&bytes, trim_newline)
}

/// The secret in `bytes`, checked.
fn secret_from_bytes(bytes: &[u8], trim_newline: bool) -> Result<Zeroizing<String>, Error> {
    let mut bytes = bytes;
    if trim_newline {
        bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    }
    if bytes.is_empty() {
        return Err(UsageError::EmptySecret.into());
    }
    let text = std::str::from_utf8(bytes).map_err(|_| UsageError::SecretNotUtf8)?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// The access token: `--token-file`'s content, else [`TOKEN_VARIABLE`] through `var`;
/// surrounding whitespace dropped. A token holding anything but visible ASCII is refused
/// (without showing it).
pub fn read_token(file: Option<&Path>, var: &dyn Fn(&str) -> Option<String>) -> Result<Zeroizing<String>, Error> {
    let (token, from) = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| UsageError::ReadFile {
                what: "the access token",
                path: path.to_owned(),
                source,
            })?;
            (Zeroizing::new(text), format!("--token-file {}", path.display()))
        }
        None => match var(TOKEN_VARIABLE) {
            Some(value) => (Zeroizing::new(value), TOKEN_VARIABLE.to_owned()),
            None => return Err(UsageError::MissingToken.into()),
        },
    };
    let trimmed = token.trim();
    if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(UsageError::MalformedToken { from }.into());
    }
    Ok(Zeroizing::new(trimmed.to_owned()))
}

/// Writes `token` to a new file `path` readable by its owner only; refuses to replace an
/// existing file (or follow a planted symlink).
pub fn write_token_file(path: &Path, token: &str) -> Result<(), Error> {
    TokenFile::create(path)?.write(token)
}

/// A new, private (0600) file for an access token, created before the secret is stored: a
/// path that cannot be created (it exists, say) then fails the command before anything is
/// stored, instead of after, which would leave a stored secret whose only token is lost.
/// Removed again if dropped unwritten (the store failed).
pub struct TokenFile {
    file: std::fs::File,
    path: std::path::PathBuf,
    written: bool,
}

impl TokenFile {
    /// Creates `path`, which must not exist.
    pub fn create(path: &Path) -> Result<Self, Error> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| UsageError::WriteTokenFile {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            file,
            path: path.to_owned(),
            written: false,
        })
    }

    /// Writes `token` and a newline.
    pub fn write(mut self, token: &str) -> Result<(), Error> {
        let written = self
            .file
            .write_all(token.as_bytes())
            .and_then(|()| self.file.write_all(b"\n"));
        match written {
            Ok(()) => {
                self.written = true;
                Ok(())
            }
            Err(source) => Err(UsageError::WriteTokenFile {
                path: self.path.clone(),
                source,
            }
            .into()),
        }
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        if !self.written {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_taken_byte_for_byte_unless_asked_to_trim_one_newline() {
        let secret = |bytes: &[u8], trim| secret_from_bytes(bytes, trim).map(|s| s.as_str().to_owned());
        assert_eq!(secret(b"s3cret\n", false).ok().as_deref(), Some("s3cret\n"));
        assert_eq!(secret(b"s3cret\n\n", true).ok().as_deref(), Some("s3cret\n"));
        assert_eq!(secret(b"s3cret\r\n", true).ok().as_deref(), Some("s3cret"));
        assert!(matches!(
            secret(b"\n", true),
            Err(Error::Usage(UsageError::EmptySecret))
        ));
        assert!(matches!(secret(b"", false), Err(Error::Usage(UsageError::EmptySecret))));
        assert!(matches!(
            secret(b"\xff", false),
            Err(Error::Usage(UsageError::SecretNotUtf8))
        ));
    }

    #[test]
    fn the_token_file_beats_the_variable_and_a_malformed_token_is_not_shown() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("token");
        std::fs::write(&file, "file.token.jwt\n")?;
        let env = |name: &str| (name == TOKEN_VARIABLE).then(|| "env.token.jwt".to_owned());
        assert_eq!(read_token(Some(&file), &env)?.as_str(), "file.token.jwt");
        assert_eq!(read_token(None, &env)?.as_str(), "env.token.jwt");
        assert!(matches!(
            read_token(None, &|_| None),
            Err(Error::Usage(UsageError::MissingToken))
        ));

        let bad = |_: &str| Some("hidden part\u{7}".to_owned());
        let error = read_token(None, &bad).expect_err("malformed");
        assert_eq!(error.exit(), crate::error::Exit::Usage);
        assert!(!error.report().contains("hidden"), "{}", error.report());
        Ok(())
    }

    #[test]
    fn a_token_file_is_made_before_the_store_and_removed_if_left_unwritten() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("token");
        std::fs::write(&path, "someone else's")?;
        assert!(TokenFile::create(&path).is_err(), "an existing file is refused");
        assert_eq!(std::fs::read_to_string(&path)?, "someone else's", "and left alone");
        let fresh = dir.path().join("fresh");
        drop(TokenFile::create(&fresh)?);
        assert!(!fresh.exists(), "a store that failed leaves no empty token file");
        TokenFile::create(&fresh)?.write("header.claims.signature")?;
        assert_eq!(std::fs::read_to_string(&fresh)?, "header.claims.signature\n");
        Ok(())
    }

    #[test]
    fn the_token_file_is_new_and_private() -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("token");
        write_token_file(&path, "a.b.c")?;
        assert_eq!(std::fs::read_to_string(&path)?, "a.b.c\n");
        assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        assert!(write_token_file(&path, "d.e.f").is_err(), "never replaces a file");
        Ok(())
    }
}
