//! Writes without multi-document transactions: the idempotent commit, staging and promotion.
//!
//! # How a batch commits (and why a replay is exact)
//! 1. **Read** the stored documents the batch touches (one `get_all` per table), with their `rev`.
//! 2. **Decide** in memory with the ordering guard ([`super::apply`]), write by write, so several
//!    writes to one entity in a batch compose.
//! 3. **Journal first.** Every applied change gets a deterministic key
//!    `"<event_id>:<type>:<id>:<op>:e"` for a change from an event (a replay reaches the same key even
//!    when it takes another path to the same event), `"0:<type>:<id>:<op>:<digest of the new state>"`
//!    for a write without one. Keys already in `journal` are
//!    kept as they are (a replay); for the others a block of sequence numbers is reserved with one
//!    atomic `update` of the `meta/journal_seq` counter (returning the new value), and the entries
//!    are inserted with `conflict: "error"`, so an entry can never be written twice. One batch commits
//!    at a time per process (and only the syncer writes), so entries become visible in `seq` order.
//!    A crash between the reservation and the insert leaves a gap in `seq`, never a reuse.
//! 4. **Data.** Each changed document is replaced with a compare-and-swap inside the database:
//!    `replace(old => old.rev == expected ? new : old)`. A document changed by someone else in the
//!    meantime is left alone and the commit fails with `Unavailable` (the syncer retries the batch,
//!    which recomputes against the new state).
//! 5. **Type states, schema, then the `state` documents (the cursor) last.**
//!
//! A crash after step 3 leaves journal entries whose data is not written yet: the replay (the cursor
//! did not move) recomputes the same new states from the same stored states, finds the same keys
//! already journaled, and writes the data. A crash after step 4 replays into writes the guard
//! rejects as stale: no data change and no new journal entry. Readers can therefore see a journal
//! entry a moment before its data; the entry carries the entity's new state itself.

use std::collections::{BTreeMap, HashMap};

use ql2::term::TermType as T;
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use super::apply::{apply, event_id, target};
use super::doc;
use super::term::{branch, default, eq, field, func1, get, lit, op, op_opts};
use super::{RethinkStore, ignore_exists};
use crate::model::{DateTime, Entity};
use crate::store::{
    CommitResult, EntityWrite, JournalEntry, JournalOp, StoreError, TypeLayout, TypeState,
    WriteBatch, WriteOutcome,
};

/// The state of one touched document during a commit.
struct Slot {
    /// `rev` of the stored document (`None` when there was none).
    rev: Option<i64>,
    original: Option<Entity>,
    current: Option<Entity>,
}

/// Applies writes to one set of tables (live or staging) and returns outcomes plus journal entries
/// (not yet numbered) and the documents to write per table.
async fn plan(
    store: &RethinkStore,
    writes: &[EntityWrite],
    table_of: &HashMap<String, String>,
    layouts: &HashMap<String, crate::store::TypeLayout>,
) -> Result<
    (
        Vec<WriteOutcome>,
        Vec<(String, JournalEntry)>,
        BTreeMap<String, Vec<Json>>,
    ),
    StoreError,
