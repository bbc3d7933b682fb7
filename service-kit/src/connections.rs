//! What a connection may cost before it has proved anything: how many a listener holds, how
//! many one client address holds and how many of those may be in a TLS handshake at once
//! (each handshake is a signature in the token), and how long a connection may sit in the
//! handshake, before its first request, inside a request header or idle.
//!
//! A connection over a count limit is closed as soon as it is accepted, before TLS: there is
//! no HTTP yet to answer with, and the point is to spend nothing on it. A connection past its
//! address's handshake limit waits for a turn instead (it holds only its socket), so that a
//! client opening many connections at once is served in turn rather than turned away. Clients are keyed by
//! address like the rate limiter's (IPv6 by /64); behind a proxy every client has the
//! proxy's address, so raise the per-address limits there.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum_server::accept::Accept;
use axum_server::tls_rustls::RustlsAcceptor;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics;
use crate::rate_limit::client_key;

mod stream;
pub use stream::GuardedStream;

/// Connection limits and timeouts of every listener of a service, under the same names,
/// file keys and environment variables in manager and vault. Limits apply to each listener
/// on its own, so filling one (vault's public port) leaves the other (the internal one
/// manager uses) its full share.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionOptions {
    /// Most connections one listener holds at once; more are closed when accepted. Keep
    /// the sum over the listeners well under the process's open-files limit (the service
    /// raises its soft limit to the hard one at start-up and warns if it is too low).
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Most connections one client address (IPv6: one /64) holds on a listener. Generous:
    /// an HTTP/1.1 client with many requests in flight opens as many connections.
    #[arg(long, default_value_t = 256)]
    pub max_connections_per_address: usize,
    /// Most TLS handshakes one client address has in progress on a listener at once; its
    /// other new connections wait their turn (within the handshake timeout).
    #[arg(long, default_value_t = 8)]
    pub max_handshakes_per_address: usize,
    /// Token sessions set aside for signing each TLS key's handshakes: handshakes never
    /// take a session that requests need.
    #[arg(long, default_value_t = 2)]
    pub handshake_sessions: usize,
    /// How long a handshake signature waits for one of those sessions before the handshake
    /// fails (the client may retry), in milliseconds: bounded, so that a flood of handshakes
    /// fails handshakes rather than queueing without end. 100 ms failed legitimate ones: a
    /// client opening 64 connections at once to vault in isolation mode while the token
    /// served reads (`make bench`).
    #[arg(long, default_value_t = 1_000)]
    pub handshake_wait_ms: u64,
    /// Bound on a TLS handshake, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub handshake_timeout_ms: u64,
    /// Bound on the time from the end of the handshake to the first complete request
    /// header, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub first_request_timeout_ms: u64,
    /// Bound on reading one request header (HTTP/1.1), from the first byte or from the end
    /// of the previous response, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// A connection that neither sends nor accepts a byte for this long is closed, in
    /// seconds (HTTP/2 too). Clients that pool connections should drop theirs sooner.
    #[arg(long, default_value_t = 60)]
    pub idle_timeout_seconds: u64,
}

impl ConnectionOptions {
    /// Sessions and wait of each server TLS key's handshake budget.
    pub fn handshake_budget(&self) -> (usize, Duration) {
        (self.handshake_sessions, Duration::from_millis(self.handshake_wait_ms))
    }

    /// The handshake bound.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms.max(1))
    }

    /// The first-request bound.
    pub fn first_request_timeout(&self) -> Duration {
        Duration::from_millis(self.first_request_timeout_ms.max(1))
    }

    /// The request-header bound.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms.max(1))
    }

    /// The idle bound.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_seconds.max(1))
    }
}

/// Descriptors a service needs besides its connections: database, token, log, runtime.
const DESCRIPTORS_BESIDES_CONNECTIONS: u64 = 256;

