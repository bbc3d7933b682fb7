//! What an attacker on the network does without any credential: raw TCP and TLS
//! connections from chosen loopback addresses (127.0.0.0/8 is all local, so one test can be
//! many clients), fresh handshakes that the server must sign, connections that send half a
//! request or nothing, and a check of when the server hung up.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::dev::dev_dir;

/// The loopback address `127.0.0.<last>`: a client of its own to the services' per-address
/// limits.
pub fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A TCP connection to `target` from `source`.
pub async fn tcp_from(source: IpAddr, target: SocketAddr) -> io::Result<TcpStream> {
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(target).await
}

/// A client config trusting the dev CA that speaks HTTP/1.1 (raw requests are written by
/// hand) and, unless `resume`, never resumes: every handshake is a full one, signed by the
/// server's token.
pub fn raw_tls_config(resume: bool) -> Result<Arc<ClientConfig>> {
    let mut config = service_kit::tls::client_config(&dev_dir()?.join("tls/ca.pem"), None)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// A TLS connection to `target` from `source`, the server's certificate checked for `name`.
pub async fn tls_from(
    source: IpAddr,
    target: SocketAddr,
    config: Arc<ClientConfig>,
    name: &str,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = tcp_from(source, target).await?;
    let name = ServerName::try_from(name.to_owned()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    TlsConnector::from(config).connect(name, tcp).await
}

/// Writes `request` and reads until the server closes (a `Connection: close` request) or
/// `bound` passes; returns what was read.
pub async fn exchange<S>(stream: &mut S, request: &[u8], bound: Duration) -> io::Result<Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(request).await?;
    stream.flush().await?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(bound, read).await;
    Ok(answer)
}

/// Reads one response head and as much body as arrives at once (keep-alive: the server
/// does not close).
pub async fn read_response<S>(stream: &mut S) -> io::Result<String>
where
    S: tokio::io::AsyncRead + Unpin,
{
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        answer.extend_from_slice(&buffer[..n]);
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// Whether the server closed `stream` within `bound`: reading gives end-of-file or an
/// error. Bytes the server sends first (a TLS alert, an HTTP 408) are read past. `bound` is
/// where the test gives up, far above the server's own timeout: it never measures speed.
pub async fn closed_within<S>(stream: &mut S, bound: Duration) -> bool
where
    S: tokio::io::AsyncRead + Unpin,
{
    let mut buffer = [0u8; 1024];
    let closed = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(bound, closed).await.is_ok()
}

/// The value of the Prometheus series whose line starts with `series` (name and labels,
/// e.g. `connections_open{listener="public"}`) in `metrics`; 0 when absent.
pub fn metric(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Open descriptors of process `pid`.
pub fn open_descriptors(pid: u32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// A connection an attacker keeps open.
trait Held: tokio::io::AsyncRead + Unpin + Send {}
impl<T: tokio::io::AsyncRead + Unpin + Send> Held for T {}

/// Attackers running until [`Attack::stop`], each from a loopback address of its own (the
/// legitimate client of a test is 127.0.0.1).
pub struct Attack {
    stop: Arc<AtomicBool>,
    tasks: JoinSet<u64>,
}

impl Attack {
    /// An attack with nothing running yet.
    pub fn new() -> Self {
        Self {
            stop: Arc::new(AtomicBool::new(false)),
            tasks: JoinSet::new(),
        }
    }

    /// `count` connections from `source` that never finish a request — a third send
    /// nothing, a third half a TLS record, a third complete the handshake and stop —
    /// reconnecting whenever the server hangs up.
    pub fn hold_idle(&mut self, source: u8, target: SocketAddr, count: usize) -> Result<()> {
        let config = raw_tls_config(false)?;
        for i in 0..count {
            let (stop, config) = (self.stop.clone(), config.clone());
            self.tasks.spawn(async move {
                let mut opened = 0;
                while !stop.load(Ordering::Relaxed) {
                    let held = match i % 3 {
                        0 => tcp_from(loopback(source), target)
                            .await
                            .map(|tcp| Box::new(tcp) as Box<dyn Held>),
                        1 => match tcp_from(loopback(source), target).await {
                            Ok(mut tcp) => tcp
                                .write_all(&[0x16, 0x03, 0x01, 0x02])
                                .await
                                .map(|()| Box::new(tcp) as _),
                            Err(e) => Err(e),
                        },
                        _ => tls_from(loopback(source), target, config.clone(), "localhost")
                            .await
                            .map(|tls| Box::new(tls) as _),
                    };
                    if let Ok(mut held) = held {
                        opened += 1;
                        let _ = closed_within(&mut held, Duration::from_secs(3)).await;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                opened
            });
        }
        Ok(())
    }

    /// `tasks` loops of full handshakes (no resumption) from `source`, each dropped at once.
    pub fn handshake_loop(&mut self, source: u8, target: SocketAddr, tasks: usize) -> Result<()> {
        let config = raw_tls_config(false)?;
        for _ in 0..tasks {
            let (stop, config) = (self.stop.clone(), config.clone());
            self.tasks.spawn(async move {
                let mut handshakes = 0;
                while !stop.load(Ordering::Relaxed) {
                    if tls_from(loopback(source), target, config.clone(), "localhost")
                        .await
                        .is_ok()
                    {
                        handshakes += 1;
                    } else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                handshakes
            });
        }
        Ok(())
    }

    /// `tasks` loops of unauthenticated reads with 60 KB and 8 KB paths from `source`.
    pub fn refusal_flood(&mut self, source: u8, vault: SocketAddr, tasks: usize) -> Result<Arc<AtomicU64>> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(service_kit::tls::client_config(&dev_dir()?.join("tls/ca.pem"), None)?)
            .local_address(loopback(source))
            .timeout(Duration::from_secs(10))
            .build()?;
        let answered = Arc::new(AtomicU64::new(0));
        for i in 0..tasks {
            let (stop, http, answered) = (self.stop.clone(), http.clone(), answered.clone());
            let path = "k".repeat(if i % 2 == 0 { 60 * 1024 } else { 8 * 1024 });
            let url = format!("https://{vault}/api/keys/{path}");
            self.tasks.spawn(async move {
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) {
                    sent += 1;
                    if http.get(&url).bearer_auth("not.a.token").send().await.is_ok() {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                sent
            });
        }
        Ok(answered)
    }

    /// The mix of `hostile_traffic` and `loadgen --attack`, from 127.0.0.20 and up: four
    /// loops of unauthenticated reads with 60 KB and 8 KB paths on vault's public listener
    /// (started first, and given up to 10 s to be answered once, so that its connections are
    /// in before the listener fills), then 60 idle connections from each of six addresses on
    /// that listener and from one on each other listener, and four loops of fresh
    /// handshakes on each listener; returns the attack and the count of refusals answered.
    pub async fn everything(
        vault_public: SocketAddr,
        vault_internal: SocketAddr,
        manager: SocketAddr,
    ) -> Result<(Self, Arc<AtomicU64>)> {
        let mut attack = Self::new();
        let refusals = attack.refusal_flood(40, vault_public, 4)?;
        for _ in 0..100 {
            if refusals.load(Ordering::Relaxed) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for source in 20..26 {
            attack.hold_idle(source, vault_public, 60)?;
        }
        attack.hold_idle(26, vault_internal, 60)?;
        attack.hold_idle(27, manager, 60)?;
        attack.handshake_loop(30, vault_public, 4)?;
        attack.handshake_loop(31, vault_internal, 4)?;
        attack.handshake_loop(32, manager, 4)?;
        Ok((attack, refusals))
    }

    /// Stops every attacker; returns how many connections, handshakes and requests they made.
    pub async fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        while let Some(done) = self.tasks.join_next().await {
            total += done.unwrap_or(0);
        }
        total
    }
}

impl Default for Attack {
    fn default() -> Self {
        Self::new()
    }
}
