//! Prometheus metrics in the text exposition format, counted by hand: a few
//! counters need no metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

/// Upper bounds (seconds) of the request duration histogram.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5, 10.0];

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    durations: Mutex<BTreeMap<String, Histogram>>,
    pub upload_bytes: AtomicU64,
    pub download_bytes: AtomicU64,
    pub uploads_committed: AtomicU64,
    pub uploads_refused: AtomicU64,
    pub swept_entries: AtomicU64,
    pub swept_blobs: AtomicU64,
}

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut r = self.requests.lock().expect("metrics lock");
        *r.entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
        drop(r);
        let mut d = self.durations.lock().expect("metrics lock");
        let h = d.entry(route.to_string()).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    pub fn render(&self, entries_valid: u64) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        };
        out.push_str(
            "# HELP kiln_http_requests_total HTTP requests by method, route and status.\n",
        );
        out.push_str("# TYPE kiln_http_requests_total counter\n");
        for ((m, route, s), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "kiln_http_requests_total{{method=\"{m}\",route=\"{route}\",status=\"{s}\"}} {n}"
            );
        }
        out.push_str("# HELP kiln_http_request_duration_seconds Request latency by route.\n");
        out.push_str("# TYPE kiln_http_request_duration_seconds histogram\n");
        for (route, h) in self.durations.lock().expect("metrics lock").iter() {
            for (bound, c) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "kiln_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {c}"
                );
            }
            let _ = writeln!(
                out,
                "kiln_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "kiln_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "kiln_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        counter(
            &mut out,
            "kiln_upload_bytes_total",
            "Bytes received in uploads and imports.",
            &self.upload_bytes,
        );
        counter(
            &mut out,
            "kiln_download_bytes_total",
            "Bytes sent in downloads.",
            &self.download_bytes,
        );
        counter(
            &mut out,
            "kiln_uploads_committed_total",
            "Uploads that became active entries.",
            &self.uploads_committed,
        );
        counter(
            &mut out,
            "kiln_uploads_refused_total",
            "Uploads refused (digest, size, safety).",
            &self.uploads_refused,
        );
        counter(
            &mut out,
            "kiln_swept_entries_total",
            "Abandoned uploads collected.",
            &self.swept_entries,
        );
        counter(
            &mut out,
            "kiln_swept_blobs_total",
            "Unreferenced blobs and chunks deleted.",
            &self.swept_blobs,
        );
        let _ = writeln!(
            out,
            "# HELP kiln_entries Entries in the valid class.\n# TYPE kiln_entries gauge\nkiln_entries{{status=\"valid\"}} {entries_valid}"
        );
        out
    }
}

/// Middleware: counts every request by its route template (not its path,
/// which would make one series per entry).
pub async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(req).await;
    state.metrics.observe(
        &method,
        &route,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}
