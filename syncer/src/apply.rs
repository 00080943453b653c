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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;
    use shotgun_cache_core::config::Config;
    use shotgun_cache_core::model::EntityRef;

    use super::*;

    fn field(dt: &str, valid_types: &[&str]) -> Json {
        json!({"data_type": {"value": dt, "editable": false}, "editable": {"value": true, "editable": false},
               "properties": {"valid_types": {"value": valid_types, "editable": true}}})
    }

    fn setup(filter: &str) -> (BTreeMap<String, TypePlan>, SiteSchema) {
        let schema = SiteSchema::from_json(
            &json!({"Shot": {"code": field("text", &[]), "sg_status_list": field("status_list", &[]),
                             "tasks": field("multi_entity", &["Task"]), "cut_in": field("number", &[]),
                             "updated_at": field("date_time", &[]), "description": field("text", &[])}}),
            None,
        )
        .expect("schema");
        let text = format!(
            "[site]\nurl = \"http://x\"\nscript_name = \"s\"\n[types.Shot]\nfields = [\"code\", \"sg_status_list\", \"tasks\", \"cut_in\", \"updated_at\"]\n{filter}"
        );
        let config = Config::from_toml_str(&text, "t", &HashMap::new()).expect("config");
        (
            crate::plan::resolve(&config, &schema).expect("plan"),
            schema,
        )
    }

    fn ev(id: i64, event_type: &str, meta: Json) -> Event {
        Event {
            id,
            event_type: event_type.into(),
            attribute_name: None,
            meta,
            entity: None,
            created_at: 100,
            user: None,
        }
    }

    #[test]
    fn changes_become_patches_and_uncached_things_cost_nothing() {
        let (plans, schema) = setup("");
        let a = translate(
            &ev(7, "Shotgun_Shot_Change", json!({"type": "attribute_change", "attribute_name": "cut_in", "entity_type": "Shot", "entity_id": 3, "new_value": "12"})),
            &plans,
            &schema,
        )
        .expect("translates");
        let Action::Write(EntityWrite::Patch {
            id: 3,
            event_id: 7,
            changes,
            ..
        }) = &a[0]
        else {
            panic!("{a:?}")
        };
        assert_eq!(
            changes[0],
            FieldChange::Set("cut_in".into(), Value::Int(12))
        );
        assert!(changes.contains(&FieldChange::Set(
            "updated_at".into(),
            Value::DateTime(DateTime(100))
        )));
        for e in [
            ev(
                8,
                "Shotgun_Shot_Change",
                json!({"attribute_name": "description", "entity_type": "Shot", "entity_id": 3, "new_value": "x"}),
            ),
            ev(
                9,
                "Shotgun_Asset_Change",
                json!({"attribute_name": "code", "entity_type": "Asset", "entity_id": 3, "new_value": "x"}),
            ),
            ev(10, "Shotgun_User_Login", json!(null)),
            ev(11, "Toolkit_App_Startup", json!({})),
        ] {
            assert_eq!(
                translate(&e, &plans, &schema).expect("ok"),
                vec![Action::Skip],
                "{e:?}"
            );
        }
    }

    #[test]
    fn multi_entity_deltas_lifecycle_and_schema_events() {
        let (plans, schema) = setup("");
        let a = translate(
            &ev(5, "Shotgun_Shot_Change", json!({"attribute_name": "tasks", "entity_type": "Shot", "entity_id": 2, "field_data_type": "multi_entity",
                "added": [{"type": "Task", "id": 9, "name": "Comp"}], "removed": [{"type": "Task", "id": 4, "name": "Old"}],
                "actual_attribute_changed": "Task.entity"})),
            &plans,
            &schema,
        )
        .expect("ok");
        let Action::Write(EntityWrite::Patch { changes, .. }) = &a[0] else {
            panic!("{a:?}")
        };
        assert_eq!(
            changes.len(),
            2,
            "a backref change does not touch updated_at: {changes:?}"
        );
        assert!(matches!(&changes[0], FieldChange::Remove(f, l) if f == "tasks" && l[0].id == 4));
        assert!(
            matches!(&changes[1], FieldChange::Add(f, l) if f == "tasks" && l[0] == EntityRef { entity_type: "Task".into(), id: 9, name: Some("Comp".into()) })
        );
        // Retirement: `entity` is null, meta names the row.
        let a = translate(
            &ev(
                6,
                "Shotgun_Shot_Retirement",
                json!({"type": "entity_retirement", "entity_type": "Shot", "entity_id": 2}),
            ),
            &plans,
            &schema,
        )
        .expect("ok");
        assert_eq!(
            a,
            vec![Action::Write(EntityWrite::Retire {
                entity_type: "Shot".into(),
                id: 2,
                event_id: 6
            })]
        );
        let a = translate(
            &ev(
                7,
                "Shotgun_Shot_New",
                json!({"type": "new_entity", "entity_type": "Shot", "entity_id": 5}),
            ),
            &plans,
            &schema,
        )
        .expect("ok");
        assert_eq!(
            a,
            vec![Action::Reread {
                entity_type: "Shot".into(),
                id: 5
            }]
        );
        let a = translate(
            &ev(
                8,
                "Shotgun_Shot_Revival",
                json!({"type": "entity_revival", "entity_type": "Shot", "entity_id": 5}),
            ),
            &plans,
            &schema,
        )
        .expect("ok");
        assert!(
            a.contains(&Action::Reread {
                entity_type: "Shot".into(),
                id: 5
            }) && a.contains(&Action::RereadLinkers {
                entity_type: "Shot".into(),
                id: 5
            })
        );
        let a = translate(
            &ev(
                9,
                "Shotgun_DisplayColumn_Change",
                json!({"attribute_name": "properties"}),
            ),
            &plans,
            &schema,
        )
        .expect("ok");
        assert_eq!(a, vec![Action::SchemaRefresh]);
    }

    #[test]
    fn filter_fields_reread_and_bad_values_name_the_entity() {
        let (plans, schema) = setup("filter = [[\"sg_status_list\", \"is_not\", \"omt\"]]\n");
        let a = translate(
            &ev(3, "Shotgun_Shot_Change", json!({"attribute_name": "sg_status_list", "entity_type": "Shot", "entity_id": 4, "new_value": "omt"})),
            &plans,
            &schema,
        )
        .expect("ok");
        assert_eq!(
            a,
            vec![Action::Reread {
                entity_type: "Shot".into(),
                id: 4
            }]
        );
        let e = translate(
            &ev(4, "Shotgun_Shot_Change", json!({"attribute_name": "cut_in", "entity_type": "Shot", "entity_id": 4, "new_value": {"no": 1}})),
            &plans,
            &schema,
        )
        .expect_err("bad value");
        assert_eq!(e.entity, Some(("Shot".into(), 4)));
        assert!(e.to_string().contains("Shot.cut_in"), "{e}");
    }
}
