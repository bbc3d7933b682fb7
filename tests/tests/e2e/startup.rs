//! Start-up failures end the process quickly with one line that names the problem.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use e2e::{Launch, Service, System};

#[tokio::test]
async fn an_unknown_token_label_stops_start_up_with_a_clear_message() -> Result<()> {
    for name in ["vault", "manager"] {
        let stderr = Launch::failure_of(name, &["--token-label", "no-such-token"]).await?;
        assert!(
            stderr.contains("no token labelled \"no-such-token\""),
            "{name}: {stderr}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_wrong_pin_stops_start_up_without_printing_the_pin() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pin_file = dir.path().join("wrong.pin");
    std::fs::write(&pin_file, "definitely-not-the-pin\n")?;
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600))?;
    let pin_arg = pin_file.to_string_lossy().into_owned();
    for name in ["vault", "manager"] {
        let stderr = Launch::failure_of(name, &["--pin-file", &pin_arg]).await?;
        assert!(stderr.contains("refused the PIN"), "{name}: {stderr}");
        assert!(!stderr.contains("definitely-not-the-pin"));
    }
    Ok(())
}

#[tokio::test]
async fn a_pin_file_others_can_read_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pin_file = dir.path().join("open.pin");
    std::fs::write(&pin_file, "1234\n")?;
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o644))?;
    let stderr = Launch::failure_of("vault", &["--pin-file", &pin_file.to_string_lossy()]).await?;
    assert!(stderr.contains("chmod 600"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn a_missing_pkcs11_module_stops_start_up_with_a_clear_message() -> Result<()> {
    let stderr = Launch::failure_of("manager", &["--pkcs11-module", "/nonexistent/libpkcs11.so"]).await?;
    assert!(
        stderr.contains("could not load PKCS#11 module /nonexistent/libpkcs11.so"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn a_missing_tls_key_label_stops_start_up_naming_the_key() -> Result<()> {
    let stderr = Launch::failure_of("vault", &["--tls-key-label", "no-such-tls-key"]).await?;
    assert!(
        stderr.contains("cannot use TLS key \"no-such-tls-key\" in token \"vault\""),
        "{stderr}"
    );
    let stderr = Launch::failure_of("manager", &["--client-key-label", "no-such-client-key"]).await?;
    assert!(
        stderr.contains("cannot use TLS key \"no-such-client-key\" in token \"manager\""),
        "{stderr}"
    );
    Ok(())
}

/// A keyed audit trail is the point: without its signing key vault does not start.
#[tokio::test]
async fn a_missing_audit_key_stops_vault_s_start_up_naming_the_key() -> Result<()> {
    let stderr = Launch::failure_of("vault", &["--audit-key-label", "no-such-audit-key"]).await?;
    assert!(
        stderr.contains("cannot use audit key \"no-such-audit-key\" in token \"vault\""),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn a_certificate_of_another_key_stops_start_up_naming_the_file() -> Result<()> {
    // manager's certificate, valid and from the same CA, but not for vault's token key.
    let foreign = e2e::dev_dir()?.join("tls/manager-server.pem");
    let foreign = foreign.to_string_lossy();
    let stderr = Launch::failure_of("vault", &["--tls-cert", &foreign]).await?;
    assert!(
        stderr.contains(&format!("{foreign} is not the certificate of this key")),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn an_unsupported_token_algorithm_stops_start_up_naming_the_option() -> Result<()> {
    for (name, option) in [("vault", "--token-algorithms"), ("manager", "--signing-algorithm")] {
        let stderr = Launch::failure_of(name, &[option, "HS256"]).await?;
        assert!(
            stderr.contains(option) && stderr.contains("unsupported token algorithm \"HS256\""),
            "{name}: {stderr}"
        );
    }
    Ok(())
}

/// The development PIN of `token`, as its `.dev/pins/` file holds it (newline stripped).
fn dev_pin(token: &str) -> Result<String> {
    let text = std::fs::read_to_string(e2e::dev_dir()?.join(format!("pins/{token}.pin")))?;
    Ok(text.trim_end().to_owned())
}

/// A copy of `token`'s development PIN file in `dir`, with `mode`.
fn pin_file_copy(dir: &Path, token: &str, mode: u32) -> Result<PathBuf> {
    let path = dir.join(format!("{token}.pin"));
    std::fs::write(&path, format!("{}\n", dev_pin(token)?))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    Ok(path)
}

#[tokio::test]
async fn a_pin_file_owned_by_another_user_is_refused_without_printing_the_pin() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for name in ["vault", "manager"] {
        // The right PIN, so that only the owner check can stop the service.
        let pin_file = pin_file_copy(dir.path(), name, 0o600)?;
        std::os::unix::fs::chown(&pin_file, Some(65534), Some(65534))?;
        let stderr = Launch::failure_of(name, &["--pin-file", &pin_file.to_string_lossy()]).await?;
        assert!(
            stderr.contains("owned by uid 65534, not by this process's effective uid"),
            "{name}: {stderr}"
        );
        assert!(!stderr.contains(&dev_pin(name)?), "{name} printed the PIN");
    }
    Ok(())
}

#[tokio::test]
async fn a_pin_file_its_group_can_read_is_refused_without_printing_the_pin() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pin_file = pin_file_copy(dir.path(), "vault", 0o640)?;
    let stderr = Launch::failure_of("vault", &["--pin-file", &pin_file.to_string_lossy()]).await?;
    assert!(stderr.contains("mode 640") && stderr.contains("chmod 600"), "{stderr}");
    assert!(!stderr.contains(&dev_pin("vault")?), "vault printed the PIN");
    Ok(())
}

/// vault's development configuration without `pin_file`, written to `dir` with copies of
/// the `.dev/` files it names (certificates, CA, manager's keys), which are private to
/// root there.
fn vault_config_without_pin_file(dir: &Path) -> Result<PathBuf> {
    let dev = e2e::dev_dir()?;
    let mut config = String::new();
    for line in std::fs::read_to_string(dev.join("vault.toml"))?.lines() {
        let (key, value) = line.split_once(" = ").unwrap_or((line, ""));
        let file = Path::new(value.trim_matches('"'));
        if key == "pin_file" {
            continue;
        } else if file.starts_with(&dev) {
            let copy = dir.join(file.file_name().ok_or_else(|| anyhow!("{line}"))?);
            std::fs::copy(file, &copy).with_context(|| format!("copying {}", file.display()))?;
            config.push_str(&format!("{key} = \"{}\"\n", copy.display()));
        } else {
            config.push_str(line);
            config.push('\n');
        }
    }
    let path = dir.join("vault.toml");
    std::fs::write(&path, config)?;
    Ok(path)
}

/// Starts vault with its PIN in `VAULT_PKCS11_PIN` and no PIN file; as `user` if given
/// (then everything in `dir`, and a copy of the binary, belongs to that user).
async fn vault_with_pin_in_environment(dir: &Path, user: Option<u32>) -> Result<Service> {
    let config = vault_config_without_pin_file(dir)?;
    let softhsm = e2e::tokens::private_softhsm(dir)?;
    let mut binary = e2e::binary("vault")?;
    if user.is_some() {
        // target/ is private to root here.
        let copy = dir.join("vault");
        std::fs::copy(&binary, &copy)?;
        binary = copy;
    }
    let mut command = tokio::process::Command::new(binary);
    command
        .env("SOFTHSM2_CONF", softhsm)
        .env("RUST_LOG", "info")
        .env("VAULT_PKCS11_PIN", dev_pin("vault")?)
        .arg("--config")
        .arg(config)
        .arg("--database-url")
        .arg(format!("sqlite://{}", dir.join("vault.db").display()))
        .args(["--listen-public", "127.0.0.1:0", "--listen-internal", "127.0.0.1:0"]);
    if let Some(uid) = user {
        chown_tree(dir, uid)?;
        command.uid(uid).gid(uid);
    }
    Service::spawn(command, dir.join("vault.log"), &["public", "internal"]).await
}

fn chown_tree(path: &Path, uid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(uid))?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid)?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_pin_from_the_environment_starts_vault_with_a_warning_naming_the_variable() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let vault = vault_with_pin_in_environment(dir.path(), None).await?;
    let log = vault.log_text();
    let warning = log
        .lines()
        .find(|line| line.contains("WARN") && line.contains("token PIN taken from the environment"))
        .ok_or_else(|| anyhow!("no warning in the log:\n{log}"))?;
    assert!(warning.contains("VAULT_PKCS11_PIN"), "{warning}");
    assert!(!log.contains(&dev_pin("vault")?), "the log holds the PIN");
    Ok(())
}

/// The (soft, hard) core file size limits of process `pid`, as `/proc/PID/limits` shows them.
fn core_limits(pid: u32) -> Result<(String, String)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits"))?;
    let line = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max core file size"))
        .ok_or_else(|| anyhow!("no core limit in {limits}"))?;
    let mut fields = line.split_whitespace();
    let mut next = || fields.next().map(str::to_owned).ok_or_else(|| anyhow!("{line}"));
    Ok((next()?, next()?))
}

#[tokio::test]
async fn running_services_have_a_core_file_size_limit_of_zero() -> Result<()> {
    let system = System::start().await?;
    for (name, service) in [("vault", &system.vault), ("manager", &system.manager)] {
        let pid = service.pid().ok_or_else(|| anyhow!("{name} has exited"))?;
        assert_eq!(core_limits(pid)?, ("0".into(), "0".into()), "{name}: soft and hard");
    }
    Ok(())
}

/// Whether the memory and environment of process `pid` are closed to another process of
/// user `uid`: `/proc/PID/environ` and `mem` belong to root and cannot be opened as `uid`.
/// An error if only some of that holds.
fn closed_to_its_user(pid: u32, uid: u32) -> Result<bool> {
    let mut closed = Vec::new();
    for entry in ["environ", "mem"] {
        let path = format!("/proc/{pid}/{entry}");
        // Opening is the probe: reading `mem` from offset 0 fails even where it may be opened.
        let opened = std::process::Command::new("sh")
            .args(["-c", "exec 3<\"$0\"", &path])
            .uid(uid)
            .gid(uid)
            .output()?
            .status
            .success();
        // The entries, not the /proc/PID directory: that one keeps the process's owner.
        let owner = std::fs::metadata(&path)?.uid();
        closed.push((
            owner == 0 && !opened,
            format!("{path}: owner {owner}, opened by {uid}: {opened}"),
        ));
    }
    match closed.iter().filter(|(yes, _)| *yes).count() {
        0 => Ok(false),
        n if n == closed.len() => Ok(true),
        _ => Err(anyhow!("half closed: {closed:?}")),
    }
}

/// Whether a process is dumpable shows from outside only when it does not run as root: the
/// kernel then hands the entries under its `/proc/PID/` to root and refuses them to its own
/// user. So vault runs here as `nobody`, with its PIN in the environment: what another
/// process of that user would be after. A plain `sleep` of the same user shows the probe
/// sees the difference.
#[tokio::test]
async fn vault_s_memory_and_environment_are_closed_to_other_processes_of_its_user() -> Result<()> {
    const NOBODY: u32 = 65534;
    let mut control = tokio::process::Command::new("sleep")
        .arg("60")
        .uid(NOBODY)
        .gid(NOBODY)
        .kill_on_drop(true)
        .spawn()?;
    let control_pid = control.id().ok_or_else(|| anyhow!("sleep has exited"))?;
    assert!(
        !closed_to_its_user(control_pid, NOBODY)?,
        "the probe fails on a dumpable process"
    );
    control.kill().await?;

    let dir = tempfile::tempdir()?;
    let vault = vault_with_pin_in_environment(dir.path(), Some(NOBODY)).await?;
    let pid = vault.pid().ok_or_else(|| anyhow!("vault has exited"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("65534")),
        "vault does not run as nobody:\n{status}"
    );
    assert!(closed_to_its_user(pid, NOBODY)?, "vault is dumpable");
    Ok(())
}
