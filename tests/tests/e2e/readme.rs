//! The README's "Quick start" and "Key rotation" commands, run as written with bash against a
//! running system, so a README edit that breaks one fails here.
//!
//! The commands are read from README.md at test time: every ```sh block of the two sections,
//! in order, in one bash session (`set -euo pipefail`, as a user typing them into one shell;
//! later blocks use what earlier ones set). Blocks of any other language (TOML, output) are
//! not commands and are skipped. Within a block, full-line comments are not run; a comment
//! line that starts with `{` or `[` after the `#` is the output the README promises, and the
//! session's stdout must contain it. A line starting with `make ` is not run either: the test
//! stands in for `make run` (it starts the system itself, below) and `make test` is the suite
//! this test belongs to.
//!
//! "Both services' keys rotate without downtime": while the commands run, a user stores and
//! reads a secret over and over, and every request must succeed — so the waits the blocks
//! need (the services' default refresh intervals, as `make run` has them) are tested too;
//! the test takes about as long as those waits, a minute and a half.
//!
//! The system is the one `make run` starts — vault, then manager, each token behind its own
//! `p11-kit server` (isolation mode), vault following manager's JWKS URL — but on free ports,
//! with a private copy of the `.dev/` tokens and its own database, so the test runs in
//! parallel with the others and beside a `make run` on the default ports without touching
//! either. Substituted, and nothing else:
//! - in the text: `https://127.0.0.1:8000` (manager) and `https://127.0.0.1:8001` (vault's
//!   public listener) become the test's addresses; any other `127.0.0.1:800x` left in a
//!   command fails the test, since it would reach a `make run` rather than this system;
//! - in the environment: the commands run in a plain shell's — no `SOFTHSM2_CONF`,
//!   `KRYOPTIC_CONF`, `MANAGER_*`, `VAULT_*` or `TOKENS` (checked: the admin tools run bare
//!   find no token there, the bug this test keeps fixed) — plus `DEV_DIR`, which points
//!   `./dev` at a directory laid out as `.dev/` with the test's token copy, `.dev/`'s
//!   `manager.toml`, and `.dev/vault.toml` with the test's database, and `CARGO_TARGET_DIR`,
//!   the binaries this test was built with. `.dev/`'s PINs and CA certificate, which the
//!   configurations and commands name, are used as they are (read only).

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use e2e::{Client, Implementation, Launch, TokenServer, binary, free_port};
use reqwest::StatusCode;

/// How long the README's commands may take: about 100 s as written (the waits for the
/// services' key refreshes), much more on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(300);

/// The README sections whose commands this test runs, in order.
const SECTIONS: [&str; 2] = ["Quick start", "Key rotation"];

/// The text of `## {title}` up to the next `## ` heading.
fn section<'a>(readme: &'a str, title: &str) -> Result<&'a str> {
    let heading = format!("## {title}\n");
    let start = readme
        .find(&heading)
        .ok_or_else(|| anyhow!("README.md has no section {heading:?}"))?
        + heading.len();
    let rest = &readme[start..];
    Ok(rest.find("\n## ").map_or(rest, |end| &rest[..end]))
}

/// The bodies of the ```sh blocks of `text`.
fn sh_blocks(text: &str) -> Result<Vec<String>> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(language) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        let mut body = String::new();
        let mut closed = false;
        for line in lines.by_ref() {
            if line.trim_start().starts_with("```") {
                closed = true;
                break;
            }
            body.push_str(line);
            body.push('\n');
        }
        ensure!(closed, "an unclosed ``` block in README.md:\n{body}");
        if language.trim() == "sh" {
            blocks.push(body);
        }
    }
    Ok(blocks)
}

/// A block's commands, with the lines the module comment names left out, and the output its
/// comments promise.
struct Commands {
    run: String,
    expected: Vec<String>,
}

fn commands(block: &str) -> Commands {
    let mut run = String::new();
    let mut expected = Vec::new();
    for line in block.lines() {
        let trimmed = line.trim_start();
        if let Some(comment) = trimmed.strip_prefix('#') {
            let comment = comment.trim();
            if comment.starts_with('{') || comment.starts_with('[') {
                expected.push(comment.to_owned());
            }
        } else if !trimmed.starts_with("make ") {
            run.push_str(line);
            run.push('\n');
        }
    }
    Commands { run, expected }
}

