//! The document layout of the RethinkDB backend: entity documents, values, schema, layouts and
//! journal entries, and their exact round trip to the model types.
//!
//! # Entity document (`e_<Type>_<generation>` tables)
//! `{id, retired, retired_version, last_event_id, display_name, versions: {field: event_id},
//!   f: {field: value}, lc: {field: lowercase}, dn_lc, rev}` (`lc`/`dn_lc`: lowercase shadows, see
//! [`encode_entity`]). `rev` counts writes to the document; the commit path uses it for a
//! compare-and-swap inside the database (see `super::commit`).
//!
//! # Values
//! A value whose variant is the natural one for the field's data type is stored plainly, so ReQL can
//! compare, index and sort it: numbers as numbers, text as strings, checkbox as booleans, dates as
//! `"YYYY-MM-DD"` strings (sortable), datetimes as Unix seconds, links as `{type, id, name}`,
//! multi_entity as an array of links. Anything else (JSON-valued fields, a value that does not fit its
//! field's type, non-finite floats) is stored tagged as `{"$v": kind, "d": data}`, so every
//! `model::Value` round-trips exactly.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json, json};

use crate::model::{
    DataType, Date, DateTime, Entity, EntityRef, EntitySchema, FieldSchema, SiteSchema, Value,
};
use crate::store::guard::field_schema_to_json;
use crate::store::{JournalEntry, JournalOp, StoreError, TypeLayout, TypePhase, TypeState};

/// Which plain encoding a data type uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    Float,
    Text,
    Bool,
    Date,
    DateTime,
    Link,
    Links,
    /// Stored tagged (JSON-valued types, and fields this process has no layout for).
    Other,
}

pub(crate) fn kind_of(dt: DataType) -> Kind {
    use DataType as D;
    match dt {
        D::Number | D::Percent | D::Duration | D::Timecode | D::Image => Kind::Int,
        D::Float | D::Currency => Kind::Float,
        D::Text
        | D::StatusList
        | D::List
        | D::EntityType
        | D::Color
        | D::Uuid
        | D::Footage
        | D::SystemTaskType => Kind::Text,
        D::Checkbox => Kind::Bool,
        D::Date => Kind::Date,
        D::DateTime => Kind::DateTime,
        D::Entity => Kind::Link,
        D::MultiEntity => Kind::Links,
        _ => Kind::Other,
    }
}

fn link_json(r: &EntityRef) -> Json {
    json!({"type": r.entity_type, "id": r.id, "name": r.name})
}

fn tagged(kind: &str, d: Json) -> Json {
    json!({"$v": kind, "d": d})
}

/// Encodes one value for a field of kind `k`.
pub(crate) fn encode_value(v: &Value, k: Kind) -> Json {
    match (v, k) {
        (Value::Null, _) => Json::Null,
        (Value::Bool(b), Kind::Bool) => Json::Bool(*b),
        (Value::Int(i), Kind::Int) => json!(i),
        (Value::Float(f), Kind::Float) if f.is_finite() => json!(f),
        (Value::Text(s), Kind::Text) => json!(s),
        (Value::Date(d), Kind::Date) if (0..=9999).contains(&d.0.year()) => json!(d.to_string()),
        (Value::DateTime(t), Kind::DateTime) => json!(t.0),
        (Value::Entity(r), Kind::Link) => link_json(r),
        (Value::MultiEntity(v), Kind::Links) => Json::Array(v.iter().map(link_json).collect()),
        (Value::Bool(b), _) => tagged("bool", json!(b)),
        (Value::Int(i), _) => tagged("int", json!(i)),
        (Value::Float(f), _) => match serde_json::Number::from_f64(*f) {
            Some(n) => tagged("float", Json::Number(n)),
            None => tagged("float_s", json!(f.to_string())),
        },
        (Value::Text(s), _) => tagged("text", json!(s)),
        (Value::Date(d), _) => tagged("days", json!(d.days_since_epoch())),
        (Value::DateTime(t), _) => tagged("datetime", json!(t.0)),
        (Value::Entity(r), _) => tagged("link", link_json(r)),
        (Value::MultiEntity(v), _) => {
            tagged("links", Json::Array(v.iter().map(link_json).collect()))
        }
        (Value::Json(j), _) => tagged("json", j.clone()),
    }
}

