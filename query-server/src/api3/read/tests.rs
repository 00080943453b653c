//! Unit tests of the api3 read/summarize planners and record shaping, on a small hand-built catalog.

use std::collections::BTreeMap;

use serde_json::json;
use shotgun_cache_core::model::{DateTime, EntityRef, SiteSchema};
use shotgun_cache_core::store::{TypeLayout, TypePhase, TypeState};

use super::*;

fn field(t: &str, dt: &str, valid_types: &[&str]) -> Json {
    json!({
        "data_type": {"value": dt, "editable": false},
        "entity_type": {"value": t, "editable": false},
        "editable": {"value": true, "editable": false},
        "name": {"value": "x", "editable": true},
        "properties": {"valid_types": {"value": valid_types, "editable": true}, "default_value": {"value": null, "editable": false}}
    })
}

/// Shot (cached: code, sg_status_list, sg_sequence, project, created_at, assets, image, sg_cut_in;
/// not cached: description), Sequence (cached: code), Project (cached: name, archived), Asset (not
/// cached), and the layouts of the cached types.
pub(crate) fn schema_and_layouts() -> (SiteSchema, Vec<TypeLayout>) {
    let schema = json!({
        "Shot": {
            "id": field("Shot", "number", &[]),
            "code": field("Shot", "text", &[]),
            "description": field("Shot", "text", &[]),
            "sg_status_list": field("Shot", "status_list", &[]),
            "sg_sequence": field("Shot", "entity", &["Sequence"]),
            "project": field("Shot", "entity", &["Project"]),
            "created_at": field("Shot", "date_time", &[]),
            "assets": field("Shot", "multi_entity", &["Asset"]),
            "image": field("Shot", "image", &[]),
            "sg_cut_in": field("Shot", "number", &[]),
        },
        "Sequence": {"id": field("Sequence", "number", &[]), "code": field("Sequence", "text", &[])},
        "Project": {"id": field("Project", "number", &[]), "name": field("Project", "text", &[]), "archived": field("Project", "checkbox", &[])},
        "Asset": {"id": field("Asset", "number", &[]), "code": field("Asset", "text", &[])},
    });
    let schema = SiteSchema::from_json(&schema, None).expect("test schema");
    let layout = |t: &str, fields: &[&str]| TypeLayout {
        entity_type: t.to_owned(),
        fields: fields
            .iter()
            .map(|f| schema.field(t, f).expect("field in test schema").clone())
            .collect(),
        indexed: Vec::new(),
    };
    let layouts = vec![
        layout(
            "Shot",
            &[
                "code",
                "sg_status_list",
                "sg_sequence",
                "project",
                "created_at",
                "assets",
                "image",
                "sg_cut_in",
            ],
        ),
        layout("Sequence", &["code"]),
        layout("Project", &["name", "archived"]),
    ];
    (schema, layouts)
}

/// The import state "ready" of a type.
pub(crate) fn ready(t: &str) -> TypeState {
    TypeState {
        entity_type: t.to_owned(),
        phase: TypePhase::Ready,
        done: 1,
        total: 1,
        config_hash: String::new(),
        ready_at: None,
    }
}

/// A catalog snapshot over [`schema_and_layouts`], every cached type ready.
pub(crate) fn snapshot() -> CatalogSnapshot {
    let (schema, layouts) = schema_and_layouts();
    let states = vec![ready("Shot"), ready("Sequence"), ready("Project")];
    CatalogSnapshot::new(Some(schema), layouts, states)
}

fn wire_read(extra: Json) -> Json {
    let mut p = json!({
        "type": "Shot",
        "return_fields": ["code", "sg_sequence.Sequence.code", "created_at"],
        "filters": {"logical_operator": "and", "conditions": [
            {"path": "sg_status_list", "relation": "is", "values": ["ip"]},
            {"path": "sg_sequence.Sequence.code", "relation": "starts_with", "values": ["sq"]}]},
        "return_only": "active",
        "paging": {"entities_per_page": 50, "current_page": 3},
        "sorts": [{"field_name": "code", "direction": "desc"}],
        "api_return_image_urls": true,
        "return_paging_info_without_counts": true
    });
    if let (Some(p), Some(e)) = (p.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            p.insert(k.clone(), v.clone());
        }
    }
    p
}

