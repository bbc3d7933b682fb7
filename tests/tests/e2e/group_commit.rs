//! Group commit (vault's concurrent writes share one transaction and one fsync) keeps every
//! promise a write made alone: what was acknowledged survives `kill -9`, read limits are
//! exact, revocations hold, and the audit chain is unbroken with one record per
//! acknowledged write — on SQLite and on PostgreSQL.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, bail, ensure};
use contract::error_code::ErrorCode;
use contract::wire::StoreKeyResponse;
use e2e::{Client, Launch, Replicas, System, error_code};
use reqwest::StatusCode;
use serde_json::json;
use tokio::task::JoinSet;
use vault::storage::Store;

/// Limited reads of one secret in the concurrent burst.
const MAX_READS: usize = 8;
/// Reads of it in the burst (fewer than its limit, so all are granted).
const BURST_READS: usize = 5;
/// New secrets stored in the burst.
const BURST_STORES: usize = 40;
/// Tokens revoked in the burst.
const BURST_REVOCATIONS: usize = 10;

#[tokio::test]
async fn acknowledged_writes_of_a_concurrent_burst_survive_sigkill_of_vault_on_sqlite() -> Result<()> {
    let mut system = System::start().await?;
    let url = system.database_url();
    let client = Client::new(system.manager.addr("api"))?;
    let before = Burst::prepare(&client, system.vault_addr()).await?;
    let done = before.run(&client).await?;
    system.vault.kill().await?;
    let restarted = Launch::vault(system.dir.path()).database(&url).start().await?;
    done.check(&client, restarted.addr("public"), &url).await
}

#[tokio::test]
async fn acknowledged_writes_of_a_concurrent_burst_survive_sigkill_of_vault_on_postgres() -> Result<()> {
    let mut replicas = Replicas::start(1, e2e::pg::fresh_database().await?, &[]).await?;
    let url = replicas.database_url.clone();
    let before = Burst::prepare(&replicas.client, replicas.vault(0)).await?;
    let done = before.run(&replicas.client).await?;
    replicas.vaults[0].kill().await?;
    let restarted = restart(replicas.dir.path(), &url).await?;
    done.check(&replicas.client, restarted.addr("public"), &url).await
}

async fn restart(dir: &Path, url: &str) -> Result<e2e::Service> {
    Launch::vault(dir).database(url).start().await
}

/// What exists before the burst: a secret with a read limit, and secrets whose tokens the
/// burst revokes.
struct Burst {
    vault: SocketAddr,
    limited: StoreKeyResponse,
    to_revoke: Vec<StoreKeyResponse>,
}

/// What the burst got acknowledged.
struct Acknowledged {
    limited: StoreKeyResponse,
    reads: usize,
    stored: Vec<(String, StoreKeyResponse)>,
    revoked: Vec<StoreKeyResponse>,
    denials: usize,
}

impl Burst {
    async fn prepare(client: &Client, vault: SocketAddr) -> Result<Self> {
        let limited = client
            .store_json(&json!({"user_id": "gc", "key_data": "limited", "max_reads": MAX_READS}))
            .await?;
        let mut to_revoke = Vec::new();
        for i in 0..BURST_REVOCATIONS {
            to_revoke.push(client.store("gc", &format!("revocable {i}")).await?);
        }
        Ok(Self {
            vault,
            limited,
            to_revoke,
        })
    }

