//! The write path: applying a [`WriteBatch`] inside one transaction (entity rows, journal entries,
//! type states, state keys, schema), staging, and promotion.
//!
//! The guard rules (see `store` and `model::entity`) are applied here in Rust on the row read back from
//! the table; the SQL is plain keyed reads and writes through cached prepared statements.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use rusqlite::{Connection, params};

use super::catalog::{self, Catalog, TypeCat};
use super::codec::{self, Shape, StoredVersions};
use super::rows::{self, RowSql, StoredRow};
use super::snapshot;
use super::sql_err;
use crate::model::{DataType, DateTime, Entity, Value};
use crate::store::guard::{changed_value, display_from, normalize, same_value};
use crate::store::{
    CommitResult, EntityWrite, JournalEntry, JournalOp, StoreError, TypeLayout, TypeState,
    WriteBatch, WriteOutcome,
};

/// One type's tables as a commit writes them.
struct Target<'a> {
    layout: &'a TypeLayout,
    display_field: Option<&'a str>,
    sql: RowSql,
    /// Whether the writes are journaled (snapshots are only built then).
    journal: bool,
    /// Ids that may exist in the table (every id of the batch that existed before it, plus the rows
    /// it created): an id outside it needs no lookup, which keeps imports of new rows fast.
    maybe_present: HashSet<i64>,
    /// The layout's field names, and its multi_entity ones (for new rows, which write them all).
    names: HashSet<&'a str>,
    multi: Vec<&'a str>,
}

impl<'a> Target<'a> {
    fn new(
        conn: &Connection,
        layout: &'a TypeLayout,
        display_field: Option<&'a str>,
        sql: RowSql,
        journal: bool,
        writes: &[EntityWrite],
    ) -> Result<Target<'a>, StoreError> {
        let ids: Vec<i64> = writes
            .iter()
            .filter(|w| write_type(w).0 == layout.entity_type)
            .map(|w| write_type(w).1)
            .collect();
        let q = format!(
            "SELECT id FROM {} WHERE id IN (SELECT value FROM json_each(?1))",
            sql.table
        );
        let mut stmt = conn.prepare_cached(&q).map_err(sql_err)?;
        let maybe_present = stmt
            .query_map(
                params![serde_json::to_string(&ids).unwrap_or_default()],
                |r| r.get(0),
            )
            .map_err(sql_err)?
            .collect::<Result<HashSet<i64>, _>>()
            .map_err(sql_err)?;
        drop(stmt);
        Ok(Target {
            layout,
            display_field,
            sql,
            journal,
            maybe_present,
            names: layout.fields.iter().map(|f| f.name.as_str()).collect(),
            multi: layout
                .fields
                .iter()
                .filter(|f| f.data_type == DataType::MultiEntity)
                .map(|f| f.name.as_str())
                .collect(),
        })
    }
}

/// A journal entry to append: event id, type, id, op, changed fields, snapshot.
type PendingEntry = (i64, String, i64, JournalOp, Vec<String>, Option<Entity>);

/// What applying one write produced.
struct Applied {
    outcome: WriteOutcome,
    journal: Option<PendingEntry>,
}

fn unchanged() -> Applied {
    Applied {
        outcome: WriteOutcome::Unchanged,
        journal: None,
    }
}

fn missing() -> Applied {
    Applied {
        outcome: WriteOutcome::Missing,
        journal: None,
    }
}

/// An applied write; `e` (the row after it, no longer needed by the caller) becomes the journal
/// entry's snapshot when `snapshot`, without a copy.
fn applied(
    event_id: i64,
    e: Entity,
    op: JournalOp,
    fields: Vec<String>,
    snapshot: bool,
) -> Applied {
    Applied {
        outcome: WriteOutcome::Applied {
            op,
            fields: fields.clone(),
        },
        journal: Some((
            event_id,
            e.entity_type.clone(),
            e.id,
            op,
            fields,
            snapshot.then_some(e),
        )),
    }
}

