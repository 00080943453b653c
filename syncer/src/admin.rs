//! The admin HTTP port: `/healthz` (process up), `/readyz` (initial import done and the store
//! reachable), `/metrics`
//! (Prometheus text, rendered from this syncer's own figures) and `/webhook` (verifies Shotgun's
//! `X-SG-SIGNATURE: sha1=<hex>` HMAC in constant time and triggers an immediate poll; the data
//! still comes from the event log).
//!
//! The per-type entity counts are a scan of each type's table (`count(*)` and the retired rows
//! over millions of rows), so `/metrics` reuses them for [`COUNTS_MAX_AGE`]: a scraper polling it
//! many times a second does not turn into a table scan per poll competing with the follower.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use subtle::ConstantTimeEq;

use crate::engine::Engine;

/// The state of the admin routes.
#[derive(Clone)]
pub struct Admin {
    pub engine: Arc<Engine>,
    /// A recorder owned by this syncer (not the global one), so several syncers in one process
    /// (tests) report their own figures.
    pub recorder: Arc<PrometheusRecorder>,
    /// The last per-type counts and when they were read.
    counts: Arc<Mutex<Option<(Instant, Counts)>>>,
}

type Counts = BTreeMap<String, (u64, u64)>;

/// How long `/metrics` reuses the per-type entity counts.
pub const COUNTS_MAX_AGE: Duration = Duration::from_secs(2);

impl Admin {
    /// The per-type (live, retired) counts, read again when the last reading is older than
    /// [`COUNTS_MAX_AGE`].
    async fn counts(&self) -> Counts {
        let cached = self.counts.lock().ok().and_then(|c| {
            c.as_ref()
                .filter(|(at, _)| at.elapsed() < COUNTS_MAX_AGE)
                .map(|(_, c)| c.clone())
        });
        if let Some(c) = cached {
            return c;
        }
        let fresh = self.engine.type_counts().await;
        if let Ok(mut c) = self.counts.lock() {
            *c = Some((Instant::now(), fresh.clone()));
        }
        fresh
    }
}

pub fn router(engine: Arc<Engine>) -> Router {
    let recorder = Arc::new(PrometheusBuilder::new().build_recorder());
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/webhook", post(webhook))
        .with_state(Admin {
            engine,
            recorder,
            counts: Arc::new(Mutex::new(None)),
        })
}

async fn readyz(State(a): State<Admin>) -> impl IntoResponse {
    if let Some(e) = a.engine.status.store_error() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unreachable (syncing is paused until it answers): {e}\n"),
        )
    } else if a.engine.status.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "initial import in progress\n".to_owned(),
        )
    }
}

/// Pings the store every `every` (each ping bounded by `every`, at least 2 s) and records whether
/// it answers: `/readyz` and the `SyncerService` gRPC health say NOT ready / NOT_SERVING while it
/// does not. The sync loop needs no signal from here: its store calls fail (within the backend's
/// timeout) and it retries with backoff, resuming from the cursor persisted in the store.
pub async fn store_probe(
    engine: Arc<Engine>,
    health: tonic_health::server::HealthReporter,
    every: std::time::Duration,
) {
    use shotgun_cache_proto::v1::syncer_service_server::SyncerServiceServer;
    let limit = every.max(std::time::Duration::from_secs(2));
    loop {
        let error = match tokio::time::timeout(limit, engine.store.ping()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("the store did not answer a ping within {limit:?}")),
        };
        let up = error.is_none();
        if engine.status.set_store_error(error.clone()) {
            if up {
                tracing::info!("store reachable again; syncing resumes");
                health
                    .set_serving::<SyncerServiceServer<crate::grpc::GrpcSyncer>>()
                    .await;
            } else {
                tracing::warn!(
                    error = error.as_deref().unwrap_or(""),
                    "store unreachable; syncing pauses"
                );
                health
                    .set_not_serving::<SyncerServiceServer<crate::grpc::GrpcSyncer>>()
                    .await;
            }
        }
        tokio::time::sleep(every).await;
    }
}

