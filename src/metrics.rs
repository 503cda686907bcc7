//! Prometheus text metrics: requests by route and status, a latency histogram, pool gauges.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    pub fn observe(&self, method: &str, route: &str, status: u16, took: Duration) {
        let secs = took.as_secs_f64();
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *m.requests
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                m.buckets[i] += 1;
            }
        }
        m.count += 1;
        m.sum += secs;
    }

    pub fn render(&self, pool_size: u32, pool_idle: usize) -> String {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        out.push_str("# HELP auravita_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE auravita_http_requests_total counter\n");
        for ((method, route, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "auravita_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                route.replace('\\', "\\\\").replace('"', "\\\"")
            );
        }
        out.push_str("# HELP auravita_http_request_duration_seconds Time to produce a response.\n");
        out.push_str("# TYPE auravita_http_request_duration_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "auravita_http_request_duration_seconds_bucket{{le=\"{b}\"}} {}",
                m.buckets[i]
            );
        }
        let _ = writeln!(
            out,
            "auravita_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            m.count
        );
        let _ = writeln!(out, "auravita_http_request_duration_seconds_sum {}", m.sum);
        let _ = writeln!(
            out,
            "auravita_http_request_duration_seconds_count {}",
            m.count
        );
        out.push_str("# HELP auravita_db_pool_connections Database connections open.\n");
        out.push_str("# TYPE auravita_db_pool_connections gauge\n");
        let _ = writeln!(out, "auravita_db_pool_connections {pool_size}");
        out.push_str("# HELP auravita_db_pool_idle Database connections idle.\n");
        out.push_str("# TYPE auravita_db_pool_idle gauge\n");
        let _ = writeln!(out, "auravita_db_pool_idle {pool_idle}");
        out
    }
}
