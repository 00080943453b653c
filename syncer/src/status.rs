//! The syncer's live figures, shared by the follower, the importer, the admin HTTP port
//! (`/metrics`, `/readyz`), the gRPC `Status` call and the `status` command.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

/// Import progress of one type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    pub started: Option<Instant>,
    /// Rows already done when this run of the import started (a resumed import): the rate counts
    /// only the rows of this run.
    pub resumed_from: u64,
    /// A short state, e.g. "importing", "reimporting", "following".
    pub state: String,
}

impl Progress {
    /// Rows per second since the start, and the estimated seconds left.
    pub fn rate_eta(&self) -> (f64, Option<f64>) {
        let Some(start) = self.started else {
            return (0.0, None);
        };
        let secs = start.elapsed().as_secs_f64().max(1e-3);
        let rate = self.done.saturating_sub(self.resumed_from) as f64 / secs;
        let left = self.total.saturating_sub(self.done) as f64;
        (rate, (rate > 0.0).then(|| left / rate))
    }
}

/// Everything the syncer reports.
#[derive(Debug, Default)]
pub struct Status {
    /// The initial import of every configured type is complete.
    pub ready: AtomicBool,
    pub last_applied_event_id: AtomicI64,
    /// `created_at` (unix seconds, site clock) of the newest applied event.
    pub last_event_created_at: AtomicI64,
    /// Unix seconds of the last successful poll (0 before the first).
    pub last_poll_at: AtomicI64,
    pub open_gaps: AtomicU64,
    pub expired_gaps: AtomicU64,
    pub events_applied: AtomicU64,
    pub events_skipped: AtomicU64,
    pub set_aside: AtomicU64,
    pub rereads: AtomicU64,
    /// Follower batches committed (each: entity writes, journal entries and cursor together).
    pub batches: AtomicU64,
    /// Writes that found their row missing at commit and needed a re-read in a second commit
    /// (only possible with a writer outside the syncer).
    pub late_rereads: AtomicU64,
    pub poll_errors: AtomicU64,
    pub commit_errors: AtomicU64,
    pub reconcile_repairs: AtomicU64,
    /// Reconciliation rounds completed.
    pub reconcile_rounds: AtomicU64,
    pub reimports: AtomicU64,
    pub journal_head: AtomicU64,
    /// Site retries are counted by the site client; mirrored here at every poll.
    pub site_retries: AtomicU64,
    pub types: Mutex<BTreeMap<String, Progress>>,
    /// Why the store is unreachable, as the store probe last saw it (`None` while it answers).
    store_error: Mutex<Option<String>>,
    /// (instant, events applied) samples over the last minute, for events/s.
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

impl Status {
    /// Records the outcome of a store probe; returns whether reachability changed.
    pub fn set_store_error(&self, error: Option<String>) -> bool {
        let mut g = self
            .store_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = g.is_some() != error.is_some();
        *g = error;
        changed
    }

    /// Why the store is unreachable (`None` while the last probe succeeded).
    pub fn store_error(&self) -> Option<String> {
        self.store_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set_progress(&self, entity_type: &str, f: impl FnOnce(&mut Progress)) {
        let mut g = self
            .types
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(g.entry(entity_type.to_owned()).or_default());
    }

    pub fn progress(&self) -> BTreeMap<String, Progress> {
        self.types
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Records a sample of the applied-events counter (called after every poll).
    pub fn sample(&self) {
        let now = Instant::now();
        let n = self.events_applied.load(Ordering::Relaxed);
        let mut s = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.push_back((now, n));
        while s.len() > 2
            && s.front()
                .is_some_and(|(t, _)| now.duration_since(*t).as_secs() > 60)
        {
            s.pop_front();
        }
    }

    /// Events applied per second over the last minute.
    pub fn events_per_second(&self) -> f64 {
        let s = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match (s.front(), s.back()) {
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                (n1 - n0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// Seconds between the newest applied event's creation and now (None before the first).
    pub fn lag_seconds(&self) -> Option<f64> {
        let c = self.last_event_created_at.load(Ordering::Relaxed);
        if c == 0 {
            return None;
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        // Lag is measured at the last poll: when caught up, the lag is the time since the newest
        // event was written, which can grow while the site is idle, so report the poll delay then.
        let polled = self.last_poll_at.load(Ordering::Relaxed);
        Some(((now - c).min((now - polled).max(0) + 1)).max(0) as f64)
    }
}
