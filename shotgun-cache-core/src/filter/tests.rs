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
        // The real schema has no jsonb, addressing, timecode, currency or footage field: add one of each to
        // Shot so every data type of §3.1 is covered.
        for (name, dt) in [("sg_meta", "jsonb"), ("sg_addr", "addressing"), ("sg_tc", "timecode"), ("sg_budget", "currency"), ("sg_footage", "footage")] {
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
            ent("Asset", 100, json!({"code": "Chair", "project": link("Project", 1, "Demo"),
                "shots": [link("Shot", 1, "sh010"), link("Shot", 2, "SH020")]})),
            ent("Asset", 101, json!({"code": "table", "project": link("Project", 2, "Other"), "shots": [link("Shot", 5, "sh050")]})),
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
                "sg_meta": {"a": 1, "tags": ["x", "y"]}, "sg_addr": [link("HumanUser", 7, "Ann")], "sg_tc": 1000, "sg_budget": 1.25,
                "sg_footage": "12-05"})),
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
                "sg_frames_aspect_ratio": 1.777777, "sg_task": link("Task", 1000, "animate"),
                "user": link("HumanUser", 7, "Ann")})),
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

/// One semantics case: entity type, filter (any wire form), expected live ids.
type Case = (&'static str, Json, &'static [i64]);

