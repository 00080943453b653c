//! Tests of the data model: value parsing and serialisation for every data type (protocol §4),
//! dates and datetimes in Shotgun's exact forms, and the schema loaded from the real site schema.

use serde_json::{Value as Json, json};

use super::{Cacheability, DataType, Date, DateTime, Entity, EntityRef, SiteSchema, Value};

fn real_schema() -> SiteSchema {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/shotgun-schema/"
    );
    let read = |f: &str| -> Json {
        let text = std::fs::read_to_string(format!("{dir}{f}"))
            .expect("the shared schema is checked out beside the repository");
        serde_json::from_str(&text).expect("valid JSON")
    };
    SiteSchema::from_json(&read("schema.json"), Some(&read("schema_entity.json")))
        .expect("schema_read shape")
}

#[test]
fn dates_parse_and_serialise_exactly() {
    let d = Date::parse("2024-02-29").expect("leap day");
    assert_eq!(d.to_string(), "2024-02-29");
    assert_eq!(Date::from_days_since_epoch(d.days_since_epoch()), Some(d));
    assert_eq!(
        Date::parse("1970-01-01").map(Date::days_since_epoch),
        Some(0)
    );
    assert_eq!(
        Date::parse("1969-12-31").map(Date::days_since_epoch),
        Some(-1)
    );
    for bad in [
        "2024-3-5",
        "2023-02-29",
        "2024-13-01",
        "2024/03/05",
        "2024-03-05T00:00:00Z",
        "",
        "20240305",
    ] {
        assert_eq!(Date::parse(bad), None, "{bad:?} is not a Shotgun date");
    }
}

#[test]
fn datetimes_accept_shotgun_forms_and_serialise_utc_seconds() {
    let want = "2024-03-15T08:00:00Z";
    for form in [
        "2024-03-15T08:00:00Z",
        "2024-03-15T09:00:00+01:00",
        "2024-03-15T03:00:00-05:00",
        "2024-03-15T08:00:00",
        "2024-03-15 08:00:00",
        "2024-03-15 08:00:00 UTC",
        "2024-03-15T08:00:00.987Z",
        "2024-03-15T08:00:00.5",
        " 2024-03-15T08:00:00Z ",
    ] {
        let t = DateTime::parse(form).unwrap_or_else(|| panic!("{form:?} parses"));
        assert_eq!(t.to_string(), want, "{form:?}");
    }
    assert_eq!(
        DateTime::parse("2024-03-15")
            .map(|t| t.to_string())
            .as_deref(),
        Some("2024-03-15T00:00:00Z")
    );
    assert_eq!(DateTime::parse("1970-01-01T00:00:00Z"), Some(DateTime(0)));
    assert_eq!(DateTime(-1).to_string(), "1969-12-31T23:59:59Z");
    for bad in [
        "yesterday",
        "2024-03-15T25:00:00Z",
        "2024-03-15T08:00",
        "1700000000",
        "",
    ] {
        assert_eq!(DateTime::parse(bad), None, "{bad:?} is not a datetime");
    }
}

