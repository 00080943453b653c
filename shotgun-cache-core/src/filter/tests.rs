//! Table-driven tests of the filter semantics: parse → validate → the reference evaluator, over a
//! small fixed dataset built on the real site schema (`shared/data/shotgun-schema/schema.json`).
//!
//! One line per case. `check(type, filter, ids)` asserts the ids of the live rows that match (and
//! that `reference_count` agrees); `err(type, filter, needles)` asserts a validation error whose
//! message contains every needle. `NOW` is fixed at 2024-03-15T12:00:00Z (a Friday).

use std::sync::OnceLock;

use serde_json::{Value as Json, json};

use super::parse::{parse_any, parse_with_operator};
use super::validate::{FilterError, MAX_FILTER_DEPTH, validate, validate_path};
use super::{Filter, Operator, matches};
use crate::model::{DataType, DateTime, Entity, FieldSchema, SiteSchema, Value};
use crate::query::{
    Direction, EntityCollection, FindQuery, MemorySource, Sort, project, reference_count,
    reference_find,
};

fn now() -> DateTime {
    DateTime::parse("2024-03-15T12:00:00Z").expect("fixed timestamp parses")
}

fn schema() -> &'static SiteSchema {
    static SCHEMA: OnceLock<SiteSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/shotgun-schema/schema.json");
        let text = std::fs::read_to_string(path).expect("the shared schema is checked out beside the repository");
        let json: Json = serde_json::from_str(&text).expect("schema.json is valid JSON");
        let mut s = SiteSchema::from_json(&json, None).expect("schema.json has the schema_read shape");
        // The real schema has no jsonb, addressing, timecode or currency field: add one of each to
        // Shot so every data type of §3.1 is covered.
        for (name, dt) in [("sg_meta", "jsonb"), ("sg_addr", "addressing"), ("sg_tc", "timecode"), ("sg_budget", "currency")] {
            let raw = json!({"data_type": {"value": dt, "editable": false}, "name": {"value": name, "editable": true},
                             "properties": {"valid_types": {"value": [], "editable": true}}});
            let f = FieldSchema::from_json("Shot", name, &raw);
            s.types.get_mut("Shot").expect("Shot exists").fields.insert(name.to_owned(), f);
        }
        s
    })
}

/// Builds an entity from JSON field values typed by the schema; the display name is derived from the
/// type's display field.
fn ent(entity_type: &str, id: i64, fields: Json) -> Entity {
    let mut e = Entity::new(entity_type, id);
    let obj = fields.as_object().expect("fields are an object");
    for (k, v) in obj {
        if k == "retired" {
            e.retired = v.as_bool().unwrap_or(false);
            continue;
        }
        let f = schema()
            .field(entity_type, k)
            .unwrap_or_else(|| panic!("{entity_type}.{k} is in the schema"));
        let val = Value::from_json(f.data_type, v)
            .unwrap_or_else(|err| panic!("{entity_type}.{k}: {err}"));
        e.fields.insert(k.clone(), val);
    }
    let display = schema()
        .entity(entity_type)
        .and_then(|t| t.display_field())
        .map(str::to_owned);
    if let Some(Value::Text(s)) = display.and_then(|d| e.fields.get(&d).cloned()) {
        e.display_name = Some(s);
    }
    e
}

fn link(t: &str, id: i64, name: &str) -> Json {
    json!({"type": t, "id": id, "name": name})
}

