//! Unit tests of the wire ↔ domain conversion.

use serde_json::json;
use shotgun_cache_core::filter::{LogicalOp, Operator, RawCondition, RawFilter};
use shotgun_cache_core::model::{Date, DateTime, EntityRef, Value};
use shotgun_cache_proto::v1 as pb;

use super::*;

fn v(kind: pb::value::Kind) -> pb::Value {
    pb::Value { kind: Some(kind) }
}

#[test]
fn every_domain_operator_round_trips_through_the_proto_enum() {
    for op in Operator::ALL {
        let wire = operator_to_pb(op);
        assert_eq!(
            operator_from_pb(wire as i32, "f").expect("mapped"),
            op,
            "{op:?}"
        );
    }
    // Every proto operator except UNSPECIFIED maps to a domain one.
    let n = (1..=27)
        .filter(|i| operator_from_pb(*i, "f").is_ok())
        .count();
    assert_eq!(n, Operator::ALL.len());
}

#[test]
fn unspecified_and_unknown_operators_name_the_path() {
    let e = operator_from_pb(0, "sg_status_list").expect_err("unspecified");
    assert!(
        e.to_string().contains("sg_status_list") && e.to_string().contains("OPERATOR_UNSPECIFIED"),
        "{e}"
    );
    let e = operator_from_pb(99, "code").expect_err("unknown");
    assert!(
        e.to_string().contains("99") && e.to_string().contains("code"),
        "{e}"
    );
}

#[test]
fn values_become_api3_json() {
    use pb::value::Kind;
    let cases = vec![
        (v(Kind::NullValue(0)), json!(null)),
        (v(Kind::BoolValue(true)), json!(true)),
        (v(Kind::IntValue(-4)), json!(-4)),
        (v(Kind::DoubleValue(1.5)), json!(1.5)),
        (v(Kind::StringValue("ip".into())), json!("ip")),
        (
            v(Kind::DateValue(pb::Date {
                year: 2026,
                month: 3,
                day: 7,
            })),
            json!("2026-03-07"),
        ),
        (
            v(Kind::TimestampValue(prost_types::Timestamp {
                seconds: 0,
                nanos: 5,
            })),
            json!("1970-01-01T00:00:00Z"),
        ),
        (
            v(Kind::EntityValue(pb::EntityRef {
                r#type: "Sequence".into(),
                id: 3,
                name: None,
            })),
            json!({"type": "Sequence", "id": 3, "name": null}),
        ),
        (
            v(Kind::EntitiesValue(pb::EntityRefList {
                refs: vec![pb::EntityRef {
                    r#type: "Asset".into(),
                    id: 1,
                    name: Some("a".into()),
                }],
            })),
            json!([{"type": "Asset", "id": 1, "name": "a"}]),
        ),
        (v(Kind::JsonValue("{\"a\": [1]}".into())), json!({"a": [1]})),
    ];
    for (value, want) in cases {
        assert_eq!(value_to_json(&value, "f").expect("converts"), want);
    }
}

#[test]
fn bad_values_are_rejected_naming_the_path() {
    use pb::value::Kind;
    for bad in [
        pb::Value { kind: None },
        v(Kind::DoubleValue(f64::NAN)),
        v(Kind::JsonValue("{".into())),
    ] {
        let e = value_to_json(&bad, "sg_cut_in").expect_err("rejected");
        assert!(e.to_string().contains("sg_cut_in"), "{e}");
    }
}

#[test]
fn filter_tree_converts_to_raw_filter() {
    let f = pb::Filter {
        node: Some(pb::filter::Node::Group(pb::FilterGroup {
            op: pb::LogicalOperator::Or as i32,
            children: vec![
                pb::Filter {
                    node: Some(pb::filter::Node::Condition(pb::Condition {
                        path: "code".into(),
                        operator: pb::Operator::StartsWith as i32,
                        values: vec![v(pb::value::Kind::StringValue("sh".into()))],
                    })),
                },
                pb::Filter { node: None },
            ],
        })),
    };
    let raw = filter_from_pb(Some(&f))
        .expect("converts")
        .expect("a filter");
    assert_eq!(
        raw,
        RawFilter::Group {
            op: LogicalOp::Or,
            children: vec![
                RawFilter::Condition(RawCondition {
                    path: "code".into(),
                    relation: "starts_with".into(),
                    values: vec![json!("sh")]
                }),
                RawFilter::Group {
                    op: LogicalOp::And,
                    children: vec![]
                },
            ],
        }
    );
    assert_eq!(filter_from_pb(None).expect("ok"), None);
    assert_eq!(
        filter_from_pb(Some(&pb::Filter { node: None })).expect("ok"),
        None
    );
}

#[test]
fn absurdly_deep_filters_are_refused_without_recursing_further() {
    let mut f = pb::Filter { node: None };
    for _ in 0..(MAX_WIRE_DEPTH + 5) {
        f = pb::Filter {
            node: Some(pb::filter::Node::Group(pb::FilterGroup {
                op: 1,
                children: vec![f],
            })),
        };
    }
    let e = filter_from_pb(Some(&f)).expect_err("too deep");
    assert!(matches!(e, QueryError::ResourceExhausted(_)), "{e:?}");
}

#[test]
fn domain_values_become_proto_values() {
    use pb::value::Kind;
    let date = Date::parse("2026-12-31").expect("valid date");
    assert_eq!(
        value_to_pb(&Value::Date(date)).kind,
        Some(Kind::DateValue(pb::Date {
            year: 2026,
            month: 12,
            day: 31
        }))
    );
    assert_eq!(
        value_to_pb(&Value::DateTime(DateTime(86_400))).kind,
        Some(Kind::TimestampValue(prost_types::Timestamp {
            seconds: 86_400,
            nanos: 0
        }))
    );
    let r = EntityRef {
        entity_type: "Shot".into(),
        id: 9,
        name: Some("sh9".into()),
    };
    assert_eq!(
        value_to_pb(&Value::MultiEntity(vec![r])).kind,
        Some(Kind::EntitiesValue(pb::EntityRefList {
            refs: vec![pb::EntityRef {
                r#type: "Shot".into(),
                id: 9,
                name: Some("sh9".into())
            }]
        }))
    );
    assert_eq!(
        value_to_pb(&Value::Json(json!({"k": 1}))).kind,
        Some(Kind::JsonValue("{\"k\":1}".into()))
    );
    assert_eq!(value_to_pb(&Value::Null).kind, Some(Kind::NullValue(0)));
}