#[test]
fn a_cached_read_becomes_a_store_query() {
    let plan = plan_read(&snapshot(), &wire_read(json!({}))).expect("answerable");
    assert_eq!(plan.query.entity_type, "Shot");
    assert_eq!(plan.query.offset, 100);
    assert_eq!(plan.query.limit, Some(51));
    assert!(!plan.query.retired_only);
    assert_eq!(plan.query.sorts.len(), 1);
    assert_eq!(plan.query.sorts[0].direction, Direction::Desc);
    assert_eq!(
        plan.query
            .fields
            .iter()
            .map(|f| f.raw.as_str())
            .collect::<Vec<_>>(),
        ["code", "sg_sequence.Sequence.code", "created_at"]
    );
    assert!(
        matches!(&plan.query.filter, Filter::Group { op: LogicalOp::And, children } if children.len() == 2)
    );
    assert!(!plan.want_count);
}

#[test]
fn repeated_return_fields_are_one() {
    let plan = plan_read(
        &snapshot(),
        &json!({"type": "Shot", "return_fields": vec!["code"; 1000]}),
    )
    .expect("answerable");
    assert_eq!(plan.return_fields, ["code"]);
    assert_eq!(plan.query.fields.len(), 1);
}

#[test]
fn defaults_are_the_clients() {
    let plan = plan_read(&snapshot(), &json!({"type": "Shot"})).expect("answerable");
    assert_eq!(plan.return_fields, ["id"]);
    assert_eq!((plan.per_page, plan.page, plan.query.offset), (500, 1, 0));
    let retired = plan_read(
        &snapshot(),
        &json!({"type": "Shot", "return_only": "retired"}),
    )
    .expect("answerable");
    assert!(retired.query.retired_only);
}

#[test]
fn what_the_cache_cannot_answer_says_why() {
    let cases = [
        (json!({"type": "Asset"}), "Asset"),
        (
            json!({"type": "Shot", "return_fields": ["description"]}),
            "description",
        ),
        (
            json!({"type": "Shot", "return_fields": ["image"]}),
            "signs its URLs",
        ),
        (
            json!({"type": "Shot", "return_fields": ["sg_nope"]}),
            "sg_nope",
        ),
        (
            json!({"type": "Shot", "filters": {"logical_operator": "and", "conditions": [{"path": "description", "relation": "is", "values": ["x"]}]}}),
            "description",
        ),
        (
            json!({"type": "Shot", "filters": {"logical_operator": "and", "conditions": [{"path": "code", "relation": "greater_than", "values": ["x"]}]}}),
            "greater_than",
        ),
        (
            json!({"type": "Shot", "sorts": [{"field_name": "assets.Asset.code", "direction": "asc"}]}),
            "Asset",
        ),
        (
            json!({"type": "Shot", "additional_filter_presets": [{"preset_name": "LATEST", "latest_by": "ENTITIES_CREATED_AT"}]}),
            "additional_filter_presets",
        ),
        (
            json!({"type": "Shot", "paging": {"entities_per_page": 0, "current_page": 1}}),
            "paging",
        ),
        (json!({"type": "Shot", "return_only": "both"}), "both"),
        (
            json!({"type": "Shot", "return_fields": vec!["code"; 1001]}),
            "1001 return fields",
        ),
    ];
    for (p, needle) in cases {
        let err = plan_read(&snapshot(), &p).expect_err("not answerable");
        assert!(err.0.contains(needle), "{p}: {err}");
    }
}

#[test]
fn archived_projects_are_excluded_through_the_cached_flag() {
    let plan = plan_read(
        &snapshot(),
        &json!({"type": "Shot", "include_archived_projects": false}),
    )
    .expect("answerable");
    let Filter::Group {
        op: LogicalOp::And,
        children,
    } = &plan.query.filter
    else {
        panic!("expected an and group")
    };
    let Filter::Condition(c) = &children[1] else {
        panic!("expected the archived rule")
    };
    assert_eq!(c.path.raw, "project.Project.archived");
    assert_eq!(c.operator, Operator::IsNot);
    assert_eq!(c.operand, Operand::One(Value::Bool(true)));
    // `true` (the server default) adds nothing.
    let plan = plan_read(
        &snapshot(),
        &json!({"type": "Shot", "include_archived_projects": true}),
    )
    .expect("answerable");
    assert_eq!(plan.query.filter, Filter::all());
}

fn rec(id: i64, fields: &[(&str, Value)]) -> Record {
    Record {
        entity_type: "Shot".into(),
        id,
        fields: fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
    }
}