fn write_type(w: &EntityWrite) -> (&str, i64) {
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

/// The target made for a write's type in [`commit`]'s first pass.
fn target_of<'t, 'a>(
    cat: &Catalog,
    targets: &'t mut BTreeMap<&str, Target<'a>>,
    w: &EntityWrite,
) -> Result<&'t mut Target<'a>, StoreError> {
    let (t, _) = write_type(w);
    let key = cat.get(t)?.layout.entity_type.as_str();
    targets
        .get_mut(key)
        .ok_or_else(|| StoreError::Internal(format!("no write target for {key}")))
}

/// Applies one write to one table pair. The write is consumed: an upsert's values move into the
/// row instead of being copied.
fn apply(conn: &Connection, tgt: &mut Target<'_>, w: EntityWrite) -> Result<Applied, StoreError> {
    let layout = tgt.layout;
    let (_, id) = write_type(&w);
    let existing = if tgt.maybe_present.contains(&id) {
        rows::load(conn, layout, &tgt.sql, id)?
    } else {
        None
    };
    if matches!(w, EntityWrite::Upsert { .. }) {
        tgt.maybe_present.insert(id);
    }
    let retire = matches!(w, EntityWrite::Retire { .. });
    match w {
        EntityWrite::Upsert {
            mut entity,
            floor,
            event_id,
        } => {
            let is_new = existing.is_none();
            // The fields the write carries (a new row's journal entry lists them).
            let carried: Vec<String> = if is_new {
                layout
                    .fields
                    .iter()
                    .filter(|f| entity.fields.contains_key(&f.name))
                    .map(|f| f.name.clone())
                    .collect()
            } else {
                Vec::new()
            };
            // A new row takes the fields it carries (normalised, moved out of the write) and the
            // empty value elsewhere; only an existing row needs the per-field comparison below.
            let mut row = match &existing {
                Some(old) => old.clone(),
                None => {
                    let mut fields = std::mem::take(&mut entity.fields);
                    fields.retain(|k, _| tgt.names.contains(k.as_str()));
                    for f in &layout.fields {
                        match fields.get_mut(&f.name) {
                            Some(v) => {
                                *v = normalize(f.data_type, std::mem::replace(v, Value::Null));
                            }
                            None => {
                                fields.insert(f.name.clone(), Value::empty_for(f.data_type));
                            }
                        }
                    }
                    let mut e = Entity::new(layout.entity_type.clone(), id);
                    e.fields = fields;
                    StoredRow {
                        entity: e,
                        versions: StoredVersions::default(),
                    }
                }
            };
            let mut changed = Vec::new();
            let mut multi_changed = Vec::new();
            let mut cols_changed = Vec::new();
            for f in layout.fields.iter().filter(|_| !is_new) {
                let Some(v) = entity.fields.remove(&f.name) else {
                    continue;
                };
                let v = normalize(f.data_type, v);
                let old = row
                    .entity
                    .fields
                    .get(&f.name)
                    .cloned()
                    .unwrap_or(Value::Null);
                if !same_value(&old, &v) {
                    changed.push(f.name.clone());
                }
                if old != v {
                    if Shape::of(f.data_type) == Shape::Multi {
                        multi_changed.push(f.name.as_str());
                    } else {
                        cols_changed.push(f.name.as_str());
                    }
                    row.entity.fields.insert(f.name.clone(), v);
                }
            }
            row.versions.raise_floor(floor);
            let old_retired = row.entity.retired;
            if row.entity.retired_version <= floor {
                row.entity.retired = entity.retired;
                row.entity.retired_version = row.entity.retired_version.max(floor);
            }
            row.entity.display_name = entity.display_name.take().or_else(|| {
                tgt.display_field
                    .and_then(|f| display_from(row.entity.get(f)))
            });
            row.entity.last_event_id = row.entity.last_event_id.max(floor).max(event_id);
            row.entity.versions = row.versions.expand(layout);
            let differs = existing
                .as_ref()
                .is_none_or(|old| old.entity != row.entity || old.versions != row.versions);
            if differs && is_new {
                rows::write_new(conn, layout, &tgt.sql, &row, &tgt.multi)?;
            } else if differs {
                let stored: Vec<(&str, &Value)> = multi_changed
                    .iter()
                    .map(|f| {
                        (
                            *f,
                            existing.as_ref().map_or(&Value::Null, |o| o.entity.get(f)),
                        )
                    })
                    .collect();
                rows::update(conn, layout, &tgt.sql, &row, &cols_changed, &stored)?;
            }
            Ok(if is_new {
                applied(
                    event_id,
                    row.entity,
                    JournalOp::Create,
                    carried,
                    tgt.journal,
                )
            } else if old_retired != row.entity.retired {
                let op = if row.entity.retired {
                    JournalOp::Retire
                } else {
                    JournalOp::Revive
                };
                applied(event_id, row.entity, op, Vec::new(), tgt.journal)
            } else if !changed.is_empty() {
                changed.sort();
                applied(
                    event_id,
                    row.entity,
                    JournalOp::Update,
                    changed,
                    tgt.journal,
                )
            } else {
                unchanged()
            })
        }
        EntityWrite::Patch {
            event_id, changes, ..
        } => {
            let Some(mut row) = existing else {
                return Ok(missing());
            };
            // The versions before this patch (the row itself is changed in place).
            let old_versions = row.versions.clone();
            let mut changed = BTreeSet::new();
            // Each changed multi_entity field with its value before this patch (what its side rows
            // hold).
            let mut multi_changed: Vec<(&str, Value)> = Vec::new();
            let mut cols_changed: Vec<&str> = Vec::new();
            let mut any_applied = false;
            for c in changes {
                let Some(f) = layout.fields.iter().find(|f| f.name == c.field()) else {
                    continue;
                };
                // Compare with the version before this patch: one event may carry several
                // changes of one field (multi_entity `removed` and `added`).
                if event_id <= old_versions.get(&f.name) {
                    continue;
                }
                any_applied = true;
                row.versions.set(&f.name, event_id);
                let cur = row
                    .entity
                    .fields
                    .get(&f.name)
                    .cloned()
                    .unwrap_or(Value::Null);
                let Some(new) = changed_value(f.data_type, &cur, &c) else {
                    return Err(StoreError::Invalid(format!(
                        "cannot add or remove links on {}.{} holding {cur:?}",
                        layout.entity_type, f.name
                    )));
                };
                if !same_value(&cur, &new) {
                    changed.insert(f.name.clone());
                }
                if cur != new {
                    let name = f.name.as_str();
                    if Shape::of(f.data_type) != Shape::Multi {
                        if !cols_changed.contains(&name) {
                            cols_changed.push(name);
                        }
                    } else if !multi_changed.iter().any(|(n, _)| *n == name) {
                        multi_changed.push((name, cur.clone()));
                    }
                    if tgt.display_field == Some(f.name.as_str()) {
                        row.entity.display_name = display_from(&new);
                    }
                    row.entity.fields.insert(f.name.clone(), new);
                }
            }
            if !any_applied {
                return Ok(unchanged());
            }
            row.entity.last_event_id = row.entity.last_event_id.max(event_id);
            row.entity.versions = row.versions.expand(layout);
            let stored: Vec<(&str, &Value)> = multi_changed.iter().map(|(n, v)| (*n, v)).collect();
            rows::update(conn, layout, &tgt.sql, &row, &cols_changed, &stored)?;
            Ok(if changed.is_empty() {
                unchanged()
            } else {
                applied(
                    event_id,
                    row.entity,
                    JournalOp::Update,
                    changed.into_iter().collect(),
                    tgt.journal,
                )
            })
        }
        EntityWrite::Retire { event_id, .. } | EntityWrite::Revive { event_id, .. } => {
            let Some(old) = existing else {
                return Ok(missing());
            };
            if event_id <= old.entity.retired_version {
                return Ok(unchanged());
            }
            let was_retired = old.entity.retired;
            let mut row = old;
            row.entity.retired_version = event_id;
            row.entity.last_event_id = row.entity.last_event_id.max(event_id);
            row.entity.retired = retire;
            rows::update(conn, layout, &tgt.sql, &row, &[], &[])?;
            Ok(if was_retired == retire {
                unchanged()
            } else {
                let op = if retire {
                    JournalOp::Retire
                } else {
                    JournalOp::Revive
                };
                applied(event_id, row.entity, op, Vec::new(), tgt.journal)
            })
        }
        EntityWrite::Remove { event_id, .. } => {
            let Some(old) = existing else {
                return Ok(unchanged());
            };
            if event_id != 0 && event_id < old.entity.last_event_id {
                return Ok(unchanged());
            }
            rows::delete(conn, &tgt.sql, id)?;
            Ok(applied(
                event_id,
                old.entity,
                JournalOp::Remove,
                Vec::new(),
                false,
            ))
        }
    }
}

/// Appends one journal entry and returns it.
fn append_journal(
    conn: &Connection,
    at: DateTime,
    (event_id, entity_type, entity_id, op, fields, entity): PendingEntry,
) -> Result<JournalEntry, StoreError> {
    conn.prepare_cached(
        "INSERT INTO sc_journal(event_id, entity_type, entity_id, op, fields, at, entity) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            event_id,
            entity_type,
            entity_id,
            op.as_str(),
            serde_json::to_string(&fields).unwrap_or_else(|_| "[]".into()),
            at.0,
            entity.as_ref().map(snapshot::encode),
        ])
    })
    .map_err(sql_err)?;
    let seq = conn.last_insert_rowid();
    Ok(JournalEntry {
        seq: u64::try_from(seq).unwrap_or(0),
        event_id,
        entity_type,
        entity_id,
        op,
        fields,
        at,
        entity,
    })
}

