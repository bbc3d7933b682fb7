//! OpenSSL (installed by `setup.sh`), the independent implementation tests check against.

use std::path::Path;

use anyhow::{Result, bail};

/// Runs `openssl` and returns its stdout, its stderr and whether it exited 0 (some of its
/// verdicts are only in its messages: `openssl req -verify` exits 0 either way).
pub fn openssl_output(args: &[&str]) -> Result<(Vec<u8>, String, bool)> {
    let output = std::process::Command::new("openssl").args(args).output()?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    Ok((output.stdout, stderr, output.status.success()))
}

/// Runs `openssl` and returns its stdout; fails with its stderr.
pub fn openssl(args: &[&str]) -> Result<Vec<u8>> {
    let (stdout, stderr, ok) = openssl_output(args)?;
    if !ok {
        bail!("openssl {args:?}: {stderr}");
    }
    Ok(stdout)
}

/// Writes a new RSA-2048 private key made in software by OpenSSL to `pem` (for tests that
/// must know a key's secret: the memory scan, the key-file scan's control).
pub fn openssl_rsa_key(pem: &Path) -> Result<()> {
    let out = pem.to_string_lossy();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &out,
    ])
    .map(drop)
}
