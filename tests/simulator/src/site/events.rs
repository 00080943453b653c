//! Event-log rows: their drafts while a transaction runs, the meta shapes of protocol §5.3, and the
//! commit step that hands out site-wide ids and applies the knobs (visibility delay, out-of-order
//! commits, permanent gaps, scripts with event generation off).

use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Value as Json, json};
use shotgun_cache_core::model::{DataType, DateTime, Entity, EntityRef, Value};

use super::Actor;
use super::state::{EVENT_TYPE, Pending, State};

/// An event recorded during a transaction; it gets its id and user when the transaction commits.
#[derive(Debug, Clone)]
pub(crate) struct EventDraft {
    pub(crate) event_type: String,
    pub(crate) attribute_name: Option<String>,
    pub(crate) meta: Json,
    /// The entity the event is about (`None` for events on things that are not rows).
    pub(crate) entity: Option<EntityRef>,
    pub(crate) project: Option<EntityRef>,
    pub(crate) description: String,
}

/// A deterministic uuid-shaped string for a (kind, id) pair.
pub(crate) fn uuid_for(kind: &str, id: i64) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in kind.bytes().chain(id.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let h2 = h.rotate_left(29).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        (h >> 32) as u32,
        (h >> 16) as u16,
        (h & 0xfff) as u16,
        (h2 >> 52) as u16 & 0xfff,
        h2 & 0xffff_ffff_ffff
    )
}

/// The date form used inside meta values: `YYYY-MM-DD HH:MM:SS UTC` (protocol §5.3).
pub(crate) fn meta_datetime(t: DateTime) -> String {
    let iso = t.to_string();
    format!("{} {} UTC", &iso[..10], &iso[11..19])
}

/// A link as event meta carries it: `{type, id, name, valid, status, uuid}` (GT 090).
pub(crate) fn meta_link(st: &State, r: &EntityRef, with_valid: bool) -> Json {
    let row = st.row(&r.entity_type, r.id);
    let name = row
        .and_then(|e| e.display_name.clone())
        .or_else(|| r.name.clone());
    let status = row.and_then(|e| match e.fields.get("sg_status_list") {
        Some(Value::Text(s)) => Some(s.clone()),
        _ => None,
    });
    let mut m = serde_json::Map::new();
    m.insert("type".into(), Json::String(r.entity_type.clone()));
    m.insert("id".into(), Json::from(r.id));
    m.insert("name".into(), name.map(Json::String).unwrap_or(Json::Null));
    if with_valid {
        m.insert("valid".into(), Json::String("valid".into()));
    }
    m.insert(
        "status".into(),
        status.map(Json::String).unwrap_or(Json::Null),
    );
    m.insert("uuid".into(), Json::String(uuid_for(&r.entity_type, r.id)));
    Json::Object(m)
}

/// A field value as event meta carries it.
pub(crate) fn meta_value(st: &State, v: &Value) -> Json {
    match v {
        Value::Entity(r) => meta_link(st, r, true),
        Value::MultiEntity(rs) => Json::Array(rs.iter().map(|r| meta_link(st, r, false)).collect()),
        Value::DateTime(t) => Json::String(meta_datetime(*t)),
        other => other.to_json(),
    }
}

fn describe_value(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Text(s) => s.clone(),
        Value::Entity(r) => format!("{} #{}", r.entity_type, r.id),
        other => other.to_json().to_string(),
    }
}

/// The `attribute_change` meta of a scalar or single-entity field.
#[allow(clippy::too_many_arguments)]
pub(crate) fn change_draft(
    st: &State,
    actor: &Actor,
    entity: &Entity,
    field: &str,
    data_type: DataType,
    old: &Value,
    new: &Value,
    in_create: bool,
    reverse_of: Option<&str>,
) -> EventDraft {
    let mut m = serde_json::Map::new();
    m.insert("type".into(), json!("attribute_change"));
    m.insert("attribute_name".into(), json!(field));
    m.insert("entity_type".into(), json!(entity.entity_type));
    m.insert("entity_id".into(), json!(entity.id));
    m.insert("field_data_type".into(), json!(data_type.as_str()));
    m.insert("old_value".into(), meta_value(st, old));
    m.insert("new_value".into(), meta_value(st, new));
    if in_create {
        m.insert("in_create".into(), json!(true));
    }
    if let Some(r) = reverse_of {
        m.insert("actual_attribute_changed".into(), json!(r));
    }
    m.insert("platform_id".into(), Json::Null);
    let field_name = st
        .schema
        .field(&entity.entity_type, field)
        .map(|f| f.display_name.clone())
        .unwrap_or_else(|| field.to_owned());
    let description = format!(
        "{} changed \"{}\" from \"{}\" to \"{}\" on {} {}",
        actor_name(actor),
        field_name,
        describe_value(old),
        describe_value(new),
        entity.entity_type,
        entity.display_name.as_deref().unwrap_or("")
    );
    draft(
        st,
        entity,
        format!("Shotgun_{}_Change", entity.entity_type),
        Some(field),
        Json::Object(m),
        description,
    )
}

