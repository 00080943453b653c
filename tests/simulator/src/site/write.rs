//! Writes and the events they produce (protocol §5.4): create (`_New` + one `in_create` `_Change` per
//! populated field, server defaults included), update (one `_Change` per changed field; multi_entity as
//! `added`/`removed`), delete (`retirement_date` `_Change` + `_Retirement`), revive (the reverse, with
//! cascaded children's rows before the parent's `_Revival`), and both ends of every link change.
//!
//! A transaction runs under the site's write lock with an undo log: a failing operation restores every
//! row it touched, so a batch applies entirely or not at all.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use shotgun_cache_core::model::{DataType, DateTime, Entity, EntityRef, FieldSchema, Value};

use super::events::{self, EventDraft};
use super::state::State;
use super::{Actor, SiteError};
use crate::config::ScriptCredential;

/// How a multi_entity value combines with the stored one (api3 `multi_entity_update_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MultiMode {
    #[default]
    Set,
    Add,
    Remove,
}

/// One field of a create or update, with its JSON value (api3/REST form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldWrite {
    pub field: String,
    pub value: Json,
    #[serde(default)]
    pub mode: MultiMode,
}

impl FieldWrite {
    /// Every `{field: value}` pair as a plain set.
    pub fn set_all(fields: &serde_json::Map<String, Json>) -> Vec<FieldWrite> {
        fields
            .iter()
            .map(|(k, v)| FieldWrite {
                field: k.clone(),
                value: v.clone(),
                mode: MultiMode::Set,
            })
            .collect()
    }
}

/// One operation of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    Create {
        entity_type: String,
        fields: Vec<FieldWrite>,
    },
    Update {
        entity_type: String,
        id: i64,
        fields: Vec<FieldWrite>,
    },
    Delete {
        entity_type: String,
        id: i64,
    },
    Revive {
        entity_type: String,
        id: i64,
    },
}

/// What one operation did.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteResult {
    Created {
        entity_type: String,
        id: i64,
    },
    /// `changed` lists the fields whose value changed (in the order given).
    Updated {
        entity_type: String,
        id: i64,
        changed: Vec<String>,
    },
    /// `retired` is false when the row was already retired.
    Deleted {
        entity_type: String,
        id: i64,
        retired: bool,
    },
    /// `revived` is false when the row was not retired.
    Revived {
        entity_type: String,
        id: i64,
        revived: bool,
    },
}

/// The reverse-link pairs of the standard schema: `(type A, field a, type B, field b)`, `*` meaning
/// "whatever type the link points at". Setting `A.a` to B logs and stores the reverse change on `B.b`.
const REVERSE_PAIRS: &[(&str, &str, &str, &str)] = &[
    ("Shot", "sg_sequence", "Sequence", "shots"),
    ("Shot", "assets", "Asset", "shots"),
    ("Sequence", "assets", "Asset", "sequences"),
    ("Asset", "assets", "Asset", "parents"),
    ("Shot", "shots", "Shot", "parent_shots"),
    ("Task", "upstream_tasks", "Task", "downstream_tasks"),
    ("Playlist", "versions", "Version", "playlists"),
    ("PublishedFile", "version", "Version", "published_files"),
    (
        "PublishedFile",
        "upstream_published_files",
        "PublishedFile",
        "downstream_published_files",
    ),
    ("Note", "tasks", "Task", "notes"),
    ("HumanUser", "projects", "Project", "users"),
    ("Task", "entity", "*", "tasks"),
    ("Note", "note_links", "*", "notes"),
];

/// Fields a create does not log (GT 049).
const UNLOGGED_IN_CREATE: &[&str] = &[
    "project",
    "created_at",
    "created_by",
    "updated_at",
    "updated_by",
    "id",
    "cached_display_name",
];

/// Fields that may be written on create even though the schema marks them read-only.
const CREATE_ONLY: &[&str] = &["created_at", "created_by", "updated_at", "updated_by"];

fn matches_type(pattern: &str, t: &str) -> bool {
    pattern == "*" || pattern == t
}

