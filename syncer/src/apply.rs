//! Translating EventLogEntries into store writes (protocol §5.3–5.7, peer-systems §8).
//!
//! Pure: given the cached types and the schema, one event becomes zero or more [`Action`]s.
//! `_New` and `_Revival` re-read the entity; `_Change` applies `new_value` (or `added`/`removed`
//! for multi_entity) — or re-reads when the change can move the entity in or out of its type's
//! cache filter; `_Retirement` tombstones by `meta.entity_type/entity_id` (the event's `entity` is
//! null once the entity is retired); `Shotgun_DisplayColumn_*` refreshes the schema. Events of
//! uncached types and fields become [`Action::Skip`] after a few string comparisons.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use shotgun_cache_core::model::{DataType, DateTime, SiteSchema, Value};
use shotgun_cache_core::store::{EntityWrite, FieldChange};

use crate::plan::TypePlan;
use crate::site::{Event, meta_links, meta_value};

/// What one event asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Nothing to do (uncached type or field, or a non-entity event).
    Skip,
    /// Apply this write (a `Patch`, `Retire` or `Revive`).
    Write(EntityWrite),
    /// Re-read the entity from the site.
    Reread { entity_type: String, id: i64 },
    /// Re-read the entities that link to this one (after a revival the site shows links to it
    /// again, without events on the linking side).
    RereadLinkers { entity_type: String, id: i64 },
    /// The site schema changed.
    SchemaRefresh,
}

/// An event that cannot be turned into writes (its entity is re-read instead).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("event {event_id} ({event_type}): {reason}")]
pub struct ApplyError {
    pub event_id: i64,
    pub event_type: String,
    pub reason: String,
    /// The entity to re-read in its place, when known.
    pub entity: Option<(String, i64)>,
}

/// Splits `Shotgun_<Type>_<Action>`.
pub fn split_event_type(event_type: &str) -> Option<(&str, &str)> {
    let rest = event_type.strip_prefix("Shotgun_")?;
    rest.rsplit_once('_')
}

/// Translates one event.
pub fn translate(
    ev: &Event,
    plans: &BTreeMap<String, TypePlan>,
    schema: &SiteSchema,
) -> Result<Vec<Action>, ApplyError> {
    let Some((type_part, action)) = split_event_type(&ev.event_type) else {
        return Ok(vec![Action::Skip]);
    };
    if type_part == "DisplayColumn" {
        return Ok(vec![Action::SchemaRefresh]);
    }
    let meta = &ev.meta;
    let entity_type = meta
        .get("entity_type")
        .and_then(Json::as_str)
        .unwrap_or(type_part);
    let Some(plan) = plans.get(entity_type) else {
        return Ok(vec![Action::Skip]);
    };
    let id = meta.get("entity_id").and_then(Json::as_i64).or_else(|| {
        ev.entity
            .as_ref()
            .filter(|e| e.entity_type == entity_type)
            .map(|e| e.id)
    });
    let err = |reason: String, entity: Option<(String, i64)>| ApplyError {
        event_id: ev.id,
        event_type: ev.event_type.clone(),
        reason,
        entity,
    };
    let Some(id) = id else {
        return Err(err("no meta.entity_id and no entity link".into(), None));
    };
    let t = entity_type.to_owned();
    match action {
        "New" => Ok(vec![Action::Reread { entity_type: t, id }]),
        "Revival" => Ok(vec![
            Action::Write(EntityWrite::Revive {
                entity_type: t.clone(),
                id,
                event_id: ev.id,
            }),
            Action::Reread {
                entity_type: t.clone(),
                id,
            },
            Action::RereadLinkers { entity_type: t, id },
        ]),
        "Retirement" => Ok(vec![Action::Write(EntityWrite::Retire {
            entity_type: t,
            id,
            event_id: ev.id,
        })]),
        "Change" => {
            let Some(field) = meta
                .get("attribute_name")
                .and_then(Json::as_str)
                .or(ev.attribute_name.as_deref())
            else {
                return Err(err("a change without attribute_name".into(), Some((t, id))));
            };
            let cached = plan.caches(field);
            let in_filter = plan.filter_fields.iter().any(|f| f == field);
            if in_filter {
                return Ok(vec![Action::Reread { entity_type: t, id }]);
            }
            if !cached {
                return Ok(vec![Action::Skip]);
            }
            let Some(fs) = schema.field(entity_type, field) else {
                return Ok(vec![Action::Reread { entity_type: t, id }]);
            };
            let is_delta = meta.get("added").is_some() || meta.get("removed").is_some();
            let changes = if fs.data_type == DataType::MultiEntity || is_delta {
                if !is_delta {
                    // A multi_entity change without deltas: the only safe move is a re-read.
                    return Ok(vec![Action::Reread { entity_type: t, id }]);
                }
                let mut c = Vec::new();
                let removed = meta_links(meta.get("removed"));
                let added = meta_links(meta.get("added"));
                if !removed.is_empty() {
                    c.push(FieldChange::Remove(field.to_owned(), removed));
                }
                if !added.is_empty() {
                    c.push(FieldChange::Add(field.to_owned(), added));
                }
                if c.is_empty() {
                    return Ok(vec![Action::Skip]);
                }
                c
            } else {
                let Some(nv) = meta.get("new_value") else {
                    return Ok(vec![Action::Reread { entity_type: t, id }]);
                };
                let v = meta_value(fs.data_type, nv).map_err(|e| {
                    err(
                        format!(
                            "new_value of {entity_type}.{field} ({}): {e}",
                            fs.data_type.as_str()
                        ),
                        Some((t.clone(), id)),
                    )
                })?;
                vec![FieldChange::Set(field.to_owned(), v)]
            };
            let mut changes = changes;
            // `updated_at`/`updated_by` move on every direct update without events of their own
            // (protocol §4): take them from the event (not from the reverse side of a link).
            // Thumbnail uploads (image fields) are not updates of the row and do not move them.
            let direct =
                meta.get("actual_attribute_changed").is_none() && meta.get("in_create").is_none();
            if direct && fs.data_type != DataType::Image {
                if plan.caches("updated_at") && ev.created_at > 0 {
                    changes.push(FieldChange::Set(
                        "updated_at".into(),
                        Value::DateTime(DateTime(ev.created_at)),
                    ));
                }
                if plan.caches("updated_by")
                    && let Some(u) = &ev.user
                {
                    changes.push(FieldChange::Set(
                        "updated_by".into(),
                        Value::Entity(u.clone()),
                    ));
                }
            }
            Ok(vec![Action::Write(EntityWrite::Patch {
                entity_type: t,
                id,
                event_id: ev.id,
                changes,
            })])
        }
        _ => Ok(vec![Action::Skip]),
    }
}
