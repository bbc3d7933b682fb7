//! Running deploy/containers/ with podman and podman-compose for the containers test: its
//! image tags, commands bounded in time, a Compose project on free ports with its health
//! checks, logs and state, and its removal however the test ends (and of the projects of
//! earlier runs that were killed before theirs).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::{free_port, repo_root};

/// The test's own image tags (compose.yaml's defaults are the `:dev` tags users build).
pub const IMAGE: &str = "localhost/secret-store:test";
/// The test's PostgreSQL image tag.
pub const POSTGRES_IMAGE: &str = "localhost/secret-store-postgres:test";
/// The test's Compose projects are named this and the test process's pid.
pub const PROJECT_PREFIX: &str = "secret-store-test-";
/// Every long-running container, in start order.
pub const RUNNING: [&str; 6] = [
    "token-manager",
    "token-vault",
    "postgres",
    "vault-1",
    "vault-2",
    "manager",
];
/// The sandbox's containers.conf, as `softhsm-setup/containers.sh` chooses it.
pub fn containers_conf() -> Result<String> {
    if let Ok(conf) = std::env::var("CONTAINERS_CONF") {
        return Ok(conf);
    }
    Ok(repo_root()?.join("softhsm-setup/containers.conf").display().to_string())
}

/// Runs `program args`, bounded by `limit`; its stdout, or an error with its stderr.
pub async fn run(program: &str, args: &[&str], limit: Duration) -> Result<String> {
    run_with(program, args, &[], limit).await
}

