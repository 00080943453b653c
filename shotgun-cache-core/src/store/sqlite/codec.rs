//! Conversions between the domain types and what the SQLite backend stores: field values to and from
//! typed columns, and the JSON documents kept in the bookkeeping tables (layouts, type states, journal
//! snapshots, the site schema).
//!
//! Nothing here touches a connection; every function is pure.

use std::collections::BTreeMap;

use rusqlite::types::{Value as SqlValue, ValueRef};
use serde_json::{Value as Json, json};

use crate::model::{
    DataType, Date, DateTime, Entity, EntityRef, FieldSchema, FieldVersions, SiteSchema, Value,
};
use crate::store::guard::field_schema_to_json;
use crate::store::{JournalEntry, JournalOp, StoreError, TypeLayout, TypePhase, TypeState};

/// How one field is laid out in its type's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// TEXT column; compared case-insensitively through `sg_fold`.
    Text,
    /// INTEGER column.
    Int,
    /// REAL column.
    Float,
    /// INTEGER 0/1, never NULL.
    Bool,
    /// INTEGER days since 1970-01-01.
    Date,
    /// INTEGER Unix seconds.
    DateTime,
    /// INTEGER attachment id, or TEXT holding a JSON document when the site gave something else.
    Image,
    /// TEXT holding a JSON document.
    Json,
    /// Three columns: `<f>__t` (TEXT type), `<f>__id` (INTEGER), `<f>__n` (TEXT stored name).
    Link,
    /// Rows of the type's side table.
    Multi,
}

impl Shape {
    pub(crate) fn of(dt: DataType) -> Shape {
        use DataType as D;
        match dt {
            D::Text
            | D::StatusList
            | D::List
            | D::EntityType
            | D::Color
            | D::Uuid
            | D::Footage
            | D::SystemTaskType => Shape::Text,
            D::Number | D::Percent | D::Duration | D::Timecode => Shape::Int,
            D::Float | D::Currency => Shape::Float,
            D::Checkbox => Shape::Bool,
            D::Date => Shape::Date,
            D::DateTime => Shape::DateTime,
            D::Entity => Shape::Link,
            D::MultiEntity => Shape::Multi,
            D::Image => Shape::Image,
            D::Url
            | D::Serializable
            | D::Jsonb
            | D::TagList
            | D::Addressing
            | D::Calculated
            | D::Summary
            | D::PivotColumn
            | D::Password
            | D::Unknown => Shape::Json,
        }
    }

    /// How many SQL columns a field with this shape has (the length of [`Shape::columns`]).
    pub(crate) fn column_count(self) -> usize {
        match self {
            Shape::Link => 3,
            Shape::Multi => 0,
            _ => 1,
        }
    }

    /// The SQL column declarations for a field with this shape.
    pub(crate) fn columns(self, field: &str) -> Vec<(String, &'static str)> {
        match self {
            Shape::Text | Shape::Json => vec![(field.to_owned(), "TEXT")],
            Shape::Int | Shape::Bool | Shape::Date | Shape::DateTime => {
                vec![(field.to_owned(), "INTEGER")]
            }
            Shape::Float => vec![(field.to_owned(), "REAL")],
            Shape::Image => vec![(field.to_owned(), "BLOB")],
            Shape::Link => vec![
                (link_type_col(field), "TEXT"),
                (link_id_col(field), "INTEGER"),
                (link_name_col(field), "TEXT"),
            ],
            Shape::Multi => Vec::new(),
        }
    }
}

pub(crate) fn link_type_col(field: &str) -> String {
    format!("{field}__t")
}

pub(crate) fn link_id_col(field: &str) -> String {
    format!("{field}__id")
}

pub(crate) fn link_name_col(field: &str) -> String {
    format!("{field}__n")
}

/// Quotes an SQL identifier.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal.
pub(crate) fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn mismatch(entity_type: &str, f: &FieldSchema, v: &Value) -> StoreError {
    StoreError::Invalid(format!(
        "value {v:?} does not fit field {entity_type}.{} of data type {}",
        f.name,
        f.data_type.as_str()
    ))
}

