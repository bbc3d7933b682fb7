//! The whole system in containers, as deploy/containers/compose.yaml brings it up: a token
//! server (p11-kit servers over SoftHSM2, provisioned on its first start), vault twice on one
//! PostgreSQL, manager. Built and run here with podman and podman-compose from Debian and no
//! image from any registry (`softhsm-setup/containers.sh` makes the base image with
//! debootstrap and builds both images from the release binaries `make test` builds).
//!
//! From the host, as a user: the dev CA copied out of its volume, a secret stored through
//! manager and read through each vault replica, every connection verified against that CA.
//! Then what each container holds: neither service container holds a token file or any PIN
//! but its own token's user PIN (which it logs in with), even looked for as root inside it;
//! the services run as `secret-store`, the token server as `token`; the image has no PIN, key
//! or certificate. Everything the project created — containers, networks, volumes — is
//! removed however the test ends, and checked gone when it passes.
//!
//! Free host ports and a project name of its own: it runs beside the other tests and beside
//! a `make run` or a user's Compose project.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::client::{answer, read_at};
use e2e::free_port;
use reqwest::StatusCode;
use serde_json::json;

const IMAGE: &str = "localhost/secret-store:dev";
/// The services whose containers must hold no token file and no PIN but their own.
const SERVICES: [(&str, &str); 3] = [("manager", "manager"), ("vault-1", "vault"), ("vault-2", "vault")];

fn root() -> Result<PathBuf> {
    Ok(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize()?)
}

/// The sandbox's containers.conf, as `softhsm-setup/containers.sh` chooses it.
fn containers_conf() -> Result<String> {
    if let Ok(conf) = std::env::var("CONTAINERS_CONF") {
        return Ok(conf);
    }
    Ok(root()?.join("softhsm-setup/containers.conf").display().to_string())
}

/// Runs `program args`, bounded by `limit`; its stdout, or an error with its stderr.
async fn run(program: &str, args: &[&str], limit: Duration) -> Result<String> {
    run_with(program, args, &[], limit).await
}

/// [`run`] with `env` added to the environment.
async fn run_with(program: &str, args: &[&str], env: &[(&str, String)], limit: Duration) -> Result<String> {
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
async fn output(program: &str, args: &[&str], limit: Duration) -> Result<Output> {
    output_with(program, args, &[], limit).await
}

async fn output_with(program: &str, args: &[&str], env: &[(&str, String)], limit: Duration) -> Result<Output> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(env.iter().map(|(name, value)| (name, value)))
        .env("CONTAINERS_CONF", containers_conf()?)
        .current_dir(root()?)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(limit, command.output())
        .await
        .with_context(|| format!("{program} {args:?} did not finish within {limit:?}"))?
        .with_context(|| format!("running {program}"))
}

/// One Compose project: its name, its host ports, and its removal however the test ends.
struct Project {
    name: String,
    manager: u16,
    vaults: [u16; 2],
}

impl Project {
    fn new() -> Result<Self> {
        Ok(Self {
            name: format!("secret-store-test-{}", std::process::id()),
            manager: free_port()?,
            vaults: [free_port()?, free_port()?],
        })
    }

    /// `podman-compose -p <name> -f deploy/containers/compose.yaml <args>`, with the ports.
    async fn compose(&self, args: &[&str], limit: Duration) -> Result<String> {
        let file = root()?.join("deploy/containers/compose.yaml").display().to_string();
        let mut all = vec!["-p", &self.name, "-f", &file];
        all.extend_from_slice(args);
        run_with("podman-compose", &all, &self.ports(), limit).await
    }

