//! A service process the tests started: its listeners, its log, and killing it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// A running service process; killed (SIGKILL) when dropped.
pub struct Service {
    child: Child,
    /// Listener name (`api`, `public`, `internal`) → bound address.
    pub listeners: HashMap<String, SocketAddr>,
    /// File receiving the service's stderr (its logs).
    pub log: PathBuf,
    _stdout: BufReader<ChildStdout>,
}

impl Service {
    /// Spawns `command` and waits (up to 60 s) for each of `listeners` to be reported on
    /// stdout as `listening <name> https://<addr>`.
    pub async fn spawn(mut command: Command, log: PathBuf, listeners: &[&str]) -> Result<Self> {
        let log_file = std::fs::File::create(&log)?;
        command
            .stdout(Stdio::piped())
            .stderr(log_file)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let mut child = command.spawn().context("spawning service")?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?);
        let mut found = HashMap::new();
        let wait = async {
            let mut line = String::new();
            while found.len() < listeners.len() {
                line.clear();
                if stdout.read_line(&mut line).await? == 0 {
                    bail!("service exited before listening");
                }
                if let Some(rest) = line.trim().strip_prefix("listening ") {
                    let (name, url) = rest.split_once(' ').ok_or_else(|| anyhow!("bad line {line:?}"))?;
                    let addr = url.trim_start_matches("https://").parse()?;
                    found.insert(name.to_owned(), addr);
                }
            }
            Ok(())
        };
        let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
        match tokio::time::timeout(Duration::from_secs(60), wait).await {
            Ok(Ok(())) => Ok(Self {
                child,
                listeners: found,
                log,
                _stdout: stdout,
            }),
            Ok(Err(e)) => Err(e.context(format!("service log:\n{}", log_text()))),
            Err(_) => bail!("service did not listen within 60 s; log:\n{}", log_text()),
        }
    }

    /// Address of the listener called `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.listeners[name]
    }

    /// SIGKILL, and wait for the process to be gone.
    pub async fn kill(&mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// The process id (for memory scans).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The service's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