/// The column values of one non-multi field, in the order of [`Shape::columns`].
pub(crate) fn encode_field(
    entity_type: &str,
    f: &FieldSchema,
    v: &Value,
) -> Result<Vec<SqlValue>, StoreError> {
    let shape = Shape::of(f.data_type);
    Ok(match (shape, v) {
        (Shape::Link, Value::Null) => vec![SqlValue::Null, SqlValue::Null, SqlValue::Null],
        (Shape::Link, Value::Entity(r)) => vec![
            SqlValue::Text(r.entity_type.clone()),
            SqlValue::Integer(r.id),
            r.name.clone().map(SqlValue::Text).unwrap_or(SqlValue::Null),
        ],
        (Shape::Bool, Value::Null) => vec![SqlValue::Integer(0)],
        (Shape::Bool, Value::Bool(b)) => vec![SqlValue::Integer(i64::from(*b))],
        (_, Value::Null) => vec![SqlValue::Null],
        (Shape::Text, Value::Text(s)) => vec![SqlValue::Text(s.clone())],
        (Shape::Int, Value::Int(i)) | (Shape::Image, Value::Int(i)) => vec![SqlValue::Integer(*i)],
        (Shape::Float, Value::Float(x)) => vec![SqlValue::Real(*x)],
        (Shape::Float, Value::Int(i)) => vec![SqlValue::Real(*i as f64)],
        (Shape::Date, Value::Date(d)) => vec![SqlValue::Integer(d.days_since_epoch())],
        (Shape::DateTime, Value::DateTime(t)) => vec![SqlValue::Integer(t.0)],
        // serde_json's compact form: the filter compiler relies on integers being written as their
        // decimal digits (a cheap pre-test of tag_list/addressing link filters, `compile`).
        (Shape::Image, Value::Json(j)) | (Shape::Json, Value::Json(j)) => {
            vec![SqlValue::Text(j.to_string())]
        }
        (Shape::Json, other) => vec![SqlValue::Text(other.to_json().to_string())],
        _ => return Err(mismatch(entity_type, f, v)),
    })
}

fn corrupt(entity_type: &str, field: &str, what: &str) -> StoreError {
    StoreError::Corrupt(format!("column for {entity_type}.{field} holds {what}"))
}

/// Decodes one non-multi field from its columns (`cols` as returned for [`Shape::columns`]).
pub(crate) fn decode_field(
    entity_type: &str,
    f: &FieldSchema,
    cols: &[ValueRef<'_>],
) -> Result<Value, StoreError> {
    let shape = Shape::of(f.data_type);
    let name = f.name.as_str();
    let first = cols.first().copied().unwrap_or(ValueRef::Null);
    Ok(match shape {
        Shape::Link => {
            let (t, id, n) = (first, cols.get(1).copied(), cols.get(2).copied());
            match (t, id) {
                (ValueRef::Null, _) => Value::Null,
                (ValueRef::Text(t), Some(ValueRef::Integer(id))) => Value::Entity(EntityRef {
                    entity_type: String::from_utf8_lossy(t).into_owned(),
                    id,
                    name: match n {
                        Some(ValueRef::Text(n)) => Some(String::from_utf8_lossy(n).into_owned()),
                        _ => None,
                    },
                }),
                _ => return Err(corrupt(entity_type, name, "a malformed link")),
            }
        }
        Shape::Multi => Value::MultiEntity(Vec::new()),
        Shape::Bool => match first {
            ValueRef::Integer(i) => Value::Bool(i != 0),
            ValueRef::Null => Value::Bool(false),
            _ => return Err(corrupt(entity_type, name, "a non-integer checkbox")),
        },
        _ if first == ValueRef::Null => Value::Null,
        Shape::Text => match first {
            ValueRef::Text(s) => Value::Text(String::from_utf8_lossy(s).into_owned()),
            _ => return Err(corrupt(entity_type, name, "a non-text value")),
        },
        Shape::Int => match first {
            ValueRef::Integer(i) => Value::Int(i),
            _ => return Err(corrupt(entity_type, name, "a non-integer value")),
        },
        Shape::Float => match first {
            ValueRef::Real(x) => Value::Float(x),
            ValueRef::Integer(i) => Value::Float(i as f64),
            _ => return Err(corrupt(entity_type, name, "a non-number value")),
        },
        Shape::Date => match first {
            ValueRef::Integer(d) => Value::Date(
                Date::from_days_since_epoch(d)
                    .ok_or_else(|| corrupt(entity_type, name, "a date out of range"))?,
            ),
            _ => return Err(corrupt(entity_type, name, "a non-integer date")),
        },
        Shape::DateTime => match first {
            ValueRef::Integer(t) => Value::DateTime(DateTime(t)),
            _ => return Err(corrupt(entity_type, name, "a non-integer datetime")),
        },
        Shape::Image => match first {
            ValueRef::Integer(i) => Value::Int(i),
            ValueRef::Text(s) => Value::Json(
                serde_json::from_slice(s)
                    .map_err(|e| corrupt(entity_type, name, &format!("invalid JSON ({e})")))?,
            ),
            _ => return Err(corrupt(entity_type, name, "an unexpected image value")),
        },
        Shape::Json => match first {
            ValueRef::Text(s) => Value::Json(
                serde_json::from_slice(s)
                    .map_err(|e| corrupt(entity_type, name, &format!("invalid JSON ({e})")))?,
            ),
            _ => return Err(corrupt(entity_type, name, "a non-text JSON value")),
        },
    })
}

/// Per-field versions as stored: a base every cached field is at least at, plus the fields above it.
///
/// An `Upsert` with floor `f` raises the base to `f` and drops every exception at or below it, so an
/// imported row stores one integer instead of a map naming every field.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct StoredVersions {
    pub(crate) base: i64,
    pub(crate) above: BTreeMap<String, i64>,
}

