//! The backend-independent conformance suite: every [`Store`] backend must pass it unchanged.
//!
//! Each case is a `pub async fn case(store: &S)` that panics (with a message naming what differed) on
//! a violation of the contract in `store`'s module docs. A case expects a fresh, empty store and calls
//! `prepare` itself with [`test_schema`] and [`test_layouts`].
//!
//! Backends run the whole suite with [`store_conformance_tests!`](crate::store_conformance_tests),
//! which generates one named `#[tokio::test]` per case from an async factory returning a fresh store
//! and a guard kept alive for the test (a temporary directory, a database name to drop, ...):
//!
//! ```text
//! async fn fresh() -> (SqliteStore, tempfile::TempDir) { ... }
//! shotgun_cache_core::store_conformance_tests!(fresh);
//! ```
//!
//! Finds are compared with the reference implementation (`query::reference_find`) over the store's
//! own rows, read back with `get`, so the suite checks filter, sort, paging and projection semantics
//! without restating them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value as Json, json};

use super::{
    CountQuery, EntityWrite, FieldChange, JournalOp, Store, TypeLayout, TypePhase, TypeState,
    WriteBatch, WriteOutcome,
};
use crate::filter::{Filter, parse_any, validate, validate_path};
use crate::model::{Date, DateTime, Entity, EntityRef, SiteSchema, Value};
use crate::query::{
    Direction, EntityCollection, FindQuery, MemorySource, Sort, reference_count, reference_find,
};

fn field_json(name: &str, dt: &str, valid_types: &[&str], valid_values: &[&str]) -> Json {
    json!({
        "name": {"value": name, "editable": true},
        "data_type": {"value": dt, "editable": false},
        "editable": {"value": true, "editable": false},
        "entity_type": {"value": "", "editable": false},
        "properties": {
            "default_value": {"value": null, "editable": true},
            "valid_types": {"value": valid_types, "editable": true},
            "valid_values": {"value": valid_values, "editable": true},
        },
    })
}

/// The fields of the test schema: `(type, field, data_type, valid_types)`.
const FIELDS: &[(&str, &str, &str, &[&str])] = &[
    ("Project", "name", "text", &[]),
    ("Project", "sg_status", "list", &[]),
    ("Project", "archived", "checkbox", &[]),
    ("HumanUser", "name", "text", &[]),
    ("HumanUser", "login", "text", &[]),
    ("HumanUser", "sg_status_list", "status_list", &[]),
    ("Sequence", "code", "text", &[]),
    ("Sequence", "project", "entity", &["Project"]),
    ("Sequence", "sg_status_list", "status_list", &[]),
    ("Asset", "code", "text", &[]),
    ("Asset", "project", "entity", &["Project"]),
    ("Asset", "sg_asset_type", "list", &[]),
    ("Asset", "sequences", "multi_entity", &["Sequence"]),
    ("Shot", "code", "text", &[]),
    ("Shot", "description", "text", &[]),
    ("Shot", "sg_status_list", "status_list", &[]),
    ("Shot", "project", "entity", &["Project"]),
    ("Shot", "sg_sequence", "entity", &["Sequence"]),
    ("Shot", "assets", "multi_entity", &["Asset"]),
    ("Shot", "sg_cut_in", "number", &[]),
    ("Shot", "sg_rate", "float", &[]),
    ("Shot", "sg_due", "date", &[]),
    ("Shot", "created_at", "date_time", &[]),
    ("Shot", "sg_flag", "checkbox", &[]),
    ("Shot", "sg_uuid", "uuid", &[]),
    ("Shot", "sg_kind", "entity_type", &[]),
    ("Shot", "sg_meta", "jsonb", &[]),
    ("Shot", "image", "image", &[]),
    ("Shot", "created_by", "entity", &["HumanUser", "ApiUser"]),
    ("Shot", "tag_list", "tag_list", &["Tag"]),
    ("Shot", "sg_addr", "addressing", &["HumanUser", "Group"]),
    ("Task", "content", "text", &[]),
    ("Task", "entity", "entity", &["Shot", "Asset"]),
    ("Task", "project", "entity", &["Project"]),
    ("Task", "sg_status_list", "status_list", &[]),
    ("Task", "due_date", "date", &[]),
    ("Task", "est_in_mins", "duration", &[]),
    ("Task", "task_assignees", "multi_entity", &["HumanUser"]),
    ("ApiUser", "firstname", "text", &[]),
];

/// The site schema every case (and the differential test) uses: a Shotgun-shaped subset with every
/// filterable data type the SQLite backend supports. `ApiUser` is in the schema but never cached.
pub fn test_schema() -> SiteSchema {
    let mut types: BTreeMap<&str, serde_json::Map<String, Json>> = BTreeMap::new();
    for (t, f, dt, vt) in FIELDS {
        types
            .entry(t)
            .or_default()
            .insert((*f).to_owned(), field_json(f, dt, vt, &[]));
    }
    for fields in types.values_mut() {
        fields.insert("id".into(), field_json("id", "number", &[], &[]));
    }
    let read: serde_json::Map<String, Json> = types
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Json::Object(v)))
        .collect();
    SiteSchema::from_json(&Json::Object(read), None).expect("the test schema is well formed")
}

