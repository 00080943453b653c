//! A cached entity: its identity, retired flag, cached field values, and the syncer's bookkeeping.
//!
//! # Ordering guard (why per-field versions)
//! For one row, Shotgun serialises writers on the row lock and reserves the event id inside the
//! transaction, so for one entity *field* a higher event id is always the later value. Different fields
//! of one entity may still commit out of id order. The cache therefore keeps, per field, the id of the
//! event that last set it ([`FieldVersions`]); a patch from event `e` applies to field `f` only if
//! `e > versions[f]`. A full re-read from the site sets every value and raises every field's version to
//! at least the syncer's low-water mark (every event at or below it has been applied or has expired).
//! This is what lets out-of-order events, replays after a crash and re-reads interleave without an
//! older write ever overwriting a newer one.

use std::collections::BTreeMap;

use super::value::Value;

/// Per-field "last applied event id". Missing fields count as version 0.
pub type FieldVersions = BTreeMap<String, i64>;

#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub entity_type: String,
    pub id: i64,
    /// Retired (soft-deleted) on the site: kept as a tombstone, served only to `retired_only` queries.
    pub retired: bool,
    /// The cached fields (never `type`/`id`). A cached field that is unset holds [`Value::Null`]
    /// (or `false`/`[]` for checkbox/multi_entity).
    pub fields: BTreeMap<String, Value>,
    /// The display name (`cached_display_name`), kept so links to this entity get live names.
    pub display_name: Option<String>,
    /// Ordering guard for field patches; see the module docs.
    pub versions: FieldVersions,
    /// Ordering guard for retire/revive: the event id of the last retirement or revival applied.
    pub retired_version: i64,
    /// The highest event id applied to this entity (any field, retire, revive, re-read floor).
    pub last_event_id: i64,
}

impl Entity {
    pub fn new(entity_type: impl Into<String>, id: i64) -> Self {
        Entity {
            entity_type: entity_type.into(),
            id,
            retired: false,
            fields: BTreeMap::new(),
            display_name: None,
            versions: FieldVersions::new(),
            retired_version: 0,
            last_event_id: 0,
        }
    }

    /// The value of a field; `Null` for a field that is not cached or not set. `id` is not a field
    /// (it reads `Null` here); callers that need it as a value use [`Entity::id_value`].
    pub fn get(&self, field: &str) -> &Value {
        const NULL: Value = Value::Null;
        self.fields.get(field).unwrap_or(&NULL)
    }

    pub fn id_value(&self) -> Value {
        Value::Int(self.id)
    }
}
