//! Request-level fault injection for the site's API routes (REST v1 and api3; never the `/_sim` control
//! API): fixed and jittered latency, errors at a rate (429 with `Retry-After`, 500, 502, 503, 504, hung
//! requests, dropped connections), and a queue of forced faults for deterministic tests.
//!
//! A dropped connection is real: the handler signals the connection task (see `server`), which closes
//! the socket without writing a response.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::rest::error::envelope;
use crate::server::ConnKill;

/// One kind of injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// 429 with `Retry-After`.
    TooManyRequests,
    /// 500 `Shotgun Server Error`.
    InternalError,
    /// 502 (an HTML body, as a proxy answers).
    BadGateway,
    /// 503 (down for maintenance or too busy).
    ServiceUnavailable,
    /// 504 (an HTML body).
    GatewayTimeout,
    /// The request never answers (for `hang_secs`).
    Hang,
    /// The connection is closed without a response.
    Drop,
}

impl FaultKind {
    pub const ALL: [FaultKind; 7] = [
        FaultKind::TooManyRequests,
        FaultKind::InternalError,
        FaultKind::BadGateway,
        FaultKind::ServiceUnavailable,
        FaultKind::GatewayTimeout,
        FaultKind::Hang,
        FaultKind::Drop,
    ];
}

/// The fault knobs. All zero (the default) means a well-behaved site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every API request.
    pub latency_ms: u64,
    /// A uniform extra 0..=jitter_ms on top of `latency_ms`.
    pub jitter_ms: u64,
    /// Probability (0..=1) that a request fails with one of `error_kinds`.
    pub error_rate: f64,
    /// The kinds drawn from (uniformly) when a request fails. Empty means all kinds.
    pub error_kinds: Vec<FaultKind>,
    /// The `Retry-After` value (seconds) sent with 429.
    pub retry_after_secs: u64,
    /// How long a hung request stays open before the server gives up on it.
    pub hang_secs: u64,
    /// Faults forced on the next requests, in order, before any random draw.
    pub fail_next: VecDeque<FaultKind>,
    /// Seed of the random draws.
    pub seed: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            jitter_ms: 0,
            error_rate: 0.0,
            error_kinds: Vec::new(),
            retry_after_secs: 1,
            hang_secs: 300,
            fail_next: VecDeque::new(),
            seed: 11,
        }
    }
}

/// Counters of what the injector did, for tests and benchmarks.
#[derive(Debug, Default, Serialize, Deserialize, Clone, PartialEq)]
pub struct FaultStats {
    pub requests: u64,
    pub injected: u64,
}

/// The live fault state shared by the API routes.
#[derive(Debug)]
pub struct FaultInjector {
    inner: Mutex<(Faults, StdRng)>,
    requests: AtomicU64,
    injected: AtomicU64,
}

impl FaultInjector {
    pub fn new(faults: Faults) -> FaultInjector {
        let rng = StdRng::seed_from_u64(faults.seed);
        FaultInjector {
            inner: Mutex::new((faults, rng)),
            requests: AtomicU64::new(0),
            injected: AtomicU64::new(0),
        }
    }

    /// Replaces the knobs (and reseeds).
    pub fn set(&self, faults: Faults) {
        let rng = StdRng::seed_from_u64(faults.seed);
        *self.inner.lock() = (faults, rng);
    }

    pub fn get(&self) -> Faults {
        self.inner.lock().0.clone()
    }

    /// Queues faults for the next requests.
    pub fn fail_next(&self, kinds: &[FaultKind]) {
        self.inner.lock().0.fail_next.extend(kinds.iter().copied());
    }

    pub fn stats(&self) -> FaultStats {
        FaultStats {
            requests: self.requests.load(Ordering::Relaxed),
            injected: self.injected.load(Ordering::Relaxed),
        }
    }

    /// Draws this request's latency and fault.
    fn draw(&self) -> (Duration, Option<FaultKind>, u64, u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut g = self.inner.lock();
        let (f, rng) = &mut *g;
        let jitter = if f.jitter_ms > 0 {
            rng.random_range(0..=f.jitter_ms)
        } else {
            0
        };
        let latency = Duration::from_millis(f.latency_ms + jitter);
        let kind = if let Some(k) = f.fail_next.pop_front() {
            Some(k)
        } else if f.error_rate > 0.0 && rng.random_bool(f.error_rate.clamp(0.0, 1.0)) {
            let kinds: &[FaultKind] = if f.error_kinds.is_empty() {
                &FaultKind::ALL
            } else {
                &f.error_kinds
            };
            Some(kinds[rng.random_range(0..kinds.len())])
        } else {
            None
        };
        if kind.is_some() {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        (latency, kind, f.retry_after_secs, f.hang_secs)
    }
}

fn html(status: StatusCode, text: &str) -> Response {
    let body = format!(
        "<html><head><title>{} {text}</title></head><body><h1>{text}</h1></body></html>",
        status.as_u16()
    );
    (status, [("content-type", "text/html")], body).into_response()
}

/// The middleware applied to the API routes.
pub(crate) async fn inject(
    State(faults): State<Arc<FaultInjector>>,
    req: Request,
    next: Next,
) -> Response {
    let (latency, kind, retry_after, hang) = faults.draw();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match kind {
        None => next.run(req).await,
        Some(FaultKind::TooManyRequests) => {
            let mut r = envelope(
                StatusCode::TOO_MANY_REQUESTS,
                429,
                "Too Many Requests",
                None,
                Some("rate limit exceeded".into()),
            );
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                r.headers_mut().insert("retry-after", v);
            }
            r
        }
        Some(FaultKind::InternalError) => envelope(
            StatusCode::INTERNAL_SERVER_ERROR,
            500,
            "Shotgun Server Error",
            None,
            None,
        ),
        Some(FaultKind::BadGateway) => html(StatusCode::BAD_GATEWAY, "Bad Gateway"),
        Some(FaultKind::ServiceUnavailable) => html(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Temporarily Unavailable",
        ),
        Some(FaultKind::GatewayTimeout) => html(StatusCode::GATEWAY_TIMEOUT, "Gateway Time-out"),
        Some(FaultKind::Hang) => {
            tokio::time::sleep(Duration::from_secs(hang)).await;
            html(StatusCode::GATEWAY_TIMEOUT, "Gateway Time-out")
        }
        Some(FaultKind::Drop) => {
            if let Some(kill) = req.extensions().get::<ConnKill>() {
                kill.0.notify_one();
            }
            // The connection task drops this future together with the socket.
            std::future::pending::<Response>().await
        }
    }
}