fn corrupt(what: &str, v: &Json) -> StoreError {
    let mut s = v.to_string();
    if s.len() > 120 {
        s.truncate(117);
        s.push_str("...");
    }
    StoreError::Corrupt(format!("{what}: {s}"))
}

fn decode_link(v: &Json) -> Result<EntityRef, StoreError> {
    EntityRef::from_json(v).map_err(|_| corrupt("stored link is not {type, id, name}", v))
}

fn as_i64(v: &Json) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
            .map(|f| f as i64)
    })
}

/// Decodes one stored value of a field of kind `k` (`Kind::Other` when the layout is unknown: plain
/// values are then read by their JSON shape).
pub(crate) fn decode_value(v: &Json, k: Kind) -> Result<Value, StoreError> {
    if let Some(tag) = v.get("$v").and_then(Json::as_str) {
        let d = v.get("d").unwrap_or(&Json::Null);
        return Ok(match tag {
            "bool" => Value::Bool(d.as_bool().ok_or_else(|| corrupt("tagged bool", v))?),
            "int" => Value::Int(as_i64(d).ok_or_else(|| corrupt("tagged int", v))?),
            "float" => Value::Float(d.as_f64().ok_or_else(|| corrupt("tagged float", v))?),
            "float_s" => Value::Float(
                d.as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| corrupt("tagged float", v))?,
            ),
            "text" => Value::Text(
                d.as_str()
                    .ok_or_else(|| corrupt("tagged text", v))?
                    .to_owned(),
            ),
            "days" => Value::Date(
                as_i64(d)
                    .and_then(Date::from_days_since_epoch)
                    .ok_or_else(|| corrupt("tagged date", v))?,
            ),
            "datetime" => Value::DateTime(DateTime(
                as_i64(d).ok_or_else(|| corrupt("tagged datetime", v))?,
            )),
            "link" => Value::Entity(decode_link(d)?),
            "links" => Value::MultiEntity(
                d.as_array()
                    .ok_or_else(|| corrupt("tagged links", v))?
                    .iter()
                    .map(decode_link)
                    .collect::<Result<_, _>>()?,
            ),
            "json" => Value::Json(d.clone()),
            _ => return Err(corrupt("unknown value tag", v)),
        });
    }
    if v.is_null() {
        return Ok(Value::Null);
    }
    Ok(match k {
        Kind::Int => Value::Int(as_i64(v).ok_or_else(|| corrupt("expected an integer", v))?),
        Kind::Float => Value::Float(v.as_f64().ok_or_else(|| corrupt("expected a number", v))?),
        Kind::Text => Value::Text(
            v.as_str()
                .ok_or_else(|| corrupt("expected a string", v))?
                .to_owned(),
        ),
        Kind::Bool => Value::Bool(
            v.as_bool()
                .ok_or_else(|| corrupt("expected a boolean", v))?,
        ),
        Kind::Date => Value::Date(
            v.as_str()
                .and_then(Date::parse)
                .ok_or_else(|| corrupt("expected a date", v))?,
        ),
        Kind::DateTime => Value::DateTime(DateTime(
            as_i64(v).ok_or_else(|| corrupt("expected a datetime", v))?,
        )),
        Kind::Link => Value::Entity(decode_link(v)?),
        Kind::Links => Value::MultiEntity(
            v.as_array()
                .ok_or_else(|| corrupt("expected links", v))?
                .iter()
                .map(decode_link)
                .collect::<Result<_, _>>()?,
        ),
        Kind::Other => match v {
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(0.0)),
            },
            Json::String(s) => Value::Text(s.clone()),
            Json::Object(_) => Value::Entity(decode_link(v)?),
            Json::Array(a) => {
                Value::MultiEntity(a.iter().map(decode_link).collect::<Result<_, _>>()?)
            }
            Json::Null => Value::Null,
        },
    })
}

