//! Unit tests of the summarize semantics over hand-built records.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::model::{Date, DateTime, EntityRef};

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

fn types(f: &str) -> Option<DataType> {
    Some(match f {
        "id" | "cut_in" => DataType::Number,
        "rate" => DataType::Float,
        "code" => DataType::Text,
        "sg_status_list" => DataType::StatusList,
        "due" => DataType::Date,
        "created_at" => DataType::DateTime,
        "flag" => DataType::Checkbox,
        "sg_sequence" => DataType::Entity,
        "assets" => DataType::MultiEntity,
        _ => return None,
    })
}

fn seq(id: i64, name: &str) -> Value {
    Value::Entity(EntityRef {
        entity_type: "Sequence".into(),
        id,
        name: Some(name.into()),
    })
}

fn rows() -> Vec<Record> {
    let d = |s: &str| Value::Date(Date::parse(s).expect("test date"));
    vec![
        rec(
            1,
            &[
                ("cut_in", Value::Int(10)),
                ("rate", Value::Float(1.5)),
                ("sg_status_list", Value::Text("ip".into())),
                ("due", d("2024-03-01")),
                ("flag", Value::Bool(true)),
                ("sg_sequence", seq(7, "seq01")),
                ("created_at", Value::DateTime(DateTime(1_700_000_000))),
            ],
        ),
        rec(
            2,
            &[
                ("cut_in", Value::Int(20)),
                ("rate", Value::Null),
                ("sg_status_list", Value::Text("fin".into())),
                ("due", d("2024-01-15")),
                ("flag", Value::Bool(false)),
                ("sg_sequence", seq(8, "Alpha")),
                ("created_at", Value::DateTime(DateTime(1_600_000_000))),
            ],
        ),
        rec(
            3,
            &[
                ("cut_in", Value::Null),
                ("rate", Value::Float(2.5)),
                ("sg_status_list", Value::Text("ip".into())),
                ("due", Value::Null),
                ("flag", Value::Bool(true)),
                ("sg_sequence", Value::Null),
                ("created_at", Value::DateTime(DateTime(1_650_000_000))),
            ],
        ),
    ]
}

fn req(summaries: Json, grouping: Option<Json>) -> SummarizeRequest {
    parse_wire(&summaries, grouping.as_ref()).expect("valid wire request")
}

fn run(summaries: Json, grouping: Option<Json>) -> Json {
    summarize(&req(summaries, grouping), &rows(), &types)
        .expect("supported")
        .to_json()
}

#[test]
fn totals_for_every_supported_type() {
    let out = run(
        json!([
            {"field": "id", "type": "record_count"},
            {"field": "cut_in", "type": "sum"},
            {"field": "rate", "type": "average"},
            {"field": "due", "type": "latest"},
            {"field": "created_at", "type": "earliest"},
            {"field": "flag", "type": "checked"},
            {"field": "sg_sequence", "type": "count"},
        ]),
        None,
    );
    assert_eq!(
        out,
        json!({"summaries": {"id": 3, "cut_in": 30, "rate": 2.0, "due": "2024-03-01",
                             "created_at": "2020-09-13T12:26:40Z", "flag": 2, "sg_sequence": 2},
               "groups": []})
    );
}

#[test]
fn min_max_unchecked_and_empty_sets() {
    let out = run(
        json!([{"field": "cut_in", "type": "maximum"}, {"field": "rate", "type": "minimum"}, {"field": "flag", "type": "unchecked"}]),
        None,
    );
    assert_eq!(
        out["summaries"],
        json!({"cut_in": 20, "rate": 1.5, "flag": 1})
    );
    let none = summarize(
        &req(
            json!([{"field": "cut_in", "type": "sum"}, {"field": "rate", "type": "average"}, {"field": "due", "type": "earliest"}]),
            None,
        ),
        &[],
        &types,
    )
    .expect("supported")
    .to_json();
    assert_eq!(
        none["summaries"],
        json!({"cut_in": 0, "rate": null, "due": null})
    );
}