pub(crate) fn save_type_state(conn: &Connection, s: &TypeState) -> Result<(), StoreError> {
    let (phase, done, total, hash, ready) = codec::type_state_parts(s);
    conn.prepare_cached(
        "INSERT OR REPLACE INTO sc_type_state(entity_type, phase, done, total, config_hash, ready_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut st| st.execute(params![s.entity_type, phase, done, total, hash, ready]))
    .map_err(sql_err)?;
    Ok(())
}

/// Commits a batch. Returns the result and whether the catalog changed (a new schema).
pub(crate) fn commit(
    conn: &Connection,
    cat: &Catalog,
    batch: WriteBatch,
) -> Result<(CommitResult, bool), StoreError> {
    let at = DateTime::now();
    // Each type's target is made before any write is applied (it looks up which of the batch's
    // ids exist), so the writes can then be consumed one by one.
    let mut live: BTreeMap<&str, Target<'_>> = BTreeMap::new();
    for w in &batch.writes {
        let (t, _) = write_type(w);
        let tc: &TypeCat = cat.get(t)?;
        let key = tc.layout.entity_type.as_str();
        if !live.contains_key(key) {
            let tgt = Target::new(
                conn,
                &tc.layout,
                tc.display_field.as_deref(),
                RowSql::live(tc),
                batch.journal,
                &batch.writes,
            )?;
            live.insert(key, tgt);
        }
    }
    let mut staging: BTreeMap<&str, Target<'_>> = BTreeMap::new();
    for w in &batch.staging {
        let (t, _) = write_type(w);
        let tc: &TypeCat = cat.get(t)?;
        let Some((layout, generation)) = &tc.staging else {
            return Err(StoreError::Invalid(format!(
                "entity type {t} has no staging copy (call begin_staging first)"
            )));
        };
        let key = tc.layout.entity_type.as_str();
        if !staging.contains_key(key) {
            let display_field = tc
                .display_field
                .as_deref()
                .filter(|d| layout.fields.iter().any(|f| f.name == *d));
            let sql = RowSql::new(
                layout,
                catalog::entity_table(t, *generation),
                catalog::multi_table(t, *generation),
            );
            let tgt = Target::new(conn, layout, display_field, sql, false, &batch.staging)?;
            staging.insert(key, tgt);
        }
    }
    let mut result = CommitResult::default();
    for w in batch.writes {
        let tgt = target_of(cat, &mut live, &w)?;
        let a = apply(conn, tgt, w)?;
        result.outcomes.push(a.outcome);
        if batch.journal
            && let Some(j) = a.journal
        {
            result.journal.push(append_journal(conn, at, j)?);
        }
    }
    for w in batch.staging {
        let tgt = target_of(cat, &mut staging, &w)?;
        apply(conn, tgt, w)?;
    }
    for s in &batch.type_states {
        save_type_state(conn, s)?;
    }
    let mut catalog_changed = false;
    if let Some(schema) = &batch.schema {
        catalog::save_schema(conn, schema)?;
        catalog::bump_gen(conn)?;
        catalog_changed = true;
    }
    for (k, v) in &batch.state {
        conn.prepare_cached("INSERT OR REPLACE INTO sc_state(key, value) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![k, v.to_string()]))
            .map_err(sql_err)?;
    }
    Ok((result, catalog_changed))
}

/// `begin_staging`: (re)creates an empty staging copy of a type with `layout`.
pub(crate) fn begin_staging(
    conn: &Connection,
    cat: &Catalog,
    layout: &TypeLayout,
) -> Result<(), StoreError> {
    let tc = cat.get(&layout.entity_type)?;
    if let Some((_, g)) = &tc.staging {
        catalog::drop_tables(conn, &layout.entity_type, *g)?;
    }
    let generation = catalog::bump_gen(conn)?;
    catalog::create_tables(conn, layout, generation)?;
    catalog::save_type(conn, &tc.layout, tc.generation, Some((layout, generation)))
}

/// `promote_staging`: makes the staging copy live, drops the old tables, saves the state and journals
/// one `Reload`.
pub(crate) fn promote_staging(
    conn: &Connection,
    cat: &Catalog,
    state: &TypeState,
) -> Result<JournalEntry, StoreError> {
    let t = &state.entity_type;
    let tc = cat.get(t)?;
    let Some((layout, generation)) = &tc.staging else {
        return Err(StoreError::Invalid(format!(
            "entity type {t} has no staging copy to promote"
        )));
    };
    catalog::drop_tables(conn, t, tc.generation)?;
    catalog::save_type(conn, layout, *generation, None)?;
    catalog::bump_gen(conn)?;
    save_type_state(conn, state)?;
    append_journal(
        conn,
        DateTime::now(),
        (0, t.clone(), 0, JournalOp::Reload, Vec::new(), None),
    )
}