/// The reverse field of `owner.field` on `target_type`, if the schema has one.
pub(crate) fn reverse_field(
    st: &State,
    owner: &str,
    field: &str,
    target_type: &str,
) -> Option<(String, DataType)> {
    let mut found: Option<&str> = None;
    // Exact matches on both sides win over `*` matches.
    for exact in [true, false] {
        for (a, fa, b, fb) in REVERSE_PAIRS {
            let ok_ab = *fa == field && matches_type(a, owner) && matches_type(b, target_type);
            let ok_ba = *fb == field && matches_type(b, owner) && matches_type(a, target_type);
            let is_exact = !a.contains('*') && !b.contains('*');
            if exact != is_exact {
                continue;
            }
            if ok_ab {
                found = Some(fb);
            } else if ok_ba {
                found = Some(fa);
            }
            if found.is_some() {
                break;
            }
        }
        if found.is_some() {
            break;
        }
    }
    let rf = found?;
    let fs = st.schema.field(target_type, rf)?;
    if !fs.data_type.is_link()
        || (!fs.valid_types.is_empty() && !fs.valid_types.iter().any(|t| t == owner))
    {
        return None;
    }
    Some((rf.to_owned(), fs.data_type))
}

/// One row's state before the transaction touched it (`None`: it did not exist).
struct Undo {
    key: (String, i64),
    row: Option<Entity>,
    retired_at: Option<DateTime>,
    cascaded: Option<Vec<(String, i64)>>,
}

struct Tx<'a> {
    actor: &'a Actor,
    drafts: Vec<EventDraft>,
    undo: Vec<Undo>,
    saved: HashSet<(String, i64)>,
    now: DateTime,
}

impl Tx<'_> {
    fn save(&mut self, st: &State, t: &str, id: i64) {
        let key = (t.to_owned(), id);
        if self.saved.insert(key.clone()) {
            self.undo.push(Undo {
                row: st.row(t, id).cloned(),
                retired_at: st.retired_at.get(&key).copied(),
                cascaded: st.cascaded.get(&key).cloned(),
                key,
            });
        }
    }

    fn rollback(self, st: &mut State) -> usize {
        let n = self.drafts.len();
        for u in self.undo.into_iter().rev() {
            let (t, id) = u.key.clone();
            let table = st.tables.entry(t).or_default();
            match u.row {
                Some(row) => {
                    table.rows.insert(id, row);
                }
                None => {
                    table.rows.remove(&id);
                }
            }
            match u.retired_at {
                Some(at) => st.retired_at.insert(u.key.clone(), at),
                None => st.retired_at.remove(&u.key),
            };
            match u.cascaded {
                Some(c) => st.cascaded.insert(u.key, c),
                None => st.cascaded.remove(&u.key),
            };
        }
        n
    }
}

/// Runs `ops` as one transaction and commits its events.
pub(crate) fn run_transaction(
    st: &mut State,
    actor: &Actor,
    ops: Vec<WriteOp>,
) -> Result<Vec<WriteResult>, SiteError> {
    let mut tx = Tx {
        actor,
        drafts: Vec::new(),
        undo: Vec::new(),
        saved: HashSet::new(),
        now: DateTime::now(),
    };
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        match apply(st, &mut tx, op) {
            Ok(r) => results.push(r),
            Err(e) => {
                let reserved = tx.rollback(st);
                events::burn(st, actor, reserved);
                return Err(e);
            }
        }
    }
    let now = tx.now;
    events::commit(st, actor, tx.drafts, now);
    Ok(results)
}

fn apply(st: &mut State, tx: &mut Tx<'_>, op: WriteOp) -> Result<WriteResult, SiteError> {
    match op {
        WriteOp::Create {
            entity_type,
            fields,
        } => create(st, tx, &entity_type, fields),
        WriteOp::Update {
            entity_type,
            id,
            fields,
        } => update(st, tx, &entity_type, id, fields),
        WriteOp::Delete { entity_type, id } => delete(st, tx, &entity_type, id),
        WriteOp::Revive { entity_type, id } => revive(st, tx, &entity_type, id),
    }
}

fn check_type(st: &State, t: &str) -> Result<(), SiteError> {
    if st.schema.entity(t).is_none() || t == "EventLogEntry" {
        return Err(SiteError::UnknownEntityType(t.to_owned()));
    }
    Ok(())
}

fn field_schema<'s>(
    st: &'s State,
    verb: &'static str,
    t: &str,
    field: &str,
) -> Result<&'s FieldSchema, SiteError> {
    st.schema
        .field(t, field)
        .ok_or_else(|| SiteError::UnknownField {
            verb,
            entity_type: t.to_owned(),
            field: field.to_owned(),
        })
}

fn invalid(verb: &'static str, t: &str, field: &str, message: impl Into<String>) -> SiteError {
    SiteError::InvalidValue {
        verb,
        entity_type: t.to_owned(),
        field: field.to_owned(),
        message: message.into(),
    }
}

