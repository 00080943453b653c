//! The domain service behind every query-server endpoint: Find, Count, schema, sync status and Watch
//! in domain terms (no wire types).
//!
//! Each request is checked against one [`CatalogSnapshot`]: the type must exist, be cached and be
//! served (the partial-import rule); the filter, return fields and sorts go through the shared
//! validation (`filter::validate`, `filter::validate_path`) so error messages are the shared ones;
//! then every field they read must be cached. Only then does the store run the query.
//!
//! **Architecture Invariant:** this service never writes to the store; it only calls read methods.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::Digest;
use shotgun_cache_core::filter::{Filter, RawFilter, validate, validate_path};
use shotgun_cache_core::model::{DateTime, EntitySchema};
use shotgun_cache_core::query::{Direction, FindQuery, Sort};
use shotgun_cache_core::store::{CountQuery, FoundRows, JournalEntry, Store, TypeState};

use crate::catalog::{Catalog, CatalogSnapshot};
use crate::error::{QueryError, invalid};
use crate::watch::JournalHub;

/// The largest page a Find may ask for.
pub const MAX_PAGE_SIZE: u32 = 5000;
/// The page size when a Find does not give one.
pub const DEFAULT_PAGE_SIZE: u32 = 500;
/// The most return fields one Find (or Watch) may name: a page of [`MAX_PAGE_SIZE`] records holds
/// at most this many values each, which bounds the memory one answer takes. (A Shotgun type has a
/// few hundred fields at most.)
pub const MAX_FIELDS: usize = 1000;
/// The most sort keys one Find may give.
pub const MAX_SORTS: usize = 64;
/// The default Watch heartbeat interval, in seconds.
pub const DEFAULT_HEARTBEAT_SECS: u32 = 10;
/// The longest Watch heartbeat interval, in seconds.
pub const MAX_HEARTBEAT_SECS: u32 = 300;

/// One sort key as requested (path not yet resolved).
#[derive(Debug, Clone, PartialEq)]
pub struct SortParam {
    pub path: String,
    pub direction: Direction,
}

/// A Find (or FindOne: `limit` 1) request in domain terms, before validation.
#[derive(Debug, Clone, PartialEq)]
pub struct FindParams {
    pub entity_type: String,
    /// `None` matches every row.
    pub filter: Option<RawFilter>,
    pub fields: Vec<String>,
    pub sorts: Vec<SortParam>,
    /// 0 = [`DEFAULT_PAGE_SIZE`].
    pub limit: u32,
    /// 1-based; 0 = 1.
    pub page: u32,
    /// Opaque cursor from a previous page; empty = none.
    pub cursor: String,
    pub retired_only: bool,
}