#[test]
fn values_from_and_to_api3_json_for_every_type() {
    use DataType as D;
    let ok = |dt: DataType, v: Json| {
        Value::from_json(dt, &v).unwrap_or_else(|e| panic!("{} {v}: {e}", dt.as_str()))
    };
    // Text: "" is stored as null.
    assert_eq!(ok(D::Text, json!("abc")), Value::Text("abc".into()));
    assert_eq!(ok(D::Text, json!("")), Value::Null);
    assert_eq!(ok(D::Text, json!(null)), Value::Null);
    assert_eq!(ok(D::StatusList, json!("ip")), Value::Text("ip".into()));
    assert_eq!(ok(D::EntityType, json!("Shot")), Value::Text("Shot".into()));
    // Numbers: a numeric string coerces; floats arrive as strings over REST.
    assert_eq!(ok(D::Number, json!(42)), Value::Int(42));
    assert_eq!(ok(D::Number, json!("42")), Value::Int(42));
    assert_eq!(ok(D::Duration, json!(60)), Value::Int(60));
    assert_eq!(ok(D::Float, json!("1.5")), Value::Float(1.5));
    assert_eq!(ok(D::Float, json!(2)), Value::Float(2.0));
    assert_eq!(ok(D::Currency, json!(9.99)), Value::Float(9.99));
    assert!(Value::from_json(D::Number, &json!("x")).is_err());
    assert!(Value::from_json(D::Number, &json!(1.5)).is_err());
    // Checkbox is never null; multi_entity is never null.
    assert_eq!(ok(D::Checkbox, json!(null)), Value::Bool(false));
    assert_eq!(ok(D::Checkbox, json!("true")), Value::Bool(true));
    assert!(Value::from_json(D::Checkbox, &json!(1)).is_err());
    assert_eq!(ok(D::MultiEntity, json!(null)), Value::MultiEntity(vec![]));
    // Dates.
    assert_eq!(
        ok(D::Date, json!("2024-03-15")).to_json(),
        json!("2024-03-15")
    );
    assert!(Value::from_json(D::Date, &json!("2024-03-15T00:00:00Z")).is_err());
    assert_eq!(
        ok(D::DateTime, json!("2024-03-15T09:00:00+01:00")).to_json(),
        json!("2024-03-15T08:00:00Z")
    );
    // Links: extra keys ignored, `name` kept, `to_json` always has `name`.
    let l = ok(
        D::Entity,
        json!({"type": "Shot", "id": 5, "name": "sh010", "valid": "valid"}),
    );
    assert_eq!(
        l.to_json(),
        json!({"type": "Shot", "id": 5, "name": "sh010"})
    );
    assert_eq!(
        ok(D::Entity, json!({"type": "Shot", "id": 5})).to_json(),
        json!({"type": "Shot", "id": 5, "name": null})
    );
    assert!(Value::from_json(D::Entity, &json!({"id": 5})).is_err());
    assert!(Value::from_json(D::Entity, &json!(5)).is_err());
    let m = ok(
        D::MultiEntity,
        json!([{"type": "Asset", "id": 1, "name": "a"}, {"type": "Asset", "id": 2}]),
    );
    assert_eq!(
        m.to_json(),
        json!([{"type": "Asset", "id": 1, "name": "a"}, {"type": "Asset", "id": 2, "name": null}])
    );
    // Image keeps the attachment id; url/jsonb/tag_list keep their JSON.
    assert_eq!(ok(D::Image, json!(77)), Value::Int(77));
    assert_eq!(
        ok(D::Image, json!({"id": 77, "type": "Attachment"})),
        Value::Int(77)
    );
    let url = json!({"url": "https://x/y", "name": "y", "link_type": "web", "type": "Attachment", "id": 3});
    assert_eq!(ok(D::Url, url.clone()).to_json(), url);
    assert_eq!(
        ok(D::TagList, json!(["a", "b"])).to_json(),
        json!(["a", "b"])
    );
    assert_eq!(ok(D::Jsonb, json!({"k": [1]})).to_json(), json!({"k": [1]}));
    // Errors name what was expected and what came.
    let e = Value::from_json(D::Date, &json!("2024/03/15")).expect_err("bad date");
    assert!(
        e.to_string().contains("YYYY-MM-DD") && e.to_string().contains("2024/03/15"),
        "{e}"
    );
}

#[test]
fn entity_refs_compare_targets_not_names() {
    let a = EntityRef {
        entity_type: "Shot".into(),
        id: 1,
        name: Some("a".into()),
    };
    let b = EntityRef {
        entity_type: "Shot".into(),
        id: 1,
        name: None,
    };
    assert!(a.same_target(&b));
    assert!(!a.same_target(&EntityRef::new("Asset", 1)));
}

