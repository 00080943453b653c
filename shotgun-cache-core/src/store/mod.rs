//! The store: one trait the syncer and the query-server use, implemented by every backend.
//!
//! # Contract (every backend; checked by the conformance suite in `store::conformance`)
//! - **Writes** come only from the syncer, as a [`WriteBatch`]. On SQLite a batch is one transaction:
//!   entity writes, their journal entries, type states, the schema and the sync state (cursor) commit
//!   together. On RethinkDB (no multi-document transactions) the same batch is made *idempotent*
//!   instead: entity writes are guarded by event ids, journal entries are keyed so a replay writes each
//!   once, and the sync state is written last.
//! - **Ordering guard**: see `model::entity`. A `Patch` applies a field change only if its event id is
//!   greater than that field's version; `Retire`/`Revive` only if greater than `retired_version`;
//!   an `Upsert` (full state from the site) replaces all cached values and raises every version to at
//!   least its `floor`.
//! - **Journal**: every write that changes something appends exactly one [`JournalEntry`] (when the
//!   batch has `journal: true`); a write that changes nothing (stale, or same values) appends none.
//!   Sequence numbers are assigned by the store, strictly increasing, without reuse.
//! - **Links**: reads apply the link rule of `filter::EntitySource` (live names from the cached target's
//!   display name; links to cached, retired targets are absent).
//! - **Reads** never load a whole table into memory; filters run in the database wherever the
//!   backend can express them.
//! - **Staging**: a type can be re-imported into a staging copy (`begin_staging`, `WriteBatch::staging`)
//!   while queries keep reading the live copy; `promote_staging` swaps it in atomically.

pub mod conformance;
pub(crate) mod guard;
#[cfg(feature = "rethinkdb")]
pub mod rethinkdb;
pub mod sqlite;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value as Json;

use crate::filter::Filter;
use crate::model::{DateTime, Entity, EntityRef, FieldSchema, SiteSchema, Value};
use crate::query::{FindQuery, Record};

/// Errors at the store boundary. Mapped to gRPC codes in the query-server's one error mapping.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is busy beyond the timeout; retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A call took longer than its deadline.
    #[error("store call timed out after {0:?}")]
    Timeout(Duration),
    /// The request cannot be run (e.g. a type that is not cached, a field with no column).
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// Data in the store does not have the expected shape.
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
    #[error("store error: {0}")]
    Internal(String),
}

/// How one cached type is laid out: the cached fields (with their schemas) and which fields get indexes.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeLayout {
    pub entity_type: String,
    /// Cached fields, in a stable order. Never contains `id`.
    pub fields: Vec<FieldSchema>,
    /// Fields to index for filtering (a subset of `fields`; backends may add their own).
    pub indexed: Vec<String>,
}

/// One field change of a `_Change` event.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldChange {
    /// Set a field (`new_value`).
    Set(String, Value),
    /// multi_entity `added`: append links not already present.
    Add(String, Vec<EntityRef>),
    /// multi_entity `removed`: drop these links.
    Remove(String, Vec<EntityRef>),
}

impl FieldChange {
    pub fn field(&self) -> &str {
        match self {
            FieldChange::Set(f, _) | FieldChange::Add(f, _) | FieldChange::Remove(f, _) => f,
        }
    }
}

/// One entity write. `event_id` is the EventLogEntry id it comes from (0 when it has none: import,
/// reconciliation scan, write-through of a forwarded write).
#[derive(Debug, Clone, PartialEq)]
pub enum EntityWrite {
    /// The entity's full cached state as read from the site (import page, re-read, scan, write-through).
    /// Creates the row if missing. Every field version becomes `max(version, floor)`;
    /// `retired` is taken from `entity.retired` unless `retired_version > floor`.
    Upsert {
        entity: Entity,
        floor: i64,
        event_id: i64,
    },
    /// Field changes from one `_Change` event. Outcome `Missing` when the row does not exist.
    Patch {
        entity_type: String,
        id: i64,
        event_id: i64,
        changes: Vec<FieldChange>,
    },
    Retire {
        entity_type: String,
        id: i64,
        event_id: i64,
    },
    Revive {
        entity_type: String,
        id: i64,
        event_id: i64,
    },
    /// Drop the row from the cache (it left the type's cache filter, or no longer exists on the site).
    Remove {
        entity_type: String,
        id: i64,
        event_id: i64,
    },
}