/// Raises the process's open-files limit and warns, once at start-up, if `listeners`
/// listeners full to `max_connections` would still not fit under it: then descriptors,
/// not the connection limits, decide what a flood turns away.
pub fn check_descriptor_budget(options: &ConnectionOptions, listeners: usize) {
    let Some(limit) = crate::process::raise_open_files_limit() else {
        return;
    };
    let needed = (options.max_connections as u64).saturating_mul(listeners as u64) + DESCRIPTORS_BESIDES_CONNECTIONS;
    if limit < needed {
        tracing::warn!(
            open_files_limit = limit,
            needed,
            "the open-files limit is below max_connections for every listener plus {DESCRIPTORS_BESIDES_CONNECTIONS}: \
             raise it (LimitNOFILE=) or lower max_connections"
        );
    }
}

/// Why a connection was closed when accepted (the `reason` label of
/// `connections_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The listener holds `max_connections`.
    ListenerFull,
    /// The client's address holds `max_connections_per_address`.
    AddressFull,
}

impl Refused {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::ListenerFull => "listener_full",
            Refused::AddressFull => "address_full",
        }
    }
}

/// One listener's connections, in total and by client address.
#[derive(Debug)]
pub struct Gate {
    listener: &'static str,
    max_total: usize,
    max_per_address: usize,
    max_handshakes_per_address: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// Per client key; an entry goes when its last connection closes, so the map holds only
    /// addresses that have a connection open.
    by_client: HashMap<IpAddr, Client>,
}

#[derive(Debug)]
struct Client {
    connections: usize,
    /// Turns to handshake: a client's connections beyond `max_handshakes_per_address` wait
    /// (holding only their socket) for one of its handshakes to end, so that one address
    /// cannot crowd the token with signatures while a burst from a legitimate client (a
    /// pool opening many connections at once) still gets through, in turn.
    handshakes: Arc<Semaphore>,
}

impl Gate {
    /// The gate of the listener called `listener` (a metric label).
    pub fn new(listener: &'static str, options: &ConnectionOptions) -> Arc<Self> {
        Arc::new(Self {
            listener,
            max_total: options.max_connections.max(1),
            max_per_address: options.max_connections_per_address.max(1),
            max_handshakes_per_address: options.max_handshakes_per_address.max(1),
            counts: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a connection from `client`, or says why not. The returned slot holds its
    /// place until dropped.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Slot, Refused> {
        let key = client_key(client);
        let mut counts = self.counts();
        let connections = counts.by_client.get(&key).map_or(0, |c| c.connections);
        let refused = if counts.total >= self.max_total {
            Some(Refused::ListenerFull)
        } else if connections >= self.max_per_address {
            Some(Refused::AddressFull)
        } else {
            None
        };
        if let Some(refused) = refused {
            drop(counts);
            metrics::transport().connection_refused(self.listener, refused);
            return Err(refused);
        }
        counts.total += 1;
        let entry = counts.by_client.entry(key).or_insert_with(|| Client {
            connections: 0,
            handshakes: Arc::new(Semaphore::new(self.max_handshakes_per_address)),
        });
        entry.connections += 1;
        let handshakes = Arc::clone(&entry.handshakes);
        drop(counts);
        metrics::transport().connection_opened(self.listener);
        Ok(Slot {
            gate: Arc::clone(self),
            key,
            handshakes,
        })
    }

    fn release(&self, key: IpAddr) {
        let mut counts = self.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(client) = counts.by_client.get_mut(&key) {
            client.connections = client.connections.saturating_sub(1);
            if client.connections == 0 {
                counts.by_client.remove(&key);
            }
        }
        drop(counts);
        metrics::transport().connection_closed(self.listener);
    }

    /// Connections the listener holds now.
    pub fn open(&self) -> usize {
        self.counts().total
    }
}

/// A connection's place in its listener's counts, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    gate: Arc<Gate>,
    key: IpAddr,
    handshakes: Arc<Semaphore>,
}

impl Slot {
    /// Waits for the client's turn to handshake; the turn lasts as long as the permit.
    pub async fn handshake_turn(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.handshakes)
            .acquire_owned()
            .await
            .expect("a client's handshake semaphore is never closed")
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.release(self.key);
    }
}

/// Admits each accepted connection through the listener's [`Gate`], waits for its
/// address's turn to handshake, then runs the TLS handshake; the wait and the handshake are
/// each bounded by the handshake timeout.
#[derive(Clone)]
pub struct GatedAcceptor {
    gate: Arc<Gate>,
    tls: RustlsAcceptor,
    handshake_timeout: Duration,
    idle: Duration,
}