#[test]
fn records_are_shaped_as_the_site_shapes_them() {
    let r = rec(
        5,
        &[
            ("code", Value::Text("sh010".into())),
            (
                "created_at",
                Value::DateTime(DateTime::parse("2024-01-02T03:04:05Z").expect("test datetime")),
            ),
            (
                "sg_sequence",
                Value::Entity(EntityRef {
                    entity_type: "Sequence".into(),
                    id: 2,
                    name: Some("sq01".into()),
                }),
            ),
            ("sg_sequence.Sequence.code", Value::Text("sq01".into())),
        ],
    );
    let fields: Vec<String> = [
        "code",
        "created_at",
        "sg_sequence",
        "sg_sequence.Sequence.code",
        "id",
        "assets.Asset.code",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(
        shape_record(&r, &fields),
        json!({"type": "Shot", "id": 5, "code": "sh010", "created_at": "2024-01-02T03:04:05Z",
               "sg_sequence": {"type": "Sequence", "id": 2, "name": "sq01"}, "sg_sequence.Sequence.code": "sq01"})
    );
}

#[test]
fn paging_info_follows_the_extra_row() {
    let plan = plan_read(
        &snapshot(),
        &json!({"type": "Shot", "paging": {"entities_per_page": 2, "current_page": 1}}),
    )
    .expect("answerable");
    let full = read_answer(&plan, vec![rec(1, &[]), rec(2, &[]), rec(3, &[])], None);
    assert_eq!(full["entities"].as_array().map(Vec::len), Some(2));
    assert_eq!(full["paging_info"], json!({"has_next_page": true}));
    let last = read_answer(&plan, vec![rec(1, &[])], Some(5));
    assert_eq!(last["entities"], json!([{"type": "Shot", "id": 1}]));
    assert_eq!(
        last["paging_info"],
        json!({"has_next_page": false, "entity_count": 5, "current_page": 1, "entities_per_page": 2, "page_count": 3})
    );
}

#[test]
fn summarize_plans_fetch_the_needed_fields() {
    let p = json!({"type": "Shot", "summaries": [{"field": "id", "type": "count"}, {"field": "sg_cut_in", "type": "sum"}],
                   "filters": {"logical_operator": "and", "conditions": []},
                   "grouping": [{"field": "sg_sequence", "type": "exact", "direction": "asc"}]});
    let plan = plan_summarize(&snapshot(), &p).expect("answerable");
    assert_eq!(
        plan.query
            .fields
            .iter()
            .map(|f| f.raw.as_str())
            .collect::<Vec<_>>(),
        ["sg_cut_in", "sg_sequence"]
    );
    assert_eq!(plan.query.limit, None);
    let rows = vec![
        rec(1, &[("sg_cut_in", Value::Int(4))]),
        rec(2, &[("sg_cut_in", Value::Int(6))]),
    ];
    let lookup = |f: &str| {
        plan.data_types
            .iter()
            .find(|(k, _)| k == f)
            .map(|(_, t)| *t)
    };
    let out = shotgun_cache_core::summarize::summarize(&plan.request, &rows, &lookup)
        .expect("answerable")
        .to_json();
    assert_eq!(out["summaries"], json!({"id": 2, "sg_cut_in": 10}));
    assert_eq!(
        out["groups"],
        json!([{"group_name": "", "group_value": null, "summaries": {"id": 2, "sg_cut_in": 10}}])
    );

    let bad =
        json!({"type": "Shot", "summaries": [{"field": "sg_status_list", "type": "status_list"}]});
    assert!(
        plan_summarize(&snapshot(), &bad)
            .expect_err("unsupported")
            .0
            .contains("status_list_summary_exclude")
    );
}

#[test]
fn schema_reads_come_from_the_persisted_schema() {
    let snap = snapshot();
    let all = schema_answer(&snap, "schema_read", &json!({})).expect("answerable");
    assert_eq!(all["Shot"]["code"]["data_type"]["value"], json!("text"));
    let ents = schema_answer(&snap, "schema_entity_read", &Json::Null).expect("answerable");
    assert_eq!(ents["Sequence"]["name"]["value"], json!("Sequence"));
    let one = schema_answer(
        &snap,
        "schema_field_read",
        &json!({"type": "Shot", "field_name": "sg_sequence"}),
    )
    .expect("answerable");
    assert_eq!(one.as_object().map(|o| o.len()), Some(1));
    assert_eq!(
        one["sg_sequence"]["properties"]["valid_types"]["value"],
        json!(["Sequence"])
    );
    assert!(
        schema_answer(
            &snap,
            "schema_read",
            &json!({"project": {"type": "Project", "id": 1}})
        )
        .is_err()
    );
    assert!(
        schema_answer(
            &snap,
            "schema_field_read",
            &json!({"type": "Shot", "field_name": "nope"})
        )
        .is_err()
    );
}
