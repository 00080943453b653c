//! Table-driven tests of the filter semantics: parse → validate → the reference evaluator, over a
//! small fixed dataset built on the real site schema (`shared/data/shotgun-schema/schema.json`).
//!
//! One line per case. `check(type, filter, ids)` asserts the ids of the live rows that match (and
//! that `reference_count` agrees); `err(type, filter, needles)` asserts a validation error whose
//! message contains every needle. `NOW` is fixed at 2024-03-15T12:00:00Z (a Friday).

use serde_json::{Value as Json, json};

use super::parse::{parse_any, parse_with_operator};
use super::testkit::{cases, data, ent, link, now, schema};
use super::validate::{FilterError, MAX_FILTER_DEPTH, validate, validate_path};
use super::{Filter, Operator, matches};
use crate::model::{DataType, DateTime, Entity, FieldSchema, Value};
use crate::query::{
    Direction, EntityCollection, FindQuery, MemorySource, Sort, project, reference_count,
    reference_find,
};

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
    // What a store backend compares against: a plain find returns the same ids in id order.
    let q = FindQuery {
        entity_type: entity_type.into(),
        filter: f,
        fields: vec![],
        sorts: vec![],
        offset: 0,
        limit: None,
        retired_only: false,
    };
    let found: Vec<i64> = reference_find(src, &q, now())
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(found, ids, "reference_find for {filter}");
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
    let e = parse_validate("Shot", &json!([["sg_foo", "is", 1]])).expect_err("unknown field");
    assert_eq!(e.to_string(), "API read() Shot.sg_foo doesn't exist.");
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
    assert!(ci_eq("Straße", &super::eval::fold("STRAßE")));
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

/// The case fold (`eval::fold`, the "text case" row of the semantics table), one line per case:
/// `(stored Shot.code, relation, operand, matches)`. Greek sigma: `Σ`, `σ` and final `ς` are one
/// letter in every position and relation. No full case folding (`ß` ≠ `ss`) and no locale rules
/// (`İ` folds to `i` + U+0307, dotless `ı` is its own letter).
const FOLD_CASES: &[(&str, &str, &str, bool)] = &[
    ("ΑΣ", "is", "ΑΣ", true),
    ("ΑΣ", "is", "ας", true),
    ("ΑΣ", "is", "ασ", true),
    ("ας", "is", "ΑΣ", true),
    ("ασ", "is", "ας", true),
    ("ας", "is", "ασ", true),
    ("Σ", "is", "ς", true),
    ("ς", "is", "Σ", true),
    ("ΟΔΥΣΣΕΑΣ", "is", "Οδυσσεας", true),
    ("Οδυσσεας", "is", "ΟΔΥΣΣΕΑΣ", true),
    ("ΑΣ", "is", "α", false),
    ("ΑΣ", "is_not", "ας", false),
    ("ΑΣ", "is_not", "αβ", true),
    ("ΑΣ", "in", "[\"x\", \"ας\"]", true),
    ("ΑΣ", "not_in", "[\"ας\"]", false),
    ("ΣΑΣ", "contains", "ας", true),
    ("σας", "contains", "ΣΑ", true),
    ("ΑΣ ΒΗΤΑ", "contains", "ς β", true),
    ("ΑΣ", "not_contains", "ς", false),
    ("ΣΑΣ", "starts_with", "ς", true),
    ("ΣΑΣ", "starts_with", "σα", true),
    ("ΣΑΣ", "ends_with", "ας", true),
    ("ΣΑΣ", "ends_with", "ΑΣ", true),
    ("ΣΑΣ", "ends_with", "αα", false),
    // German sharp s: lowercase, not case folding.
    ("Straße", "is", "STRASSE", false),
    ("Straße", "is", "straße", true),
    ("Straße", "is", "STRAẞE", true),
    ("STRAẞE", "is", "straße", true),
    ("ss", "is", "ß", false),
    ("Straße", "contains", "ss", false),
    ("Straße", "ends_with", "SSE", false),
    // Turkish dotted and dotless i: Unicode lowercase, no locale.
    ("İstanbul", "is", "İSTANBUL", true),
    ("İstanbul", "is", "i\u{307}stanbul", true),
    ("İstanbul", "is", "istanbul", false),
    ("İstanbul", "starts_with", "i", true),
    ("İstanbul", "starts_with", "i\u{307}s", true),
    ("İstanbul", "ends_with", "\u{307}STANBUL", true),
    ("ISTANBUL", "is", "ıstanbul", false),
    ("ı", "is", "I", false),
    ("I", "is", "i", true),
    // Other scripts and signs with a lowercase.
    ("ÄRGER", "is", "ärger", true),
    ("Ωmega", "is", "ωMEGA", true),
    ("\u{212A}elvin", "is", "kelvin", true),
    ("ǅemal", "is", "ǆEMAL", true),
    ("ЖУК", "contains", "жу", true),
];