> {
    // 1. Read everything the batch touches.
    let mut ids_by_type: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for w in writes {
        let (t, id) = target(w);
        ids_by_type.entry(t).or_default().push(id);
    }
    let kinds_of = |t: &str| layouts.get(t).map(doc::kinds_of).unwrap_or_default();
    let mut slots: HashMap<(String, i64), Slot> = HashMap::new();
    for (t, ids) in &ids_by_type {
        let tbl = table_of
            .get(*t)
            .ok_or_else(|| StoreError::Invalid(format!("entity type {t} is not cached")))?;
        let keys: Vec<Json> = ids.iter().map(|i| json!(i)).collect();
        let docs = store
            .list(super::term::get_all(store.tbl(tbl), &keys, None))
            .await?;
        let kinds = kinds_of(t);
        for d in docs {
            let e = doc::decode_entity(t, &d, &kinds)?;
            let rev = d.get("rev").and_then(Json::as_i64).unwrap_or(0);
            slots.insert(
                (t.to_string(), e.id),
                Slot {
                    rev: Some(rev),
                    original: Some(e.clone()),
                    current: Some(e),
                },
            );
        }
        for id in ids {
            slots.entry((t.to_string(), *id)).or_insert(Slot {
                rev: None,
                original: None,
                current: None,
            });
        }
    }
    // 2. Decide.
    let now = DateTime::now();
    let mut outcomes = Vec::with_capacity(writes.len());
    let mut journal = Vec::new();
    let mut display: HashMap<String, Option<String>> = HashMap::new();
    for w in writes {
        let (t, id) = target(w);
        let df = display
            .entry(t.to_owned())
            .or_insert_with(|| store.display_field(t))
            .clone();
        let slot = slots
            .get_mut(&(t.to_owned(), id))
            .expect("every touched document has a slot");
        let layout = layouts
            .get(t)
            .ok_or_else(|| StoreError::Invalid(format!("entity type {t} is not cached")))?;
        let applied = apply(slot.current.as_ref(), w, layout, df.as_deref());
        if let WriteOutcome::Applied { op: jop, fields } = &applied.outcome {
            let kinds = kinds_of(t);
            // An event-driven change is identified by (event, entity, op) alone: after a crash the
            // syncer may reach the same event by another path (a re-read instead of a patch, a
            // batch composed differently), so the new state need not be byte-identical and must not
            // be part of the key. Writes without an event (import, scan, refresh) are told apart by
            // the state they produce.
            let digest = match &applied.state {
                _ if event_id(w) > 0 => "e".to_owned(),
                Some(e) => {
                    let h = Sha256::digest(doc::encode_entity(e, &kinds).to_string().as_bytes());
                    h.iter()
                        .take(8)
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                }
                None => "-".to_owned(),
            };
            let key = format!("{}:{}:{}:{}:{}", event_id(w), t, id, jop.as_str(), digest);
            journal.push((
                key,
                JournalEntry {
                    seq: 0,
                    event_id: event_id(w),
                    entity_type: t.to_owned(),
                    entity_id: id,
                    op: *jop,
                    fields: fields.clone(),
                    at: now,
                    entity: applied.state.clone(),
                },
            ));
        }
        if applied.write || matches!(applied.outcome, WriteOutcome::Applied { .. }) {
            slot.current = applied.state;
        }
        outcomes.push(applied.outcome);
    }
    // The documents to write: every slot whose state differs from what is stored.
    let mut docs: BTreeMap<String, Vec<Json>> = BTreeMap::new();
    let mut touched: Vec<(&(String, i64), &Slot)> = slots.iter().collect();
    touched.sort_by(|a, b| a.0.cmp(b.0));
    for ((t, id), slot) in touched {
        if slot.current == slot.original {
            continue;
        }
        let tbl = table_of.get(t).expect("checked above");
        let kinds = kinds_of(t);
        let new_doc = slot.current.as_ref().map(|e| {
            let mut d = doc::encode_entity(e, &kinds);
            d["rev"] = json!(slot.rev.unwrap_or(0) + 1);
            d
        });
        docs.entry(tbl.clone())
            .or_default()
            .push(json!({"id": id, "expect": slot.rev, "doc": new_doc}));
    }
    Ok((outcomes, journal, docs))
}