    /// Stores, reads, revocations and audited denials, all at once; every one must be
    /// acknowledged (this is no overload test).
    async fn run(self, client: &Client) -> Result<Acknowledged> {
        let client = Arc::new(client.clone());
        let vault = self.vault;
        let mut tasks: JoinSet<Result<Outcome>> = JoinSet::new();
        for i in 0..BURST_STORES {
            let client = client.clone();
            tasks.spawn(async move {
                let secret = format!("burst {i} {}", uuid::Uuid::new_v4());
                let stored = client.store("gc", &secret).await?;
                Ok(Outcome::Stored(secret, stored))
            });
        }
        for _ in 0..BURST_READS {
            let (client, limited) = (client.clone(), self.limited.clone());
            tasks.spawn(async move {
                let (status, body) = client.read(vault, &limited.key_id, &limited.access_token).await?;
                ensure!(status == StatusCode::OK, "read: {status} {body}");
                Ok(Outcome::Read)
            });
        }
        for stored in &self.to_revoke {
            let (client, stored) = (client.clone(), stored.clone());
            tasks.spawn(async move {
                let (status, body) = client.revoke(vault, &stored.access_token).await?;
                ensure!(status == StatusCode::OK, "revoke: {status} {body}");
                Ok(Outcome::Revoked(stored))
            });
        }
        // A valid token presented for another secret: refused and audited as a denial. The
        // limited secret's token, which nothing revokes (a token being revoked meanwhile could
        // be refused as revoked instead).
        for other in &self.to_revoke[..3] {
            let (client, token, other) = (client.clone(), self.limited.access_token.clone(), other.key_id.clone());
            tasks.spawn(async move {
                let (status, body) = client.read(vault, &other, &token).await?;
                ensure!(status == StatusCode::FORBIDDEN, "wrong key: {status} {body}");
                Ok(Outcome::Denied)
            });
        }
        let mut acknowledged = Acknowledged {
            limited: self.limited,
            reads: 0,
            stored: Vec::new(),
            revoked: Vec::new(),
            denials: 0,
        };
        while let Some(outcome) = tasks.join_next().await {
            match outcome?? {
                Outcome::Stored(secret, stored) => acknowledged.stored.push((secret, stored)),
                Outcome::Read => acknowledged.reads += 1,
                Outcome::Revoked(stored) => acknowledged.revoked.push(stored),
                Outcome::Denied => acknowledged.denials += 1,
            }
        }
        Ok(acknowledged)
    }
}

enum Outcome {
    Stored(String, StoreKeyResponse),
    Read,
    Revoked(StoreKeyResponse),
    Denied,
}

impl Acknowledged {
    /// After the restart: everything acknowledged is there, exactly.
    async fn check(self, client: &Client, vault: SocketAddr, database_url: &str) -> Result<()> {
        // The audit trail first, before the checks below add to it.
        let store = Store::open(database_url, service_kit::clock::unix_now).await?;
        let verified = store.verify_audit(500).await?;
        let Ok(verified) = verified else {
            bail!("the audit chain is broken after the restart: {verified:?}");
        };
        let records = store.audit_records().await?;
        assert_eq!(verified.count(), records.len());
        let count = |event: &str, outcome: &str| {
            records
                .iter()
                .filter(|r| r.event == event && r.outcome == outcome)
                .count()
        };
        let prepared = 1 + BURST_REVOCATIONS;
        assert_eq!(
            count("stored", "ok"),
            prepared + self.stored.len(),
            "one record per store"
        );
        assert_eq!(count("read", "ok"), self.reads, "one record per acknowledged read");
        assert_eq!(count("revoked", "ok"), self.revoked.len(), "one per revocation");
        assert_eq!(
            count("denied", "token_not_valid_for_key"),
            self.denials,
            "one per audited denial"
        );
        let seqs: HashSet<i64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs.len(), records.len(), "no two records share a place in the chain");

        assert_eq!(self.stored.len(), BURST_STORES);
        for (secret, stored) in &self.stored {
            let (status, body) = client.read(vault, &stored.key_id, &stored.access_token).await?;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["decrypted_key"].as_str(), Some(secret.as_str()));
        }
        assert_eq!(self.revoked.len(), BURST_REVOCATIONS);
        for stored in &self.revoked {
            let (status, body) = client.read(vault, &stored.key_id, &stored.access_token).await?;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
            assert_eq!(error_code(&body)?, ErrorCode::RevokedToken);
        }
        // Exactly the reads the limit has left: the burst's were all counted, durably.
        assert_eq!(self.reads, BURST_READS);
        let mut granted = 0;
        for _ in 0..MAX_READS + 2 {
            let (status, _) = client
                .read(vault, &self.limited.key_id, &self.limited.access_token)
                .await?;
            if status == StatusCode::OK {
                granted += 1;
            }
        }
        assert_eq!(granted, MAX_READS - BURST_READS);
        Ok(())
    }
}
