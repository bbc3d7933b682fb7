//! Request counters and latency histograms in the Prometheus text format, served at
//! `/metrics`: every answer by route template and status, its latency by route template and
//! status class, and refusals by route template and reason — what a flood of
//! unauthenticated requests leaves behind, instead of a durable record each. Below the
//! router, connections (open, refused by reason), TLS handshake signatures (by key and
//! outcome) and the token's calls (time waiting for a session and time on the token, by
//! operation).
//!
//! Hand-written rather than the `metrics` facade with `metrics-exporter-prometheus`
//! (0.24/0.18, `default-features = false`: recorder and render only, no hyper): measured on
//! this 2-core machine, that pulls 20 crates the workspace does not build yet on Linux
//! (`evmap`, `left-right`, `metrics-util`, `quanta`, `raw-cpuid`, `sketches-ddsketch`,
//! `rand` 0.9, `crossbeam-epoch`, `portable-atomic`, …) and takes 48 s wall (42 s CPU) to
//! build cold with its dependencies, for what is here a few maps and one [`Histogram`]
//! type. Its summaries and per-metric bucket settings are what we would switch for; fixed
//! buckets need neither.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

mod histogram;
mod storage;

use histogram::histogram_header;
pub use histogram::{BUCKETS, Histogram};
pub use storage::{Storage, storage};

/// Method, route template, status.
type Series = (String, String, u16);

