//! Reading a token PIN from a file that only the service's own user can read.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Largest PIN file accepted, in bytes. PKCS#11 PINs are short (tokens report a
/// `ulMaxPinLen`, rarely above 255); the read buffer has this fixed size so that it is never
/// reallocated, since a reallocation would free a copy of the PIN without wiping it.
const MAX_PIN_FILE_BYTES: usize = 1024;

/// Reads a PIN from `path`: a regular file owned by this process's effective uid, which
/// group and others can neither read, write nor execute.
///
/// The file is opened once and checked on that descriptor (fstat), so a file swapped in
/// after the checks is never the one read. It is opened non-blocking, so a FIFO in its
/// place is refused instead of hanging start-up. A symbolic link is followed and the checks
/// apply to the file it leads to (Kubernetes mounts secrets as links). One trailing
/// newline (`\n` or `\r\n`) is stripped so that `echo 1234 > pin` works.
///
/// Every buffer that held the PIN is wiped, and no error carries the file's content.
pub fn read_pin_file(path: &Path) -> Result<SecretString> {
    let refuse = |reason: String| Error::PinFile {
        path: path.to_owned(),
        reason,
    };
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    let file =
        File::from(rustix::fs::open(path, flags, Mode::empty()).map_err(|e| refuse(format!("cannot open it: {e}")))?);
    let meta = file.metadata().map_err(|e| refuse(format!("cannot stat it: {e}")))?;
    if !meta.file_type().is_file() {
        return Err(refuse(format!("it is {}, not a regular file", kind(&meta))));
    }
    let euid = rustix::process::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(refuse(format!(
            "it is owned by uid {}, not by this process's effective uid {euid}; chown it to the service's user",
            meta.uid()
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(refuse(format!(
            "mode {mode:o} gives group or others access; chmod 600 it"
        )));
    }
    let too_long = || {
        refuse(format!(
            "it is longer than {MAX_PIN_FILE_BYTES} bytes, too long for a PIN"
        ))
    };
    if meta.len() > MAX_PIN_FILE_BYTES as u64 {
        return Err(too_long());
    }
    let mut buffer = Zeroizing::new(vec![0u8; MAX_PIN_FILE_BYTES + 1]);
    let filled = read_into(&file, &mut buffer).map_err(|e| refuse(format!("cannot read it: {e}")))?;
    if filled > MAX_PIN_FILE_BYTES {
        return Err(too_long());
    }
    let text = std::str::from_utf8(&buffer[..filled]).map_err(|_| refuse("it is not UTF-8 text".into()))?;
    let pin = text.strip_suffix('\n').unwrap_or(text);
    let pin = pin.strip_suffix('\r').unwrap_or(pin);
    if pin.is_empty() {
        return Err(refuse("it is empty".into()));
    }
    // From a `&str`, secrecy allocates exactly the PIN's length: no spare capacity to
    // reallocate away (unwiped) when it boxes the string.
    Ok(SecretString::from(pin))
}

/// Reads until end of file or until `buffer` is full; returns how many bytes it holds.
fn read_into(mut file: &File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// What a non-regular file is, for the error.
fn kind(meta: &std::fs::Metadata) -> &'static str {
    let file_type = meta.file_type();
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() || file_type.is_block_device() {
        "a device"
    } else {
        "something else"
    }
}

#[cfg(test)]
mod tests {
    use std::fs::Permissions;
    use std::path::PathBuf;

    use secrecy::ExposeSecret;

    use super::*;

    const PIN: &str = "pin-under-test-4711";

    fn private_file(dir: &Path, contents: &str) -> std::io::Result<PathBuf> {
        let path = dir.join("token.pin");
        std::fs::write(&path, contents)?;
        std::fs::set_permissions(&path, Permissions::from_mode(0o600))?;
        Ok(path)
    }

    /// The refusal's reason; panics if the file was accepted.
    fn refusal(path: &Path) -> String {
        match read_pin_file(path) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(Error::PinFile { reason, .. }) => reason,
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn reads_the_pin_without_its_trailing_newline() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        for contents in [PIN.to_owned(), format!("{PIN}\n"), format!("{PIN}\r\n")] {
            let path = private_file(dir.path(), &contents)?;
            assert_eq!(read_pin_file(&path)?.expose_secret(), PIN, "{contents:?}");
        }
        Ok(())
    }

    #[test]
    fn follows_a_symbolic_link_to_a_private_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let target = private_file(dir.path(), PIN)?;
        let link = dir.path().join("link.pin");
        std::os::unix::fs::symlink(&target, &link)?;
        assert_eq!(read_pin_file(&link)?.expose_secret(), PIN);
        Ok(())
    }

    #[test]
    fn refuses_a_pin_file_group_or_others_can_use() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = private_file(dir.path(), PIN)?;
        for mode in [0o640, 0o620, 0o604, 0o602, 0o610, 0o644] {
            std::fs::set_permissions(&path, Permissions::from_mode(mode))?;
            let reason = refusal(&path);
            assert!(
                reason.contains(&format!("mode {mode:o}")) && reason.contains("chmod 600"),
                "{reason}"
            );
            assert!(!reason.contains(PIN));
        }
        Ok(())
    }

    #[test]
    fn refuses_a_pin_file_owned_by_another_user() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let euid = rustix::process::geteuid().as_raw();
        // As root the test gives its file away; otherwise a root-owned file stands in.
        let (path, owner) = if euid == 0 {
            let path = private_file(dir.path(), PIN)?;
            std::os::unix::fs::chown(&path, Some(65534), Some(65534))?;
            (path, 65534)
        } else {
            (PathBuf::from("/etc/passwd"), 0)
        };
        let reason = refusal(&path);
        assert!(
            reason.contains(&format!(
                "owned by uid {owner}, not by this process's effective uid {euid}"
            )),
            "{reason}"
        );
        assert!(!reason.contains(PIN));
        Ok(())
    }

    #[test]
    fn refuses_a_fifo_without_waiting_for_a_writer() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("fifo.pin");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )?;
        let reason = refusal(&path);
        assert!(reason.contains("a FIFO, not a regular file"), "{reason}");
        Ok(())
    }

    #[test]
    fn refuses_a_directory_an_empty_file_and_an_oversized_one() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        assert!(refusal(dir.path()).contains("a directory, not a regular file"));
        let empty = private_file(dir.path(), "\n")?;
        assert_eq!(refusal(&empty), "it is empty");
        let huge = private_file(dir.path(), &"7".repeat(MAX_PIN_FILE_BYTES + 1))?;
        assert!(refusal(&huge).contains("too long for a PIN"));
        Ok(())
    }

    #[test]
    fn refuses_a_missing_file_naming_the_cause() {
        let reason = refusal(Path::new("/nonexistent/token.pin"));
        assert!(reason.starts_with("cannot open it: "), "{reason}");
    }
}
