//! The admin HTTP port: Prometheus metrics (`/metrics`), liveness (`/healthz`) and readiness
//! (`/readyz`: the store answers and the site schema is loaded).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use shotgun_cache_core::store::{ResultCacheStats, Store};

use crate::catalog::Catalog;

/// Copies the store's result cache counters into the metrics about to be rendered.
fn record_result_cache(s: &ResultCacheStats) {
    for (outcome, n) in [
        ("hit", s.hits),
        ("miss", s.misses),
        ("uncacheable", s.uncacheable),
    ] {
        metrics::counter!("query_result_cache_requests_total", "outcome" => outcome).absolute(n);
    }
    metrics::counter!("query_result_cache_evictions_total").absolute(s.evictions);
    metrics::counter!("query_result_cache_invalidated_entries_total").absolute(s.invalidations);
    metrics::gauge!("query_result_cache_entries").set(s.entries as f64);
    metrics::gauge!("query_result_cache_bytes").set(s.bytes as f64);
    metrics::gauge!("query_result_cache_budget_bytes").set(s.budget_bytes as f64);
}

/// Histogram buckets (seconds) for latencies: from 50 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// The process-wide Prometheus recorder, installed on first use (several servers in one test
/// process share it).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("the bucket list is not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (e.g. by an embedding process); then our
            // metrics go there and this handle renders only what it saw.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "a metrics recorder was already installed; /metrics may be incomplete"
                );
            }
            handle
        })
        .clone()
}

/// The admin router.
pub fn router(
    metrics: PrometheusHandle,
    ready: Arc<AtomicBool>,
    catalog: Catalog,
    store: Arc<dyn Store>,
) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                if let Some(s) = store.result_cache_stats() {
                    record_result_cache(&s);
                }
                std::future::ready(metrics.render())
            }),
        )
        .route("/healthz", get(|| std::future::ready("ok\n")))
        .route(
            "/readyz",
            get(move || {
                let store_ok = ready.load(Ordering::SeqCst);
                let schema_ok = catalog.snapshot().schema.is_some();
                std::future::ready(match (store_ok, schema_ok) {
                    (true, true) => (StatusCode::OK, "ready\n".to_owned()),
                    (false, _) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "store unreachable\n".to_owned(),
                    ),
                    (true, false) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no site schema in the store yet\n".to_owned(),
                    ),
                })
            }),
        )
}
