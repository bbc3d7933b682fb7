//! Pools over `p11-kit-client.so` against a real `p11-kit server` in front of SoftHSM: one
//! server process per connection, each signing, each recovering from a lost server.
//!
//! p11-kit-client takes its server's address from `P11_KIT_SERVER_ADDRESS` only, and this
//! crate's tests set no environment: each test runs itself again as a child process with
//! the address (and its directory) in the child's environment. The child makes its own
//! token in that directory with `softhsm2-util`, so it shares no token file with the other
//! tests nor with `.dev/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};

use crate::error::Operation;
use crate::sign::{sign_in_session, signing_input};
use crate::test_support::{rand_suffix, tempfile_dir};
use crate::{KeyUsage, Module, Result, RsaKeySpec, RsaScheme, Signer, TokenConfig, TokenPool};

/// Names the child's directory; set only in the child.
const CHILD_DIR: &str = "HSM_P11_KIT_TEST_DIR";
const TOKEN: &str = "p11-kit-test";
const KEY: &str = "p11-kit-test-signing";
const CONNECTIONS: usize = 3;

/// A pool with three connections makes three `p11-kit-remote` processes, and every one of
/// them signs with a key generated through one of them, verifiably.
#[tokio::test(flavor = "multi_thread")]
async fn each_connection_is_a_server_process_of_its_own_and_signs() -> Result<()> {
    let Some(dir) = child_dir("each_connection_is_a_server_process_of_its_own_and_signs") else {
        return Ok(());
    };
    let server = Server::start(&dir);
    let pool = connect(&dir, CONNECTIONS).await?;
    assert_eq!(server.connections(), CONNECTIONS, "one p11-kit-remote per connection");
    let public = generate_key(&pool).await?;
    for index in 0..CONNECTIONS {
        let message = format!("signed through connection {index}");
        let signature = sign_on(&pool, index, &message).await?;
        assert!(
            public
                .verify(&RSA_PKCS1_2048_8192_SHA256, message.as_bytes(), &signature)
                .is_ok(),
            "the signature through connection {index} must verify"
        );
    }
    let signer = Signer::new(pool.clone(), KEY, RsaScheme::Pkcs1Sha256);
    let calls = (0..3 * CONNECTIONS).map(|n| {
        let signer = signer.clone();
        tokio::spawn(async move { signer.sign(format!("call {n}").as_bytes()).await })
    });
    for (n, call) in calls.enumerate() {
        let signature = call.await.map_err(crate::Error::Worker)??;
        assert!(
            public
                .verify(&RSA_PKCS1_2048_8192_SHA256, format!("call {n}").as_bytes(), &signature)
                .is_ok()
        );
    }
    assert_eq!(server.connections(), CONNECTIONS, "calls reuse the connections");
    Ok(())
}