#[test]
fn entity_reads_unset_fields_as_null() {
    let mut e = Entity::new("Shot", 7);
    e.fields.insert("code".into(), Value::Text("sh070".into()));
    assert_eq!(e.get("code"), &Value::Text("sh070".into()));
    assert_eq!(e.get("sg_cut_in"), &Value::Null);
    assert_eq!(e.id_value(), Value::Int(7));
    assert!(!e.retired);
}

#[test]
#[rustfmt::skip]
fn schema_loads_the_real_site_schema() {
    let s = real_schema();
    assert_eq!(s.types.len(), 77);
    // The data README says 1,085 fields; the file holds 1,035 (the sum of its own per-type counts).
    assert_eq!(s.types.values().map(|t| t.fields.len()).sum::<usize>(), 1035);
    let seq = s.field("Shot", "sg_sequence").expect("Shot.sg_sequence");
    assert_eq!((seq.data_type, seq.valid_types.as_slice()), (DataType::Entity, ["Sequence".to_owned()].as_slice()));
    assert_eq!(s.field("Shot", "id").map(|f| f.data_type), Some(DataType::Number));
    assert!(s.field("Shot", "sg_status_list").is_some_and(|f| !f.valid_values.is_empty()));
    assert_eq!(s.entity("ApiUser").map(|t| t.display_name.as_str()), Some("Script"));
    // No field of this schema is of a type this build does not know.
    let unknown: Vec<_> = s.types.values().flat_map(|t| t.fields.values()).filter(|f| f.data_type == DataType::Unknown).map(|f| format!("{}.{}", f.entity_type, f.name)).collect();
    assert!(unknown.is_empty(), "unknown data types: {unknown:?}");
    // schema_read answers are the site's own JSON.
    let only = ["Shot".to_owned()];
    let back = s.to_schema_read_json(Some(&only));
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/shotgun-schema/schema.json")).expect("schema");
    let orig: Json = serde_json::from_str(&text).expect("json");
    assert_eq!(back, json!({"Shot": orig["Shot"]}));
}

#[test]
fn schema_knows_what_can_be_cached() {
    let s = real_schema();
    let reason = |t: &str, f: &str| match s.field(t, f).map(|f| f.cacheability()) {
        Some(Cacheability::NotCacheable(r)) => Some(r),
        Some(Cacheability::Cacheable) => None,
        None => panic!("{t}.{f} exists"),
    };
    assert!(reason("Shot", "step_0").is_some_and(|r| r.contains("pivot_column")));
    assert!(reason("HumanUser", "password_proxy").is_some_and(|r| r.contains("password")));
    for (t, f) in [
        ("Shot", "code"),
        ("Shot", "assets"),
        ("Shot", "image"),
        ("Version", "sg_uploaded_movie"),
        ("Task", "due_date"),
    ] {
        assert_eq!(reason(t, f), None, "{t}.{f} is cacheable");
    }
    let summary = super::FieldSchema::from_json(
        "Shot",
        "open_notes_count",
        &json!({"data_type": {"value": "summary"}}),
    );
    assert!(
        matches!(summary.cacheability(), Cacheability::NotCacheable(r) if r.contains("summary"))
    );
    let calc = super::FieldSchema::from_json(
        "Shot",
        "sg_calc",
        &json!({"data_type": {"value": "calculated"}}),
    );
    assert!(
        matches!(calc.cacheability(), Cacheability::NotCacheable(r) if r.contains("calculated"))
    );
}

#[test]
fn display_fields_follow_shotgun() {
    let s = real_schema();
    let df = |t: &str| {
        s.entity(t)
            .and_then(|e| e.display_field())
            .map(str::to_owned)
    };
    assert_eq!(df("Shot").as_deref(), Some("code"));
    assert_eq!(df("Task").as_deref(), Some("content"));
    assert_eq!(df("Note").as_deref(), Some("subject"));
    assert_eq!(df("Project").as_deref(), Some("name"));
    assert_eq!(df("HumanUser").as_deref(), Some("name"));
    assert_eq!(df("Version").as_deref(), Some("code"));
}
