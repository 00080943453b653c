//! The sync engine: start-up decisions, imports (first import into live, re-import into staging),
//! the event follower, re-reads, reconciliation and journal retention.
//!
//! # Crash safety
//! Every poll commits its entity writes, their journal entries and the new cursor in one
//! [`WriteBatch`]. Entities that must be re-read (a `_New`, an unknown entity) are re-read *before*
//! the commit, so the batch is complete. Should a commit still report `Missing` (an entity that
//! vanished between the check and the commit), the follower re-reads it and commits a second batch
//! with the cursor; the first batch then carries the old cursor, so a crash in between replays the
//! events, which the per-field version guards turn into no-ops (no journal duplicates).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shotgun_cache_core::config::Config;
use shotgun_cache_core::model::{DateTime, SiteSchema};
use shotgun_cache_core::store::{
    EntityWrite, Store, StoreError, TypeLayout, TypePhase, TypeState, WriteBatch, WriteOutcome,
};
use tokio::sync::{Mutex, Notify, RwLock};

use crate::apply::{Action, translate};
use crate::cursor::{Cursor, Seen};
use crate::plan::{self, TypePlan};
use crate::site::{ReturnOnly, Site, SiteError};
use crate::status::Status;

/// How far below the newest event id a fresh cursor starts (protocol §5.7: catch transactions
/// that reserved ids before the import started but committed after).
pub const START_WINDOW: i64 = 1000;

/// Errors of the engine (site, store, or plan).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Site(#[from] SiteError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    #[error("{0}")]
    Other(String),
}

/// Which ids of each cached type the store holds (a bit per id), so the follower knows without a
/// store read whether a patch will find its row.
#[derive(Debug, Default)]
pub struct KnownIds {
    bits: HashMap<String, Vec<u64>>,
}

impl KnownIds {
    pub fn contains(&self, t: &str, id: i64) -> bool {
        let Ok(i) = usize::try_from(id) else {
            return false;
        };
        self.bits
            .get(t)
            .and_then(|b| b.get(i / 64))
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn set(&mut self, t: &str, id: i64, on: bool) {
        let Ok(i) = usize::try_from(id) else { return };
        let b = self.bits.entry(t.to_owned()).or_default();
        if b.len() <= i / 64 {
            if !on {
                return;
            }
            b.resize(i / 64 + 1, 0);
        }
        if on {
            b[i / 64] |= 1 << (i % 64);
        } else {
            b[i / 64] &= !(1 << (i % 64));
        }
    }

    pub fn clear_type(&mut self, t: &str) {
        self.bits.remove(t);
    }
}

/// The sync engine. Shared by the follower task, the gRPC service and the admin port.
pub struct Engine {
    pub config: Config,
    pub site: Site,
    pub store: Arc<dyn Store>,
    pub status: Arc<Status>,
    /// Shared snapshots: readers clone the `Arc`, never the schema.
    pub schema: RwLock<Arc<SiteSchema>>,
    pub plans: RwLock<Arc<BTreeMap<String, TypePlan>>>,
    /// Types being re-imported into staging: the follower mirrors their writes there.
    /// Held for reading around each follower commit, for writing around `promote_staging`.
    pub staging: RwLock<BTreeSet<String>>,
    pub known: Mutex<KnownIds>,
    /// The follower's cursor (a copy for readers; the follower owns the truth).
    pub cursor: Mutex<Cursor>,
    /// Wakes the follower for an immediate poll (webhook).
    pub poll_now: Notify,
    /// Serialises imports of one type.
    importing: Mutex<BTreeSet<String>>,
    /// Types whose plan changed (schema change) and that the follow loop re-imports.
    pending_reimports: Mutex<Vec<String>>,
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn type_state(
    plan: &TypePlan,
    phase: TypePhase,
    done: u64,
    total: u64,
    ready_at: Option<DateTime>,
) -> TypeState {
    TypeState {
        entity_type: plan.entity_type.clone(),
        phase,
        done,
        total,
        config_hash: plan.config_hash.clone(),
        ready_at,
    }
}

impl Engine {
    pub fn new(config: Config, site: Site, store: Arc<dyn Store>, status: Arc<Status>) -> Engine {
        Engine {
            config,
            site,
            store,
            status,
            schema: RwLock::new(Arc::new(SiteSchema::default())),
            plans: RwLock::new(Arc::new(BTreeMap::new())),
            staging: RwLock::new(BTreeSet::new()),
            known: Mutex::new(KnownIds::default()),
            cursor: Mutex::new(Cursor::default()),
            poll_now: Notify::new(),
            importing: Mutex::new(BTreeSet::new()),
            pending_reimports: Mutex::new(Vec::new()),
        }
    }

    fn page_size(&self) -> u32 {
        self.config.syncer.page_size
    }

    /// Reads the schema (retrying until the site answers or `attempts` run out).
    pub async fn load_schema(&self) -> Result<SiteSchema, EngineError> {
        let schema = self.site.schema().await?;
        *self.schema.write().await = Arc::new(schema.clone());
        Ok(schema)
    }