/// The semantics table. Dataset summary (live rows):
/// - Shot 1 `sh010` cut_in 100 `ip` Hero, seq→10 (SEQ01, stored name stale), assets [100 Chair, 101 table],
///   created 2024-03-15T08:00Z, tags [Hero, Night]; Shot 2 `SH020` cut_in 0 `fin`, seq→11 (seq02),
///   assets [101], created 2024-03-08T23:59:59Z; Shot 3 `sh030`, everything else null, created 2023-12-31T23:00Z;
///   Shot 4 `Über straße` cut_in 250 `IP`, seq→12 (retired), assets [102 (retired)], created 2024-02-10.
///   Shot 5 is retired.
/// - Task 1000 due 2024-03-14 (yesterday), 1001 due 2024-03-18 (next Monday), 1002 due 2024-02-29.
/// - Version 50 → Shot 1 (flagged), 51 → Asset 100, 52 → Sequence 10, 53 → Shot 4.
#[rustfmt::skip]
fn cases() -> Vec<Case> {
    vec![
        // text: every relation case-insensitive; negations include nulls; "" is null.
        ("Shot", json!([["code", "is", "SH010"]]), &[1]),
        ("Shot", json!([["code", "is", "sh020"]]), &[2]),
        ("Shot", json!([["code", "is", "über STRASSE"]]), &[]),
        ("Shot", json!([["code", "is", "ÜBER STRAßE"]]), &[4]),
        ("Shot", json!([["code", "is_not", "sh010"]]), &[2, 3, 4]),
        ("Shot", json!([["description", "is", null]]), &[2, 3]),
        ("Shot", json!([["description", "is", ""]]), &[2, 3]),
        ("Shot", json!([["description", "is_not", null]]), &[1, 4]),
        ("Shot", json!([["description", "is_not", ""]]), &[1, 4]),
        ("Shot", json!([["description", "is_not", "hello world"]]), &[2, 3, 4]),
        ("Shot", json!([["description", "contains", "WORLD"]]), &[1]),
        ("Shot", json!([["description", "contains", "ärger"]]), &[4]),
        ("Shot", json!([["description", "contains", ""]]), &[1, 4]),
        ("Shot", json!([["description", "not_contains", "world"]]), &[2, 3, 4]),
        ("Shot", json!([["description", "starts_with", "hello"]]), &[1]),
        ("Shot", json!([["code", "starts_with", "ÜBER"]]), &[4]),
        ("Shot", json!([["description", "ends_with", "BÜRO"]]), &[4]),
        ("Shot", json!([["code", "ends_with", "0"]]), &[1, 2, 3]),
        ("Shot", json!([["code", "in", ["SH010", "sh030"]]]), &[1, 3]),
        ("Shot", json!([["code", "not_in", ["sh010"]]]), &[2, 3, 4]),
        ("Shot", json!([["description", "not_in", ["hello world"]]]), &[2, 3, 4]),
        ("Shot", json!([["description", "in", [""]]]), &[]),
        ("Shot", json!([["code", "is", null]]), &[]),
        // footage and color take the text relations.
        ("Shot", json!([["sg_footage", "is", "12-05"]]), &[1]),
        ("Shot", json!([["sg_footage", "contains", "-0"]]), &[1]),
        ("Shot", json!([["sg_footage", "is_not", "12-05"]]), &[2, 3, 4]),
        ("Shot", json!([["sg_footage", "not_contains", "-0"]]), &[2, 3, 4]),
        ("Shot", json!([["sg_footage", "starts_with", "12"]]), &[1]),
        ("Shot", json!([["sg_footage", "ends_with", "05"]]), &[1]),
        ("Shot", json!([["sg_footage", "in", ["12-05", "1-1"]]]), &[1]),
        ("Shot", json!([["sg_footage", "not_in", ["12-05"]]]), &[2, 3, 4]),
        ("Task", json!([["color", "is", "PIPELINE_STEP"]]), &[1001]),
        ("Task", json!([["color", "contains", "0,0"]]), &[1000]),
        ("Task", json!([["color", "is", null]]), &[1002]),
        ("Task", json!([["color", "not_contains", "pipe"]]), &[1000, 1002]),
        ("Task", json!([["color", "is_not", "255,0,0"]]), &[1001, 1002]),
        ("Task", json!([["color", "starts_with", "255,"]]), &[1000]),
        ("Task", json!([["color", "ends_with", "_STEP"]]), &[1001]),
        ("Task", json!([["color", "in", ["255,0,0", "0,0,0"]]]), &[1000]),
        ("Task", json!([["color", "not_in", ["255,0,0"]]]), &[1001, 1002]),
        // number: 0 is not null; comparisons exclude nulls; between inclusive and order-insensitive.
        ("Shot", json!([["sg_cut_in", "is", 100]]), &[1]),
        ("Shot", json!([["sg_cut_in", "is", "100"]]), &[1]),
        ("Shot", json!([["sg_cut_in", "is", 0]]), &[2]),
        ("Shot", json!([["sg_cut_in", "is", null]]), &[3]),
        ("Shot", json!([["sg_cut_in", "is_not", 100]]), &[2, 3, 4]),
        ("Shot", json!([["sg_cut_in", "is_not", null]]), &[1, 2, 4]),
        ("Shot", json!([["sg_cut_in", "greater_than", 0]]), &[1, 4]),
        ("Shot", json!([["sg_cut_in", "less_than", 100]]), &[2]),
        ("Shot", json!([["sg_cut_in", "between", [0, 100]]]), &[1, 2]),
        ("Shot", json!([["sg_cut_in", "between", [100, 0]]]), &[1, 2]),
        ("Shot", json!([["sg_cut_in", "between", [null, 100]]]), &[]),
        ("Shot", json!([["sg_cut_in", "in", [0, 250]]]), &[2, 4]),
        ("Shot", json!([["sg_cut_in", "not_in", [0]]]), &[1, 3, 4]),
        ("Shot", json!([["id", "is", 2]]), &[2]),
        ("Shot", json!([["id", "in", [1, 3, 5]]]), &[1, 3]),
        ("Shot", json!([["id", "greater_than", 2]]), &[3, 4]),
        ("Shot", json!([["id", "between", [2, 3]]]), &[2, 3]),
        ("Shot", json!([["id", "in", [40, 4, 39, 38, 37, 36, 35, 34, 33, 32, 31, 30, 29, 28, 27, 26, 25, 2, 2, 99]]]), &[2, 4]),
        ("Shot", json!([["id", "not_in", [40, 4, 39, 38, 37, 36, 35, 34, 33, 32, 31, 30, 29, 28, 27, 26, 25, 2, 2, 99]]]), &[1, 3]),
        ("Shot", json!([["sg_sequence.Sequence.id", "in", [10, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46]]]), &[1]),
        // timecode (int milliseconds).
        ("Shot", json!([["sg_tc", "is", 0]]), &[2]),
        ("Shot", json!([["sg_tc", "is_not", 0]]), &[1, 3, 4]),
        ("Shot", json!([["sg_tc", "greater_than", 10]]), &[1]),
        ("Shot", json!([["sg_tc", "less_than", 10]]), &[2]),
        ("Shot", json!([["sg_tc", "between", [0, 999]]]), &[2]),
        ("Shot", json!([["sg_tc", "in", [1000]]]), &[1]),
        ("Shot", json!([["sg_tc", "not_in", [1000]]]), &[2, 3, 4]),
        // currency (float): equality at 6 dp (2.4999999 == 2.5); integers accepted (lenient).
        ("Shot", json!([["sg_budget", "is", 2.5]]), &[2, 4]),
        ("Shot", json!([["sg_budget", "is", 1.25]]), &[1]),
        ("Shot", json!([["sg_budget", "is", 1]]), &[]),
        ("Shot", json!([["sg_budget", "is_not", 2.5]]), &[1, 3]),
        ("Shot", json!([["sg_budget", "greater_than", 2]]), &[2, 4]),
        ("Shot", json!([["sg_budget", "less_than", 2]]), &[1]),
        ("Shot", json!([["sg_budget", "between", [1, 2]]]), &[1]),
        ("Shot", json!([["sg_budget", "in", [1.25, "2.5"]]]), &[1, 2, 4]),
        ("Shot", json!([["sg_budget", "not_in", [1.25]]]), &[2, 3, 4]),
        // float.
        ("Version", json!([["sg_frames_aspect_ratio", "is", 2]]), &[51]),
        ("Version", json!([["sg_frames_aspect_ratio", "is", 1.7777770001]]), &[50]),
        ("Version", json!([["sg_frames_aspect_ratio", "is", null]]), &[52]),
        ("Version", json!([["sg_frames_aspect_ratio", "is_not", 2.0]]), &[50, 52, 53]),
        ("Version", json!([["sg_frames_aspect_ratio", "greater_than", 1.5]]), &[50, 51]),
        ("Version", json!([["sg_frames_aspect_ratio", "less_than", 1.6]]), &[53]),
        ("Version", json!([["sg_frames_aspect_ratio", "between", [1.5, 1.8]]]), &[50, 53]),
        ("Version", json!([["sg_frames_aspect_ratio", "in", [1.5, 2.0]]]), &[51, 53]),
        ("Version", json!([["sg_frames_aspect_ratio", "not_in", [1.5]]]), &[50, 51, 52]),
        // percent.
        ("Task", json!([["time_percent_of_est", "is", 50]]), &[1000]),
        ("Task", json!([["time_percent_of_est", "is_not", 50]]), &[1001, 1002]),
        ("Task", json!([["time_percent_of_est", "greater_than", 100]]), &[1001]),
        ("Task", json!([["time_percent_of_est", "less_than", 100]]), &[1000]),
        ("Task", json!([["time_percent_of_est", "between", [50, 120]]]), &[1000, 1001]),
        ("Task", json!([["time_percent_of_est", "in", [50]]]), &[1000]),
        ("Task", json!([["time_percent_of_est", "not_in", [50]]]), &[1001, 1002]),
        ("Task", json!([["time_percent_of_est", "is", null]]), &[1002]),
        // duration.
        ("Task", json!([["duration", "is", 0]]), &[1001]),
        ("Task", json!([["duration", "is_not", 60]]), &[1001, 1002]),
        ("Task", json!([["duration", "greater_than", 0]]), &[1000]),
        ("Task", json!([["duration", "less_than", 30]]), &[1001]),
        ("Task", json!([["duration", "between", [0, 60]]]), &[1000, 1001]),
        ("Task", json!([["duration", "in", [60, 5]]]), &[1000]),
        ("Task", json!([["duration", "not_in", [60]]]), &[1001, 1002]),
        // date (today is 2024-03-15, a Friday; weeks start on Monday 2024-03-11).
        ("Task", json!([["due_date", "is", "2024-03-14"]]), &[1000]),
        ("Task", json!([["due_date", "is_not", "2024-03-14"]]), &[1001, 1002]),
        ("Task", json!([["due_date", "greater_than", "2024-03-01"]]), &[1000, 1001]),
        ("Task", json!([["due_date", "less_than", "2024-03-14"]]), &[1002]),
        ("Task", json!([["due_date", "between", ["2024-03-18", "2024-03-14"]]]), &[1000, 1001]),
        ("Task", json!([["due_date", "between", [null, "2024-03-14"]]]), &[]),
        ("Task", json!([["due_date", "in", ["2024-02-29", "2024-03-18"]]]), &[1001, 1002]),
        ("Task", json!([["due_date", "not_in", ["2024-02-29"]]]), &[1000, 1001]),
        ("Task", json!([["due_date", "in_last", [1, "DAY"]]]), &[1000]),
        ("Task", json!([["due_date", "in_last", [24, "HOUR"]]]), &[1000]),
        ("Task", json!([["due_date", "in_last", [1, "MONTH"]]]), &[1000, 1002]),
        ("Task", json!([["due_date", "in_last", [1, "YEAR"]]]), &[1000, 1002]),
        ("Task", json!([["due_date", "not_in_last", [1, "DAY"]]]), &[1001, 1002]),
        ("Task", json!([["due_date", "in_next", [3, "DAY"]]]), &[1001]),
        ("Task", json!([["due_date", "in_next", [2, "DAY"]]]), &[]),
        ("Task", json!([["due_date", "not_in_next", [1, "WEEK"]]]), &[1000, 1002]),
        ("Task", json!([["due_date", "in_calendar_day", 0]]), &[]),
        ("Task", json!([["due_date", "in_calendar_day", -1]]), &[1000]),
        ("Task", json!([["due_date", "in_calendar_day", 3]]), &[1001]),
        ("Task", json!([["due_date", "in_calendar_week", 0]]), &[1000]),
        ("Task", json!([["due_date", "in_calendar_week", 1]]), &[1001]),
        ("Task", json!([["due_date", "in_calendar_month", 0]]), &[1000, 1001]),
        ("Task", json!([["due_date", "in_calendar_month", -1]]), &[1002]),
        ("Task", json!([["due_date", "in_calendar_year", 0]]), &[1000, 1001, 1002]),
        ("Task", json!([["due_date", "in_calendar_year", -1]]), &[]),
        ("Sequence", json!([["sg_due_1", "in_next", [1, "WEEK"]]]), &[10]),
        ("Sequence", json!([["sg_due_1", "not_in_next", [1, "WEEK"]]]), &[11]),
        ("Sequence", json!([["sg_due_1", "not_in_last", [1, "WEEK"]]]), &[10, 11]),
        ("Sequence", json!([["sg_due_1", "is", null]]), &[11]),
        // date_time: offsets normalised, zoneless = UTC, date-only = midnight UTC; buckets in UTC.
        ("Shot", json!([["created_at", "is", "2024-03-15T08:00:00Z"]]), &[1]),
        ("Shot", json!([["created_at", "is", "2024-03-15T09:00:00+01:00"]]), &[1]),
        ("Shot", json!([["created_at", "is", "2024-03-15 08:00:00"]]), &[1]),
        ("Shot", json!([["created_at", "is_not", "2024-03-15T08:00:00Z"]]), &[2, 3, 4]),
        ("Shot", json!([["created_at", "greater_than", "2024-03-01"]]), &[1, 2]),
        ("Shot", json!([["created_at", "less_than", "2024-01-01T00:00:00Z"]]), &[3]),
        ("Shot", json!([["created_at", "between", ["2024-02-10T00:00:00Z", "2024-03-08T23:59:59Z"]]]), &[2, 4]),
        ("Shot", json!([["created_at", "in", ["2024-02-10T00:00:00Z"]]]), &[4]),
        ("Shot", json!([["created_at", "not_in", ["2024-02-10T00:00:00Z"]]]), &[1, 2, 3]),
        ("Shot", json!([["created_at", "in_last", [4, "HOUR"]]]), &[1]),
        ("Shot", json!([["created_at", "in_last", [3, "HOUR"]]]), &[]),
        ("Shot", json!([["created_at", "in_last", [1, "WEEK"]]]), &[1, 2]),
        ("Shot", json!([["created_at", "in_last", [1, "MONTH"]]]), &[1, 2]),
        ("Shot", json!([["created_at", "in_last", [2, "MONTH"]]]), &[1, 2, 4]),
        ("Shot", json!([["created_at", "in_last", [1, "YEAR"]]]), &[1, 2, 3, 4]),
        ("Shot", json!([["created_at", "not_in_last", [1, "WEEK"]]]), &[3, 4]),
        ("Shot", json!([["created_at", "in_next", [1, "DAY"]]]), &[]),
        ("Shot", json!([["created_at", "not_in_next", [1, "DAY"]]]), &[1, 2, 3, 4]),
        ("Shot", json!([["created_at", "in_calendar_day", 0]]), &[1]),
        ("Shot", json!([["created_at", "in_calendar_week", 0]]), &[1]),
        ("Shot", json!([["created_at", "in_calendar_week", -1]]), &[2]),
        ("Shot", json!([["created_at", "in_calendar_month", -1]]), &[4]),
        ("Shot", json!([["created_at", "in_calendar_year", -1]]), &[3]),
        ("Shot", json!([["created_at", "in_calendar_year", 0]]), &[1, 2, 4]),
        ("Shot", json!([["created_at", "is", null]]), &[]),
        // checkbox: never null (unset reads false); "true"/"false" strings accepted.
        ("Version", json!([["flagged", "is", true]]), &[50]),
        ("Version", json!([["flagged", "is", false]]), &[51, 52, 53]),
        ("Version", json!([["flagged", "is", "false"]]), &[51, 52, 53]),
        ("Version", json!([["flagged", "is_not", true]]), &[51, 52, 53]),
        ("Version", json!([["flagged", "is_not", "false"]]), &[50]),
        // list and status_list: case-insensitive.
        ("Shot", json!([["sg_shot_type", "is", "hero"]]), &[1]),
        ("Shot", json!([["sg_shot_type", "is", "nope"]]), &[]),
        ("Shot", json!([["sg_shot_type", "is", null]]), &[3, 4]),
        ("Shot", json!([["sg_shot_type", "is_not", "hero"]]), &[2, 3, 4]),
        ("Shot", json!([["sg_shot_type", "in", ["HERO", "Background"]]]), &[1, 2]),
        ("Shot", json!([["sg_shot_type", "not_in", ["hero"]]]), &[2, 3, 4]),
        ("Shot", json!([["sg_status_list", "is", "ip"]]), &[1, 4]),
        ("Shot", json!([["sg_status_list", "is", "FIN"]]), &[2]),
        ("Shot", json!([["sg_status_list", "is_not", "ip"]]), &[2, 3]),
        ("Shot", json!([["sg_status_list", "is_not", null]]), &[1, 2, 4]),
        ("Shot", json!([["sg_status_list", "in", ["fin", "wtg"]]]), &[2]),
        ("Shot", json!([["sg_status_list", "not_in", ["ip"]]]), &[2, 3]),
        // entity_type: case-sensitive.
        ("Step", json!([["entity_type", "is", "Shot"]]), &[1]),
        ("Step", json!([["entity_type", "is", "shot"]]), &[]),
        ("Step", json!([["entity_type", "is_not", "shot"]]), &[1, 2]),
        ("Step", json!([["entity_type", "in", ["Asset", "Shot"]]]), &[1, 2]),
        ("Step", json!([["entity_type", "not_in", ["Shot"]]]), &[2]),
        // uuid: normalised; `is ""` finds empty ones.
        ("LocalStorage", json!([["uuid", "is", "0f8fad5b-d9cb-469f-a165-70867728950e"]]), &[1]),
        ("LocalStorage", json!([["uuid", "is", "{0F8FAD5BD9CB469FA16570867728950E}"]]), &[1]),
        ("LocalStorage", json!([["uuid", "is", ""]]), &[2]),
        ("LocalStorage", json!([["uuid", "is_not", ""]]), &[1]),
        ("LocalStorage", json!([["uuid", "is_not", "0f8fad5b-d9cb-469f-a165-70867728950e"]]), &[2]),
        ("LocalStorage", json!([["uuid", "in", ["0F8FAD5B-D9CB-469F-A165-70867728950E"]]]), &[1]),
        ("LocalStorage", json!([["uuid", "not_in", ["0f8fad5bd9cb469fa16570867728950e"]]]), &[2]),
        // entity: exact link match; live names; retired targets read null; type_is case-sensitive.
        ("Shot", json!([["sg_sequence", "is", {"type": "Sequence", "id": 10}]]), &[1]),
        ("Shot", json!([["sg_sequence", "is", {"type": "Sequence", "id": 10, "name": "ignored"}]]), &[1]),
        ("Shot", json!([["sg_sequence", "is", {"type": "Sequence", "id": 12}]]), &[]),
        ("Shot", json!([["sg_sequence", "is", null]]), &[3, 4]),
        ("Shot", json!([["sg_sequence", "is_not", null]]), &[1, 2]),
        ("Shot", json!([["sg_sequence", "is_not", {"type": "Sequence", "id": 10}]]), &[2, 3, 4]),
        ("Shot", json!([["sg_sequence", "in", [{"type": "Sequence", "id": 10}, {"type": "Sequence", "id": 11}]]]), &[1, 2]),
        ("Shot", json!([["sg_sequence", "not_in", [{"type": "Sequence", "id": 10}]]]), &[2, 3, 4]),
        ("Shot", json!([["sg_sequence", "type_is", "Sequence"]]), &[1, 2]),
        ("Shot", json!([["sg_sequence", "type_is", "sequence"]]), &[]),
        ("Shot", json!([["sg_sequence", "type_is_not", "Sequence"]]), &[3, 4]),
        ("Shot", json!([["sg_sequence", "name_is", "seq01"]]), &[1]),
        ("Shot", json!([["sg_sequence", "name_is", "old name"]]), &[]),
        ("Shot", json!([["sg_sequence", "name_contains", "SEQ"]]), &[1, 2]),
        ("Shot", json!([["sg_sequence", "name_not_contains", "01"]]), &[2, 3, 4]),
        ("Shot", json!([["sg_sequence", "name_starts_with", "seq0"]]), &[1, 2]),
        ("Shot", json!([["sg_sequence", "name_ends_with", "02"]]), &[2]),
        ("Version", json!([["entity", "type_is", "Shot"]]), &[50, 53]),
        ("Version", json!([["entity", "type_is_not", "Shot"]]), &[51, 52]),
        ("Version", json!([["entity", "is", {"type": "Shot", "id": 1}]]), &[50]),
        ("Version", json!([["entity", "is", {"type": "Asset", "id": 1}]]), &[]),
        ("Version", json!([["entity", "in", [{"type": "Shot", "id": 1}, {"type": "Asset", "id": 100}]]]), &[50, 51]),
        ("Version", json!([["entity", "name_is", "CHAIR"]]), &[51]),
        ("Version", json!([["entity", "name_contains", "über"]]), &[53]),
        // A link to an uncached type keeps its stored name.
        ("Version", json!([["user", "name_is", "ann"]]), &[50]),
        ("Version", json!([["user", "is", {"type": "HumanUser", "id": 7}]]), &[50]),
        // multi_entity: `is` = contains, `is None` = empty; retired elements are dropped.
        ("Shot", json!([["assets", "is", {"type": "Asset", "id": 101}]]), &[1, 2]),
        ("Shot", json!([["assets", "is", {"type": "Asset", "id": 100}]]), &[1]),
        ("Shot", json!([["assets", "is", {"type": "Asset", "id": 102}]]), &[]),
        ("Shot", json!([["assets", "is_not", {"type": "Asset", "id": 101}]]), &[3, 4]),
        ("Shot", json!([["assets", "is", null]]), &[3, 4]),
        ("Shot", json!([["assets", "is_not", null]]), &[1, 2]),
        ("Shot", json!([["assets", "in", [{"type": "Asset", "id": 100}, {"type": "Asset", "id": 102}]]]), &[1]),
        ("Shot", json!([["assets", "not_in", [{"type": "Asset", "id": 100}]]]), &[2, 3, 4]),
        ("Shot", json!([["assets", "type_is", "Asset"]]), &[1, 2]),
        ("Shot", json!([["assets", "type_is_not", "Asset"]]), &[3, 4]),
        ("Shot", json!([["assets", "name_is", "TABLE"]]), &[1, 2]),
        ("Shot", json!([["assets", "name_contains", "air"]]), &[1]),
        ("Shot", json!([["assets", "name_not_contains", "table"]]), &[3, 4]),
        ("Shot", json!([["assets", "name_starts_with", "ch"]]), &[1]),
        ("Shot", json!([["assets", "name_ends_with", "LE"]]), &[1, 2]),
        ("Shot", json!([["assets", "is", {"type": "Asset", "id": 100}], ["assets", "is", {"type": "Asset", "id": 101}]]), &[1]),
        ("Note", json!([["note_links", "type_is", "Version"]]), &[200]),
        ("Note", json!([["note_links", "type_is_not", "Shot"]]), &[201, 202]),
        ("Note", json!([["note_links", "is", {"type": "Version", "id": 50}]]), &[200]),
        ("Note", json!([["note_links", "name_is", "v001"]]), &[200]),
        // tag_list.
        ("Shot", json!([["tag_list", "is", "night"]]), &[1, 2]),
        ("Shot", json!([["tag_list", "is_not", "hero"]]), &[2, 3, 4]),
        ("Shot", json!([["tag_list", "is", null]]), &[3, 4]),
        ("Shot", json!([["tag_list", "name_contains", "IG"]]), &[1, 2]),
        ("Shot", json!([["tag_list", "name_not_contains", "her"]]), &[2, 3, 4]),
        // image: null only.
        ("Shot", json!([["image", "is", null]]), &[2, 3, 4]),
        ("Shot", json!([["image", "is_not", null]]), &[1]),
        // jsonb: equality and containment.
        ("Shot", json!([["sg_meta", "is", {"a": 2}]]), &[2]),
        ("Shot", json!([["sg_meta", "is_not", {"a": 2}]]), &[1, 3, 4]),
        ("Shot", json!([["sg_meta", "is", null]]), &[3, 4]),
        ("Shot", json!([["sg_meta", "contains", {"a": 1}]]), &[1]),
        ("Shot", json!([["sg_meta", "contains", {"tags": ["y"]}]]), &[1]),
        ("Shot", json!([["sg_meta", "not_contains", {"a": 2}]]), &[1, 3, 4]),
        // addressing: like multi_entity over its link list.
        ("Shot", json!([["sg_addr", "is", {"type": "HumanUser", "id": 7}]]), &[1]),
        ("Shot", json!([["sg_addr", "is_not", {"type": "HumanUser", "id": 7}]]), &[2, 3, 4]),
        ("Shot", json!([["sg_addr", "is", null]]), &[3, 4]),
        ("Shot", json!([["sg_addr", "contains", {"type": "Group", "id": 3}]]), &[2]),
        ("Shot", json!([["sg_addr", "not_contains", {"type": "Group", "id": 3}]]), &[1, 3, 4]),
        ("Shot", json!([["sg_addr", "in", [{"type": "HumanUser", "id": 7}, {"type": "Group", "id": 3}]]]), &[1, 2]),
        ("Shot", json!([["sg_addr", "type_is", "Group"]]), &[2]),
        ("Shot", json!([["sg_addr", "type_is_not", "Group"]]), &[1, 3, 4]),
        ("Shot", json!([["sg_addr", "name_contains", "ANN"]]), &[1]),
        ("Shot", json!([["sg_addr", "name_not_contains", "a"]]), &[2, 3, 4]),
        ("Shot", json!([["sg_addr", "name_starts_with", "light"]]), &[2]),
        ("Shot", json!([["sg_addr", "name_ends_with", "ing"]]), &[2]),
        // deep links: any number of hops, through entity and multi_entity (any linked row matches).
        ("Shot", json!([["sg_sequence.Sequence.code", "is", "SEQ01"]]), &[1]),
        ("Shot", json!([["sg_sequence.Sequence.code", "is", null]]), &[3, 4]),
        ("Shot", json!([["sg_sequence.Sequence.code", "is_not", "seq01"]]), &[2, 3, 4]),
        ("Shot", json!([["sg_sequence.Sequence.project.Project.name", "is", "demo"]]), &[1]),
        ("Shot", json!([["sg_sequence.Sequence.project.Project.id", "is", 2]]), &[2]),
        ("Shot", json!([["assets.Asset.code", "is", "table"]]), &[1, 2]),
        ("Shot", json!([["assets.Asset.code", "is", "lamp"]]), &[]),
        ("Shot", json!([["assets.Asset.code", "is_not", "chair"]]), &[2, 3, 4]),
        ("Shot", json!([["assets.Asset.code", "is", null]]), &[3, 4]),
        ("Shot", json!([["assets.Asset.project.Project.name", "is", "Other"]]), &[1, 2]),
        ("Shot", json!([["assets.Asset.project.Project.name", "not_in", ["Demo"]]]), &[2, 3, 4]),
        ("Shot", json!([["tasks.Task.step.Step.code", "is", "anim"]]), &[1]),
        ("Shot", json!([["tasks.Task.due_date", "in_last", [1, "DAY"]]]), &[1]),
        ("Shot", json!([["sg_sequence.Sequence.sg_due_1", "in_next", [1, "WEEK"]]]), &[1]),
        ("Version", json!([["entity.Shot.code", "is", "sh010"]]), &[50]),
        ("Version", json!([["entity.Shot.code", "is", null]]), &[51, 52]),
        ("Version", json!([["entity.Asset.code", "is", "chair"]]), &[51]),
        ("Version", json!([["entity.Shot.sg_sequence.Sequence.code", "is", "seq01"]]), &[50]),
        ("Version", json!([["sg_task.Task.entity.Shot.assets.Asset.code", "is", "table"]]), &[50]),
        ("Version", json!([["user.HumanUser.login", "is", null]]), &[50, 51, 52, 53]),
        ("Note", json!([["note_links.Shot.code", "starts_with", "sh"]]), &[200]),
        ("Note", json!([["note_links.Version.entity.Shot.code", "is", "sh010"]]), &[200]),
        ("Task", json!([["entity.Shot.sg_sequence.Sequence.code", "in", ["seq01", "seq02"]]]), &[1000, 1002]),
        // multi_entity → multi_entity: Shot 1 → assets [100, 101] → shots [1, 2] and [5 (retired)].
        ("Shot", json!([["assets.Asset.shots.Shot.code", "is", "sh020"]]), &[1]),
        ("Shot", json!([["assets.Asset.shots.Shot.code", "is", "sh050"]]), &[]),
        ("Shot", json!([["assets.Asset.shots", "is", {"type": "Shot", "id": 5}]]), &[]),
        // Asset 101's only shot is retired, so that branch reads null: "any linked row" includes it.
        ("Shot", json!([["assets.Asset.shots.Shot.id", "is", null]]), &[1, 2, 3, 4]),
        ("Shot", json!([["assets.Asset.shots.Shot.id", "is_not", null]]), &[]),
        ("Shot", json!([["assets.Asset.shots.Shot.id", "greater_than", 0]]), &[1]),
        ("Shot", json!([["assets.Asset.shots.Shot.sg_cut_in", "greater_than", 50]]), &[1]),
        ("Shot", json!([["assets.Asset.shots.Shot.sg_cut_in", "not_in", [100]]]), &[2, 3, 4]),
        // Retired targets never match, also under negation and names.
        ("Shot", json!([["sg_sequence", "not_in", [{"type": "Sequence", "id": 12}]]]), &[1, 2, 3, 4]),
        ("Shot", json!([["sg_sequence", "name_is", "SEQ_DEAD"]]), &[]),
        ("Shot", json!([["sg_sequence", "type_is", "Sequence"], ["sg_sequence.Sequence.code", "is_not", "seq02"]]), &[1]),
        ("Shot", json!([["assets", "name_is", "lamp"]]), &[]),
        ("Shot", json!([["assets", "type_is_not", "Asset"], ["id", "is", 4]]), &[4]),
        // Value shapes accepted: a bare scalar for `in`, whitespace-only text is null, varargs between.
        ("Shot", json!([["code", "in", "SH010"]]), &[1]),
        ("Shot", json!({"logical_operator": "and", "conditions": [{"path": "id", "relation": "in", "values": 2}]}), &[2]),
        ("Shot", json!([["description", "is", "   "]]), &[2, 3]),
        ("Shot", json!([["sg_cut_in", "between", 0, 100]]), &[1, 2]),
        ("Task", json!([["due_date", "in_last", 1, "DAY"]]), &[1000]),
        ("Shot", json!([["sg_cut_in", "is", 100.0]]), &[1]),
        // groups and every wire form.
        ("Shot", json!({"logical_operator": "or", "conditions": [["code", "is", "sh010"],
            {"logical_operator": "and", "conditions": [["sg_cut_in", "is", 0], ["sg_status_list", "is", "fin"]]}]}), &[1, 2]),
        ("Shot", json!({"logical_operator": "and", "conditions": [
            {"path": "sg_status_list", "relation": "is", "values": ["ip"]}, {"path": "id", "relation": "in", "values": [1, 2, 3]}]}), &[1]),
        ("Shot", json!([["sg_cut_in", "greater_than", -1],
            {"filter_operator": "any", "filters": [["code", "is", "sh010"], ["code", "is", "sh020"]]}]), &[1, 2]),
        ("Shot", json!({"filter_operator": "all", "filters": [["code", "starts_with", "sh"], ["id", "less_than", 3]]}), &[1, 2]),
        ("Shot", json!({"path": "code", "relation": "ends_with", "values": ["30"]}), &[3]),
        ("Shot", json!([["id", "in", 1, 3]]), &[1, 3]),
        ("Shot", json!([["id", "in", [1, 3]]]), &[1, 3]),
        ("Shot", json!([]), &[1, 2, 3, 4]),
        ("Shot", json!(null), &[1, 2, 3, 4]),
        ("Shot", json!({"logical_operator": "or", "conditions": []}), &[1, 2, 3, 4]),
        ("Shot", json!({"logical_operator": "or", "conditions": [["id", "is", 1], {"logical_operator": "or", "conditions": []}]}), &[1, 2, 3, 4]),
    ]
}