fn check_link(
    st: &State,
    verb: &'static str,
    t: &str,
    fs: &FieldSchema,
    v: &Json,
) -> Result<EntityRef, SiteError> {
    let r = EntityRef::from_json(v).map_err(|e| invalid(verb, t, &fs.name, e.to_string()))?;
    if !fs.valid_types.is_empty() && !fs.valid_types.contains(&r.entity_type) {
        return Err(invalid(
            verb,
            t,
            &fs.name,
            format!(
                "entity type {} is not a valid type (valid: {:?})",
                r.entity_type, fs.valid_types
            ),
        ));
    }
    if !st.is_live(&r.entity_type, r.id) {
        return Err(invalid(
            verb,
            t,
            &fs.name,
            format!("{} {} does not exist or is retired", r.entity_type, r.id),
        ));
    }
    Ok(EntityRef::new(r.entity_type, r.id))
}

/// Converts and validates one input value for a field (protocol §4 write rules).
fn convert(
    st: &State,
    verb: &'static str,
    t: &str,
    fs: &FieldSchema,
    v: &Json,
    creating: bool,
) -> Result<Value, SiteError> {
    use DataType as D;
    let field = fs.name.as_str();
    let read_only = matches!(
        fs.data_type,
        D::Summary | D::Calculated | D::PivotColumn | D::Password | D::Unknown
    ) || field == "id"
        || field == "cached_display_name"
        || !(fs.editable || (creating && CREATE_ONLY.contains(&field)));
    if read_only {
        return Err(SiteError::ReadOnlyField {
            verb,
            entity_type: t.to_owned(),
            field: field.to_owned(),
        });
    }
    if v.is_null() {
        return Ok(Value::empty_for(fs.data_type));
    }
    Ok(match fs.data_type {
        D::Entity => Value::Entity(check_link(st, verb, t, fs, v)?),
        D::MultiEntity => {
            let items: Vec<&Json> = match v {
                Json::Array(a) => a.iter().collect(),
                Json::Object(_) => vec![v],
                _ => return Err(invalid(verb, t, field, "expected a list of entity links")),
            };
            let mut out: Vec<EntityRef> = Vec::with_capacity(items.len());
            for item in items {
                let r = check_link(st, verb, t, fs, item)?;
                if !out.iter().any(|x| x.same_target(&r)) {
                    out.push(r);
                }
            }
            Value::MultiEntity(out)
        }
        D::StatusList | D::List => {
            let s = v
                .as_str()
                .ok_or_else(|| invalid(verb, t, field, format!("expected a string, got {v}")))?;
            if !fs.valid_values.iter().any(|x| x == s) {
                return Err(invalid(
                    verb,
                    t,
                    field,
                    format!(
                        "'{s}' is not a valid value (valid values: {:?})",
                        fs.valid_values
                    ),
                ));
            }
            Value::Text(s.to_owned())
        }
        D::Float | D::Currency => {
            let f = match v {
                Json::Number(n) if n.is_f64() => n.as_f64(),
                Json::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            }
            .ok_or_else(|| invalid(verb, t, field, format!("expected a float, got {v}")))?;
            Value::Float((f * 1e6).round() / 1e6)
        }
        D::Number | D::Percent | D::Timecode => {
            match v {
                Json::Number(n) if n.is_i64() || n.is_u64() => Value::Int(
                    n.as_i64()
                        .ok_or_else(|| invalid(verb, t, field, "integer out of range"))?,
                ),
                Json::String(s) => Value::Int(s.trim().parse().map_err(|_| {
                    invalid(verb, t, field, format!("expected an integer, got {v}"))
                })?),
                _ => {
                    return Err(invalid(
                        verb,
                        t,
                        field,
                        format!("expected an integer, got {v}"),
                    ));
                }
            }
        }
        D::Duration => match v {
            Json::Number(n) => Value::Int(
                n.as_i64()
                    .or_else(|| n.as_f64().map(|f| f.trunc() as i64))
                    .unwrap_or(0),
            ),
            _ => {
                return Err(invalid(
                    verb,
                    t,
                    field,
                    format!("expected a number of minutes, got {v}"),
                ));
            }
        },
        D::Text => match v {
            Json::String(s) if s.trim().is_empty() => Value::Null,
            Json::String(s) => Value::Text(s.trim().to_owned()),
            _ => {
                return Err(invalid(
                    verb,
                    t,
                    field,
                    format!("expected a string, got {v}"),
                ));
            }
        },
        D::Image => match v {
            Json::Number(_) => {
                Value::from_json(D::Image, v).map_err(|e| invalid(verb, t, field, e.to_string()))?
            }
            _ => {
                return Err(invalid(
                    verb,
                    t,
                    field,
                    "image fields take an attachment id; upload a thumbnail instead",
                ));
            }
        },
        dt => Value::from_json(dt, v).map_err(|e| invalid(verb, t, field, e.to_string()))?,
    })
}