#[test]
fn case_folding_table() {
    let src = MemorySource::new();
    let mut failures = Vec::new();
    for (stored, op, operand, want) in FOLD_CASES {
        let value: Json = if operand.starts_with('[') {
            serde_json::from_str(operand).expect("list operand is JSON")
        } else {
            json!(operand)
        };
        let filter = json!([["code", op, value]]);
        let f = parse_validate("Shot", &filter).expect("fold cases are valid filters");
        let e = ent("Shot", 1, json!({"code": stored}));
        let got = matches(&f, &e, &src, now());
        if got != *want {
            failures.push(format!(
                "{stored:?} {op} {value}: expected {want}, got {got}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "fold cases failed:\n{}",
        failures.join("\n")
    );
}

/// Names (of links and tags) fold like text.
#[test]
fn case_folding_applies_to_names_and_tags() {
    let src = MemorySource::new();
    let shot = ent(
        "Shot",
        1,
        json!({"tag_list": ["ΝΥΧΤΑΣ"], "sg_sequence": link("Sequence", 10, "ΟΔΥΣΣΕΑΣ"),
               "sg_addr": [link("HumanUser", 7, "Κωστας")]}),
    );
    for (filter, want) in [
        (json!([["tag_list", "is", "νυχτας"]]), true),
        (json!([["tag_list", "name_contains", "τασ"]]), true),
        (json!([["tag_list", "name_not_contains", "ς"]]), false),
        (json!([["sg_sequence", "name_is", "οδυσσεας"]]), true),
        (json!([["sg_sequence", "name_ends_with", "ΕΑς"]]), true),
        (json!([["sg_addr", "name_ends_with", "ΤΑΣ"]]), true),
        (json!([["sg_addr", "name_starts_with", "κΩΣ"]]), true),
    ] {
        let f = parse_validate("Shot", &filter).expect("valid");
        assert_eq!(matches(&f, &shot, &src, now()), want, "{filter}");
    }
}

/// The `ci_*` helpers agree with `fold` on every pair of a word list (the SQLite functions call the
/// helpers and the expression indexes call `fold`, so they must never disagree).
#[test]
fn ci_helpers_agree_with_fold() {
    use super::eval::{ci_contains, ci_ends_with, ci_eq, ci_starts_with, fold};
    assert_eq!(fold("ΑΣ"), "ασ");
    assert_eq!(fold("ας"), "ασ");
    assert_eq!(fold("ΟΔΥΣΣΕΑΣ"), fold("οδυσσεας"));
    assert_eq!(fold("İ"), "i\u{307}");
    assert_eq!(fold("ẞ"), "ß");
    assert_eq!(fold("MiXeD ascii"), "mixed ascii");
    let words = [
        "",
        "a",
        "A",
        "ab",
        "ΑΣ",
        "ας",
        "ασ",
        "Σ",
        "ς",
        "σ",
        "ΣΑΣ",
        "σας",
        "ΑΣ Β",
        "ς β",
        "Straße",
        "STRASSE",
        "ss",
        "ß",
        "ẞ",
        "İ",
        "i",
        "I",
        "ı",
        "i\u{307}",
        "İstanbul",
        "ISTANBUL",
        "ÄRGER",
        "ärger",
        "\u{212A}",
        "k",
        "ǅ",
        "ǆ",
        "Ω",
        "x_y%z",
    ];
    for s in words {
        for t in words {
            let (fs, ft) = (fold(s), fold(t));
            assert_eq!(ci_eq(s, &ft), fs == ft, "ci_eq({s:?}, fold({t:?}))");
            assert_eq!(
                ci_contains(s, &ft),
                fs.contains(&ft),
                "ci_contains({s:?}, fold({t:?}))"
            );
            assert_eq!(
                ci_starts_with(s, &ft),
                fs.starts_with(&ft),
                "ci_starts_with({s:?}, fold({t:?}))"
            );
            assert_eq!(
                ci_ends_with(s, &ft),
                fs.ends_with(&ft),
                "ci_ends_with({s:?}, fold({t:?}))"
            );
        }
        assert_eq!(fold(&fold(s)), fold(s), "fold is idempotent on {s:?}");
    }
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
