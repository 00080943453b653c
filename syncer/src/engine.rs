//! The sync engine: start-up decisions, imports (first import into live, re-import into staging),
//! the event follower, re-reads, reconciliation and journal retention.
//!
//! # Crash safety
//! Every follower batch commits its entity writes, their journal entries and the new cursor in one
//! [`WriteBatch`]. Entities that must be re-read (a `_New`, an entity the cache does not hold, a
//! gap filler, the linkers of a revived entity) are re-read *before* the commit and go into the
//! same batch, so the cursor never moves past an event whose effect is not in the store.
//!
//! # The write gate
//! `Engine::write_gate` serialises every "read, then commit to live" step: the follower holds it
//! from building a batch (the known-id check) to its commit; reconciliation holds it for one slice
//! at a time (one page of the `updated_at` scan with its commit, one chunk of id-diff re-reads);
//! `Refresh`, staging start and promotion take it too. So the known-id bits are exact when a batch
//! is built (no write finds its row missing; only a writer outside the syncer could cause that,
//! and such a row is re-read at once and counted in `late_rereads`), and a reconciliation slice
//! never commits an older site read over a newer event. Reconciliation runs as its own task; the
//! follower keeps going between its slices.
//!
//! # Catch-up
//! A poll takes up to eight pages. The next page is fetched in the background, and translated (with
//! its re-reads) while the previous batch commits; commits stay in order. Field patches of an entity
//! that is re-read in the same batch are folded into the re-read.
//!
//! # Resumable first import
//! A first import splits each type into id ranges and persists the plan (`state["import/<Type>"]`)
//! and, with every page, the range's last committed id and row count (`state["import/<Type>/<i>"]`),
//! in the same batch as the page. After a crash or restart it resumes each range after its last
//! committed id, with the committed rows counted as done.

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

/// The persisted plan of a first import (state key `import/<Type>`): the id ranges its fetchers
/// page through, so that a restart resumes each range after the last id it committed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImportPlan {
    pub config_hash: String,
    /// Rows expected (live + retired), as counted when the import first started.
    pub total: u64,
    pub ranges: Vec<ImportRange>,
}

/// One id range `(lo, hi]` of live or retired rows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImportRange {
    pub retired: bool,
    pub lo: i64,
    pub hi: i64,
}

/// How far one range got (state key `import/<Type>/<index>`), committed with each of its pages.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RangeProgress {
    /// The highest id committed.
    pub after: i64,
    /// Rows committed.
    pub rows: u64,
    /// The range is complete.
    pub finished: bool,
}

impl RangeProgress {
    fn start(lo: i64) -> RangeProgress {
        RangeProgress {
            after: lo,
            rows: 0,
            finished: false,
        }
    }
}

/// The state key of a type's import plan.
pub fn import_plan_key(entity_type: &str) -> String {
    format!("import/{entity_type}")
}

fn import_range_key(entity_type: &str, index: usize) -> String {
    format!("import/{entity_type}/{index}")
}

/// A follower batch built from one page of events, ready to commit.
struct Prepared {
    batch: WriteBatch,
    /// The cursor the batch commits.
    cursor: Cursor,
    rereads: BTreeMap<String, BTreeMap<i64, i64>>,
    plans: Arc<BTreeMap<String, TypePlan>>,
    floor: i64,
    applied: u64,
    newest_created: i64,
    new_schema: Option<SiteSchema>,
    n_events: usize,
    n_rereads: usize,
    prepare_ms: u64,
    t_ready: Instant,
    now: i64,
    /// How long the store's commit took (set when it returns).
    commit_ms: u64,
}

impl Prepared {
    /// The batch to commit, and what is needed of its writes afterwards.
    fn take_batch(&mut self) -> (WriteBatch, Vec<WriteMark>) {
        let batch = std::mem::take(&mut self.batch);
        let marks = batch.writes.iter().map(WriteMark::of).collect();
        (batch, marks)
    }
}

