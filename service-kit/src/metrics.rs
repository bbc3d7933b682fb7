//! Request counters in the Prometheus text format, served at `/metrics`: every answer by
//! route template and status, and refusals by route template and reason — what a flood of
//! unauthenticated requests leaves behind, instead of a durable record each. Below the
//! router, connections (open, refused by reason) and TLS handshake signatures (by key and
//! outcome) — what a flood of connections or handshakes leaves behind.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Method, route template, status.
type Series = (String, String, u16);

/// A response extension naming why a request was refused (an error code): counted in
/// `http_refusals_total` by [`track`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal(pub &'static str);

/// Per series: request count and total seconds. Route templates
/// (`/api/keys/{key_id}`), never concrete paths, so no key_id is exported.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<Series, (u64, f64)>>,
    refusals: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl Metrics {
    fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut requests = self.requests.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = requests
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default();
        entry.0 += 1;
        entry.1 += seconds;
    }

    fn refused(&self, route: &str, reason: &'static str) {
        let mut refusals = self.refusals.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *refusals.entry((route.to_owned(), reason)).or_default() += 1;
    }

    /// The Prometheus exposition text.
    pub fn render(&self) -> String {
        let mut out = self.render_requests();
        out.push_str(&transport().render());
        let refusals = self.refusals.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        out.push_str(
            "# HELP http_refusals_total Requests refused, by route template and reason.\n\
             # TYPE http_refusals_total counter\n",
        );
        for ((route, reason), count) in refusals.iter() {
            let _ = writeln!(
                out,
                "http_refusals_total{{route=\"{route}\",reason=\"{reason}\"}} {count}"
            );
        }
        out
    }

    fn render_requests(&self) -> String {
        let requests = self.requests.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = String::from(
            "# HELP http_requests_total Requests answered, by route template and status.\n\
             # TYPE http_requests_total counter\n",
        );
        for ((method, route, status), (count, _)) in requests.iter() {
            let _ = writeln!(
                out,
                "http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        out.push_str(
            "# HELP http_request_duration_seconds_sum Total time spent answering, by route template and status.\n\
             # TYPE http_request_duration_seconds_sum counter\n",
        );
        for ((method, route, status), (_, seconds)) in requests.iter() {
            let _ = writeln!(
                out,
                "http_request_duration_seconds_sum{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {seconds:.6}"
            );
        }
        out
    }
}

/// Counters of what happens below the router: the accept loop and rustls' signer see no
/// router state, so these exist once per process (one process is one service) and every
/// `/metrics` of the process shows them.
#[derive(Default)]
pub struct Transport {
    /// Connections open, by listener.
    open: Mutex<BTreeMap<&'static str, i64>>,
    /// Connections closed when accepted, by listener and reason.
    refused: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Handshake signatures, by key label and outcome (`signed`, `busy`, `failed`).
    signatures: Mutex<BTreeMap<(String, &'static str), u64>>,
}

/// The process's transport counters.
pub fn transport() -> &'static Transport {
    static TRANSPORT: OnceLock<Transport> = OnceLock::new();
    TRANSPORT.get_or_init(Transport::default)
}

impl Transport {
    /// A connection was admitted on `listener`.
    pub fn connection_opened(&self, listener: &'static str) {
        *self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(listener)
            .or_default() += 1;
    }

    /// An admitted connection on `listener` closed.
    pub fn connection_closed(&self, listener: &'static str) {
        *self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(listener)
            .or_default() -= 1;
    }

    /// A connection on `listener` was closed when accepted, for `reason`.
    pub fn connection_refused(&self, listener: &'static str, reason: crate::connections::Refused) {
        *self
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((listener, reason.as_str()))
            .or_default() += 1;
    }

    /// The TLS key labelled `key` was asked for a handshake signature, with `outcome`.
    pub fn handshake_signature(&self, key: &str, outcome: &'static str) {
        *self
            .signatures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((key.to_owned(), outcome))
            .or_default() += 1;
    }

    fn render(&self) -> String {
        let mut out = String::from(
            "# HELP connections_open Connections open, by listener.\n\
             # TYPE connections_open gauge\n",
        );
        for (listener, open) in self.open.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            let _ = writeln!(out, "connections_open{{listener=\"{listener}\"}} {open}");
        }
        out.push_str(
            "# HELP connections_refused_total Connections closed when accepted, by listener and reason.\n\
             # TYPE connections_refused_total counter\n",
        );
        for ((listener, reason), count) in self.refused.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            let _ = writeln!(
                out,
                "connections_refused_total{{listener=\"{listener}\",reason=\"{reason}\"}} {count}"
            );
        }
        out.push_str(
            "# HELP tls_handshake_signatures_total Handshake signatures asked of the token, by key label and outcome.\n\
             # TYPE tls_handshake_signatures_total counter\n",
        );
        for ((key, outcome), count) in self.signatures.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            let _ = writeln!(
                out,
                "tls_handshake_signatures_total{{key=\"{key}\",outcome=\"{outcome}\"}} {count}"
            );
        }
        out
    }
}

/// Middleware (for `route_layer`) that records every routed request.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let response = next.run(request).await;
    if let Some(Refusal(reason)) = response.extensions().get::<Refusal>() {
        metrics.refused(&route, reason);
    }
    metrics.record(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Handler for `GET /metrics`.
pub async fn serve(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics.render())
}

/// Adds `GET /metrics` to `router` and counts all of its routes.
pub fn instrument(router: axum::Router) -> axum::Router {
    let metrics = Arc::new(Metrics::default());
    router
        .route("/metrics", axum::routing::get(serve).with_state(metrics.clone()))
        .route_layer(axum::middleware::from_fn_with_state(metrics, track))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_durations_per_route_template() {
        let metrics = Metrics::default();
        metrics.record("GET", "/api/keys/{key_id}", 200, 0.5);
        metrics.record("GET", "/api/keys/{key_id}", 200, 0.25);
        metrics.record("GET", "/api/keys/{key_id}", 401, 0.1);
        let text = metrics.render();
        assert!(
            text.contains("http_requests_total{method=\"GET\",route=\"/api/keys/{key_id}\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("status=\"401\"} 1\n"));
        assert!(text.contains(
            "http_request_duration_seconds_sum{method=\"GET\",route=\"/api/keys/{key_id}\",status=\"200\"} 0.750000\n"
        ));
    }

    #[test]
    fn renders_refusals_per_route_template_and_reason() {
        let metrics = Metrics::default();
        metrics.refused("/api/keys/{key_id}", "missing_token");
        metrics.refused("/api/keys/{key_id}", "missing_token");
        metrics.refused("/api/tokens/revoke", "invalid_token");
        let text = metrics.render();
        assert!(
            text.contains("http_refusals_total{route=\"/api/keys/{key_id}\",reason=\"missing_token\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("http_refusals_total{route=\"/api/tokens/revoke\",reason=\"invalid_token\"} 1\n"));
    }
}