/// [`run`] with `env` added to the environment.
pub async fn run_with(program: &str, args: &[&str], env: &[(&str, String)], limit: Duration) -> Result<String> {
    let output = output_with(program, args, env, limit).await?;
    ensure!(
        output.status.success(),
        "{program} {args:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `program args`, bounded by `limit`, whatever its exit status.
pub async fn output(program: &str, args: &[&str], limit: Duration) -> Result<Output> {
    output_with(program, args, &[], limit).await
}

/// [`output`] with `env` added to the environment.
pub async fn output_with(program: &str, args: &[&str], env: &[(&str, String)], limit: Duration) -> Result<Output> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(env.iter().map(|(name, value)| (name, value)))
        .env("CONTAINERS_CONF", containers_conf()?)
        .current_dir(repo_root()?)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(limit, command.output())
        .await
        .with_context(|| format!("{program} {args:?} did not finish within {limit:?}"))?
        .with_context(|| format!("running {program}"))
}

/// The environment compose.yaml reads: the test's images and free host ports.
pub fn compose_env(manager: u16, vaults: [u16; 2]) -> [(&'static str, String); 5] {
    [
        ("SECRET_STORE_IMAGE", IMAGE.to_owned()),
        ("SECRET_STORE_POSTGRES_IMAGE", POSTGRES_IMAGE.to_owned()),
        ("MANAGER_PORT", manager.to_string()),
        ("VAULT_1_PORT", vaults[0].to_string()),
        ("VAULT_2_PORT", vaults[1].to_string()),
    ]
}

/// Removes every container, network and volume labelled with Compose project `name`, each
/// command bounded (a hung podman must not hang the test). Synchronous: it runs in `Drop`.
pub fn remove_project(name: &str) {
    let conf = containers_conf().unwrap_or_default();
    let label = format!("label=io.podman.compose.project={name}");
    let podman = |args: &[&str]| {
        std::process::Command::new("timeout")
            .arg("120")
            .arg("podman")
            .args(args)
            .env("CONTAINERS_CONF", &conf)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    for id in podman(&["ps", "-a", "-q", "--filter", &label]) {
        podman(&["rm", "-f", "-v", "-t", "3", &id]);
    }
    for id in podman(&["network", "ls", "-q", "--filter", &label]) {
        podman(&["network", "rm", "-f", &id]);
    }
    for id in podman(&["volume", "ls", "-q", "--filter", &label]) {
        podman(&["volume", "rm", "-f", &id]);
    }
}

/// Removes the projects of earlier runs of this test that were killed before their `Drop`
/// ran (their containers would otherwise restart forever: `restart: unless-stopped`).
pub async fn sweep_dead_projects() -> Result<()> {
    let projects = run(
        "podman",
        &[
            "ps",
            "-a",
            "--format",
            "{{index .Labels \"io.podman.compose.project\"}}",
        ],
        Duration::from_secs(60),
    )
    .await?;
    for project in projects.lines() {
        let Some(pid) = project.strip_prefix(PROJECT_PREFIX) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            remove_project(project);
        }
    }
    Ok(())
}

/// One Compose project: its name, its host ports, and its removal however the test ends.
pub struct Project {
    /// `secret-store-test-<pid>`.
    pub name: String,
    /// manager's host port.
    pub manager: u16,
    /// vault-1's and vault-2's host ports.
    pub vaults: [u16; 2],
}

impl Project {
    /// A project named after this process, on three free host ports (not yet up).
    pub fn new() -> Result<Self> {
        Ok(Self {
            name: format!("{PROJECT_PREFIX}{}", std::process::id()),
            manager: free_port()?,
            vaults: [free_port()?, free_port()?],
        })
    }

    /// `podman-compose -p <name> -f deploy/containers/compose.yaml <args>`.
    pub async fn compose(&self, args: &[&str], limit: Duration) -> Result<String> {
        let file = repo_root()?
            .join("deploy/containers/compose.yaml")
            .display()
            .to_string();
        let mut all = vec!["-p", &self.name, "-f", &file];
        all.extend_from_slice(args);
        run_with("podman-compose", &all, &compose_env(self.manager, self.vaults), limit).await
    }

    /// The podman filter selecting everything podman-compose labelled with the project.
    pub fn label(&self) -> String {
        format!("label=io.podman.compose.project={}", self.name)
    }

    /// The container of `service` (podman-compose names it `<project>_<service>_1`).
    pub fn container(&self, service: &str) -> String {
        format!("{}_{service}_1", self.name)
    }

    /// `sh -c script` as root in `service`'s container — what anyone who took it over finds —
    /// insisting that podman ran it (exit 125–127 are podman's and the shell's own).
    pub async fn exec_as_root(&self, service: &str, script: &str) -> Result<Output> {
        let container = self.container(service);
        let output = output(
            "podman",
            &["exec", "--user", "root", &container, "sh", "-c", script],
            Duration::from_secs(120),
        )
        .await?;
        ensure!(
            !matches!(output.status.code(), None | Some(125..=127)),
            "podman exec in {container}: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(output)
    }

    /// `podman inspect --format <format>` of `service`'s container.
    pub async fn inspect(&self, service: &str, format: &str) -> Result<String> {
        let container = self.container(service);
        Ok(run(
            "podman",
            &["inspect", "--format", format, &container],
            Duration::from_secs(60),
        )
        .await?
        .trim()
        .to_owned())
    }

    /// The files of `volume` (`<project>_<volume>`) as the host sees them.
    pub async fn volume_dir(&self, volume: &str) -> Result<PathBuf> {
        let name = format!("{}_{volume}", self.name);
        let dir = run(
            "podman",
            &["volume", "inspect", "--format", "{{.Mountpoint}}", &name],
            Duration::from_secs(60),
        )
        .await?;
        Ok(PathBuf::from(dir.trim()))
    }

    /// What is left of the project: containers, networks, volumes (one name a line).
    pub async fn leftovers(&self) -> Result<String> {
        let label = self.label();
        let mut left = String::new();
        for what in [
            ["ps", "-a", "--format", "{{.Names}}", "--filter"],
            ["network", "ls", "--format", "{{.Name}}", "--filter"],
            ["volume", "ls", "--format", "{{.Name}}", "--filter"],
        ] {
            let mut args = what.to_vec();
            args.push(&label);
            left.push_str(&run("podman", &args, Duration::from_secs(60)).await?);
        }
        Ok(left)
    }

    /// Every container's state and log, for a failure's report.
    pub async fn logs(&self) -> String {
        let mut report = String::new();
        for service in std::iter::once("provision").chain(RUNNING) {
            let container = self.container(service);
            let state = self
                .inspect(service, "{{.State.Status}} exit {{.State.ExitCode}}")
                .await
                .unwrap_or_else(|e| format!("{e:#}"));
            let log = output("podman", &["logs", "--tail", "40", &container], Duration::from_secs(30))
                .await
                .map(|o| {
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    )
                })
                .unwrap_or_else(|e| format!("{e:#}"));
            report.push_str(&format!("--- {container} ({state}):\n{log}\n"));
        }
        report
    }

    /// Waits until podman's health check of every long-running container passes (it runs
    /// the Compose file's `healthcheck` inside the container: `/readyz` over TLS for the
    /// services) and provisioning ended with status 0.
    pub async fn healthy(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(300);
        for service in RUNNING {
            let container = self.container(service);
            loop {
                let check = output("podman", &["healthcheck", "run", &container], Duration::from_secs(60)).await?;
                if check.status.success() {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "{container} is not healthy: {}{}\n{}",
                        String::from_utf8_lossy(&check.stdout),
                        String::from_utf8_lossy(&check.stderr),
                        self.logs().await
                    );
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        let provision = self
            .inspect("provision", "{{.State.Status}} {{.State.ExitCode}}")
            .await?;
        ensure!(provision == "exited 0", "provision: {provision}\n{}", self.logs().await);
        Ok(())
    }
}

impl Drop for Project {
    /// Everything labelled with the project, forcibly (`down` may not have run, and
    /// podman-compose 1.0.3's `down -v` leaves the networks).
    fn drop(&mut self) {
        remove_project(&self.name);
    }
}