#[test]
fn last_summary_on_a_field_wins() {
    let out = run(
        json!([{"field": "id", "type": "count"}, {"field": "id", "type": "maximum"}]),
        None,
    );
    assert_eq!(out["summaries"], json!({"id": 3}));
    let out = run(
        json!([{"field": "id", "type": "maximum"}, {"field": "id", "type": "count"}]),
        None,
    );
    assert_eq!(out["summaries"], json!({"id": 3}));
    let out = run(
        json!([{"field": "cut_in", "type": "record_count"}, {"field": "cut_in", "type": "sum"}]),
        None,
    );
    assert_eq!(out["summaries"], json!({"cut_in": 30}));
}

#[test]
fn exact_grouping_on_status_orders_by_name() {
    let out = run(
        json!([{"field": "id", "type": "count"}]),
        Some(json!([{"field": "sg_status_list", "type": "exact", "direction": "asc"}])),
    );
    assert_eq!(
        out["groups"],
        json!([
            {"group_name": "fin", "group_value": "fin", "summaries": {"id": 1}},
            {"group_name": "ip", "group_value": "ip", "summaries": {"id": 2}},
        ])
    );
    let desc = run(
        json!([{"field": "id", "type": "count"}]),
        Some(json!([{"field": "sg_status_list", "type": "exact", "direction": "desc"}])),
    );
    assert_eq!(desc["groups"][0]["group_name"], json!("ip"));
}

#[test]
fn entity_grouping_has_valid_links_and_an_empty_group_first() {
    let out = run(
        json!([{"field": "cut_in", "type": "sum"}]),
        Some(json!([{"field": "sg_sequence", "type": "exact", "direction": "asc"}])),
    );
    assert_eq!(
        out["groups"],
        json!([
            {"group_name": "", "group_value": null, "summaries": {"cut_in": 0}},
            {"group_name": "Alpha", "group_value": {"type": "Sequence", "id": 8, "name": "Alpha", "valid": "valid"}, "summaries": {"cut_in": 20}},
            {"group_name": "seq01", "group_value": {"type": "Sequence", "id": 7, "name": "seq01", "valid": "valid"}, "summaries": {"cut_in": 10}},
        ])
    );
}

#[test]
fn nested_grouping_nests_groups() {
    let out = run(
        json!([{"field": "id", "type": "count"}]),
        Some(
            json!([{"field": "sg_status_list", "type": "exact", "direction": "asc"}, {"field": "sg_sequence", "type": "exact", "direction": "asc"}]),
        ),
    );
    let ip = &out["groups"][1];
    assert_eq!(ip["group_name"], json!("ip"));
    assert_eq!(ip["summaries"], json!({"id": 2}));
    assert_eq!(ip["groups"].as_array().map(Vec::len), Some(2));
    assert_eq!(ip["groups"][1]["group_value"]["id"], json!(7));
    assert!(out["groups"][0]["groups"].is_array());
}

#[test]
fn unsupported_types_name_the_reason() {
    for (s, g, needle) in [
        (
            json!([{"field": "sg_status_list", "type": "status_percentage"}]),
            None,
            "status_list_summary_exclude",
        ),
        (
            json!([{"field": "code", "type": "percentage"}]),
            None,
            "percentage",
        ),
        (
            json!([{"field": "code", "type": "sum"}]),
            None,
            "text field",
        ),
        (
            json!([{"field": "sg_foo", "type": "count"}]),
            None,
            "sg_foo is not cached",
        ),
        (
            json!([{"field": "id", "type": "count"}]),
            Some(json!([{"field": "due", "type": "month"}])),
            "grouping month on due",
        ),
        (
            json!([{"field": "id", "type": "count"}]),
            Some(json!([{"field": "cut_in", "type": "exact"}])),
            "number field",
        ),
    ] {
        let err = summarize(&req(s.clone(), g), &rows(), &types).expect_err("unsupported");
        assert!(
            matches!(err, SummarizeError::Unsupported { .. }),
            "{s}: {err}"
        );
        assert!(err.to_string().contains(needle), "{s}: {err}");
    }
}