    /// Start-up: schema, plans, store layouts, cursor, archived-log check. Returns the types that
    /// need a first import (blocking) and those to re-import into staging (background).
    pub async fn prepare(&self) -> Result<(Vec<String>, Vec<String>), EngineError> {
        let schema = self.load_schema().await?;
        let plans = plan::resolve(&self.config, &schema)?;
        let stored_layouts: BTreeMap<String, TypeLayout> = self
            .store
            .layouts()
            .await?
            .into_iter()
            .map(|l| (l.entity_type.clone(), l))
            .collect();
        let states: BTreeMap<String, TypeState> = self
            .store
            .type_states()
            .await?
            .into_iter()
            .map(|s| (s.entity_type.clone(), s))
            .collect();
        let mut first = Vec::new();
        let mut re = Vec::new();
        let mut layouts = Vec::new();
        for (t, p) in &plans {
            match (states.get(t), stored_layouts.get(t)) {
                (Some(s), Some(l)) if s.phase != TypePhase::Importing => {
                    layouts.push(l.clone());
                    if s.config_hash != p.config_hash || s.phase == TypePhase::Reimporting {
                        re.push(t.clone());
                    }
                }
                _ => {
                    layouts.push(p.layout.clone());
                    first.push(t.clone());
                }
            }
        }
        self.store.prepare(&schema, &layouts).await?;
        *self.plans.write().await = Arc::new(plans);

        let cursor = match self
            .store
            .get_state("cursor")
            .await?
            .as_ref()
            .and_then(Cursor::from_json)
        {
            Some(c) => {
                let oldest = self.site.oldest_event_id().await?;
                if oldest > c.head + 1 {
                    tracing::warn!(
                        cursor_head = c.head,
                        oldest_readable = oldest,
                        "the event log was archived past the cursor; re-importing every cached type"
                    );
                    for t in plans_keys(&*self.plans.read().await) {
                        if !first.contains(&t) && !re.contains(&t) {
                            re.push(t);
                        }
                    }
                    self.fresh_cursor().await?
                } else {
                    c
                }
            }
            None => self.fresh_cursor().await?,
        };
        // Entities left dirty by a crash are re-read by the first poll.
        *self.cursor.lock().await = cursor;
        self.reload_known(None).await?;
        Ok((first, re))
    }

    /// Records the event-log position before any import: the newest id minus a window, and commits it.
    async fn fresh_cursor(&self) -> Result<Cursor, EngineError> {
        let newest = self.site.newest_event_id().await?;
        let oldest = self.site.oldest_event_id().await?;
        let start = (newest - START_WINDOW).max(oldest.saturating_sub(1)).max(0);
        let c = Cursor::starting_at(start);
        let mut batch = WriteBatch::default();
        batch.state.insert("cursor".into(), c.to_json());
        self.store.commit(batch).await?;
        tracing::info!(
            newest_event_id = newest,
            start,
            "recorded the event-log position before importing"
        );
        Ok(c)
    }

    /// Rebuilds the known-id bits of one type (or all) from the store.
    async fn reload_known(&self, only: Option<&str>) -> Result<(), EngineError> {
        let types: Vec<String> = match only {
            Some(t) => vec![t.to_owned()],
            None => plans_keys(&*self.plans.read().await),
        };
        for t in types {
            let mut bits = KnownIds::default();
            let mut after = 0;
            loop {
                let ids = match self.store.ids(&t, after, 10_000).await {
                    Ok(ids) => ids,
                    Err(StoreError::Invalid(_)) => break,
                    Err(e) => return Err(e.into()),
                };
                let n = ids.len();
                for (id, _) in &ids {
                    bits.set(&t, *id, true);
                    after = after.max(*id);
                }
                if n < 10_000 {
                    break;
                }
            }
            let mut known = self.known.lock().await;
            known.clear_type(&t);
            if let Some(b) = bits.bits.remove(&t) {
                known.bits.insert(t, b);
            }
        }
        Ok(())
    }

    /// Imports one type: into live (first import: the type is not served until done) or into
    /// staging (re-import: the live copy stays served and is swapped at the end).
    pub async fn import_type(
        self: &Arc<Self>,
        entity_type: &str,
        staging: bool,
    ) -> Result<u64, EngineError> {
        {
            let mut g = self.importing.lock().await;
            if !g.insert(entity_type.to_owned()) {
                return Err(EngineError::Other(format!(
                    "{entity_type} is already being imported"
                )));
            }
        }
        let r = self.import_inner(entity_type, staging).await;
        self.importing.lock().await.remove(entity_type);
        if r.is_err() && staging {
            self.staging.write().await.remove(entity_type);
        }
        r
    }

    pub async fn is_importing(&self, entity_type: &str) -> bool {
        self.importing.lock().await.contains(entity_type)
    }