/// The kind of change a journal entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JournalOp {
    Create,
    Update,
    Retire,
    Revive,
    /// Left the cache (filter no longer matches, or gone from the site).
    Remove,
    /// The whole type was re-imported (`entity_id` is 0): subscribers should re-read it.
    Reload,
}

impl JournalOp {
    pub fn as_str(self) -> &'static str {
        match self {
            JournalOp::Create => "create",
            JournalOp::Update => "update",
            JournalOp::Retire => "retire",
            JournalOp::Revive => "revive",
            JournalOp::Remove => "remove",
            JournalOp::Reload => "reload",
        }
    }

    pub fn parse(s: &str) -> Option<JournalOp> {
        Some(match s {
            "create" => JournalOp::Create,
            "update" => JournalOp::Update,
            "retire" => JournalOp::Retire,
            "revive" => JournalOp::Revive,
            "remove" => JournalOp::Remove,
            "reload" => JournalOp::Reload,
            _ => return None,
        })
    }
}

/// One entry of the durable, ordered change journal.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    /// Assigned by the store; strictly increasing.
    pub seq: u64,
    pub event_id: i64,
    pub entity_type: String,
    pub entity_id: i64,
    pub op: JournalOp,
    /// The cached fields this change touched (empty for retire/revive/remove/reload).
    pub fields: Vec<String>,
    /// When the cache applied it (the syncer's clock).
    pub at: DateTime,
    /// The entity's cached state right after the change (`None` for `Remove` and `Reload`).
    pub entity: Option<Entity>,
}

/// Import progress and readiness of one cached type.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeState {
    pub entity_type: String,
    pub phase: TypePhase,
    /// Rows imported so far / expected, for the phase in progress.
    pub done: u64,
    pub total: u64,
    /// A hash of the type's config (fields + filter); a change triggers a re-import.
    pub config_hash: String,
    /// When the last complete import finished.
    pub ready_at: Option<DateTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TypePhase {
    /// First import in progress: the type must not be served.
    Importing,
    /// Served.
    Ready,
    /// Re-import into staging in progress: the live copy is still served.
    Reimporting,
}

impl TypePhase {
    pub fn as_str(self) -> &'static str {
        match self {
            TypePhase::Importing => "importing",
            TypePhase::Ready => "ready",
            TypePhase::Reimporting => "reimporting",
        }
    }

    pub fn parse(s: &str) -> Option<TypePhase> {
        Some(match s {
            "importing" => TypePhase::Importing,
            "ready" => TypePhase::Ready,
            "reimporting" => TypePhase::Reimporting,
            _ => return None,
        })
    }
}

/// Everything the syncer commits at once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    /// Writes to live data.
    pub writes: Vec<EntityWrite>,
    /// Writes to staging copies (types in `begin_staging`); never journaled.
    pub staging: Vec<EntityWrite>,
    /// Whether `writes` produce journal entries (false for a first import, which nobody can see yet).
    pub journal: bool,
    pub type_states: Vec<TypeState>,
    /// Small named documents, e.g. `"cursor"` (the syncer's event-log cursor). Written last.
    pub state: BTreeMap<String, Json>,
    /// A new site schema to persist.
    pub schema: Option<SiteSchema>,
}

impl WriteBatch {
    /// A batch that writes `entities` as a first import does: each an upsert with floor 0 and no
    /// event, not journaled.
    pub fn import(entities: impl IntoIterator<Item = Entity>) -> WriteBatch {
        WriteBatch {
            writes: entities
                .into_iter()
                .map(|entity| EntityWrite::Upsert {
                    entity,
                    floor: 0,
                    event_id: 0,
                })
                .collect(),
            ..WriteBatch::default()
        }
    }
}

/// What happened to one write of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// Something changed; journaled (if the batch journals) with these changed fields.
    Applied { op: JournalOp, fields: Vec<String> },
    /// Nothing changed (same values, or every change was older than the stored versions).
    Unchanged,
    /// A `Patch`, `Retire` or `Revive` for a row the store does not have: the syncer should re-read it.
    Missing,
}

