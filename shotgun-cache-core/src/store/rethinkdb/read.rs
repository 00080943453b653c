//! Reads: find and count (compiled filters, in-database sorting and paging), id scans, counts, the
//! journal, and `wait_journal` over a changefeed.
//!
//! # Find
//! The filter compiles to a ReQL predicate ([`super::compile`]); one indexed condition narrows the
//! scan. When the predicate is exact, sorting, `skip` and `limit` all run in the database and only
//! the page travels. When part of the filter cannot be expressed in ReQL (see `compile`), the
//! database still applies the rest and sorts; the reader then pulls the sorted candidates in growing
//! `limit`s and finishes the filter with `filter::matches`, so it holds at most the candidates up to
//! the requested page, never a whole table. Counting with such a filter streams the candidates in
//! batches. Links in results get live names and drop retired targets: their targets are fetched with
//! one `get_all` per type and page.
//!
//! Sorting by anything but `id` is an in-memory `order_by` on the server, which RethinkDB limits to
//! 100,000 rows (the `array_limit`); beyond that the query fails with `Invalid` naming the limit.
//! Sorting by `id` (the default) walks the primary index lazily and has no such limit.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ql2::term::TermType as T;
use serde_json::{Value as Json, json};
use tokio::sync::watch;

use super::RethinkStore;
use super::compile::{Compiler, filter_paths, id_order, index_plan};
use super::doc;
use super::term::{
    Term, and, array, asc, count as count_t, desc, eq, field, func1, limit, lit, op, op_opts, skip,
};
use super::wire::Conn;
use crate::filter::{FieldPath, Filter, matches};
use crate::model::{DataType, DateTime, Entity, EntityRef, Value};
use crate::query::{Direction, FindQuery, MemorySource, Record, project};
use crate::store::{JournalEntry, StoreError};

/// The compiled parts of a find or count.
struct Plan {
    /// The filtered selection (not yet ordered or paged).
    filtered: Term,
    /// The filtered selection in the query's order.
    ordered: Term,
    exact: bool,
}

fn plan(
    store: &RethinkStore,
    entity_type: &str,
    layout: &crate::store::TypeLayout,
    filter: &Filter,
    retired_only: bool,
    sorts: &[crate::query::Sort],
    now: DateTime,
) -> Plan {
    let comp = Compiler { store, now };
    let mut exact = true;
    let pred = func1(|row| {
        let (p, ex) = comp.filter(filter, &row);
        exact = ex;
        and(vec![eq(field(row, "retired"), json!(retired_only)), p])
    });
    let live = store.live(entity_type);
    let index = index_plan(filter, layout);
    let selection = match &index {
        Some(p) => p.apply(live.clone()),
        None => live.clone(),
    };
    let filtered = op(T::Filter, vec![selection, pred.clone()]);
    let ordered = match (index, id_order(sorts)) {
        (None, Some(dir)) => {
            let key = match dir {
                Direction::Asc => asc(json!("id")),
                Direction::Desc => desc(json!("id")),
            };
            op(
                T::Filter,
                vec![op_opts(T::OrderBy, vec![live], json!({"index": key})), pred],
            )
        }
        _ => {
            let mut keys: Vec<Term> = sorts.iter().flat_map(|s| comp.sort_keys(s)).collect();
            keys.push(asc(json!("id")));
            let mut args = vec![filtered.clone()];
            args.extend(keys);
            op(T::OrderBy, args)
        }
    };
    Plan {
        filtered,
        ordered,
        exact,
    }
}

