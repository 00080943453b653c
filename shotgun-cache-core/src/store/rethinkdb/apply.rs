//! The ordering guard as a pure function: what one [`EntityWrite`] does to the stored entity.
//!
//! The commit path (`super::commit`) reads the stored document, computes the new state here, and then
//! writes it with a compare-and-swap inside the database, so the guard's decision is made against
//! exactly the state that is replaced.

use crate::model::{Entity, Value};
use crate::store::guard::{changed_value, display_from, normalize, same_value};
use crate::store::{EntityWrite, JournalOp, TypeLayout, WriteOutcome};

/// The result of applying one write to the stored state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Applied {
    /// The new stored state: `None` when the row is gone (or was never there).
    pub(crate) state: Option<Entity>,
    /// Whether the stored document must be written (bookkeeping such as versions may change even
    /// when the outcome is `Unchanged`).
    pub(crate) write: bool,
    pub(crate) outcome: WriteOutcome,
}

/// The type and id a write is about.
pub(crate) fn target(w: &EntityWrite) -> (&str, i64) {
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

/// The event id a write comes from.
pub(crate) fn event_id(w: &EntityWrite) -> i64 {
    match w {
        EntityWrite::Upsert { event_id, .. }
        | EntityWrite::Patch { event_id, .. }
        | EntityWrite::Retire { event_id, .. }
        | EntityWrite::Revive { event_id, .. }
        | EntityWrite::Remove { event_id, .. } => *event_id,
    }
}

fn unchanged(state: Option<Entity>, write: bool) -> Applied {
    Applied {
        state,
        write,
        outcome: WriteOutcome::Unchanged,
    }
}

fn applied(state: Option<Entity>, op: JournalOp, fields: Vec<String>) -> Applied {
    Applied {
        state,
        write: true,
        outcome: WriteOutcome::Applied { op, fields },
    }
}

/// The version of a field (0 when never set).
fn version(e: &Entity, f: &str) -> i64 {
    e.versions.get(f).copied().unwrap_or(0)
}

/// Keeps only versions above 0 (the model's view, as the SQLite backend reports it).
fn tidy_versions(e: &mut Entity) {
    e.versions.retain(|_, v| *v > 0);
}

/// Applies `w` to `old` for a type with `layout`. `display_field` is the field whose value is the
/// type's display name. Mirrors the SQLite backend's rules (the conformance suite checks both).
pub(crate) fn apply(
    old: Option<&Entity>,
    w: &EntityWrite,
    layout: &TypeLayout,
    display_field: Option<&str>,
) -> Applied {
    match w {
        EntityWrite::Upsert {
            entity,
            floor,
            event_id,
        } => {
            let is_new = old.is_none();
            let mut row = old.cloned().unwrap_or_else(|| {
                let mut e = Entity::new(layout.entity_type.clone(), entity.id);
                for f in &layout.fields {
                    e.fields
                        .insert(f.name.clone(), Value::empty_for(f.data_type));
                }
                e
            });
            let mut changed = Vec::new();
            for f in &layout.fields {
                let Some(v) = entity.fields.get(&f.name) else {
                    continue;
                };
                let v = normalize(f.data_type, v.clone());
                let cur = row.fields.get(&f.name).cloned().unwrap_or(Value::Null);
                if !same_value(&cur, &v) {
                    changed.push(f.name.clone());
                }
                if cur != v {
                    row.fields.insert(f.name.clone(), v);
                }
            }
            for f in &layout.fields {
                let v = version(&row, &f.name).max(*floor);
                row.versions.insert(f.name.clone(), v);
            }
            tidy_versions(&mut row);
            let old_retired = row.retired;
            if row.retired_version <= *floor {
                row.retired = entity.retired;
                row.retired_version = row.retired_version.max(*floor);
            }
            row.display_name = entity
                .display_name
                .clone()
                .or_else(|| display_field.and_then(|f| display_from(row.get(f))));
            row.last_event_id = row.last_event_id.max(*floor).max(*event_id);
            let write = old.is_none_or(|o| o != &row);
            if is_new {
                let fields = layout
                    .fields
                    .iter()
                    .filter(|f| entity.fields.contains_key(&f.name))
                    .map(|f| f.name.clone())
                    .collect();
                applied(Some(row), JournalOp::Create, fields)
            } else if old_retired != row.retired {
                let op = if row.retired {
                    JournalOp::Retire
                } else {
                    JournalOp::Revive
                };
                applied(Some(row), op, Vec::new())
            } else if !changed.is_empty() {
                changed.sort();
                applied(Some(row), JournalOp::Update, changed)
            } else {
                unchanged(Some(row), write)
            }
        }
        EntityWrite::Patch {
            event_id, changes, ..
        } => {
            let Some(old) = old else {
                return Applied {
                    state: None,
                    write: false,
                    outcome: WriteOutcome::Missing,
                };
            };
            let mut row = old.clone();
            let mut changed: Vec<String> = Vec::new();
            let mut any_applied = false;
            for c in changes {
                let Some(f) = layout.fields.iter().find(|f| f.name == c.field()) else {
                    continue;
                };
                // Compare with the version before this patch: one event may carry several changes of
                // one field (multi_entity `removed` and `added`).
                if *event_id <= version(old, &f.name) {
                    continue;
                }
                any_applied = true;
                row.versions.insert(f.name.clone(), *event_id);
                let cur = row.fields.get(&f.name).cloned().unwrap_or(Value::Null);
                // Links added to or removed from a value that is not a list start from an empty list.
                let new = changed_value(f.data_type, &cur, c)
                    .or_else(|| changed_value(f.data_type, &Value::MultiEntity(Vec::new()), c))
                    .unwrap_or(Value::MultiEntity(Vec::new()));
                if !same_value(&cur, &new) && !changed.contains(&f.name) {
                    changed.push(f.name.clone());
                }
                if cur != new {
                    if display_field == Some(f.name.as_str()) {
                        row.display_name = display_from(&new);
                    }
                    row.fields.insert(f.name.clone(), new);
                }
            }
            if !any_applied {
                return unchanged(Some(old.clone()), false);
            }
            row.last_event_id = row.last_event_id.max(*event_id);
            tidy_versions(&mut row);
            if changed.is_empty() {
                return unchanged(Some(row), true);
            }
            changed.sort();
            applied(Some(row), JournalOp::Update, changed)
        }
        EntityWrite::Retire { event_id, .. } | EntityWrite::Revive { event_id, .. } => {
            let retire = matches!(w, EntityWrite::Retire { .. });
            let Some(old) = old else {
                return Applied {
                    state: None,
                    write: false,
                    outcome: WriteOutcome::Missing,
                };
            };
            if *event_id <= old.retired_version {
                return unchanged(Some(old.clone()), false);
            }
            let mut row = old.clone();
            row.retired_version = *event_id;
            row.last_event_id = row.last_event_id.max(*event_id);
            row.retired = retire;
            if old.retired == retire {
                return unchanged(Some(row), true);
            }
            let op = if retire {
                JournalOp::Retire
            } else {
                JournalOp::Revive
            };
            applied(Some(row), op, Vec::new())
        }
        EntityWrite::Remove { event_id, .. } => match old {
            None => unchanged(None, false),
            Some(o) if *event_id != 0 && *event_id < o.last_event_id => {
                unchanged(Some(o.clone()), false)
            }
            Some(_) => applied(None, JournalOp::Remove, Vec::new()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FieldSchema;
    use crate::store::FieldChange;

    fn layout() -> TypeLayout {
        let raw = serde_json::json!({"data_type": {"value": "text", "editable": false}});
        TypeLayout {
            entity_type: "Shot".into(),
            fields: vec![FieldSchema::from_json("Shot", "code", &raw)],
            indexed: vec![],
        }
    }

    fn shot(code: &str) -> Entity {
        let mut e = Entity::new("Shot", 1);
        e.fields.insert("code".into(), Value::Text(code.into()));
        e.display_name = Some(code.into());
        e
    }

    fn set_code(event_id: i64, code: &str) -> EntityWrite {
        EntityWrite::Patch {
            entity_type: "Shot".into(),
            id: 1,
            event_id,
            changes: vec![FieldChange::Set("code".into(), Value::Text(code.into()))],
        }
    }

    #[test]
    fn older_patch_never_overwrites_newer() {
        let l = layout();
        let created = apply(
            None,
            &EntityWrite::Upsert {
                entity: shot("a"),
                floor: 10,
                event_id: 0,
            },
            &l,
            Some("code"),
        );
        let s = created.state.expect("created");
        let after = apply(Some(&s), &set_code(20, "b"), &l, Some("code"))
            .state
            .expect("patched");
        assert_eq!(after.display_name.as_deref(), Some("b"));
        let r = apply(Some(&after), &set_code(15, "c"), &l, Some("code"));
        assert_eq!(r.outcome, WriteOutcome::Unchanged);
        assert_eq!(r.state.expect("kept").get("code"), &Value::Text("b".into()));
        // A replay of the newer patch changes nothing either.
        assert_eq!(
            apply(Some(&after), &set_code(20, "b"), &l, Some("code")).outcome,
            WriteOutcome::Unchanged
        );
    }

    #[test]
    fn retire_is_guarded_by_retired_version() {
        let l = layout();
        let s = apply(
            None,
            &EntityWrite::Upsert {
                entity: shot("a"),
                floor: 0,
                event_id: 0,
            },
            &l,
            None,
        )
        .state
        .expect("created");
        let r = apply(
            Some(&s),
            &EntityWrite::Retire {
                entity_type: "Shot".into(),
                id: 1,
                event_id: 5,
            },
            &l,
            None,
        );
        assert_eq!(
            r.outcome,
            WriteOutcome::Applied {
                op: JournalOp::Retire,
                fields: vec![]
            }
        );
        let s = r.state.expect("retired");
        let stale = apply(
            Some(&s),
            &EntityWrite::Revive {
                entity_type: "Shot".into(),
                id: 1,
                event_id: 4,
            },
            &l,
            None,
        );
        assert_eq!(stale.outcome, WriteOutcome::Unchanged);
        assert!(stale.state.expect("kept").retired);
    }
}
