//! The whole system in containers, as deploy/containers/compose.yaml brings it up: a
//! provisioning container, one token server per token (`p11-kit server` over SoftHSM2), vault
//! twice on one PostgreSQL, manager. Built and run here with podman and podman-compose from
//! Debian and no image from any registry (`softhsm-setup/containers.sh` makes the base image
//! with debootstrap and builds both images, under test tags of their own, from the release
//! binaries `make test` builds).
//!
//! From the host, as a user: the dev CA copied out of manager's container, a secret stored
//! through manager and read through each vault replica, every connection verified against
//! that CA. Then what each container holds, looked for as root inside it: a service container
//! holds no token file and no PIN but its own token's user PIN (which it logs in with); a
//! token server holds its own token's files and PINs and nothing of the other tokens; the
//! token servers and the database are each alone on an internal network; the processes run
//! as `secret-store`, `token` and `postgres`, never root; the image has no PIN, key or
//! certificate. Then what a restart keeps: `down` and `up` again, and a token server
//! restarted under running services, and the secret still reads. Everything the project
//! created — containers, networks, volumes — is removed however the test ends (a run killed
//! before it could is swept by the next), and checked gone when it passes.
//!
//! Free host ports and a project name of its own: it runs beside the other tests and beside
//! a `make run` or a user's Compose project (whose `:dev` images it leaves alone).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use e2e::client::{answer, read_at};
use e2e::containers::{IMAGE, Project, compose_env, output_with, run, sweep_dead_projects};
use e2e::repo_root;
use reqwest::StatusCode;
use serde_json::json;

/// The service containers and the token each logs in to.
const SERVICES: [(&str, &str); 3] = [("manager", "manager"), ("vault-1", "vault"), ("vault-2", "vault")];
/// The token servers and the token each serves.
const TOKEN_SERVERS: [(&str, &str); 2] = [("token-manager", "manager"), ("token-vault", "vault")];

/// The user PIN and SO PIN files of each token, by file name, as provisioning wrote them.
async fn pins(project: &Project) -> Result<Vec<(String, String)>> {
    let mut pins = Vec::new();
    for token in ["manager", "vault", "dev-ca"] {
        let dir = project.volume_dir(&format!("tokens-{token}")).await?.join("pins");
        for file in [format!("{token}.pin"), format!("{token}.so.pin")] {
            let pin = std::fs::read_to_string(dir.join(&file)).with_context(|| format!("{}", dir.display()))?;
            ensure!(pin.trim().len() == 32, "{file} is not a 128-bit hex PIN");
            pins.push((file, pin.trim().to_owned()));
        }
    }
    Ok(pins)
}

