//! The end-to-end test toolkit: starts the real `vault` and `manager` binaries against
//! SoftHSM2 tokens copied from `.dev/` (provisioned by `softhsm-setup/setup.sh`), on free
//! ports, over real TLS, and talks to them with an HTTPS client that trusts only the dev CA.
//!
//! Each test starts its own services with their own database and their own copy of the
//! token directory in a temporary directory, so tests run in parallel without sharing
//! state. Processes are killed on drop.
//!
//! - [`launch::Launch`] starts one service (token in process or behind a
//!   [`tokens::TokenServer`], database, arguments); [`System`] and [`Replicas`] start the
//!   usual combinations.
//! - [`client::Client`] is a user of the API; [`client::error_code`] reads the error body;
//!   [`jwt`] makes access tokens outside manager, as an attacker would.
//! - [`tokens`] copies tokens, serves them through p11-kit, opens `.dev/` tokens in
//!   process and runs `hsm-admin`; [`pg`] brings PostgreSQL; [`memscan`] searches a
//!   process's memory for key material; [`openssl`] is the independent implementation.

pub mod attack;
pub mod client;
pub mod containers;
pub mod dev;
pub mod jwt;
pub mod launch;
pub mod memscan;
pub mod openssl;
pub mod pg;
pub mod process;
pub mod system;
pub mod tokens;

use std::time::Duration;

use anyhow::{Result, bail};
use reqwest::StatusCode;

pub use client::{Answer, Client, answer, compact_part, error_code, https_client, read_at};
pub use dev::{binary, dev_dir, free_port, repo_root, stdout_of};
pub use launch::Launch;
pub use process::Service;
pub use system::{Replicas, System};
pub use tokens::{Implementation, TokenServer, hsm_admin, hsm_admin_on};

/// Polls `url` until it answers 200, for at most 20 s.
pub async fn wait_ready(http: &reqwest::Client, url: &str) -> Result<()> {
    for _ in 0..200 {
        if http.get(url).send().await.is_ok_and(|r| r.status() == StatusCode::OK) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{url} did not become ready within 20 s")
}
