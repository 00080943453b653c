//! Value rules every backend's write path shares: change detection, normalisation of unset values,
//! the display name a value gives, and how one field change turns the current value into the new one.
//! The version guard itself (which writes apply) is the contract in the parent module; these are the
//! pieces of it that are pure functions on values, kept in one place so the backends cannot drift.
//! It also holds the persisted JSON form of a field schema, which both backends write.

use serde_json::Value as Json;

use crate::model::{DataType, EntityRef, FieldSchema, Value};
use crate::store::FieldChange;

/// Whether two values of a field are the same for change detection: links compare by target (names are
/// presentation and go live at read time), multi_entity lists as multisets of targets (the site does
/// not keep their order stable), everything else exactly.
pub(crate) fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Entity(x), Value::Entity(y)) => x.same_target(y),
        (Value::MultiEntity(x), Value::MultiEntity(y)) => {
            let key = |l: &EntityRef| (l.entity_type.clone(), l.id);
            let mut x: Vec<_> = x.iter().map(key).collect();
            let mut y: Vec<_> = y.iter().map(key).collect();
            x.sort();
            y.sort();
            x == y
        }
        _ => a == b,
    }
}

/// Normalises a value for a field: `Null` becomes `false` for checkbox and `[]` for multi_entity.
pub(crate) fn normalize(dt: DataType, v: Value) -> Value {
    match (dt, v) {
        (DataType::Checkbox, Value::Null) => Value::Bool(false),
        (DataType::MultiEntity, Value::Null) => Value::MultiEntity(Vec::new()),
        (_, v) => v,
    }
}

/// The display name a value of the display field gives its entity.
pub(crate) fn display_from(v: &Value) -> Option<String> {
    match v {
        Value::Text(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_json().to_string()),
    }
}

/// The new value of a field of type `dt` holding `cur` after `change`: `Set` replaces it, `Add` appends
/// links not already present, `Remove` drops links by target.
/// `None` when links are added to or removed from a value that is not a multi_entity list.
pub(crate) fn changed_value(dt: DataType, cur: &Value, change: &FieldChange) -> Option<Value> {
    Some(match change {
        FieldChange::Set(_, v) => normalize(dt, v.clone()),
        FieldChange::Add(_, links) => {
            let Value::MultiEntity(mut list) = normalize(dt, cur.clone()) else {
                return None;
            };
            for l in links {
                if !list.iter().any(|x| x.same_target(l)) {
                    list.push(l.clone());
                }
            }
            Value::MultiEntity(list)
        }
        FieldChange::Remove(_, links) => {
            let Value::MultiEntity(mut list) = normalize(dt, cur.clone()) else {
                return None;
            };
            list.retain(|x| !links.iter().any(|r| r.same_target(x)));
            Value::MultiEntity(list)
        }
    })
}

/// The JSON form in which backends persist a field schema (the layouts and the schema they store).
pub(crate) fn field_schema_to_json(f: &FieldSchema) -> Json {
    serde_json::json!({
        "entity_type": f.entity_type,
        "name": f.name,
        "display_name": f.display_name,
        "data_type": f.data_type.as_str(),
        "valid_types": f.valid_types,
        "valid_values": f.valid_values,
        "default_value": f.default_value,
        "editable": f.editable,
        "raw": f.raw,
    })
}