/// One page of Find results.
#[derive(Debug, Clone, PartialEq)]
pub struct FindPage {
    /// Shared with the store's result cache when it came from there.
    pub records: std::sync::Arc<FoundRows>,
    /// Set when the page was full (there may be more rows).
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CountParams {
    pub entity_type: String,
    pub filter: Option<RawFilter>,
    pub retired_only: bool,
}

/// A type's state and row counts (live, retired).
#[derive(Debug, Clone, PartialEq)]
pub struct TypeStatusInfo {
    pub entity_type: String,
    pub state: Option<TypeState>,
    pub counts: (u64, u64),
}

/// One type of the schema with what the cache keeps of it.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeInfo {
    pub schema: EntitySchema,
    pub cached: bool,
    pub cached_fields: BTreeSet<String>,
    pub indexed_fields: BTreeSet<String>,
    pub status: Option<TypeStatusInfo>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyncStatus {
    pub lag_seconds: Option<f64>,
    pub last_event_id: i64,
    pub last_applied_at: Option<DateTime>,
    pub journal_head: u64,
    pub types: Vec<TypeStatusInfo>,
}

/// Where a Watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStart {
    /// Entries with `seq > n`.
    After(u64),
    /// Entries committed after the call.
    Now,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WatchParams {
    /// Empty = every type.
    pub entity_types: Vec<String>,
    pub filter: Option<RawFilter>,
    pub start: WatchStart,
    /// Empty = every cached field.
    pub fields: Vec<String>,
    /// 0 = [`DEFAULT_HEARTBEAT_SECS`].
    pub heartbeat_secs: u32,
}

/// A validated Watch request, ready for the journal hub.
#[derive(Debug, Clone)]
pub struct WatchPlan {
    /// Empty = every type.
    pub entity_types: BTreeSet<String>,
    pub filter: Option<Filter>,
    pub after: u64,
    /// `None` = every cached field.
    pub fields: Option<Arc<Vec<String>>>,
    pub heartbeat: Duration,
    /// The cached types when the Watch started (for the link rule of filters).
    pub cached_types: Arc<BTreeSet<String>>,
}

/// One change delivered to a Watch: the journal entry and the fields to carry.
#[derive(Debug, Clone)]
pub struct WatchChange {
    pub entry: Arc<JournalEntry>,
    /// `None` = every cached field.
    pub fields: Option<Arc<Vec<String>>>,
}

/// One item of a Watch stream.
#[derive(Debug, Clone)]
pub enum WatchItem {
    Change(WatchChange),
    Heartbeat {
        head_seq: u64,
        resume_after_seq: u64,
        at: DateTime,
    },
}

/// The domain service. Cheap to clone.
#[derive(Clone)]
pub struct QueryService {
    store: Arc<dyn Store>,
    catalog: Catalog,
    hub: JournalHub,
    /// Bounds concurrent store queries (and so store connections and their memory). Waiting for a
    /// permit counts against the call's deadline.
    limiter: Arc<tokio::sync::Semaphore>,
}

/// The default bound on concurrent store queries: twice the cores, at least 4.
pub fn default_query_concurrency() -> usize {
    std::thread::available_parallelism().map_or(4, |n| (n.get() * 2).max(4))
}

/// Records how long a store call took (the `store_query_seconds` histogram).
fn observe_store(op: &'static str, started: Instant) {
    metrics::histogram!("store_query_seconds", "op" => op).record(started.elapsed().as_secs_f64());
}

impl QueryService {
    pub fn new(store: Arc<dyn Store>, catalog: Catalog, hub: JournalHub) -> QueryService {
        let limiter = Arc::new(tokio::sync::Semaphore::new(default_query_concurrency()));
        QueryService {
            store,
            catalog,
            hub,
            limiter,
        }
    }

