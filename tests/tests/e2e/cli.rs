//! The `secret-store` command-line client against the real services: what it prints, how it
//! exits, and that secrets and tokens stay out of its argv and stderr.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, ensure};
use e2e::System;
use tokio::io::AsyncWriteExt;

/// Exit codes `secret-store --help` documents.
const OTHER: i32 = 1;
const USAGE: i32 = 2;
const GONE: i32 = 3;
const REFUSED: i32 = 4;
const UNAVAILABLE: i32 = 5;

/// The client pointed at one system, in a clean environment (no inherited `SECRET_STORE_*`,
/// an empty `$XDG_CONFIG_HOME`), trusting only the dev CA.
struct SecretStore {
    binary: PathBuf,
    manager: String,
    vault: String,
    ca: PathBuf,
    home: tempfile::TempDir,
}

/// What one run left behind.
struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The `name: value` line `store` prints.
    fn field(&self, name: &str) -> Result<String> {
        let prefix = format!("{name}: ");
        self.stdout()
            .lines()
            .find_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
            .with_context(|| format!("no {name} in {:?}", self.stdout()))
    }
}

impl SecretStore {
    fn new(system: &System) -> Result<Self> {
        Ok(Self {
            binary: e2e::binary("secret-store")?,
            manager: system.manager_url(""),
            vault: system.vault_url(""),
            ca: e2e::dev_dir()?.join("tls/ca.pem"),
            home: tempfile::tempdir()?,
        })
    }

    /// The binary with `args` and `env` only (and `$HOME`, `$XDG_CONFIG_HOME`).
    fn bare(&self, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .env_clear()
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path())
            .envs(env.iter().copied())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// The binary pointed at the system by `--manager-url`, `--vault-url` and `--ca`.
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
        let mut command = self.bare(&[], env);
        command
            .arg("--manager-url")
            .arg(&self.manager)
            .arg("--vault-url")
            .arg(&self.vault)
            .arg("--ca")
            .arg(&self.ca)
            .args(args);
        command
    }

    /// Runs [`SecretStore::command`] with `stdin` as standard input.
    async fn run(&self, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Result<Run> {
        finish(self.command(args, env).spawn()?, stdin).await
    }

    /// `store --user-id USER [extra]` with `secret` on stdin; returns the key id and token.
    async fn store(&self, user: &str, secret: &str, extra: &[&str]) -> Result<(String, String)> {
        let args: Vec<&str> = ["store", "--user-id", user]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        let run = self.run(&args, &[], secret.as_bytes()).await?;
        ensure!(run.code == 0, "store exited {}: {}", run.code, run.stderr);
        ensure!(!run.stderr.contains(secret), "the secret in stderr");
        Ok((run.field("key_id")?, run.field("token")?))
    }

    /// A file holding `token`.
    fn token_file(&self, name: &str, token: &str) -> Result<PathBuf> {
        let path = self.home.path().join(name);
        std::fs::write(&path, token)?;
        Ok(path)
    }
}