/// The cached types of the test schema (all but `ApiUser`), with indexes on the usual filter fields.
pub fn test_layouts() -> Vec<TypeLayout> {
    let schema = test_schema();
    let indexed: &[(&str, &[&str])] = &[
        (
            "Shot",
            &[
                "code",
                "sg_status_list",
                "project",
                "sg_sequence",
                "sg_cut_in",
                "sg_due",
                "created_at",
            ],
        ),
        ("Task", &["entity", "project", "sg_status_list"]),
        ("Sequence", &["code", "project"]),
        ("Asset", &["code"]),
    ];
    ["Asset", "HumanUser", "Project", "Sequence", "Shot", "Task"]
        .iter()
        .map(|t| {
            let et = schema
                .entity(t)
                .expect("cached test types are in the test schema");
            TypeLayout {
                entity_type: (*t).to_owned(),
                fields: et
                    .fields
                    .values()
                    .filter(|f| f.name != "id")
                    .cloned()
                    .collect(),
                indexed: indexed
                    .iter()
                    .find(|(x, _)| x == t)
                    .map(|(_, fs)| fs.iter().map(|f| (*f).to_owned()).collect())
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// A link value.
pub fn link(t: &str, id: i64, name: &str) -> EntityRef {
    EntityRef {
        entity_type: t.to_owned(),
        id,
        name: Some(name.to_owned()),
    }
}

/// An entity with the given fields set (other cached fields are written empty by the store).
pub fn entity(t: &str, id: i64, fields: &[(&str, Value)]) -> Entity {
    let mut e = Entity::new(t, id);
    for (k, v) in fields {
        e.fields.insert((*k).to_owned(), v.clone());
    }
    e.display_name = ["code", "name", "content"]
        .iter()
        .find_map(|k| match e.fields.get(*k) {
            Some(Value::Text(s)) => Some(s.clone()),
            _ => None,
        });
    e
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn upsert(e: Entity, floor: i64, event_id: i64) -> EntityWrite {
    EntityWrite::Upsert {
        entity: e,
        floor,
        event_id,
    }
}

fn patch(t: &str, id: i64, event_id: i64, changes: Vec<FieldChange>) -> EntityWrite {
    EntityWrite::Patch {
        entity_type: t.into(),
        id,
        event_id,
        changes,
    }
}

fn set(f: &str, v: Value) -> FieldChange {
    FieldChange::Set(f.into(), v)
}

/// A batch of live writes that journals.
fn journaled(writes: Vec<EntityWrite>) -> WriteBatch {
    WriteBatch {
        writes,
        journal: true,
        ..WriteBatch::default()
    }
}

async fn prepared<S: Store>(s: &S) {
    s.prepare(&test_schema(), &test_layouts())
        .await
        .expect("prepare the test layouts");
}

async fn commit<S: Store>(s: &S, batch: WriteBatch) -> super::CommitResult {
    s.commit(batch).await.expect("commit a batch")
}

async fn get<S: Store>(s: &S, t: &str, id: i64) -> Entity {
    s.get(t, id)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("{t} {id} should exist"))
}

fn applied(op: JournalOp, fields: &[&str]) -> WriteOutcome {
    WriteOutcome::Applied {
        op,
        fields: fields.iter().map(|f| (*f).to_owned()).collect(),
    }
}

/// `prepare` persists the schema and the layouts, and is idempotent.
pub async fn prepare_persists_schema_and_layouts<S: Store>(s: &S) {
    assert_eq!(
        s.schema().await.expect("schema"),
        None,
        "a fresh store has no schema"
    );
    prepared(s).await;
    prepared(s).await;
    assert_eq!(s.schema().await.expect("schema"), Some(test_schema()));
    let mut got = s.layouts().await.expect("layouts");
    got.sort_by(|a, b| a.entity_type.cmp(&b.entity_type));
    assert_eq!(got, test_layouts());
    // A layout change (one field fewer, one index fewer) migrates in place and keeps the rows.
    commit(
        s,
        journaled(vec![upsert(
            entity(
                "Asset",
                1,
                &[("code", text("a1")), ("sg_asset_type", text("Prop"))],
            ),
            0,
            0,
        )]),
    )
    .await;
    let mut layouts = test_layouts();
    for l in &mut layouts {
        if l.entity_type == "Asset" {
            l.fields.retain(|f| f.name != "sg_asset_type");
            l.indexed.clear();
        }
    }
    s.prepare(&test_schema(), &layouts)
        .await
        .expect("prepare with a smaller Asset layout");
    let a = get(s, "Asset", 1).await;
    assert_eq!(a.get("code"), &text("a1"));
    assert!(
        !a.fields.contains_key("sg_asset_type"),
        "a dropped field is no longer read: {a:?}"
    );
}

/// An upsert creates the row, journals one `Create` with a snapshot, and `get` reads it back.
pub async fn upsert_creates_and_journals<S: Store>(s: &S) {
    prepared(s).await;
    let e = entity(
        "Shot",
        1,
        &[
            ("code", text("sh010")),
            ("sg_cut_in", Value::Int(1001)),
            ("sg_rate", Value::Float(23.976)),
            (
                "sg_due",
                Value::Date(Date::parse("2024-02-29").expect("valid date")),
            ),
            ("created_at", Value::DateTime(DateTime(1_700_000_000))),
            ("sg_flag", Value::Bool(true)),
            ("project", Value::Entity(link("Project", 1, "Alpha"))),
            (
                "assets",
                Value::MultiEntity(vec![link("Asset", 2, "b"), link("Asset", 1, "a")]),
            ),
            ("sg_meta", Value::Json(json!({"a": [1, 2]}))),
            ("image", Value::Int(77)),
        ],
    );
    let r = commit(s, journaled(vec![upsert(e.clone(), 0, 5)])).await;
    assert!(
        matches!(
            &r.outcomes[..],
            [WriteOutcome::Applied {
                op: JournalOp::Create,
                ..
            }]
        ),
        "{:?}",
        r.outcomes
    );
    assert_eq!(r.journal.len(), 1);
    let j = &r.journal[0];
    assert!(j.seq > 0);
    assert_eq!(
        (j.event_id, j.entity_type.as_str(), j.entity_id, j.op),
        (5, "Shot", 1, JournalOp::Create)
    );
    assert!(
        j.fields.contains(&"code".to_owned()) && j.fields.contains(&"assets".to_owned()),
        "{:?}",
        j.fields
    );
    let got = get(s, "Shot", 1).await;
    for (k, v) in &e.fields {
        assert_eq!(got.get(k), v, "field {k} reads back");
    }
    assert_eq!(
        got.get("description"),
        &Value::Null,
        "an uncarried field is empty"
    );
    assert_eq!(got.get("sg_status_list"), &Value::Null);
    assert_eq!(got.display_name.as_deref(), Some("sh010"));
    assert_eq!(got.last_event_id, 5);
    assert!(!got.retired);
    let snap = j.entity.as_ref().expect("a create carries a snapshot");
    assert_eq!(snap.get("code"), &text("sh010"));
    assert_eq!(snap.get("assets"), e.get("assets"));
    let back = s.journal_after(0, 10).await.expect("journal_after");
    assert_eq!(
        back, r.journal,
        "the journal reads back what commit returned"
    );
}

/// A second upsert with the same values changes nothing and journals nothing; a changed value
/// journals one `Update` naming exactly the changed fields.
pub async fn upsert_unchanged_and_update_fields<S: Store>(s: &S) {
    prepared(s).await;
    let e = entity(
        "Shot",
        1,
        &[("code", text("sh010")), ("sg_cut_in", Value::Int(1))],
    );
    commit(s, journaled(vec![upsert(e.clone(), 0, 0)])).await;
    let head = s.journal_head().await.expect("head");
    let r = commit(s, journaled(vec![upsert(e.clone(), 0, 0)])).await;
    assert_eq!(r.outcomes, vec![WriteOutcome::Unchanged]);
    assert!(r.journal.is_empty());
    assert_eq!(s.journal_head().await.expect("head"), head);
    let mut e2 = e.clone();
    e2.fields.insert("sg_cut_in".into(), Value::Int(2));
    e2.fields.insert("description".into(), text("new"));
    let r = commit(s, journaled(vec![upsert(e2, 0, 0)])).await;
    assert_eq!(
        r.outcomes,
        vec![applied(JournalOp::Update, &["description", "sg_cut_in"])]
    );
    assert_eq!(r.journal.len(), 1);
    assert_eq!(
        r.journal[0].fields,
        vec!["description".to_owned(), "sg_cut_in".to_owned()]
    );
    assert_eq!(
        r.journal[0].seq,
        head + 1,
        "sequence numbers are consecutive within one writer"
    );
}

/// Field patches are guarded per field: a stale event is ignored, fields of one entity may arrive
/// out of order, and a patch on a missing row is `Missing`.
pub async fn patch_version_guard<S: Store>(s: &S) {
    prepared(s).await;
    commit(
        s,
        journaled(vec![upsert(
            entity(
                "Shot",
                1,
                &[("code", text("a")), ("sg_cut_in", Value::Int(1))],
            ),
            0,
            0,
        )]),
    )
    .await;
    let r = commit(
        s,
        journaled(vec![patch("Shot", 1, 10, vec![set("code", text("b"))])]),
    )
    .await;
    assert_eq!(r.outcomes, vec![applied(JournalOp::Update, &["code"])]);
    assert_eq!(r.journal[0].event_id, 10);
    // Stale for `code` (10 > 5): ignored, nothing journaled.
    let r = commit(
        s,
        journaled(vec![patch("Shot", 1, 5, vec![set("code", text("stale"))])]),
    )
    .await;
    assert_eq!(r.outcomes, vec![WriteOutcome::Unchanged]);
    assert!(r.journal.is_empty());
    // An older event for another field still applies (fields commit out of order).
    let r = commit(
        s,
        journaled(vec![patch(
            "Shot",
            1,
            7,
            vec![set("sg_cut_in", Value::Int(2)), set("code", text("x"))],
        )]),
    )
    .await;
    assert_eq!(
        r.outcomes,
        vec![applied(JournalOp::Update, &["sg_cut_in"])],
        "only sg_cut_in is newer than its version"
    );
    let got = get(s, "Shot", 1).await;
    assert_eq!(got.get("code"), &text("b"));
    assert_eq!(got.get("sg_cut_in"), &Value::Int(2));
    assert_eq!(got.versions.get("code"), Some(&10));
    assert_eq!(got.versions.get("sg_cut_in"), Some(&7));
    assert_eq!(got.last_event_id, 10);
    assert_eq!(
        got.display_name.as_deref(),
        Some("b"),
        "patching the display field renames the entity"
    );
    // Same value, newer event: the version moves, nothing is journaled.
    let r = commit(
        s,
        journaled(vec![patch("Shot", 1, 12, vec![set("code", text("b"))])]),
    )
    .await;
    assert_eq!(r.outcomes, vec![WriteOutcome::Unchanged]);
    assert_eq!(get(s, "Shot", 1).await.versions.get("code"), Some(&12));
    let r = commit(
        s,
        journaled(vec![patch("Shot", 999, 13, vec![set("code", text("z"))])]),
    )
    .await;
    assert_eq!(r.outcomes, vec![WriteOutcome::Missing]);
    // Fields that are not cached are ignored.
    let r = commit(
        s,
        journaled(vec![patch(
            "Shot",
            1,
            14,
            vec![set("not_cached", text("z"))],
        )]),
    )
    .await;
    assert_eq!(r.outcomes, vec![WriteOutcome::Unchanged]);
}

/// An upsert raises every field version to its floor, so patches at or below it are ignored.
pub async fn upsert_floor<S: Store>(s: &S) {
    prepared(s).await;
    commit(
        s,
        journaled(vec![upsert(
            entity("Shot", 1, &[("code", text("a"))]),
            0,
            0,
        )]),
    )
    .await;
    commit(
        s,
        journaled(vec![patch(
            "Shot",
            1,
            150,
            vec![set("description", text("d150"))],
        )]),
    )
    .await;
    commit(
        s,
        journaled(vec![upsert(
            entity(
                "Shot",
                1,
                &[("code", text("b")), ("description", text("read"))],
            ),
            100,
            0,
        )]),
    )
    .await;
    let got = get(s, "Shot", 1).await;
    assert_eq!(got.get("code"), &text("b"), "an upsert replaces values");
    assert_eq!(got.get("description"), &text("read"));
    assert_eq!(got.versions.get("code"), Some(&100));
    assert_eq!(
        got.versions.get("sg_cut_in"),
        Some(&100),
        "every cached field is raised to the floor"
    );
    assert_eq!(
        got.versions.get("description"),
        Some(&150),
        "a version above the floor is kept"
    );
    assert_eq!(got.last_event_id, 150);
    let r = commit(
        s,
        journaled(vec![patch("Shot", 1, 100, vec![set("code", text("old"))])]),
    )
    .await;
    assert_eq!(
        r.outcomes,
        vec![WriteOutcome::Unchanged],
        "an event at the floor is already reflected"
    );
    let r = commit(
        s,
        journaled(vec![patch("Shot", 1, 101, vec![set("code", text("new"))])]),
    )
    .await;
    assert_eq!(r.outcomes, vec![applied(JournalOp::Update, &["code"])]);
    // `retired` from an upsert applies only when the retirement guard is not above the floor.
    commit(
        s,
        journaled(vec![EntityWrite::Retire {
            entity_type: "Shot".into(),
            id: 1,
            event_id: 300,
        }]),
    )
    .await;
    let mut live = entity("Shot", 1, &[("code", text("new"))]);
    live.retired = false;
    commit(s, journaled(vec![upsert(live.clone(), 200, 0)])).await;
    assert!(
        get(s, "Shot", 1).await.retired,
        "a retirement newer than the floor survives a re-read"
    );
    let r = commit(s, journaled(vec![upsert(live, 400, 0)])).await;
    assert_eq!(r.outcomes, vec![applied(JournalOp::Revive, &[])]);
    assert!(!get(s, "Shot", 1).await.retired);
}

/// Retire and revive are guarded by `retired_version`; retired rows are served only to
/// `retired_only` queries; writes to missing rows are `Missing`.
pub async fn retire_revive<S: Store>(s: &S) {
    prepared(s).await;
    commit(
        s,
        journaled(vec![upsert(
            entity("Shot", 1, &[("code", text("a"))]),
            0,
            0,
        )]),
    )
    .await;
    let retire = |e| EntityWrite::Retire {
        entity_type: "Shot".into(),
        id: 1,
        event_id: e,
    };
    let revive = |e| EntityWrite::Revive {
        entity_type: "Shot".into(),
        id: 1,
        event_id: e,
    };
    let r = commit(s, journaled(vec![retire(20)])).await;
    assert_eq!(r.outcomes, vec![applied(JournalOp::Retire, &[])]);
    assert_eq!(r.journal[0].op, JournalOp::Retire);
    assert!(r.journal[0].entity.as_ref().is_some_and(|e| e.retired));
    let got = get(s, "Shot", 1).await;
    assert!(got.retired && got.retired_version == 20);
    assert_eq!(
        find_ids(s, "Shot", json!([]), false).await,
        Vec::<i64>::new()
    );
    assert_eq!(find_ids(s, "Shot", json!([]), true).await, vec![1]);
    assert_eq!(s.ids("Shot", 0, 10).await.expect("ids"), vec![(1, true)]);
    assert_eq!(
        commit(s, journaled(vec![revive(15)])).await.outcomes,
        vec![WriteOutcome::Unchanged],
        "a stale revival is ignored"
    );
    assert_eq!(
        commit(s, journaled(vec![retire(21)])).await.outcomes,
        vec![WriteOutcome::Unchanged],
        "already retired"
    );
    assert_eq!(
        commit(s, journaled(vec![revive(25)])).await.outcomes,
        vec![applied(JournalOp::Revive, &[])]
    );
    assert!(!get(s, "Shot", 1).await.retired);
    let missing = EntityWrite::Retire {
        entity_type: "Shot".into(),
        id: 2,
        event_id: 30,
    };
    assert_eq!(
        commit(s, journaled(vec![missing])).await.outcomes,
        vec![WriteOutcome::Missing]
    );
}

/// `Remove` deletes the row (journaled without a snapshot); an older event than the row's last one
/// does not.
pub async fn remove<S: Store>(s: &S) {
    prepared(s).await;
    commit(
        s,
        journaled(vec![upsert(
            entity("Shot", 1, &[("code", text("a"))]),
            0,
            50,
        )]),
    )
    .await;
    let rm = |e| EntityWrite::Remove {
        entity_type: "Shot".into(),
        id: 1,
        event_id: e,
    };
    assert_eq!(
        commit(s, journaled(vec![rm(40)])).await.outcomes,
        vec![WriteOutcome::Unchanged],
        "stale removal"
    );
    assert!(s.get("Shot", 1).await.expect("get").is_some());
    let r = commit(s, journaled(vec![rm(50)])).await;
    assert_eq!(r.outcomes, vec![applied(JournalOp::Remove, &[])]);
    assert_eq!(
        (r.journal[0].op, r.journal[0].entity.clone()),
        (JournalOp::Remove, None)
    );
    assert_eq!(s.get("Shot", 1).await.expect("get"), None);
    assert_eq!(
        commit(s, journaled(vec![rm(0)])).await.outcomes,
        vec![WriteOutcome::Unchanged],
        "nothing left to remove"
    );
}

/// multi_entity `Add`/`Remove` patches append missing links and drop the given ones.
pub async fn multi_entity_add_remove<S: Store>(s: &S) {
    prepared(s).await;
    commit(
        s,
        journaled(vec![upsert(
            entity(
                "Shot",
                1,
                &[("assets", Value::MultiEntity(vec![link("Asset", 1, "a")]))],
            ),
            0,
            0,
        )]),
    )
    .await;
    let add = FieldChange::Add(
        "assets".into(),
        vec![link("Asset", 1, "a"), link("Asset", 2, "b")],
    );
    let r = commit(s, journaled(vec![patch("Shot", 1, 10, vec![add])])).await;
    assert_eq!(r.outcomes, vec![applied(JournalOp::Update, &["assets"])]);
    assert_eq!(
        get(s, "Shot", 1).await.get("assets"),
        &Value::MultiEntity(vec![link("Asset", 1, "a"), link("Asset", 2, "b")])
    );
    let rm = FieldChange::Remove("assets".into(), vec![EntityRef::new("Asset", 1)]);
    commit(s, journaled(vec![patch("Shot", 1, 11, vec![rm])])).await;
    assert_eq!(
        get(s, "Shot", 1).await.get("assets"),
        &Value::MultiEntity(vec![link("Asset", 2, "b")])
    );
    let reorder = Value::MultiEntity(vec![link("Asset", 2, "renamed")]);
    let r = commit(
        s,
        journaled(vec![patch(
            "Shot",
            1,
            12,
            vec![set("assets", reorder.clone())],
        )]),
    )
    .await;
    assert_eq!(
        r.outcomes,
        vec![WriteOutcome::Unchanged],
        "a stored-name change alone is not a change"
    );
    assert_eq!(
        get(s, "Shot", 1).await.get("assets"),
        &reorder,
        "but the new name is stored"
    );
    // Lists that share a prefix with the stored one: a full write, a removal from the middle, a
    // removal and an addition in one event. Filters on the field see exactly the current links.
    let has = |id: i64| json!([["assets", "is", {"type": "Asset", "id": id}]]);
    let four = Value::MultiEntity(vec![
        link("Asset", 2, "renamed"),
        link("Asset", 3, "c"),
        link("Asset", 4, "d"),
        link("Asset", 5, "e"),
    ]);
    commit(
        s,
        journaled(vec![upsert(
            entity("Shot", 1, &[("assets", four.clone())]),
            0,
            13,
        )]),
    )
    .await;
    assert_eq!(get(s, "Shot", 1).await.get("assets"), &four);
    let rm = FieldChange::Remove("assets".into(), vec![EntityRef::new("Asset", 3)]);
    commit(s, journaled(vec![patch("Shot", 1, 14, vec![rm])])).await;
    let swap = vec![
        FieldChange::Remove("assets".into(), vec![EntityRef::new("Asset", 4)]),
        FieldChange::Add("assets".into(), vec![link("Asset", 6, "f")]),
    ];
    commit(s, journaled(vec![patch("Shot", 1, 15, swap)])).await;
    let now = Value::MultiEntity(vec![
        link("Asset", 2, "renamed"),
        link("Asset", 5, "e"),
        link("Asset", 6, "f"),
    ]);
    assert_eq!(get(s, "Shot", 1).await.get("assets"), &now);
    for (asset, want) in [
        (2, vec![1]),
        (3, vec![]),
        (4, vec![]),
        (5, vec![1]),
        (6, vec![1]),
    ] {
        assert_eq!(
            find_ids(s, "Shot", has(asset), false).await,
            want,
            "Shot 1 links Asset {asset}?"
        );
    }
}

/// The journal: one entry per change, strictly increasing sequence numbers, nothing for a
/// non-journaling batch, paging, head, tail and trimming.
pub async fn journal_sequence_and_trim<S: Store>(s: &S) {
    prepared(s).await;
    assert_eq!(s.journal_head().await.expect("head"), 0);
    assert_eq!(s.journal_tail().await.expect("tail"), None);
    let quiet = WriteBatch {
        writes: vec![upsert(entity("Shot", 9, &[]), 0, 0)],
        journal: false,
        ..WriteBatch::default()
    };
    assert!(
        commit(s, quiet).await.journal.is_empty(),
        "a first-import batch journals nothing"
    );
    let writes = (1..=5)
        .map(|i| upsert(entity("Shot", i, &[("code", text(&format!("s{i}")))]), 0, i))
        .collect();
    let r = commit(s, journaled(writes)).await;
    assert_eq!(r.journal.len(), 5);
    assert!(
        r.journal.windows(2).all(|w| w[1].seq > w[0].seq),
        "strictly increasing"
    );
    let head = s.journal_head().await.expect("head");
    assert_eq!(head, r.journal[4].seq);
    let first = r.journal[0].seq;
    assert_eq!(s.journal_tail().await.expect("tail"), Some(first));
    let page = s.journal_after(first, 2).await.expect("journal_after");
    assert_eq!(
        page.iter().map(|j| j.entity_id).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert!(
        s.journal_after(head, 10)
            .await
            .expect("journal_after")
            .is_empty()
    );
    assert_eq!(
        s.trim_journal(DateTime(0)).await.expect("trim"),
        0,
        "nothing is older than 1970"
    );
    let n = s
        .trim_journal(DateTime(DateTime::now().0 + 3600))
        .await
        .expect("trim");
    assert_eq!(n, 5);
    assert_eq!(s.journal_tail().await.expect("tail"), None);
    assert_eq!(
        s.journal_head().await.expect("head"),
        head,
        "trimming does not move the head back"
    );
    let r = commit(
        s,
        journaled(vec![patch("Shot", 1, 9, vec![set("code", text("z"))])]),
    )
    .await;
    assert!(r.journal[0].seq > head, "sequence numbers are never reused");
}

/// Staging: writes to a staging copy are invisible until `promote_staging`, which swaps the copy
/// in, sets the type state and journals one `Reload`.
pub async fn staging_and_promote<S: Store>(s: &S) {
    prepared(s).await;
    commit(
        s,
        journaled(vec![upsert(
            entity("Sequence", 1, &[("code", text("old"))]),
            0,
            0,
        )]),
    )
    .await;
    let layout = test_layouts()
        .into_iter()
        .find(|l| l.entity_type == "Sequence")
        .expect("Sequence layout");
    s.begin_staging(&layout).await.expect("begin_staging");
    let staged = WriteBatch {
        staging: vec![upsert(
            entity("Sequence", 2, &[("code", text("new"))]),
            0,
            0,
        )],
        journal: true,
        ..WriteBatch::default()
    };
    assert!(
        commit(s, staged).await.journal.is_empty(),
        "staging writes are never journaled"
    );
    assert_eq!(
        find_ids(s, "Sequence", json!([]), false).await,
        vec![1],
        "the live copy is still served"
    );
    assert!(s.get("Sequence", 2).await.expect("get").is_none());
    let head = s.journal_head().await.expect("head");
    let state = TypeState {
        entity_type: "Sequence".into(),
        phase: TypePhase::Ready,
        done: 1,
        total: 1,
        config_hash: "h2".into(),
        ready_at: Some(DateTime(1_700_000_000)),
    };
    s.promote_staging(state.clone()).await.expect("promote");
    assert_eq!(find_ids(s, "Sequence", json!([]), false).await, vec![2]);
    assert!(s.get("Sequence", 1).await.expect("get").is_none());
    assert_eq!(s.type_states().await.expect("type_states"), vec![state]);
    let j = s.journal_after(head, 10).await.expect("journal_after");
    assert_eq!(j.len(), 1);
    assert_eq!(
        (
            j[0].op,
            j[0].entity_type.as_str(),
            j[0].entity_id,
            j[0].entity.clone()
        ),
        (JournalOp::Reload, "Sequence", 0, None)
    );
    // A new staging round drops an unpromoted copy.
    s.begin_staging(&layout).await.expect("begin_staging");
    let staged = WriteBatch {
        staging: vec![upsert(entity("Sequence", 3, &[]), 0, 0)],
        ..WriteBatch::default()
    };
    commit(s, staged).await;
    s.begin_staging(&layout).await.expect("begin_staging again");
    s.promote_staging(TypeState {
        config_hash: "h3".into(),
        ..s.type_states().await.expect("states")[0].clone()
    })
    .await
    .expect("promote an empty copy");
    assert_eq!(
        find_ids(s, "Sequence", json!([]), false).await,
        Vec::<i64>::new()
    );
}

/// Link names are live (renaming the target renames every link) and links to retired targets are
/// absent, in values and in filters; reviving brings them back.
pub async fn link_rule<S: Store>(s: &S) {
    prepared(s).await;
    commit(
        s,
        journaled(vec![
            upsert(entity("Sequence", 10, &[("code", text("SQ10"))]), 0, 0),
            upsert(entity("Asset", 1, &[("code", text("a1"))]), 0, 0),
            upsert(entity("Asset", 2, &[("code", text("a2"))]), 0, 0),
            upsert(
                entity(
                    "Shot",
                    1,
                    &[
                        (
                            "sg_sequence",
                            Value::Entity(link("Sequence", 10, "stale name")),
                        ),
                        (
                            "assets",
                            Value::MultiEntity(vec![link("Asset", 1, "x"), link("Asset", 2, "y")]),
                        ),
                        ("created_by", Value::Entity(link("ApiUser", 5, "script"))),
                    ],
                ),
                0,
                0,
            ),
        ]),
    )
    .await;
    let fields = [
        "sg_sequence",
        "assets",
        "created_by",
        "sg_sequence.Sequence.code",
    ];
    let rec = &find(s, "Shot", json!([]), &fields, &[]).await[0];
    assert_eq!(
        rec.fields["sg_sequence"],
        Value::Entity(link("Sequence", 10, "SQ10")),
        "the live name"
    );
    assert_eq!(
        rec.fields["assets"],
        Value::MultiEntity(vec![link("Asset", 1, "a1"), link("Asset", 2, "a2")])
    );
    assert_eq!(
        rec.fields["created_by"],
        Value::Entity(link("ApiUser", 5, "script")),
        "uncached type: stored name"
    );
    commit(
        s,
        journaled(vec![patch(
            "Sequence",
            10,
            5,
            vec![set("code", text("SQ10-renamed"))],
        )]),
    )
    .await;
    let rec = &find(s, "Shot", json!([]), &fields, &[]).await[0];
    assert_eq!(
        rec.fields["sg_sequence"],
        Value::Entity(link("Sequence", 10, "SQ10-renamed"))
    );
    assert_eq!(
        rec.fields["sg_sequence.Sequence.code"],
        text("SQ10-renamed")
    );
    assert_eq!(
        find_ids(
            s,
            "Shot",
            json!([["sg_sequence", "name_is", "sq10-RENAMED"]]),
            false
        )
        .await,
        vec![1]
    );
    commit(
        s,
        journaled(vec![
            EntityWrite::Retire {
                entity_type: "Sequence".into(),
                id: 10,
                event_id: 6,
            },
            EntityWrite::Retire {
                entity_type: "Asset".into(),
                id: 1,
                event_id: 6,
            },
        ]),
    )
    .await;
    let rec = &find(s, "Shot", json!([]), &fields, &[]).await[0];
    assert_eq!(
        rec.fields["sg_sequence"],
        Value::Null,
        "a link to a retired target reads null"
    );
    assert_eq!(rec.fields["sg_sequence.Sequence.code"], Value::Null);
    assert_eq!(
        rec.fields["assets"],
        Value::MultiEntity(vec![link("Asset", 2, "a2")]),
        "retired elements are dropped"
    );
    let seq10 = json!({"type": "Sequence", "id": 10});
    assert!(
        find_ids(s, "Shot", json!([["sg_sequence", "is", seq10]]), false)
            .await
            .is_empty()
    );
    assert_eq!(
        find_ids(s, "Shot", json!([["sg_sequence", "is", null]]), false).await,
        vec![1]
    );
    assert!(
        find_ids(
            s,
            "Shot",
            json!([["assets", "is", {"type": "Asset", "id": 1}]]),
            false
        )
        .await
        .is_empty()
    );
    commit(
        s,
        journaled(vec![EntityWrite::Revive {
            entity_type: "Sequence".into(),
            id: 10,
            event_id: 7,
        }]),
    )
    .await;
    assert_eq!(
        find_ids(s, "Shot", json!([["sg_sequence", "is", seq10]]), false).await,
        vec![1],
        "revived"
    );
}

/// Type states and state keys are written with a batch and read back; later writes replace them.
pub async fn type_states_and_state_keys<S: Store>(s: &S) {
    prepared(s).await;
    assert!(s.type_states().await.expect("type_states").is_empty());
    assert_eq!(s.get_state("cursor").await.expect("get_state"), None);
    let st = |t: &str, phase| TypeState {
        entity_type: t.into(),
        phase,
        done: 3,
        total: 10,
        config_hash: format!("hash-{t}"),
        ready_at: None,
    };
    let mut batch = WriteBatch {
        type_states: vec![
            st("Shot", TypePhase::Importing),
            st("Asset", TypePhase::Ready),
        ],
        ..WriteBatch::default()
    };
    batch.state.insert(
        "cursor".into(),
        json!({"low_water": 100, "seen": [101, 103]}),
    );
    commit(s, batch).await;
    let mut got = s.type_states().await.expect("type_states");
    got.sort_by(|a, b| a.entity_type.cmp(&b.entity_type));
    assert_eq!(
        got,
        vec![
            st("Asset", TypePhase::Ready),
            st("Shot", TypePhase::Importing)
        ]
    );
    assert_eq!(
        s.get_state("cursor").await.expect("get_state"),
        Some(json!({"low_water": 100, "seen": [101, 103]}))
    );
    let mut ready = st("Shot", TypePhase::Ready);
    ready.ready_at = Some(DateTime(1_700_000_000));
    let mut batch = WriteBatch {
        type_states: vec![ready.clone()],
        ..WriteBatch::default()
    };
    batch.state.insert("cursor".into(), json!(7));
    commit(s, batch).await;
    let got = s.type_states().await.expect("type_states");
    assert!(got.contains(&ready) && got.len() == 2, "{got:?}");
    assert_eq!(
        s.get_state("cursor").await.expect("get_state"),
        Some(json!(7))
    );
}

/// `ids` pages through every row (retired included) and `type_counts` counts live and retired rows.
pub async fn ids_and_type_counts<S: Store>(s: &S) {
    prepared(s).await;
    let writes = (1..=7)
        .map(|i| upsert(entity("Asset", i * 10, &[]), 0, 0))
        .collect();
    commit(s, journaled(writes)).await;
    commit(
        s,
        journaled(vec![EntityWrite::Retire {
            entity_type: "Asset".into(),
            id: 30,
            event_id: 1,
        }]),
    )
    .await;
    assert_eq!(
        s.ids("Asset", 0, 3).await.expect("ids"),
        vec![(10, false), (20, false), (30, true)]
    );
    assert_eq!(s.ids("Asset", 30, 100).await.expect("ids").len(), 4);
    let counts = s.type_counts().await.expect("type_counts");
    assert_eq!(counts.get("Asset"), Some(&(6, 1)));
    assert_eq!(counts.get("Shot"), Some(&(0, 0)));
    s.ping().await.expect("ping");
}

/// `wait_journal` returns as soon as the head passes `after`, and the current head on timeout.
pub async fn wait_journal<S: Store + Clone>(s: &S) {
    prepared(s).await;
    let head = s.journal_head().await.expect("head");
    let t0 = std::time::Instant::now();
    assert_eq!(
        s.wait_journal(head, Duration::from_millis(100))
            .await
            .expect("wait"),
        head
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(90),
        "waited for the timeout"
    );
    let writer = s.clone();
    let task = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        writer
            .commit(journaled(vec![upsert(entity("Shot", 1, &[]), 0, 0)]))
            .await
    });
    let t0 = std::time::Instant::now();
    let got = s
        .wait_journal(head, Duration::from_secs(10))
        .await
        .expect("wait");
    assert!(got > head, "woke with a new head");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "woke promptly, not at the timeout"
    );
    task.await.expect("writer task").expect("commit");
}

/// Parses and validates a filter against the test schema.
pub fn filter(entity_type: &str, f: Json) -> Filter {
    let raw = parse_any(&f).unwrap_or_else(|e| panic!("filter {f} parses: {e}"));
    validate(&test_schema(), entity_type, &raw)
        .unwrap_or_else(|e| panic!("filter {f} is valid: {e}"))
}

fn query(entity_type: &str, f: Json, fields: &[&str], sorts: &[(&str, Direction)]) -> FindQuery {
    let schema = test_schema();
    let path = |p: &str| {
        validate_path(&schema, entity_type, p).unwrap_or_else(|e| panic!("path {p}: {e}"))
    };
    FindQuery {
        entity_type: entity_type.into(),
        filter: filter(entity_type, f),
        fields: fields.iter().map(|p| path(p)).collect(),
        sorts: sorts
            .iter()
            .map(|(p, d)| Sort {
                path: path(p),
                direction: *d,
            })
            .collect(),
        offset: 0,
        limit: None,
        retired_only: false,
    }
}

async fn find<S: Store>(
    s: &S,
    t: &str,
    f: Json,
    fields: &[&str],
    sorts: &[(&str, Direction)],
) -> Vec<crate::query::Record> {
    s.find(&query(t, f, fields, sorts)).await.expect("find")
}

async fn find_ids<S: Store>(s: &S, t: &str, f: Json, retired_only: bool) -> Vec<i64> {
    let mut q = query(t, f, &[], &[]);
    q.retired_only = retired_only;
    s.find(&q)
        .await
        .expect("find")
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// Reads every row of every cached type back into a [`MemorySource`] (for the reference find).
pub async fn snapshot<S: Store>(s: &S) -> MemorySource {
    let mut src = MemorySource::new();
    for l in s.layouts().await.expect("layouts") {
        src.declare_type(l.entity_type.clone());
        let mut after = 0;
        loop {
            let ids = s.ids(&l.entity_type, after, 1000).await.expect("ids");
            let Some(last) = ids.last() else { break };
            after = last.0;
            for (id, _) in ids {
                if let Some(e) = s.get(&l.entity_type, id).await.expect("get") {
                    src.insert(e);
                }
            }
        }
    }
    src
}

/// A deterministic, varied data set over the test layouts (dates around `now`).
pub fn sample_writes(now: DateTime) -> Vec<EntityWrite> {
    let day = 86_400;
    let mut w = Vec::new();
    let mut up = |e: Entity| w.push(upsert(e, 0, 0));
    up(entity(
        "Project",
        1,
        &[("name", text("Alpha")), ("sg_status", text("Active"))],
    ));
    up(entity(
        "Project",
        2,
        &[("name", text("beta")), ("archived", Value::Bool(true))],
    ));
    up(entity(
        "HumanUser",
        40,
        &[("name", text("Ann Lee")), ("login", text("ann"))],
    ));
    up(entity(
        "HumanUser",
        41,
        &[("name", text("Bob")), ("login", text("bob"))],
    ));
    let seq_codes = ["SQ010", "sq020", "Ωmega", "ÄRGER", "Οδυσσεας"];
    for (i, code) in seq_codes.iter().enumerate() {
        let i = i as i64;
        up(entity(
            "Sequence",
            10 + i,
            &[
                ("code", text(code)),
                ("project", Value::Entity(link("Project", 1 + i % 2, "p"))),
                (
                    "sg_status_list",
                    text(if i % 2 == 0 { "ip" } else { "fin" }),
                ),
            ],
        ));
    }
    for i in 0..6 {
        up(entity(
            "Asset",
            20 + i,
            &[
                ("code", text(&format!("asset_{i}"))),
                ("project", Value::Entity(link("Project", 1, "Alpha"))),
                (
                    "sg_asset_type",
                    text(["Prop", "Character", "prop"][i as usize % 3]),
                ),
                (
                    "sequences",
                    Value::MultiEntity((0..i % 3).map(|k| link("Sequence", 10 + k, "s")).collect()),
                ),
            ],
        ));
    }
    let statuses = ["ip", "fin", "wtg", "IP"];
    let descs = [
        "Hero shot",
        "crowd",
        "",
        "night HERO",
        "Ünïcode straße",
        "ΑΣ greek",
    ];
    for i in 0..40_i64 {
        let mut fields = vec![
            ("code", text(&format!("sh{:03}", (i * 7) % 40))),
            (
                "sg_status_list",
                if i % 9 == 4 {
                    Value::Null
                } else {
                    text(statuses[i as usize % 4])
                },
            ),
            (
                "project",
                if i % 11 == 3 {
                    Value::Null
                } else {
                    Value::Entity(link("Project", 1 + i % 2, "p"))
                },
            ),
            (
                "sg_cut_in",
                if i % 5 == 0 {
                    Value::Null
                } else {
                    Value::Int(1000 + (i * 37) % 50)
                },
            ),
            (
                "sg_rate",
                if i % 6 == 0 {
                    Value::Null
                } else {
                    Value::Float(((i * 13) % 10) as f64 / 4.0 + 0.0000004)
                },
            ),
            (
                "sg_due",
                if i % 7 == 0 {
                    Value::Null
                } else {
                    Value::Date(
                        Date::from_days_since_epoch(now.0.div_euclid(day) + (i % 40) - 20)
                            .expect("date in range"),
                    )
                },
            ),
            (
                "created_at",
                Value::DateTime(DateTime(now.0 - (i - 20) * (day / 2) - 3600 * 5)),
            ),
            ("sg_flag", Value::Bool(i % 3 == 0)),
            (
                "assets",
                Value::MultiEntity(
                    (0..i % 4)
                        .map(|k| link("Asset", 20 + (i + k) % 6, "a"))
                        .collect(),
                ),
            ),
            ("sg_kind", text(if i % 2 == 0 { "Shot" } else { "shot" })),
            (
                "sg_meta",
                if i % 4 == 0 {
                    Value::Null
                } else {
                    Value::Json(json!({"k": i % 3, "tags": ["a", "b"]}))
                },
            ),
            (
                "sg_uuid",
                if i % 5 == 1 {
                    Value::Null
                } else {
                    text(&format!("0000000{}-0000-0000-0000-0000000000AB", i % 3))
                },
            ),
        ];
        if i % 8 != 5 {
            fields.push((
                "sg_sequence",
                Value::Entity(link("Sequence", 10 + i % 4, "stale")),
            ));
        }
        let desc = descs[i as usize % descs.len()];
        fields.push((
            "description",
            if desc.is_empty() {
                Value::Null
            } else {
                text(desc)
            },
        ));
        // tag_list: tag names (one Greek, for the sigma fold) and a Tag link; addressing: links to a
        // live user with a stale stored name, to a user retired by `find_matches_reference`, and
        // to an uncached Group.
        fields.push((
            "tag_list",
            match i % 5 {
                0 => Value::Null,
                1 => Value::Json(json!(["Hero", "night"])),
                2 => Value::Json(json!([])),
                3 => Value::Json(json!(["ΑΣ", "νυχτας"])),
                _ => Value::Json(json!([{"type": "Tag", "id": 7, "name": "Crowd"}, "x"])),
            },
        ));
        fields.push((
            "sg_addr",
            match i % 4 {
                0 => Value::Null,
                1 => Value::Json(json!([{"type": "HumanUser", "id": 40, "name": "stale"}])),
                2 => Value::Json(json!([
                    {"type": "Group", "id": 3, "name": "Lighting"},
                    {"type": "HumanUser", "id": 41, "name": "Bob"}
                ])),
                _ => Value::Json(json!([{"type": "HumanUser", "id": 41, "name": "Bob"}])),
            },
        ));
        if i % 10 == 2 {
            fields.push(("created_by", Value::Entity(link("ApiUser", 3, "script"))));
        } else if i % 3 == 1 {
            fields.push((
                "created_by",
                Value::Entity(link("HumanUser", 40 + i % 2, "u")),
            ));
        }
        let mut e = entity("Shot", 100 + i, &fields);
        e.retired = i % 13 == 12;
        up(e);
    }
    for i in 0..20_i64 {
        up(entity(
            "Task",
            200 + i,
            &[
                (
                    "content",
                    text(["Anim", "Comp", "light", "FX"][i as usize % 4]),
                ),
                (
                    "entity",
                    if i % 3 == 2 {
                        Value::Entity(link("Asset", 20 + i % 6, "a"))
                    } else {
                        Value::Entity(link("Shot", 100 + i * 2, "s"))
                    },
                ),
                ("sg_status_list", text(statuses[i as usize % 4])),
                ("est_in_mins", Value::Int(i * 30)),
                (
                    "task_assignees",
                    Value::MultiEntity(
                        (0..i % 3).map(|k| link("HumanUser", 40 + k, "u")).collect(),
                    ),
                ),
            ],
        ));
    }
    w
}

/// One find checked against the reference: `(type, filter, fields, sorts, offset, limit)`.
type FindCase = (
    &'static str,
    Json,
    Vec<&'static str>,
    Vec<(&'static str, Direction)>,
    u64,
    Option<u64>,
);

/// The finds checked against the reference.
fn representative_finds() -> Vec<FindCase> {
    use Direction::{Asc, Desc};
    let p1 = json!({"type": "Project", "id": 1});
    let sq10 = json!({"type": "Sequence", "id": 10});
    vec![
        ("Shot", json!([]), vec!["code"], vec![], 0, None),
        (
            "Shot",
            json!([["project", "is", p1], ["sg_status_list", "is", "ip"]]),
            vec!["code", "project"],
            vec![],
            0,
            Some(5),
        ),
        (
            "Shot",
            json!([["sg_status_list", "in", ["IP", "fin"]]]),
            vec![],
            vec![("code", Desc)],
            2,
            Some(4),
        ),
        (
            "Shot",
            json!([["sg_status_list", "is_not", "ip"]]),
            vec!["sg_status_list"],
            vec![("sg_status_list", Asc)],
            0,
            None,
        ),
        (
            "Shot",
            json!([["sg_status_list", "is", null]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["description", "contains", "hero"]]),
            vec!["description"],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["description", "not_contains", "HERO"]]),
            vec![],
            vec![("description", Desc)],
            0,
            None,
        ),
        (
            "Shot",
            json!([["description", "starts_with", "üNï"]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["description", "ends_with", "STRASSE"]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["description", "contains", "σ"]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["sg_cut_in", "between", [1040, 1010]]]),
            vec!["sg_cut_in"],
            vec![("sg_cut_in", Desc)],
            0,
            None,
        ),
        (
            "Shot",
            json!([
                ["sg_cut_in", "greater_than", 1025],
                ["sg_cut_in", "less_than", 1045]
            ]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["sg_cut_in", "not_in", [1037, 1024]]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["sg_rate", "is", 1.0]]),
            vec!["sg_rate"],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["sg_rate", "greater_than", 1.5]]),
            vec![],
            vec![("sg_rate", Asc)],
            0,
            None,
        ),
        (
            "Shot",
            json!([["sg_due", "in_last", [5, "DAY"]]]),
            vec!["sg_due"],
            vec![("sg_due", Asc)],
            0,
            None,
        ),
        (
            "Shot",
            json!([["sg_due", "not_in_next", [1, "WEEK"]]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["created_at", "in_calendar_month", 0]]),
            vec![],
            vec![("created_at", Desc)],
            0,
            None,
        ),
        (
            "Shot",
            json!([["created_at", "in_last", [3, "DAY"]]]),
            vec!["created_at"],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["sg_flag", "is", false]]),
            vec!["sg_flag"],
            vec![("sg_flag", Desc), ("code", Asc)],
            0,
            None,
        ),
        (
            "Shot",
            json!([["sg_sequence", "is", sq10]]),
            vec!["sg_sequence"],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["sg_sequence", "name_contains", "mega"]]),
            vec![],
            vec![("sg_sequence", Asc)],
            0,
            None,
        ),
        (
            "Shot",
            json!([["sg_sequence.Sequence.code", "contains", "sq0"]]),
            vec!["sg_sequence.Sequence.code"],
            vec![("sg_sequence.Sequence.code", Desc)],
            0,
            None,
        ),
        (
            "Shot",
            json!([["sg_sequence.Sequence.project.Project.name", "is", "BETA"]]),
            vec!["sg_sequence.Sequence.project.Project.name"],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["sg_sequence.Sequence.sg_status_list", "is_not", "ip"]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["assets", "is", {"type": "Asset", "id": 21}]]),
            vec!["assets"],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["assets", "is", null]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["assets", "not_in", [{"type": "Asset", "id": 21}, {"type": "Asset", "id": 22}]]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["assets", "name_starts_with", "ASSET_2"]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["assets.Asset.sg_asset_type", "is", "prop"]]),
            vec!["assets.Asset.code"],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["assets.Asset.sequences.Sequence.code", "is", "sq020"]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["created_by", "type_is", "ApiUser"]]),
            vec!["created_by", "created_by.HumanUser.login"],
            vec![("created_by", Desc)],
            0,
            None,
        ),
        (
            "Shot",
            json!([["created_by", "type_is_not", "HumanUser"]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["created_by.HumanUser.login", "is", null]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["sg_kind", "is", "Shot"]]),
            vec!["sg_kind"],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["sg_uuid", "is", "{00000001-0000-0000-0000-0000000000ab}"]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["sg_meta", "contains", {"k": 1}]]),
            vec!["sg_meta"],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["sg_meta", "is", null]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["image", "is_not", null]]),
            vec!["image"],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["id", "in", [101, 105, 130, 999]]]),
            vec!["id"],
            vec![("id", Desc)],
            0,
            None,
        ),
        // Wide groups of deep links (one subquery or join each), many sort keys, a long text list.
        (
            "Shot",
            json!({"logical_operator": "or", "conditions": (1..=300)
                .map(|i| json!(["sg_sequence.Sequence.project.Project.name", "is", format!("p{i}")]))
                .collect::<Vec<_>>()}),
            vec!["sg_sequence.Sequence.project.Project.name", "code"],
            vec![
                ("sg_sequence.Sequence.code", Desc),
                ("project.Project.name", Asc),
                ("code", Asc),
                ("sg_due", Desc),
                ("sg_rate", Asc),
                ("created_at", Asc),
                ("sg_flag", Asc),
                ("sg_status_list", Asc),
                ("sg_sequence.Sequence.project.Project.name", Desc),
            ],
            0,
            None,
        ),
        (
            "Shot",
            json!({"logical_operator": "and", "conditions": (1..=100)
                .map(|i| json!(["assets.Asset.sequences.Sequence.code", "not_contains", format!("x{i}")]))
                .collect::<Vec<_>>()}),
            vec!["assets", "code"],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([[
                "code",
                "in",
                (1..=5000).map(|i| format!("sh{i:02}")).collect::<Vec<_>>()
            ]]),
            vec!["code"],
            vec![],
            0,
            None,
        ),
        (
            "Task",
            json!({"logical_operator": "or", "conditions": (1..=80)
                .map(|i| json!(["entity.Shot.sg_sequence.Sequence.project.Project.name", "starts_with", format!("p{i}")]))
                .collect::<Vec<_>>()}),
            vec![
                "entity.Shot.sg_sequence.Sequence.project.Project.name",
                "entity.Shot.code",
                "entity.Asset.code",
                "project.Project.name",
            ],
            vec![("entity.Shot.sg_sequence.Sequence.code", Asc)],
            0,
            None,
        ),
        // Long value lists and wide groups (a SQL backend must not nest them as deep as they are
        // long: SQLite refuses expressions deeper than 1,000).
        (
            "Shot",
            json!([["id", "in", (1..=2500).collect::<Vec<i64>>()]]),
            vec!["code"],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([[
                "sg_sequence",
                "in",
                (1..=1100)
                    .map(|i| json!({"type": "Sequence", "id": i}))
                    .collect::<Vec<_>>()
            ]]),
            vec!["sg_sequence"],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!({"logical_operator": "or", "conditions": (1..=1200)
                .map(|i| json!(["id", "is", i * 3]))
                .collect::<Vec<_>>()}),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!({"logical_operator": "and", "conditions": (1..=1200)
                .map(|i| json!(["id", "is_not", i * 3]))
                .collect::<Vec<_>>()}),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!({"logical_operator": "or", "conditions": [
                ["code", "starts_with", "sh01"],
                {"logical_operator": "and", "conditions": [["sg_flag", "is", true], ["sg_cut_in", "is_not", null]]}
            ]}),
            vec!["code", "sg_flag"],
            vec![("project", Asc), ("code", Desc)],
            1,
            Some(7),
        ),
        (
            "Shot",
            json!({"logical_operator": "or", "conditions": []}),
            vec![],
            vec![],
            0,
            Some(3),
        ),
        (
            "Task",
            json!([["entity.Shot.sg_sequence.Sequence.code", "starts_with", "sq"]]),
            vec!["entity", "entity.Shot.code"],
            vec![("entity", Asc)],
            0,
            None,
        ),
        (
            "Task",
            json!([["entity", "type_is", "Asset"]]),
            vec!["entity.Asset.code", "entity.Shot.code"],
            vec![("content", Asc)],
            0,
            None,
        ),
        (
            "Task",
            json!([["task_assignees.HumanUser.name", "contains", "ann"]]),
            vec!["task_assignees"],
            vec![("est_in_mins", Desc)],
            0,
            None,
        ),
        (
            "Task",
            json!([["task_assignees", "type_is_not", "HumanUser"]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Asset",
            json!([["sequences", "name_is", "ωMEGA"]]),
            vec!["sequences"],
            vec![("sg_asset_type", Asc)],
            0,
            None,
        ),
        // Final sigma: `Σ`, `σ` and `ς` are one letter (`eval::fold`), also through the index on
        // `Sequence.code`.
        (
            "Sequence",
            json!([["code", "is", "ΟΔΥΣΣΕΑΣ"]]),
            vec!["code"],
            vec![],
            0,
            None,
        ),
        (
            "Sequence",
            json!([["code", "in", ["οδυσσεασ", "sq010"]]]),
            vec![],
            vec![("code", Desc)],
            0,
            None,
        ),
        (
            "Shot",
            json!([["description", "is", "ας GREEK"]]),
            vec!["description"],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["description", "starts_with", "ασ g"]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["description", "not_contains", "ς"]]),
            vec![],
            vec![],
            0,
            None,
        ),
        // tag_list and addressing (JSON arrays of names and links).
        (
            "Shot",
            json!([["tag_list", "is", "NIGHT"]]),
            vec!["tag_list"],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["tag_list", "is", {"type": "Tag", "id": 7}]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["tag_list", "is_not", null]]),
            vec![],
            vec![("code", Asc)],
            0,
            Some(6),
        ),
        (
            "Shot",
            json!([["tag_list", "name_contains", "ΤΑΣ"]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["tag_list", "name_not_contains", "her"]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["sg_addr", "is", {"type": "HumanUser", "id": 40}]]),
            vec!["sg_addr"],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["sg_addr", "is", null]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["sg_addr", "not_contains", {"type": "Group", "id": 3}]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["sg_addr", "in", [{"type": "HumanUser", "id": 41}, {"type": "Group", "id": 3}]]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["sg_addr", "type_is_not", "Group"]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([
                ["sg_addr", "name_starts_with", "ANN"],
                ["sg_status_list", "is", "ip"]
            ]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Shot",
            json!([["sg_addr", "name_ends_with", "ting"]]),
            vec![],
            vec![],
            0,
            None,
        ),
        (
            "Sequence",
            json!([["project.Project.archived", "is", false]]),
            vec!["project.Project.name"],
            vec![("code", Asc)],
            0,
            None,
        ),
    ]
}