/// Writes planned documents with a compare-and-swap per document.
async fn write_docs(
    store: &RethinkStore,
    docs: BTreeMap<String, Vec<Json>>,
) -> Result<(), StoreError> {
    for (tbl, items) in docs {
        // New documents: `insert` with `conflict: "error"` is the compare-and-swap against "absent".
        let (creates, swaps): (Vec<Json>, Vec<Json>) =
            items.into_iter().partition(|it| it["expect"].is_null());
        let creates: Vec<Json> = creates
            .into_iter()
            .filter_map(|it| it.get("doc").cloned())
            .filter(|d| !d.is_null())
            .collect();
        for chunk in creates.chunks(200) {
            let q = op_opts(
                T::Insert,
                vec![store.tbl(&tbl), lit(&Json::Array(chunk.to_vec()))],
                json!({"conflict": "error"}),
            );
            let r = store.atom(q).await?;
            check_written(&r, &tbl, chunk.len() as u64)?;
        }
        // Existing documents: replace only if `rev` is still the one the decision was made on.
        for chunk in swaps.chunks(200) {
            let tb = store.tbl(&tbl);
            let body = func1(|it| {
                let target = get(tb, field(it.clone(), "id"));
                op(
                    T::Replace,
                    vec![
                        target,
                        func1(|old| {
                            branch(
                                eq(
                                    default(field(old.clone(), "rev"), Json::Null),
                                    field(it.clone(), "expect"),
                                ),
                                field(it, "doc"),
                                old,
                            )
                        }),
                    ],
                )
            });
            let q = op(T::ForEach, vec![lit(&Json::Array(chunk.to_vec())), body]);
            let r = store.atom(q).await?;
            check_written(&r, &tbl, chunk.len() as u64)?;
        }
    }
    Ok(())
}

/// Checks a write result: every document written, none refused by the compare-and-swap.
fn check_written(r: &Json, tbl: &str, n: u64) -> Result<(), StoreError> {
    let done = ["inserted", "replaced", "deleted"]
        .iter()
        .map(|k| r.get(*k).and_then(Json::as_u64).unwrap_or(0))
        .sum::<u64>();
    if done == n {
        return Ok(());
    }
    let first = r.get("first_error").and_then(Json::as_str).unwrap_or("");
    if !first.is_empty() && !first.contains("Duplicate primary key") {
        return Err(StoreError::Internal(format!("writing to {tbl}: {first}")));
    }
    Err(StoreError::Unavailable(format!(
        "{} of {n} documents in {tbl} changed concurrently (compare-and-swap refused); retry the batch",
        n - done
    )))
}

/// Numbers and appends journal entries exactly once (see the module docs). Returns the entries with
/// their sequence numbers, in order.
async fn append_journal(
    store: &RethinkStore,
    entries: Vec<(String, JournalEntry)>,
) -> Result<Vec<JournalEntry>, StoreError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<Json> = entries.iter().map(|(k, _)| json!(k)).collect();
    let existing = store
        .list(super::term::get_all(store.tbl("journal"), &keys, None))
        .await?;
    let mut have: HashMap<String, JournalEntry> = HashMap::new();
    for d in existing {
        let k = d.get("id").and_then(Json::as_str).unwrap_or("").to_owned();
        let e = doc::journal_from(&d, &|t| store.kinds(t))?;
        have.insert(k, e);
    }
    let missing = entries
        .iter()
        .filter(|(k, _)| !have.contains_key(k))
        .count() as u64;
    let mut out = Vec::with_capacity(entries.len());
    let mut next = 0u64;
    if missing > 0 {
        next = reserve_seq(store, missing).await?;
    }
    let mut docs = Vec::new();
    for (k, mut e) in entries {
        if let Some(old) = have.remove(&k) {
            out.push(old);
            continue;
        }
        e.seq = next;
        next += 1;
        docs.push(doc::journal_json(&k, &e, &store.kinds(&e.entity_type)));
        out.push(e);
    }
    for chunk in docs.chunks(200) {
        let r = store
            .atom(op(
                T::Insert,
                vec![store.tbl("journal"), lit(&Json::Array(chunk.to_vec()))],
            ))
            .await?;
        if r.get("errors").and_then(Json::as_u64).unwrap_or(0) > 0 {
            // Only a concurrent writer of the same batch can get here; its entry stands.
            tracing::warn!(first_error = ?r.get("first_error"), "journal entries already present; kept the stored ones");
        }
    }
    out.sort_by_key(|e| e.seq);
    Ok(out)
}