/// The `attribute_change` meta of a multi_entity field: `added`/`removed` only.
#[allow(clippy::too_many_arguments)]
pub(crate) fn multi_change_draft(
    st: &State,
    actor: &Actor,
    entity: &Entity,
    field: &str,
    added: &[EntityRef],
    removed: &[EntityRef],
    in_create: bool,
    reverse_of: Option<&str>,
) -> EventDraft {
    let mut m = serde_json::Map::new();
    m.insert("type".into(), json!("attribute_change"));
    m.insert("attribute_name".into(), json!(field));
    m.insert("entity_type".into(), json!(entity.entity_type));
    m.insert("entity_id".into(), json!(entity.id));
    m.insert("field_data_type".into(), json!("multi_entity"));
    m.insert(
        "added".into(),
        Json::Array(added.iter().map(|r| meta_link(st, r, false)).collect()),
    );
    m.insert(
        "removed".into(),
        Json::Array(removed.iter().map(|r| meta_link(st, r, false)).collect()),
    );
    if in_create {
        m.insert("in_create".into(), json!(true));
    }
    if let Some(r) = reverse_of {
        m.insert("actual_attribute_changed".into(), json!(r));
    }
    let description = format!(
        "{} changed \"{}\" on {} {}: added {}, removed {}",
        actor_name(actor),
        field,
        entity.entity_type,
        entity.display_name.as_deref().unwrap_or(""),
        added.len(),
        removed.len()
    );
    draft(
        st,
        entity,
        format!("Shotgun_{}_Change", entity.entity_type),
        Some(field),
        Json::Object(m),
        description,
    )
}

pub(crate) fn new_draft(st: &State, actor: &Actor, entity: &Entity) -> EventDraft {
    let meta =
        json!({"type": "new_entity", "entity_type": entity.entity_type, "entity_id": entity.id});
    let description = format!(
        "{} created new {} {}",
        actor_name(actor),
        entity.entity_type,
        entity.display_name.as_deref().unwrap_or("")
    );
    draft(
        st,
        entity,
        format!("Shotgun_{}_New", entity.entity_type),
        None,
        meta,
        description,
    )
}

pub(crate) fn retirement_drafts(
    st: &State,
    actor: &Actor,
    entity: &Entity,
    at: DateTime,
) -> [EventDraft; 2] {
    let date = meta_datetime(at);
    let mut change = serde_json::Map::new();
    change.insert("type".into(), json!("attribute_change"));
    change.insert("attribute_name".into(), json!("retirement_date"));
    change.insert("entity_type".into(), json!(entity.entity_type));
    change.insert("entity_id".into(), json!(entity.id));
    change.insert("field_data_type".into(), json!("date_time"));
    change.insert("old_value".into(), Json::Null);
    change.insert("new_value".into(), json!(date));
    let name = entity.display_name.clone().unwrap_or_default();
    let c = draft(
        st,
        entity,
        format!("Shotgun_{}_Change", entity.entity_type),
        Some("retirement_date"),
        Json::Object(change),
        format!(
            "{} changed \"Date Retired\" from \"nil\" to \"{date}\" on {} {name}",
            actor_name(actor),
            entity.entity_type
        ),
    );
    let meta = json!({
        "type": "entity_retirement", "entity_type": entity.entity_type, "entity_id": entity.id,
        "class_name": entity.entity_type, "display_name": name, "retirement_date": date, "id": entity.id,
    });
    let r = draft(
        st,
        entity,
        format!("Shotgun_{}_Retirement", entity.entity_type),
        None,
        meta,
        format!(
            "{} retired {} {name}",
            actor_name(actor),
            entity.entity_type
        ),
    );
    [c, r]
}

pub(crate) fn revival_change_draft(
    st: &State,
    actor: &Actor,
    entity: &Entity,
    was: Option<DateTime>,
) -> EventDraft {
    let mut change = serde_json::Map::new();
    change.insert("type".into(), json!("attribute_change"));
    change.insert("attribute_name".into(), json!("retirement_date"));
    change.insert("entity_type".into(), json!(entity.entity_type));
    change.insert("entity_id".into(), json!(entity.id));
    change.insert("field_data_type".into(), json!("date_time"));
    change.insert(
        "old_value".into(),
        was.map(|t| Json::String(meta_datetime(t)))
            .unwrap_or(Json::Null),
    );
    change.insert("new_value".into(), Json::Null);
    draft(
        st,
        entity,
        format!("Shotgun_{}_Change", entity.entity_type),
        Some("retirement_date"),
        Json::Object(change),
        format!(
            "{} changed \"Date Retired\" to \"nil\" on {} {}",
            actor_name(actor),
            entity.entity_type,
            entity.display_name.as_deref().unwrap_or("")
        ),
    )
}