    /// The same service with at most `n` store queries running at once.
    pub fn with_max_concurrent_queries(mut self, n: usize) -> QueryService {
        self.limiter = Arc::new(tokio::sync::Semaphore::new(n.max(1)));
        self
    }

    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, QueryError> {
        self.limiter.acquire().await.map_err(|_| {
            QueryError::Store(shotgun_cache_core::store::StoreError::Internal(
                "query limiter closed".into(),
            ))
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn hub(&self) -> &JournalHub {
        &self.hub
    }

    /// Validates a filter for a served type and checks every path it reads is cached.
    pub fn resolve_filter(
        snap: &CatalogSnapshot,
        entity_type: &str,
        raw: Option<&RawFilter>,
    ) -> Result<Filter, QueryError> {
        let schema = snap.schema()?;
        let Some(raw) = raw else {
            return Ok(Filter::all());
        };
        let filter = validate(schema, entity_type, raw)?;
        check_filter_cached(snap, entity_type, &filter)?;
        Ok(filter)
    }

    /// Validates and resolves a Find request into a store query, plus its page size and the
    /// query's cursor hash.
    pub fn plan_find(&self, p: &FindParams) -> Result<(FindQuery, u64, u64), QueryError> {
        let snap = self.catalog.snapshot();
        snap.check_served_type(&p.entity_type)?;
        let schema = snap.schema()?;
        let filter = Self::resolve_filter(&snap, &p.entity_type, p.filter.as_ref())?;
        at_most("fields", p.fields.len(), MAX_FIELDS)?;
        at_most("sorts", p.sorts.len(), MAX_SORTS)?;
        let mut fields = Vec::with_capacity(p.fields.len());
        // A path is its text: the same text twice is one return field.
        let mut seen = std::collections::HashSet::with_capacity(p.fields.len());
        for f in &p.fields {
            // `type` and `id` are always returned; accept them as requested fields too.
            if f == "type" || !seen.insert(f.as_str()) {
                continue;
            }
            let path = validate_path(schema, &p.entity_type, f)?;
            snap.check_path_cached(&p.entity_type, &path, "fields")?;
            fields.push(path);
        }
        let mut sorts = Vec::with_capacity(p.sorts.len());
        for s in &p.sorts {
            let path = validate_path(schema, &p.entity_type, &s.path)?;
            snap.check_path_cached(&p.entity_type, &path, "sorts")?;
            sorts.push(Sort {
                path,
                direction: s.direction,
            });
        }
        let limit = match p.limit {
            0 => DEFAULT_PAGE_SIZE,
            l if l > MAX_PAGE_SIZE => {
                return Err(invalid(format!(
                    "limit {l} is over the maximum page size of {MAX_PAGE_SIZE}"
                )));
            }
            l => l,
        };
        let hash = query_hash(p, limit);
        let offset = if p.cursor.is_empty() {
            u64::from(p.page.max(1) - 1) * u64::from(limit)
        } else {
            if p.page != 0 {
                return Err(invalid(
                    "page and cursor cannot both be set: pass one or the other",
                ));
            }
            decode_cursor(&p.cursor, hash)?
        };
        let q = FindQuery {
            entity_type: p.entity_type.clone(),
            filter,
            fields,
            sorts,
            offset,
            limit: Some(u64::from(limit)),
            retired_only: p.retired_only,
        };
        Ok((q, u64::from(limit), hash))
    }

    /// Find: one page of matching records.
    pub async fn find(&self, p: &FindParams) -> Result<FindPage, QueryError> {
        let (q, limit, hash) = self.plan_find(p)?;
        let _permit = self.permit().await?;
        let started = Instant::now();
        let records = self.store.find_shared(&q).await;
        observe_store("find", started);
        let records = records?;
        let next_cursor = (records.len() as u64 == limit && limit > 0)
            .then(|| encode_cursor(q.offset + limit, hash));
        Ok(FindPage {
            records,
            next_cursor,
        })
    }

    /// Count: the number of matching rows.
    pub async fn count(&self, p: &CountParams) -> Result<u64, QueryError> {
        let snap = self.catalog.snapshot();
        snap.check_served_type(&p.entity_type)?;
        let filter = Self::resolve_filter(&snap, &p.entity_type, p.filter.as_ref())?;
        let _permit = self.permit().await?;
        let q = CountQuery {
            entity_type: p.entity_type.clone(),
            filter,
            retired_only: p.retired_only,
            now: DateTime::now(),
        };
        let started = Instant::now();
        let n = self.store.count(&q).await;
        observe_store("count", started);
        Ok(n?)
    }

    /// The schema of the requested types (all when empty), with what is cached and each cached type's state.
    pub async fn schema(&self, types: &[String]) -> Result<Vec<TypeInfo>, QueryError> {
        let snap = self.catalog.snapshot();
        let schema = snap.schema()?;
        for t in types {
            if schema.entity(t).is_none() {
                snap.check_served_type(t)?;
            }
        }
        let started = Instant::now();
        let counts = self.store.type_counts().await;
        observe_store("type_counts", started);
        let counts = counts?;
        let mut out = Vec::new();
        for (name, ent) in &schema.types {
            if !types.is_empty() && !types.iter().any(|t| t == name) {
                continue;
            }
            let layout = snap.layouts.get(name);
            out.push(TypeInfo {
                schema: ent.clone(),
                cached: layout.is_some(),
                cached_fields: layout
                    .map(|l| l.fields.iter().map(|f| f.name.clone()).collect())
                    .unwrap_or_default(),
                indexed_fields: layout
                    .map(|l| l.indexed.iter().cloned().collect())
                    .unwrap_or_default(),
                status: layout.map(|_| TypeStatusInfo {
                    entity_type: name.clone(),
                    state: snap.states.get(name).cloned(),
                    counts: counts.get(name).copied().unwrap_or((0, 0)),
                }),
            });
        }
        Ok(out)
    }

    /// Lag, last event and every cached type's state and counts.
    pub async fn sync_status(&self) -> Result<SyncStatus, QueryError> {
        let snap = self.catalog.snapshot();
        let started = Instant::now();
        let counts = self.store.type_counts().await?;
        let head = self.store.journal_head().await?;
        let last = if head > 0 {
            self.store
                .journal_after(head - 1, 1)
                .await?
                .into_iter()
                .next()
        } else {
            None
        };
        let cursor = self.store.get_state("cursor").await?;
        observe_store("sync_status", started);
        let (last_event_id, event_at) =
            cursor.as_ref().map(parse_cursor_state).unwrap_or((0, None));
        let lag_seconds = event_at.map(|at| (DateTime::now().0 - at.0).max(0) as f64);
        let mut names: BTreeSet<&String> = snap.layouts.keys().collect();
        names.extend(snap.states.keys());
        let types = names
            .into_iter()
            .map(|n| TypeStatusInfo {
                entity_type: n.clone(),
                state: snap.states.get(n).cloned(),
                counts: counts.get(n).copied().unwrap_or((0, 0)),
            })
            .collect();
        Ok(SyncStatus {
            lag_seconds,
            last_event_id,
            last_applied_at: last.map(|e| e.at),
            journal_head: head,
            types,
        })
    }

    /// Validates a Watch request and resolves its start position (checking it was not trimmed).
    pub async fn plan_watch(&self, p: &WatchParams) -> Result<WatchPlan, QueryError> {
        let snap = self.catalog.snapshot();
        let schema = snap.schema()?;
        for t in &p.entity_types {
            if schema.entity(t).is_none() || !snap.is_cached_type(t) {
                snap.check_served_type(t)?;
            }
        }
        let filter = match &p.filter {
            None => None,
            Some(raw) => {
                let [only] = p.entity_types.as_slice() else {
                    return Err(invalid(format!(
                        "a Watch filter needs exactly one entity type in entity_types (got {})",
                        p.entity_types.len()
                    )));
                };
                Some(Self::resolve_filter(&snap, only, Some(raw))?)
            }
        };
        let fields = if p.fields.is_empty() {
            None
        } else {
            let [only] = p.entity_types.as_slice() else {
                return Err(invalid(format!(
                    "Watch fields need exactly one entity type in entity_types (got {})",
                    p.entity_types.len()
                )));
            };
            at_most("fields", p.fields.len(), MAX_FIELDS)?;
            for f in &p.fields {
                let path = validate_path(schema, only, f)?;
                if path.is_deep() {
                    return Err(invalid(format!(
                        "Watch field '{f}' is a deep-link path; only plain fields can be watched"
                    )));
                }
                snap.check_path_cached(only, &path, "fields")?;
            }
            Some(Arc::new(p.fields.clone()))
        };
        let heartbeat_secs = match p.heartbeat_secs {
            0 => DEFAULT_HEARTBEAT_SECS,
            s if s > MAX_HEARTBEAT_SECS => {
                return Err(invalid(format!(
                    "heartbeat_secs {s} is over the maximum of {MAX_HEARTBEAT_SECS}"
                )));
            }
            s => s,
        };
        let head = self.store.journal_head().await?;
        let after = match p.start {
            WatchStart::Now => head,
            WatchStart::After(n) => {
                if n > head {
                    return Err(QueryError::OutOfRange(format!(
                        "after_seq {n} is past the journal head {head}: this store never had that entry"
                    )));
                }
                if n > 0
                    && let Some(tail) = self.store.journal_tail().await?
                    && tail > n + 1
                {
                    return Err(QueryError::OutOfRange(format!(
                        "journal entries after seq {n} were trimmed (the oldest retained entry is {tail}): \
                         re-read the data and watch from now"
                    )));
                }
                n
            }
        };
        Ok(WatchPlan {
            entity_types: p.entity_types.iter().cloned().collect(),
            filter,
            after,
            fields,
            heartbeat: Duration::from_secs(u64::from(heartbeat_secs)),
            cached_types: Arc::new(snap.layouts.keys().cloned().collect()),
        })
    }
}

/// `Ok` when a request lists at most `max` `what`, else `INVALID_ARGUMENT` naming both counts.
fn at_most(what: &str, n: usize, max: usize) -> Result<(), QueryError> {
    if n > max {
        return Err(invalid(format!(
            "{n} {what} requested; at most {max} are allowed in one request"
        )));
    }
    Ok(())
}

fn check_filter_cached(
    snap: &CatalogSnapshot,
    entity_type: &str,
    f: &Filter,
) -> Result<(), QueryError> {
    match f {
        Filter::Condition(c) => snap.check_path_cached(entity_type, &c.path, "filter"),
        Filter::Group { children, .. } => children
            .iter()
            .try_for_each(|c| check_filter_cached(snap, entity_type, c)),
    }
}

/// Reads `(last_event_id, newest event time)` from the syncer's `cursor` state document.
///
/// The syncer's cursor is `{"low_water", "head", "head_created_at" (unix seconds, site clock), ...}`:
/// `head` is the newest event applied and `head_created_at` its creation time on the site. Other
/// shapes are accepted too: a bare number, or `last_event_id`/`event_id` with `last_event_at` (a
/// datetime string).
fn parse_cursor_state(v: &serde_json::Value) -> (i64, Option<DateTime>) {
    if let Some(n) = v.as_i64() {
        return (n, None);
    }
    let id = ["head", "last_event_id", "last_applied_event_id", "event_id"]
        .iter()
        .find_map(|k| v.get(*k).and_then(serde_json::Value::as_i64))
        .unwrap_or(0);
    let at = ["head_created_at", "last_event_at", "event_created_at"]
        .iter()
        .find_map(|k| {
            let x = v.get(*k)?;
            match x.as_i64() {
                Some(secs) if secs > 0 => Some(DateTime(secs)),
                Some(_) => None,
                None => x.as_str().and_then(DateTime::parse),
            }
        });
    (id, at)
}

/// A stable hash of what defines a query's row sequence (not its return fields), for cursors.
fn query_hash(p: &FindParams, limit: u32) -> u64 {
    /// Feeds formatted text straight into the hash (no string per Find).
    struct Feed(sha2::Sha256);
    impl std::fmt::Write for Feed {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.update(s.as_bytes());
            Ok(())
        }
    }
    let mut h = Feed(sha2::Sha256::new());
    // Writing into the hash cannot fail.
    let _ = std::fmt::Write::write_fmt(
        &mut h,
        format_args!(
            "{:?}|{:?}|{:?}|{}|{}",
            p.entity_type, p.filter, p.sorts, limit, p.retired_only
        ),
    );
    let d = h.0.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

fn encode_cursor(offset: u64, hash: u64) -> String {
    let mut b = Vec::with_capacity(17);
    b.push(1u8);
    b.extend_from_slice(&offset.to_be_bytes());
    b.extend_from_slice(&hash.to_be_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn decode_cursor(cursor: &str, hash: u64) -> Result<u64, QueryError> {
    let bad = || {
        invalid(format!(
            "cursor '{cursor}' is not a cursor this server issued"
        ))
    };
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    if b.len() != 17 || b[0] != 1 {
        return Err(bad());
    }
    let mut o = [0u8; 8];
    o.copy_from_slice(&b[1..9]);
    let mut h = [0u8; 8];
    h.copy_from_slice(&b[9..17]);
    if u64::from_be_bytes(h) != hash {
        return Err(invalid(
            "cursor belongs to a different query (entity_type, filter, sorts, limit and retired_only must stay the same)",
        ));
    }
    Ok(u64::from_be_bytes(o))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn cursor_state_shapes() {
        let (id, at) = parse_cursor_state(
            &json!({"low_water": 5, "head": 9, "head_created_at": 1_700_000_000, "gaps": {}}),
        );
        assert_eq!((id, at), (9, Some(DateTime(1_700_000_000))));
        assert_eq!(
            parse_cursor_state(&json!({"head": 3, "head_created_at": 0})),
            (3, None)
        );
        assert_eq!(parse_cursor_state(&json!(17)), (17, None));
        assert_eq!(
            parse_cursor_state(
                &json!({"last_event_id": 4, "last_event_at": "2026-01-01T00:00:00Z"})
            ),
            (4, DateTime::parse("2026-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn cursors_round_trip_and_are_bound_to_their_query() {
        let c = encode_cursor(1500, 77);
        assert_eq!(decode_cursor(&c, 77).expect("same query"), 1500);
        assert!(decode_cursor(&c, 78).is_err());
        assert!(decode_cursor("nope", 77).is_err());
    }
}