/// Reserves `n` sequence numbers; returns the first.
async fn reserve_seq(store: &RethinkStore, n: u64) -> Result<u64, StoreError> {
    let upd = op_opts(
        T::Update,
        vec![
            get(store.tbl("meta"), json!("journal_seq")),
            func1(|row| json!({"seq": op(T::Add, vec![field(row, "seq"), json!(n)])})),
        ],
        json!({"return_changes": true}),
    );
    let r = store.atom(upd).await?;
    let end = r
        .get("changes")
        .and_then(Json::as_array)
        .and_then(|c| c.first())
        .and_then(|c| c.get("new_val"))
        .and_then(|v| v.get("seq"))
        .and_then(Json::as_u64)
        .ok_or_else(|| StoreError::Corrupt(format!("journal_seq counter did not advance: {r}")))?;
    Ok(end + 1 - n)
}

pub(super) async fn commit(
    store: &RethinkStore,
    batch: &WriteBatch,
) -> Result<CommitResult, StoreError> {
    commit_until(store, batch, Stop::Never).await
}

/// Where a commit stops early: the crash points the replay tests simulate (a `kill -9` of the
/// syncer between two steps). Production commits never stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    AfterJournal,
    AfterData,
    Never,
}

pub(super) async fn commit_until(
    store: &RethinkStore,
    batch: &WriteBatch,
    stop: Stop,
) -> Result<CommitResult, StoreError> {
    let _guard = store.inner.write_lock.lock().await;
    let mut live_tables = HashMap::new();
    let mut staging_tables = HashMap::new();
    let mut types: Vec<&str> = batch.writes.iter().map(|w| target(w).0).collect();
    types.extend(batch.staging.iter().map(|w| target(w).0));
    types.sort();
    types.dedup();
    let mut live_layouts = HashMap::new();
    let mut staging_layouts = HashMap::new();
    for t in types {
        let layout = store.layout(t).await?;
        let (live, staging, _) = store
            .copies(t)
            .await?
            .ok_or_else(|| StoreError::Invalid(format!("entity type {t} is not prepared")))?;
        live_tables.insert(t.to_owned(), live);
        if let Some(s) = staging {
            staging_tables.insert(t.to_owned(), s);
            // A staging copy is written with the layout its re-import started with.
            let sl = store
                .staging_layout(t)
                .await?
                .unwrap_or_else(|| layout.clone());
            staging_layouts.insert(t.to_owned(), sl);
        }
        live_layouts.insert(t.to_owned(), layout);
    }
    let (outcomes, journal, docs) = plan(store, &batch.writes, &live_tables, &live_layouts).await?;
    let journal = if batch.journal {
        append_journal(store, journal).await?
    } else {
        Vec::new()
    };
    if stop == Stop::AfterJournal {
        return Ok(CommitResult { outcomes, journal });
    }
    write_docs(store, docs).await?;
    if stop == Stop::AfterData {
        return Ok(CommitResult { outcomes, journal });
    }
    if !batch.staging.is_empty() {
        for w in &batch.staging {
            let t = target(w).0;
            if !staging_tables.contains_key(t) {
                return Err(StoreError::Invalid(format!(
                    "entity type {t} has no staging copy (call begin_staging first)"
                )));
            }
        }
        let (_, _, sdocs) = plan(store, &batch.staging, &staging_tables, &staging_layouts).await?;
        write_docs(store, sdocs).await?;
    }
    if !batch.type_states.is_empty() {
        let docs: Vec<Json> = batch.type_states.iter().map(doc::type_state_json).collect();
        store
            .atom(op_opts(
                T::Insert,
                vec![store.tbl("type_state"), lit(&Json::Array(docs))],
                json!({"conflict": "replace"}),
            ))
            .await?;
    }
    if let Some(schema) = &batch.schema {
        let d = json!({"id": "site", "schema": doc::schema_json(schema)});
        store
            .atom(op_opts(
                T::Insert,
                vec![store.tbl("schema"), lit(&d)],
                json!({"conflict": "replace"}),
            ))
            .await?;
        *store
            .inner
            .schema
            .write()
            .expect("schema lock is never poisoned") = Some(schema.clone());
    }
    if !batch.state.is_empty() {
        let docs: Vec<Json> = batch
            .state
            .iter()
            .map(|(k, v)| json!({"id": k, "value": v}))
            .collect();
        store
            .atom(op_opts(
                T::Insert,
                vec![store.tbl("state"), lit(&Json::Array(docs))],
                json!({"conflict": "replace"}),
            ))
            .await?;
    }
    Ok(CommitResult { outcomes, journal })
}

