//! The read path: find, count, single-entity reads, id listings, counts, states and the journal.
//!
//! `find` runs inside one read transaction, in one of two ways:
//! - When every return field is a field of the row itself (columns, links, multi_entity), one
//!   statement runs the filter, sorts and paging and selects the page's columns; the multi_entity
//!   side rows of the page and the link targets' names and retired flags are read by id, and each row
//!   becomes a record directly ([`find_flat`]). This is the common pipeline query and the fast path.
//! - Otherwise (a deep-link return field) the statement returns the page's ids in order; then only
//!   those rows, and the link targets their return fields need (for live names, retired targets and
//!   deep-link values), are loaded by id and projected with the reference projection
//!   (`query::project`), so projection is exactly the reference's.
//!
//! The differential test checks both against the reference evaluator.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde_json::Value as Json;

use super::catalog::{Catalog, TypeCat};
use super::codec::{self, JournalRow, Shape, Snapshot};
use super::compile::Compiler;
use super::rows::{self, RowSql};
use super::sql_err;
use crate::model::{DataType, DateTime, Entity, EntityRef, FieldSchema, Value};
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

/// How one return field of a [`find_flat`] query is read.
enum FlatField<'a> {
    /// The entity's id.
    Id,
    /// A cached field of the row itself, decoded from its columns (links then get their live
    /// names from their targets).
    Column(&'a FieldSchema),
    /// A cached multi_entity field, read from the side table.
    Multi(&'a FieldSchema),
    /// A field the type does not cache: reads as the empty value of its type.
    Empty(DataType),
    /// A deep read through a multi_entity hop: absent from the record, as in Shotgun.
    Absent,
}

/// The return fields as [`FlatField`]s, or `None` when one is a deep read through single links.
fn flat_fields<'a>(tc: &'a TypeCat, q: &FindQuery) -> Option<Vec<FlatField<'a>>> {
    q.fields
        .iter()
        .map(|p| {
            if p.hops.iter().any(|h| h.multi) {
                return Some(FlatField::Absent);
            }
            if !p.hops.is_empty() {
                return None;
            }
            if p.leaf == "id" {
                return Some(FlatField::Id);
            }
            match tc.field(&p.leaf) {
                None => Some(FlatField::Empty(p.leaf_type)),
                Some(f) if Shape::of(f.data_type) == Shape::Multi => Some(FlatField::Multi(f)),
                Some(f) => Some(FlatField::Column(f)),
            }
        })
        .collect()
}

/// The filter, order and paging of a find compiled to one `SELECT <select> ... LIMIT` statement.
pub(super) fn compile_find(
    cat: &Catalog,
    tc: &TypeCat,
    q: &FindQuery,
    now: DateTime,
    select: &str,
) -> Result<(String, Vec<rusqlite::types::Value>), StoreError> {
    let mut c = Compiler::new(cat, now);
    let wh = c.filter(&q.filter, "t", tc)?;
    let order = c.order_by(&q.sorts, "t", tc)?;
    c.check_params(tc)?;
    let limit = q.limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
    let offset = i64::try_from(q.offset).unwrap_or(i64::MAX);
    let sql = format!(
        "SELECT {select} FROM {} AS t WHERE t._retired = {} AND {wh} ORDER BY {order} LIMIT {limit} OFFSET {offset}",
        tc.table(),
        i64::from(q.retired_only)
    );
    Ok((sql, c.params))
}

/// Compiled SQL longer than this is not kept in the connection's statement cache (a few KiB is a
/// filter of dozens of conditions).
const MAX_CACHED_SQL: usize = 16 * 1024;

/// A compiled find or count statement. Statements are cached per connection (up to 256), which
/// saves parsing the same query shape again; one compiled from a filter of thousands of
/// conditions is finalized after use instead, so a stream of such queries cannot fill every
/// pooled connection's cache with megabyte-sized statements.
pub(super) struct QueryStatement<'c> {
    stmt: Option<rusqlite::CachedStatement<'c>>,
    keep: bool,
}

impl<'c> QueryStatement<'c> {
    pub(super) fn prepare(conn: &'c Connection, sql: &str) -> Result<Self, StoreError> {
        Ok(QueryStatement {
            stmt: Some(conn.prepare_cached(sql).map_err(sql_err)?),
            keep: sql.len() <= MAX_CACHED_SQL,
        })
    }
}

