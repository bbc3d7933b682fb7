//! HTTPS listeners and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;

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

/// Binds `addr` with `tls` and serves `router` until `handle` shuts down. Prints
/// `listening <name> https://<addr>` on stdout once bound.
pub async fn serve_https(
    name: &str,
    addr: SocketAddr,
    tls: rustls::ServerConfig,
    router: Router,
    handle: Handle<SocketAddr>,
) -> std::io::Result<Listener> {
    let server = axum_server::bind_rustls(addr, RustlsConfig::from_config(Arc::new(tls)))
        .handle(handle.clone())
        .serve(router.into_make_service_with_connect_info::<SocketAddr>());
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