fn stored(st: &State, t: &str, id: i64, field: &str, dt: DataType) -> Value {
    st.row(t, id)
        .and_then(|e| e.fields.get(field))
        .cloned()
        .unwrap_or_else(|| Value::empty_for(dt))
}

fn store(st: &mut State, t: &str, id: i64, field: &str, v: Value) {
    let display_field = st
        .schema
        .entity(t)
        .and_then(|s| s.display_field())
        .map(str::to_owned);
    let recompute = display_field.as_deref() == Some(field)
        || matches!(field, "firstname" | "lastname" | "name");
    let empty = match &v {
        Value::Null | Value::Bool(false) => true,
        Value::MultiEntity(l) => l.is_empty(),
        _ => false,
    };
    let Some(row) = st.row_mut(t, id) else { return };
    if empty {
        row.fields.remove(field);
    } else {
        row.fields.insert(field.to_owned(), v);
    }
    if recompute {
        let name = st.row(t, id).and_then(|e| st.compute_display_name(e));
        if let Some(row) = st.row_mut(t, id) {
            row.display_name = name;
        }
    }
}

fn links_of(v: &Value) -> Vec<EntityRef> {
    match v {
        Value::Entity(r) => vec![r.clone()],
        Value::MultiEntity(l) => l.clone(),
        _ => Vec::new(),
    }
}