impl StoredVersions {
    pub(crate) fn get(&self, field: &str) -> i64 {
        self.above.get(field).copied().unwrap_or(0).max(self.base)
    }

    pub(crate) fn set(&mut self, field: &str, v: i64) {
        if v > self.base {
            self.above.insert(field.to_owned(), v);
        } else {
            self.above.remove(field);
        }
    }

    pub(crate) fn raise_floor(&mut self, floor: i64) {
        if floor > self.base {
            self.base = floor;
            self.above.retain(|_, v| *v > floor);
        }
    }

    /// The model's view: every layout field with a version above 0.
    pub(crate) fn expand(&self, layout: &TypeLayout) -> FieldVersions {
        let mut out = FieldVersions::new();
        for f in &layout.fields {
            let v = self.get(&f.name);
            if v > 0 {
                out.insert(f.name.clone(), v);
            }
        }
        out
    }

    pub(crate) fn above_json(&self) -> Option<String> {
        if self.above.is_empty() {
            None
        } else {
            Some(json!(self.above).to_string())
        }
    }

    pub(crate) fn parse_above(s: Option<&str>) -> Result<BTreeMap<String, i64>, StoreError> {
        match s {
            None => Ok(BTreeMap::new()),
            Some(s) => serde_json::from_str(s)
                .map_err(|e| StoreError::Corrupt(format!("field versions: {e}"))),
        }
    }
}

/// A value decoded from JSON without schema help (for journal snapshots of fields no longer known).
fn guess_value(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(0.0))),
        Json::String(s) => Value::Text(s.clone()),
        Json::Object(_) => EntityRef::from_json(v)
            .map(Value::Entity)
            .unwrap_or_else(|_| Value::Json(v.clone())),
        Json::Array(items) => match items
            .iter()
            .map(EntityRef::from_json)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(links) if !items.is_empty() => Value::MultiEntity(links),
            _ => Value::Json(v.clone()),
        },
    }
}

/// Decodes a value from its api3 JSON form for a field of `dt` (text is kept verbatim).
pub(crate) fn value_from_json(dt: Option<DataType>, v: &Json) -> Value {
    match (dt, v) {
        (None, _) => guess_value(v),
        (Some(dt), Json::String(s)) if Shape::of(dt) == Shape::Text => Value::Text(s.clone()),
        (Some(dt), _) => Value::from_json(dt, v).unwrap_or_else(|_| guess_value(v)),
    }
}

/// The JSON snapshot of an entity that journals held before the binary form (`snapshot`); read
/// back by [`entity_from_json`]. Tests write it to check that such journals still read.
#[cfg(test)]
pub(crate) fn entity_to_json_string(e: &Entity) -> String {
    fn put<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
        // Serialising strings, numbers, maps of them and `Json` into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, v);
    }
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"type\":");
    put(&mut out, &e.entity_type);
    out.extend_from_slice(b",\"id\":");
    put(&mut out, &e.id);
    out.extend_from_slice(b",\"retired\":");
    put(&mut out, &e.retired);
    out.extend_from_slice(b",\"fields\":{");
    for (i, (k, v)) in e.fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        put(&mut out, k);
        out.push(b':');
        put(&mut out, v);
    }
    out.extend_from_slice(b"},\"display_name\":");
    put(&mut out, &e.display_name);
    out.extend_from_slice(b",\"versions\":");
    put(&mut out, &e.versions);
    out.extend_from_slice(b",\"retired_version\":");
    put(&mut out, &e.retired_version);
    out.extend_from_slice(b",\"last_event_id\":");
    put(&mut out, &e.last_event_id);
    out.push(b'}');
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The snapshot as a `Json` tree: the definition [`entity_to_json_string`] is tested against.
#[cfg(test)]
fn entity_to_json(e: &Entity) -> Json {
    let fields: serde_json::Map<String, Json> = e
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect();
    json!({
        "type": e.entity_type,
        "id": e.id,
        "retired": e.retired,
        "fields": fields,
        "display_name": e.display_name,
        "versions": e.versions,
        "retired_version": e.retired_version,
        "last_event_id": e.last_event_id,
    })
}