    async fn import_inner(
        self: &Arc<Self>,
        entity_type: &str,
        staging: bool,
    ) -> Result<u64, EngineError> {
        let plan = self
            .plans
            .read()
            .await
            .get(entity_type)
            .cloned()
            .ok_or_else(|| EngineError::Other(format!("{entity_type} is not a cached type")))?;
        let started_at = now_ms();
        let phase = if staging {
            TypePhase::Reimporting
        } else {
            TypePhase::Importing
        };
        let filt = plan.site_filter.clone();
        let total_active = self
            .site
            .count(entity_type, filt.as_ref(), ReturnOnly::Active)
            .await;
        let total_retired = self
            .site
            .count(entity_type, filt.as_ref(), ReturnOnly::Retired)
            .await;
        let max_active = self
            .site
            .max_id(entity_type, filt.as_ref(), ReturnOnly::Active)
            .await?;
        let max_retired = self
            .site
            .max_id(entity_type, filt.as_ref(), ReturnOnly::Retired)
            .await?;
        let total = match (total_active, total_retired) {
            (Some(a), Some(r)) => a + r,
            _ => u64::try_from(max_active.max(0) + max_retired.max(0)).unwrap_or(0),
        };
        if staging {
            self.store.begin_staging(&plan.layout).await?;
            self.staging.write().await.insert(entity_type.to_owned());
            self.status.reimports.fetch_add(1, Ordering::Relaxed);
        }
        let prev_ready = self
            .store
            .type_states()
            .await?
            .into_iter()
            .find(|s| s.entity_type == entity_type)
            .and_then(|s| s.ready_at);
        let mut st = type_state(&plan, phase, 0, total, prev_ready);
        if staging {
            // The live copy keeps its old hash until the swap.
            if let Some(old) = self
                .store
                .type_states()
                .await?
                .into_iter()
                .find(|s| s.entity_type == entity_type)
            {
                st.config_hash = old.config_hash;
            }
        }
        self.store
            .commit(WriteBatch {
                type_states: vec![st.clone()],
                ..WriteBatch::default()
            })
            .await?;
        self.status.set_progress(entity_type, |p| {
            p.done = 0;
            p.total = total;
            p.started = Some(Instant::now());
            p.state = if staging {
                "reimporting".into()
            } else {
                "importing".into()
            };
        });
        tracing::info!(entity_type, total, staging, "import started");

        let floor = self.cursor.lock().await.low_water;
        let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let conc = i64::from(self.config.syncer.import_concurrency.max(1));
        let mut tasks = tokio::task::JoinSet::new();
        for (ro, max) in [
            (ReturnOnly::Active, max_active),
            (ReturnOnly::Retired, max_retired),
        ] {
            if max <= 0 {
                continue;
            }
            let chunk = (max + conc - 1) / conc;
            for k in 0..conc {
                let lo = k * chunk;
                let hi = if k == conc - 1 {
                    max
                } else {
                    ((k + 1) * chunk).min(max)
                };
                if lo >= hi {
                    continue;
                }
                let me = Arc::clone(self);
                let plan = plan.clone();
                let done = Arc::clone(&done);
                let st = st.clone();
                tasks.spawn(async move {
                    me.import_range(&plan, ro, lo, hi, floor, staging, done, st)
                        .await
                });
            }
        }
        let mut first_err = None;
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                    tasks.abort_all();
                }
                Err(e) if e.is_cancelled() => {}
                Err(e) => {
                    first_err.get_or_insert(EngineError::Other(format!("import task failed: {e}")));
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        let n = done.load(Ordering::Relaxed);
        let ready = type_state(
            &plan,
            TypePhase::Ready,
            n,
            n.max(total),
            Some(DateTime::now()),
        );
        if staging {
            let mut guard = self.staging.write().await;
            self.store.promote_staging(ready).await?;
            guard.remove(entity_type);
            drop(guard);
            self.reload_known(Some(entity_type)).await?;
            // Writes that raced the pages of the re-import are repaired by a scan from its start.
            let since = (started_at / 1000) - 60;
            if let Err(e) = self.scan_type(&plan, since).await {
                tracing::warn!(entity_type, error = %e, "post-reimport scan failed; the next reconciliation repeats it");
            }
        } else {
            self.store
                .commit(WriteBatch {
                    type_states: vec![ready],
                    ..WriteBatch::default()
                })
                .await?;
            self.reload_known(Some(entity_type)).await?;
        }
        self.status.set_progress(entity_type, |p| {
            p.done = n;
            p.total = n.max(total);
            p.state = "following".into();
        });
        tracing::info!(entity_type, rows = n, staging, "import done");
        Ok(n)
    }

    #[allow(clippy::too_many_arguments)]
    async fn import_range(
        &self,
        plan: &TypePlan,
        ro: ReturnOnly,
        lo: i64,
        hi: i64,
        floor: i64,
        staging: bool,
        done: Arc<std::sync::atomic::AtomicU64>,
        st: TypeState,
    ) -> Result<(), EngineError> {
        let mut after = lo;
        loop {
            let schema = self.schema.read().await.clone();
            let page = self
                .site
                .page(
                    &schema,
                    &plan.entity_type,
                    &plan.fields,
                    plan.site_filter.as_ref(),
                    after,
                    Some(hi),
                    self.page_size(),
                    ro,
                )
                .await?;
            let n = page.len();
            if n == 0 {
                return Ok(());
            }
            after = page.iter().map(|e| e.id).max().unwrap_or(after);
            let writes: Vec<EntityWrite> = page
                .into_iter()
                .map(|entity| EntityWrite::Upsert {
                    entity,
                    floor,
                    event_id: 0,
                })
                .collect();
            let d = done.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
            let mut state = st.clone();
            state.done = d;
            state.total = state.total.max(d);
            let batch = if staging {
                WriteBatch {
                    staging: writes,
                    journal: false,
                    type_states: vec![state],
                    ..WriteBatch::default()
                }
            } else {
                WriteBatch {
                    writes,
                    journal: false,
                    type_states: vec![state],
                    ..WriteBatch::default()
                }
            };
            self.commit_retrying(batch).await?;
            self.status.set_progress(&plan.entity_type, |p| {
                p.done = d;
                p.total = p.total.max(d);
            });
            if n < self.page_size() as usize || after >= hi {
                return Ok(());
            }
        }
    }