/// The dataset. Stored link names are deliberately stale in places ("OLD NAME") to test live names.
fn data() -> &'static MemorySource {
    static DATA: OnceLock<MemorySource> = OnceLock::new();
    DATA.get_or_init(|| {
        let mut m = MemorySource::new();
        for e in [
            ent("Project", 1, json!({"name": "Demo"})),
            ent("Project", 2, json!({"name": "Other"})),
            ent("Sequence", 10, json!({"code": "SEQ01", "project": link("Project", 1, "Demo"), "sg_due_1": "2024-03-20"})),
            ent("Sequence", 11, json!({"code": "seq02", "project": link("Project", 2, "Other")})),
            ent("Sequence", 12, json!({"code": "SEQ_DEAD", "retired": true})),
            ent("Asset", 100, json!({"code": "Chair", "project": link("Project", 1, "Demo")})),
            ent("Asset", 101, json!({"code": "table", "project": link("Project", 2, "Other")})),
            ent("Asset", 102, json!({"code": "Lamp", "retired": true})),
            ent("Step", 1, json!({"code": "Anim", "entity_type": "Shot"})),
            ent("Step", 2, json!({"code": "Model", "entity_type": "Asset"})),
            ent("Task", 1000, json!({"content": "animate", "step": link("Step", 1, "Anim"), "entity": link("Shot", 1, "sh010"),
                "due_date": "2024-03-14", "duration": 60, "time_percent_of_est": 50, "color": "255,0,0", "milestone": true})),
            ent("Task", 1001, json!({"content": "model", "step": link("Step", 2, "Model"), "entity": link("Asset", 100, "Chair"),
                "due_date": "2024-03-18", "duration": 0, "time_percent_of_est": 120, "color": "pipeline_step"})),
            ent("Task", 1002, json!({"content": "Comp", "entity": link("Shot", 2, "SH020"), "due_date": "2024-02-29"})),
            ent("Shot", 1, json!({
                "code": "sh010", "description": "Hello World", "sg_cut_in": 100, "sg_status_list": "ip", "sg_shot_type": "Hero",
                "sg_sequence": link("Sequence", 10, "OLD NAME"), "project": link("Project", 1, "Demo"),
                "assets": [link("Asset", 100, "Chair"), link("Asset", 101, "table")], "tasks": [link("Task", 1000, "animate")],
                "created_at": "2024-03-15T08:00:00Z", "tag_list": ["Hero", "Night"], "image": 55,
                "sg_meta": {"a": 1, "tags": ["x", "y"]}, "sg_addr": [link("HumanUser", 7, "Ann")], "sg_tc": 1000, "sg_budget": 1.25})),
            ent("Shot", 2, json!({
                "code": "SH020", "sg_cut_in": 0, "sg_status_list": "fin", "sg_shot_type": "background",
                "sg_sequence": link("Sequence", 11, "seq02"), "project": link("Project", 2, "Other"),
                "assets": [link("Asset", 101, "table")], "tasks": [link("Task", 1002, "Comp")],
                "created_at": "2024-03-08T23:59:59Z", "tag_list": ["night"],
                "sg_meta": {"a": 2}, "sg_addr": [link("Group", 3, "Lighting")], "sg_tc": 0, "sg_budget": 2.5})),
            ent("Shot", 3, json!({"code": "sh030", "created_at": "2023-12-31T23:00:00Z"})),
            ent("Shot", 4, json!({
                "code": "Über straße", "description": "ÄRGER im Büro", "sg_cut_in": 250, "sg_status_list": "IP",
                "sg_sequence": link("Sequence", 12, "SEQ_DEAD"), "assets": [link("Asset", 102, "Lamp")],
                "created_at": "2024-02-10T00:00:00Z", "sg_budget": 2.4999999})),
            ent("Shot", 5, json!({"code": "sh050", "sg_cut_in": 100, "retired": true})),
            ent("Version", 50, json!({"code": "v001", "entity": link("Shot", 1, "sh010"), "flagged": true,
                "sg_frames_aspect_ratio": 1.777777, "sg_task": link("Task", 1000, "animate")})),
            ent("Version", 51, json!({"code": "v002", "entity": link("Asset", 100, "Chair"), "flagged": false,
                "sg_frames_aspect_ratio": 2.0})),
            ent("Version", 52, json!({"code": "v003", "entity": link("Sequence", 10, "SEQ01")})),
            ent("Version", 53, json!({"code": "v004", "entity": link("Shot", 4, "Über straße"), "sg_frames_aspect_ratio": 1.5})),
            ent("Note", 200, json!({"subject": "n1", "note_links": [link("Shot", 1, "sh010"), link("Version", 50, "v001")]})),
            ent("Note", 201, json!({"subject": "n2", "note_links": [link("Asset", 101, "table")]})),
            ent("Note", 202, json!({"subject": "n3"})),
            ent("LocalStorage", 1, json!({"code": "primary", "uuid": "0F8FAD5B-D9CB-469F-A165-70867728950E"})),
            ent("LocalStorage", 2, json!({"code": "secondary"})),
        ] {
            m.insert(e);
        }
        m
    })
}

fn parse_validate(entity_type: &str, filter: &Json) -> Result<Filter, FilterError> {
    validate(schema(), entity_type, &parse_any(filter)?)
}

/// Ids of the live `entity_type` rows matching `filter`.
fn ids_matching(entity_type: &str, filter: &Json) -> Vec<i64> {
    let f = parse_validate(entity_type, filter)
        .unwrap_or_else(|e| panic!("filter {filter} on {entity_type} is valid: {e}"));
    let src = data();
    let ids: Vec<i64> = src
        .all_of_type(entity_type)
        .into_iter()
        .filter(|e| !e.retired && matches(&f, e, src, now()))
        .map(|e| e.id)
        .collect();
    assert_eq!(
        reference_count(src, entity_type, &f, false, now()),
        ids.len() as u64,
        "reference_count for {filter}"
    );
    ids
}

#[track_caller]
fn check(entity_type: &str, filter: Json, expected: &[i64]) {
    let got = ids_matching(entity_type, &filter);
    assert_eq!(got, expected, "{entity_type} {filter}");
}

#[track_caller]
fn err(entity_type: &str, filter: Json, needles: &[&str]) {
    match parse_validate(entity_type, &filter) {
        Ok(f) => panic!("{entity_type} {filter} should be rejected, validated to {f:?}"),
        Err(e) => {
            let msg = e.to_string();
            for n in needles {
                assert!(
                    msg.contains(n),
                    "error for {filter} should mention {n:?}: {msg}"
                );
            }
        }
    }
}

#[test]
fn smoke() {
    check("Shot", json!([["code", "is", "SH010"]]), &[1]);
    check("Shot", json!([["sg_cut_in", "greater_than", 50]]), &[1, 4]);
    check(
        "Shot",
        json!([["sg_sequence.Sequence.code", "is", "seq01"]]),
        &[1],
    );
    check(
        "Shot",
        json!([["assets", "is", {"type": "Asset", "id": 101}]]),
        &[1, 2],
    );
    err(
        "Shot",
        json!([["sg_cut_in", "contains", "1"]]),
        &[
            "'contains'",
            "Shot.sg_cut_in",
            "number",
            "Valid relations: [is, is_not",
        ],
    );
}