/// Reads a journal snapshot back; `dt_of` gives the data type of a field when known.
pub(crate) fn entity_from_json(
    v: &Json,
    dt_of: &dyn Fn(&str, &str) -> Option<DataType>,
) -> Result<Entity, StoreError> {
    let bad = |what: &str| StoreError::Corrupt(format!("journal entity snapshot: {what}"));
    let entity_type = v
        .get("type")
        .and_then(Json::as_str)
        .ok_or_else(|| bad("no type"))?
        .to_owned();
    let id = v
        .get("id")
        .and_then(Json::as_i64)
        .ok_or_else(|| bad("no id"))?;
    let mut e = Entity::new(entity_type.clone(), id);
    e.retired = v.get("retired").and_then(Json::as_bool).unwrap_or(false);
    e.display_name = v
        .get("display_name")
        .and_then(Json::as_str)
        .map(str::to_owned);
    e.retired_version = v.get("retired_version").and_then(Json::as_i64).unwrap_or(0);
    e.last_event_id = v.get("last_event_id").and_then(Json::as_i64).unwrap_or(0);
    if let Some(vs) = v.get("versions").and_then(Json::as_object) {
        for (k, x) in vs {
            e.versions.insert(k.clone(), x.as_i64().unwrap_or(0));
        }
    }
    if let Some(fs) = v.get("fields").and_then(Json::as_object) {
        for (k, x) in fs {
            e.fields
                .insert(k.clone(), value_from_json(dt_of(&entity_type, k), x));
        }
    }
    Ok(e)
}

fn strings(v: Option<&Json>) -> Vec<String> {
    v.and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn field_schema_from_json(v: &Json) -> Result<FieldSchema, StoreError> {
    let s = |k: &str| v.get(k).and_then(Json::as_str).map(str::to_owned);
    let name = s("name")
        .ok_or_else(|| StoreError::Corrupt("stored layout field without a name".into()))?;
    Ok(FieldSchema {
        entity_type: s("entity_type").unwrap_or_default(),
        display_name: s("display_name").unwrap_or_else(|| name.clone()),
        data_type: DataType::parse(&s("data_type").unwrap_or_default()),
        valid_types: strings(v.get("valid_types")),
        valid_values: strings(v.get("valid_values")),
        default_value: v.get("default_value").cloned().unwrap_or(Json::Null),
        editable: v.get("editable").and_then(Json::as_bool).unwrap_or(false),
        raw: v.get("raw").cloned().unwrap_or(Json::Null),
        name,
    })
}

pub(crate) fn layout_to_json(l: &TypeLayout) -> Json {
    json!({
        "entity_type": l.entity_type,
        "fields": l.fields.iter().map(field_schema_to_json).collect::<Vec<_>>(),
        "indexed": l.indexed,
    })
}

pub(crate) fn layout_from_json(v: &Json) -> Result<TypeLayout, StoreError> {
    Ok(TypeLayout {
        entity_type: v
            .get("entity_type")
            .and_then(Json::as_str)
            .ok_or_else(|| StoreError::Corrupt("stored layout without an entity_type".into()))?
            .to_owned(),
        fields: v
            .get("fields")
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .map(field_schema_from_json)
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default(),
        indexed: strings(v.get("indexed")),
    })
}

pub(crate) fn schema_to_json(s: &SiteSchema) -> Json {
    let entities: serde_json::Map<String, Json> = s
        .types
        .iter()
        .map(|(k, t)| (k.clone(), t.raw.clone()))
        .collect();
    json!({"schema_read": s.to_schema_read_json(None), "schema_entity_read": entities})
}

pub(crate) fn schema_from_json(v: &Json) -> Result<SiteSchema, StoreError> {
    let read = v
        .get("schema_read")
        .ok_or_else(|| StoreError::Corrupt("stored schema without schema_read".into()))?;
    SiteSchema::from_json(read, v.get("schema_entity_read"))
        .map_err(|e| StoreError::Corrupt(format!("stored schema: {e}")))
}

pub(crate) fn type_state_parts(s: &TypeState) -> (String, i64, i64, String, Option<i64>) {
    (
        s.phase.as_str().to_owned(),
        i64::try_from(s.done).unwrap_or(i64::MAX),
        i64::try_from(s.total).unwrap_or(i64::MAX),
        s.config_hash.clone(),
        s.ready_at.map(|t| t.0),
    )
}

pub(crate) fn type_state_from_parts(
    entity_type: String,
    phase: &str,
    done: i64,
    total: i64,
    config_hash: String,
    ready_at: Option<i64>,
) -> Result<TypeState, StoreError> {
    Ok(TypeState {
        phase: TypePhase::parse(phase).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "type state of {entity_type} has unknown phase {phase:?}"
            ))
        })?,
        entity_type,
        done: u64::try_from(done).unwrap_or(0),
        total: u64::try_from(total).unwrap_or(0),
        config_hash,
        ready_at: ready_at.map(DateTime),
    })
}

