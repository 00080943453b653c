//! The read path: find, count, single-entity reads, id listings, counts, states and the journal.
//!
//! `find` runs in two steps inside one read transaction: the filter, sorts and paging run in SQL and
//! return the page's ids in order; then only those rows, and the link targets their return fields
//! need (for live names, retired targets and deep-link values), are loaded by id and projected with
//! the reference projection (`query::project`), so projection is exactly the reference's.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde_json::Value as Json;

use super::catalog::Catalog;
use super::codec::{self, JournalRow};
use super::compile::Compiler;
use super::rows::{self, RowSql};
use super::sql_err;
use crate::model::{DateTime, Entity, Value};
use crate::query::{FindQuery, MemorySource, Record, project};
use crate::store::{CountQuery, JournalEntry, StoreError, TypeLayout, TypeState};

/// Loads full entities of one type by id (missing ids are skipped).
pub(crate) fn load_many(
    conn: &Connection,
    cat: &Catalog,
    entity_type: &str,
    ids: &[i64],
    only: Option<&BTreeSet<String>>,
) -> Result<Vec<Entity>, StoreError> {
    let tc = cat.get(entity_type)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // Reading only the fields a projection needs keeps wide rows cheap.
    let narrowed;
    let layout = match only {
        None => &tc.layout,
        Some(only) => {
            narrowed = TypeLayout {
                entity_type: tc.layout.entity_type.clone(),
                fields: tc
                    .layout
                    .fields
                    .iter()
                    .filter(|f| only.contains(&f.name))
                    .cloned()
                    .collect(),
                indexed: Vec::new(),
            };
            &narrowed
        }
    };
    // Only the SELECT is needed here (RowSql would also build the write statements).
    let cols: Vec<String> = rows::column_list(layout)
        .iter()
        .map(|c| format!("t.{}", codec::ident(c)))
        .collect();
    let q = format!(
        "SELECT {} FROM {} AS t WHERE t.id IN (SELECT value FROM json_each(?1))",
        cols.join(", "),
        tc.table()
    );
    let mut stmt = conn.prepare_cached(&q).map_err(sql_err)?;
    let mut rows_out = Vec::with_capacity(ids.len());
    let mut q = stmt
        .query(params![serde_json::to_string(ids).unwrap_or_default()])
        .map_err(sql_err)?;
    while let Some(r) = q.next().map_err(sql_err)? {
        rows_out.push(rows::decode_row(layout, r, 0)?.entity);
    }
    if layout
        .fields
        .iter()
        .any(|f| f.data_type == crate::model::DataType::MultiEntity)
    {
        let mut by_id: BTreeMap<i64, &mut Entity> =
            rows_out.iter_mut().map(|e| (e.id, e)).collect();
        rows::fill_multi(conn, &tc.multi_table(), &mut by_id)?;
    }
    Ok(rows_out)
}

/// Collects the link targets (of cached types) that the values of `field` on `entities` refer to.
fn targets_of(
    entities: &[&Entity],
    field: &str,
    only_type: Option<&str>,
    cat: &Catalog,
    out: &mut BTreeMap<String, BTreeSet<i64>>,
) {
    for e in entities {
        let mut add = |t: &str, id: i64| {
            if cat.types.contains_key(t) && only_type.is_none_or(|o| o == t) {
                out.entry(t.to_owned()).or_default().insert(id);
            }
        };
        match e.get(field) {
            Value::Entity(r) => add(&r.entity_type, r.id),
            Value::MultiEntity(list) => list.iter().for_each(|r| add(&r.entity_type, r.id)),
            _ => {}
        }
    }
}

/// Loads every wanted entity not yet in `src` and returns the newly loaded ones' keys.
fn load_into(
    conn: &Connection,
    cat: &Catalog,
    src: &mut MemorySource,
    wanted: BTreeMap<String, BTreeSet<i64>>,
    needed: &BTreeMap<String, BTreeSet<String>>,
) -> Result<Vec<(String, i64)>, StoreError> {
    let none = BTreeSet::new();
    let mut loaded = Vec::new();
    for (t, ids) in wanted {
        let ids: Vec<i64> = ids
            .into_iter()
            .filter(|id| src.get(&t, *id).is_none())
            .collect();
        for e in load_many(conn, cat, &t, &ids, Some(needed.get(&t).unwrap_or(&none)))? {
            loaded.push((t.clone(), e.id));
            src.insert(e);
        }
    }
    Ok(loaded)
}

