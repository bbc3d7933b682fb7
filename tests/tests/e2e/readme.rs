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
//! The system is the one `make run` starts — vault, then manager, each token behind its own
//! `p11-kit server` (isolation mode), vault following manager's JWKS URL — but on free ports,
//! with a private copy of the `.dev/` tokens and its own database, so the test runs in
//! parallel with the others and beside a `make run` on the default ports without touching
//! either. Substituted, and nothing else:
//! - in the text: `https://127.0.0.1:8000` (manager) and `https://127.0.0.1:8001` (vault's
//!   public listener) become the test's addresses; any other `127.0.0.1:800x` left in a
//!   command fails the test, since it would reach a `make run` rather than this system;
//! - in the environment the commands (and `./dev`) see: `SOFTHSM2_CONF` names the token copy
//!   (`./dev` keeps a value already set), `VAULT_DATABASE_URL` the test's database (it
//!   overrides `.dev/vault.toml`'s), `CARGO_TARGET_DIR` the binaries this test was built
//!   with. `.dev/`'s configurations, PINs and CA certificate are used as they are (read only).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use e2e::{Client, Implementation, Launch, TokenServer, binary, free_port};

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

/// The repository's root (the README's commands run there, as the README assumes).
fn root() -> Result<PathBuf> {
    Ok(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize()?)
}

/// Runs an admin tool on the test's token copy directly (not through the README), to check
/// what the README's commands did.
fn admin(name: &str, conf: &(&str, PathBuf), database_url: &str, args: &[&str]) -> Result<String> {
    let service = name.trim_end_matches("-admin");
    let output = std::process::Command::new(binary(name)?)
        .env(conf.0, &conf.1)
        .env("VAULT_DATABASE_URL", database_url)
        .arg("--config")
        .arg(Implementation::SoftHsm.service_config(service)?)
        .args(args)
        .output()?;
    ensure!(
        output.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test]
async fn the_quick_start_and_key_rotation_commands_work_as_written() -> Result<()> {
    let root = root()?;
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
    let conf = Implementation::SoftHsm.private_copy(dir.path())?;
    let database_url = format!("sqlite://{}", dir.path().join("vault.db").display());

    let old_signing = admin("manager-admin", &conf, &database_url, &["list-signing-keys"])?;
    let old_wrapping = admin("vault-admin", &conf, &database_url, &["list-wrapping-keys"])?;

    let mut bash = tokio::process::Command::new("bash");
    bash.arg("-c")
        .arg(&script)
        .current_dir(&root)
        .env(conf.0, &conf.1)
        .env("VAULT_DATABASE_URL", &database_url)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("TOKENS")
        .env_remove("KRYOPTIC_CONF")
        .env_remove("MANAGER_CONFIG")
        .env_remove("VAULT_CONFIG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), bash.output())
        .await
        .context("the README's commands did not finish within 120 s")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = || {
        format!(
            "script:\n{script}\nstdout:\n{stdout}\nstderr (bash -x):\n{stderr}\nmanager log:\n{}\nvault log:\n{}",
            manager.log_text(),
            vault.log_text()
        )
    };
    if !output.status.success() {
        bail!("the README's commands failed ({}):\n{}", output.status, report());
    }
    for line in &expected {
        ensure!(
            stdout.contains(line.as_str()),
            "the README promises {line:?}, the commands printed otherwise:\n{}",
            report()
        );
    }

    // They did what the README says: each service's key has a second generation, the only
    // one left once the first is retired (the wrapping key's after every secret was rewrapped
    // to the new one, which retire-wrapping-key insists on).
    let signing = admin("manager-admin", &conf, &database_url, &["list-signing-keys"])?;
    let wrapping = admin("vault-admin", &conf, &database_url, &["list-wrapping-keys"])?;
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