#[test]
fn wire_errors_list_the_valid_types() {
    let err = parse_wire(&json!([{"field": "id", "type": "zzprobe"}]), None).expect_err("invalid");
    assert!(
        err.to_string().contains("record_count, count, sum"),
        "{err}"
    );
    let err = parse_wire(
        &json!([]),
        Some(&json!([{"field": "code", "type": "bogus"}])),
    )
    .expect_err("invalid");
    assert!(err.to_string().contains("exact, tens"), "{err}");
    assert_eq!(
        needed_fields(&req(
            json!([{"field": "id", "type": "count"}, {"field": "cut_in", "type": "sum"}]),
            Some(json!([{"field": "cut_in"}]))
        )),
        vec!["cut_in".to_owned()]
    );
}

/// A request of row counts only is answered from the number of rows, exactly as over the rows.
#[test]
fn row_count_requests_need_only_the_count() {
    let all = rows();
    let counted = [
        json!([{"field": "id", "type": "record_count"}]),
        json!([{"field": "code", "type": "record_count"}, {"field": "id", "type": "count"}]),
        json!([{"field": "id", "type": "count"}, {"field": "id", "type": "record_count"}]),
        json!([]),
    ];
    for summaries in counted {
        let r = req(summaries.clone(), None);
        assert!(needs_only_row_count(&r), "{summaries}");
        for n in [0, 1, all.len()] {
            assert_eq!(
                summarize_row_count(&r, n as u64),
                summarize(&r, &all[..n], &types).expect("supported"),
                "{summaries} over {n} rows"
            );
        }
    }
    let fetched = [
        (json!([{"field": "code", "type": "count"}]), None),
        (json!([{"field": "cut_in", "type": "sum"}]), None),
        (
            json!([{"field": "id", "type": "record_count"}]),
            Some(json!([{"field": "sg_status_list", "type": "exact", "direction": "asc"}])),
        ),
    ];
    for (summaries, grouping) in fetched {
        assert!(
            !needs_only_row_count(&req(summaries.clone(), grouping)),
            "{summaries}"
        );
    }
}