/// The result of a commit: one outcome per `writes` entry (same order), and the journal entries appended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommitResult {
    pub outcomes: Vec<WriteOutcome>,
    pub journal: Vec<JournalEntry>,
}

/// A count request.
#[derive(Debug, Clone, PartialEq)]
pub struct CountQuery {
    pub entity_type: String,
    pub filter: Filter,
    pub retired_only: bool,
    /// Anchor for relative date operators.
    pub now: DateTime,
}

/// What the result cache counted since the store was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResultCacheStats {
    /// Answers served from the cache.
    pub hits: u64,
    /// Cacheable requests read from the store.
    pub misses: u64,
    /// Requests that cannot be cached (their filter depends on the current time).
    pub uncacheable: u64,
    /// Entries evicted to stay within the budget.
    pub evictions: u64,
    /// Entries dropped because the data changed.
    pub invalidations: u64,
    /// Entries held now.
    pub entries: u64,
    /// Their estimated size in bytes.
    pub bytes: u64,
    /// The size bound.
    pub budget_bytes: u64,
}

/// A find's answer as [`Store::find_shared`] hands it out, shared with the backend's result cache
/// when it came from there (it derefs to the records).
///
/// It has one slot for the serving layer: the query-server keeps the records' protobuf encoding
/// there ([`FoundRows::wire`]), so an answer served from the cache again and again is converted and
/// encoded once. The result cache charges a cached answer for that encoding up front.
#[derive(Debug, Default)]
pub struct FoundRows {
    records: Vec<Record>,
    wire: std::sync::OnceLock<bytes::Bytes>,
}

impl FoundRows {
    pub fn new(records: Vec<Record>) -> FoundRows {
        FoundRows {
            records,
            wire: std::sync::OnceLock::new(),
        }
    }

    /// The records' encoding for the query-server's gRPC `Find` (`FindResponse` field-1 entries):
    /// made by `encode` on the first call, then the same bytes (a reference-counted copy).
    pub fn wire(&self, encode: impl FnOnce(&[Record]) -> bytes::Bytes) -> bytes::Bytes {
        self.wire.get_or_init(|| encode(&self.records)).clone()
    }

    /// An upper estimate of the size of [`wire`](Self::wire)'s encoding, which a result cache
    /// charges an answer for before it is made: the payload bytes, and per record, field and link a
    /// few bytes more than protobuf spends on tags, lengths and varints. (The query-server's
    /// encoder tests check it against real encodings.)
    pub fn wire_estimate(&self) -> usize {
        fn link(r: &EntityRef) -> usize {
            24 + r.entity_type.len() + r.name.as_ref().map_or(0, String::len)
        }
        fn value(v: &Value) -> usize {
            match v {
                Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) => 16,
                Value::Date(_) | Value::DateTime(_) => 24,
                Value::Text(s) => 16 + s.len(),
                Value::Entity(r) => 8 + link(r),
                Value::MultiEntity(list) => 16 + list.iter().map(link).sum::<usize>(),
                Value::Json(j) => 16 + j.to_string().len(),
            }
        }
        self.records
            .iter()
            .map(|r| {
                24 + r.entity_type.len()
                    + r.fields
                        .iter()
                        .map(|(k, v)| 16 + k.len() + value(v))
                        .sum::<usize>()
            })
            .sum()
    }

    /// The records, without a copy when nothing else shares them.
    pub fn into_records(self: std::sync::Arc<Self>) -> Vec<Record> {
        match std::sync::Arc::try_unwrap(self) {
            Ok(rows) => rows.records,
            Err(shared) => shared.records.clone(),
        }
    }
}

impl std::ops::Deref for FoundRows {
    type Target = [Record];
    fn deref(&self) -> &[Record] {
        &self.records
    }
}

impl PartialEq for FoundRows {
    /// Equal records (the encoding is derived from them).
    fn eq(&self, other: &FoundRows) -> bool {
        self.records == other.records
    }
}