#[test]
fn semantics_table() {
    let mut failures = Vec::new();
    for (entity_type, filter, expected) in cases() {
        match std::panic::catch_unwind(|| ids_matching(entity_type, &filter)) {
            Ok(got) if got == expected => {}
            Ok(got) => failures.push(format!(
                "{entity_type} {filter}: expected {expected:?}, got {got:?}"
            )),
            Err(_) => failures.push(format!("{entity_type} {filter}: panicked")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} semantics cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every relation a data type accepts (protocol §3.1) is exercised by at least one case of the
/// table, and every other relation is rejected for that type.
#[test]
fn every_operator_by_type_pair_is_covered() {
    use DataType as D;
    let covered_types = [
        D::Text,
        D::Number,
        D::Float,
        D::Percent,
        D::Duration,
        D::Timecode,
        D::Currency,
        D::Checkbox,
        D::Date,
        D::DateTime,
        D::Entity,
        D::MultiEntity,
        D::StatusList,
        D::List,
        D::EntityType,
        D::Uuid,
        D::TagList,
        D::Image,
        D::Jsonb,
        D::Addressing,
        D::Color,
        D::Footage,
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (entity_type, filter, _) in cases() {
        let Ok(f) = parse_validate(entity_type, &filter) else {
            continue;
        };
        collect_pairs(&f, &mut seen);
    }
    let mut missing = Vec::new();
    for t in covered_types {
        for op in super::valid_relations(t) {
            if !seen.contains(&(t, op.as_str())) {
                missing.push(format!("{} {}", t.as_str(), op.as_str()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "no semantics case for: {}",
        missing.join(", ")
    );
}

fn collect_pairs(f: &Filter, out: &mut std::collections::BTreeSet<(DataType, &'static str)>) {
    match f {
        Filter::Condition(c) => {
            out.insert((c.path.leaf_type, c.operator.as_str()));
        }
        Filter::Group { children, .. } => children.iter().for_each(|c| collect_pairs(c, out)),
    }
}

/// A field of every filterable type used above; every relation outside its type's list is rejected
/// with a message naming the relation, the field, the type and the valid relations.
#[test]
fn invalid_operator_for_type_is_rejected_with_valid_relations() {
    let fields = [
        ("Shot", "code"),
        ("Shot", "sg_cut_in"),
        ("Version", "sg_frames_aspect_ratio"),
        ("Task", "time_percent_of_est"),
        ("Task", "duration"),
        ("Shot", "sg_tc"),
        ("Shot", "sg_budget"),
        ("Version", "flagged"),
        ("Task", "due_date"),
        ("Shot", "created_at"),
        ("Shot", "sg_sequence"),
        ("Shot", "assets"),
        ("Shot", "sg_status_list"),
        ("Shot", "sg_shot_type"),
        ("Step", "entity_type"),
        ("LocalStorage", "uuid"),
        ("Shot", "tag_list"),
        ("Shot", "image"),
        ("Shot", "sg_meta"),
        ("Shot", "sg_addr"),
        ("Task", "color"),
    ];
    for (t, f) in fields {
        let dt = schema().field(t, f).expect("field exists").data_type;
        let valid = super::valid_relations(dt);
        let valid_list = valid
            .iter()
            .map(|o| o.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        for op in Operator::ALL.iter().filter(|o| !valid.contains(o)) {
            let filter = json!([[f, op.as_str(), 1]]);
            let e = parse_validate(t, &filter).expect_err("invalid operator must be rejected");
            let msg = e.to_string();
            let want = format!(
                "Invalid operator '{}' for field {t}.{f} ({}). Valid relations: [{valid_list}]",
                op.as_str(),
                dt.as_str()
            );
            assert_eq!(msg, want, "{t}.{f} {}", op.as_str());
        }
    }
}

#[test]
#[rustfmt::skip]
fn validation_errors_name_the_problem() {
    // Unknown entity type.
    let e = validate(schema(), "Shoot", &parse_any(&json!([])).expect("empty filter parses")).expect_err("unknown type");
    assert_eq!(e.to_string(), "API read() entity type 'Shoot' doesn't exist.");
    assert!(matches!(e, FilterError::UnknownType { .. }));
    // Unknown fields, at the root and inside deep links.
    err("Shot", json!([["sg_foo", "is", 1]]), &["API read() Shot.sg_foo doesn't exist."]);
    err("Shot", json!([["sg_sequence.Sequence.nope", "is", 1]]), &["Sequence.nope doesn't exist", "sg_sequence.Sequence.nope"]);
    err("Shot", json!([["sg_sequence.Sequenz.code", "is", 1]]), &["entity type 'Sequenz' doesn't exist"]);
    err("Task", json!([["code", "is", "x"]]), &["Task.code doesn't exist"]);
    err("Shot", json!([["code.Sequence.code", "is", "x"]]), &["Shot.code is a text field", "code.Sequence.code"]);
    err("Shot", json!([["sg_sequence.Asset.code", "is", "x"]]), &["Shot.sg_sequence cannot link to Asset", "[Sequence]"]);
    err("Shot", json!([["sg_sequence.Sequence", "is", 1]]), &["'sg_sequence.Sequence'", "must end with a field name"]);
    err("Shot", json!([["sg_sequence..code", "is", 1]]), &["'sg_sequence..code'", "empty path segment"]);
    // Operators.
    err("Shot", json!([["sg_cut_in", "contains", 1]]),
        &["Invalid operator 'contains' for field Shot.sg_cut_in (number). Valid relations: [is, is_not, greater_than, less_than, between, in, not_in]"]);
    err("Shot", json!([["sg_cut_in", "not_between", [1, 2]]]), &["'not_between'", "Shot.sg_cut_in"]);
    err("Shot", json!([["code", "frobnicate", 1]]), &["'frobnicate'", "Shot.code (text)", "Valid relations: [is, is_not, contains"]);
    err("Shot", json!([["sg_sequence.Sequence.code", "greater_than", "a"]]), &["'greater_than'", "Sequence.code (text)"]);
    // Unfilterable types.
    err("Version", json!([["sg_uploaded_movie", "is", null]]), &["Version.sg_uploaded_movie (url) data type cannot be used in a filter."]);
    err("Task", json!([["splits", "is", null]]), &["Task.splits (serializable) data type cannot be used in a filter."]);
    err("HumanUser", json!([["password_proxy", "is", "x"]]), &["HumanUser.password_proxy (password)"]);
    err("Shot", json!([["step_0", "is", null]]), &["Shot.step_0 (pivot_column) is not supported"]);
    // Arity.
    err("Shot", json!([["code", "is", ["a", "b"]]]), &["'is' 'relation' expects a 1-element array", "Shot.code", "got 2"]);
    err("Shot", json!([["assets", "is", [{"type": "Asset", "id": 1}, {"type": "Asset", "id": 2}]]]), &["'is' 'relation' expects a 1-element array", "Shot.assets"]);
    err("Shot", json!([["code", "is_not"]]), &["'is_not' 'relation' expects a 1-element array", "got 0"]);
    err("Shot", json!([["sg_cut_in", "between", [1]]]), &["'between'", "2-element", "Shot.sg_cut_in"]);
    err("Shot", json!([["created_at", "in_last", [1]]]), &["'in_last'", "2-element"]);
    // in [].
    err("Shot", json!([["id", "in", []]]), &["'in' 'relation' on field Shot.id needs at least one value"]);
    err("Shot", json!({"logical_operator": "and", "conditions": [{"path": "code", "relation": "not_in", "values": []}]}), &["'not_in []'", "Shot.code"]);
    // Value shapes.
    err("Shot", json!([["sg_cut_in", "is", "abc"]]), &["Invalid value \"abc\" for field Shot.sg_cut_in with relation 'is'", "integer"]);
    err("Shot", json!([["sg_cut_in", "is", 1.5]]), &["1.5", "Shot.sg_cut_in", "reject floats"]);
    err("Shot", json!([["sg_cut_in", "less_than", null]]), &["null", "Shot.sg_cut_in", "'less_than'"]);
    err("Shot", json!([["code", "is", 5]]), &["5", "Shot.code", "a string"]);
    err("Shot", json!([["code", "in", [null]]]), &["Shot.code", "'in [None]'"]);
    err("Shot", json!([["sg_cut_in", "not_in", [1, null]]]), &["Shot.sg_cut_in", "'not_in [None]'"]);
    err("Shot", json!([["sg_sequence", "in", [null]]]), &["Shot.sg_sequence", "'in [None]'"]);
    err("Shot", json!([["code", "contains", null]]), &["Shot.code", "'contains'", "null is not allowed"]);
    err("Shot", json!([["sg_sequence", "is", 10]]), &["Invalid value 10 for field Shot.sg_sequence", "entity link"]);
    err("Shot", json!([["sg_sequence", "in", [{"id": 10}]]]), &["{\"id\":10}", "Shot.sg_sequence", "'in'"]);
    err("Shot", json!([["sg_sequence", "in", [10, 11]]]), &["Invalid value 10", "Shot.sg_sequence"]);
    err("Shot", json!([["sg_sequence", "name_is", null]]), &["Shot.sg_sequence", "'name_is'", "null is not allowed"]);
    err("Shot", json!([["sg_sequence", "type_is", 5]]), &["Shot.sg_sequence", "'type_is'", "entity type name"]);
    err("Version", json!([["flagged", "is", null]]), &["Version.flagged", "never null"]);
    err("Version", json!([["flagged", "is", "yes"]]), &["\"yes\"", "Version.flagged", "true or false"]);
    err("Shot", json!([["image", "is", 55]]), &["55", "Shot.image", "only be compared with null"]);
    err("LocalStorage", json!([["uuid", "is", "not-a-uuid"]]), &["\"not-a-uuid\"", "LocalStorage.uuid", "a uuid"]);
    err("LocalStorage", json!([["uuid", "is", null]]), &["LocalStorage.uuid", "use is \"\""]);
    err("Shot", json!([["created_at", "in_last", [1, "day"]]]), &["\"day\"", "Shot.created_at", "uppercase"]);
    err("Shot", json!([["created_at", "in_last", [0, "DAY"]]]), &["Invalid value 0", "positive integer"]);
    err("Shot", json!([["created_at", "in_next", ["2", "DAY"]]]), &["\"2\"", "positive integer"]);
    err("Shot", json!([["created_at", "in_calendar_day", "x"]]), &["\"x\"", "integer offset"]);
    err("Shot", json!([["sg_budget", "is", "lots"]]), &["\"lots\"", "Shot.sg_budget", "number"]);
    // Dates.
    err("Task", json!([["due_date", "is", "2024/03/14"]]), &["Invalid date \"2024/03/14\" for field Task.due_date (date)", "YYYY-MM-DD"]);
    err("Task", json!([["due_date", "is", "2024-03-14T00:00:00Z"]]), &["\"2024-03-14T00:00:00Z\"", "Task.due_date"]);
    err("Task", json!([["due_date", "between", ["2024-03-01", "soon"]]]), &["\"soon\"", "Task.due_date"]);
    err("Shot", json!([["created_at", "greater_than", "yesterday"]]), &["Invalid date \"yesterday\" for field Shot.created_at (date_time)"]);
    err("Shot", json!([["created_at", "is", 1700000000]]), &["1700000000", "Shot.created_at"]);
    // Malformed wire shapes.
    err("Shot", json!(42), &["malformed filter", "42"]);
    err("Shot", json!([["code"]]), &["malformed filter", "[\"code\"]"]);
    err("Shot", json!([[5, "is", 1]]), &["malformed filter"]);
    err("Shot", json!({"logical_operator": "xor", "conditions": []}), &["'xor'"]);
    err("Shot", json!({"logical_operator": "and", "conditions": [{"path": "code", "values": ["x"]}]}), &["relation", "'code'"]);
    err("Shot", json!({"logical_operator": "and", "conditions": [{"path": "code", "relation": "is"}]}), &["\"values\"", "'code'"]);
    err("Shot", json!({"logical_operator": "and", "conditions": "code"}), &["\"conditions\" must be a list"]);
    err("Shot", json!({"foo": 1}), &["malformed filter", "{\"foo\":1}"]);
}

/// Builds `depth` groups nested inside each other around one condition.
fn nested(depth: usize, form: &str) -> Json {
    let mut f = json!(["id", "is", 1]);
    for _ in 0..depth {
        f = match form {
            "rest" => json!({"logical_operator": "and", "conditions": [f]}),
            _ => json!({"filter_operator": "all", "filters": [f]}),
        };
    }
    f
}

#[test]
fn nesting_limit() {
    // A group of MAX_FILTER_DEPTH levels is fine; one more is rejected, in every wire form and by
    // `validate` itself for trees built in code.
    check("Shot", nested(MAX_FILTER_DEPTH, "rest"), &[1]);
    check(
        "Shot",
        json!([nested(MAX_FILTER_DEPTH - 1, "python")]),
        &[1],
    );
    err(
        "Shot",
        nested(MAX_FILTER_DEPTH + 1, "rest"),
        &["deeper than 64 groups"],
    );
    err(
        "Shot",
        json!([nested(MAX_FILTER_DEPTH, "python")]),
        &["deeper than 64 groups"],
    );
    let mut raw = super::RawFilter::Condition(super::RawCondition {
        path: "id".into(),
        relation: "is".into(),
        values: vec![json!(1)],
    });
    for _ in 0..=MAX_FILTER_DEPTH {
        raw = super::RawFilter::Group {
            op: super::LogicalOp::And,
            children: vec![raw],
        };
    }
    assert_eq!(
        validate(schema(), "Shot", &raw),
        Err(FilterError::TooDeep {
            limit: MAX_FILTER_DEPTH
        })
    );
}

#[test]
fn wire_forms_parse_to_the_same_tree() {
    let a = parse_any(&json!([["id", "in", 1, 2], ["code", "is", null]])).expect("python form");
    let b =
        parse_any(&json!([["id", "in", [1, 2]], ["code", "is", null]])).expect("REST array form");
    let c = parse_any(&json!({"logical_operator": "and", "conditions": [["id", "in", [1, 2]], ["code", "is", null]]})).expect("REST hash");
    let d = parse_any(&json!({"logical_operator": "and", "conditions": [
        {"path": "id", "relation": "in", "values": [1, 2]}, {"path": "code", "relation": "is", "values": [null]}]}))
    .expect("api3 wire");
    let e = parse_any(
        &json!({"filter_operator": "all", "filters": [["id", "in", [1, 2]], ["code", "is", null]]}),
    )
    .expect("python group");
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(a, d);
    assert_eq!(a, e);
    let any =
        parse_with_operator(&json!([["id", "is", 1], ["id", "is", 3]]), Some("any")).expect("any");
    let f = validate(schema(), "Shot", &any).expect("valid");
    let ids: Vec<i64> = data()
        .iter_type("Shot")
        .filter(|e| !e.retired && matches(&f, e, data(), now()))
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, [1, 3]);
    assert!(parse_with_operator(&json!([]), Some("xor")).is_err());
    assert!(
        parse_with_operator(
            &json!({"logical_operator": "and", "conditions": []}),
            Some("any")
        )
        .is_err()
    );
}

#[test]
fn validate_path_resolves_hops() {
    let p = validate_path(schema(), "Version", "entity.Shot.sg_sequence.Sequence.code")
        .expect("valid deep path");
    assert_eq!(p.hops.len(), 2);
    assert_eq!(
        (
            p.hops[0].field.as_str(),
            p.hops[0].target_type.as_str(),
            p.hops[0].multi
        ),
        ("entity", "Shot", false)
    );
    assert_eq!(
        (p.leaf.as_str(), p.leaf_type, p.leaf_entity_type.as_str()),
        ("code", DataType::Text, "Sequence")
    );
    let p = validate_path(schema(), "Shot", "assets.Asset.id").expect("multi hop to id");
    assert!(p.hops[0].multi);
    assert_eq!(p.leaf_type, DataType::Number);
    assert_eq!(
        validate_path(schema(), "Shot", "id").expect("id").leaf_type,
        DataType::Number
    );
    assert!(matches!(
        validate_path(schema(), "Nope", "id"),
        Err(FilterError::UnknownType { .. })
    ));
    assert!(matches!(
        validate_path(schema(), "Shot", "sg_sequence.Asset.code"),
        Err(FilterError::InvalidLinkType { .. })
    ));
}

#[test]
fn return_and_sort_fields_follow_shotgun() {
    use super::{validate_return_field, validate_sort_field};
    let s = schema();
    // Return fields: a type outside valid_types or a hop through a url field is absent, not an error.
    assert!(
        validate_return_field(s, "Shot", "sg_sequence.Sequence.code")
            .expect("valid")
            .is_some()
    );
    assert!(
        validate_return_field(s, "Shot", "assets.Asset.code")
            .expect("valid")
            .is_some()
    );
    assert_eq!(
        validate_return_field(s, "Shot", "sg_sequence.Asset.code"),
        Ok(None)
    );
    assert_eq!(
        validate_return_field(s, "Version", "sg_uploaded_movie.Attachment.url"),
        Ok(None)
    );
    let e = validate_return_field(s, "Shot", "sg_nope").expect_err("unknown field");
    assert!(e.to_string().contains("Shot.sg_nope"), "{e}");
    assert!(validate_return_field(s, "Shot", "code.Sequence.code").is_err());
    // Sort fields: unknown, url and summary fields are ignored; uuid and pivot_column are errors.
    assert!(
        validate_sort_field(s, "Shot", "sg_sequence.Sequence.code")
            .expect("valid")
            .is_some()
    );
    assert_eq!(validate_sort_field(s, "Shot", "sg_nope"), Ok(None));
    assert_eq!(
        validate_sort_field(s, "Version", "sg_uploaded_movie"),
        Ok(None)
    );
    let e = validate_sort_field(s, "Shot", "step_0").expect_err("pivot_column");
    assert_eq!(
        e.to_string(),
        "API read() Shot.step_0 (pivot_column) cannot be used to sort."
    );
    let e = validate_sort_field(s, "LocalStorage", "uuid").expect_err("uuid");
    assert!(e.to_string().contains("LocalStorage.uuid (uuid)"), "{e}");
    assert!(matches!(
        validate_sort_field(s, "Shoot", "code"),
        Err(FilterError::UnknownType { .. })
    ));
}

#[test]
fn operands_are_in_normal_form() {
    let cond = |t: &str, f: Json| match parse_validate(t, &f).expect("valid") {
        Filter::Group { children, .. } => match children.into_iter().next() {
            Some(Filter::Condition(c)) => c.operand,
            other => panic!("one condition expected, got {other:?}"),
        },
        other => panic!("a group expected, got {other:?}"),
    };
    use super::Operand::{Many, One, Text};
    let ints = |v: &[i64]| Many(v.iter().map(|i| Value::Int(*i)).collect());
    assert_eq!(
        cond("Shot", json!([["id", "in", [3, 1, 2, 3]]])),
        ints(&[1, 2, 3])
    );
    assert_eq!(
        cond("Shot", json!([["code", "is", "AbC"]])),
        One(Value::Text("abc".into()))
    );
    assert_eq!(cond("Shot", json!([["code", "is", ""]])), One(Value::Null));
    assert_eq!(
        cond("Shot", json!([["code", "in", ["A", ""]]])),
        Many(vec![Value::Text("a".into()), Value::Text("".into())])
    );
    assert_eq!(
        cond("Step", json!([["entity_type", "is", "Shot"]])),
        One(Value::Text("Shot".into()))
    );
    assert_eq!(
        cond("Shot", json!([["sg_sequence", "name_is", "SEQ"]])),
        Text("seq".into())
    );
    assert_eq!(
        cond("Shot", json!([["sg_sequence", "type_is", "Sequence"]])),
        Text("Sequence".into())
    );
    assert_eq!(
        cond(
            "LocalStorage",
            json!([["uuid", "is", "{0F8FAD5BD9CB469FA16570867728950E}"]])
        ),
        One(Value::Text("0f8fad5b-d9cb-469f-a165-70867728950e".into()))
    );
    assert_eq!(
        cond("Shot", json!([["sg_budget", "is", 2]])),
        One(Value::Float(2.0))
    );
}

// ---- find: sorting, paging, retired rows, projection ----------------------------------------------

fn path(t: &str, p: &str) -> super::FieldPath {
    validate_path(schema(), t, p).unwrap_or_else(|e| panic!("{t}.{p}: {e}"))
}

fn find(
    t: &str,
    filter: Json,
    sorts: &[(&str, Direction)],
    offset: u64,
    limit: Option<u64>,
    retired_only: bool,
) -> Vec<i64> {
    let q = FindQuery {
        entity_type: t.into(),
        filter: parse_validate(t, &filter).expect("valid filter"),
        fields: vec![],
        sorts: sorts
            .iter()
            .map(|(p, d)| Sort {
                path: path(t, p),
                direction: *d,
            })
            .collect(),
        offset,
        limit,
        retired_only,
    };
    reference_find(data(), &q, now())
        .into_iter()
        .map(|r| r.id)
        .collect()
}

#[test]
fn query_sorting_and_paging() {
    use Direction::{Asc, Desc};
    let all = json!([]);
    // Default order is id ascending.
    assert_eq!(find("Shot", all.clone(), &[], 0, None, false), [1, 2, 3, 4]);
    // Nulls first on asc, last on desc.
    assert_eq!(
        find("Shot", all.clone(), &[("sg_cut_in", Asc)], 0, None, false),
        [3, 2, 1, 4]
    );
    assert_eq!(
        find("Shot", all.clone(), &[("sg_cut_in", Desc)], 0, None, false),
        [4, 1, 2, 3]
    );
    // Case-insensitive text; "ip" and "IP" tie and fall back to id ascending in both directions.
    assert_eq!(
        find("Shot", all.clone(), &[("code", Desc)], 0, None, false),
        [4, 3, 2, 1]
    );
    assert_eq!(
        find(
            "Shot",
            all.clone(),
            &[("sg_status_list", Asc)],
            0,
            None,
            false
        ),
        [3, 2, 1, 4]
    );
    assert_eq!(
        find(
            "Shot",
            all.clone(),
            &[("sg_status_list", Desc)],
            0,
            None,
            false
        ),
        [1, 4, 2, 3]
    );
    // Multi-key.
    assert_eq!(
        find(
            "Shot",
            all.clone(),
            &[("sg_status_list", Asc), ("code", Desc)],
            0,
            None,
            false
        ),
        [3, 2, 4, 1]
    );
    // Entity by live name (Shot 1's stored name "OLD NAME" would sort after "seq02"); a retired target reads null.
    assert_eq!(
        find("Shot", all.clone(), &[("sg_sequence", Asc)], 0, None, false),
        [3, 4, 1, 2]
    );
    // Entity by name then type then id: Version.entity names chair, SEQ01, sh010, Über straße.
    assert_eq!(
        find("Version", all.clone(), &[("entity", Asc)], 0, None, false),
        [51, 52, 50, 53]
    );
    // Deep-link sorts through single links; a multi_entity hop sorts as null.
    assert_eq!(
        find(
            "Shot",
            all.clone(),
            &[("sg_sequence.Sequence.project.Project.name", Asc)],
            0,
            None,
            false
        ),
        [3, 4, 1, 2]
    );
    assert_eq!(
        find(
            "Shot",
            all.clone(),
            &[("sg_sequence.Sequence.project.Project.name", Desc)],
            0,
            None,
            false
        ),
        [2, 1, 3, 4]
    );
    assert_eq!(
        find(
            "Shot",
            all.clone(),
            &[("assets.Asset.code", Desc)],
            0,
            None,
            false
        ),
        [1, 2, 3, 4]
    );
    // Dates and floats.
    assert_eq!(
        find("Shot", all.clone(), &[("created_at", Asc)], 0, None, false),
        [3, 4, 2, 1]
    );
    assert_eq!(
        find(
            "Version",
            all.clone(),
            &[("sg_frames_aspect_ratio", Desc)],
            0,
            None,
            false
        ),
        [51, 50, 53, 52]
    );
    // An unset checkbox sorts as false (never null).
    assert_eq!(
        find("Version", all.clone(), &[("flagged", Asc)], 0, None, false),
        [51, 52, 53, 50]
    );
    assert_eq!(
        find("Version", all.clone(), &[("flagged", Desc)], 0, None, false),
        [50, 51, 52, 53]
    );
    // Paging after sorting.
    assert_eq!(
        find("Shot", all.clone(), &[("code", Asc)], 1, Some(2), false),
        [2, 3]
    );
    assert_eq!(
        find("Shot", all.clone(), &[("code", Asc)], 0, Some(0), false),
        Vec::<i64>::new()
    );
    assert_eq!(
        find("Shot", all.clone(), &[("code", Asc)], 10, None, false),
        Vec::<i64>::new()
    );
    assert_eq!(
        find("Shot", all.clone(), &[("code", Desc)], 3, Some(5), false),
        [1]
    );
    // Filter + sort.
    assert_eq!(
        find(
            "Shot",
            json!([["sg_cut_in", "is_not", null]]),
            &[("sg_cut_in", Desc)],
            0,
            Some(2),
            false
        ),
        [4, 1]
    );
    // retired_only returns tombstones only, still filtered.
    assert_eq!(find("Shot", all.clone(), &[], 0, None, true), [5]);
    assert_eq!(
        find(
            "Shot",
            json!([["sg_cut_in", "is", 100]]),
            &[],
            0,
            None,
            true
        ),
        [5]
    );
    assert_eq!(
        find("Shot", json!([["sg_cut_in", "is", 0]]), &[], 0, None, true),
        Vec::<i64>::new()
    );
    let f = parse_validate("Shot", &json!([["sg_cut_in", "is", 100]])).expect("valid");
    assert_eq!(reference_count(data(), "Shot", &f, true, now()), 1);
    assert_eq!(reference_count(data(), "Shot", &f, false, now()), 1);
}

#[test]
fn query_projection_applies_link_rule() {
    let fields: Vec<_> = [
        "code",
        "id",
        "sg_sequence",
        "assets",
        "sg_sequence.Sequence.code",
        "sg_sequence.Sequence.project.Project.name",
        "assets.Asset.code",
    ]
    .iter()
    .map(|p| path("Shot", p))
    .collect();
    let src = data();
    let shot = |id| src.get("Shot", id).expect("shot exists");
    let r1 = project(src, shot(1), &fields);
    assert_eq!((r1.entity_type.as_str(), r1.id), ("Shot", 1));
    assert_eq!(r1.fields["code"], Value::Text("sh010".into()));
    assert_eq!(r1.fields["id"], Value::Int(1));
    assert_eq!(
        r1.fields["sg_sequence"].to_json(),
        json!({"type": "Sequence", "id": 10, "name": "SEQ01"}),
        "live name, not the stale stored one"
    );
    assert_eq!(
        r1.fields["assets"].to_json(),
        json!([{"type": "Asset", "id": 100, "name": "Chair"}, {"type": "Asset", "id": 101, "name": "table"}])
    );
    assert_eq!(
        r1.fields["sg_sequence.Sequence.code"],
        Value::Text("SEQ01".into())
    );
    assert_eq!(
        r1.fields["sg_sequence.Sequence.project.Project.name"],
        Value::Text("Demo".into())
    );
    assert!(
        !r1.fields.contains_key("assets.Asset.code"),
        "deep reads through multi_entity are absent"
    );
    // Shot 4 links a retired Sequence and a retired Asset: the link reads null, the element is dropped.
    let r4 = project(src, shot(4), &fields);
    assert_eq!(r4.fields["sg_sequence"], Value::Null);
    assert_eq!(r4.fields["assets"], Value::MultiEntity(vec![]));
    assert_eq!(r4.fields["sg_sequence.Sequence.code"], Value::Null);
    // Unset checkbox and multi_entity fields read false and [] (never null).
    let flags = [path("Version", "flagged"), path("Version", "playlists")];
    let v52 = project(src, src.get("Version", 52).expect("v52"), &flags);
    assert_eq!(v52.fields["flagged"], Value::Bool(false));
    assert_eq!(v52.fields["playlists"], Value::MultiEntity(vec![]));
    // Shot 3 has no links at all.
    let r3 = project(src, shot(3), &fields);
    assert_eq!(
        r3.fields["sg_sequence.Sequence.project.Project.name"],
        Value::Null
    );
    // Through a link of another type the deep field reads null; to an uncached type it reads null and
    // the link keeps its stored name.
    let vfields: Vec<_> = ["entity", "entity.Shot.code", "user", "user.HumanUser.login"]
        .iter()
        .map(|p| path("Version", p))
        .collect();
    let v50 = project(src, src.get("Version", 50).expect("v50"), &vfields);
    assert_eq!(v50.fields["entity.Shot.code"], Value::Text("sh010".into()));
    assert_eq!(
        v50.fields["user"].to_json(),
        json!({"type": "HumanUser", "id": 7, "name": "Ann"})
    );
    assert_eq!(v50.fields["user.HumanUser.login"], Value::Null);
    let v51 = project(src, src.get("Version", 51).expect("v51"), &vfields);
    assert_eq!(v51.fields["entity.Shot.code"], Value::Null);
    assert_eq!(
        v51.fields["entity"].to_json(),
        json!({"type": "Asset", "id": 100, "name": "Chair"})
    );
    // reference_find projects the same way.
    let q = FindQuery {
        entity_type: "Shot".into(),
        filter: Filter::all(),
        fields: fields.clone(),
        sorts: vec![],
        offset: 0,
        limit: Some(1),
        retired_only: false,
    };
    assert_eq!(reference_find(src, &q, now()), vec![r1]);
}

/// Renames and retirements take effect at read time, with no change to the linking rows.
#[test]
fn link_names_are_live_and_retired_targets_drop() {
    let mut src = data().clone();
    let check_in = |src: &MemorySource, filter: Json, expected: &[i64]| {
        let f = parse_validate("Shot", &filter).expect("valid");
        let ids: Vec<i64> = src
            .iter_type("Shot")
            .filter(|e| !e.retired && matches(&f, e, src, now()))
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, expected, "{filter}");
    };
    check_in(
        &src,
        json!([["assets", "is", {"type": "Asset", "id": 101}]]),
        &[1, 2],
    );
    src.get_mut("Asset", 101).expect("asset").retired = true;
    check_in(
        &src,
        json!([["assets", "is", {"type": "Asset", "id": 101}]]),
        &[],
    );
    check_in(&src, json!([["assets", "is", null]]), &[2, 3, 4]);
    check_in(&src, json!([["assets.Asset.code", "is", "table"]]), &[]);
    src.get_mut("Asset", 101).expect("asset").retired = false;
    check_in(
        &src,
        json!([["assets", "is", {"type": "Asset", "id": 101}]]),
        &[1, 2],
    );
    // Rename Sequence 10: name filters and deep filters follow at once.
    let seq = src.get_mut("Sequence", 10).expect("seq");
    seq.display_name = Some("Renamed".into());
    seq.fields
        .insert("code".into(), Value::Text("Renamed".into()));
    check_in(&src, json!([["sg_sequence", "name_is", "renamed"]]), &[1]);
    check_in(
        &src,
        json!([["sg_sequence.Sequence.code", "is", "RENAMED"]]),
        &[1],
    );
    check_in(&src, json!([["sg_sequence", "name_is", "seq01"]]), &[]);
    // Un-caching a type: its links keep their stored names and are never dropped.
    let mut uncached = MemorySource::new();
    for e in src.iter().filter(|e| e.entity_type != "Sequence") {
        uncached.insert(e.clone());
    }
    check_in(
        &uncached,
        json!([["sg_sequence", "name_is", "old name"]]),
        &[1],
    );
    check_in(
        &uncached,
        json!([["sg_sequence", "is", {"type": "Sequence", "id": 12}]]),
        &[4],
    );
    check_in(
        &uncached,
        json!([["sg_sequence.Sequence.code", "is", null]]),
        &[1, 2, 3, 4],
    );
}

// ---- helpers of the evaluator ---------------------------------------------------------------------

#[test]
fn time_arithmetic() {
    use super::TimeUnit;
    use super::eval::{calendar_bucket, shift};
    let t = |s: &str| DateTime::parse(s).expect("timestamp").0;
    let show = |secs: i64| DateTime(secs).to_string();
    // Calendar months clamp the day; years handle 29 February.
    assert_eq!(
        show(shift(t("2024-01-31T10:00:00Z"), 1, TimeUnit::Month)),
        "2024-02-29T10:00:00Z"
    );
    assert_eq!(
        show(shift(t("2024-03-31T10:00:00Z"), -1, TimeUnit::Month)),
        "2024-02-29T10:00:00Z"
    );
    assert_eq!(
        show(shift(t("2024-02-29T00:00:00Z"), 1, TimeUnit::Year)),
        "2025-02-28T00:00:00Z"
    );
    assert_eq!(
        show(shift(t("2024-12-15T00:00:00Z"), 1, TimeUnit::Month)),
        "2025-01-15T00:00:00Z"
    );
    assert_eq!(
        show(shift(t("2024-03-15T12:00:00Z"), -2, TimeUnit::Week)),
        "2024-03-01T12:00:00Z"
    );
    assert_eq!(shift(0, i64::MAX, TimeUnit::Month), i64::MAX);
    assert_eq!(shift(0, i64::MIN, TimeUnit::Hour), i64::MIN);
    // Weeks start on Monday, UTC; 2024-01-01 is a Monday; a Sunday belongs to the week before it.
    let wk = |s: &str, k: i64| {
        let (a, b) = calendar_bucket(t(s), Operator::InCalendarWeek, k);
        (show(a), show(b))
    };
    assert_eq!(
        wk("2024-01-01T00:00:00Z", 0),
        ("2024-01-01T00:00:00Z".into(), "2024-01-08T00:00:00Z".into())
    );
    assert_eq!(
        wk("2024-01-07T23:59:59Z", 0),
        ("2024-01-01T00:00:00Z".into(), "2024-01-08T00:00:00Z".into())
    );
    assert_eq!(
        wk("2023-12-31T12:00:00Z", 0),
        ("2023-12-25T00:00:00Z".into(), "2024-01-01T00:00:00Z".into())
    );
    assert_eq!(
        wk("1970-01-01T00:00:00Z", -1),
        ("1969-12-22T00:00:00Z".into(), "1969-12-29T00:00:00Z".into())
    );
    let (a, b) = calendar_bucket(t("2024-03-15T12:00:00Z"), Operator::InCalendarMonth, -2);
    assert_eq!(
        (show(a), show(b)),
        ("2024-01-01T00:00:00Z".into(), "2024-02-01T00:00:00Z".into())
    );
    let (a, b) = calendar_bucket(t("2024-03-15T12:00:00Z"), Operator::InCalendarYear, 1);
    assert_eq!(
        (show(a), show(b)),
        ("2025-01-01T00:00:00Z".into(), "2026-01-01T00:00:00Z".into())
    );
    let (a, b) = calendar_bucket(t("2024-03-15T12:00:00Z"), Operator::InCalendarDay, -15);
    assert_eq!(
        (show(a), show(b)),
        ("2024-02-29T00:00:00Z".into(), "2024-03-01T00:00:00Z".into())
    );
}

#[test]
fn case_insensitive_helpers() {
    use super::eval::{ci_contains, ci_ends_with, ci_eq, ci_starts_with, json_contains};
    assert!(ci_eq("Hello", "hello"));
    assert!(!ci_eq("Hello", "hell"));
    assert!(ci_eq("ÄRGER", "ärger"));
    assert!(ci_eq("Straße", &"STRAßE".to_lowercase()));
    assert!(ci_starts_with("Über", "üb"));
    assert!(!ci_starts_with("Ü", "üb"));
    assert!(ci_ends_with("im Büro", "büro"));
    assert!(ci_ends_with("ABC", "bc"));
    assert!(!ci_ends_with("C", "bc"));
    assert!(ci_contains("im BÜRO heute", "büro"));
    assert!(ci_contains("abc", ""));
    assert!(!ci_contains("abc", "abcd"));
    assert!(ci_contains("xxABCxx", "abc"));
    assert!(json_contains(
        &json!({"a": {"b": [1, 2]}, "c": 3}),
        &json!({"a": {"b": [2]}})
    ));
    assert!(!json_contains(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
    assert_eq!(
        super::validate::normalize_uuid("{0F8FAD5B-D9CB-469F-A165-70867728950E}").as_deref(),
        Some("0f8fad5b-d9cb-469f-a165-70867728950e")
    );
    assert_eq!(super::validate::normalize_uuid("0f8fad5b"), None);
}

/// The evaluator's cost per row on a realistic filter. Prints the figure; the bound is loose so the
/// test is stable on a busy machine. Run with `SHOTGUN_CACHE_SLOW_TESTS=1` for a larger set.
#[test]
fn evaluator_throughput() {
    let n: i64 = if std::env::var_os("SHOTGUN_CACHE_SLOW_TESTS").is_some() {
        1_000_000
    } else {
        50_000
    };
    let mut src = data().clone();
    for i in 0..n {
        src.insert(ent("Shot", 10_000 + i, json!({
            "code": format!("bulk_{i:06}"), "sg_cut_in": i % 500, "sg_status_list": if i % 3 == 0 { "ip" } else { "fin" },
            "description": if i % 2 == 0 { "A Long Description Of The Shot" } else { "other text" },
            "sg_sequence": link("Sequence", 10 + (i % 2), "stale"), "assets": [link("Asset", 100, "Chair"), link("Asset", 101, "table")],
            "created_at": "2024-03-10T00:00:00Z"})));
    }
    let f = parse_validate("Shot", &json!({"logical_operator": "and", "conditions": [
        ["sg_status_list", "in", ["ip", "rev"]], ["sg_cut_in", "between", [100, 400]], ["description", "contains", "description"],
        ["sg_sequence.Sequence.code", "is", "seq01"], ["assets", "name_contains", "tab"], ["created_at", "in_last", [1, "WEEK"]]]}))
    .expect("valid");
    let rows: Vec<&Entity> = src.iter_type("Shot").collect();
    let at = now();
    let start = std::time::Instant::now();
    let hits = rows.iter().filter(|e| matches(&f, e, &src, at)).count();
    let elapsed = start.elapsed();
    let per_row = elapsed.as_nanos() / rows.len() as u128;
    // Baseline: one field lookup and string compare per row, no evaluator (memory cost of the rows).
    let start = std::time::Instant::now();
    let base_hits = rows
        .iter()
        .filter(
            |e| matches!(e.get("sg_status_list"), Value::Text(s) if s.eq_ignore_ascii_case("ip")),
        )
        .count();
    let base = start.elapsed().as_nanos() / rows.len() as u128;
    // One simple condition through the evaluator.
    let simple =
        parse_validate("Shot", &json!([["sg_status_list", "in", ["ip", "rev"]]])).expect("valid");
    let start = std::time::Instant::now();
    let simple_hits = rows
        .iter()
        .filter(|e| matches(&simple, e, &src, at))
        .count();
    let one = start.elapsed().as_nanos() / rows.len() as u128;
    assert_eq!(simple_hits, base_hits);
    eprintln!(
        "evaluator: {} rows; 6-condition filter: {hits} hits in {elapsed:?} ({per_row} ns/row); \
         one condition: {one} ns/row; bare field lookup: {base} ns/row",
        rows.len()
    );
    // i % 3 == 0 and i % 2 == 0 (even → Sequence 10 and the long description) and 100 ≤ i % 500 ≤ 400.
    let expected = (0..n)
        .filter(|i| i % 6 == 0 && (100..=400).contains(&(i % 500)))
        .count();
    assert_eq!(hits, expected);
    assert!(
        per_row < 50_000,
        "evaluation is pathologically slow: {per_row} ns/row"
    );
}

/// Random filters of every wire shape, over every field of the dataset's types and one-hop deep
/// links, with every relation and a pool of awkward values: parsing, validation, evaluation and find
/// never panic, and every rejection names something (a field, a relation, a value or a shape).
#[test]
fn fuzzed_filters_never_panic() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let iterations = if std::env::var_os("SHOTGUN_CACHE_SLOW_TESTS").is_some() {
        200_000
    } else {
        4_000
    };
    let mut rng = StdRng::seed_from_u64(0x5107_9c4e);
    let types = [
        "Shot",
        "Version",
        "Task",
        "Note",
        "Asset",
        "Sequence",
        "LocalStorage",
        "Step",
    ];
    let pool = [
        json!(null),
        json!(0),
        json!(-1),
        json!(1),
        json!(100),
        json!(2.5),
        json!(1e300),
        json!(i64::MAX),
        json!(""),
        json!(" "),
        json!("sh010"),
        json!("ÜBER"),
        json!("İ"),
        json!("2024-03-14"),
        json!("2024-03-15T08:00:00Z"),
        json!("DAY"),
        json!("MONTH"),
        json!("Shot"),
        json!(true),
        json!("true"),
        json!([]),
        json!([1, 2]),
        json!([null]),
        json!({"type": "Shot", "id": 1}),
        json!({"type": "Asset", "id": 101, "name": "x"}),
        json!({"id": 3}),
        json!({"a": 1}),
        json!([[1]]),
        json!("0f8fad5b-d9cb-469f-a165-70867728950e"),
        json!(i64::MIN),
    ];
    let mut validated = 0;
    for _ in 0..iterations {
        let t = types[rng.random_range(0..types.len())];
        let fields: Vec<&FieldSchema> = schema()
            .entity(t)
            .expect("type exists")
            .fields
            .values()
            .collect();
        let f = fields[rng.random_range(0..fields.len())];
        let path = match (f.data_type.is_link(), f.valid_types.first()) {
            (true, Some(target)) if rng.random_bool(0.5) => {
                let tf: Vec<&String> = schema()
                    .entity(target)
                    .map(|e| e.fields.keys().collect())
                    .unwrap_or_default();
                match tf.get(rng.random_range(0..tf.len().max(1))) {
                    Some(leaf) => format!("{}.{target}.{leaf}", f.name),
                    None => f.name.clone(),
                }
            }
            _ => f.name.clone(),
        };
        // Mostly a relation valid for the leaf's type, with the arity it expects; sometimes anything.
        let valid = validate_path(schema(), t, &path)
            .map(|p| super::valid_relations(p.leaf_type))
            .unwrap_or(&[]);
        let op = if !valid.is_empty() && rng.random_bool(0.9) {
            valid[rng.random_range(0..valid.len())]
        } else {
            Operator::ALL[rng.random_range(0..Operator::ALL.len())]
        };
        let mut pick = || pool[rng.random_range(0..pool.len())].clone();
        let values: Vec<Json> = match op {
            Operator::Between | Operator::NotBetween => vec![pick(), pick()],
            Operator::InLast | Operator::NotInLast | Operator::InNext | Operator::NotInNext => {
                vec![
                    json!([1, 7, 0][(pick().as_i64().unwrap_or(0).unsigned_abs() % 3) as usize]),
                    json!("DAY"),
                ]
            }
            Operator::In | Operator::NotIn => vec![pick(), pick()],
            _ => vec![pick()],
        };
        let op = op.as_str();
        let mut cond = vec![json!(path), json!(op)];
        cond.extend(values.iter().cloned());
        let filter = match rng.random_range(0..4) {
            0 => json!([cond]),
            1 => json!({"logical_operator": "or", "conditions": [cond, ["id", "greater_than", 0]]}),
            2 => {
                json!({"logical_operator": "and", "conditions": [{"path": path, "relation": op, "values": values}]})
            }
            _ => json!([{"filter_operator": "any", "filters": [cond]}]),
        };
        match parse_validate(t, &filter) {
            Ok(f) => {
                validated += 1;
                let src = data();
                for e in src.iter_type(t) {
                    let _ = matches(&f, e, src, now());
                }
                let sort = validate_path(schema(), t, &path).ok().map(|p| Sort {
                    path: p,
                    direction: Direction::Desc,
                });
                let q = FindQuery {
                    entity_type: t.into(),
                    filter: f,
                    fields: sort.iter().map(|s| s.path.clone()).collect(),
                    sorts: sort.into_iter().collect(),
                    offset: 0,
                    limit: Some(3),
                    retired_only: rng.random_bool(0.2),
                };
                let rows = reference_find(src, &q, now());
                assert!(rows.len() <= 3);
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.len() > 10,
                    "{filter} on {t}: uninformative error {msg:?}"
                );
            }
        }
    }
    eprintln!("fuzz: {validated} of {iterations} filters validated and evaluated");
    // The generator must reach the evaluator often enough to be worth running.
    assert!(
        validated * 20 > iterations,
        "only {validated} of {iterations} fuzzed filters validated"
    );
}