/// The row-at-a-time [`Summarizer`] answers exactly as [`summarize`] over random rows and random
/// requests (every supported summary, up to two grouping levels in either direction).
#[test]
fn the_streaming_summarizer_equals_summarize() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let seed: u64 = std::env::var("SUMMARIZE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_207);
    let mut rng = StdRng::seed_from_u64(seed);
    let summaries = [
        ("id", "record_count"),
        ("code", "count"),
        ("id", "count"),
        ("assets", "count"),
        ("sg_sequence", "count"),
        ("cut_in", "sum"),
        ("rate", "sum"),
        ("cut_in", "maximum"),
        ("cut_in", "minimum"),
        ("rate", "maximum"),
        ("rate", "minimum"),
        ("rate", "average"),
        ("cut_in", "average"),
        ("due", "earliest"),
        ("due", "latest"),
        ("created_at", "earliest"),
        ("created_at", "latest"),
        ("flag", "checked"),
        ("flag", "unchecked"),
    ];
    let groupings = ["sg_status_list", "code", "sg_sequence"];
    let texts = ["", "hero", "Hero", "crowd", "ip", "IP", "fin"];
    let floats = [-0.0, 0.0, 0.25, -1.5, 3.75, 1e-9];
    for case in 0..300 {
        let n = rng.random_range(0..60);
        let rows: Vec<Record> = (1..=n)
            .map(|id| {
                let mut f: Vec<(&str, Value)> = Vec::new();
                let mut maybe =
                    |k: &'static str, v: Value, rng: &mut StdRng| match rng.random_range(0..5) {
                        0 => {}
                        1 => f.push((k, Value::Null)),
                        _ => f.push((k, v)),
                    };
                let t = texts[rng.random_range(0..texts.len())];
                maybe("code", Value::Text(t.into()), &mut rng);
                let t = texts[rng.random_range(0..texts.len())];
                maybe("sg_status_list", Value::Text(t.into()), &mut rng);
                let v = Value::Int(rng.random_range(-5..50));
                maybe("cut_in", v, &mut rng);
                let v = Value::Float(floats[rng.random_range(0..floats.len())]);
                maybe("rate", v, &mut rng);
                let d = Date::from_days_since_epoch(20_000 + rng.random_range(0..4))
                    .expect("date in range");
                maybe("due", Value::Date(d), &mut rng);
                // Mostly datetimes; sometimes a date, which compares equal to a datetime.
                let v = if rng.random_range(0..6) == 0 {
                    Value::Date(d)
                } else {
                    Value::DateTime(DateTime(1_700_000_000 + rng.random_range(0..3) * 60))
                };
                maybe("created_at", v, &mut rng);
                let v = Value::Bool(rng.random_bool(0.5));
                maybe("flag", v, &mut rng);
                let s = rng.random_range(1..4);
                let name = ["sq", "SQ", "Sq"][rng.random_range(0..3)];
                maybe("sg_sequence", seq(s, &format!("{name}{s}")), &mut rng);
                let v = Value::MultiEntity(
                    (0..rng.random_range(0..3))
                        .map(|i| EntityRef {
                            entity_type: "Asset".into(),
                            id: i + 1,
                            name: None,
                        })
                        .collect(),
                );
                maybe("assets", v, &mut rng);
                rec(id, &f)
            })
            .collect();
        let picked: Vec<serde_json::Value> = (0..rng.random_range(0..5))
            .map(|_| {
                let (field, kind) = summaries[rng.random_range(0..summaries.len())];
                json!({"field": field, "type": kind})
            })
            .collect();
        let grouping: Vec<serde_json::Value> = (0..rng.random_range(0..3))
            .map(|_| {
                let field = groupings[rng.random_range(0..groupings.len())];
                let direction = if rng.random_bool(0.5) { "asc" } else { "desc" };
                json!({"field": field, "type": "exact", "direction": direction})
            })
            .collect();
        let r = req(json!(picked), Some(json!(grouping)));
        let want = summarize(&r, &rows, &types).expect("supported");
        let mut s = Summarizer::new(&r, &types).expect("supported");
        for row in &rows {
            s.add(row);
        }
        let got = s.finish();
        assert_eq!(
            got.to_json().to_string(),
            want.to_json().to_string(),
            "seed {seed} case {case}: {picked:?} grouped by {grouping:?} over {n} rows"
        );
        assert_eq!(got, want, "seed {seed} case {case}");
    }
}

/// Grouping levels are bounded: at the bound the answer nests that deep; one more is unsupported.
#[test]
fn grouping_levels_are_bounded() {
    let levels = |n: usize| {
        json!(
            (0..n)
                .map(|_| json!({"field": "sg_status_list", "type": "exact", "direction": "asc"}))
                .collect::<Vec<_>>()
        )
    };
    let r = req(
        json!([{"field": "id", "type": "record_count"}]),
        Some(levels(MAX_GROUPING_LEVELS)),
    );
    let out = summarize(&r, &rows(), &types).expect("at the bound");
    let mut depth = 0;
    let mut level = &out.groups;
    while let Some(g) = level.first() {
        depth += 1;
        level = &g.groups;
    }
    assert_eq!(depth, MAX_GROUPING_LEVELS);
    let r = req(
        json!([{"field": "id", "type": "record_count"}]),
        Some(levels(10_000)),
    );
    let err = summarize(&r, &rows(), &types).expect_err("10,000 levels");
    assert!(
        err.to_string().contains("10000 grouping levels")
            && err.to_string().contains(&MAX_GROUPING_LEVELS.to_string()),
        "{err}"
    );
    assert!(Summarizer::new(&r, &types).is_err());
}
