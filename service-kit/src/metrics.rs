//! Request counters in the Prometheus text format, served at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Method, route template, status.
type Series = (String, String, u16);

/// Per series: request count and total seconds. Route templates
/// (`/api/keys/{key_id}`), never concrete paths, so no key_id is exported.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<Series, (u64, f64)>>,
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

    /// The Prometheus exposition text.
    pub fn render(&self) -> String {
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
}
