//! HTTPS listeners and graceful shutdown.
//!
//! Every connection passes the listener's [`Gate`] before TLS and carries its bounds after:
//! handshake, first request, request header and idle time (see [`ConnectionOptions`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum_server::Handle;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};

use crate::connections::{ConnectionOptions, Gate, GatedAcceptor};

/// A started HTTPS listener.
pub struct Listener {
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Listener {
    /// Waits until the listener stops, returning its I/O error if it failed.
    pub async fn stopped(self) -> std::io::Result<()> {
        self.task.await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

/// Binds `addr` with `tls` and serves `router` until `handle` shuts down, within
/// `connections`' limits and timeouts. Prints `listening <name> https://<addr>` on stdout
/// once bound; `name` also labels the listener's connection metrics.
pub async fn serve_https(
    name: &'static str,
    addr: SocketAddr,
    tls: rustls::ServerConfig,
    connections: &ConnectionOptions,
    router: Router,
    handle: Handle<SocketAddr>,
) -> std::io::Result<Listener> {
    let tls = RustlsAcceptor::new(RustlsConfig::from_config(Arc::new(tls)))
        .handshake_timeout(connections.handshake_timeout());
    let acceptor = GatedAcceptor::new(Gate::new(name, connections), tls, connections);
    let mut server = axum_server::bind(addr)
        .acceptor(acceptor)
        .handle(handle.clone())
        .first_request_timeout(connections.first_request_timeout())
        .accept_error_handler(move |peer, error| {
            // Refused, timed-out and failed handshakes: routine on a public port, and a
            // flood of them must not become a flood of log lines.
            tracing::debug!(listener = name, peer = ?peer, error = %error, "connection closed before serving");
        });
    server
        .http_builder()
        .http1()
        .header_read_timeout(connections.header_read_timeout());
    let server = server.serve(router.into_make_service_with_connect_info::<SocketAddr>());
    let task = tokio::spawn(server);
    let Some(bound) = handle.listening().await else {
        let error = match task.await {
            Ok(Err(e)) => e,
            _ => std::io::Error::other("listener stopped before binding"),
        };
        return Err(std::io::Error::new(
            error.kind(),
            format!("cannot listen on {addr}: {error}"),
        ));
    };
    println!("listening {name} https://{bound}");
    tracing::info!(listener = name, %bound, "listening");
    Ok(Listener { task })
}

/// Resolves on SIGINT or SIGTERM, then asks `handles` to drain for up to 10 s.
pub async fn shutdown_on_signal(handles: Vec<Handle<SocketAddr>>) {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::error!(error = %e, "cannot install SIGTERM handler");
            let _ = ctrl_c.await;
            return drain(&handles);
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    drain(&handles);
}

fn drain(handles: &[Handle<SocketAddr>]) {
    tracing::info!("shutting down");
    for handle in handles {
        handle.graceful_shutdown(Some(Duration::from_secs(10)));
    }
}
