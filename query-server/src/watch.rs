//! Watch: change-journal streams with bounded memory and exactly-once resume.
//!
//! # Design
//! - **One journal reader per process** ([`JournalHub`]) waits on `Store::wait_journal` and appends
//!   new entries to a fixed-size in-memory ring (`Arc<JournalEntry>`, shared by every stream), then
//!   publishes the new head on a `tokio::sync::watch` channel. The ring holds every entry in
//!   `(covered_after, head]`; the oldest are evicted once it is full.
//! - **Each stream has its own position** (`pos`: every entry `<= pos` has been considered: sent or
//!   filtered out). It reads `seq > pos` from the ring when the ring covers it, and from the store
//!   (`journal_after`) when it does not (a resume from far back, or a stream that fell behind the
//!   ring). Nothing is skipped and nothing is repeated, because `pos` only advances past entries
//!   that were handled.
//! - **Bounded buffers**: a stream pushes into a bounded channel (`buffer` items). When the channel
//!   stays full for `lag_timeout`, the subscriber is too slow: its stream is ended with
//!   `RESOURCE_EXHAUSTED` and the trailer `resume-after-seq` (the last position handled), so it can
//!   resume without loss. Memory per stream is therefore at most `buffer` items, each an `Arc` into
//!   the shared ring or a batch read from the store.
//! - **Heartbeats** go out when nothing was sent for the stream's interval; they carry the head and
//!   the stream's position (`resume_after_seq`).
//! - **Shutdown**: streams end with `UNAVAILABLE` and the same trailer, so graceful shutdown does not
//!   wait forever on open streams.
//! - **Filtered streams** evaluate `filter::matches` on the entry's entity snapshot. Deep-link and
//!   link conditions need linked entities: they are fetched from the store into a small per-entry
//!   source first, which applies the shared link rule.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::Stream;
use shotgun_cache_core::filter::{EntitySource, Filter, matches};
use shotgun_cache_core::model::{DateTime, Entity, Value};
use shotgun_cache_core::store::{JournalEntry, Store, StoreError};
use tokio::sync::{mpsc, watch};

use crate::error::QueryError;
use crate::service::{WatchChange, WatchItem, WatchPlan};

/// How a Watch stream is sized.
#[derive(Debug, Clone, Copy)]
pub struct WatchLimits {
    /// Entries kept in the shared ring.
    pub ring_capacity: usize,
    /// Items buffered per stream.
    pub buffer: usize,
    /// How long a stream's buffer may stay full before the subscriber is cut off.
    pub lag_timeout: Duration,
    /// Entries read from the store per batch.
    pub batch: usize,
}

impl Default for WatchLimits {
    fn default() -> Self {
        WatchLimits {
            ring_capacity: 8192,
            buffer: 256,
            lag_timeout: Duration::from_secs(5),
            batch: 512,
        }
    }
}

#[derive(Default)]
struct Ring {
    entries: VecDeque<Arc<JournalEntry>>,
    /// Every entry with `covered_after < seq <= head` is in `entries`.
    covered_after: u64,
    head: u64,
}

struct HubInner {
    store: Arc<dyn Store>,
    // A std `RwLock`: held only to copy `Arc`s in or out, never across an await.
    ring: RwLock<Ring>,
    head_tx: watch::Sender<u64>,
    closing_tx: watch::Sender<bool>,
    limits: WatchLimits,
}

/// The shared journal reader and the Watch stream factory. Cheap to clone.
#[derive(Clone)]
pub struct JournalHub {
    inner: Arc<HubInner>,
}

enum RingRead {
    /// The ring covers `pos`: these are the entries after it (maybe none yet).
    Covered(Vec<Arc<JournalEntry>>),
    /// The ring starts after `pos`: read from the store.
    NotCovered,
}

/// The gRPC-facing stream of a Watch.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchItem, QueryError>> + Send>>;

impl JournalHub {
    /// A hub with an empty ring. Until [`JournalHub::run_reader`] has read the journal head, the ring
    /// covers nothing and streams read from the store.
    pub fn new(store: Arc<dyn Store>, limits: WatchLimits) -> JournalHub {
        let (head_tx, _) = watch::channel(0);
        let (closing_tx, _) = watch::channel(false);
        let ring = Ring {
            entries: VecDeque::new(),
            covered_after: u64::MAX,
            head: 0,
        };
        JournalHub {
            inner: Arc::new(HubInner {
                store,
                ring: RwLock::new(ring),
                head_tx,
                closing_tx,
                limits,
            }),
        }
    }