pub(super) async fn begin_staging(
    store: &RethinkStore,
    layout: &TypeLayout,
) -> Result<(), StoreError> {
    let _guard = store.inner.write_lock.lock().await;
    let t = &layout.entity_type;
    let (live, staging, generation) = store
        .copies(t)
        .await?
        .ok_or_else(|| StoreError::Invalid(format!("entity type {t} is not prepared")))?;
    if let Some(old) = staging {
        ignore_missing(
            store
                .atom(op(
                    T::TableDrop,
                    vec![super::term::db(store.database()), json!(old)],
                ))
                .await,
        )?;
    }
    let mut generation = generation + 1;
    let mut name = format!("e_{t}_{generation}");
    if name == live {
        generation += 1;
        name = format!("e_{t}_{generation}");
    }
    ignore_missing(
        store
            .atom(op(
                T::TableDrop,
                vec![super::term::db(store.database()), json!(name.clone())],
            ))
            .await,
    )?;
    store.ensure_type_table(&name, layout).await?;
    let upd = op(
        T::Update,
        vec![
            get(store.tbl("copies"), json!(t)),
            lit(
                &json!({"staging": name, "gen": generation, "staging_layout": doc::layout_json(layout)}),
            ),
        ],
    );
    store.atom(upd).await?;
    Ok(())
}

pub(super) async fn promote_staging(
    store: &RethinkStore,
    state: TypeState,
) -> Result<(), StoreError> {
    let _guard = store.inner.write_lock.lock().await;
    let t = state.entity_type.clone();
    let (live, staging, generation) = store
        .copies(&t)
        .await?
        .ok_or_else(|| StoreError::Invalid(format!("entity type {t} is not prepared")))?;
    let staging = staging.ok_or_else(|| {
        StoreError::Invalid(format!("entity type {t} has no staging copy to promote"))
    })?;
    // The re-import's layout becomes the type's layout (a config or schema change is why it ran).
    if let Some(layout) = store.staging_layout(&t).await? {
        store.set_layout(&layout).await?;
    }
    // The swap: one atomic single-document update that every reader resolves inside its query.
    let upd = op(
        T::Update,
        vec![
            get(store.tbl("copies"), json!(t)),
            lit(&json!({"live": staging, "staging": null, "staging_layout": null})),
        ],
    );
    store.atom(upd).await?;
    store
        .atom(op_opts(
            T::Insert,
            vec![store.tbl("type_state"), lit(&doc::type_state_json(&state))],
            json!({"conflict": "replace"}),
        ))
        .await?;
    let entry = JournalEntry {
        seq: 0,
        event_id: 0,
        entity_type: t.clone(),
        entity_id: 0,
        op: JournalOp::Reload,
        fields: Vec::new(),
        at: DateTime::now(),
        entity: None,
    };
    append_journal(store, vec![(format!("reload:{t}:{generation}"), entry)]).await?;
    ignore_missing(
        store
            .atom(op(
                T::TableDrop,
                vec![super::term::db(store.database()), json!(live)],
            ))
            .await,
    )?;
    Ok(())
}

fn ignore_missing(r: Result<Json, StoreError>) -> Result<(), StoreError> {
    match r {
        Err(StoreError::Internal(m) | StoreError::Unavailable(m))
            if m.contains("does not exist") =>
        {
            Ok(())
        }
        other => ignore_exists(other.map(|_| ())),
    }
}