/// The server dies with every connection, and comes back: each connection is
/// re-initialised and logs in again by itself, and once one works no call fails on one
/// that has not recovered yet.
#[tokio::test(flavor = "multi_thread")]
async fn every_connection_recovers_when_the_token_server_comes_back() -> Result<()> {
    let Some(dir) = child_dir("every_connection_recovers_when_the_token_server_comes_back") else {
        return Ok(());
    };
    let server = Server::start(&dir);
    let pool = connect(&dir, CONNECTIONS).await?;
    generate_key(&pool).await?;
    let signer = Signer::new(pool.clone(), KEY, RsaScheme::Pkcs1Sha256);
    signer.sign(b"before").await?;

    server.kill();
    for _ in 0..CONNECTIONS {
        let error = signer.sign(b"during").await.expect_err("no server, no signature");
        assert!(error.is_unavailable(), "{error:?}");
    }

    drop(server);
    let server = Server::start(&dir);
    let mut recovered = false;
    for _ in 0..100 {
        if signer.sign(b"after").await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the pool must recover by itself");
    for n in 0..2 * CONNECTIONS {
        signer.sign(format!("right after {n}").as_bytes()).await?;
    }
    for index in 0..CONNECTIONS {
        let mut last = None;
        for _ in 0..50 {
            match sign_on(&pool, index, "recovered").await {
                Ok(_) => {
                    last = None;
                    break;
                }
                Err(error) => last = Some(error),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(last.is_none(), "connection {index} must recover: {last:?}");
    }
    assert_eq!(
        server.connections(),
        CONNECTIONS,
        "one new p11-kit-remote per connection"
    );
    Ok(())
}

/// In the child: its directory. In the parent: runs `test` as a child with a fresh
/// directory and the server's address in its environment, insists that it passed, and
/// returns `None`.
fn child_dir(test: &str) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        return Some(PathBuf::from(dir));
    }
    let dir = tempfile_dir("p11-kit-test");
    let name = format!("{}::{test}", module_path!().trim_start_matches("hsm::"));
    let output = Command::new(std::env::current_exe().expect("the test binary's path"))
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, &dir)
        .env(
            "P11_KIT_SERVER_ADDRESS",
            format!("unix:path={}", socket(&dir).display()),
        )
        .output()
        .expect("the test binary runs again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{name} in a child process:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    None
}

fn socket(dir: &Path) -> PathBuf {
    dir.join("token.sock")
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../softhsm-setup")
        .join(name)
}

fn softhsm_conf(dir: &Path) -> PathBuf {
    dir.join("softhsm2.conf")
}

fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// `p11-kit server` for the child's token, from its own process group
/// (`softhsm-setup/p11-kit.sh serve`); the token is made on first start.
struct Server {
    group: rustix::process::Pid,
}

impl Server {
    fn start(dir: &Path) -> Self {
        let conf = softhsm_conf(dir);
        if !conf.exists() {
            make_token(dir);
        }
        let group: i32 = run(Command::new("bash")
            .arg(script("p11-kit.sh"))
            .args(["serve"])
            .arg(socket(dir))
            .arg(TOKEN)
            .env("SOFTHSM2_CONF", &conf)
            .env("P11KIT_LOG", dir.join("server.log")))
        .parse()
        .expect("p11-kit.sh prints the server's process group");
        Self {
            group: rustix::process::Pid::from_raw(group).expect("a process group other than ours"),
        }
    }

    /// SIGKILL the server and its per-connection processes.
    fn kill(&self) {
        rustix::process::kill_process_group(self.group, rustix::process::Signal::KILL).ok();
    }

    /// The server's `p11-kit-remote` processes: one per client connection.
    fn connections(&self) -> usize {
        let group = self.group.as_raw_nonzero().get().to_string();
        std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(|entry| entry.ok())
            .filter(|entry| {
                std::fs::read_link(entry.path().join("exe")).is_ok_and(|exe| exe.ends_with("p11-kit-remote"))
            })
            .filter(|entry| {
                // /proc/PID/stat: "pid (comm) state ppid pgrp ..."; comm may hold spaces.
                std::fs::read_to_string(entry.path().join("stat")).is_ok_and(|stat| {
                    stat.rsplit_once(')')
                        .and_then(|(_, rest)| rest.split_whitespace().nth(2).map(|pgrp| pgrp == group))
                        .unwrap_or(false)
                })
            })
            .count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn make_token(dir: &Path) {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).expect("token directory");
    std::fs::write(
        softhsm_conf(dir),
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .expect("softhsm2.conf");
    let pin = format!("{:x}", rand_suffix());
    run(Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            TOKEN,
            "--so-pin",
            &pin,
            "--pin",
            &pin,
        ])
        .env("SOFTHSM2_CONF", softhsm_conf(dir)));
    std::fs::write(dir.join("pin"), &pin).expect("pin file");
}

/// Loads `p11-kit-client.so` as `connections` instances and opens a pool over them.
async fn connect(dir: &Path, connections: usize) -> Result<TokenPool> {
    let client = PathBuf::from(run(Command::new("bash").arg(script("p11-kit.sh")).arg("client-module")));
    let module = Module::load_connections(&client, connections)?;
    assert_eq!(module.connections(), connections);
    let pin = std::fs::read_to_string(dir.join("pin")).expect("pin file");
    TokenPool::connect(
        &module,
        TokenConfig {
            token_label: TOKEN.into(),
            pin: pin.into(),
            sessions: connections,
            slot_discovery_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(30),
        },
    )
    .await
}

/// Generates the test's signing key and returns its public half.
async fn generate_key(pool: &TokenPool) -> Result<RsaPublicKeyComponents<Vec<u8>>> {
    crate::generate_rsa_key_pair(
        pool,
        RsaKeySpec {
            label: KEY.into(),
            id: vec![0x5c],
            bits: 2048,
            usage: KeyUsage::Sign,
        },
    )
    .await?;
    let public = crate::rsa_public_key(pool, KEY, KeyUsage::Sign).await?;
    Ok(RsaPublicKeyComponents {
        n: public.modulus().to_vec(),
        e: public.exponent().to_vec(),
    })
}

/// An RS256 signature of `message` made on connection `index` only.
async fn sign_on(pool: &TokenPool, index: usize, message: &str) -> Result<Vec<u8>> {
    let input = signing_input(RsaScheme::Pkcs1Sha256, message.as_bytes());
    pool.run_on_connection(index, Operation::Sign, move |session| {
        sign_in_session(session, KEY, RsaScheme::Pkcs1Sha256, &input)
    })
    .await
}