/// `grep -rlF` as root over `service`'s whole container but /proc and /sys: the files that
/// hold any of `needles`.
async fn files_holding(project: &Project, service: &str, needles: &[&str]) -> Result<Vec<String>> {
    let mut grep = String::from("grep -rlF --exclude-dir=proc --exclude-dir=sys");
    for needle in needles {
        grep.push_str(&format!(" -e {needle}"));
    }
    grep.push_str(" /");
    let found = project.exec_as_root(service, &grep).await?;
    // 0: found, 1: nothing found; 2 with output: found, and some file could not be read.
    ensure!(
        matches!(found.status.code(), Some(0 | 1)) || !found.stdout.is_empty(),
        "grep in {service}: {}: {}",
        found.status,
        String::from_utf8_lossy(&found.stderr)
    );
    let mut files: Vec<String> = String::from_utf8_lossy(&found.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    files.sort();
    Ok(files)
}

/// `find` as root over `service`'s whole container but /proc and /sys: SoftHSM2's token files.
async fn token_files(project: &Project, service: &str) -> Result<Vec<String>> {
    let found = project
        .exec_as_root(
            service,
            "find / \\( -path /proc -o -path /sys \\) -prune -o -name '*.object' -print",
        )
        .await?;
    ensure!(
        found.status.success(),
        "find in {service}: {}",
        String::from_utf8_lossy(&found.stderr)
    );
    Ok(String::from_utf8_lossy(&found.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// Reads `key_id` at `vault` until it answers `200` with `secret` (a restarted token server
/// may cost the first requests a `503`), for up to a minute.
async fn reads_back(http: &reqwest::Client, vault: SocketAddr, key_id: &str, token: &str, secret: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = read_at(http, vault, key_id, Some(&format!("Bearer {token}"))).await?;
        if status == StatusCode::OK {
            ensure!(body["decrypted_key"] == secret, "read at {vault}: {body}");
            return Ok(());
        }
        ensure!(
            status == StatusCode::SERVICE_UNAVAILABLE && Instant::now() < deadline,
            "read at {vault}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn compose_brings_up_the_system_and_each_container_holds_only_its_own_token_or_pin() -> Result<()> {
    sweep_dead_projects().await?;
    // The images: base from debootstrap (cached), the release binaries in.
    let images = output_with(
        "bash",
        &[
            &repo_root()?.join("softhsm-setup/containers.sh").display().to_string(),
            "images",
        ],
        &compose_env(0, [0, 0])[..2],
        Duration::from_secs(1200),
    )
    .await?;
    ensure!(
        images.status.success(),
        "softhsm-setup/containers.sh images: {}",
        String::from_utf8_lossy(&images.stderr)
    );

    // The image holds no PIN, key or certificate: the directories the volumes are mounted
    // on are empty, as root sees them, and SoftHSM2's own token directory too.
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
            "/run/secret-store",
            "/etc/secret-store",
            "/var/lib/softhsm",
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
    project.healthy().await?;

    // The dev CA, copied out of manager's container as the README tells users to.
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("ca.pem");
    let source = format!("{}:/run/secret-store/token/ca.pem", project.container("manager"));
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
    let secret = "kept in two containers";
    let manager = SocketAddr::from(([127, 0, 0, 1], project.manager));
    let (status, stored) = answer(
        http.post(format!("https://{manager}/api/keys"))
            .json(&json!({"user_id": "alice", "key_data": secret, "max_reads": 10}))
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
    let vaults = project.vaults.map(|port| SocketAddr::from(([127, 0, 0, 1], port)));
    for vault in vaults {
        let (status, body) = read_at(&http, vault, key_id, Some(&format!("Bearer {token}"))).await?;
        ensure!(
            status == StatusCode::OK && body["decrypted_key"] == secret,
            "read at vault {vault}: {status} {body}\n{}",
            project.logs().await
        );
    }

    // Who runs what: process 1's real and effective uid in each container.
    for (service, uid) in [
        ("token-manager", "10002"),
        ("token-vault", "10002"),
        ("postgres", "10003"),
        ("vault-1", "10001"),
        ("vault-2", "10001"),
        ("manager", "10001"),
    ] {
        let status = project.exec_as_root(service, "grep '^Uid:' /proc/1/status").await?;
        let status = String::from_utf8_lossy(&status.stdout);
        let ids: Vec<&str> = status.split_whitespace().skip(1).take(2).collect();
        ensure!(ids == [uid, uid], "{service}'s process 1 runs as {status}, not {uid}");
    }

    // The containers holding tokens or the database: each alone on an internal network.
    for (service, network) in [
        ("token-manager", "token-manager"),
        ("token-vault", "token-vault"),
        ("postgres", "database"),
    ] {
        let network = format!("{}_{network}", project.name);
        let attached = project
            .inspect(
                service,
                "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}",
            )
            .await?;
        ensure!(attached == network, "{service} is on {attached:?}, not only {network}");
        let internal = run(
            "podman",
            &["network", "inspect", "--format", "{{.Internal}}", &network],
            Duration::from_secs(60),
        )
        .await?;
        ensure!(internal.trim() == "true", "{network} is not internal");
        let members = run(
            "podman",
            &[
                "ps",
                "-a",
                "--format",
                "{{.Names}}",
                "--filter",
                &format!("network={network}"),
            ],
            Duration::from_secs(60),
        )
        .await?;
        ensure!(members.trim() == project.container(service), "on {network}: {members}");
    }

    let pins = pins(&project).await?;
    let pin = |file: &str| -> Result<&str> {
        Ok(pins
            .iter()
            .find(|(name, _)| name == file)
            .context("no such PIN file")?
            .1
            .as_str())
    };
    for (service, token) in SERVICES {
        let files = token_files(&project, service).await?;
        ensure!(files.is_empty(), "{service}'s container holds token files: {files:?}");
        let own = format!("{token}.pin");
        let others: Vec<&str> = pins
            .iter()
            .filter(|(file, _)| *file != own)
            .map(|(_, p)| p.as_str())
            .collect();
        let holders = files_holding(&project, service, &others).await?;
        ensure!(
            holders.is_empty(),
            "{service}'s container holds another PIN in {holders:?}"
        );
        // Its own user PIN, only where deploy/containers/README.md says.
        let holders = files_holding(&project, service, &[pin(&own)?]).await?;
        let expected = vec![
            format!("/dev/shm/{token}.pin"),
            "/run/secret-store/token/pin".to_owned(),
        ];
        ensure!(
            holders == expected,
            "{service}'s own PIN is in {holders:?}, not only in {expected:?}"
        );
    }
    for (service, token) in TOKEN_SERVERS {
        let files = token_files(&project, service).await?;
        let own = format!("/var/lib/secret-store-token/{token}/softhsm/");
        ensure!(
            !files.is_empty() && files.iter().all(|file| file.starts_with(&own)),
            "{service} holds token files outside {own}: {files:?}"
        );
        let others: Vec<&str> = pins
            .iter()
            .filter(|(file, _)| !file.starts_with(&format!("{token}.")))
            .map(|(_, p)| p.as_str())
            .collect();
        let holders = files_holding(&project, service, &others).await?;
        ensure!(holders.is_empty(), "{service} holds another token's PIN in {holders:?}");
    }

    // What a restart keeps: the whole project down (volumes kept) and up again, then vault's
    // token server restarted under running vaults; the secret reads each time.
    project.compose(&["down", "-t", "5"], Duration::from_secs(300)).await?;
    project
        .compose(&["up", "-d", "--no-build"], Duration::from_secs(300))
        .await?;
    project.healthy().await?;
    reads_back(&http, vaults[1], key_id, token, secret).await?;
    let token_vault = project.container("token-vault");
    run(
        "podman",
        &["restart", "-t", "5", &token_vault],
        Duration::from_secs(120),
    )
    .await?;
    project.healthy().await?;
    for vault in vaults {
        reads_back(&http, vault, key_id, token, secret).await?;
    }

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