/// Writes `stdin`, closes it and waits.
async fn finish(mut child: tokio::process::Child, stdin: &[u8]) -> Result<Run> {
    let mut input = child.stdin.take().context("stdin")?;
    input.write_all(stdin).await?;
    drop(input);
    let output = child.wait_with_output().await?;
    Ok(Run {
        code: output.status.code().context("killed by a signal")?,
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// `/proc/PID/cmdline`, once the kernel has set it: a vfork'd parent resumes during
/// `execve`, before the new image's arguments are in place, and reads it empty until then.
async fn argv_of(pid: u32) -> Result<String> {
    for _ in 0..200 {
        let argv = std::fs::read(format!("/proc/{pid}/cmdline"))?;
        if !argv.is_empty() {
            return Ok(String::from_utf8_lossy(&argv).replace('\0', " "));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    anyhow::bail!("/proc/{pid}/cmdline stayed empty for 2 s")
}

fn path(path: &Path) -> Result<&str> {
    path.to_str().context("non-UTF-8 temporary path")
}

#[tokio::test]
async fn stores_from_stdin_and_get_prints_exactly_the_secret() -> Result<()> {
    let system = System::start().await?;
    let cli = SecretStore::new(&system)?;
    let secret = "pässwörd 🔐 \"quoted\" \\ tab\t and a trailing newline\n";

    // The process waits for stdin: its argv, as any local user reads it, holds no secret.
    let child = cli.command(&["store", "--user-id", "alice"], &[]).spawn()?;
    let argv = argv_of(child.id().context("pid")?).await?;
    ensure!(
        argv.contains(" store --user-id alice") && !argv.contains("pässwörd"),
        "argv: {argv}"
    );
    let stored = finish(child, secret.as_bytes()).await?;
    assert_eq!(stored.code, 0, "{}", stored.stderr);
    assert!(!stored.stderr.contains("pässwörd"), "{}", stored.stderr);
    let key_id = stored.field("key_id")?;
    let token = stored.field("token")?;
    assert!(stored.field("expires_at")?.ends_with('Z'));

    let got = cli
        .run(&["get", &key_id], &[("SECRET_STORE_TOKEN", &token)], b"")
        .await?;
    assert_eq!(got.code, 0, "{}", got.stderr);
    assert_eq!(got.stdout, secret.as_bytes(), "byte for byte, no newline added");
    assert_eq!(got.stderr, "");

    let token_file = cli.token_file("alice.jwt", &token)?;
    let args = ["get", &key_id, "--token-file", path(&token_file)?, "--json"];
    let json = cli.run(&args, &[], b"").await?;
    assert_eq!(json.code, 0, "{}", json.stderr);
    let body: serde_json::Value = serde_json::from_slice(&json.stdout)?;
    assert_eq!(body["decrypted_key"], secret);
    Ok(())
}

#[tokio::test]
async fn store_writes_the_token_to_a_private_file_and_get_reads_it_from_there() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let system = System::start().await?;
    let cli = SecretStore::new(&system)?;
    let token_file = cli.home.path().join("bob.jwt");
    let args = [
        "store",
        "--user-id",
        "bob",
        "--trim-newline",
        "--token-file",
        path(&token_file)?,
    ];
    let stored = cli.run(&args, &[], b"echoed secret\n").await?;
    assert_eq!(stored.code, 0, "{}", stored.stderr);
    assert_eq!(stored.field("token")?, format!("written to {}", token_file.display()));
    assert_eq!(std::fs::metadata(&token_file)?.permissions().mode() & 0o777, 0o600);

    let args = [
        "get",
        &stored.field("key_id")?,
        "--token-file",
        path(&token_file)?,
        "--newline",
    ];
    let got = cli.run(&args, &[], b"").await?;
    assert_eq!(got.code, 0, "{}", got.stderr);
    assert_eq!(got.stdout(), "echoed secret\n");
    Ok(())
}

#[tokio::test]
async fn a_one_time_secret_is_gone_on_the_second_get() -> Result<()> {
    let system = System::start().await?;
    let cli = SecretStore::new(&system)?;
    let (key_id, token) = cli.store("carol", "read me once", &["--max-reads", "1"]).await?;
    let env = [("SECRET_STORE_TOKEN", token.as_str())];
    let first = cli.run(&["get", &key_id], &env, b"").await?;
    assert_eq!(
        (first.code, first.stdout()),
        (0, "read me once".to_owned()),
        "{}",
        first.stderr
    );

    let second = cli.run(&["get", &key_id], &env, b"").await?;
    assert_eq!(second.code, GONE, "{}", second.stderr);
    assert!(second.stdout.is_empty());
    assert!(second.stderr.contains("key_not_found"), "{}", second.stderr);
    assert!(!second.stderr.contains(&token), "the token in stderr");
    Ok(())
}

#[tokio::test]
async fn a_revoked_token_is_refused() -> Result<()> {
    let system = System::start().await?;
    let cli = SecretStore::new(&system)?;
    let (key_id, token) = cli.store("dave", "revocable", &[]).await?;
    let env = [("SECRET_STORE_TOKEN", token.as_str())];
    let revoked = cli.run(&["revoke"], &env, b"").await?;
    assert_eq!(revoked.code, 0, "{}", revoked.stderr);
    assert!(revoked.stdout().starts_with("revoked: token "), "{}", revoked.stdout());

    let got = cli.run(&["get", &key_id], &env, b"").await?;
    assert_eq!(got.code, REFUSED, "{}", got.stderr);
    assert!(got.stderr.contains("revoked_token"), "{}", got.stderr);
    assert!(!got.stderr.contains(&token) && !got.stderr.contains("revocable"));
    Ok(())
}

#[tokio::test]
async fn delete_destroys_the_secret() -> Result<()> {
    let system = System::start().await?;
    let cli = SecretStore::new(&system)?;
    let (key_id, token) = cli.store("erin", "short-lived", &[]).await?;
    let env = [("SECRET_STORE_TOKEN", token.as_str())];
    let deleted = cli.run(&["delete", &key_id, "--json"], &env, b"").await?;
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    let body: serde_json::Value = serde_json::from_slice(&deleted.stdout)?;
    assert_eq!(
        (body["key_id"].as_str(), body["destroyed"].as_bool()),
        (Some(key_id.as_str()), Some(true))
    );

    let got = cli.run(&["get", &key_id], &env, b"").await?;
    assert_eq!(got.code, GONE, "{}", got.stderr);
    assert!(!got.stderr.contains("short-lived"));
    Ok(())
}

#[tokio::test]
async fn a_wrong_token_file_is_refused_without_echoing_the_token() -> Result<()> {
    let system = System::start().await?;
    let cli = SecretStore::new(&system)?;
    let (key_id, _) = cli.store("frank", "frank's secret", &[]).await?;
    let (_, other_token) = cli.store("grace", "grace's secret", &[]).await?;
    let forged = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJmcmFuayJ9.c2lnbmF0dXJl";
    for (name, token, code) in [
        ("other.jwt", other_token.as_str(), "token_not_valid_for_key"),
        ("forged.jwt", forged, "invalid_token"),
    ] {
        let file = cli.token_file(name, token)?;
        let got = cli
            .run(&["get", &key_id, "--token-file", path(&file)?], &[], b"")
            .await?;
        assert_eq!(got.code, REFUSED, "{name}: {}", got.stderr);
        assert!(got.stderr.contains(code), "{name}: {}", got.stderr);
        assert!(!got.stderr.contains(token), "{name}: the token in stderr");
        assert!(
            got.stdout.is_empty() && !got.stderr.contains("frank's secret"),
            "{}",
            got.stderr
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_config_file_supplies_the_urls_the_ca_and_the_user() -> Result<()> {
    let system = System::start().await?;
    let cli = SecretStore::new(&system)?;
    let dir = cli.home.path().join("secret-store");
    std::fs::create_dir_all(&dir)?;
    let config = format!(
        "manager_url = {:?}\nvault_url = {:?}\nca = {:?}\nuser_id = \"heidi\"\n",
        cli.manager,
        cli.vault,
        path(&cli.ca)?
    );
    std::fs::write(dir.join("client.toml"), config)?;
    // No flags at all: everything from $XDG_CONFIG_HOME/secret-store/client.toml.
    let stored = finish(cli.bare(&["store", "--json"], &[]).spawn()?, b"from config").await?;
    assert_eq!(stored.code, 0, "{}", stored.stderr);
    let body: serde_json::Value = serde_json::from_slice(&stored.stdout)?;
    let (key_id, token) = (
        body["key_id"].as_str().context("key_id")?,
        body["access_token"].as_str().context("token")?,
    );
    let (status, read) = system.read(key_id, token).await?;
    assert_eq!(
        (status.as_u16(), read["decrypted_key"].as_str()),
        (200, Some("from config"))
    );
    Ok(())
}

#[tokio::test]
async fn usage_errors_and_an_unreachable_service_have_their_exit_codes() -> Result<()> {
    let system = System::start().await?;
    let mut cli = SecretStore::new(&system)?;
    let missing_token = cli.run(&["get", "abc"], &[], b"").await?;
    assert_eq!(missing_token.code, USAGE, "{}", missing_token.stderr);
    let bad_key_id = cli
        .run(&["get", "../tokens/revoke"], &[("SECRET_STORE_TOKEN", "a.b.c")], b"")
        .await?;
    assert_eq!(bad_key_id.code, USAGE, "{}", bad_key_id.stderr);
    let empty_secret = cli.run(&["store", "--user-id", "ivan"], &[], b"").await?;
    assert_eq!(empty_secret.code, USAGE, "{}", empty_secret.stderr);
    let bad_user = cli.run(&["store", "--user-id", "not valid!"], &[], b"s").await?;
    assert_eq!(bad_user.code, USAGE, "{}", bad_user.stderr);
    assert!(bad_user.stderr.contains("invalid_user_id"), "{}", bad_user.stderr);

    // The system's roots do not hold the dev CA: a TLS failure, not worth a retry.
    let args = ["--manager-url", &cli.manager, "--vault-url", &cli.vault, "get", "abc"];
    let untrusted = finish(cli.bare(&args, &[("SECRET_STORE_TOKEN", "a.b.c")]).spawn()?, b"").await?;
    assert_eq!(untrusted.code, OTHER, "{}", untrusted.stderr);
    assert!(
        untrusted.stderr.contains("TLS with vault failed"),
        "{}",
        untrusted.stderr
    );

    let port = e2e::free_port()?;
    cli.vault = format!("https://127.0.0.1:{port}");
    let unreachable = cli
        .run(&["get", "abc"], &[("SECRET_STORE_TOKEN", "a.b.c")], b"")
        .await?;
    assert_eq!(unreachable.code, UNAVAILABLE, "{}", unreachable.stderr);
    assert!(!unreachable.stderr.contains("a.b.c"), "{}", unreachable.stderr);
    Ok(())
}