pub(super) async fn find(store: &RethinkStore, q: &FindQuery) -> Result<Vec<Record>, StoreError> {
    let layout = store.layout(&q.entity_type).await?;
    if q.limit == Some(0) {
        return Ok(Vec::new());
    }
    let now = DateTime::now();
    let p = plan(
        store,
        &q.entity_type,
        &layout,
        &q.filter,
        q.retired_only,
        &q.sorts,
        now,
    );
    let kinds = store.kinds(&q.entity_type);
    let decode = |docs: Vec<Json>| -> Result<Vec<Entity>, StoreError> {
        docs.iter()
            .map(|d| doc::decode_entity(&q.entity_type, d, &kinds))
            .collect()
    };
    let mut src = MemorySource::new();
    let rows: Vec<Entity> = if p.exact {
        let mut t = p.ordered;
        if q.offset > 0 {
            t = skip(t, q.offset);
        }
        if let Some(n) = q.limit {
            t = limit(t, n);
        }
        decode(store.list(t).await?)?
    } else {
        // Part of the filter runs here: pull sorted candidates in growing pages.
        let mut paths = Vec::new();
        filter_paths(&q.filter, &mut paths);
        let want = q.limit.map(|n| q.offset.saturating_add(n));
        let mut k = want.map(|w| w.saturating_mul(2).saturating_add(100));
        loop {
            let t = match k {
                Some(k) => limit(p.ordered.clone(), k),
                None => p.ordered.clone(),
            };
            let candidates = decode(store.list(t).await?)?;
            let exhausted = k.is_none_or(|k| (candidates.len() as u64) < k);
            prefetch(store, &candidates, &paths, &mut src).await?;
            let matched: Vec<Entity> = candidates
                .into_iter()
                .filter(|e| matches(&q.filter, e, &src, now))
                .collect();
            if exhausted || want.is_some_and(|w| matched.len() as u64 >= w) {
                let end = want
                    .map(|w| w as usize)
                    .unwrap_or(matched.len())
                    .min(matched.len());
                let start = (q.offset as usize).min(end);
                break matched[start..end].to_vec();
            }
            k = k.map(|k| k.saturating_mul(4));
        }
    };
    let field_paths: Vec<&FieldPath> = q.fields.iter().collect();
    prefetch(store, &rows, &field_paths, &mut src).await?;
    Ok(rows.iter().map(|e| project(&src, e, &q.fields)).collect())
}

pub(super) async fn count(
    store: &RethinkStore,
    entity_type: &str,
    filter: &Filter,
    retired_only: bool,
    now: DateTime,
) -> Result<u64, StoreError> {
    let layout = store.layout(entity_type).await?;
    let p = plan(store, entity_type, &layout, filter, retired_only, &[], now);
    if p.exact {
        let n = store.atom(count_t(p.filtered)).await?;
        return n
            .as_u64()
            .ok_or_else(|| StoreError::Corrupt(format!("count returned {n}")));
    }
    // Stream the candidates in batches and finish the filter here.
    let kinds = store.kinds(entity_type);
    let mut paths = Vec::new();
    filter_paths(filter, &mut paths);
    let conn = store.conn().await?;
    let mut cursor = store
        .bounded(&conn, conn.start(&p.filtered, &json!({})))
        .await?;
    let mut n = 0u64;
    let mut src = MemorySource::new();
    loop {
        let batch = store.bounded(&conn, cursor.next_batch()).await?;
        let Some(batch) = batch else { break };
        let rows: Vec<Entity> = batch
            .iter()
            .map(|d| doc::decode_entity(entity_type, d, &kinds))
            .collect::<Result<_, _>>()?;
        prefetch(store, &rows, &paths, &mut src).await?;
        n += rows
            .iter()
            .filter(|e| matches(filter, e, &src, now))
            .count() as u64;
    }
    Ok(n)
}

/// The links a field holds on some entities (entity, multi_entity, and link objects in JSON lists).
fn links_of(rows: &[Entity], field_name: &str) -> Vec<EntityRef> {
    let mut out = Vec::new();
    for e in rows {
        match e.get(field_name) {
            Value::Entity(r) => out.push(r.clone()),
            Value::MultiEntity(l) => out.extend(l.iter().cloned()),
            Value::Json(Json::Array(items)) => {
                out.extend(items.iter().filter_map(|i| EntityRef::from_json(i).ok()))
            }
            _ => {}
        }
    }
    out
}