/// A journal row's entity snapshot: binary (`snapshot`), or JSON text as journals written before
/// it hold.
pub(crate) enum Snapshot {
    Binary(Vec<u8>),
    Json(String),
}

/// The parts of a journal row, for building a [`JournalEntry`].
pub(crate) struct JournalRow {
    pub(crate) seq: i64,
    pub(crate) event_id: i64,
    pub(crate) entity_type: String,
    pub(crate) entity_id: i64,
    pub(crate) op: String,
    pub(crate) fields: String,
    pub(crate) at: i64,
    pub(crate) entity: Option<Snapshot>,
}

impl JournalRow {
    pub(crate) fn into_entry(
        self,
        dt_of: &dyn Fn(&str, &str) -> Option<DataType>,
    ) -> Result<JournalEntry, StoreError> {
        let op = JournalOp::parse(&self.op).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "journal entry {} has unknown op {:?}",
                self.seq, self.op
            ))
        })?;
        let fields: Vec<String> = serde_json::from_str(&self.fields)
            .map_err(|e| StoreError::Corrupt(format!("journal entry {} fields: {e}", self.seq)))?;
        let entity = match self.entity {
            None => None,
            Some(Snapshot::Binary(b)) => Some(
                super::snapshot::decode(&self.entity_type, &b)
                    .map_err(|e| StoreError::Corrupt(format!("journal entry {}: {e}", self.seq)))?,
            ),
            Some(Snapshot::Json(s)) => {
                let j: Json = serde_json::from_str(&s).map_err(|e| {
                    StoreError::Corrupt(format!("journal entry {} entity: {e}", self.seq))
                })?;
                Some(entity_from_json(&j, dt_of)?)
            }
        };
        Ok(JournalEntry {
            seq: u64::try_from(self.seq).unwrap_or(0),
            event_id: self.event_id,
            entity_type: self.entity_type,
            entity_id: self.entity_id,
            op,
            fields,
            at: DateTime(self.at),
            entity,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Date;

    #[test]
    fn column_count_is_the_number_of_columns_of_every_shape() {
        use Shape as S;
        for shape in [
            S::Text,
            S::Int,
            S::Float,
            S::Bool,
            S::Date,
            S::DateTime,
            S::Image,
            S::Json,
            S::Link,
            S::Multi,
        ] {
            assert_eq!(shape.column_count(), shape.columns("f").len(), "{shape:?}");
        }
    }

    #[test]
    fn the_journal_snapshot_text_is_the_json_snapshot() {
        let mut e = Entity::new("Shot", 7);
        e.retired = true;
        e.display_name = Some("sh \"quoted\" ∑".into());
        e.retired_version = 3;
        e.last_event_id = 9;
        e.versions.insert("code".into(), 9);
        let f = &mut e.fields;
        f.insert("code".into(), Value::Text("sh\n010".into()));
        f.insert("sg_cut_in".into(), Value::Int(-4));
        f.insert("sg_rate".into(), Value::Float(2.5));
        f.insert("sg_flag".into(), Value::Bool(true));
        f.insert(
            "sg_due".into(),
            Value::Date(Date::from_days_since_epoch(20_000).expect("date")),
        );
        f.insert("description".into(), Value::Null);
        f.insert(
            "project".into(),
            Value::Entity(EntityRef {
                entity_type: "Project".into(),
                id: 1,
                name: None,
            }),
        );
        f.insert("meta".into(), Value::Json(json!({"a": [1, {"b": null}]})));
        let text = entity_to_json_string(&e);
        let parsed: Json = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(parsed, entity_to_json(&e));
        assert_eq!(text, entity_to_json(&e).to_string());
    }
}