/// Method, route template, status class (`2xx`): latency is kept per class, not per status,
/// so that a route's buckets are multiplied by at most five classes.
type LatencySeries = (String, String, &'static str);

/// `status`'s class as a label value: `1xx` … `5xx`.
fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// A response extension naming why a request was refused (an error code): counted in
/// `http_refusals_total` by [`track`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal(pub &'static str);

/// Answers counted per series and their latency per route and status class. Route
/// templates (`/api/keys/{key_id}`), never concrete paths, so no key_id is exported.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<Series, u64>>,
    latency: Mutex<BTreeMap<LatencySeries, Histogram>>,
    refusals: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl Metrics {
    fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        *self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
        self.latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((method.to_owned(), route.to_owned(), status_class(status)))
            .or_default()
            .observe(seconds);
    }

    fn refused(&self, route: &str, reason: &'static str) {
        let mut refusals = self.refusals.lock().unwrap_or_else(PoisonError::into_inner);
        *refusals.entry((route.to_owned(), reason)).or_default() += 1;
    }

    /// The Prometheus exposition text.
    pub fn render(&self) -> String {
        let mut out = self.render_requests();
        out.push_str(&transport().render());
        out.push_str(&tokens().render());
        storage().render(&mut out);
        let refusals = self.refusals.lock().unwrap_or_else(PoisonError::into_inner);
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
        let mut out = String::from(
            "# HELP http_requests_total Requests answered, by route template and status.\n\
             # TYPE http_requests_total counter\n",
        );
        let requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        for ((method, route, status), count) in requests.iter() {
            let _ = writeln!(
                out,
                "http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        drop(requests);
        histogram_header(
            &mut out,
            "http_request_duration_seconds",
            "Time spent answering, by route template and status class.",
        );
        let latency = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        for ((method, route, class), histogram) in latency.iter() {
            let labels = format!("method=\"{method}\",route=\"{route}\",status_class=\"{class}\"");
            histogram.render(&mut out, "http_request_duration_seconds", &labels);
        }
        out
    }
}

/// The token's calls through the pool, by operation: how long each waited for a session
/// and how long it then held one (the PKCS#11 calls, key lookup included, and a recovery
/// and retry if the session was lost). Once per process, like [`Transport`]: the pool
/// reports to the one observer `hsm` lets a process set, installed by [`instrument`].
#[derive(Default)]
pub struct Tokens {
    waits: Mutex<BTreeMap<&'static str, Histogram>>,
    calls: Mutex<BTreeMap<&'static str, Histogram>>,
}

/// The process's token-call histograms.
pub fn tokens() -> &'static Tokens {
    static TOKENS: OnceLock<Tokens> = OnceLock::new();
    TOKENS.get_or_init(Tokens::default)
}

impl hsm::CallObserver for Tokens {
    fn waited(&self, operation: hsm::Operation, wait: Duration) {
        observe(&self.waits, operation, wait);
    }

    fn ran(&self, operation: hsm::Operation, took: Duration) {
        observe(&self.calls, operation, took);
    }
}

fn observe(histograms: &Mutex<BTreeMap<&'static str, Histogram>>, operation: hsm::Operation, took: Duration) {
    histograms
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(operation_label(operation))
        .or_default()
        .observe(took.as_secs_f64());
}

impl Tokens {
    fn render(&self) -> String {
        let mut out = String::new();
        for (name, help, histograms) in [
            (
                "token_pool_wait_seconds",
                "Time a token call waited for a session, by operation.",
                &self.waits,
            ),
            (
                "token_operation_duration_seconds",
                "Time a token call held its session (key lookup included), by operation.",
                &self.calls,
            ),
        ] {
            histogram_header(&mut out, name, help);
            for (operation, histogram) in histograms.lock().unwrap_or_else(PoisonError::into_inner).iter() {
                histogram.render(&mut out, name, &format!("operation=\"{operation}\""));
            }
        }
        out
    }
}

/// `operation` as a label value: a fixed word per kind, never a key label.
fn operation_label(operation: hsm::Operation) -> &'static str {
    use hsm::Operation;
    match operation {
        Operation::Connect => "connect",
        Operation::CheckSession => "check_session",
        Operation::ListSlots => "list_slots",
        Operation::ReadTokenInfo => "read_token_info",
        Operation::InitToken => "init_token",
        Operation::OpenSession => "open_session",
        Operation::OpenLoginSession => "open_login_session",
        Operation::Login => "login",
        Operation::SoLogin => "so_login",
        Operation::InitUserPin => "init_user_pin",
        Operation::Logout => "logout",
        Operation::FindKey => "find_key",
        Operation::ReadAttributes => "read_attributes",
        Operation::ExportPublicKey => "export_public_key",
        Operation::GenerateKeyPair => "generate_key_pair",
        Operation::ImportKeyPair => "import_key_pair",
        Operation::DestroyKeyPair => "destroy_key_pair",
        Operation::Sign => "sign",
        Operation::Decrypt => "decrypt",
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

/// Adds `GET /metrics` to `router`, counts all of its routes and has the process's token
/// pools report their calls to [`tokens`].
pub fn instrument(router: axum::Router) -> axum::Router {
    // A second router in the process (a test's) finds the observer already set: the same one.
    hsm::observe_calls(tokens());
    let metrics = Arc::new(Metrics::default());
    router
        .route("/metrics", axum::routing::get(serve).with_state(metrics.clone()))
        .route_layer(axum::middleware::from_fn_with_state(metrics, track))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_per_status_and_latency_per_status_class() {
        let metrics = Metrics::default();
        metrics.record("GET", "/api/keys/{key_id}", 200, 0.5);
        metrics.record("GET", "/api/keys/{key_id}", 200, 0.25);
        metrics.record("GET", "/api/keys/{key_id}", 401, 0.1);
        metrics.record("GET", "/api/keys/{key_id}", 404, 0.002);
        let text = metrics.render();
        assert!(
            text.contains("http_requests_total{method=\"GET\",route=\"/api/keys/{key_id}\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("status=\"401\"} 1\n"));
        let ok = "method=\"GET\",route=\"/api/keys/{key_id}\",status_class=\"2xx\"";
        assert!(
            text.contains(&format!("http_request_duration_seconds_sum{{{ok}}} 0.750000\n")),
            "{text}"
        );
        assert!(text.contains(&format!("http_request_duration_seconds_count{{{ok}}} 2\n")));
        let refused = "method=\"GET\",route=\"/api/keys/{key_id}\",status_class=\"4xx\"";
        assert!(text.contains(&format!("http_request_duration_seconds_count{{{refused}}} 2\n")));
        assert!(text.contains(&format!(
            "http_request_duration_seconds_bucket{{{refused},le=\"0.0025\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "http_request_duration_seconds_bucket{{{refused},le=\"0.1\"}} 2\n"
        )));
        assert_eq!(
            text.matches("# TYPE http_request_duration_seconds histogram\n").count(),
            1
        );
    }

    #[test]
    fn token_calls_are_histograms_by_operation_word() {
        use hsm::CallObserver as _;
        let tokens = Tokens::default();
        tokens.waited(hsm::Operation::Sign, Duration::from_millis(3));
        tokens.ran(hsm::Operation::Sign, Duration::from_millis(4));
        tokens.ran(hsm::Operation::Decrypt, Duration::from_millis(20));
        tokens.ran(hsm::Operation::CheckSession, Duration::from_micros(300));
        let text = tokens.render();
        assert!(
            text.contains("# TYPE token_operation_duration_seconds histogram\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE token_pool_wait_seconds histogram\n"));
        assert!(text.contains("token_pool_wait_seconds_bucket{operation=\"sign\",le=\"0.005\"} 1\n"));
        assert!(text.contains("token_operation_duration_seconds_bucket{operation=\"sign\",le=\"0.005\"} 1\n"));
        assert!(text.contains("token_operation_duration_seconds_bucket{operation=\"decrypt\",le=\"0.01\"} 0\n"));
        assert!(text.contains("token_operation_duration_seconds_count{operation=\"decrypt\"} 1\n"));
        assert!(text.contains("token_operation_duration_seconds_count{operation=\"check_session\"} 1\n"));
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