/// Loads into `src` every cached entity the paths reach from `rows` (for the link rule, live names
/// and deep links), one `get_all` per type and level.
async fn prefetch(
    store: &RethinkStore,
    rows: &[Entity],
    paths: &[&FieldPath],
    src: &mut MemorySource,
) -> Result<(), StoreError> {
    let cached: HashSet<String> = store.cached_types().into_iter().collect();
    for t in &cached {
        src.declare_type(t.clone());
    }
    for path in paths {
        let mut current: Vec<Entity> = rows.to_vec();
        for hop in &path.hops {
            let refs = links_of(&current, &hop.field);
            fetch(store, &refs, &cached, src).await?;
            current = refs
                .iter()
                .filter(|r| r.entity_type == hop.target_type)
                .filter_map(|r| src.get(&r.entity_type, r.id).cloned())
                .collect();
            if current.is_empty() {
                break;
            }
        }
        let link_leaf = path.leaf_type.is_link()
            || matches!(path.leaf_type, DataType::TagList | DataType::Addressing);
        if link_leaf && !current.is_empty() {
            let refs = links_of(&current, &path.leaf);
            fetch(store, &refs, &cached, src).await?;
        }
    }
    Ok(())
}

async fn fetch(
    store: &RethinkStore,
    refs: &[EntityRef],
    cached: &HashSet<String>,
    src: &mut MemorySource,
) -> Result<(), StoreError> {
    let mut by_type: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for r in refs {
        if cached.contains(&r.entity_type) && src.get(&r.entity_type, r.id).is_none() {
            by_type.entry(&r.entity_type).or_default().push(r.id);
        }
    }
    for (t, mut ids) in by_type {
        ids.sort_unstable();
        ids.dedup();
        let kinds = store.kinds(t);
        for chunk in ids.chunks(500) {
            let keys: Vec<Json> = chunk.iter().map(|i| json!(i)).collect();
            let docs = store
                .list(super::term::get_all(store.live(t), &keys, None))
                .await?;
            for d in docs {
                src.insert(doc::decode_entity(t, &d, &kinds)?);
            }
        }
    }
    Ok(())
}

pub(super) async fn ids(
    store: &RethinkStore,
    entity_type: &str,
    after_id: i64,
    n: usize,
) -> Result<Vec<(i64, bool)>, StoreError> {
    store.layout(entity_type).await?;
    let sel = op_opts(
        T::Between,
        vec![
            store.live(entity_type),
            json!(after_id),
            op(T::Maxval, vec![]),
        ],
        json!({"index": "id", "left_bound": "open"}),
    );
    let ordered = op_opts(T::OrderBy, vec![sel], json!({"index": asc(json!("id"))}));
    let t = op(
        T::Pluck,
        vec![limit(ordered, n as u64), json!("id"), json!("retired")],
    );
    let docs = store.list(t).await?;
    let mut out: Vec<(i64, bool)> = docs
        .iter()
        .map(|d| {
            let id = d
                .get("id")
                .and_then(Json::as_i64)
                .ok_or_else(|| StoreError::Corrupt(format!("id scan row {d}")))?;
            Ok((
                id,
                d.get("retired").and_then(Json::as_bool).unwrap_or(false),
            ))
        })
        .collect::<Result<_, StoreError>>()?;
    // The server orders them; reqlite may not, so make the contract hold regardless.
    out.sort_by_key(|x| x.0);
    Ok(out)
}

pub(super) async fn type_counts(
    store: &RethinkStore,
) -> Result<BTreeMap<String, (u64, u64)>, StoreError> {
    use crate::store::Store as _;
    let mut out = BTreeMap::new();
    for l in store.layouts().await? {
        let live = store.live(&l.entity_type);
        let t = array(vec![
            count_t(live.clone()),
            count_t(op(T::Filter, vec![live, lit(&json!({"retired": true}))])),
        ]);
        let r = store.atom(t).await?;
        let total = r.get(0).and_then(Json::as_u64).unwrap_or(0);
        let retired = r.get(1).and_then(Json::as_u64).unwrap_or(0);
        out.insert(
            l.entity_type.clone(),
            (total.saturating_sub(retired), retired),
        );
    }
    Ok(out)
}

