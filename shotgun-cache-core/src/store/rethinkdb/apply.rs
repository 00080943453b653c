//! The ordering guard as a pure function: what one [`EntityWrite`] does to the stored entity.
//!
//! The commit path (`super::commit`) reads the stored document, computes the new state here, and then
//! writes it with a compare-and-swap inside the database, so the guard's decision is made against
//! exactly the state that is replaced.

use crate::model::{Entity, EntityRef, Value};
use crate::store::{EntityWrite, FieldChange, JournalOp, WriteOutcome};

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

/// Applies `w` to `old`. `display_field` is the field whose value is the type's display name.
pub(crate) fn apply(old: Option<&Entity>, w: &EntityWrite, display_field: Option<&str>) -> Applied {
    match w {
        EntityWrite::Upsert {
            entity,
            floor,
            event_id,
        } => {
            let mut new = entity.clone();
            let raise = (*floor).max(*event_id).max(0);
            match old {
                None => {
                    for f in new.fields.keys() {
                        let v = new.versions.entry(f.clone()).or_insert(0);
                        *v = (*v).max(*floor);
                    }
                    new.retired_version = new.retired_version.max(*floor);
                    new.last_event_id = new.last_event_id.max(raise);
                    let fields = new.fields.keys().cloned().collect();
                    Applied {
                        outcome: WriteOutcome::Applied {
                            op: JournalOp::Create,
                            fields,
                        },
                        state: Some(new),
                        write: true,
                    }
                }
                Some(old) => {
                    let mut versions = old.versions.clone();
                    for (f, v) in &entity.versions {
                        let cur = versions.entry(f.clone()).or_insert(0);
                        *cur = (*cur).max(*v);
                    }
                    for f in entity.fields.keys() {
                        let cur = versions.entry(f.clone()).or_insert(0);
                        *cur = (*cur).max(*floor);
                    }
                    new.versions = versions;
                    if old.retired_version > *floor {
                        new.retired = old.retired;
                        new.retired_version = old.retired_version;
                    } else {
                        new.retired_version =
                            old.retired_version.max(*floor).max(entity.retired_version);
                    }
                    new.last_event_id = old.last_event_id.max(entity.last_event_id).max(raise);
                    let mut changed: Vec<String> = new
                        .fields
                        .iter()
                        .filter(|(k, v)| old.fields.get(*k) != Some(*v))
                        .map(|(k, _)| k.clone())
                        .collect();
                    changed.extend(
                        old.fields
                            .keys()
                            .filter(|k| !new.fields.contains_key(*k))
                            .cloned(),
                    );
                    changed.sort();
                    let op = match (old.retired, new.retired) {
                        (false, true) => Some(JournalOp::Retire),
                        (true, false) => Some(JournalOp::Revive),
                        _ if !changed.is_empty() || old.display_name != new.display_name => {
                            Some(JournalOp::Update)
                        }
                        _ => None,
                    };
                    let write = &new != old;
                    match op {
                        Some(op) => {
                            let fields = if matches!(op, JournalOp::Update) {
                                changed
                            } else {
                                Vec::new()
                            };
                            Applied {
                                outcome: WriteOutcome::Applied { op, fields },
                                state: Some(new),
                                write,
                            }
                        }
                        None => unchanged(Some(new), write),
                    }
                }
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
            let mut new = old.clone();
            let mut changed: Vec<String> = Vec::new();
            for c in changes {
                let f = c.field();
                let version = new.versions.get(f).copied().unwrap_or(0);
                if *event_id <= version {
                    continue;
                }
                new.versions.insert(f.to_owned(), *event_id);
                let before = new.fields.get(f).cloned().unwrap_or(Value::Null);
                let after = match c {
                    FieldChange::Set(_, v) => v.clone(),
                    FieldChange::Add(_, links) => {
                        let mut list = match &before {
                            Value::MultiEntity(l) => l.clone(),
                            _ => Vec::new(),
                        };
                        for l in links {
                            if !list.iter().any(|x: &EntityRef| x.same_target(l)) {
                                list.push(l.clone());
                            }
                        }
                        Value::MultiEntity(list)
                    }
                    FieldChange::Remove(_, links) => {
                        let list = match &before {
                            Value::MultiEntity(l) => l
                                .iter()
                                .filter(|x| !links.iter().any(|r| r.same_target(x)))
                                .cloned()
                                .collect(),
                            _ => Vec::new(),
                        };
                        Value::MultiEntity(list)
                    }
                };
                if after != before || !new.fields.contains_key(f) {
                    if display_field == Some(f) {
                        new.display_name = match &after {
                            Value::Text(s) => Some(s.clone()),
                            _ => None,
                        };
                    }
                    if after != before && !changed.iter().any(|x| x == f) {
                        changed.push(f.to_owned());
                    }
                    new.fields.insert(f.to_owned(), after);
                }
            }
            new.last_event_id = new.last_event_id.max(*event_id);
            let write = &new != old;
            if changed.is_empty() {
                return unchanged(Some(new), write);
            }
            Applied {
                outcome: WriteOutcome::Applied {
                    op: JournalOp::Update,
                    fields: changed,
                },
                state: Some(new),
                write,
            }
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
            let mut new = old.clone();
            new.retired_version = *event_id;
            new.last_event_id = new.last_event_id.max(*event_id);
            if old.retired == retire {
                return unchanged(Some(new), true);
            }
            new.retired = retire;
            let op = if retire {
                JournalOp::Retire
            } else {
                JournalOp::Revive
            };
            Applied {
                outcome: WriteOutcome::Applied {
                    op,
                    fields: Vec::new(),
                },
                state: Some(new),
                write: true,
            }
        }
        EntityWrite::Remove { .. } => match old {
            None => unchanged(None, false),
            Some(_) => Applied {
                outcome: WriteOutcome::Applied {
                    op: JournalOp::Remove,
                    fields: Vec::new(),
                },
                state: None,
                write: true,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shot(code: &str) -> Entity {
        let mut e = Entity::new("Shot", 1);
        e.fields.insert("code".into(), Value::Text(code.into()));
        e.display_name = Some(code.into());
        e
    }

    #[test]
    fn older_patch_never_overwrites_newer() {
        let created = apply(
            None,
            &EntityWrite::Upsert {
                entity: shot("a"),
                floor: 10,
                event_id: 0,
            },
            Some("code"),
        );
        let s = created.state.expect("created");
        let newer = EntityWrite::Patch {
            entity_type: "Shot".into(),
            id: 1,
            event_id: 20,
            changes: vec![FieldChange::Set("code".into(), Value::Text("b".into()))],
        };
        let after = apply(Some(&s), &newer, Some("code"))
            .state
            .expect("patched");
        assert_eq!(after.display_name.as_deref(), Some("b"));
        let older = EntityWrite::Patch {
            entity_type: "Shot".into(),
            id: 1,
            event_id: 15,
            changes: vec![FieldChange::Set("code".into(), Value::Text("c".into()))],
        };
        let r = apply(Some(&after), &older, Some("code"));
        assert_eq!(r.outcome, WriteOutcome::Unchanged);
        assert_eq!(r.state.expect("kept").get("code"), &Value::Text("b".into()));
        // A replay of the newer patch changes nothing either.
        assert_eq!(
            apply(Some(&after), &newer, Some("code")).outcome,
            WriteOutcome::Unchanged
        );
    }

    #[test]
    fn retire_is_guarded_by_retired_version() {
        let s = apply(
            None,
            &EntityWrite::Upsert {
                entity: shot("a"),
                floor: 0,
                event_id: 0,
            },
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
            None,
        );
        assert_eq!(stale.outcome, WriteOutcome::Unchanged);
        assert!(stale.state.expect("kept").retired);
    }
}