pub(crate) fn revival_draft(st: &State, actor: &Actor, entity: &Entity) -> EventDraft {
    let name = entity.display_name.clone().unwrap_or_default();
    let meta = json!({
        "type": "entity_revival", "entity_type": entity.entity_type, "entity_id": entity.id,
        "class_name": entity.entity_type, "display_name": name, "id": entity.id,
    });
    draft(
        st,
        entity,
        format!("Shotgun_{}_Revival", entity.entity_type),
        None,
        meta,
        format!(
            "{} revived {} {name}",
            actor_name(actor),
            entity.entity_type
        ),
    )
}

fn draft(
    st: &State,
    entity: &Entity,
    event_type: String,
    attribute: Option<&str>,
    meta: Json,
    description: String,
) -> EventDraft {
    let project = if entity.entity_type == "Project" {
        Some(EntityRef::new("Project", entity.id))
    } else {
        match entity.fields.get("project") {
            Some(Value::Entity(r)) => Some(EntityRef::new(r.entity_type.clone(), r.id)),
            _ => None,
        }
    };
    let _ = st;
    EventDraft {
        event_type,
        attribute_name: attribute.map(str::to_owned),
        meta,
        entity: Some(EntityRef::new(entity.entity_type.clone(), entity.id)),
        project,
        description,
    }
}

fn actor_name(actor: &Actor) -> String {
    let kind = if actor.user.entity_type == "ApiUser" {
        "Script"
    } else {
        "User"
    };
    format!("{kind} {}", actor.user.name.as_deref().unwrap_or("?"))
}

/// Commits one transaction's drafts: site-wide ids in order, with the knobs applied. A script with
/// event generation off commits nothing (and reserves nothing).
pub(crate) fn commit(st: &mut State, actor: &Actor, drafts: Vec<EventDraft>, now: DateTime) {
    if !actor.generate_events || drafts.is_empty() {
        return;
    }
    let knobs = st.knobs.clone();
    let mut delay = Duration::from_millis(knobs.visibility_delay_ms);
    if knobs.out_of_order_rate > 0.0
        && st
            .event_rng
            .random_bool(knobs.out_of_order_rate.clamp(0.0, 1.0))
    {
        let extra = st
            .event_rng
            .random_range(1..=knobs.out_of_order_max_delay_ms.max(1));
        delay += Duration::from_millis(extra);
    }
    let visible_at = Instant::now() + delay;
    for d in drafts {
        if knobs.gap_rate > 0.0 && st.event_rng.random_bool(knobs.gap_rate.clamp(0.0, 1.0)) {
            // A reserved id that is never committed: a permanent gap.
            st.next_event_id += 1;
        }
        let id = st.next_event_id;
        st.next_event_id += 1;
        let row = event_row(actor, id, d, now);
        if delay.is_zero() {
            st.tables
                .entry(EVENT_TYPE.to_owned())
                .or_default()
                .rows
                .insert(id, row);
        } else {
            st.pending.insert(id, Pending { visible_at, row });
        }
    }
}

/// Burns `n` event ids (a rolled-back transaction's reservations: permanent gaps).
pub(crate) fn burn(st: &mut State, actor: &Actor, n: usize) {
    if actor.generate_events {
        st.next_event_id += n as i64;
    }
}

fn event_row(actor: &Actor, id: i64, d: EventDraft, now: DateTime) -> Entity {
    let mut e = Entity::new(EVENT_TYPE, id);
    e.fields
        .insert("event_type".into(), Value::Text(d.event_type.clone()));
    if let Some(a) = d.attribute_name {
        e.fields.insert("attribute_name".into(), Value::Text(a));
    }
    let mut meta = d.meta;
    if let (Some(real), Json::Object(m)) = (&actor.sudo_actual_user, &mut meta) {
        m.insert(
            "sudo_actual_user".into(),
            json!({"type": real.entity_type, "id": real.id, "name": real.name}),
        );
    }
    e.fields.insert("meta".into(), Value::Json(meta));
    if let Some(r) = d.entity {
        e.fields.insert("entity".into(), Value::Entity(r));
    }
    if let Some(p) = d.project {
        e.fields.insert("project".into(), Value::Entity(p));
    }
    e.fields.insert(
        "user".into(),
        Value::Entity(EntityRef::new(
            actor.user.entity_type.clone(),
            actor.user.id,
        )),
    );
    e.fields.insert("created_at".into(), Value::DateTime(now));
    if let Some(s) = &actor.session_uuid {
        e.fields
            .insert("session_uuid".into(), Value::Text(s.clone()));
    }
    e.fields
        .insert("description".into(), Value::Text(d.description));
    e.display_name = Some(format!("{} {}", d.event_type, id));
    e
}