    /// Commits with a few retries on transient store errors.
    async fn commit_retrying(
        &self,
        batch: WriteBatch,
    ) -> Result<shotgun_cache_core::store::CommitResult, EngineError> {
        let mut attempt = 0;
        loop {
            match self.store.commit(batch.clone()).await {
                Ok(r) => return Ok(r),
                Err(e @ (StoreError::Unavailable(_) | StoreError::Timeout(_))) if attempt < 5 => {
                    attempt += 1;
                    self.status.commit_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, attempt, "store commit failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Re-reads entities of one type and turns them into writes: an `Upsert` per entity the site
    /// returns (within the cache filter), a `Remove` for each asked id it does not.
    async fn reread_writes(
        &self,
        plan: &TypePlan,
        ids: &BTreeMap<i64, i64>,
        floor: i64,
    ) -> Result<Vec<EntityWrite>, EngineError> {
        let schema = self.schema.read().await.clone();
        let id_list: Vec<i64> = ids.keys().copied().collect();
        let found = self
            .site
            .read_ids(
                &schema,
                &plan.entity_type,
                &plan.fields,
                plan.site_filter.as_ref(),
                &id_list,
            )
            .await?;
        self.status
            .rereads
            .fetch_add(id_list.len() as u64, Ordering::Relaxed);
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for entity in found {
            if !seen.insert(entity.id) {
                continue;
            }
            let event_id = ids.get(&entity.id).copied().unwrap_or(0);
            out.push(EntityWrite::Upsert {
                entity,
                floor,
                event_id,
            });
        }
        for (id, event_id) in ids {
            if !seen.contains(id) {
                out.push(EntityWrite::Remove {
                    entity_type: plan.entity_type.clone(),
                    id: *id,
                    event_id: *event_id,
                });
            }
        }
        Ok(out)
    }

    /// The `Refresh` call: re-reads entities now and commits them. Returns (upserted, removed).
    pub async fn refresh(&self, entity_type: &str, ids: &[i64]) -> Result<(u32, u32), EngineError> {
        let plan = self
            .plans
            .read()
            .await
            .get(entity_type)
            .cloned()
            .ok_or_else(|| EngineError::Other(format!("{entity_type} is not a cached type")))?;
        let floor = self.cursor.lock().await.low_water;
        let ids: BTreeMap<i64, i64> = ids.iter().map(|i| (*i, 0)).collect();
        let writes = self.reread_writes(&plan, &ids, floor).await?;
        let (mut up, mut rm) = (0, 0);
        for w in &writes {
            match w {
                EntityWrite::Remove { .. } => rm += 1,
                _ => up += 1,
            }
        }
        self.commit_live(writes).await?;
        Ok((up, rm))
    }

    /// Commits writes to live (journaled), mirrored to staging for types being re-imported, and
    /// updates the known-id bits.
    async fn commit_live(
        &self,
        writes: Vec<EntityWrite>,
    ) -> Result<Vec<WriteOutcome>, EngineError> {
        let guard = self.staging.read().await;
        let mirror: Vec<EntityWrite> = writes
            .iter()
            .filter(|w| guard.contains(write_target(w).0))
            .cloned()
            .collect();
        let batch = WriteBatch {
            writes: writes.clone(),
            staging: mirror,
            journal: true,
            ..WriteBatch::default()
        };
        let r = self.commit_retrying(batch).await?;
        drop(guard);
        self.note_outcomes(&writes, &r.outcomes).await;
        self.status.journal_head.store(
            r.journal
                .last()
                .map(|j| j.seq)
                .unwrap_or(self.status.journal_head.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        Ok(r.outcomes)
    }

    async fn note_outcomes(&self, writes: &[EntityWrite], outcomes: &[WriteOutcome]) {
        let mut known = self.known.lock().await;
        for (w, o) in writes.iter().zip(outcomes) {
            match (w, o) {
                (EntityWrite::Upsert { entity, .. }, _) => {
                    known.set(&entity.entity_type, entity.id, true)
                }
                (
                    EntityWrite::Remove {
                        entity_type, id, ..
                    },
                    WriteOutcome::Applied { .. },
                ) => known.set(entity_type, *id, false),
                (
                    EntityWrite::Patch {
                        entity_type, id, ..
                    }
                    | EntityWrite::Retire {
                        entity_type, id, ..
                    }
                    | EntityWrite::Revive {
                        entity_type, id, ..
                    },
                    WriteOutcome::Missing,
                ) => known.set(entity_type, *id, false),
                _ => {}
            }
        }
    }

    /// One poll of the event log: read new events and the open gaps, apply them, commit with the
    /// cursor. Returns how many events were read (a full page means "poll again at once").
    pub async fn poll_once(&self, query_gaps: bool) -> Result<usize, EngineError> {
        let mut cursor = self.cursor.lock().await.clone();
        let page = self.page_size();
        let mut events = self.site.events_after(cursor.head, page).await?;
        let mut n_new = events.len();
        let timeout_ms = (self.config.syncer.gap_timeout_secs * 1000) as i64;
        let query_gaps = query_gaps || cursor.expiring(now_ms(), timeout_ms);
        if query_gaps && !cursor.gaps.is_empty() {
            let gaps = cursor.gap_ids(500);
            events.extend(self.site.events_in(&gaps).await?);
        }
        // Catching up: while pages come back full, the next page is fetched while this one is
        // applied (at most a few pages per call, so reconciliation and trimming get their turn).
        for round in 0..16 {
            events.sort_by_key(|e| e.id);
            events.dedup_by_key(|e| e.id);
            let full = n_new >= page as usize;
            let next_after = events
                .iter()
                .map(|e| e.id)
                .max()
                .unwrap_or(cursor.head)
                .max(cursor.head);
            let prefetch = (full && round < 15).then(|| {
                let site = self.site.clone();
                tokio::spawn(async move { site.events_after(next_after, page).await })
            });
            self.apply_events(cursor, events).await?;
            let Some(next) = prefetch else { break };
            events = next
                .await
                .map_err(|e| EngineError::Other(format!("event prefetch task failed: {e}")))??;
            n_new = events.len();
            cursor = self.cursor.lock().await.clone();
        }
        Ok(n_new)
    }

    /// The fallback when a batch keeps failing in the store: the next events are applied one per
    /// commit, and an event whose commit fails is set aside (recorded in `state["set_aside"]`,
    /// counted) and passed, so one poison event cannot stop the follower.
    pub async fn poll_isolated(&self) -> Result<usize, EngineError> {
        let mut cursor = self.cursor.lock().await.clone();
        if !cursor.dirty.is_empty() {
            tracing::error!(entities = ?cursor.dirty, "re-reads that keep failing are set aside");
            self.status
                .set_aside
                .fetch_add(cursor.dirty.len() as u64, Ordering::Relaxed);
            cursor.dirty.clear();
        }
        let events = self
            .site
            .events_after(cursor.head, self.page_size().min(50))
            .await?;
        let n = events.len();
        for ev in events {
            match self.apply_events(cursor.clone(), vec![ev.clone()]).await {
                Ok(()) => cursor = self.cursor.lock().await.clone(),
                Err(EngineError::Store(e)) => {
                    self.status.set_aside.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(event_id = ev.id, event_type = %ev.event_type, error = %e, "event set aside: the store refuses it");
                    cursor.observe(ev.id, ev.created_at, now_ms());
                    cursor.advance(
                        now_ms(),
                        (self.config.syncer.gap_timeout_secs * 1000) as i64,
                    );
                    let mut aside = self
                        .store
                        .get_state("set_aside")
                        .await?
                        .and_then(|v| v.as_array().cloned())
                        .unwrap_or_default();
                    aside.push(serde_json::json!({"event_id": ev.id, "event_type": ev.event_type, "error": e.to_string()}));
                    let keep = aside.len().saturating_sub(1000);
                    let mut b = WriteBatch::default();
                    b.state.insert(
                        "set_aside".into(),
                        serde_json::Value::Array(aside.split_off(keep)),
                    );
                    b.state.insert("cursor".into(), cursor.to_json());
                    self.commit_retrying(b).await?;
                    *self.cursor.lock().await = cursor.clone();
                }
                Err(other) => return Err(other),
            }
        }
        Ok(n)
    }

    /// Applies a batch of events (any order; duplicates are skipped by the cursor) and commits the
    /// writes, their journal entries and the advanced cursor together.
    async fn apply_events(
        &self,
        mut cursor: Cursor,
        events: Vec<crate::site::Event>,
    ) -> Result<(), EngineError> {
        let t_start = Instant::now();
        let now = now_ms();
        let plans = self.plans.read().await.clone();
        let schema = self.schema.read().await.clone();
        let floor = cursor.low_water;

        let mut writes: Vec<EntityWrite> = Vec::new();
        let mut rereads: BTreeMap<String, BTreeMap<i64, i64>> = BTreeMap::new();
        for (t, id, ev) in std::mem::take(&mut cursor.dirty) {
            let e = rereads.entry(t).or_default().entry(id).or_insert(0);
            *e = (*e).max(ev);
        }
        let mut schema_refresh = false;
        let mut linkers: Vec<(String, i64, i64)> = Vec::new();
        let mut applied = 0u64;
        let mut newest_created = 0;
        for ev in &events {
            // An event that fills a gap arrived after later ones; deltas (multi_entity added/
            // removed) and re-reads do not commute with it, so its entity is re-read as well.
            let late = ev.id < cursor.head;
            if cursor.observe(ev.id, ev.created_at, now) == Seen::Duplicate {
                continue;
            }
            applied += 1;
            newest_created = newest_created.max(ev.created_at);
            match translate(ev, &plans, &schema) {
                Ok(actions) => {
                    for a in actions {
                        match a {
                            Action::Skip => {
                                self.status.events_skipped.fetch_add(1, Ordering::Relaxed);
                            }
                            Action::SchemaRefresh => schema_refresh = true,
                            Action::Reread { entity_type, id } => {
                                let e = rereads
                                    .entry(entity_type)
                                    .or_default()
                                    .entry(id)
                                    .or_insert(0);
                                *e = (*e).max(ev.id);
                            }
                            Action::Write(w) => {
                                if late {
                                    let (t, id) = write_target(&w);
                                    let e = rereads
                                        .entry(t.to_owned())
                                        .or_default()
                                        .entry(id)
                                        .or_insert(0);
                                    *e = (*e).max(ev.id);
                                }
                                writes.push(w);
                            }
                            Action::RereadLinkers { entity_type, id } => {
                                linkers.push((entity_type, id, ev.id));
                            }
                        }
                    }
                }
                Err(e) => {
                    self.status.set_aside.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "event set aside; its entity is re-read instead");
                    if let Some((t, id)) = e.entity {
                        let x = rereads.entry(t).or_default().entry(id).or_insert(0);
                        *x = (*x).max(ev.id);
                    }
                }
            }
        }
        // Patches, retirements and revivals of entities the cache does not hold: re-read them
        // (or, for a type with a cache filter, skip them: the entity does not match).
        // Writes for entities the cache does not hold yet are kept for after their re-read: the
        // re-read creates the row, then the writes record their event ids on it (so an older event
        // that arrives later cannot undo them, e.g. a late retirement after a revival).
        let mut after_reread: Vec<EntityWrite> = Vec::new();
        {
            let known = self.known.lock().await;
            let mut kept = Vec::with_capacity(writes.len());
            for w in writes {
                let (t, id) = write_target(&w);
                if known.contains(t, id) {
                    kept.push(w);
                    continue;
                }
                let Some(p) = plans.get(t) else { continue };
                if p.filter.is_some() && !rereads.get(t).is_some_and(|m| m.contains_key(&id)) {
                    // Not cached and outside the cache filter (a filter-field change re-reads).
                    continue;
                }
                let ev = write_event_id(&w);
                let e = rereads
                    .entry(t.to_owned())
                    .or_default()
                    .entry(id)
                    .or_insert(0);
                *e = (*e).max(ev);
                after_reread.push(w);
            }
            writes = kept;
        }
        // Entities that link to revived ones: one query per (type, link field) for all of them.
        let mut revived: BTreeMap<String, (Vec<shotgun_cache_core::model::EntityRef>, i64)> =
            BTreeMap::new();
        for (t, id, ev) in linkers {
            let e = revived.entry(t.clone()).or_default();
            e.0.push(shotgun_cache_core::model::EntityRef::new(t, id));
            e.1 = e.1.max(ev);
        }
        for (t, (targets, ev)) in &revived {
            for p in plans.values() {
                for f in &p.layout.fields {
                    let may_link = f.valid_types.is_empty() || f.valid_types.iter().any(|v| v == t);
                    if !f.data_type.is_link() || !may_link {
                        continue;
                    }
                    for lid in self
                        .site
                        .linking_ids(&p.entity_type, &f.name, targets)
                        .await?
                    {
                        let e = rereads
                            .entry(p.entity_type.clone())
                            .or_default()
                            .entry(lid)
                            .or_insert(0);
                        *e = (*e).max(*ev);
                    }
                }
            }
        }
        // Patches first, in event order; then the re-reads, which read the site after every event
        // of this batch was visible and so carry the newest state.
        let mut all = writes;
        for (t, ids) in &rereads {
            let Some(p) = plans.get(t) else { continue };
            all.extend(self.reread_writes(p, ids, floor).await?);
        }
        all.extend(after_reread);

        let mut new_schema = None;
        if schema_refresh {
            match self.site.schema().await {
                Ok(s) => {
                    if s != *schema {
                        new_schema = Some(s);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "schema refresh failed; retried at the next schema event or reconciliation")
                }
            }
        }

        cursor.advance(now, (self.config.syncer.gap_timeout_secs * 1000) as i64);
        let guard = self.staging.read().await;
        let mirror: Vec<EntityWrite> = all
            .iter()
            .filter(|w| guard.contains(write_target(w).0))
            .cloned()
            .collect();
        let mut batch = WriteBatch {
            writes: all.clone(),
            staging: mirror,
            journal: true,
            ..WriteBatch::default()
        };
        batch.schema = new_schema.clone();
        batch.state.insert("cursor".into(), cursor.to_json());
        let t_commit = Instant::now();
        let result = self.commit_retrying(batch).await?;
        drop(guard);
        tracing::debug!(
            events = events.len(),
            writes = all.len(),
            rereads = rereads.values().map(BTreeMap::len).sum::<usize>(),
            prepare_ms =
                t_start.elapsed().as_millis() as u64 - t_commit.elapsed().as_millis() as u64,
            commit_ms = t_commit.elapsed().as_millis() as u64,
            "applied a batch"
        );
        self.note_outcomes(&all, &result.outcomes).await;
        if let Some(j) = result.journal.last() {
            self.status.journal_head.store(j.seq, Ordering::Relaxed);
        }
        // A row that vanished between the check and the commit: re-read it now.
        let mut missing: BTreeMap<String, BTreeMap<i64, i64>> = BTreeMap::new();
        for (w, o) in all.iter().zip(&result.outcomes) {
            if *o == WriteOutcome::Missing {
                let (t, id) = write_target(w);
                if rereads.get(t).is_some_and(|m| m.contains_key(&id)) {
                    continue;
                }
                if plans.get(t).is_some_and(|p| p.filter.is_none()) {
                    missing
                        .entry(t.to_owned())
                        .or_default()
                        .insert(id, write_event_id(w));
                }
            }
        }
        if !missing.is_empty() {
            let mut more = Vec::new();
            for (t, ids) in &missing {
                if let Some(p) = plans.get(t) {
                    more.extend(self.reread_writes(p, ids, floor).await?);
                }
            }
            self.commit_live(more).await?;
        }
        self.status
            .events_applied
            .fetch_add(applied, Ordering::Relaxed);
        self.status
            .last_applied_event_id
            .store(cursor.head, Ordering::Relaxed);
        if newest_created > 0 {
            self.status
                .last_event_created_at
                .fetch_max(newest_created, Ordering::Relaxed);
        }
        self.status
            .open_gaps
            .store(cursor.gaps.len() as u64, Ordering::Relaxed);
        self.status
            .expired_gaps
            .store(cursor.expired_gaps, Ordering::Relaxed);
        self.status
            .last_poll_at
            .store(now / 1000, Ordering::Relaxed);
        self.status
            .site_retries
            .store(self.site.retries(), Ordering::Relaxed);
        self.status.sample();
        *self.cursor.lock().await = cursor;
        if let Some(s) = new_schema {
            self.apply_schema_change(s).await;
        }
        Ok(())
    }

    /// A new site schema: re-resolve the plans; every type whose fields or filter resolve
    /// differently is re-imported in the background (the live copy stays served meanwhile).
    /// Takes the re-imports a schema change asked for.
    pub async fn take_pending_reimports(&self) -> Vec<String> {
        std::mem::take(&mut *self.pending_reimports.lock().await)
    }

    async fn apply_schema_change(&self, schema: SiteSchema) {
        let plans = match plan::resolve(&self.config, &schema) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "the config no longer fits the site schema; keeping the previous schema for the cached types");
                return;
            }
        };
        *self.schema.write().await = Arc::new(schema);
        let old = self.plans.read().await.clone();
        let changed: Vec<String> = plans
            .iter()
            .filter(|(t, p)| old.get(*t).is_none_or(|o| o.config_hash != p.config_hash))
            .map(|(t, _)| t.clone())
            .collect();
        *self.plans.write().await = Arc::new(plans);
        if !changed.is_empty() {
            tracing::info!(types = ?changed, "schema change affects cached types; re-importing them");
            self.pending_reimports.lock().await.extend(changed);
        }
    }

    /// The reconciliation scan of one type: rows updated since `since` (unix seconds), live and
    /// retired, upserted with the low-water floor.
    pub async fn scan_type(&self, plan: &TypePlan, since: i64) -> Result<u64, EngineError> {
        let schema = self.schema.read().await.clone();
        let plans = self.plans.read().await.clone();
        let floor = self.cursor.lock().await.low_water;
        let mut writes = Vec::new();
        for ro in [ReturnOnly::Active, ReturnOnly::Retired] {
            let rows = self
                .site
                .updated_since(
                    &schema,
                    &plan.entity_type,
                    &plan.fields,
                    plan.site_filter.as_ref(),
                    since,
                    self.page_size(),
                    ro,
                )
                .await?;
            writes.extend(rows.into_iter().map(|entity| EntityWrite::Upsert {
                entity,
                floor,
                event_id: 0,
            }));
        }
        // A link changed without events also changed the other side of the link, whose own
        // `updated_at` did not move: re-read the targets that were added or removed.
        let mut others: BTreeMap<String, BTreeMap<i64, i64>> = BTreeMap::new();
        for w in &writes {
            let EntityWrite::Upsert { entity, .. } = w else {
                continue;
            };
            let old = self.store.get(&entity.entity_type, entity.id).await?;
            for f in plan.layout.fields.iter().filter(|f| f.data_type.is_link()) {
                let new_links = link_targets(entity.fields.get(&f.name));
                let old_links = link_targets(old.as_ref().and_then(|o| o.fields.get(&f.name)));
                for (t, id) in new_links.symmetric_difference(&old_links) {
                    if plans.contains_key(t) {
                        others.entry(t.clone()).or_default().insert(*id, 0);
                    }
                }
            }
        }
        for (t, ids) in &others {
            if let Some(p) = plans.get(t) {
                writes.extend(self.reread_writes(p, ids, floor).await?);
            }
        }
        let mut repaired = 0;
        for chunk in writes.chunks(1000) {
            let outcomes = self.commit_live(chunk.to_vec()).await?;
            repaired += outcomes
                .iter()
                .filter(|o| matches!(o, WriteOutcome::Applied { .. }))
                .count() as u64;
        }
        Ok(repaired)
    }

    /// The id-set diff of one type: rows the store has that the site does not (removed), rows the
    /// site has that the store lacks or holds with another retired flag (re-read).
    pub async fn diff_type(&self, plan: &TypePlan) -> Result<u64, EngineError> {
        let t = &plan.entity_type;
        let mut site_ids: BTreeMap<i64, bool> = BTreeMap::new();
        for (ro, retired) in [(ReturnOnly::Active, false), (ReturnOnly::Retired, true)] {
            for id in self
                .site
                .all_ids(
                    t,
                    plan.site_filter.as_ref(),
                    5000.min(self.page_size().max(500)),
                    ro,
                )
                .await?
            {
                site_ids.insert(id, retired);
            }
        }
        let mut store_ids: BTreeMap<i64, bool> = BTreeMap::new();
        let mut after = 0;
        loop {
            let ids = self.store.ids(t, after, 10_000).await?;
            let n = ids.len();
            for (id, r) in ids {
                store_ids.insert(id, r);
                after = after.max(id);
            }
            if n < 10_000 {
                break;
            }
        }
        let mut reread = BTreeMap::new();
        for (id, r) in &site_ids {
            if store_ids.get(id) != Some(r) {
                reread.insert(*id, 0);
            }
        }
        for id in store_ids.keys() {
            if !site_ids.contains_key(id) {
                reread.insert(*id, 0);
            }
        }
        if reread.is_empty() {
            return Ok(0);
        }
        let floor = self.cursor.lock().await.low_water;
        let writes = self.reread_writes(plan, &reread, floor).await?;
        let outcomes = self.commit_live(writes).await?;
        Ok(outcomes
            .iter()
            .filter(|o| matches!(o, WriteOutcome::Applied { .. }))
            .count() as u64)
    }

    /// One reconciliation round over every cached type.
    pub async fn reconcile(&self, since: i64) -> Result<u64, EngineError> {
        // A schema drift without DisplayColumn events (e.g. a deleted field) is caught here.
        match self.site.schema().await {
            Ok(s) if s != **self.schema.read().await => self.apply_schema_change(s).await,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "schema check failed"),
        }
        let plans = self.plans.read().await.clone();
        let staging = self.staging.read().await.clone();
        let mut repaired = 0;
        for p in plans.values() {
            if staging.contains(&p.entity_type) || self.is_importing(&p.entity_type).await {
                continue;
            }
            repaired += self.scan_type(p, since).await?;
            repaired += self.diff_type(p).await?;
        }
        self.status
            .reconcile_repairs
            .fetch_add(repaired, Ordering::Relaxed);
        Ok(repaired)
    }

    /// Whether the event log was archived past the cursor.
    pub async fn log_archived(&self) -> Result<bool, EngineError> {
        let head = self.cursor.lock().await.head;
        let oldest = self.site.oldest_event_id().await?;
        Ok(oldest > head + 1)
    }

    /// After the log was archived past the cursor: a fresh cursor, then every type re-imported.
    pub async fn restart_from_archive(&self) -> Result<Vec<String>, EngineError> {
        let c = self.fresh_cursor().await?;
        *self.cursor.lock().await = c;
        Ok(plans_keys(&*self.plans.read().await))
    }

    /// Builds the status figures' per-type counts from the store.
    pub async fn type_counts(&self) -> BTreeMap<String, (u64, u64)> {
        self.store.type_counts().await.unwrap_or_default()
    }
}

fn plans_keys(p: &BTreeMap<String, TypePlan>) -> Vec<String> {
    p.keys().cloned().collect()
}

/// The (type, id) targets of a link value.
fn link_targets(v: Option<&shotgun_cache_core::model::Value>) -> BTreeSet<(String, i64)> {
    use shotgun_cache_core::model::Value;
    match v {
        Some(Value::Entity(r)) => BTreeSet::from([(r.entity_type.clone(), r.id)]),
        Some(Value::MultiEntity(l)) => l.iter().map(|r| (r.entity_type.clone(), r.id)).collect(),
        _ => BTreeSet::new(),
    }
}

/// The (type, id) a write targets.
pub fn write_target(w: &EntityWrite) -> (&str, i64) {
    match w {
        EntityWrite::Upsert { entity, .. } => (&entity.entity_type, entity.id),
        EntityWrite::Patch {
            entity_type, id, ..
        }
        | EntityWrite::Retire {
            entity_type, id, ..
        }
        | EntityWrite::Revive {
            entity_type, id, ..
        }
        | EntityWrite::Remove {
            entity_type, id, ..
        } => (entity_type, *id),
    }
}

fn write_event_id(w: &EntityWrite) -> i64 {
    match w {
        EntityWrite::Upsert { event_id, .. }
        | EntityWrite::Patch { event_id, .. }
        | EntityWrite::Retire { event_id, .. }
        | EntityWrite::Revive { event_id, .. }
        | EntityWrite::Remove { event_id, .. } => *event_id,
    }
}
