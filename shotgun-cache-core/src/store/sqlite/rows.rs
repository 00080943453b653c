//! Reading and writing whole entity rows (the entity table row plus its multi_entity side rows).

use std::collections::BTreeMap;

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use super::catalog::{BOOK_COLUMNS, TypeCat};
use super::codec::{self, Shape, StoredVersions, ident};
use super::sql_err;
use crate::model::{Entity, EntityRef, Value};
use crate::store::{StoreError, TypeLayout};

/// One stored row: the entity (multi_entity fields filled) and its stored versions.
#[derive(Debug, Clone)]
pub(crate) struct StoredRow {
    pub(crate) entity: Entity,
    pub(crate) versions: StoredVersions,
}

/// The SQL texts for one physical table pair (cached per commit).
pub(crate) struct RowSql {
    pub(crate) table: String,
    pub(crate) select_by_id: String,
    pub(crate) upsert: String,
    pub(crate) multi_select: String,
    pub(crate) multi_insert: String,
    pub(crate) multi_delete_field: String,
    pub(crate) multi_delete_all: String,
    pub(crate) delete: String,
}

/// The column list (bookkeeping columns, then each non-multi field's columns) of a layout.
pub(crate) fn column_list(layout: &TypeLayout) -> Vec<String> {
    let mut cols: Vec<String> = BOOK_COLUMNS.iter().map(|c| (*c).to_owned()).collect();
    for f in &layout.fields {
        cols.extend(
            Shape::of(f.data_type)
                .columns(&f.name)
                .into_iter()
                .map(|(c, _)| c),
        );
    }
    cols
}