impl GatedAcceptor {
    /// `tls` must carry `connections`' handshake timeout.
    pub fn new(gate: Arc<Gate>, tls: RustlsAcceptor, connections: &ConnectionOptions) -> Self {
        Self {
            gate,
            tls,
            handshake_timeout: connections.handshake_timeout(),
            idle: connections.idle_timeout(),
        }
    }
}

type Accepted<S> = <RustlsAcceptor as Accept<GuardedStream, S>>::Service;

impl<S: Send + 'static> Accept<TcpStream, S> for GatedAcceptor {
    type Stream = <RustlsAcceptor as Accept<GuardedStream, S>>::Stream;
    type Service = Accepted<S>;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, tcp: TcpStream, service: S) -> Self::Future {
        let admitted = match tcp.peer_addr() {
            Ok(peer) => self
                .gate
                .admit(peer.ip())
                .map_err(|refused| io::Error::other(refused.as_str())),
            Err(e) => Err(e),
        };
        let (tls, handshake_timeout, idle) = (self.tls.clone(), self.handshake_timeout, self.idle);
        Box::pin(async move {
            let slot = admitted?;
            let turn = tokio::time::timeout(handshake_timeout, slot.handshake_turn())
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no turn to handshake"))?;
            let accepted = tls.accept(GuardedStream::new(tcp, slot, idle), service).await;
            drop(turn);
            accepted
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::task::Poll;

    use super::*;

    pub(super) fn options(total: usize, per_address: usize, handshakes: usize) -> ConnectionOptions {
        ConnectionOptions {
            max_connections: total,
            max_connections_per_address: per_address,
            max_handshakes_per_address: handshakes,
            handshake_sessions: 1,
            handshake_wait_ms: 1,
            handshake_timeout_ms: 1,
            first_request_timeout_ms: 1,
            header_read_timeout_ms: 1,
            idle_timeout_seconds: 1,
        }
    }

    fn address(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn an_address_gets_its_share_and_the_listener_its_cap() {
        let gate = Gate::new("test", &options(3, 2, 2));
        let a1 = gate.admit(address(1)).expect("first");
        let _a2 = gate.admit(address(1)).expect("second");
        assert_eq!(gate.admit(address(1)).err(), Some(Refused::AddressFull));
        let _b1 = gate.admit(address(2)).expect("another address");
        assert_eq!(gate.admit(address(3)).err(), Some(Refused::ListenerFull));
        drop(a1);
        assert_eq!(gate.open(), 2);
        assert!(gate.admit(address(3)).is_ok(), "a closed connection frees its place");
    }

    #[tokio::test]
    async fn an_address_handshakes_a_few_at_a_time_and_the_rest_wait_their_turn() {
        let gate = Gate::new("test", &options(10, 10, 2));
        let slots: Vec<_> = (0..3).map(|_| gate.admit(address(1)).expect("admitted")).collect();
        let first = slots[0].handshake_turn().await;
        let _second = slots[1].handshake_turn().await;
        let third = slots[2].handshake_turn();
        tokio::pin!(third);
        assert!(
            futures_poll_once(third.as_mut()).await.is_none(),
            "a third handshake from one address waits"
        );
        let other = gate.admit(address(2)).expect("another address");
        let _other_turn = other.handshake_turn().await;
        drop(first);
        let _third = third.await;
        assert_eq!(gate.open(), 4);
    }

    /// Polls `future` once: `Some` if it was ready.
    async fn futures_poll_once<F: Future + Unpin>(mut future: F) -> Option<F::Output> {
        std::future::poll_fn(|cx| match Pin::new(&mut future).poll(cx) {
            Poll::Ready(output) => Poll::Ready(Some(output)),
            Poll::Pending => Poll::Ready(None),
        })
        .await
    }

    #[test]
    fn closed_connections_leave_no_entry_behind() {
        let gate = Gate::new("test", &options(10, 10, 10));
        let slots: Vec<_> = (0..5).map(|i| gate.admit(address(i)).expect("admitted")).collect();
        drop(slots);
        assert_eq!(gate.open(), 0);
        assert!(gate.counts().by_client.is_empty());
    }
}