pub(super) async fn journal_after(
    store: &RethinkStore,
    after: u64,
    n: usize,
) -> Result<Vec<JournalEntry>, StoreError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    store.fresh_catalog().await?;
    let sel = op_opts(
        T::Between,
        vec![store.tbl("journal"), json!(after), op(T::Maxval, vec![])],
        json!({"index": "seq", "left_bound": "open"}),
    );
    let ordered = op_opts(T::OrderBy, vec![sel], json!({"index": asc(json!("seq"))}));
    let docs = store.list(limit(ordered, n as u64)).await?;
    let mut out = docs
        .iter()
        .map(|d| doc::journal_from(d, &|t| store.kinds(t)))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|e| e.seq);
    Ok(out)
}

/// The highest (`head`) or lowest sequence number in the journal.
pub(super) async fn journal_edge(
    store: &RethinkStore,
    head: bool,
) -> Result<Option<u64>, StoreError> {
    let key = if head {
        desc(json!("seq"))
    } else {
        asc(json!("seq"))
    };
    let ordered = op_opts(
        T::OrderBy,
        vec![store.tbl("journal")],
        json!({"index": key}),
    );
    let docs = store
        .list(op(T::Pluck, vec![limit(ordered, 1), json!("seq")]))
        .await?;
    Ok(docs
        .first()
        .and_then(|d| d.get("seq"))
        .and_then(Json::as_u64))
}

/// The changefeed that wakes `wait_journal`: one per store, on its own connection (a connection
/// running a feed serves nothing else in our design, as with the official drivers).
pub(super) struct Feed {
    started: AtomicBool,
    head: Arc<watch::Sender<u64>>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            started: AtomicBool::new(false),
            head: Arc::new(watch::channel(0).0),
        }
    }
}

fn start_feed(store: &RethinkStore) {
    if store.inner.feed.started.swap(true, Ordering::SeqCst) {
        return;
    }
    let weak = Arc::downgrade(&store.inner);
    let head = store.inner.feed.head.clone();
    let opts = store.connect_options();
    let journal = store.tbl("journal");
    let timeout = store.timeout();
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            if weak.strong_count() == 0 {
                return;
            }
            let feed = async {
                // A stalled server accepts TCP connections but never answers the handshake.
                let conn = match tokio::time::timeout(timeout, Conn::connect(&opts)).await {
                    Ok(c) => c?,
                    Err(_) => {
                        return Err(super::wire::WireError::Broken(format!(
                            "no handshake answer within {timeout:?}"
                        )));
                    }
                };
                let mut cursor = conn
                    .start(&op(T::Changes, vec![journal.clone()]), &json!({}))
                    .await?;
                loop {
                    let batch =
                        match tokio::time::timeout(Duration::from_secs(2), cursor.next_batch())
                            .await
                        {
                            Ok(b) => b?,
                            Err(_) if weak.strong_count() == 0 => return Ok(()),
                            Err(_) => continue,
                        };
                    let Some(batch) = batch else { return Ok(()) };
                    let max = batch
                        .iter()
                        .filter_map(|c| {
                            c.get("new_val")
                                .and_then(|v| v.get("seq"))
                                .and_then(Json::as_u64)
                        })
                        .max();
                    if let Some(m) = max {
                        head.send_if_modified(|h| {
                            let bigger = m > *h;
                            if bigger {
                                *h = m;
                            }
                            bigger
                        });
                    }
                }
            };
            let r: Result<(), super::wire::WireError> = feed.await;
            match r {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "journal changefeed lost; reconnecting");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    });
}

pub(super) async fn wait_journal(
    store: &RethinkStore,
    after: u64,
    timeout: Duration,
) -> Result<u64, StoreError> {
    use crate::store::Store as _;
    start_feed(store);
    let mut rx = store.inner.feed.head.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let head = store.journal_head().await?;
        if head > after || tokio::time::Instant::now() >= deadline {
            return Ok(head);
        }
        // Woken by the feed; the periodic re-check covers a feed that is reconnecting.
        let nap = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(Duration::from_millis(500));
        let _ = tokio::time::timeout(nap, rx.changed()).await;
    }
}