pub(crate) fn find(
    conn: &Connection,
    cat: &Catalog,
    q: &FindQuery,
    now: DateTime,
) -> Result<Vec<Record>, StoreError> {
    let tc = cat.get(&q.entity_type)?;
    let mut c = Compiler::new(cat, now);
    let wh = c.filter(&q.filter, "t", tc)?;
    let order = c.order_by(&q.sorts, "t", tc)?;
    let limit = q.limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
    let offset = i64::try_from(q.offset).unwrap_or(i64::MAX);
    let sql = format!(
        "SELECT t.id FROM {} AS t WHERE t._retired = {} AND {wh} ORDER BY {order} LIMIT {limit} OFFSET {offset}",
        tc.table(),
        i64::from(q.retired_only)
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(sql_err)?;
    let ids: Vec<i64> = stmt
        .query_map(params_from_iter(c.params), |r| r.get(0))
        .map_err(sql_err)?
        .collect::<Result<_, _>>()
        .map_err(sql_err)?;
    let mut src = MemorySource::new();
    for t in cat.types.keys() {
        src.declare_type(t.clone());
    }
    // The fields each type must be read with: the hop fields and leaves of the return fields.
    let mut needed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in q.fields.iter().filter(|p| !p.hops.iter().any(|h| h.multi)) {
        let mut t = q.entity_type.clone();
        for hop in &path.hops {
            needed.entry(t).or_default().insert(hop.field.clone());
            t = hop.target_type.clone();
        }
        needed.entry(t).or_default().insert(path.leaf.clone());
    }
    let none = BTreeSet::new();
    let root_fields = Some(needed.get(&q.entity_type).unwrap_or(&none));
    for e in load_many(conn, cat, &q.entity_type, &ids, root_fields)? {
        src.insert(e);
    }
    // Load what the return fields reach: for each path, the targets of every single hop, then the
    // targets of the leaf's links (for live names and retired targets).
    for path in &q.fields {
        if path.hops.iter().any(|h| h.multi) {
            continue;
        }
        let mut level: Vec<(String, i64)> =
            ids.iter().map(|id| (q.entity_type.clone(), *id)).collect();
        for hop in &path.hops {
            let mut wanted = BTreeMap::new();
            let ents: Vec<&Entity> = level.iter().filter_map(|(t, id)| src.get(t, *id)).collect();
            targets_of(&ents, &hop.field, Some(&hop.target_type), cat, &mut wanted);
            let next: Vec<(String, i64)> = wanted
                .iter()
                .flat_map(|(t, ids)| ids.iter().map(move |id| (t.clone(), *id)))
                .collect();
            load_into(conn, cat, &mut src, wanted, &needed)?;
            level = next;
        }
        let mut wanted = BTreeMap::new();
        let ents: Vec<&Entity> = level.iter().filter_map(|(t, id)| src.get(t, *id)).collect();
        targets_of(&ents, &path.leaf, None, cat, &mut wanted);
        load_into(conn, cat, &mut src, wanted, &needed)?;
    }
    Ok(ids
        .iter()
        .filter_map(|id| {
            src.get(&q.entity_type, *id)
                .map(|e| project(&src, e, &q.fields))
        })
        .collect())
}

pub(crate) fn count(conn: &Connection, cat: &Catalog, q: &CountQuery) -> Result<u64, StoreError> {
    let tc = cat.get(&q.entity_type)?;
    let mut c = Compiler::new(cat, q.now);
    let wh = c.filter(&q.filter, "t", tc)?;
    let sql = format!(
        "SELECT count(*) FROM {} AS t WHERE t._retired = {} AND {wh}",
        tc.table(),
        i64::from(q.retired_only)
    );
    let n: i64 = conn
        .prepare_cached(&sql)
        .and_then(|mut s| s.query_row(params_from_iter(c.params), |r| r.get(0)))
        .map_err(sql_err)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub(crate) fn get(
    conn: &Connection,
    cat: &Catalog,
    entity_type: &str,
    id: i64,
) -> Result<Option<Entity>, StoreError> {
    let tc = cat.get(entity_type)?;
    Ok(rows::load(conn, &tc.layout, &RowSql::live(tc), id)?.map(|r| r.entity))
}

pub(crate) fn ids(
    conn: &Connection,
    cat: &Catalog,
    entity_type: &str,
    after: i64,
    limit: usize,
) -> Result<Vec<(i64, bool)>, StoreError> {
    let tc = cat.get(entity_type)?;
    let sql = format!(
        "SELECT id, _retired FROM {} WHERE id > ?1 ORDER BY id LIMIT ?2",
        tc.table()
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(sql_err)?;
    let rows = stmt
        .query_map(
            params![after, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0)),
        )
        .map_err(sql_err)?;
    rows.collect::<Result<_, _>>().map_err(sql_err)
}

pub(crate) fn type_counts(
    conn: &Connection,
    cat: &Catalog,
) -> Result<BTreeMap<String, (u64, u64)>, StoreError> {
    let mut out = BTreeMap::new();
    for (t, tc) in &cat.types {
        let sql = format!(
            "SELECT count(*) - COALESCE(sum(_retired), 0), COALESCE(sum(_retired), 0) FROM {}",
            tc.table()
        );
        let (live, retired): (i64, i64) = conn
            .query_row(&sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql_err)?;
        out.insert(
            t.clone(),
            (
                u64::try_from(live).unwrap_or(0),
                u64::try_from(retired).unwrap_or(0),
            ),
        );
    }
    Ok(out)
}

pub(crate) fn type_states(conn: &Connection) -> Result<Vec<TypeState>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT entity_type, phase, done, total, config_hash, ready_at FROM sc_type_state ORDER BY entity_type",
        )
        .map_err(sql_err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get::<_, String>(4)?,
                r.get(5)?,
            ))
        })
        .map_err(sql_err)?;
    let mut out = Vec::new();
    for row in rows {
        let (t, phase, done, total, hash, ready) = row.map_err(sql_err)?;
        out.push(codec::type_state_from_parts(
            t, &phase, done, total, hash, ready,
        )?);
    }
    Ok(out)
}