    /// Ends every open stream (with `UNAVAILABLE` and a resume position) and stops the reader.
    pub fn close(&self) {
        self.inner.closing_tx.send_replace(true);
    }

    /// The head the hub has read up to.
    pub fn head(&self) -> u64 {
        *self.inner.head_tx.borrow()
    }

    /// Follows the journal until [`JournalHub::close`]: waits for new entries and appends them to the ring.
    pub async fn run_reader(self) {
        let inner = &self.inner;
        let mut closing = inner.closing_tx.subscribe();
        // Start the ring at the current head; entries before it are read from the store on demand.
        let mut head = loop {
            match inner.store.journal_head().await {
                Ok(h) => break h,
                Err(e) => {
                    tracing::warn!(error = %e, "failed to read the journal head; retrying");
                    tokio::select! {
                        _ = closing.changed() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        };
        {
            let mut ring = match inner.ring.write() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            ring.covered_after = head;
            ring.head = head;
        }
        inner.head_tx.send_replace(head);
        loop {
            if *closing.borrow() {
                return;
            }
            let waited = tokio::select! {
                _ = closing.changed() => return,
                r = inner.store.wait_journal(head, Duration::from_secs(1)) => r,
            };
            match waited {
                Ok(new_head) if new_head > head => match self.read_into_ring(head).await {
                    Ok(h) => head = h,
                    Err(e) => {
                        tracing::warn!(error = %e, "failed to read the change journal; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "failed to wait on the change journal; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    async fn read_into_ring(&self, mut head: u64) -> Result<u64, StoreError> {
        let inner = &self.inner;
        loop {
            let batch = inner.store.journal_after(head, inner.limits.batch).await?;
            let n = batch.len();
            if let Some(last) = batch.last() {
                head = last.seq;
                let mut ring = match inner.ring.write() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                for e in batch {
                    ring.entries.push_back(Arc::new(e));
                }
                while ring.entries.len() > inner.limits.ring_capacity {
                    if let Some(old) = ring.entries.pop_front() {
                        ring.covered_after = old.seq;
                    }
                }
                ring.head = head;
            }
            if n < inner.limits.batch {
                break;
            }
        }
        inner.head_tx.send_replace(head);
        Ok(head)
    }

    fn read_ring(&self, pos: u64, max: usize) -> RingRead {
        let ring = match self.inner.ring.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if pos < ring.covered_after {
            return RingRead::NotCovered;
        }
        let start = ring.entries.partition_point(|e| e.seq <= pos);
        RingRead::Covered(ring.entries.iter().skip(start).take(max).cloned().collect())
    }

    /// Starts a stream for a validated plan.
    pub fn subscribe(&self, plan: WatchPlan) -> WatchStream {
        let (tx, rx) = mpsc::channel(self.inner.limits.buffer.max(1));
        let terminal: Arc<Mutex<Option<QueryError>>> = Arc::new(Mutex::new(None));
        let producer = Producer {
            hub: self.clone(),
            plan,
            tx,
            terminal: terminal.clone(),
        };
        tokio::spawn(producer.run());
        let out = futures::stream::unfold(
            (rx, terminal, false),
            |(mut rx, terminal, done)| async move {
                if done {
                    return None;
                }
                match rx.recv().await {
                    Some(item) => Some((Ok(item), (rx, terminal, false))),
                    None => {
                        let err = match terminal.lock() {
                            Ok(mut g) => g.take(),
                            Err(p) => p.into_inner().take(),
                        };
                        err.map(|e| (Err(e), (rx, terminal, true)))
                    }
                }
            },
        );
        Box::pin(out)
    }
}

/// Decrements the active-streams gauge when a stream's producer ends, however it ends.
struct ActiveGuard;

impl ActiveGuard {
    fn new() -> ActiveGuard {
        metrics::gauge!("watch_active_streams").increment(1.0);
        ActiveGuard
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        metrics::gauge!("watch_active_streams").decrement(1.0);
    }
}

/// Why a producer stopped sending.
enum Stop {
    /// The subscriber went away (the receiver was dropped).
    Gone,
    /// End the stream with this error after what was already buffered.
    Fail(QueryError),
}

struct Producer {
    hub: JournalHub,
    plan: WatchPlan,
    tx: mpsc::Sender<WatchItem>,
    terminal: Arc<Mutex<Option<QueryError>>>,
}

impl Producer {
    async fn run(self) {
        let _guard = ActiveGuard::new();
        let mut pos = self.plan.after;
        if let Stop::Fail(e) = self.follow(&mut pos).await {
            match self.terminal.lock() {
                Ok(mut g) => *g = Some(e),
                Err(p) => *p.into_inner() = Some(e),
            }
        }
        // Dropping `self.tx` here ends the receiver side, which then yields the terminal error.
    }

    async fn follow(&self, pos: &mut u64) -> Stop {
        let inner = &self.hub.inner;
        let mut head_rx = inner.head_tx.subscribe();
        let mut closing = inner.closing_tx.subscribe();
        let mut last_sent = tokio::time::Instant::now();
        loop {
            if *closing.borrow() {
                return Stop::Fail(QueryError::WatchInterrupted { resume_after: *pos });
            }
            // Mark the current head as seen *before* reading, so a head published after the read
            // wakes the wait below.
            head_rx.borrow_and_update();
            let batch = match self.hub.read_ring(*pos, inner.limits.batch) {
                RingRead::Covered(b) => b,
                RingRead::NotCovered => match self.read_store(*pos).await {
                    Ok(b) => b,
                    Err(e) => return Stop::Fail(e),
                },
            };
            if batch.is_empty() {
                // Nothing after `pos` yet: wait for a new head, a heartbeat deadline or shutdown.
                let hb_at = last_sent + self.plan.heartbeat;
                tokio::select! {
                    _ = closing.changed() => {}
                    r = head_rx.changed() => {
                        if r.is_err() {
                            return Stop::Fail(QueryError::WatchInterrupted { resume_after: *pos });
                        }
                    }
                    _ = tokio::time::sleep_until(hb_at) => {
                        if let Err(stop) = self.send(self.heartbeat(*pos), *pos).await {
                            return stop;
                        }
                        last_sent = tokio::time::Instant::now();
                    }
                }
                continue;
            }
            for entry in batch {
                let seq = entry.seq;
                match self.wanted(&entry).await {
                    Ok(true) => {
                        let item = WatchItem::Change(WatchChange {
                            entry,
                            fields: self.plan.fields.clone(),
                        });
                        if let Err(stop) = self.send(item, *pos).await {
                            return stop;
                        }
                        last_sent = tokio::time::Instant::now();
                    }
                    Ok(false) => {}
                    Err(e) => return Stop::Fail(e),
                }
                *pos = seq;
            }
            if last_sent.elapsed() >= self.plan.heartbeat {
                if let Err(stop) = self.send(self.heartbeat(*pos), *pos).await {
                    return stop;
                }
                last_sent = tokio::time::Instant::now();
            }
        }
    }

    fn heartbeat(&self, pos: u64) -> WatchItem {
        WatchItem::Heartbeat {
            head_seq: self.hub.head().max(pos),
            resume_after_seq: pos,
            at: DateTime::now(),
        }
    }

    /// Reads `seq > pos` from the store, failing when entries after `pos` were trimmed.
    async fn read_store(&self, pos: u64) -> Result<Vec<Arc<JournalEntry>>, QueryError> {
        let store = &self.hub.inner.store;
        if pos > 0
            && let Some(tail) = store.journal_tail().await?
            && tail > pos + 1
        {
            return Err(QueryError::OutOfRange(format!(
                "journal entries after seq {pos} were trimmed while this stream was behind (the oldest \
                 retained entry is {tail}): re-read the data and watch from now"
            )));
        }
        let entries = store
            .journal_after(pos, self.hub.inner.limits.batch)
            .await?;
        Ok(entries.into_iter().map(Arc::new).collect())
    }

    /// Sends one item, waiting at most `lag_timeout` for room. `pos` is the position handled so far.
    async fn send(&self, item: WatchItem, pos: u64) -> Result<(), Stop> {
        match self.tx.try_send(item) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Stop::Gone),
            Err(mpsc::error::TrySendError::Full(item)) => {
                match tokio::time::timeout(self.hub.inner.limits.lag_timeout, self.tx.send(item))
                    .await
                {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(Stop::Gone),
                    Err(_) => {
                        metrics::counter!("watch_lagged_streams_total").increment(1);
                        Err(Stop::Fail(QueryError::WatchLagged { resume_after: pos }))
                    }
                }
            }
        }
    }

    /// Whether an entry goes to this stream (type and filter).
    async fn wanted(&self, entry: &JournalEntry) -> Result<bool, QueryError> {
        if !self.plan.entity_types.is_empty()
            && !self.plan.entity_types.contains(&entry.entity_type)
        {
            return Ok(false);
        }
        let Some(filter) = &self.plan.filter else {
            return Ok(true);
        };
        let Some(entity) = &entry.entity else {
            // Remove and Reload carry no state to evaluate: always delivered (documented in the proto).
            return Ok(true);
        };
        let src = LinkedSource::load(
            self.hub.inner.store.as_ref(),
            &self.plan.cached_types,
            filter,
            entity,
        )
        .await?;
        Ok(matches(filter, entity, &src, DateTime::now()))
    }
}

/// The linked entities one filter evaluation can reach, prefetched from the store.
struct LinkedSource {
    entities: HashMap<(String, i64), Entity>,
    /// The cached types of the catalog (for the link rule).
    cached_types: Arc<BTreeSet<String>>,
}

impl LinkedSource {
    async fn load(
        store: &dyn Store,
        cached_types: &Arc<BTreeSet<String>>,
        filter: &Filter,
        root: &Entity,
    ) -> Result<LinkedSource, QueryError> {
        let mut src = LinkedSource {
            entities: HashMap::new(),
            cached_types: cached_types.clone(),
        };
        let mut conditions = Vec::new();
        collect_conditions(filter, &mut conditions);
        for c in conditions {
            let path = &c.path;
            if !path.is_deep() && !path.leaf_type.is_link() {
                continue;
            }
            // Walk the hops, fetching each level's targets; then fetch the leaf's link targets too
            // (for live names and the retired-target rule).
            let mut level: Vec<Entity> = vec![root.clone()];
            for hop in &path.hops {
                let mut next = Vec::new();
                for e in &level {
                    for r in links_of(e.get(&hop.field)) {
                        if r.entity_type != hop.target_type {
                            continue;
                        }
                        if let Some(t) = src.fetch(store, &r.entity_type, r.id).await? {
                            next.push(t);
                        }
                    }
                }
                level = next;
            }
            if path.leaf_type.is_link() {
                for e in &level {
                    for r in links_of(e.get(&path.leaf)) {
                        src.fetch(store, &r.entity_type, r.id).await?;
                    }
                }
            }
        }
        Ok(src)
    }

    async fn fetch(
        &mut self,
        store: &dyn Store,
        entity_type: &str,
        id: i64,
    ) -> Result<Option<Entity>, QueryError> {
        let key = (entity_type.to_owned(), id);
        if let Some(e) = self.entities.get(&key) {
            return Ok(Some(e.clone()));
        }
        let got = store.get(entity_type, id).await?;
        if let Some(e) = &got {
            self.entities.insert(key, e.clone());
        }
        Ok(got)
    }
}

impl EntitySource for LinkedSource {
    fn entity(&self, entity_type: &str, id: i64) -> Option<&Entity> {
        self.entities.get(&(entity_type.to_owned(), id))
    }

    fn is_cached_type(&self, entity_type: &str) -> bool {
        self.cached_types.contains(entity_type)
    }
}

fn links_of(v: &Value) -> Vec<shotgun_cache_core::model::EntityRef> {
    match v {
        Value::Entity(r) => vec![r.clone()],
        Value::MultiEntity(list) => list.clone(),
        _ => Vec::new(),
    }
}

fn collect_conditions<'a>(f: &'a Filter, out: &mut Vec<&'a shotgun_cache_core::filter::Condition>) {
    match f {
        Filter::Condition(c) => out.push(c),
        Filter::Group { children, .. } => children.iter().for_each(|c| collect_conditions(c, out)),
    }
}