/// Finds and counts over a varied data set equal the reference implementation (ids, order, values).
pub async fn find_matches_reference<S: Store>(s: &S) {
    prepared(s).await;
    let now = DateTime::now();
    commit(s, journaled(sample_writes(now))).await;
    // Retire some link targets so the link rule is exercised.
    commit(
        s,
        journaled(vec![
            EntityWrite::Retire {
                entity_type: "Sequence".into(),
                id: 13,
                event_id: 1,
            },
            EntityWrite::Retire {
                entity_type: "Asset".into(),
                id: 22,
                event_id: 1,
            },
            EntityWrite::Retire {
                entity_type: "HumanUser".into(),
                id: 41,
                event_id: 1,
            },
        ]),
    )
    .await;
    let src = snapshot(s).await;
    let (mut selective, mut total) = (0, 0);
    for (t, f, fields, sorts, offset, limit) in representative_finds() {
        let mut q = query(t, f.clone(), &fields, &sorts);
        q.offset = offset;
        q.limit = limit;
        let want = reference_find(&src, &q, now);
        let got = s
            .find(&q)
            .await
            .unwrap_or_else(|e| panic!("find {t} {f}: {e}"));
        assert_eq!(
            got, want,
            "find {t} {f} fields {fields:?} sorts {sorts:?} offset {offset} limit {limit:?}"
        );
        total += 1;
        selective += usize::from(!want.is_empty() && want.len() < src.all_of_type(t).len());
        let cq = CountQuery {
            entity_type: t.into(),
            filter: q.filter.clone(),
            retired_only: false,
            now,
        };
        let n = s
            .count(&cq)
            .await
            .unwrap_or_else(|e| panic!("count {t} {f}: {e}"));
        assert_eq!(
            n,
            reference_count(&src, t, &q.filter, false, now),
            "count {t} {f}"
        );
        q.retired_only = true;
        q.limit = None;
        q.offset = 0;
        let got = s
            .find(&q)
            .await
            .unwrap_or_else(|e| panic!("find retired {t} {f}: {e}"));
        assert_eq!(
            got,
            reference_find(&src, &q, now),
            "retired_only find {t} {f}"
        );
    }
    assert!(
        selective * 4 >= total * 3,
        "the sample data should make most finds select some but not all rows ({selective} of {total})"
    );
}

/// Generates one `#[tokio::test]` per conformance case. `$factory` is an async fn returning
/// `(store, guard)` for a fresh, empty store; the guard lives until the test ends.
#[macro_export]
macro_rules! store_conformance_tests {
    ($factory:path) => {
        $crate::store_conformance_tests!(@cases $factory;
            prepare_persists_schema_and_layouts,
            upsert_creates_and_journals,
            upsert_unchanged_and_update_fields,
            patch_version_guard,
            upsert_floor,
            retire_revive,
            remove,
            multi_entity_add_remove,
            journal_sequence_and_trim,
            staging_and_promote,
            link_rule,
            type_states_and_state_keys,
            ids_and_type_counts,
            wait_journal,
            find_matches_reference,
        );
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $factory().await;
                $crate::store::conformance::$case(&store).await;
            }
        )*
    };
}
