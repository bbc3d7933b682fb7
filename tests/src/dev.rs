//! The repository's development layout, as the tests find it: `.dev/` (provisioned by
//! `softhsm-setup/setup.sh`), the workspace binaries and the project's scripts.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};

/// Debian's SoftHSM2 module.
pub const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The repository's `.dev/` directory; fails clearly when provisioning has not run, or ran
/// before vault's audit key existed (every vault the tests start needs it, in the token
/// copies taken from `.dev/tokens`).
pub fn dev_dir() -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.dev");
    if !dir.join("softhsm2.conf").is_file() {
        bail!(
            "{} is not provisioned: run `make test` (or softhsm-setup/setup.sh) first",
            dir.display()
        );
    }
    if !dir.join(AUDIT_PUBLIC_KEY).is_file() {
        bail!(
            "{} was provisioned before vault's audit key: run `make setup` (softhsm-setup/setup.sh) \
             again, which adds it to the vault token",
            dir.display()
        );
    }
    Ok(dir.canonicalize()?)
}

/// vault's audit key's public half (JWK), as `softhsm-setup/setup.sh` exports it, relative
/// to `.dev/`: what an auditor without the PIN gives `vault-admin audit-verify`.
pub const AUDIT_PUBLIC_KEY: &str = "keys/vault-audit.jwk.json";

/// A script of `softhsm-setup/`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../softhsm-setup")
        .join(name)
}

/// Path of a workspace binary in the same `target/<profile>/` as the running executable
/// (tests run from `target/<profile>/deps/`, `loadgen` from `target/<profile>/`).
pub fn binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .ok_or_else(|| anyhow!("unexpected executable path {}", exe.display()))?;
    if dir.ends_with("deps") {
        dir = dir
            .parent()
            .ok_or_else(|| anyhow!("unexpected executable path {}", exe.display()))?;
    }
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --workspace --bins` (make test does)",
            path.display()
        );
    }
    Ok(path)
}

/// A loopback port that was free a moment ago (for the one case where a service must
/// know another's address before that one starts).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The repository's root, where the README's commands and the project's scripts run.
pub fn repo_root() -> Result<PathBuf> {
    Ok(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize()?)
}

/// Runs `command` to its end: its stdout, or an error naming `what` with its status and
/// stderr.
pub fn stdout_of(command: &mut Command, what: &str) -> Result<String> {
    let output = command.output().with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!("{what}: {}: {}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