impl RowSql {
    pub(crate) fn new(layout: &TypeLayout, table: String, multi: String) -> RowSql {
        let cols = column_list(layout);
        let quoted: Vec<String> = cols.iter().map(|c| ident(c)).collect();
        let select_cols = quoted
            .iter()
            .map(|c| format!("t.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let placeholders = (1..=cols.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let updates = quoted[1..]
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        RowSql {
            select_by_id: format!("SELECT {select_cols} FROM {table} AS t WHERE t.id = ?1"),
            upsert: format!(
                "INSERT INTO {table} ({}) VALUES ({placeholders}) ON CONFLICT(id) DO UPDATE SET {updates}",
                quoted.join(", ")
            ),
            multi_select: format!(
                "SELECT src_id, field, dst_type, dst_id, name FROM {multi} WHERE src_id = ?1 ORDER BY field, pos"
            ),
            multi_insert: format!(
                "INSERT INTO {multi} (src_id, field, pos, dst_type, dst_id, name) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ),
            multi_delete_field: format!(
                "DELETE FROM {multi} WHERE src_id = ?1 AND field = ?2 AND pos >= ?3"
            ),
            multi_delete_all: format!("DELETE FROM {multi} WHERE src_id = ?1"),
            delete: format!("DELETE FROM {table} WHERE id = ?1"),
            table,
        }
    }

    pub(crate) fn live(tc: &TypeCat) -> RowSql {
        RowSql::new(&tc.layout, tc.table(), tc.multi_table())
    }
}

/// Decodes a row selected with [`RowSql::select_cols`], starting at column `start`.
pub(crate) fn decode_row(
    tc_layout: &TypeLayout,
    row: &Row<'_>,
    start: usize,
) -> Result<StoredRow, StoreError> {
    let t = &tc_layout.entity_type;
    let get =
        |i: usize| -> Result<ValueRef<'_>, StoreError> { row.get_ref(start + i).map_err(sql_err) };
    let int = |i: usize| -> Result<i64, StoreError> {
        match get(i)? {
            ValueRef::Integer(v) => Ok(v),
            ValueRef::Null => Ok(0),
            _ => Err(StoreError::Corrupt(format!(
                "bookkeeping column {} of {t} is not an integer",
                BOOK_COLUMNS[i]
            ))),
        }
    };
    let text = |i: usize| -> Result<Option<String>, StoreError> {
        match get(i)? {
            ValueRef::Text(s) => Ok(Some(String::from_utf8_lossy(s).into_owned())),
            _ => Ok(None),
        }
    };
    let mut e = Entity::new(t.clone(), int(0)?);
    e.retired = int(1)? != 0;
    e.retired_version = int(2)?;
    e.last_event_id = int(3)?;
    e.display_name = text(4)?;
    let versions = StoredVersions {
        base: int(5)?,
        above: StoredVersions::parse_above(text(6)?.as_deref())?,
    };
    let mut i = BOOK_COLUMNS.len();
    for f in &tc_layout.fields {
        let n = Shape::of(f.data_type).column_count();
        let mut cols = [ValueRef::Null; 3];
        for (j, c) in cols.iter_mut().enumerate().take(n) {
            *c = get(i + j)?;
        }
        e.fields
            .insert(f.name.clone(), codec::decode_field(t, f, &cols[..n])?);
        i += n;
    }
    e.versions = versions.expand(tc_layout);
    Ok(StoredRow {
        entity: e,
        versions,
    })
}

/// Reads the multi_entity side rows of a set of ids into the entities (keyed by id).
pub(crate) fn fill_multi(
    conn: &Connection,
    multi_table: &str,
    rows: &mut BTreeMap<i64, &mut Entity>,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = rows.keys().copied().collect();
    let sql = format!(
        "SELECT src_id, field, dst_type, dst_id, name FROM {multi_table} WHERE src_id IN (SELECT value FROM json_each(?1)) \
         ORDER BY src_id, field, pos"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(sql_err)?;
    let mut q = stmt
        .query(params![serde_json::to_string(&ids).unwrap_or_default()])
        .map_err(sql_err)?;
    while let Some(r) = q.next().map_err(sql_err)? {
        let src: i64 = r.get(0).map_err(sql_err)?;
        let field: String = r.get(1).map_err(sql_err)?;
        let link = EntityRef {
            entity_type: r.get(2).map_err(sql_err)?,
            id: r.get(3).map_err(sql_err)?,
            name: r.get(4).map_err(sql_err)?,
        };
        if let Some(e) = rows.get_mut(&src)
            && let Some(Value::MultiEntity(list)) = e.fields.get_mut(&field)
        {
            list.push(link);
        }
    }
    Ok(())
}

/// Loads one row with its multi_entity links.
pub(crate) fn load(
    conn: &Connection,
    layout: &TypeLayout,
    sql: &RowSql,
    id: i64,
) -> Result<Option<StoredRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&sql.select_by_id).map_err(sql_err)?;
    let row = stmt
        .query_row(params![id], |r| Ok(decode_row(layout, r, 0)))
        .optional()
        .map_err(sql_err)?
        .transpose()?;
    let Some(mut row) = row else { return Ok(None) };
    if layout
        .fields
        .iter()
        .any(|f| Shape::of(f.data_type) == Shape::Multi)
    {
        let mut stmt = conn.prepare_cached(&sql.multi_select).map_err(sql_err)?;
        let mut q = stmt.query(params![id]).map_err(sql_err)?;
        while let Some(r) = q.next().map_err(sql_err)? {
            let field: String = r.get(1).map_err(sql_err)?;
            let link = EntityRef {
                entity_type: r.get(2).map_err(sql_err)?,
                id: r.get(3).map_err(sql_err)?,
                name: r.get(4).map_err(sql_err)?,
            };
            if let Some(Value::MultiEntity(list)) = row.entity.fields.get_mut(&field) {
                list.push(link);
            }
        }
    }
    Ok(Some(row))
}

/// Writes a new row and the side rows of its `multi_fields` (an existing row goes through
/// [`update`], which writes only what changed).
pub(crate) fn write_new(
    conn: &Connection,
    layout: &TypeLayout,
    sql: &RowSql,
    row: &StoredRow,
    multi_fields: &[&str],
) -> Result<(), StoreError> {
    let e = &row.entity;
    let t = &layout.entity_type;
    let mut vals: Vec<SqlValue> = vec![SqlValue::Integer(e.id)];
    vals.extend(book_values(row));
    for f in &layout.fields {
        if Shape::of(f.data_type) == Shape::Multi {
            continue;
        }
        vals.extend(codec::encode_field(t, f, e.get(&f.name))?);
    }
    conn.prepare_cached(&sql.upsert)
        .and_then(|mut s| s.execute(params_from_iter(vals)))
        .map_err(sql_err)?;
    insert_links(conn, layout, sql, e, multi_fields, 0)
}

/// The bookkeeping values after `id`, in [`BOOK_COLUMNS`] order.
fn book_values(row: &StoredRow) -> [SqlValue; 6] {
    let e = &row.entity;
    [
        SqlValue::Integer(i64::from(e.retired)),
        SqlValue::Integer(e.retired_version),
        SqlValue::Integer(e.last_event_id),
        e.display_name
            .clone()
            .map(SqlValue::Text)
            .unwrap_or(SqlValue::Null),
        SqlValue::Integer(row.versions.base),
        row.versions
            .above_json()
            .map(SqlValue::Text)
            .unwrap_or(SqlValue::Null),
    ]
}

/// Updates an existing row in place: its bookkeeping columns, the columns of `fields` (the
/// non-multi fields that changed) and the side rows of `multi_fields`. Unlike [`write_new`], SQLite then
/// maintains only the indexes of the columns that changed, which is what keeps patches cheap.
pub(crate) fn update(
    conn: &Connection,
    layout: &TypeLayout,
    sql: &RowSql,
    row: &StoredRow,
    fields: &[&str],
    multi_fields: &[(&str, &Value)],
) -> Result<(), StoreError> {
    let e = &row.entity;
    let t = &layout.entity_type;
    let mut set = String::new();
    let mut vals: Vec<SqlValue> = book_values(row).into();
    for (i, c) in BOOK_COLUMNS[1..].iter().enumerate() {
        if i > 0 {
            set.push_str(", ");
        }
        set.push_str(&format!("{} = ?{}", ident(c), i + 1));
    }
    for f in &layout.fields {
        if Shape::of(f.data_type) == Shape::Multi || !fields.contains(&f.name.as_str()) {
            continue;
        }
        let cols = Shape::of(f.data_type).columns(&f.name);
        let enc = codec::encode_field(t, f, e.get(&f.name))?;
        for ((c, _), v) in cols.into_iter().zip(enc) {
            vals.push(v);
            set.push_str(&format!(", {} = ?{}", ident(&c), vals.len()));
        }
    }
    vals.push(SqlValue::Integer(e.id));
    let q = format!("UPDATE {} SET {set} WHERE id = ?{}", sql.table, vals.len());
    conn.prepare_cached(&q)
        .and_then(|mut s| s.execute(params_from_iter(vals)))
        .map_err(sql_err)?;
    write_multi(conn, layout, sql, e, multi_fields)
}

/// Brings the side rows of each `(field, stored value)` in `multi_fields` to the entity's value.
/// The stored value is what the side rows hold (read in this transaction): the links both values
/// share as a prefix stay, the rest is deleted and written again, so adding a link at the end
/// writes one row instead of the whole list.
fn write_multi(
    conn: &Connection,
    layout: &TypeLayout,
    sql: &RowSql,
    e: &Entity,
    multi_fields: &[(&str, &Value)],
) -> Result<(), StoreError> {
    for (field, stored) in multi_fields {
        let new = links_of(layout, field, e.get(field))?;
        let keep = match stored {
            Value::MultiEntity(old) => old.iter().zip(new).take_while(|(a, b)| a == b).count(),
            _ => 0,
        };
        conn.prepare_cached(&sql.multi_delete_field)
            .and_then(|mut s| s.execute(params![e.id, field, keep as i64]))
            .map_err(sql_err)?;
        insert_links(conn, layout, sql, e, &[field], keep)?;
    }
    Ok(())
}

/// The links of a multi_entity value (`Null` reads as none).
fn links_of<'a>(
    layout: &TypeLayout,
    field: &str,
    v: &'a Value,
) -> Result<&'a [EntityRef], StoreError> {
    match v {
        Value::MultiEntity(l) => Ok(l.as_slice()),
        Value::Null => Ok(&[]),
        other => Err(StoreError::Invalid(format!(
            "value {other:?} does not fit multi_entity field {}.{field}",
            layout.entity_type
        ))),
    }
}

/// Inserts the side rows of `fields` from position `from` on.
fn insert_links(
    conn: &Connection,
    layout: &TypeLayout,
    sql: &RowSql,
    e: &Entity,
    fields: &[&str],
    from: usize,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(&sql.multi_insert).map_err(sql_err)?;
    for field in fields {
        let links = links_of(layout, field, e.get(field))?;
        for (pos, l) in links.iter().enumerate().skip(from) {
            stmt.execute(params![
                e.id,
                field,
                pos as i64,
                l.entity_type,
                l.id,
                l.name
            ])
            .map_err(sql_err)?;
        }
    }
    Ok(())
}

/// Deletes a row and its side rows.
pub(crate) fn delete(conn: &Connection, sql: &RowSql, id: i64) -> Result<(), StoreError> {
    conn.prepare_cached(&sql.delete)
        .and_then(|mut s| s.execute(params![id]))
        .map_err(sql_err)?;
    conn.prepare_cached(&sql.multi_delete_all)
        .and_then(|mut s| s.execute(params![id]))
        .map_err(sql_err)?;
    Ok(())
}