    fn ports(&self) -> [(&'static str, String); 3] {
        [
            ("MANAGER_PORT", self.manager.to_string()),
            ("VAULT_1_PORT", self.vaults[0].to_string()),
            ("VAULT_2_PORT", self.vaults[1].to_string()),
        ]
    }

    fn label(&self) -> String {
        format!("label=io.podman.compose.project={}", self.name)
    }

    /// The container of `service` (podman-compose names it `<project>_<service>_1`).
    fn container(&self, service: &str) -> String {
        format!("{}_{service}_1", self.name)
    }

    /// `podman exec` as root in `service`'s container: what anyone who took it over finds.
    async fn exec_as_root(&self, service: &str, script: &str) -> Result<Output> {
        let container = self.container(service);
        output(
            "podman",
            &["exec", "--user", "root", &container, "sh", "-c", script],
            Duration::from_secs(120),
        )
        .await
    }

    /// What is left of the project: containers, networks, volumes (one name a line).
    async fn leftovers(&self) -> Result<String> {
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
    async fn logs(&self) -> String {
        let mut report = String::new();
        for service in ["token-server", "postgres", "vault-1", "vault-2", "manager"] {
            let container = self.container(service);
            let state = output(
                "podman",
                &[
                    "inspect",
                    "--format",
                    "{{.State.Status}} exit {{.State.ExitCode}}",
                    &container,
                ],
                Duration::from_secs(30),
            )
            .await
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
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
}

impl Drop for Project {
    /// `down -v`, then anything still labelled with the project, forcibly (a test that
    /// failed halfway may have left a container that `down` does not know).
    fn drop(&mut self) {
        let file = root()
            .map(|r| r.join("deploy/containers/compose.yaml"))
            .unwrap_or_default();
        let conf = containers_conf().unwrap_or_default();
        let quiet = |program: &str, args: &[&str]| {
            let _ = std::process::Command::new(program)
                .args(args)
                .envs(self.ports())
                .env("CONTAINERS_CONF", &conf)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        };
        let file = file.display().to_string();
        quiet(
            "podman-compose",
            &["-p", &self.name, "-f", &file, "down", "-v", "-t", "5"],
        );
        let label = self.label();
        let ids = |what: &[&str]| -> Vec<String> {
            let mut args = what.to_vec();
            args.extend_from_slice(&["--filter", &label]);
            std::process::Command::new("podman")
                .args(&args)
                .env("CONTAINERS_CONF", &conf)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        for id in ids(&["ps", "-a", "-q"]) {
            quiet("podman", &["rm", "-f", "-v", &id]);
        }
        for id in ids(&["network", "ls", "-q"]) {
            quiet("podman", &["network", "rm", "-f", &id]);
        }
        for id in ids(&["volume", "ls", "-q"]) {
            quiet("podman", &["volume", "rm", "-f", &id]);
        }
    }
}

/// Waits until podman's health check of `service` passes (it runs the Compose file's
/// `healthcheck` inside the container: `/readyz` over TLS for the services).
async fn healthy(project: &Project, service: &str, deadline: Instant) -> Result<()> {
    let container = project.container(service);
    loop {
        let check = output("podman", &["healthcheck", "run", &container], Duration::from_secs(60)).await?;
        if check.status.success() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{container} is not healthy: {}{}\n{}",
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr),
                project.logs().await
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn compose_brings_up_the_system_and_the_service_containers_hold_no_token_file_or_other_pin() -> Result<()> {
    // The images: base from debootstrap (cached), the release binaries in.
    let images = output(
        "bash",
        &[
            &root()?.join("softhsm-setup/containers.sh").display().to_string(),
            "images",
        ],
        Duration::from_secs(1200),
    )
    .await?;
    ensure!(
        images.status.success(),
        "softhsm-setup/containers.sh images: {}",
        String::from_utf8_lossy(&images.stderr)
    );

    // The image holds no PIN, key or certificate: the token server's directories and the
    // services' volumes' mount points are empty, as root sees them.
    let baked = run(
        "podman",
        &[
            "run",
            "--rm",
            "--pull=never",
            "--user",
            "root",
            "--entrypoint",
            "find",
            IMAGE,
            "/var/lib/secret-store-token",
            "/var/lib/secret-store-ca",
            "/run/secret-store",
            "/etc/secret-store",
            "-type",
            "f",
            "-not",
            "-name",
            "*.toml",
        ],
        Duration::from_secs(120),
    )
    .await?;
    ensure!(baked.trim().is_empty(), "the image holds files it should not: {baked}");

    let project = Project::new()?;
    project
        .compose(&["up", "-d", "--no-build"], Duration::from_secs(300))
        .await?;

    let deadline = Instant::now() + Duration::from_secs(300);
    for service in ["token-server", "postgres", "vault-1", "vault-2", "manager"] {
        healthy(&project, service, deadline).await?;
    }

    // The dev CA, copied out of its volume as the README tells users to.
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("ca.pem");
    let source = format!("{}:/var/lib/secret-store-ca/ca.pem", project.container("token-server"));
    run(
        "podman",
        &["cp", &source, &ca.display().to_string()],
        Duration::from_secs(60),
    )
    .await?;
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(service_kit::tls::client_config(&ca, None)?)
        .timeout(Duration::from_secs(30))
        .build()?;

    // Store through manager, read through each vault replica, all from the host.
    let manager = SocketAddr::from(([127, 0, 0, 1], project.manager));
    let (status, stored) = answer(
        http.post(format!("https://{manager}/api/keys"))
            .json(&json!({"user_id": "alice", "key_data": "kept in two containers", "max_reads": 5}))
            .send()
            .await?,
    )
    .await?;
    ensure!(
        status == StatusCode::CREATED,
        "store answered {status}: {stored}\n{}",
        project.logs().await
    );
    let key_id = stored["key_id"].as_str().context("no key_id")?;
    let token = stored["access_token"].as_str().context("no access_token")?;
    for port in project.vaults {
        let vault = SocketAddr::from(([127, 0, 0, 1], port));
        let (status, body) = read_at(&http, vault, key_id, Some(&format!("Bearer {token}"))).await?;
        ensure!(
            status == StatusCode::OK && body["decrypted_key"] == "kept in two containers",
            "read at vault {vault}: {status} {body}\n{}",
            project.logs().await
        );
    }

    // Who runs what.
    for (service, user) in [
        ("token-server", "10002"),
        ("manager", "10001"),
        ("vault-1", "10001"),
        ("vault-2", "10001"),
    ] {
        let container = project.container(service);
        let uid = run("podman", &["exec", &container, "id", "-u"], Duration::from_secs(60)).await?;
        ensure!(uid.trim() == user, "{service} runs as uid {uid}, not {user}");
    }

    // Every PIN the token server holds, by file name.
    let pins = run(
        "podman",
        &[
            "exec",
            &project.container("token-server"),
            "sh",
            "-c",
            "cd /var/lib/secret-store-token/pins && for f in *.pin; do echo \"$f $(cat \"$f\")\"; done",
        ],
        Duration::from_secs(60),
    )
    .await?;
    let pins: Vec<(&str, &str)> = pins.lines().filter_map(|line| line.split_once(' ')).collect();
    ensure!(
        pins.len() == 6,
        "expected a user and an SO PIN for each of three tokens: {pins:?}"
    );

    for (service, token) in SERVICES {
        // No token file anywhere in the container.
        let found = project
            .exec_as_root(
                service,
                "find / \\( -path /proc -o -path /sys \\) -prune -o -name '*.object' -print",
            )
            .await?;
        let found = String::from_utf8_lossy(&found.stdout);
        ensure!(
            found.trim().is_empty(),
            "{service}'s container holds token files: {found}"
        );

        // No PIN but its own token's user PIN, and that only where the README says.
        let own = format!("{token}.pin");
        let others: Vec<&str> = pins
            .iter()
            .filter(|(file, _)| *file != own)
            .map(|(_, pin)| *pin)
            .collect();
        let mut grep = String::from("grep -rlF --exclude-dir=proc --exclude-dir=sys");
        for pin in &others {
            grep.push_str(&format!(" -e {pin}"));
        }
        grep.push_str(" /");
        let hits = project.exec_as_root(service, &grep).await?;
        ensure!(
            hits.status.code() == Some(1),
            "{service}'s container holds another PIN (grep {}): {}{}",
            hits.status,
            String::from_utf8_lossy(&hits.stdout),
            String::from_utf8_lossy(&hits.stderr)
        );
        let own_pin = pins.iter().find(|(file, _)| *file == own).context("no own PIN")?.1;
        let holders = project
            .exec_as_root(
                service,
                &format!("grep -rlF --exclude-dir=proc --exclude-dir=sys -e {own_pin} /"),
            )
            .await?;
        let mut holders: Vec<String> = String::from_utf8_lossy(&holders.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        holders.sort();
        let expected = vec![
            format!("/dev/shm/{token}.pin"),
            "/run/secret-store/token/pin".to_owned(),
        ];
        ensure!(
            holders == expected,
            "{service}'s own PIN is in {holders:?}, not only in {expected:?}"
        );
    }

    // The token server is on no network the services or the host share: it cannot even
    // resolve them.
    let reach = project
        .exec_as_root("token-server", "curl -s --max-time 5 -o /dev/null http://manager:8000/")
        .await?;
    ensure!(
        !reach.status.success(),
        "the token server reached manager over a network"
    );

    project
        .compose(&["down", "-v", "-t", "5"], Duration::from_secs(300))
        .await?;
    // podman-compose 1.0.3's `down` leaves the project's networks (docker compose's does
    // not): removed by their label, as a user of it would.
    let networks = run(
        "podman",
        &["network", "ls", "--quiet", "--filter", &project.label()],
        Duration::from_secs(60),
    )
    .await?;
    for network in networks.lines() {
        run("podman", &["network", "rm", network], Duration::from_secs(60)).await?;
    }
    let left = project.leftovers().await?;
    ensure!(left.trim().is_empty(), "left after down: {left}");
    Ok(())
}
