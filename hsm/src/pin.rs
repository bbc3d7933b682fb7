//! Reading a token PIN from a file that only its owner can read.

use std::path::Path;

use secrecy::SecretString;

use crate::error::{Error, Result};

/// Reads a PIN from `path`, refusing files that group or others can read or write.
///
/// One trailing newline is stripped so that `echo 1234 > pin` works.
pub fn read_pin_file(path: &Path) -> Result<SecretString> {
    use std::os::unix::fs::PermissionsExt;
    let refuse = |reason: String| Error::PinFile {
        path: path.to_owned(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| refuse(format!("cannot read it: {e}")))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(refuse(format!("mode {mode:o} lets others read it; chmod 600 it")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| refuse(format!("cannot read it: {e}")))?;
    let pin = text.strip_suffix('\n').unwrap_or(&text);
    let pin = pin.strip_suffix('\r').unwrap_or(pin);
    if pin.is_empty() {
        return Err(refuse("it is empty".into()));
    }
    Ok(SecretString::from(pin.to_owned()))
}