impl<'c> std::ops::Deref for QueryStatement<'c> {
    type Target = rusqlite::Statement<'c>;
    fn deref(&self) -> &Self::Target {
        // `stmt` is only taken in `drop`.
        self.stmt.as_deref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for QueryStatement<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.stmt.as_deref_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for QueryStatement<'_> {
    fn drop(&mut self) {
        if !self.keep
            && let Some(stmt) = self.stmt.take()
        {
            stmt.discard();
        }
    }
}

/// What a link's target says about the link under the link rule (see `filter::eval::live_link_name`):
/// `Some(display name)` for a live cached target, `None` for a retired one; targets that are not
/// cached rows are absent from the map (the stored name stays).
type Targets = BTreeMap<(String, i64), Option<Option<String>>>;

/// Looks up the retired flag and display name of the cached targets of `links`.
fn link_targets<'a>(
    conn: &Connection,
    cat: &Catalog,
    links: impl Iterator<Item = &'a EntityRef>,
) -> Result<Targets, StoreError> {
    let mut wanted: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    for r in links {
        if cat.types.contains_key(&r.entity_type) {
            wanted.entry(&r.entity_type).or_default().insert(r.id);
        }
    }
    let mut out = Targets::new();
    for (t, ids) in wanted {
        let tc = cat.get(t)?;
        let ids: Vec<i64> = ids.into_iter().collect();
        let sql = format!(
            "SELECT id, _retired, _dn FROM {} WHERE id IN (SELECT value FROM json_each(?1))",
            tc.table()
        );
        let mut stmt = conn.prepare_cached(&sql).map_err(sql_err)?;
        let mut rows = stmt
            .query(params![serde_json::to_string(&ids).unwrap_or_default()])
            .map_err(sql_err)?;
        while let Some(r) = rows.next().map_err(sql_err)? {
            let id: i64 = r.get(0).map_err(sql_err)?;
            let retired = r.get::<_, i64>(1).map_err(sql_err)? != 0;
            let name: Option<String> = r.get(2).map_err(sql_err)?;
            out.insert((t.to_owned(), id), (!retired).then_some(name));
        }
    }
    Ok(out)
}

/// A stored link as a reader sees it (`query::live_link` on the looked-up targets).
fn live(targets: &Targets, r: EntityRef) -> Option<EntityRef> {
    match targets.get(&(r.entity_type.clone(), r.id)) {
        None => Some(r),
        Some(None) => None,
        Some(Some(name)) => Some(EntityRef {
            name: name.clone().or(r.name),
            ..r
        }),
    }
}