async fn metrics_text(State(a): State<Admin>) -> impl IntoResponse {
    let s = &a.engine.status;
    let counts = a.counts().await;
    let progress = s.progress();
    let lag = s.lag_seconds();
    metrics::with_local_recorder(a.recorder.as_ref(), || {
        if let Some(l) = lag {
            metrics::gauge!("shotgun_cache_syncer_lag_seconds").set(l);
        }
        metrics::gauge!("shotgun_cache_syncer_last_applied_event_id")
            .set(s.last_applied_event_id.load(Ordering::Relaxed) as f64);
        metrics::gauge!("shotgun_cache_syncer_events_per_second").set(s.events_per_second());
        metrics::gauge!("shotgun_cache_syncer_open_gaps")
            .set(s.open_gaps.load(Ordering::Relaxed) as f64);
        metrics::gauge!("shotgun_cache_syncer_expired_gaps_total")
            .set(s.expired_gaps.load(Ordering::Relaxed) as f64);
        metrics::gauge!("shotgun_cache_syncer_events_applied_total")
            .set(s.events_applied.load(Ordering::Relaxed) as f64);
        metrics::gauge!("shotgun_cache_syncer_retries_total").set(a.engine.site.retries() as f64);
        metrics::gauge!("shotgun_cache_syncer_set_aside_events_total")
            .set(s.set_aside.load(Ordering::Relaxed) as f64);
        metrics::gauge!("shotgun_cache_syncer_rereads_total")
            .set(s.rereads.load(Ordering::Relaxed) as f64);
        metrics::gauge!("shotgun_cache_syncer_poll_errors_total")
            .set(s.poll_errors.load(Ordering::Relaxed) as f64);
        metrics::gauge!("shotgun_cache_syncer_reconcile_repairs_total")
            .set(s.reconcile_repairs.load(Ordering::Relaxed) as f64);
        metrics::gauge!("shotgun_cache_syncer_reconcile_rounds_total")
            .set(s.reconcile_rounds.load(Ordering::Relaxed) as f64);
        metrics::gauge!("shotgun_cache_syncer_batches_total")
            .set(s.batches.load(Ordering::Relaxed) as f64);
        metrics::gauge!("shotgun_cache_syncer_late_rereads_total")
            .set(s.late_rereads.load(Ordering::Relaxed) as f64);
        metrics::gauge!("shotgun_cache_syncer_journal_head")
            .set(s.journal_head.load(Ordering::Relaxed) as f64);
        metrics::gauge!("shotgun_cache_syncer_store_up").set(if s.store_error().is_none() {
            1.0
        } else {
            0.0
        });
        metrics::gauge!("shotgun_cache_syncer_ready").set(if s.ready.load(Ordering::Relaxed) {
            1.0
        } else {
            0.0
        });
        for (t, (live, retired)) in &counts {
            metrics::gauge!("shotgun_cache_syncer_entities", "entity_type" => t.clone(), "state" => "live").set(*live as f64);
            metrics::gauge!("shotgun_cache_syncer_entities", "entity_type" => t.clone(), "state" => "retired").set(*retired as f64);
        }
        for (t, p) in &progress {
            metrics::gauge!("shotgun_cache_syncer_import_done", "entity_type" => t.clone())
                .set(p.done as f64);
            metrics::gauge!("shotgun_cache_syncer_import_total", "entity_type" => t.clone())
                .set(p.total as f64);
        }
    });
    (
        [("content-type", "text/plain; version=0.0.4")],
        a.recorder.handle().render(),
    )
}

/// Checks `sha1=<hex>` against HMAC-SHA1(body, secret) in constant time.
pub fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex) = header.trim().strip_prefix("sha1=") else {
        return false;
    };
    let Some(given) = decode_hex(hex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    let want = mac.finalize().into_bytes();
    want.as_slice().ct_eq(&given).into()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

async fn webhook(State(a): State<Admin>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let secret = a
        .engine
        .config
        .syncer
        .webhook_secret
        .expose()
        .as_bytes()
        .to_vec();
    if secret.is_empty() {
        return (
            StatusCode::NOT_FOUND,
            "webhook receiver disabled: set SHOTGUN_CACHE_SYNCER__WEBHOOK_SECRET\n",
        );
    }
    let sig = headers
        .get("x-sg-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !verify_signature(&secret, &body, sig) {
        tracing::warn!("webhook delivery with a bad or missing X-SG-SIGNATURE rejected");
        return (StatusCode::UNAUTHORIZED, "bad signature\n");
    }
    a.engine.poll_now.notify_one();
    (StatusCode::OK, "polling\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_checks() {
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"k").expect("any key length");
        mac.update(b"body");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(verify_signature(b"k", b"body", &format!("sha1={hex}")));
        assert!(!verify_signature(b"k", b"body2", &format!("sha1={hex}")));
        assert!(!verify_signature(b"other", b"body", &format!("sha1={hex}")));
        assert!(!verify_signature(b"k", b"body", &hex));
        assert!(!verify_signature(b"k", b"body", "sha1=zz"));
    }
}