#[cfg(test)]
mod tests {
    //! Crash points of a commit, against a ReQL server (`SHOTGUN_CACHE_TEST_RETHINKDB` or
    //! `SHOTGUN_CACHE_TEST_REQLITE`; skipped loudly without one): a batch interrupted after any step
    //! and replayed writes every change and every journal entry exactly once.

    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde_json::json;

    use super::{Stop, commit_until};
    use crate::model::{Entity, FieldSchema, SiteSchema, Value};
    use crate::store::rethinkdb::{RethinkOptions, RethinkStore};
    use crate::store::{
        EntityWrite, FieldChange, JournalOp, Store, TypeLayout, WriteBatch, WriteOutcome,
    };

    async fn fresh() -> Option<RethinkStore> {
        let addr = ["SHOTGUN_CACHE_TEST_RETHINKDB", "SHOTGUN_CACHE_TEST_REQLITE"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
        let Some(address) = addr else {
            eprintln!(
                "SKIPPED the RethinkDB commit tests (crash replay, journal trim): no ReQL server (set SHOTGUN_CACHE_TEST_RETHINKDB=host:port or run scripts/test-rethinkdb)"
            );
            return None;
        };
        let opts = RethinkOptions {
            address,
            database: format!("sgc_crash_{:016x}", rand::random::<u64>()),
            user: "admin".into(),
            password: std::env::var("SHOTGUN_CACHE_TEST_RETHINKDB_PASSWORD").unwrap_or_default(),
            pool_size: 1,
            timeout: Duration::from_secs(10),
        };
        let store = RethinkStore::connect_with(opts).await.expect("connects");
        let raw = json!({"code": {"data_type": {"value": "text", "editable": false}}});
        let schema = SiteSchema::from_json(&json!({"Shot": raw}), None).expect("schema");
        let layout = TypeLayout {
            entity_type: "Shot".into(),
            fields: vec![FieldSchema::from_json("Shot", "code", &raw["code"])],
            indexed: vec!["code".into()],
        };
        store.prepare(&schema, &[layout]).await.expect("prepare");
        Some(store)
    }

    fn rename(event_id: i64, code: &str) -> WriteBatch {
        WriteBatch {
            writes: vec![EntityWrite::Patch {
                entity_type: "Shot".into(),
                id: 1,
                event_id,
                changes: vec![FieldChange::Set("code".into(), Value::Text(code.into()))],
            }],
            journal: true,
            state: BTreeMap::from([("cursor".to_owned(), json!(event_id))]),
            ..Default::default()
        }
    }

    /// Creates Shot 1 with code "a" at `event_id`.
    fn create(event_id: i64) -> WriteBatch {
        let mut shot = Entity::new("Shot", 1);
        shot.fields.insert("code".into(), Value::Text("a".into()));
        WriteBatch {
            writes: vec![EntityWrite::Upsert {
                entity: shot,
                floor: 0,
                event_id,
            }],
            journal: true,
            ..Default::default()
        }
    }

    async fn code(store: &RethinkStore) -> Value {
        store
            .get("Shot", 1)
            .await
            .expect("get")
            .expect("exists")
            .get("code")
            .clone()
    }

    #[tokio::test]
    async fn replay_after_each_crash_point_is_exact() {
        let Some(store) = fresh().await else { return };
        store.commit(create(5)).await.expect("create");
        let head0 = store.journal_head().await.expect("head");

        // Killed after the journal, before the data: the entry exists, the data is old.
        let crashed = commit_until(&store, &rename(10, "b"), Stop::AfterJournal)
            .await
            .expect("journal step");
        assert_eq!(crashed.journal.len(), 1);
        let entry = crashed.journal[0].clone();
        assert_eq!(entry.seq, head0 + 1);
        assert_eq!(code(&store).await, Value::Text("a".into()));
        assert_eq!(store.get_state("cursor").await.expect("state"), None);
        // The replay writes the data and finds the same entry: nothing journaled twice.
        let replay = store.commit(rename(10, "b")).await.expect("replay");
        assert_eq!(
            replay.outcomes,
            vec![WriteOutcome::Applied {
                op: JournalOp::Update,
                fields: vec!["code".into()]
            }]
        );
        assert_eq!(replay.journal, vec![entry.clone()]);
        assert_eq!(code(&store).await, Value::Text("b".into()));
        assert_eq!(store.journal_head().await.expect("head"), entry.seq);
        assert_eq!(
            store.get_state("cursor").await.expect("state"),
            Some(json!(10))
        );

        // Killed after the data, before the cursor: the replay is stale everywhere.
        let crashed = commit_until(&store, &rename(11, "c"), Stop::AfterData)
            .await
            .expect("data step");
        assert_eq!(crashed.journal.len(), 1);
        assert_eq!(
            store.get_state("cursor").await.expect("state"),
            Some(json!(10))
        );
        let replay = store.commit(rename(11, "c")).await.expect("replay");
        assert_eq!(replay.outcomes, vec![WriteOutcome::Unchanged]);
        assert!(replay.journal.is_empty());
        assert_eq!(
            store.get_state("cursor").await.expect("state"),
            Some(json!(11))
        );

        // The journal holds exactly one entry per change, in order, each with its new state.
        let all = store.journal_after(0, 100).await.expect("journal");
        let summary: Vec<(i64, JournalOp, Option<Value>)> = all
            .iter()
            .map(|e| {
                (
                    e.event_id,
                    e.op,
                    e.entity.as_ref().map(|x| x.get("code").clone()),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (5, JournalOp::Create, Some(Value::Text("a".into()))),
                (10, JournalOp::Update, Some(Value::Text("b".into()))),
                (11, JournalOp::Update, Some(Value::Text("c".into()))),
            ]
        );
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
        store.drop_database().await.expect("drop database");
    }

    /// Trimming removes a prefix by sequence number: an entry older than the cut-off that comes
    /// after a kept one (the writer's clock stepped back) stays, so the journal never has a hole a
    /// resumed Watch would skip without knowing.
    #[tokio::test]
    async fn trimming_removes_a_prefix_even_when_the_clock_stepped_back() {
        use crate::model::DateTime;
        use crate::store::rethinkdb::term::{lit, op, op_opts};
        use ql2::term::TermType as T;

        let Some(store) = fresh().await else { return };
        store.commit(create(1)).await.expect("create");
        for e in 2..=6 {
            store
                .commit(rename(e, &format!("c{e}")))
                .await
                .expect("rename");
        }
        let all: Vec<u64> = store
            .journal_after(0, 100)
            .await
            .expect("journal")
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(all.len(), 6);
        // Applied at 100, 200, 300, 250 (the clock stepped back), 400, 500.
        for (seq, at) in all.iter().zip([100, 200, 300, 250, 400, 500]) {
            let one = op_opts(
                T::Between,
                vec![store.tbl("journal"), json!(seq), json!(seq + 1)],
                json!({"index": "seq"}),
            );
            store
                .atom(op(T::Update, vec![one, lit(&json!({ "at": at }))]))
                .await
                .expect("set at");
        }
        let left = || async {
            store
                .journal_after(0, 100)
                .await
                .expect("journal")
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        };
        assert_eq!(store.trim_journal(DateTime(50)).await.expect("trim"), 0);
        // Entry 4 (at 250) is older than 260 but comes after entry 3 (at 300), which is kept.
        assert_eq!(store.trim_journal(DateTime(260)).await.expect("trim"), 2);
        assert_eq!(left().await, all[2..].to_vec());
        assert_eq!(store.trim_journal(DateTime(450)).await.expect("trim"), 3);
        assert_eq!(left().await, all[5..].to_vec());
        // Everything older: all of it goes, and the head stays.
        assert_eq!(store.trim_journal(DateTime(9999)).await.expect("trim"), 1);
        assert_eq!(store.journal_tail().await.expect("tail"), None);
        assert_eq!(store.journal_head().await.expect("head"), all[5]);
        store.drop_database().await.expect("drop database");
    }
}