/// The cached fields of one type with their kinds and data types, from its layout (empty when the
/// layout is unknown).
pub(crate) type Kinds = BTreeMap<String, (Kind, DataType)>;

pub(crate) fn kinds_of(layout: &TypeLayout) -> Kinds {
    layout
        .fields
        .iter()
        .map(|f| (f.name.clone(), (kind_of(f.data_type), f.data_type)))
        .collect()
}

fn kind(kinds: &Kinds, field: &str) -> Kind {
    kinds.get(field).map(|k| k.0).unwrap_or(Kind::Other)
}

/// The stored document of an entity (without `rev`).
pub(crate) fn encode_entity(e: &Entity, kinds: &Kinds) -> Json {
    let f: Map<String, Json> = e
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), encode_value(v, kind(kinds, k))))
        .collect();
    let versions: Map<String, Json> = e
        .versions
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    // Lowercase shadows (Unicode `to_lowercase`, which ReQL's ASCII-only `downcase` is not): the
    // text values and single-link names, for case-insensitive matching, sorting and indexes.
    let mut lc = Map::new();
    for (k, v) in &e.fields {
        match (v, kind(kinds, k)) {
            (Value::Text(s), Kind::Text) if !s.is_empty() => {
                lc.insert(k.clone(), json!(s.to_lowercase()));
            }
            (Value::Entity(r), Kind::Link) => {
                lc.insert(k.clone(), json!(r.name.as_ref().map(|n| n.to_lowercase())));
            }
            _ => {}
        }
    }
    json!({
        "id": e.id,
        "retired": e.retired,
        "retired_version": e.retired_version,
        "last_event_id": e.last_event_id,
        "display_name": e.display_name,
        "versions": versions,
        "f": f,
        "lc": lc,
        "dn_lc": e.display_name.as_ref().map(|n| n.to_lowercase()),
    })
}

