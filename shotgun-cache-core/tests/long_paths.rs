//! Deep-link paths at the hop limit, inside groups at the nesting limit, run on SQLite and the
//! reference evaluator without exhausting a thread's stack, and agree; a longer path is refused by
//! validation. A cycle of links (Shot -> Sequence -> Shot) makes paths of any length valid.

use serde_json::{Value as Json, json};
use shotgun_cache_core::filter::{
    FilterError, MAX_FILTER_DEPTH, MAX_PATH_HOPS, parse_any, validate, validate_path,
};
use shotgun_cache_core::model::{DateTime, Entity, EntityRef, SiteSchema, Value};
use shotgun_cache_core::query::{FindQuery, MemorySource, reference_find};
use shotgun_cache_core::store::sqlite::SqliteStore;
use shotgun_cache_core::store::{Store, TypeLayout, WriteBatch};

fn field(name: &str, data_type: &str, valid_types: &[&str]) -> Json {
    json!({
        "name": {"value": name},
        "data_type": {"value": data_type},
        "editable": {"value": true},
        "entity_type": {"value": ""},
        "properties": {
            "default_value": {"value": null},
            "valid_types": {"value": valid_types},
            "valid_values": {"value": []},
        },
    })
}

/// Shot.sg_sequence -> Sequence; Sequence.lead -> Shot and Sequence.shots ->> Shot.
fn cyclic_schema() -> SiteSchema {
    let read = json!({
        "Shot": {
            "id": field("id", "number", &[]),
            "code": field("code", "text", &[]),
            "sg_sequence": field("sg_sequence", "entity", &["Sequence"]),
        },
        "Sequence": {
            "id": field("id", "number", &[]),
            "code": field("code", "text", &[]),
            "lead": field("lead", "entity", &["Shot"]),
            "shots": field("shots", "multi_entity", &["Shot"]),
        },
    });
    SiteSchema::from_json(&read, None).expect("the cyclic schema is well formed")
}

fn link(t: &str, id: i64) -> EntityRef {
    EntityRef {
        entity_type: t.to_owned(),
        id,
        name: None,
    }
}

/// Shot 1 (code "hero") and Shot 2 (code "crowd") in Sequence 1, whose lead is Shot 1.
fn rows() -> Vec<Entity> {
    let mut out = Vec::new();
    for (id, code) in [(1, "hero"), (2, "crowd")] {
        let mut shot = Entity::new("Shot", id);
        shot.fields.insert("code".into(), Value::Text(code.into()));
        shot.fields
            .insert("sg_sequence".into(), Value::Entity(link("Sequence", 1)));
        out.push(shot);
    }
    let mut seq = Entity::new("Sequence", 1);
    seq.fields.insert("code".into(), Value::Text("sq1".into()));
    seq.fields
        .insert("lead".into(), Value::Entity(link("Shot", 1)));
    seq.fields.insert(
        "shots".into(),
        Value::MultiEntity(vec![link("Shot", 1), link("Shot", 2)]),
    );
    out.push(seq);
    out
}

#[tokio::test]
async fn paths_at_the_hop_limit_run_and_agree_with_the_reference() {
    let schema = cyclic_schema();
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(&dir.path().join("paths.db")).expect("open");
    let layouts: Vec<TypeLayout> = ["Shot", "Sequence"]
        .iter()
        .map(|t| TypeLayout {
            entity_type: (*t).to_owned(),
            fields: schema
                .entity(t)
                .expect("type in schema")
                .fields
                .values()
                .filter(|f| f.name != "id")
                .cloned()
                .collect(),
            indexed: Vec::new(),
        })
        .collect();
    store.prepare(&schema, &layouts).await.expect("prepare");
    store
        .commit(WriteBatch::import(rows()))
        .await
        .expect("commit");
    let mut src = MemorySource::new();
    src.declare_type("Shot".to_owned());
    src.declare_type("Sequence".to_owned());
    for e in rows() {
        src.insert(e);
    }
    let half = MAX_PATH_HOPS / 2;
    // Through single links (every shot reaches the lead, "hero") and through multi_entity hops
    // (every shot reaches both).
    for (segment, value, matching) in [
        ("sg_sequence.Sequence.lead.Shot.", "hero", 2),
        ("sg_sequence.Sequence.shots.Shot.", "crowd", 2),
        ("sg_sequence.Sequence.lead.Shot.", "crowd", 0),
    ] {
        let path = format!("{}code", segment.repeat(half));
        // The condition at the bottom of groups nested as deep as validation allows.
        let mut f = json!([path, "is", value]);
        for _ in 1..MAX_FILTER_DEPTH {
            f = json!({"filter_operator": "all", "filters": [f]});
        }
        let raw = parse_any(&json!([f])).expect("parses");
        let filter = validate(&schema, "Shot", &raw).expect("a path at the hop limit is valid");
        let q = FindQuery {
            entity_type: "Shot".into(),
            filter,
            fields: vec![validate_path(&schema, "Shot", &path).expect("valid return field")],
            sorts: Vec::new(),
            offset: 0,
            limit: None,
            retired_only: false,
        };
        let want = reference_find(&src, &q, DateTime::now());
        assert_eq!(want.len(), matching, "{path} is {value}");
        let got = store.find(&q).await.expect("SQLite runs it");
        assert_eq!(got, want, "{path} is {value}");
    }

    // One hop more is refused, and the message quotes only the start of a long path.
    let path = format!("{}code", "sg_sequence.Sequence.lead.Shot.".repeat(30_000));
    let err = validate_path(&schema, "Shot", &path).expect_err("too many hops");
    assert!(matches!(err, FilterError::BadPath { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("follows 60000 links") && msg.contains(&format!("at most {MAX_PATH_HOPS}")),
        "{msg}"
    );
    assert!(msg.len() < 300, "{} bytes", msg.len());
    let path = format!(
        "{}code",
        "sg_sequence.Sequence.lead.Shot.".repeat(half) + "sg_sequence.Sequence."
    );
    let err = validate_path(&schema, "Shot", &path).expect_err("one hop over");
    assert!(
        err.to_string()
            .contains(&format!("follows {} links", MAX_PATH_HOPS + 1)),
        "{err}"
    );
}