/// A find whose return fields are all fields of the row itself: one statement selects the page
/// with its columns, one reads the multi_entity side rows of the page, one per linked cached type
/// reads the link targets' names and retired flags, and each row becomes a record directly (no
/// entity is built). The values are what the reference projection (`query::project`) gives.
fn find_flat(
    conn: &Connection,
    cat: &Catalog,
    tc: &TypeCat,
    q: &FindQuery,
    now: DateTime,
    fields: &[FlatField<'_>],
) -> Result<Vec<Record>, StoreError> {
    let mut select = String::from("t.id");
    // The first column of each field and its column count.
    let mut spans = Vec::with_capacity(fields.len());
    let mut next = 1;
    for f in fields {
        if let FlatField::Column(f) = f {
            let cols = Shape::of(f.data_type).columns(&f.name);
            spans.push((next, cols.len()));
            next += cols.len();
            for (c, _) in cols {
                select.push_str(", t.");
                select.push_str(&codec::ident(&c));
            }
        } else {
            spans.push((0, 0));
        }
    }
    let (sql, params) = compile_find(cat, tc, q, now, &select)?;
    let mut stmt = QueryStatement::prepare(conn, &sql)?;
    let mut rows = stmt.query(params_from_iter(params)).map_err(sql_err)?;
    let t = &tc.layout.entity_type;
    // The page: ids and the decoded values, in field order (`None` for fields read elsewhere).
    let mut page: Vec<(i64, Vec<Option<Value>>)> = Vec::new();
    while let Some(r) = rows.next().map_err(sql_err)? {
        let id: i64 = r.get(0).map_err(sql_err)?;
        let mut vals = Vec::with_capacity(fields.len());
        for (f, (start, n)) in fields.iter().zip(&spans) {
            vals.push(match f {
                FlatField::Column(f) => {
                    // At most three columns a field (a link's): no allocation per row.
                    let mut cols = [rusqlite::types::ValueRef::Null; 3];
                    for (j, c) in cols.iter_mut().enumerate().take(*n) {
                        *c = r.get_ref(start + j).map_err(sql_err)?;
                    }
                    Some(codec::decode_field(t, f, &cols[..(*n).min(3)])?)
                }
                _ => None,
            });
        }
        page.push((id, vals));
    }
    drop(rows);
    drop(stmt);
    // multi_entity side rows of the page: (id, field) -> links in order.
    let multi: Vec<&str> = fields
        .iter()
        .filter_map(|f| match f {
            FlatField::Multi(f) => Some(f.name.as_str()),
            _ => None,
        })
        .collect();
    let mut side: BTreeMap<(i64, &str), Vec<EntityRef>> = BTreeMap::new();
    if !multi.is_empty() && !page.is_empty() {
        let ids: Vec<i64> = page.iter().map(|(id, _)| *id).collect();
        let sql = format!(
            "SELECT src_id, field, dst_type, dst_id, name FROM {} \
             WHERE src_id IN (SELECT value FROM json_each(?1)) AND field IN (SELECT value FROM json_each(?2)) \
             ORDER BY src_id, field, pos",
            tc.multi_table()
        );
        let mut stmt = conn.prepare_cached(&sql).map_err(sql_err)?;
        let mut rows = stmt
            .query(params![
                serde_json::to_string(&ids).unwrap_or_default(),
                serde_json::to_string(&multi).unwrap_or_default()
            ])
            .map_err(sql_err)?;
        while let Some(r) = rows.next().map_err(sql_err)? {
            let src: i64 = r.get(0).map_err(sql_err)?;
            let field: String = r.get(1).map_err(sql_err)?;
            let Some(key) = multi.iter().find(|m| **m == field) else {
                continue;
            };
            side.entry((src, key)).or_default().push(EntityRef {
                entity_type: r.get(2).map_err(sql_err)?,
                id: r.get(3).map_err(sql_err)?,
                name: r.get(4).map_err(sql_err)?,
            });
        }
    }
    let page_links = page
        .iter()
        .flat_map(|(_, vals)| vals.iter())
        .filter_map(|v| match v {
            Some(Value::Entity(r)) => Some(r),
            _ => None,
        })
        .chain(side.values().flatten());
    let targets = link_targets(conn, cat, page_links)?;
    let mut out = Vec::with_capacity(page.len());
    for (id, vals) in page {
        let mut rec = BTreeMap::new();
        for ((f, path), v) in fields.iter().zip(&q.fields).zip(vals) {
            let v = match (f, v) {
                (FlatField::Absent, _) => continue,
                (FlatField::Id, _) => Value::Int(id),
                (FlatField::Empty(dt), _) => Value::empty_for(*dt),
                (FlatField::Multi(f), _) => Value::MultiEntity(
                    side.get(&(id, f.name.as_str()))
                        .into_iter()
                        .flatten()
                        .filter_map(|r| live(&targets, r.clone()))
                        .collect(),
                ),
                (_, Some(Value::Entity(r))) => live(&targets, r).map_or(Value::Null, Value::Entity),
                (_, Some(Value::Null) | None) => Value::empty_for(path.leaf_type),
                (_, Some(v)) => v,
            };
            rec.insert(path.raw.clone(), v);
        }
        out.push(Record {
            entity_type: t.clone(),
            id,
            fields: rec,
        });
    }
    Ok(out)
}

pub(crate) fn find(
    conn: &Connection,
    cat: &Catalog,
    q: &FindQuery,
    now: DateTime,
) -> Result<Vec<Record>, StoreError> {
    let tc = cat.get(&q.entity_type)?;
    if let Some(fields) = flat_fields(tc, q) {
        return find_flat(conn, cat, tc, q, now, &fields);
    }
    let (sql, params) = compile_find(cat, tc, q, now, "t.id")?;
    let mut stmt = QueryStatement::prepare(conn, &sql)?;
    let ids: Vec<i64> = stmt
        .query_map(params_from_iter(params), |r| r.get(0))
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
    c.check_params(tc)?;
    let sql = format!(
        "SELECT count(*) FROM {} AS t WHERE t._retired = {} AND {wh}",
        tc.table(),
        i64::from(q.retired_only)
    );
    let n: i64 = QueryStatement::prepare(conn, &sql)?
        .query_row(params_from_iter(c.params), |r| r.get(0))
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
                    entity: match r.get_ref(7)? {
                        rusqlite::types::ValueRef::Null => None,
                        rusqlite::types::ValueRef::Blob(b) => Some(Snapshot::Binary(b.to_vec())),
                        v => Some(Snapshot::Json(v.as_str()?.to_owned())),
                    },
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

/// Deletes the journal's oldest entries: a prefix by sequence number, up to the first entry applied
/// at or after `before` (all of them when there is none). Deleting by `at` alone would leave a hole
/// after a step back of the writer's clock (a later entry with an earlier time), and a Watch resumed
/// from before the hole would skip it without knowing. The scan runs in `seq` order (`NOT INDEXED`:
/// the rowid's order, not a sort) and stops at the first entry it keeps, so it reads only what it
/// deletes.
pub(crate) fn trim_journal(conn: &Connection, before: DateTime) -> Result<u64, StoreError> {
    let n = conn
        .execute(
            "DELETE FROM sc_journal WHERE seq < coalesce(\
                 (SELECT seq FROM sc_journal NOT INDEXED WHERE at >= ?1 ORDER BY seq LIMIT 1), \
                 (SELECT seq + 1 FROM sqlite_sequence WHERE name = 'sc_journal'))",
            params![before.0],
        )
        .map_err(sql_err)?;
    Ok(n as u64)
}