/// Reads an entity document of type `entity_type`.
pub(crate) fn decode_entity(
    entity_type: &str,
    doc: &Json,
    kinds: &Kinds,
) -> Result<Entity, StoreError> {
    let id = doc
        .get("id")
        .and_then(as_i64)
        .ok_or_else(|| corrupt("entity document without an integer id", doc))?;
    let mut e = Entity::new(entity_type, id);
    e.retired = doc.get("retired").and_then(Json::as_bool).unwrap_or(false);
    e.retired_version = doc.get("retired_version").and_then(as_i64).unwrap_or(0);
    e.last_event_id = doc.get("last_event_id").and_then(as_i64).unwrap_or(0);
    e.display_name = doc
        .get("display_name")
        .and_then(Json::as_str)
        .map(str::to_owned);
    if let Some(vs) = doc.get("versions").and_then(Json::as_object) {
        for (k, v) in vs {
            if kinds.is_empty() || kinds.contains_key(k) {
                e.versions.insert(
                    k.clone(),
                    as_i64(v).ok_or_else(|| corrupt("field version", v))?,
                );
            }
        }
    }
    let stored = doc.get("f").and_then(Json::as_object);
    if kinds.is_empty() {
        for (k, v) in stored.into_iter().flatten() {
            e.fields.insert(k.clone(), decode_value(v, Kind::Other)?);
        }
    } else {
        // Exactly the layout's fields: a field dropped from the layout is no longer read, one added
        // reads as empty until written.
        for (k, (kd, dt)) in kinds {
            let v = match stored.and_then(|m| m.get(k)) {
                Some(v) => decode_value(v, *kd)?,
                None => Value::empty_for(*dt),
            };
            e.fields.insert(k.clone(), v);
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

pub(crate) fn field_schema_from(v: &Json) -> Result<FieldSchema, StoreError> {
    let s = |k: &str| {
        v.get(k)
            .and_then(Json::as_str)
            .map(str::to_owned)
            .ok_or_else(|| corrupt(&format!("field schema without {k}"), v))
    };
    Ok(FieldSchema {
        entity_type: s("entity_type")?,
        name: s("name")?,
        display_name: s("display_name")?,
        data_type: DataType::parse(&s("data_type")?),
        valid_types: strings(v.get("valid_types")),
        valid_values: strings(v.get("valid_values")),
        default_value: v.get("default_value").cloned().unwrap_or(Json::Null),
        editable: v.get("editable").and_then(Json::as_bool).unwrap_or(false),
        raw: v.get("raw").cloned().unwrap_or(Json::Null),
    })
}

pub(crate) fn schema_json(schema: &SiteSchema) -> Json {
    let types: Map<String, Json> = schema
        .types
        .iter()
        .map(|(name, t)| {
            let fields: Map<String, Json> = t.fields.iter().map(|(f, s)| (f.clone(), field_schema_to_json(s))).collect();
            (name.clone(), json!({"name": t.name, "display_name": t.display_name, "raw": t.raw, "fields": fields}))
        })
        .collect();
    Json::Object(types)
}

pub(crate) fn schema_from(v: &Json) -> Result<SiteSchema, StoreError> {
    let obj = v
        .as_object()
        .ok_or_else(|| corrupt("stored schema is not an object", v))?;
    let mut out = SiteSchema::default();
    for (name, t) in obj {
        let mut fields = BTreeMap::new();
        if let Some(fs) = t.get("fields").and_then(Json::as_object) {
            for (f, s) in fs {
                fields.insert(f.clone(), field_schema_from(s)?);
            }
        }
        out.types.insert(
            name.clone(),
            EntitySchema {
                name: t
                    .get("name")
                    .and_then(Json::as_str)
                    .unwrap_or(name)
                    .to_owned(),
                display_name: t
                    .get("display_name")
                    .and_then(Json::as_str)
                    .unwrap_or(name)
                    .to_owned(),
                fields,
                raw: t.get("raw").cloned().unwrap_or(Json::Null),
            },
        );
    }
    Ok(out)
}

pub(crate) fn layout_json(l: &TypeLayout) -> Json {
    json!({
        "entity_type": l.entity_type,
        "fields": l.fields.iter().map(field_schema_to_json).collect::<Vec<_>>(),
        "indexed": l.indexed,
    })
}

pub(crate) fn layout_from(v: &Json) -> Result<TypeLayout, StoreError> {
    Ok(TypeLayout {
        entity_type: v
            .get("entity_type")
            .and_then(Json::as_str)
            .ok_or_else(|| corrupt("layout without entity_type", v))?
            .to_owned(),
        fields: v
            .get("fields")
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .map(field_schema_from)
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default(),
        indexed: strings(v.get("indexed")),
    })
}

pub(crate) fn type_state_json(s: &TypeState) -> Json {
    json!({
        "id": s.entity_type,
        "phase": s.phase.as_str(),
        "done": s.done,
        "total": s.total,
        "config_hash": s.config_hash,
        "ready_at": s.ready_at.map(|t| t.0),
    })
}

pub(crate) fn type_state_from(v: &Json) -> Result<TypeState, StoreError> {
    Ok(TypeState {
        entity_type: v
            .get("id")
            .and_then(Json::as_str)
            .ok_or_else(|| corrupt("type state without id", v))?
            .to_owned(),
        phase: v
            .get("phase")
            .and_then(Json::as_str)
            .and_then(TypePhase::parse)
            .ok_or_else(|| corrupt("type state phase", v))?,
        done: v.get("done").and_then(Json::as_u64).unwrap_or(0),
        total: v.get("total").and_then(Json::as_u64).unwrap_or(0),
        config_hash: v
            .get("config_hash")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_owned(),
        ready_at: v.get("ready_at").and_then(as_i64).map(DateTime),
    })
}

/// The journal document of an entry (`id` is its replay-proof key).
pub(crate) fn journal_json(key: &str, e: &JournalEntry, kinds: &Kinds) -> Json {
    json!({
        "id": key,
        "seq": e.seq,
        "event_id": e.event_id,
        "entity_type": e.entity_type,
        "entity_id": e.entity_id,
        "op": e.op.as_str(),
        "fields": e.fields,
        "at": e.at.0,
        "entity": e.entity.as_ref().map(|x| encode_entity(x, kinds)),
    })
}

pub(crate) fn journal_from(
    v: &Json,
    kinds_for: &dyn Fn(&str) -> Kinds,
) -> Result<JournalEntry, StoreError> {
    let entity_type = v
        .get("entity_type")
        .and_then(Json::as_str)
        .ok_or_else(|| corrupt("journal entry without entity_type", v))?;
    let entity = match v.get("entity") {
        Some(doc) if !doc.is_null() => {
            Some(decode_entity(entity_type, doc, &kinds_for(entity_type))?)
        }
        _ => None,
    };
    Ok(JournalEntry {
        seq: v
            .get("seq")
            .and_then(Json::as_u64)
            .ok_or_else(|| corrupt("journal entry without seq", v))?,
        event_id: v.get("event_id").and_then(as_i64).unwrap_or(0),
        entity_type: entity_type.to_owned(),
        entity_id: v.get("entity_id").and_then(as_i64).unwrap_or(0),
        op: v
            .get("op")
            .and_then(Json::as_str)
            .and_then(JournalOp::parse)
            .ok_or_else(|| corrupt("journal entry op", v))?,
        fields: strings(v.get("fields")),
        at: DateTime(v.get("at").and_then(as_i64).unwrap_or(0)),
        entity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: Value, k: Kind) {
        let enc = encode_value(&v, k);
        assert_eq!(
            decode_value(&enc, k).expect("decodes"),
            v,
            "kind {k:?}, encoded {enc}"
        );
    }

    #[test]
    fn every_value_round_trips_for_every_kind() {
        let link = EntityRef {
            entity_type: "Shot".into(),
            id: 7,
            name: Some("sh007".into()),
        };
        let values = vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(-42),
            Value::Float(2.0),
            Value::Float(f64::NAN),
            Value::Text("Hello".into()),
            Value::Date(Date::parse("2024-02-29").expect("valid date")),
            Value::DateTime(DateTime(1_700_000_000)),
            Value::Entity(link.clone()),
            Value::MultiEntity(vec![link.clone(), EntityRef::new("Asset", 3)]),
            Value::Json(json!({"url": "x", "n": [1, 2]})),
        ];
        let kinds = [
            Kind::Int,
            Kind::Float,
            Kind::Text,
            Kind::Bool,
            Kind::Date,
            Kind::DateTime,
            Kind::Link,
            Kind::Links,
            Kind::Other,
        ];
        for k in kinds {
            for v in &values {
                if let Value::Float(f) = v
                    && f.is_nan()
                {
                    let enc = encode_value(v, k);
                    assert!(matches!(decode_value(&enc, k), Ok(Value::Float(g)) if g.is_nan()));
                    continue;
                }
                round_trip(v.clone(), k);
            }
        }
    }

    #[test]
    fn natural_values_are_stored_plainly() {
        assert_eq!(encode_value(&Value::Int(3), Kind::Int), json!(3));
        assert_eq!(
            encode_value(
                &Value::Date(Date::parse("2020-01-02").expect("date")),
                Kind::Date
            ),
            json!("2020-01-02")
        );
        assert_eq!(
            encode_value(&Value::DateTime(DateTime(5)), Kind::DateTime),
            json!(5)
        );
        assert_eq!(
            encode_value(&Value::Text("a".into()), Kind::Int),
            json!({"$v": "text", "d": "a"})
        );
    }
}