/// Runs an admin tool on the test's token copy and configuration in `dir` directly (not
/// through the README), to check what the README's commands did.
fn admin(dir: &Path, name: &str, args: &[&str]) -> Result<String> {
    let service = name.trim_end_matches("-admin");
    let (variable, conf) = Implementation::SoftHsm.private_copy(dir)?;
    e2e::stdout_of(
        std::process::Command::new(binary(name)?)
            .env(variable, conf)
            .arg("--config")
            .arg(dir.join(format!("{service}.toml")))
            .args(args),
        &format!("{name} {args:?}"),
    )
}

#[tokio::test]
async fn the_quick_start_and_key_rotation_commands_work_as_written() -> Result<()> {
    let root = e2e::repo_root()?;
    let readme = std::fs::read_to_string(root.join("README.md"))?;

    // The system `make run` starts, on free ports and a private token copy.
    let dir = tempfile::tempdir()?;
    let vault_tokens = TokenServer::start(dir.path(), "vault").await?;
    let manager_tokens = TokenServer::start(dir.path(), "manager").await?;
    let manager_port = free_port()?;
    let jwks = format!("https://127.0.0.1:{manager_port}/.well-known/jwks.json");
    let listen = format!("127.0.0.1:{manager_port}");
    let vault = Launch::vault(dir.path())
        .token_server(&vault_tokens)
        .args(&["--manager-jwks", &jwks])
        .start()
        .await?;
    let manager = Launch::manager(dir.path(), vault.addr("internal"))
        .token_server(&manager_tokens)
        .args(&["--listen", &listen])
        .start()
        .await?;
    let client = Client::new(manager.addr("api"))?;
    let vault_url = format!("https://{}", vault.addr("public"));
    e2e::wait_ready(&client.http, &format!("{vault_url}/readyz")).await?;

    // The README's commands, the two URLs substituted (see the module comment).
    let mut script = String::from("set -euo pipefail\nset -x\n");
    let mut expected = Vec::new();
    for title in SECTIONS {
        let blocks = sh_blocks(section(&readme, title)?)?;
        ensure!(!blocks.is_empty(), "README.md's {title:?} has no ```sh block");
        for block in blocks {
            let block = commands(&block);
            let run = block
                .run
                .replace("https://127.0.0.1:8000", &format!("https://{listen}"))
                .replace("https://127.0.0.1:8001", &vault_url);
            ensure!(
                !run.contains("127.0.0.1:800"),
                "a README command names a default port this test does not map:\n{run}"
            );
            script.push_str(&run);
            expected.extend(block.expected);
        }
    }

    let manager_admin = binary("manager-admin")?;
    let profile = manager_admin
        .parent()
        .ok_or_else(|| anyhow!("no directory above {}", manager_admin.display()))?;
    ensure!(
        profile.ends_with("debug"),
        "./dev runs target/debug/ binaries; these tests were built in {}",
        profile.display()
    );
    let target = profile.parent().context("no target directory")?;
    // `./dev`'s directory: the token copy the token servers serve (`softhsm2.conf`,
    // `tokens/`), and the services' dev configurations, vault's on the test's database.
    let conf = Implementation::SoftHsm.private_copy(dir.path())?;
    ensure!(
        conf.1 == dir.path().join("softhsm2.conf"),
        "token copy at {}",
        conf.1.display()
    );
    let database_url = format!("sqlite://{}", dir.path().join("vault.db").display());
    let dev = e2e::dev_dir()?;
    std::fs::copy(dev.join("manager.toml"), dir.path().join("manager.toml"))?;
    let vault_toml = std::fs::read_to_string(dev.join("vault.toml"))?;
    let mut replaced = 0;
    let vault_toml: String = vault_toml
        .lines()
        .map(|line| {
            if line.starts_with("database_url") {
                replaced += 1;
                format!("database_url = \"{database_url}\"\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    ensure!(
        replaced == 1,
        "{} has no one database_url line",
        dev.join("vault.toml").display()
    );
    std::fs::write(dir.path().join("vault.toml"), vault_toml)?;

    // A plain shell's environment, and `./dev` pointed at the test's directory.
    let plain_shell = |script: &str| {
        let mut bash = tokio::process::Command::new("bash");
        bash.arg("-c").arg(script).current_dir(&root);
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if ["SOFTHSM2_CONF", "KRYOPTIC_CONF", "TOKENS", "DEV_DIR"].contains(&name.as_ref())
                || name.starts_with("MANAGER_")
                || name.starts_with("VAULT_")
            {
                bash.env_remove(name.as_ref());
            }
        }
        bash.env("DEV_DIR", dir.path())
            .env("CARGO_TARGET_DIR", target)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        bash
    };
    // The bug: run bare there, the admin tools find no token.
    let bare = plain_shell("target/debug/manager-admin --config .dev/manager.toml list-signing-keys")
        .output()
        .await?;
    ensure!(
        !bare.status.success(),
        "in the test's plain shell the bare admin tool found a token: {}{}",
        String::from_utf8_lossy(&bare.stdout),
        String::from_utf8_lossy(&bare.stderr)
    );

    let old_signing = admin(dir.path(), "manager-admin", &["list-signing-keys"])?;
    let old_wrapping = admin(dir.path(), "vault-admin", &["list-wrapping-keys"])?;

    // A user of the system throughout: every store and read must succeed.
    let stop = Arc::new(AtomicBool::new(false));
    let user = tokio::spawn({
        let (client, stop, vault) = (client.clone(), stop.clone(), vault.addr("public"));
        async move {
            let (mut requests, mut failures) = (0_u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                requests += 1;
                match client.store("readme-user", "kept across rotations").await {
                    Ok(stored) => match client.read(vault, &stored.key_id, &stored.access_token).await {
                        Ok((StatusCode::OK, _)) => {}
                        Ok((status, body)) => failures.push(format!("read: {status} {body}")),
                        Err(e) => failures.push(format!("read: {e:#}")),
                    },
                    Err(e) => failures.push(format!("store: {e:#}")),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (requests, failures)
        }
    });

    // bash writes to files rather than pipes, so that a run cut short by the deadline still
    // shows how far it got: the `set -x` trace on stderr names the command it was in. bash
    // leads its own process group, which the deadline kills whole (a hung `./dev` as well).
    let stdout_file = dir.path().join("readme-commands.stdout");
    let stderr_file = dir.path().join("readme-commands.stderr");
    let mut bash = plain_shell(&script);
    bash.stdout(std::fs::File::create(&stdout_file)?)
        .stderr(std::fs::File::create(&stderr_file)?)
        .process_group(0);
    let mut child = bash.spawn().context("spawning bash")?;
    let finished = tokio::time::timeout(DEADLINE, child.wait()).await;
    if finished.is_err()
        && let Some(pgid) = child.id()
    {
        std::process::Command::new("kill")
            .args(["-9", "--", &format!("-{pgid}")])
            .status()?;
        child.wait().await?;
    }
    stop.store(true, Ordering::Relaxed);
    let (requests, failures) = user.await?;
    let read = |file: &Path| std::fs::read(file).map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    let (stdout, stderr) = (read(&stdout_file)?, read(&stderr_file)?);
    let report = || {
        format!(
            "script:\n{script}\nstdout:\n{stdout}\nstderr (bash -x):\n{stderr}\nmanager log:\n{}\nvault log:\n{}",
            manager.log_text(),
            vault.log_text()
        )
    };
    let Ok(status) = finished else {
        bail!(
            "the README's commands did not finish within {} s (killed; the last command \
             bash traced is the one it was in; {} of {requests} store-and-read rounds had \
             failed):\n{}",
            DEADLINE.as_secs(),
            failures.len(),
            report()
        );
    };
    let status = status?;
    if !status.success() {
        bail!("the README's commands failed ({status}):\n{}", report());
    }
    for line in &expected {
        ensure!(
            stdout.contains(line.as_str()),
            "the README promises {line:?}, the commands printed otherwise:\n{}",
            report()
        );
    }

    ensure!(
        failures.is_empty(),
        "{} of {requests} store-and-read rounds failed while the README's commands ran: {failures:#?}\n{}",
        failures.len(),
        report()
    );

    // They did what the README says: each service's key has a second generation, the only
    // one left once the first is retired (the wrapping key's after every secret was rewrapped
    // to the new one, which retire-wrapping-key insists on).
    let signing = admin(dir.path(), "manager-admin", &["list-signing-keys"])?;
    let wrapping = admin(dir.path(), "vault-admin", &["list-wrapping-keys"])?;
    for (before, after, label) in [
        (&old_signing, &signing, "manager-signing.1"),
        (&old_wrapping, &wrapping, "vault-wrapping.1"),
    ] {
        let lines: Vec<&str> = after.lines().collect();
        ensure!(
            lines.len() == 1 && lines[0].contains(&format!("\t{label}\t")) && lines[0].ends_with("(current)"),
            "before the commands:\n{before}after them:\n{after}\n{}",
            report()
        );
    }
    Ok(())
}