/// What the engine needs of a write once it is committed (the write itself goes to the store):
/// its target, its event id, and its kind.
struct WriteMark {
    entity_type: String,
    id: i64,
    event_id: i64,
    kind: MarkKind,
}

#[derive(Clone, Copy)]
enum MarkKind {
    Upsert,
    Remove,
    /// A patch, retire or revive: a write to a row that must exist.
    OnRow,
}

impl WriteMark {
    fn of(w: &EntityWrite) -> WriteMark {
        let (t, id) = write_target(w);
        WriteMark {
            entity_type: t.to_owned(),
            id,
            event_id: write_event_id(w),
            kind: match w {
                EntityWrite::Upsert { .. } => MarkKind::Upsert,
                EntityWrite::Remove { .. } => MarkKind::Remove,
                EntityWrite::Patch { .. }
                | EntityWrite::Retire { .. }
                | EntityWrite::Revive { .. } => MarkKind::OnRow,
            },
        }
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
    /// Serialises every "read the store's or the site's state, then commit to live" step (the
    /// follower's batches, re-reads, reconciliation slices, staging promotion), so the known-id
    /// bits are exact when a batch is built and a slice of reconciliation never overwrites a
    /// newer event the follower applied between its site read and its commit.
    write_gate: Mutex<()>,
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
            write_gate: Mutex::new(()),
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
            let _gate = self.write_gate.lock().await;
            self.staging.write().await.remove(entity_type);
        }
        r
    }

    pub async fn is_importing(&self, entity_type: &str) -> bool {
        self.importing.lock().await.contains(entity_type)
    }

    /// The interrupted first import of a type that can be resumed: its persisted ranges and the
    /// progress of each, when the type is still `Importing` with the same config.
    async fn resumable_import(
        &self,
        plan: &TypePlan,
        old: Option<&TypeState>,
    ) -> Result<Option<(ImportPlan, Vec<RangeProgress>)>, EngineError> {
        let Some(old) = old else { return Ok(None) };
        if old.phase != TypePhase::Importing || old.config_hash != plan.config_hash {
            return Ok(None);
        }
        let key = import_plan_key(&plan.entity_type);
        let Some(saved) = self
            .store
            .get_state(&key)
            .await?
            .and_then(|v| serde_json::from_value::<ImportPlan>(v).ok())
        else {
            return Ok(None);
        };
        if saved.config_hash != plan.config_hash {
            return Ok(None);
        }
        let mut progress = Vec::with_capacity(saved.ranges.len());
        for (i, r) in saved.ranges.iter().enumerate() {
            let p = self
                .store
                .get_state(&import_range_key(&plan.entity_type, i))
                .await?
                .and_then(|v| serde_json::from_value::<RangeProgress>(v).ok())
                .unwrap_or_else(|| RangeProgress::start(r.lo));
            progress.push(p);
        }
        Ok(Some((saved, progress)))
    }

    /// Splits a fresh import into id ranges: `import_concurrency` per live/retired set.
    async fn plan_import(&self, plan: &TypePlan) -> Result<ImportPlan, EngineError> {
        let entity_type = plan.entity_type.as_str();
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
        let conc = i64::from(self.config.syncer.import_concurrency.max(1));
        let mut ranges = Vec::new();
        for (retired, max) in [(false, max_active), (true, max_retired)] {
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
                if lo < hi {
                    ranges.push(ImportRange { retired, lo, hi });
                }
            }
        }
        Ok(ImportPlan {
            config_hash: plan.config_hash.clone(),
            total,
            ranges,
        })
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
        let old_state = self
            .store
            .type_states()
            .await?
            .into_iter()
            .find(|s| s.entity_type == entity_type);
        let prev_ready = old_state.as_ref().and_then(|s| s.ready_at);
        // A first import that was interrupted (crash, restart) resumes each of its ranges after the
        // last id it committed; the rows committed so far count as done.
        let resumed = if staging {
            None
        } else {
            self.resumable_import(&plan, old_state.as_ref()).await?
        };
        let is_resume = resumed.is_some();
        let (import_plan, progress) = match resumed {
            Some(r) => r,
            None => {
                let p = self.plan_import(&plan).await?;
                let progress = p
                    .ranges
                    .iter()
                    .map(|r| RangeProgress::start(r.lo))
                    .collect();
                (p, progress)
            }
        };
        let total = import_plan.total;
        if staging {
            // Under the gate: every follower batch from here on is mirrored into the new copy.
            let _gate = self.write_gate.lock().await;
            self.store.begin_staging(&plan.layout).await?;
            self.staging.write().await.insert(entity_type.to_owned());
            self.status.reimports.fetch_add(1, Ordering::Relaxed);
        }
        let done0: u64 = progress.iter().map(|p| p.rows).sum();
        let mut st = type_state(&plan, phase, done0, total.max(done0), prev_ready);
        if staging && let Some(old) = &old_state {
            // The live copy keeps its old hash until the swap.
            st.config_hash = old.config_hash.clone();
        }
        let mut start = WriteBatch {
            type_states: vec![st.clone()],
            ..WriteBatch::default()
        };
        if !staging && !is_resume {
            start.state.insert(
                import_plan_key(entity_type),
                serde_json::to_value(&import_plan).unwrap_or(serde_json::Value::Null),
            );
            for (i, p) in progress.iter().enumerate() {
                start.state.insert(
                    import_range_key(entity_type, i),
                    serde_json::to_value(p).unwrap_or(serde_json::Value::Null),
                );
            }
        }
        self.store.commit(start).await?;
        self.status.set_progress(entity_type, |p| {
            p.done = done0;
            p.total = total.max(done0);
            p.started = Some(Instant::now());
            p.resumed_from = done0;
            p.state = if staging {
                "reimporting".into()
            } else {
                "importing".into()
            };
        });
        tracing::info!(
            entity_type,
            total,
            staging,
            resumed = is_resume,
            done = done0,
            "import started"
        );

        let floor = self.cursor.lock().await.low_water;
        let committed = Arc::new(Mutex::new(done0));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, (range, p)) in import_plan.ranges.iter().cloned().zip(progress).enumerate() {
            if p.finished {
                continue;
            }
            let me = Arc::clone(self);
            let plan = plan.clone();
            let committed = Arc::clone(&committed);
            let st = st.clone();
            tasks.spawn(async move {
                me.import_range(&plan, i, range, p, floor, staging, committed, st)
                    .await
            });
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
        let n = *committed.lock().await;
        let ready = type_state(
            &plan,
            TypePhase::Ready,
            n,
            n.max(total),
            Some(DateTime::now()),
        );
        if staging {
            let gate = self.write_gate.lock().await;
            let mut guard = self.staging.write().await;
            self.store.promote_staging(ready).await?;
            guard.remove(entity_type);
            drop(guard);
            self.reload_known(Some(entity_type)).await?;
            drop(gate);
            // Writes that raced the pages of the re-import are repaired by a scan from its start.
            let since = (started_at / 1000) - 60;
            if let Err(e) = self.scan_type(&plan, since).await {
                tracing::warn!(entity_type, error = %e, "post-reimport scan failed; the next reconciliation repeats it");
            }
        } else {
            let mut done = WriteBatch {
                type_states: vec![ready],
                ..WriteBatch::default()
            };
            // The import's resume state is cleared with the type's readiness.
            done.state
                .insert(import_plan_key(entity_type), serde_json::Value::Null);
            for i in 0..import_plan.ranges.len() {
                done.state
                    .insert(import_range_key(entity_type, i), serde_json::Value::Null);
            }
            self.store.commit(done).await?;
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

    /// Pages one id range of an import by keyset (`id > after`, up to `range.hi`). Each page
    /// commits with the type's progress and (first imports) the range's resume point.
    #[allow(clippy::too_many_arguments)]
    async fn import_range(
        &self,
        plan: &TypePlan,
        index: usize,
        range: ImportRange,
        mut progress: RangeProgress,
        floor: i64,
        staging: bool,
        committed: Arc<Mutex<u64>>,
        st: TypeState,
    ) -> Result<(), EngineError> {
        let ro = if range.retired {
            ReturnOnly::Retired
        } else {
            ReturnOnly::Active
        };
        loop {
            let schema = self.schema.read().await.clone();
            let page = self
                .site
                .page(
                    &schema,
                    &plan.entity_type,
                    &plan.fields,
                    plan.site_filter.as_ref(),
                    progress.after,
                    Some(range.hi),
                    self.page_size(),
                    ro,
                )
                .await?;
            let n = page.len();
            if n == 0 {
                return Ok(());
            }
            progress.after = page.iter().map(|e| e.id).max().unwrap_or(progress.after);
            progress.rows += n as u64;
            progress.finished = n < self.page_size() as usize || progress.after >= range.hi;
            let writes: Vec<EntityWrite> = page
                .into_iter()
                .map(|entity| EntityWrite::Upsert {
                    entity,
                    floor,
                    event_id: 0,
                })
                .collect();
            // Commits of one import are serialised so the persisted `done` is the exact number of
            // rows committed (pages are still fetched concurrently).
            let mut c = committed.lock().await;
            let d = *c + n as u64;
            let mut state = st.clone();
            state.done = d;
            state.total = state.total.max(d);
            let mut batch = WriteBatch {
                journal: false,
                type_states: vec![state],
                ..WriteBatch::default()
            };
            if staging {
                batch.staging = writes;
            } else {
                batch.writes = writes;
                batch.state.insert(
                    import_range_key(&plan.entity_type, index),
                    serde_json::to_value(&progress).unwrap_or(serde_json::Value::Null),
                );
            }
            self.commit_retrying(batch).await?;
            *c = d;
            drop(c);
            self.status.set_progress(&plan.entity_type, |p| {
                p.done = d;
                p.total = p.total.max(d);
            });
            if progress.finished {
                return Ok(());
            }
        }
    }

    /// Commits with a few retries on transient store errors.
    ///
    /// The store hands the batch back when a second attempt with it is correct, so no copy is
    /// made in advance; a transient failure that used the batch up goes to the caller, whose
    /// recovery starts again from the cursor in the store.
    async fn commit_retrying(
        &self,
        mut batch: WriteBatch,
    ) -> Result<shotgun_cache_core::store::CommitResult, EngineError> {
        let mut attempt = 0;
        loop {
            match self.store.commit_or_return(batch).await {
                Ok(r) => return Ok(r),
                Err((
                    e @ (StoreError::Unavailable(_) | StoreError::Timeout(_)),
                    Some(returned),
                )) if attempt < 5 => {
                    attempt += 1;
                    self.status.commit_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, attempt, "store commit failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                    batch = returned;
                }
                Err((e, _)) => {
                    if matches!(e, StoreError::Unavailable(_) | StoreError::Timeout(_)) {
                        self.status.commit_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    return Err(e.into());
                }
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
        let _gate = self.write_gate.lock().await;
        self.commit_live_gated(writes).await
    }

    /// [`Self::commit_live`] for a caller that holds the write gate.
    async fn commit_live_gated(
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
            writes,
            staging: mirror,
            journal: true,
            ..WriteBatch::default()
        };
        let marks: Vec<WriteMark> = batch.writes.iter().map(WriteMark::of).collect();
        let r = self.commit_retrying(batch).await?;
        drop(guard);
        self.note_outcomes(&marks, &r.outcomes).await;
        self.status.journal_head.store(
            r.journal
                .last()
                .map(|j| j.seq)
                .unwrap_or(self.status.journal_head.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        Ok(r.outcomes)
    }

    async fn note_outcomes(&self, writes: &[WriteMark], outcomes: &[WriteOutcome]) {
        let mut known = self.known.lock().await;
        for (w, o) in writes.iter().zip(outcomes) {
            match (w.kind, o) {
                (MarkKind::Upsert, _) => known.set(&w.entity_type, w.id, true),
                (MarkKind::Remove, WriteOutcome::Applied { .. })
                | (MarkKind::OnRow, WriteOutcome::Missing) => {
                    known.set(&w.entity_type, w.id, false)
                }
                _ => {}
            }
        }
    }

    /// One poll of the event log: read new events and the open gaps, apply them, commit with the
    /// cursor. Returns how many events were read (a full page means "poll again at once").
    ///
    /// Catching up is pipelined: while one page's batch commits, the next page (already fetched
    /// in the background) is translated and its re-reads are read from the site. Commits stay in
    /// order, one batch per page, and the write gate is held for the whole call, so the known-id
    /// bits the next batch is built on already include the batch being committed.
    pub async fn poll_once(&self, query_gaps: bool) -> Result<usize, EngineError> {
        let cursor = self.cursor.lock().await.clone();
        let page = self.page_size();
        let mut events = self.site.events_after(cursor.head, page).await?;
        let mut n_new = events.len();
        let timeout_ms = (self.config.syncer.gap_timeout_secs * 1000) as i64;
        let query_gaps = query_gaps || cursor.expiring(now_ms(), timeout_ms);
        if query_gaps && !cursor.gaps.is_empty() {
            let gaps = cursor.gap_ids(500);
            events.extend(self.site.events_in(&gaps).await?);
        }
        let _gate = self.write_gate.lock().await;
        let r = self.pipeline(cursor, events, &mut n_new).await;
        if r.is_err() {
            // Batches prepared past the failure updated the known-id bits ahead of their commit.
            if let Err(e) = self.reload_known(None).await {
                tracing::warn!(error = %e, "could not rebuild the known-id bits after a failed batch");
            }
        }
        r.map(|()| n_new)
    }

    /// The rounds of [`Self::poll_once`] (at most a few pages per call, so reconciliation,
    /// trimming and `Refresh` calls get their turn at the write gate). The caller holds the gate.
    async fn pipeline(
        &self,
        mut cursor: Cursor,
        mut events: Vec<crate::site::Event>,
        n_new: &mut usize,
    ) -> Result<(), EngineError> {
        const ROUNDS: usize = 8;
        let page = self.page_size();
        let mut pending: Option<Prepared> = None;
        for round in 0..ROUNDS {
            events.sort_by_key(|e| e.id);
            events.dedup_by_key(|e| e.id);
            let full = *n_new >= page as usize;
            let next_after = events
                .iter()
                .map(|e| e.id)
                .max()
                .unwrap_or(cursor.head)
                .max(cursor.head);
            let prefetch = (full && round + 1 < ROUNDS).then(|| {
                let site = self.site.clone();
                tokio::spawn(async move { site.events_after(next_after, page).await })
            });
            let next = match pending.take() {
                // A schema change must be in force before the next page is translated.
                Some(p) if p.new_schema.is_some() => {
                    self.commit_prepared(p).await?;
                    cursor = self.cursor.lock().await.clone();
                    self.prepare_events(cursor.clone(), events).await?
                }
                Some(mut p) => {
                    let (batch, marks) = p.take_batch();
                    let (committed, next) = tokio::join!(
                        self.timed_commit(batch),
                        self.prepare_events(cursor.clone(), events)
                    );
                    let (committed, ms) = committed;
                    p.commit_ms = ms;
                    self.finish_prepared(p, &marks, committed?).await?;
                    next?
                }
                None => self.prepare_events(cursor.clone(), events).await?,
            };
            if let Some(p) = &next {
                cursor = p.cursor.clone();
            }
            pending = next;
            let Some(next) = prefetch else { break };
            events = next
                .await
                .map_err(|e| EngineError::Other(format!("event prefetch task failed: {e}")))??;
            *n_new = events.len();
        }
        if let Some(p) = pending {
            self.commit_prepared(p).await?;
        }
        Ok(())
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
        let _gate = self.write_gate.lock().await;
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
    /// writes, their journal entries and the advanced cursor together. The caller holds the gate.
    async fn apply_events(
        &self,
        cursor: Cursor,
        events: Vec<crate::site::Event>,
    ) -> Result<(), EngineError> {
        match self.prepare_events(cursor, events).await? {
            Some(p) => self.commit_prepared(p).await,
            None => Ok(()),
        }
    }

    async fn commit_prepared(&self, mut p: Prepared) -> Result<(), EngineError> {
        let (batch, marks) = p.take_batch();
        let (result, ms) = self.timed_commit(batch).await;
        p.commit_ms = ms;
        self.finish_prepared(p, &marks, result?).await
    }

    async fn timed_commit(
        &self,
        batch: WriteBatch,
    ) -> (
        Result<shotgun_cache_core::store::CommitResult, EngineError>,
        u64,
    ) {
        let t = Instant::now();
        let r = self.commit_retrying(batch).await;
        (r, t.elapsed().as_millis() as u64)
    }

    /// Turns events into one batch: translation, the re-reads they need (entities the cache does
    /// not hold, `_New`, gap fillers, linkers of revived entities), the schema refresh, and the
    /// advanced cursor. `None` when there is nothing to commit (an empty poll with no expiring
    /// gap). Updates the known-id bits for the rows the batch creates or removes, so the next
    /// batch can be prepared while this one commits. The caller holds the write gate.
    async fn prepare_events(
        &self,
        mut cursor: Cursor,
        events: Vec<crate::site::Event>,
    ) -> Result<Option<Prepared>, EngineError> {
        let t_start = Instant::now();
        let now = now_ms();
        if events.is_empty() && cursor.dirty.is_empty() {
            // An empty poll commits nothing unless a gap expires (which moves the low-water mark).
            let mut c = cursor.clone();
            let timeout_ms = (self.config.syncer.gap_timeout_secs * 1000) as i64;
            if c.advance(now, timeout_ms) == 0 && c.low_water == cursor.low_water {
                self.status
                    .last_poll_at
                    .store(now / 1000, Ordering::Relaxed);
                self.status
                    .site_retries
                    .store(self.site.retries(), Ordering::Relaxed);
                self.status.sample();
                return Ok(None);
            }
        }
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
        // The caller holds the write gate: no other task writes live data until this batch is
        // committed, so the known-id bits are exact and every write below finds (or, after its
        // re-read, gets) its row.
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
        // A field patch of an entity that is re-read in this batch is left out: the re-read reads
        // the site after every event of the batch was visible, so its full state already holds
        // the patch (an `Upsert` replaces every cached value), and it is journaled once, under the
        // newest event that asked. (This drops the `in_create` changes that follow every `_New`.)
        // Retirements and revivals stay: their event ids guard the retired flag against late,
        // older lifecycle events.
        let mut folded = 0usize;
        let mut fold = |w: EntityWrite, rereads: &mut BTreeMap<String, BTreeMap<i64, i64>>| {
            if let EntityWrite::Patch {
                entity_type,
                id,
                event_id,
                ..
            } = &w
                && let Some(e) = rereads.get_mut(entity_type).and_then(|m| m.get_mut(id))
            {
                *e = (*e).max(*event_id);
                folded += 1;
                return None;
            }
            Some(w)
        };
        let writes: Vec<EntityWrite> = writes
            .into_iter()
            .filter_map(|w| fold(w, &mut rereads))
            .collect();
        let after_reread: Vec<EntityWrite> = after_reread
            .into_iter()
            .filter_map(|w| fold(w, &mut rereads))
            .collect();
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
        let mirror: Vec<EntityWrite> = {
            let staging = self.staging.read().await;
            all.iter()
                .filter(|w| staging.contains(write_target(w).0))
                .cloned()
                .collect()
        };
        {
            let mut known = self.known.lock().await;
            for w in &all {
                match w {
                    EntityWrite::Upsert { entity, .. } => {
                        known.set(&entity.entity_type, entity.id, true)
                    }
                    EntityWrite::Remove {
                        entity_type, id, ..
                    } => known.set(entity_type, *id, false),
                    _ => {}
                }
            }
        }
        let n_rereads: usize = rereads.values().map(BTreeMap::len).sum();
        tracing::trace!(folded, "patches folded into re-reads");
        let mut batch = WriteBatch {
            writes: all,
            staging: mirror,
            journal: true,
            ..WriteBatch::default()
        };
        batch.schema = new_schema.clone();
        batch.state.insert("cursor".into(), cursor.to_json());
        Ok(Some(Prepared {
            batch,
            cursor,
            rereads,
            plans,
            floor,
            applied,
            newest_created,
            new_schema,
            n_events: events.len(),
            n_rereads,
            prepare_ms: t_start.elapsed().as_millis() as u64,
            t_ready: Instant::now(),
            now,
            commit_ms: 0,
        }))
    }

    /// After a prepared batch committed: known-id bits, figures, the in-memory cursor, the
    /// schema change. The caller holds the write gate.
    async fn finish_prepared(
        &self,
        p: Prepared,
        all: &[WriteMark],
        result: shotgun_cache_core::store::CommitResult,
    ) -> Result<(), EngineError> {
        let Prepared {
            batch: _,
            cursor,
            rereads,
            plans,
            floor,
            applied,
            newest_created,
            new_schema,
            n_events,
            n_rereads,
            prepare_ms,
            t_ready,
            now,
            commit_ms,
        } = p;
        tracing::debug!(
            events = n_events,
            writes = all.len(),
            rereads = n_rereads,
            prepare_ms,
            commit_ms,
            ready_to_done_ms = t_ready.elapsed().as_millis() as u64,
            "applied a batch"
        );
        self.note_outcomes(all, &result.outcomes).await;
        if let Some(j) = result.journal.last() {
            self.status.journal_head.store(j.seq, Ordering::Relaxed);
        }
        // Under the write gate the known-id bits are exact, so no write of this batch should find
        // its row missing. Only a writer outside the syncer (which the store contract rules out)
        // can cause it: the row is re-read and committed at once, and counted; should the syncer
        // die in between, the reconciliation's id diff re-reads it.
        let mut missing: BTreeMap<String, BTreeMap<i64, i64>> = BTreeMap::new();
        for (w, o) in all.iter().zip(&result.outcomes) {
            if *o == WriteOutcome::Missing {
                let (t, id) = (w.entity_type.as_str(), w.id);
                if rereads.get(t).is_some_and(|m| m.contains_key(&id)) {
                    continue;
                }
                if plans.get(t).is_some_and(|p| p.filter.is_none()) {
                    missing
                        .entry(t.to_owned())
                        .or_default()
                        .insert(id, w.event_id);
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
            self.status.late_rereads.fetch_add(
                missing.values().map(BTreeMap::len).sum::<usize>() as u64,
                Ordering::Relaxed,
            );
            tracing::warn!(entities = ?missing, "rows vanished from the store behind the syncer's back; re-read");
            self.commit_live_gated(more).await?;
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
        self.status.batches.fetch_add(1, Ordering::Relaxed);
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
    ///
    /// It runs in slices of one page each, and each slice (site read, reverse-link re-reads and
    /// commit) holds the write gate: the follower keeps applying events between slices, and never
    /// between a slice's site read and its commit, so a slice cannot overwrite a newer event with
    /// the older state it read.
    pub async fn scan_type(&self, plan: &TypePlan, since: i64) -> Result<u64, EngineError> {
        let mut repaired = 0;
        for ro in [ReturnOnly::Active, ReturnOnly::Retired] {
            let mut after = 0;
            loop {
                let gate = self.write_gate.lock().await;
                let schema = self.schema.read().await.clone();
                let plans = self.plans.read().await.clone();
                let floor = self.cursor.lock().await.low_water;
                let rows = self
                    .site
                    .updated_since_page(
                        &schema,
                        &plan.entity_type,
                        &plan.fields,
                        plan.site_filter.as_ref(),
                        since,
                        after,
                        self.page_size(),
                        ro,
                    )
                    .await?;
                let n = rows.len();
                after = rows.iter().map(|e| e.id).max().unwrap_or(after);
                let mut writes: Vec<EntityWrite> = rows
                    .into_iter()
                    .map(|entity| EntityWrite::Upsert {
                        entity,
                        floor,
                        event_id: 0,
                    })
                    .collect();
                // A link changed without events also changed the other side of the link, whose
                // own `updated_at` did not move: re-read the targets that were added or removed.
                let mut others: BTreeMap<String, BTreeMap<i64, i64>> = BTreeMap::new();
                for w in &writes {
                    let EntityWrite::Upsert { entity, .. } = w else {
                        continue;
                    };
                    let old = self.store.get(&entity.entity_type, entity.id).await?;
                    for f in plan.layout.fields.iter().filter(|f| f.data_type.is_link()) {
                        let new_links = link_targets(entity.fields.get(&f.name));
                        let old_links =
                            link_targets(old.as_ref().and_then(|o| o.fields.get(&f.name)));
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
                if !writes.is_empty() {
                    let outcomes = self.commit_live_gated(writes).await?;
                    repaired += outcomes
                        .iter()
                        .filter(|o| matches!(o, WriteOutcome::Applied { .. }))
                        .count() as u64;
                }
                drop(gate);
                if n < self.page_size() as usize {
                    break;
                }
            }
        }
        Ok(repaired)
    }

    /// The id-set diff of one type: rows the store has that the site does not (removed), rows the
    /// site has that the store lacks or holds with another retired flag (re-read).
    ///
    /// The id lists are read without the write gate (the follower keeps going); a difference only
    /// leads to a re-read, which holds the gate with its commit, so a difference that the follower
    /// resolved in the meantime costs one re-read and nothing else.
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
        let mut reread: Vec<i64> = Vec::new();
        for (id, r) in &site_ids {
            if store_ids.get(id) != Some(r) {
                reread.push(*id);
            }
        }
        for id in store_ids.keys() {
            if !site_ids.contains_key(id) {
                reread.push(*id);
            }
        }
        let mut repaired = 0;
        for chunk in reread.chunks(500) {
            let ids: BTreeMap<i64, i64> = chunk.iter().map(|id| (*id, 0)).collect();
            let gate = self.write_gate.lock().await;
            let floor = self.cursor.lock().await.low_water;
            let writes = self.reread_writes(plan, &ids, floor).await?;
            let outcomes = self.commit_live_gated(writes).await?;
            drop(gate);
            repaired += outcomes
                .iter()
                .filter(|o| matches!(o, WriteOutcome::Applied { .. }))
                .count() as u64;
        }
        Ok(repaired)
    }

    /// One reconciliation round over every cached type. Runs beside the follower (its own task):
    /// see [`Self::scan_type`] and [`Self::diff_type`] for how the two interleave.
    pub async fn reconcile(&self, since: i64) -> Result<u64, EngineError> {
        // A schema drift without DisplayColumn events (e.g. a deleted field) is caught here.
        match self.site.schema().await {
            Ok(s) if s != **self.schema.read().await => {
                let _gate = self.write_gate.lock().await;
                self.apply_schema_change(s).await
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "schema check failed"),
        }
        let plans = self.plans.read().await.clone();
        let mut repaired = 0;
        for p in plans.values() {
            if self.staging.read().await.contains(&p.entity_type)
                || self.is_importing(&p.entity_type).await
            {
                continue;
            }
            repaired += self.scan_type(p, since).await?;
            repaired += self.diff_type(p).await?;
        }
        self.status
            .reconcile_repairs
            .fetch_add(repaired, Ordering::Relaxed);
        self.status.reconcile_rounds.fetch_add(1, Ordering::Relaxed);
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