/// Sets one field, logs it, and propagates link changes to the reverse field. Returns whether it changed.
#[allow(clippy::too_many_arguments)]
fn set_field(
    st: &mut State,
    tx: &mut Tx<'_>,
    t: &str,
    id: i64,
    field: &str,
    dt: DataType,
    input: Value,
    mode: MultiMode,
    in_create: bool,
) -> bool {
    let old = stored(st, t, id, field, dt);
    let new = match (dt, mode) {
        (DataType::MultiEntity, MultiMode::Set) => input,
        (DataType::MultiEntity, MultiMode::Add) => {
            let mut l = links_of(&old);
            for r in links_of(&input) {
                if !l.iter().any(|x| x.same_target(&r)) {
                    l.push(r);
                }
            }
            Value::MultiEntity(l)
        }
        (DataType::MultiEntity, MultiMode::Remove) => {
            let rm = links_of(&input);
            Value::MultiEntity(
                links_of(&old)
                    .into_iter()
                    .filter(|x| !rm.iter().any(|r| r.same_target(x)))
                    .collect(),
            )
        }
        (DataType::Entity, MultiMode::Remove) => {
            let rm = links_of(&input);
            match &old {
                Value::Entity(o) if rm.iter().any(|r| r.same_target(o)) => Value::Null,
                _ => old.clone(),
            }
        }
        (DataType::Entity, MultiMode::Add) => links_of(&input)
            .into_iter()
            .next()
            .map(Value::Entity)
            .unwrap_or(Value::Null),
        _ => input,
    };
    let (added, removed): (Vec<EntityRef>, Vec<EntityRef>) = if dt.is_link() {
        let o = links_of(&old);
        let n = links_of(&new);
        (
            n.iter()
                .filter(|x| !o.iter().any(|y| y.same_target(x)))
                .cloned()
                .collect(),
            o.iter()
                .filter(|x| !n.iter().any(|y| y.same_target(x)))
                .cloned()
                .collect(),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let unchanged = if dt.is_link() {
        added.is_empty() && removed.is_empty()
    } else {
        old == new
    };
    if unchanged {
        return false;
    }
    tx.save(st, t, id);
    store(st, t, id, field, new.clone());
    let logged = !(in_create && UNLOGGED_IN_CREATE.contains(&field));
    if logged && let Some(row) = st.row(t, id) {
        let d = if dt == DataType::MultiEntity {
            events::multi_change_draft(st, tx.actor, row, field, &added, &removed, in_create, None)
        } else {
            events::change_draft(st, tx.actor, row, field, dt, &old, &new, in_create, None)
        };
        tx.drafts.push(d);
    }
    if dt.is_link() {
        let origin = format!("{t}.{field}");
        let src = EntityRef::new(t, id);
        for r in &removed {
            if let Some((rf, rdt)) = reverse_field(st, t, field, &r.entity_type) {
                unlink(st, tx, r, &rf, rdt, &src, &origin, in_create);
            }
        }
        for a in &added {
            if let Some((rf, rdt)) = reverse_field(st, t, field, &a.entity_type) {
                link(st, tx, a, &rf, rdt, &src, &origin, in_create);
            }
        }
    }
    true
}

/// Adds `src` to `target.rf` (the reverse side of a link), logging it on the target.
#[allow(clippy::too_many_arguments)]
fn link(
    st: &mut State,
    tx: &mut Tx<'_>,
    target: &EntityRef,
    rf: &str,
    rdt: DataType,
    src: &EntityRef,
    origin: &str,
    in_create: bool,
) {
    if st.row(&target.entity_type, target.id).is_none() {
        return;
    }
    let old = stored(st, &target.entity_type, target.id, rf, rdt);
    match rdt {
        DataType::MultiEntity => {
            let mut l = links_of(&old);
            if l.iter().any(|x| x.same_target(src)) {
                return;
            }
            l.push(src.clone());
            tx.save(st, &target.entity_type, target.id);
            store(
                st,
                &target.entity_type,
                target.id,
                rf,
                Value::MultiEntity(l),
            );
            if let Some(row) = st.row(&target.entity_type, target.id) {
                let d = events::multi_change_draft(
                    st,
                    tx.actor,
                    row,
                    rf,
                    std::slice::from_ref(src),
                    &[],
                    in_create,
                    Some(origin),
                );
                tx.drafts.push(d);
            }
        }
        _ => {
            if let Value::Entity(o) = &old
                && o.same_target(src)
            {
                return;
            }
            tx.save(st, &target.entity_type, target.id);
            let new = Value::Entity(src.clone());
            store(st, &target.entity_type, target.id, rf, new.clone());
            if let Some(row) = st.row(&target.entity_type, target.id) {
                let d = events::change_draft(
                    st,
                    tx.actor,
                    row,
                    rf,
                    rdt,
                    &old,
                    &new,
                    in_create,
                    Some(origin),
                );
                tx.drafts.push(d);
            }
            // The row the target pointed at before loses the target from its side of the link.
            if let Value::Entity(prev) = old
                && let Some((pf, pdt)) =
                    reverse_field(st, &target.entity_type, rf, &prev.entity_type)
            {
                let origin2 = format!("{}.{rf}", target.entity_type);
                unlink(st, tx, &prev, &pf, pdt, target, &origin2, in_create);
            }
        }
    }
}

/// Removes `src` from `target.rf` (the reverse side of a link), logging it on the target.
#[allow(clippy::too_many_arguments)]
fn unlink(
    st: &mut State,
    tx: &mut Tx<'_>,
    target: &EntityRef,
    rf: &str,
    rdt: DataType,
    src: &EntityRef,
    origin: &str,
    in_create: bool,
) {
    if st.row(&target.entity_type, target.id).is_none() {
        return;
    }
    let old = stored(st, &target.entity_type, target.id, rf, rdt);
    match rdt {
        DataType::MultiEntity => {
            let l = links_of(&old);
            if !l.iter().any(|x| x.same_target(src)) {
                return;
            }
            tx.save(st, &target.entity_type, target.id);
            store(
                st,
                &target.entity_type,
                target.id,
                rf,
                Value::MultiEntity(l.into_iter().filter(|x| !x.same_target(src)).collect()),
            );
            if let Some(row) = st.row(&target.entity_type, target.id) {
                let d = events::multi_change_draft(
                    st,
                    tx.actor,
                    row,
                    rf,
                    &[],
                    std::slice::from_ref(src),
                    in_create,
                    Some(origin),
                );
                tx.drafts.push(d);
            }
        }
        _ => {
            let points = matches!(&old, Value::Entity(o) if o.same_target(src));
            if !points {
                return;
            }
            tx.save(st, &target.entity_type, target.id);
            store(st, &target.entity_type, target.id, rf, Value::Null);
            if let Some(row) = st.row(&target.entity_type, target.id) {
                let d = events::change_draft(
                    st,
                    tx.actor,
                    row,
                    rf,
                    rdt,
                    &old,
                    &Value::Null,
                    in_create,
                    Some(origin),
                );
                tx.drafts.push(d);
            }
        }
    }
}

fn create(
    st: &mut State,
    tx: &mut Tx<'_>,
    t: &str,
    fields: Vec<FieldWrite>,
) -> Result<WriteResult, SiteError> {
    check_type(st, t)?;
    // Validate everything first.
    let mut values: Vec<(String, DataType, Value)> = Vec::with_capacity(fields.len());
    for fw in &fields {
        if fw.field == "type" {
            continue;
        }
        let fs = field_schema(st, "create", t, &fw.field)?;
        let v = convert(st, "create", t, fs, &fw.value, true)?;
        values.retain(|(f, _, _)| *f != fw.field);
        values.push((fw.field.clone(), fs.data_type, v));
    }
    // Server defaults for fields not given.
    let schema = st
        .schema
        .entity(t)
        .ok_or_else(|| SiteError::UnknownEntityType(t.to_owned()))?;
    let mut defaults: Vec<(String, DataType, Value)> = Vec::new();
    for (name, fs) in &schema.fields {
        if fs.default_value.is_null() || values.iter().any(|(f, _, _)| f == name) {
            continue;
        }
        if matches!(
            fs.data_type,
            DataType::Summary | DataType::Calculated | DataType::PivotColumn | DataType::Password
        ) {
            continue;
        }
        if let Ok(v) = Value::from_json(fs.data_type, &fs.default_value)
            && v != Value::empty_for(fs.data_type)
        {
            defaults.push((name.clone(), fs.data_type, v));
        }
    }
    let user = Value::Entity(EntityRef::new(
        tx.actor.user.entity_type.clone(),
        tx.actor.user.id,
    ));
    for (f, v) in [
        ("created_at", Value::DateTime(tx.now)),
        ("updated_at", Value::DateTime(tx.now)),
        ("created_by", user.clone()),
        ("updated_by", user),
    ] {
        if let Some(fs) = schema.fields.get(f)
            && !values.iter().any(|(n, _, _)| n == f)
        {
            defaults.push((f.to_owned(), fs.data_type, v));
        }
    }
    values.extend(defaults);

    let table = st.tables.entry(t.to_owned()).or_default();
    let id = table.next_id;
    table.next_id += 1;
    tx.save(st, t, id);
    let mut row = Entity::new(t, id);
    for (f, dt, v) in &values {
        if !dt.is_link() {
            let empty = matches!(v, Value::Null | Value::Bool(false));
            if !empty {
                row.fields.insert(f.clone(), v.clone());
            }
        } else if f == "project" || f == "created_by" || f == "updated_by" {
            // Links without a reverse side and without in_create rows are stored directly.
            row.fields.insert(f.clone(), v.clone());
        }
    }
    row.display_name = st.compute_display_name(&row);
    st.tables
        .entry(t.to_owned())
        .or_default()
        .rows
        .insert(id, row);
    if let Some(row) = st.row(t, id) {
        let d = events::new_draft(st, tx.actor, row);
        tx.drafts.push(d);
    }
    for (f, dt, v) in &values {
        if dt.is_link() {
            if f == "project" || f == "created_by" || f == "updated_by" {
                continue;
            }
            set_field(st, tx, t, id, f, *dt, v.clone(), MultiMode::Set, true);
        } else if !UNLOGGED_IN_CREATE.contains(&f.as_str())
            && *v != Value::empty_for(*dt)
            && let Some(row) = st.row(t, id)
        {
            let d = events::change_draft(
                st,
                tx.actor,
                row,
                f,
                *dt,
                &Value::empty_for(*dt),
                v,
                true,
                None,
            );
            tx.drafts.push(d);
        }
    }
    Ok(WriteResult::Created {
        entity_type: t.to_owned(),
        id,
    })
}

fn update(
    st: &mut State,
    tx: &mut Tx<'_>,
    t: &str,
    id: i64,
    fields: Vec<FieldWrite>,
) -> Result<WriteResult, SiteError> {
    check_type(st, t)?;
    if !st.is_live(t, id) {
        return Err(SiteError::NotFound {
            entity_type: t.to_owned(),
            id,
        });
    }
    let mut values = Vec::with_capacity(fields.len());
    for fw in &fields {
        let fs = field_schema(st, "update", t, &fw.field)?;
        let v = convert(st, "update", t, fs, &fw.value, false)?;
        values.push((fw.field.clone(), fs.data_type, v, fw.mode));
    }
    let mut changed = Vec::new();
    for (f, dt, v, mode) in values {
        if set_field(st, tx, t, id, &f, dt, v, mode, false) {
            changed.push(f);
        }
    }
    if !changed.is_empty() {
        // `updated_at`/`updated_by` move silently: the event log has no rows for them (GT 049).
        let user = Value::Entity(EntityRef::new(
            tx.actor.user.entity_type.clone(),
            tx.actor.user.id,
        ));
        if st.schema.field(t, "updated_at").is_some() {
            store(st, t, id, "updated_at", Value::DateTime(tx.now));
        }
        if st.schema.field(t, "updated_by").is_some() {
            store(st, t, id, "updated_by", user);
        }
    }
    Ok(WriteResult::Updated {
        entity_type: t.to_owned(),
        id,
        changed,
    })
}

/// Types whose rows are retired with the row their `entity` field points at.
const CASCADE_CHILDREN: &[&str] = &["Version", "Task"];

fn delete(st: &mut State, tx: &mut Tx<'_>, t: &str, id: i64) -> Result<WriteResult, SiteError> {
    check_type(st, t)?;
    let Some(row) = st.row(t, id) else {
        return Err(SiteError::NotFound {
            entity_type: t.to_owned(),
            id,
        });
    };
    if row.retired {
        return Ok(WriteResult::Deleted {
            entity_type: t.to_owned(),
            id,
            retired: false,
        });
    }
    retire_one(st, tx, t, id, true);
    if st.cascade.enabled {
        let mut children = Vec::new();
        for ct in CASCADE_CHILDREN {
            if !st
                .schema
                .field(ct, "entity")
                .is_some_and(|f| f.valid_types.iter().any(|v| v == t))
            {
                continue;
            }
            if let Some(table) = st.tables.get(*ct) {
                for (cid, e) in &table.rows {
                    if !e.retired
                        && matches!(e.fields.get("entity"), Some(Value::Entity(r)) if r.entity_type == t && r.id == id)
                    {
                        children.push(((*ct).to_owned(), *cid));
                    }
                }
            }
        }
        let logged = st.cascade.logged;
        for (ct, cid) in &children {
            retire_one(st, tx, ct, *cid, logged);
        }
        if !children.is_empty() {
            st.cascaded.insert((t.to_owned(), id), children);
        }
    }
    Ok(WriteResult::Deleted {
        entity_type: t.to_owned(),
        id,
        retired: true,
    })
}

fn retire_one(st: &mut State, tx: &mut Tx<'_>, t: &str, id: i64, logged: bool) {
    tx.save(st, t, id);
    if let Some(row) = st.row_mut(t, id) {
        row.retired = true;
    }
    st.retired_at.insert((t.to_owned(), id), tx.now);
    if logged && let Some(row) = st.row(t, id) {
        let [c, r] = events::retirement_drafts(st, tx.actor, row, tx.now);
        tx.drafts.push(c);
        tx.drafts.push(r);
    }
}

fn revive(st: &mut State, tx: &mut Tx<'_>, t: &str, id: i64) -> Result<WriteResult, SiteError> {
    check_type(st, t)?;
    let Some(row) = st.row(t, id) else {
        return Err(SiteError::NotFound {
            entity_type: t.to_owned(),
            id,
        });
    };
    if !row.retired {
        return Ok(WriteResult::Revived {
            entity_type: t.to_owned(),
            id,
            revived: false,
        });
    }
    let key = (t.to_owned(), id);
    tx.save(st, t, id);
    let was = st.retired_at.remove(&key);
    if let Some(row) = st.row_mut(t, id) {
        row.retired = false;
    }
    if let Some(row) = st.row(t, id) {
        let d = events::revival_change_draft(st, tx.actor, row, was);
        tx.drafts.push(d);
    }
    // Children retired with this row come back too; their rows precede the parent's `_Revival`.
    if let Some(children) = st.cascaded.remove(&key) {
        let logged = st.cascade.logged;
        for (ct, cid) in children {
            if !st.row(&ct, cid).is_some_and(|e| e.retired) {
                continue;
            }
            tx.save(st, &ct, cid);
            let cwas = st.retired_at.remove(&(ct.clone(), cid));
            if let Some(row) = st.row_mut(&ct, cid) {
                row.retired = false;
            }
            if logged && let Some(row) = st.row(&ct, cid) {
                let c = events::revival_change_draft(st, tx.actor, row, cwas);
                let r = events::revival_draft(st, tx.actor, row);
                tx.drafts.push(c);
                tx.drafts.push(r);
            }
        }
    }
    if let Some(row) = st.row(t, id) {
        let d = events::revival_draft(st, tx.actor, row);
        tx.drafts.push(d);
    }
    Ok(WriteResult::Revived {
        entity_type: t.to_owned(),
        id,
        revived: true,
    })
}

fn image_draft(
    st: &State,
    actor: &Actor,
    row: &Entity,
    field: &str,
    old: Option<i64>,
    new: i64,
    transient: bool,
) -> EventDraft {
    let mut d = events::change_draft(
        st,
        actor,
        row,
        field,
        DataType::Image,
        &Value::Null,
        &Value::Null,
        false,
        None,
    );
    d.meta = json!({
        "type": "attribute_change", "attribute_name": field, "entity_type": row.entity_type, "entity_id": row.id,
        "field_data_type": "image", "old_value": old, "new_value": new, "is_transient": transient,
    });
    d
}

pub(crate) fn set_image(
    st: &mut State,
    actor: &Actor,
    t: &str,
    id: i64,
    field: &str,
    finish: bool,
) -> Result<i64, SiteError> {
    check_type(st, t)?;
    let fs = field_schema(st, "update", t, field)?;
    if fs.data_type != DataType::Image {
        return Err(invalid("update", t, field, "not an image field"));
    }
    if !st.is_live(t, id) {
        return Err(SiteError::NotFound {
            entity_type: t.to_owned(),
            id,
        });
    }
    let attachment = st.next_attachment_id;
    st.next_attachment_id += 1;
    let old = match st.row(t, id).and_then(|e| e.fields.get(field)) {
        Some(Value::Int(a)) => Some(*a),
        _ => None,
    };
    store(st, t, id, field, Value::Int(attachment));
    st.transient_attachments.insert(attachment);
    let mut drafts = Vec::new();
    if let Some(row) = st.row(t, id) {
        drafts.push(image_draft(st, actor, row, field, old, attachment, true));
    }
    if finish {
        st.transient_attachments.remove(&attachment);
        if let Some(row) = st.row(t, id) {
            drafts.push(image_draft(
                st,
                actor,
                row,
                field,
                Some(attachment),
                attachment,
                false,
            ));
        }
    }
    events::commit(st, actor, drafts, DateTime::now());
    Ok(attachment)
}

pub(crate) fn finish_image(
    st: &mut State,
    actor: &Actor,
    t: &str,
    id: i64,
    field: &str,
) -> Result<(), SiteError> {
    let Some(Value::Int(a)) = st.row(t, id).and_then(|e| e.fields.get(field)).cloned() else {
        return Err(invalid(
            "update",
            t,
            field,
            "no thumbnail is being processed",
        ));
    };
    if !st.transient_attachments.remove(&a) {
        return Ok(());
    }
    let drafts: Vec<EventDraft> = st
        .row(t, id)
        .map(|row| image_draft(st, actor, row, field, Some(a), a, false))
        .into_iter()
        .collect();
    events::commit(st, actor, drafts, DateTime::now());
    Ok(())
}

/// Adds the ApiUser row of a configured script.
pub(crate) fn insert_script_user(st: &mut State, s: &ScriptCredential) {
    let table = st.tables.entry("ApiUser".to_owned()).or_default();
    let id = table.next_id;
    table.next_id += 1;
    let mut e = Entity::new("ApiUser", id);
    e.fields
        .insert("firstname".into(), Value::Text(s.name.clone()));
    e.fields.insert(
        "description".into(),
        Value::Text(format!("API script {}", s.name)),
    );
    if s.generate_events {
        e.fields
            .insert("generate_event_log_entries".into(), Value::Bool(true));
    }
    e.fields.insert(
        "created_at".into(),
        Value::DateTime(DateTime(1_700_000_000)),
    );
    e.display_name = Some(s.name.clone());
    table.rows.insert(id, e);
}

pub(crate) fn script_actor(st: &State, name: &str) -> Option<Actor> {
    let table = st.tables.get("ApiUser")?;
    let (id, e) = table
        .rows
        .iter()
        .find(|(_, e)| matches!(e.fields.get("firstname"), Some(Value::Text(n)) if n == name))?;
    Some(Actor {
        user: EntityRef {
            entity_type: "ApiUser".into(),
            id: *id,
            name: Some(name.to_owned()),
        },
        generate_events: matches!(
            e.fields.get("generate_event_log_entries"),
            Some(Value::Bool(true))
        ),
        session_uuid: None,
        sudo_actual_user: None,
    })
}

pub(crate) fn set_script_flag(st: &mut State, name: &str, on: bool) {
    let Some(table) = st.tables.get_mut("ApiUser") else {
        return;
    };
    for e in table.rows.values_mut() {
        if matches!(e.fields.get("firstname"), Some(Value::Text(n)) if n == name) {
            if on {
                e.fields
                    .insert("generate_event_log_entries".into(), Value::Bool(true));
            } else {
                e.fields.remove("generate_event_log_entries");
            }
        }
    }
}