pub(crate) fn get_state(conn: &Connection, key: &str) -> Result<Option<Json>, StoreError> {
    let v: Option<String> = conn
        .prepare_cached("SELECT value FROM sc_state WHERE key = ?1")
        .and_then(|mut s| s.query_row(params![key], |r| r.get(0)).optional())
        .map_err(sql_err)?;
    v.map(|s| {
        serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("state key {key}: {e}")))
    })
    .transpose()
}

pub(crate) fn journal_after(
    conn: &Connection,
    cat: &Catalog,
    after: u64,
    limit: usize,
) -> Result<Vec<JournalEntry>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, event_id, entity_type, entity_id, op, fields, at, entity FROM sc_journal WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )
        .map_err(sql_err)?;
    let rows = stmt
        .query_map(
            params![
                i64::try_from(after).unwrap_or(i64::MAX),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| {
                Ok(JournalRow {
                    seq: r.get(0)?,
                    event_id: r.get(1)?,
                    entity_type: r.get(2)?,
                    entity_id: r.get(3)?,
                    op: r.get(4)?,
                    fields: r.get(5)?,
                    at: r.get(6)?,
                    entity: r.get(7)?,
                })
            },
        )
        .map_err(sql_err)?;
    let dt_of = |t: &str, f: &str| cat.data_type(t, f);
    let mut out = Vec::new();
    for row in rows {
        out.push(row.map_err(sql_err)?.into_entry(&dt_of)?);
    }
    Ok(out)
}

pub(crate) fn journal_head(conn: &Connection) -> Result<u64, StoreError> {
    // The AUTOINCREMENT counter survives trimming, so the head never goes back.
    let seq: Option<i64> = conn
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'sc_journal'")
        .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
        .map_err(sql_err)?;
    Ok(u64::try_from(seq.unwrap_or(0)).unwrap_or(0))
}

pub(crate) fn journal_tail(conn: &Connection) -> Result<Option<u64>, StoreError> {
    let v: Option<i64> = conn
        .query_row("SELECT min(seq) FROM sc_journal", [], |r| r.get(0))
        .map_err(sql_err)?;
    Ok(v.map(|v| u64::try_from(v).unwrap_or(0)))
}

pub(crate) fn trim_journal(conn: &Connection, before: DateTime) -> Result<u64, StoreError> {
    let n = conn
        .execute("DELETE FROM sc_journal WHERE at < ?1", params![before.0])
        .map_err(sql_err)?;
    Ok(n as u64)
}
