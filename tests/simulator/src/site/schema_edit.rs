//! Schema edits at run time and their `Shotgun_DisplayColumn_*` events (protocol §5.2, §5.3; peer
//! systems §6.7): add a field (`_New`), remove a field (`_Retirement`; its values go), change a list's
//! valid values (`_Change` on `properties`). The event's `entity` is the DisplayColumn
//! `{type: "DisplayColumn", id, name: <field>}` and its `project` is null.

use serde_json::{Value as Json, json};
use shotgun_cache_core::model::{DataType, DateTime, EntityRef, FieldSchema};

use super::events::{self, EventDraft};
use super::state::State;
use super::{Actor, SiteError};

fn display_column(st: &mut State, entity_type: &str, field: &str) -> EntityRef {
    let key = (entity_type.to_owned(), field.to_owned());
    let id = match st.display_columns.get(&key) {
        Some(id) => *id,
        None => {
            let id = st.next_display_column_id;
            st.next_display_column_id += 1;
            st.display_columns.insert(key, id);
            id
        }
    };
    EntityRef {
        entity_type: "DisplayColumn".into(),
        id,
        name: Some(field.to_owned()),
    }
}

fn draft(
    dc: EntityRef,
    suffix: &str,
    attribute: Option<&str>,
    meta: Json,
    description: String,
) -> EventDraft {
    EventDraft {
        event_type: format!("Shotgun_DisplayColumn_{suffix}"),
        attribute_name: attribute.map(str::to_owned),
        meta,
        entity: Some(dc),
        project: None,
        description,
    }
}

fn wrap(v: Json, editable: bool) -> Json {
    json!({"value": v, "editable": editable})
}

/// The `schema_read` JSON of a new field.
fn field_json(entity_type: &str, data_type: DataType, display_name: &str, props: &Json) -> Json {
    let mut properties = serde_json::Map::new();
    properties.insert(
        "default_value".into(),
        wrap(
            props.get("default_value").cloned().unwrap_or(Json::Null),
            true,
        ),
    );
    properties.insert("summary_default".into(), wrap(json!("none"), true));
    match data_type {
        DataType::Entity | DataType::MultiEntity | DataType::TagList => {
            properties.insert(
                "valid_types".into(),
                wrap(
                    props
                        .get("valid_types")
                        .cloned()
                        .unwrap_or_else(|| json!([])),
                    true,
                ),
            );
        }
        DataType::List | DataType::StatusList => {
            properties.insert(
                "valid_values".into(),
                wrap(
                    props
                        .get("valid_values")
                        .cloned()
                        .unwrap_or_else(|| json!([])),
                    true,
                ),
            );
        }
        _ => {}
    }
    json!({
        "data_type": wrap(json!(data_type.as_str()), false),
        "description": wrap(json!(""), true),
        "editable": wrap(json!(true), false),
        "entity_type": wrap(json!(entity_type), false),
        "mandatory": wrap(json!(false), false),
        "name": wrap(json!(display_name), true),
        "properties": Json::Object(properties),
        "unique": wrap(json!(false), false),
        "visible": wrap(json!(true), false),
    })
}

pub(crate) fn add_field(
    st: &mut State,
    actor: &Actor,
    entity_type: &str,
    field: &str,
    data_type: DataType,
    display_name: &str,
    props: &Json,
) -> Result<(), SiteError> {
    if st.schema.entity(entity_type).is_none() {
        return Err(SiteError::UnknownEntityType(entity_type.to_owned()));
    }
    if st.schema.field(entity_type, field).is_some() {
        return Err(SiteError::BadRequest(format!(
            "Field '{entity_type}.{field}' already exists."
        )));
    }
    if data_type == DataType::Unknown
        || field.is_empty()
        || !field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(SiteError::BadRequest(format!(
            "cannot create field '{entity_type}.{field}' of that data type"
        )));
    }
    let raw = field_json(entity_type, data_type, display_name, props);
    let fs = FieldSchema::from_json(entity_type, field, &raw);
    if let Some(t) = st.schema.types.get_mut(entity_type) {
        t.fields.insert(field.to_owned(), fs);
    }
    let dc = display_column(st, entity_type, field);
    let meta = json!({
        "type": "new_entity", "entity_type": "DisplayColumn", "entity_id": dc.id,
        "name": field, "entity_type_name": entity_type, "data_type": data_type.as_str(),
        "properties": raw.get("properties").cloned().unwrap_or(Json::Null),
    });
    let d = draft(
        dc,
        "New",
        None,
        meta,
        format!("Field {entity_type}.{field} created"),
    );
    events::commit(st, actor, vec![d], DateTime::now());
    Ok(())
}

pub(crate) fn remove_field(
    st: &mut State,
    actor: &Actor,
    entity_type: &str,
    field: &str,
) -> Result<(), SiteError> {
    if st.schema.entity(entity_type).is_none() {
        return Err(SiteError::UnknownEntityType(entity_type.to_owned()));
    }
    if field == "id" || st.schema.field(entity_type, field).is_none() {
        return Err(SiteError::UnknownSchemaField {
            entity_type: entity_type.to_owned(),
            field: field.to_owned(),
        });
    }
    if let Some(t) = st.schema.types.get_mut(entity_type) {
        t.fields.remove(field);
    }
    if let Some(table) = st.tables.get_mut(entity_type) {
        for e in table.rows.values_mut() {
            e.fields.remove(field);
        }
    }
    let dc = display_column(st, entity_type, field);
    let meta = json!({"type": "entity_retirement", "entity_type": "DisplayColumn", "entity_id": dc.id, "name": field, "entity_type_name": entity_type});
    let d = draft(
        dc,
        "Retirement",
        None,
        meta,
        format!("Field {entity_type}.{field} deleted"),
    );
    events::commit(st, actor, vec![d], DateTime::now());
    Ok(())
}

pub(crate) fn set_valid_values(
    st: &mut State,
    actor: &Actor,
    entity_type: &str,
    field: &str,
    values: &[String],
) -> Result<(), SiteError> {
    let Some(fs) = st.schema.field(entity_type, field).cloned() else {
        return Err(SiteError::UnknownSchemaField {
            entity_type: entity_type.to_owned(),
            field: field.to_owned(),
        });
    };
    if !matches!(fs.data_type, DataType::List | DataType::StatusList) {
        return Err(SiteError::BadRequest(format!(
            "Field '{entity_type}.{field}' is not a list or status_list field"
        )));
    }
    let old_props = fs.raw.get("properties").cloned().unwrap_or(Json::Null);
    let mut raw = fs.raw.clone();
    if let Some(p) = raw.get_mut("properties").and_then(Json::as_object_mut) {
        p.insert("valid_values".into(), wrap(json!(values), true));
    }
    let new_props = raw.get("properties").cloned().unwrap_or(Json::Null);
    let updated = FieldSchema::from_json(entity_type, field, &raw);
    if let Some(t) = st.schema.types.get_mut(entity_type) {
        t.fields.insert(field.to_owned(), updated);
    }
    let dc = display_column(st, entity_type, field);
    let meta = json!({
        "type": "attribute_change", "attribute_name": "properties", "entity_type": "DisplayColumn", "entity_id": dc.id,
        "field_data_type": "serializable", "old_value": old_props, "new_value": new_props,
        "field_name": field, "entity_type_name": entity_type,
    });
    let d = draft(
        dc,
        "Change",
        Some("properties"),
        meta,
        format!("Valid values of {entity_type}.{field} changed"),
    );
    events::commit(st, actor, vec![d], DateTime::now());
    Ok(())
}
