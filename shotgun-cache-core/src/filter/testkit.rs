//! Test support: the fixed dataset and the table of filter-semantics cases, public so every store
//! backend can check itself against the same cases as the reference evaluator (`filter/tests.rs`).
//!
//! The dataset is built on the real site schema (`shared/data/shotgun-schema/schema.json`, read from
//! beside the repository at run time) plus one field each of the types it lacks (jsonb, addressing,
//! timecode, currency, footage) on Shot. [`cases`] gives `(entity type, filter in any wire form,
//! expected ids of live rows)` with `now` = [`NOW`] (2024-03-15T12:00:00Z, a Friday). A backend
//! writes every entity of [`data`] (retired ones as tombstones), then for each case runs a find with
//! the validated filter at [`now`] and compares the ids (in id order).
//!
//! Like `store::conformance`, this module is compiled into the library so backends in other crates
//! can use it; nothing else calls it. Its functions panic (with a message) when the schema file is
//! missing, which only tests do.

use std::sync::OnceLock;

use serde_json::{Value as Json, json};

use crate::model::{DateTime, Entity, FieldSchema, SiteSchema, Value};
use crate::query::MemorySource;

/// The instant every case is evaluated at.
pub const NOW: &str = "2024-03-15T12:00:00Z";

/// [`NOW`] as a [`DateTime`].
pub fn now() -> DateTime {
    DateTime::parse(NOW).expect("fixed timestamp parses")
}

/// The real site schema plus `Shot.sg_meta` (jsonb), `sg_addr` (addressing), `sg_tc` (timecode),
/// `sg_budget` (currency) and `sg_footage` (footage).
pub fn schema() -> &'static SiteSchema {
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
pub fn ent(entity_type: &str, id: i64, fields: Json) -> Entity {
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

/// A link in api3 JSON form.
pub fn link(t: &str, id: i64, name: &str) -> Json {
    json!({"type": t, "id": id, "name": name})
}

/// The dataset (every type it holds counts as cached). Stored link names are deliberately stale in places ("OLD NAME") to test live names.
pub fn data() -> &'static MemorySource {
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
            ent("Shot", 3, json!({"code": "sh030", "created_at": "2023-12-31T23:00:00Z", "sg_meta": [1, {"type": "Shot", "id": 5}]})),
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

/// One semantics case: entity type, filter (any wire form), expected live ids.
pub type Case = (&'static str, Json, &'static [i64]);

/// The semantics table. Dataset summary (live rows):
/// - Shot 1 `sh010` cut_in 100 `ip` Hero, seq→10 (SEQ01, stored name stale), assets [100 Chair, 101 table],
///   created 2024-03-15T08:00Z, tags [Hero, Night]; Shot 2 `SH020` cut_in 0 `fin`, seq→11 (seq02),
///   assets `[101]`, created 2024-03-08T23:59:59Z; Shot 3 `sh030`, everything else null, created 2023-12-31T23:00Z;
///   Shot 4 `Über straße` cut_in 250 `IP`, seq→12 (retired), assets [102 (retired)], created 2024-02-10.
///   Shot 5 is retired.
/// - Task 1000 due 2024-03-14 (yesterday), 1001 due 2024-03-18 (next Monday), 1002 due 2024-02-29.
/// - Version 50 → Shot 1 (flagged), 51 → Asset 100, 52 → Sequence 10, 53 → Shot 4.
#[rustfmt::skip]
pub fn cases() -> Vec<Case> {
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
        // A jsonb array is a value (even one shaped like a link to a retired row), never null.
        ("Shot", json!([["sg_meta", "is", null]]), &[4]),
        ("Shot", json!([["sg_meta", "is_not", null]]), &[1, 2, 3]),
        ("Shot", json!([["sg_meta", "contains", [1]]]), &[3]),
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