/// The store trait. Every method may be called concurrently from many tasks.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A cheap round trip, for health checks.
    async fn ping(&self) -> Result<(), StoreError>;

    /// What the result cache counted, when the backend has one and it is enabled (see
    /// [`sqlite::SqliteStore::enable_result_cache`]).
    fn result_cache_stats(&self) -> Option<ResultCacheStats> {
        None
    }

    /// Creates or migrates tables, columns and indexes for the cached types, and persists the schema.
    /// Idempotent; called at start-up and when the config or schema changes.
    async fn prepare(&self, schema: &SiteSchema, layouts: &[TypeLayout]) -> Result<(), StoreError>;

    /// The persisted site schema, if any.
    async fn schema(&self) -> Result<Option<SiteSchema>, StoreError>;

    /// The layouts last given to `prepare`.
    async fn layouts(&self) -> Result<Vec<TypeLayout>, StoreError>;

    /// Commits a batch (see the module contract).
    async fn commit(&self, batch: WriteBatch) -> Result<CommitResult, StoreError>;

    /// [`commit`](Self::commit), handing the batch back with the error whenever a second attempt
    /// with it is correct (nothing of it was used up, or the backend's commit is replay-safe), so
    /// a caller that retries needs no copy made in advance. `None` with the error otherwise. The
    /// default hands nothing back.
    async fn commit_or_return(
        &self,
        batch: WriteBatch,
    ) -> Result<CommitResult, (StoreError, Option<WriteBatch>)> {
        self.commit(batch).await.map_err(|e| (e, None))
    }

    /// Starts a re-import of `layout.entity_type` into an empty staging copy (dropping any old one).
    async fn begin_staging(&self, layout: &TypeLayout) -> Result<(), StoreError>;

    /// Atomically replaces the live copy of the type with its staging copy, sets its state, and
    /// journals one `Reload` entry.
    async fn promote_staging(&self, state: TypeState) -> Result<(), StoreError>;

    /// Finds rows (see `query` for the exact semantics).
    async fn find(&self, query: &FindQuery) -> Result<Vec<Record>, StoreError>;

    /// [`find`](Self::find), answered as a shared list: a backend with a result cache hands out
    /// its cached answer without copying it.
    async fn find_shared(
        &self,
        query: &FindQuery,
    ) -> Result<std::sync::Arc<FoundRows>, StoreError> {
        Ok(std::sync::Arc::new(FoundRows::new(self.find(query).await?)))
    }

    /// Counts matching rows.
    async fn count(&self, query: &CountQuery) -> Result<u64, StoreError>;

    /// One entity with all its bookkeeping (live or retired), or `None`.
    async fn get(&self, entity_type: &str, id: i64) -> Result<Option<Entity>, StoreError>;

    /// Ids of a type in ascending order, `> after_id`, at most `limit`, retired included (for
    /// reconciliation id-set diffs).
    async fn ids(
        &self,
        entity_type: &str,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<(i64, bool)>, StoreError>;

    /// Number of live and retired rows of each cached type.
    async fn type_counts(&self) -> Result<BTreeMap<String, (u64, u64)>, StoreError>;

    async fn type_states(&self) -> Result<Vec<TypeState>, StoreError>;

    async fn get_state(&self, key: &str) -> Result<Option<Json>, StoreError>;

    /// Journal entries with `seq > after`, in order, at most `limit`.
    async fn journal_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<JournalEntry>, StoreError>;

    /// The highest journal sequence number (0 when empty).
    async fn journal_head(&self) -> Result<u64, StoreError>;

    /// The lowest retained sequence number (entries before it were trimmed), or `None` when empty.
    async fn journal_tail(&self) -> Result<Option<u64>, StoreError>;

    /// Deletes the oldest journal entries: a prefix by sequence number, up to the first entry
    /// applied at or after `before` (everything when there is none). An entry applied before
    /// `before` but after a kept one (the writer's clock stepped back) stays, so the journal never
    /// has a hole. Returns how many were removed.
    async fn trim_journal(&self, before: DateTime) -> Result<u64, StoreError>;

    /// Waits until the journal head is greater than `after` or `timeout` passes; returns the head.
    /// The default polls; backends with change notification override it.
    async fn wait_journal(&self, after: u64, timeout: Duration) -> Result<u64, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let head = self.journal_head().await?;
            if head > after || tokio::time::Instant::now() >= deadline {
                return Ok(head);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
