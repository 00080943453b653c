//! The RethinkDB backend against a ReQL server: the store contract (writes, guard, journal,
//! staging, reads) and a seeded differential test of find/count against the reference semantics.
//!
//! Server: `SHOTGUN_CACHE_TEST_RETHINKDB=host:port` (a real RethinkDB) or
//! `SHOTGUN_CACHE_TEST_REQLITE=host:port` (the reqlite test server `scripts/test-rethinkdb` starts).
//! With neither set every test prints a loud SKIPPED line and passes. Each test uses its own
//! database (random name) and drops it at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value as Json, json};
use shotgun_cache_core::filter::parse::parse_any;
use shotgun_cache_core::filter::{Filter, validate, validate_path};
use shotgun_cache_core::model::{
    Date, DateTime, Entity, EntityRef, FieldSchema, SiteSchema, Value,
};
use shotgun_cache_core::query::{
    Direction, FindQuery, MemorySource, Sort, reference_count, reference_find,
};
use shotgun_cache_core::store::rethinkdb::{RethinkOptions, RethinkStore};
use shotgun_cache_core::store::{
    CountQuery, EntityWrite, FieldChange, JournalOp, Store, TypeLayout, TypePhase, TypeState,
    WriteBatch, WriteOutcome,
};

// ---- harness ---------------------------------------------------------------------------------

/// The server to test against, and whether it is reqlite (partial fidelity).
fn server() -> Option<(String, bool)> {
    if let Ok(a) = std::env::var("SHOTGUN_CACHE_TEST_RETHINKDB")
        && !a.is_empty()
    {
        return Some((a, false));
    }
    if let Ok(a) = std::env::var("SHOTGUN_CACHE_TEST_REQLITE")
        && !a.is_empty()
    {
        return Some((a, true));
    }
    None
}

/// A store on a fresh database, or `None` (after printing SKIPPED) when no server is configured.
async fn fresh(test: &str) -> Option<(RethinkStore, bool)> {
    let Some((address, reqlite)) = server() else {
        eprintln!(
            "SKIPPED {test}: no ReQL server (set SHOTGUN_CACHE_TEST_RETHINKDB=host:port or run scripts/test-rethinkdb)"
        );
        return None;
    };
    let database = format!("sgc_test_{:016x}", rand::random::<u64>());
    let opts = RethinkOptions {
        address,
        database,
        user: "admin".into(),
        password: std::env::var("SHOTGUN_CACHE_TEST_RETHINKDB_PASSWORD").unwrap_or_default(),
        pool_size: 2,
        // reqlite drops the answer to a query it fails on (no error reply), so fail fast there.
        timeout: Duration::from_secs(if reqlite { 3 } else { 20 }),
    };
    let store = RethinkStore::connect_with(opts)
        .await
        .expect("connects to the configured ReQL server");
    Some((store, reqlite))
}

// ---- fixture schema and data -------------------------------------------------------------------

fn fs(
    entity_type: &str,
    name: &str,
    data_type: &str,
    valid_types: &[&str],
    valid_values: &[&str],
) -> FieldSchema {
    let raw = json!({
        "data_type": {"value": data_type, "editable": false},
        "name": {"value": name, "editable": true},
        "editable": {"value": true, "editable": false},
        "properties": {
            "valid_types": {"value": valid_types, "editable": true},
            "valid_values": {"value": valid_values, "editable": true},
            "default_value": {"value": null, "editable": true},
        },
    });
    FieldSchema::from_json(entity_type, name, &raw)
}

fn schema() -> SiteSchema {
    let mut read = serde_json::Map::new();
    let types: Vec<(&str, Vec<FieldSchema>)> = vec![
        ("Project", vec![fs("Project", "name", "text", &[], &[])]),
        (
            "Sequence",
            vec![
                fs("Sequence", "code", "text", &[], &[]),
                fs("Sequence", "project", "entity", &["Project"], &[]),
            ],
        ),
        (
            "Asset",
            vec![
                fs("Asset", "code", "text", &[], &[]),
                fs(
                    "Asset",
                    "sg_asset_type",
                    "list",
                    &[],
                    &["Prop", "Character"],
                ),
            ],
        ),
        (
            "Shot",
            vec![
                fs("Shot", "code", "text", &[], &[]),
                fs("Shot", "description", "text", &[], &[]),
                fs(
                    "Shot",
                    "sg_status_list",
                    "status_list",
                    &[],
                    &["ip", "fin", "wtg"],
                ),
                fs("Shot", "sg_cut_in", "number", &[], &[]),
                fs("Shot", "sg_frac", "float", &[], &[]),
                fs("Shot", "sg_done", "checkbox", &[], &[]),
                fs("Shot", "due", "date", &[], &[]),
                fs("Shot", "created_at", "date_time", &[], &[]),
                fs("Shot", "sg_sequence", "entity", &["Sequence"], &[]),
                fs("Shot", "assets", "multi_entity", &["Asset"], &[]),
                fs("Shot", "sg_kind", "entity_type", &[], &[]),
                fs("Shot", "sg_meta", "jsonb", &[], &[]),
            ],
        ),
    ];
    for (t, fields) in &types {
        let m: serde_json::Map<String, Json> = fields
            .iter()
            .map(|f| (f.name.clone(), f.raw.clone()))
            .collect();
        read.insert((*t).to_owned(), Json::Object(m));
    }
    SiteSchema::from_json(&Json::Object(read), None).expect("fixture schema parses")
}

fn layouts(schema: &SiteSchema) -> Vec<TypeLayout> {
    schema
        .types
        .values()
        .map(|t| TypeLayout {
            entity_type: t.name.clone(),
            fields: t.fields.values().cloned().collect(),
            indexed: match t.name.as_str() {
                "Shot" => vec![
                    "code".into(),
                    "sg_cut_in".into(),
                    "sg_sequence".into(),
                    "assets".into(),
                    "due".into(),
                ],
                "Sequence" => vec!["code".into()],
                _ => vec![],
            },
        })
        .collect()
}

fn entity(t: &str, id: i64, display: Option<&str>, fields: Vec<(&str, Value)>) -> Entity {
    let mut e = Entity::new(t, id);
    e.display_name = display.map(str::to_owned);
    for (k, v) in fields {
        e.fields.insert(k.to_owned(), v);
    }
    e
}

fn link(t: &str, id: i64, name: &str) -> EntityRef {
    EntityRef {
        entity_type: t.into(),
        id,
        name: Some(name.into()),
    }
}

const WORDS: [&str; 8] = [
    "alpha", "Beta", "GAMMA", "delta", "Über", "straße", "sh010", "ip",
];

/// A seeded dataset: projects, sequences (one retired), assets (one retired) and shots with every
/// kind of value, nulls included.
fn dataset(seed: u64, now: DateTime) -> Vec<Entity> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    for p in 1..=3 {
        let name = format!("Proj {}", WORDS[p as usize]);
        out.push(entity(
            "Project",
            p,
            Some(&name),
            vec![("name", Value::Text(name.clone()))],
        ));
    }
    for s in 1..=6 {
        let code = format!("{}{s:02}", if s % 2 == 0 { "SEQ" } else { "seq" });
        let mut e = entity(
            "Sequence",
            s,
            Some(&code),
            vec![
                ("code", Value::Text(code.clone())),
                (
                    "project",
                    if s == 6 {
                        Value::Null
                    } else {
                        Value::Entity(link("Project", 1 + s % 3, "stale"))
                    },
                ),
            ],
        );
        e.retired = s == 5;
        out.push(e);
    }
    for a in 1..=8 {
        let code = format!("{} {a}", WORDS[a as usize % WORDS.len()]);
        let mut e = entity(
            "Asset",
            a,
            Some(&code),
            vec![
                ("code", Value::Text(code.clone())),
                (
                    "sg_asset_type",
                    Value::Text(if a % 2 == 0 { "Prop" } else { "Character" }.into()),
                ),
            ],
        );
        e.retired = a == 3;
        out.push(e);
    }
    for id in 1..=40 {
        let mut f: Vec<(&str, Value)> = Vec::new();
        let maybe = |rng: &mut StdRng, v: Value| {
            if rng.random_bool(0.15) {
                Value::Null
            } else {
                v
            }
        };
        let code = format!("{}_{id:03}", WORDS[rng.random_range(0..WORDS.len())]);
        f.push(("code", Value::Text(code.clone())));
        let w = WORDS[rng.random_range(0..WORDS.len())];
        let desc = maybe(&mut rng, Value::Text(format!("the {w} shot")));
        f.push(("description", desc));
        let st = ["ip", "IP", "fin", "wtg"][rng.random_range(0..4)];
        f.push(("sg_status_list", maybe(&mut rng, Value::Text(st.into()))));
        let cut = rng.random_range(-5..50i64);
        f.push(("sg_cut_in", maybe(&mut rng, Value::Int(cut))));
        let frac = f64::from(rng.random_range(0..2000)) / 1000.0;
        f.push(("sg_frac", maybe(&mut rng, Value::Float(frac))));
        f.push(("sg_done", Value::Bool(rng.random_bool(0.5))));
        let day = now.0.div_euclid(86_400) + rng.random_range(-400..400);
        let due = Date::from_days_since_epoch(day).expect("in range");
        f.push(("due", maybe(&mut rng, Value::Date(due))));
        let at = now.0 + rng.random_range(-40_000_000..40_000_000i64);
        f.push(("created_at", maybe(&mut rng, Value::DateTime(DateTime(at)))));
        let seq = rng.random_range(0..8i64);
        let seq_v = if seq == 0 {
            Value::Null
        } else if seq == 7 {
            Value::Entity(link("Sequence", 99, "ghost seq"))
        } else {
            Value::Entity(link("Sequence", seq, "old name"))
        };
        f.push(("sg_sequence", seq_v));
        let n = rng.random_range(0..4);
        let mut assets = Vec::new();
        for _ in 0..n {
            let a = rng.random_range(1..=9i64);
            if !assets.iter().any(|r: &EntityRef| r.id == a) {
                assets.push(link("Asset", a, "stale asset"));
            }
        }
        f.push(("assets", Value::MultiEntity(assets)));
        let kind = ["Shot", "Asset", "shot"][rng.random_range(0..3)];
        f.push(("sg_kind", maybe(&mut rng, Value::Text(kind.into()))));
        let k = rng.random_range(0..3);
        f.push((
            "sg_meta",
            maybe(&mut rng, Value::Json(json!({"k": k, "tags": ["a", "b"]}))),
        ));
        let mut e = entity("Shot", id, Some(&code), f);
        e.retired = rng.random_bool(0.1);
        out.push(e);
    }
    out
}

async fn load(store: &RethinkStore, entities: &[Entity]) {
    let writes = entities
        .iter()
        .map(|e| EntityWrite::Upsert {
            entity: e.clone(),
            floor: 0,
            event_id: 0,
        })
        .collect();
    let r = store
        .commit(WriteBatch {
            writes,
            journal: false,
            ..Default::default()
        })
        .await
        .expect("initial load commits");
    assert!(r.outcomes.iter().all(|o| matches!(
        o,
        WriteOutcome::Applied {
            op: JournalOp::Create,
            ..
        }
    )));
}

fn filter(schema: &SiteSchema, t: &str, f: Json) -> Result<Filter, String> {
    let raw = parse_any(&f).map_err(|e| e.to_string())?;
    validate(schema, t, &raw).map_err(|e| e.to_string())
}

// ---- contract tests ----------------------------------------------------------------------------

/// Writes, the per-field ordering guard, retire/revive, removal, journal numbering and replay.
#[tokio::test]
async fn commit_guard_and_journal() {
    let Some((store, _)) = fresh("commit_guard_and_journal").await else {
        return;
    };
    let schema = schema();
    store
        .prepare(&schema, &layouts(&schema))
        .await
        .expect("prepare");
    store
        .prepare(&schema, &layouts(&schema))
        .await
        .expect("prepare is idempotent");
    assert_eq!(store.schema().await.expect("schema"), Some(schema.clone()));
    assert_eq!(store.layouts().await.expect("layouts").len(), 4);

    let shot = entity(
        "Shot",
        7,
        Some("sh007"),
        vec![
            ("code", Value::Text("sh007".into())),
            ("sg_cut_in", Value::Int(10)),
        ],
    );
    let batch = WriteBatch {
        writes: vec![EntityWrite::Upsert {
            entity: shot,
            floor: 100,
            event_id: 0,
        }],
        journal: true,
        state: BTreeMap::from([("cursor".to_owned(), json!({"event_id": 100}))]),
        ..Default::default()
    };
    let r = store.commit(batch.clone()).await.expect("commit");
    assert_eq!(
        r.outcomes,
        vec![WriteOutcome::Applied {
            op: JournalOp::Create,
            fields: vec!["code".into(), "sg_cut_in".into()]
        }]
    );
    assert_eq!(r.journal.len(), 1);
    let first_seq = r.journal[0].seq;
    assert!(first_seq >= 1);
    // A replay of the same batch changes nothing and journals nothing.
    let again = store.commit(batch).await.expect("replay");
    assert_eq!(again.outcomes, vec![WriteOutcome::Unchanged]);
    assert!(again.journal.is_empty());
    assert_eq!(store.journal_head().await.expect("head"), first_seq);
    assert_eq!(
        store.get_state("cursor").await.expect("state"),
        Some(json!({"event_id": 100}))
    );

    // Newer patch applies, an older one is ignored, per field.
    let patch = |event_id, v: i64| EntityWrite::Patch {
        entity_type: "Shot".into(),
        id: 7,
        event_id,
        changes: vec![FieldChange::Set("sg_cut_in".into(), Value::Int(v))],
    };
    let r = store
        .commit(WriteBatch {
            writes: vec![patch(120, 11), patch(110, 99)],
            journal: true,
            ..Default::default()
        })
        .await
        .expect("patches");
    assert_eq!(
        r.outcomes[0],
        WriteOutcome::Applied {
            op: JournalOp::Update,
            fields: vec!["sg_cut_in".into()]
        }
    );
    assert_eq!(r.outcomes[1], WriteOutcome::Unchanged);
    let e = store.get("Shot", 7).await.expect("get").expect("exists");
    assert_eq!(e.get("sg_cut_in"), &Value::Int(11));
    assert_eq!(e.versions.get("sg_cut_in"), Some(&120));
    assert_eq!(e.last_event_id, 120);
    // Rename through a patch of the display field updates the display name.
    let rename = EntityWrite::Patch {
        entity_type: "Shot".into(),
        id: 7,
        event_id: 130,
        changes: vec![FieldChange::Set(
            "code".into(),
            Value::Text("sh007b".into()),
        )],
    };
    store
        .commit(WriteBatch {
            writes: vec![rename],
            journal: true,
            ..Default::default()
        })
        .await
        .expect("rename");
    assert_eq!(
        store
            .get("Shot", 7)
            .await
            .expect("get")
            .expect("exists")
            .display_name
            .as_deref(),
        Some("sh007b")
    );

    // multi_entity add/remove.
    let add = EntityWrite::Patch {
        entity_type: "Shot".into(),
        id: 7,
        event_id: 140,
        changes: vec![FieldChange::Add(
            "assets".into(),
            vec![EntityRef::new("Asset", 1), EntityRef::new("Asset", 2)],
        )],
    };
    let remove = EntityWrite::Patch {
        entity_type: "Shot".into(),
        id: 7,
        event_id: 141,
        changes: vec![FieldChange::Remove(
            "assets".into(),
            vec![EntityRef::new("Asset", 1)],
        )],
    };
    store
        .commit(WriteBatch {
            writes: vec![add, remove],
            journal: true,
            ..Default::default()
        })
        .await
        .expect("links");
    let e = store.get("Shot", 7).await.expect("get").expect("exists");
    assert_eq!(
        e.get("assets"),
        &Value::MultiEntity(vec![EntityRef::new("Asset", 2)])
    );

    // Retire / stale revive / revive; a patch for a missing row.
    let retire = EntityWrite::Retire {
        entity_type: "Shot".into(),
        id: 7,
        event_id: 150,
    };
    let stale_revive = EntityWrite::Revive {
        entity_type: "Shot".into(),
        id: 7,
        event_id: 149,
    };
    let missing = EntityWrite::Retire {
        entity_type: "Shot".into(),
        id: 8,
        event_id: 151,
    };
    let r = store
        .commit(WriteBatch {
            writes: vec![retire, stale_revive, missing],
            journal: true,
            ..Default::default()
        })
        .await
        .expect("retire");
    assert_eq!(
        r.outcomes[0],
        WriteOutcome::Applied {
            op: JournalOp::Retire,
            fields: vec![]
        }
    );
    assert_eq!(r.outcomes[1], WriteOutcome::Unchanged);
    assert_eq!(r.outcomes[2], WriteOutcome::Missing);
    assert!(
        store
            .get("Shot", 7)
            .await
            .expect("get")
            .expect("exists")
            .retired
    );
    assert_eq!(
        store.type_counts().await.expect("counts").get("Shot"),
        Some(&(0, 1))
    );
    assert_eq!(
        store.ids("Shot", 0, 10).await.expect("ids"),
        vec![(7, true)]
    );

    // The journal reads back in order, entries carry the new state, and sequence numbers increase.
    let head = store.journal_head().await.expect("head");
    let all = store.journal_after(0, 100).await.expect("journal");
    assert_eq!(all.len(), 6, "{all:#?}");
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(all.last().map(|e| e.seq), Some(head));
    assert_eq!(all.last().map(|e| e.op), Some(JournalOp::Retire));
    assert!(
        all.last()
            .and_then(|e| e.entity.as_ref())
            .is_some_and(|e| e.retired)
    );
    assert_eq!(
        store
            .journal_after(all[2].seq, 2)
            .await
            .expect("page")
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        vec![all[3].seq, all[4].seq]
    );
    assert_eq!(store.journal_tail().await.expect("tail"), Some(all[0].seq));

    // Remove drops the row and journals it.
    let r = store
        .commit(WriteBatch {
            writes: vec![EntityWrite::Remove {
                entity_type: "Shot".into(),
                id: 7,
                event_id: 160,
            }],
            journal: true,
            ..Default::default()
        })
        .await
        .expect("remove");
    assert_eq!(
        r.journal.first().map(|e| (e.op, e.entity.is_none())),
        Some((JournalOp::Remove, true))
    );
    assert_eq!(store.get("Shot", 7).await.expect("get"), None);

    // Trimming by time removes everything applied before the cut-off.
    let removed = store
        .trim_journal(DateTime(DateTime::now().0 + 10))
        .await
        .expect("trim");
    assert_eq!(removed, 7);
    assert_eq!(store.journal_tail().await.expect("tail"), None);
    store.drop_database().await.expect("drop database");
}

/// Type states, staging and the atomic promotion with its `Reload` entry.
#[tokio::test]
async fn staging_and_promotion() {
    let Some((store, _)) = fresh("staging_and_promotion").await else {
        return;
    };
    let schema = schema();
    let layouts = layouts(&schema);
    store.prepare(&schema, &layouts).await.expect("prepare");
    let seq = |id: i64, code: &str| {
        entity(
            "Sequence",
            id,
            Some(code),
            vec![("code", Value::Text(code.into()))],
        )
    };
    load(&store, &[seq(1, "old1"), seq(2, "old2")]).await;
    let state = |phase| TypeState {
        entity_type: "Sequence".into(),
        phase,
        done: 2,
        total: 2,
        config_hash: "h1".into(),
        ready_at: Some(DateTime(1_700_000_000)),
    };
    store
        .commit(WriteBatch {
            type_states: vec![state(TypePhase::Reimporting)],
            ..Default::default()
        })
        .await
        .expect("type state");
    let layout = layouts
        .iter()
        .find(|l| l.entity_type == "Sequence")
        .expect("Sequence layout")
        .clone();
    store.begin_staging(&layout).await.expect("begin staging");
    store
        .commit(WriteBatch {
            staging: vec![EntityWrite::Upsert {
                entity: seq(3, "new3"),
                floor: 0,
                event_id: 0,
            }],
            ..Default::default()
        })
        .await
        .expect("staging write");
    // Queries still read the live copy.
    assert_eq!(
        store.ids("Sequence", 0, 10).await.expect("ids"),
        vec![(1, false), (2, false)]
    );
    let head = store.journal_head().await.expect("head");
    store
        .promote_staging(state(TypePhase::Ready))
        .await
        .expect("promote");
    assert_eq!(
        store.ids("Sequence", 0, 10).await.expect("ids"),
        vec![(3, false)]
    );
    let reload = store.journal_after(head, 10).await.expect("journal");
    assert_eq!(
        reload
            .iter()
            .map(|e| (e.op, e.entity_id))
            .collect::<Vec<_>>(),
        vec![(JournalOp::Reload, 0)]
    );
    assert_eq!(
        store.type_states().await.expect("states"),
        vec![state(TypePhase::Ready)]
    );
    store.drop_database().await.expect("drop database");
}

/// `wait_journal` wakes on a write from another store instance (another process in production).
#[tokio::test]
async fn wait_journal_wakes_on_commit() {
    let Some((store, _)) = fresh("wait_journal_wakes_on_commit").await else {
        return;
    };
    let schema = schema();
    store
        .prepare(&schema, &layouts(&schema))
        .await
        .expect("prepare");
    let head = store.journal_head().await.expect("head");
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let h = store
                .wait_journal(head, Duration::from_secs(10))
                .await
                .expect("wait");
            (h, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let write = EntityWrite::Upsert {
        entity: entity("Project", 1, Some("p"), vec![]),
        floor: 0,
        event_id: 0,
    };
    store
        .commit(WriteBatch {
            writes: vec![write],
            journal: true,
            ..Default::default()
        })
        .await
        .expect("commit");
    let (h, took) = waiter.await.expect("waiter");
    assert!(h > head);
    assert!(took < Duration::from_secs(5), "woke after {took:?}");
    // Nothing new: returns the head after the timeout.
    let h2 = store
        .wait_journal(h, Duration::from_millis(200))
        .await
        .expect("wait");
    assert_eq!(h2, h);
    store.drop_database().await.expect("drop database");
}

/// Unknown types are rejected by name; ping works.
#[tokio::test]
async fn errors_name_the_type() {
    let Some((store, _)) = fresh("errors_name_the_type").await else {
        return;
    };
    store.ping().await.expect("ping");
    let err = store.get("Nope", 1).await.expect_err("not cached");
    assert!(err.to_string().contains("Nope"), "{err}");
    store.drop_database().await.expect("drop database");
}

/// An unreachable server is `Unavailable`, not a hang.
#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let opts = RethinkOptions {
        address: "127.0.0.1:1".into(),
        database: "x".into(),
        user: "admin".into(),
        password: String::new(),
        pool_size: 1,
        timeout: Duration::from_secs(2),
    };
    match RethinkStore::connect_with(opts).await {
        Err(shotgun_cache_core::store::StoreError::Unavailable(m)) => {
            assert!(m.contains("127.0.0.1:1"), "{m}")
        }
        Err(e) => panic!("expected Unavailable, got {e}"),
        Ok(_) => panic!("connected to port 1"),
    }
}

// ---- differential test ---------------------------------------------------------------------------

/// Random filters over the seeded dataset: the store's find (ids, order, projected values) and count
/// must equal the reference implementation's.
#[tokio::test]
async fn differential_find_and_count() {
    let Some((store, reqlite)) = fresh("differential_find_and_count").await else {
        return;
    };
    let schema = schema();
    store
        .prepare(&schema, &layouts(&schema))
        .await
        .expect("prepare");
    let now = DateTime::now();
    let data = dataset(7, now);
    load(&store, &data).await;
    let mut mem = MemorySource::new();
    for t in schema.types.keys() {
        mem.declare_type(t.clone());
    }
    for e in &data {
        mem.insert(e.clone());
    }
    let path = |p: &str| validate_path(&schema, "Shot", p).expect("fixture path is valid");
    let fields = vec![
        path("code"),
        path("sg_cut_in"),
        path("sg_frac"),
        path("due"),
        path("created_at"),
        path("sg_sequence"),
        path("assets"),
        path("sg_sequence.Sequence.code"),
        path("sg_sequence.Sequence.project.Project.name"),
        path("sg_meta"),
    ];
    let sortable = [
        "code",
        "sg_cut_in",
        "sg_frac",
        "due",
        "created_at",
        "sg_done",
        "sg_sequence",
        "sg_status_list",
        "sg_sequence.Sequence.code",
        "id",
    ];
    let mut rng = StdRng::seed_from_u64(11);
    let mut cases = fixed_filters();
    for _ in 0..60 {
        let n = rng.random_range(1..=3);
        let parts: Vec<Json> = (0..n).map(|_| random_condition(&mut rng, now)).collect();
        let op = if rng.random_bool(0.7) { "all" } else { "any" };
        cases.push(json!({"filter_operator": op, "filters": parts}));
    }
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut reqlite_order_skips = 0;
    for (i, raw) in cases.iter().enumerate() {
        let f = match filter(&schema, "Shot", raw.clone()) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("invalid {raw}: {e}");
                continue;
            }
        };
        let sorts: Vec<Sort> = (0..rng.random_range(0..3))
            .map(|_| Sort {
                path: path(sortable[rng.random_range(0..sortable.len())]),
                direction: if rng.random_bool(0.5) {
                    Direction::Asc
                } else {
                    Direction::Desc
                },
            })
            .collect();
        let (offset, limit) = match i % 4 {
            0 => (0, None),
            1 => (0, Some(5)),
            2 => (3, Some(4)),
            _ => (2, None),
        };
        let retired_only = i % 9 == 8;
        let q = FindQuery {
            entity_type: "Shot".into(),
            filter: f.clone(),
            fields: fields.clone(),
            sorts,
            offset,
            limit,
            retired_only,
        };
        let want = reference_find(&mem, &q, now);
        let got = match store.find(&q).await {
            Ok(g) => g,
            Err(e) => {
                failures.push(format!("case {i} {raw}: find failed: {e}"));
                checked += 1;
                continue;
            }
        };
        let ids =
            |v: &[shotgun_cache_core::query::Record]| v.iter().map(|r| r.id).collect::<Vec<_>>();
        if got != want && reqlite && !q.sorts.is_empty() {
            // reqlite's in-memory order_by compares null keys inconsistently, so orders with null sort
            // keys come out wrong there. Check the page holds rows of the full result, with their
            // values, and has the right length.
            let all = reference_find(
                &mem,
                &FindQuery {
                    offset: 0,
                    limit: None,
                    ..q.clone()
                },
                now,
            );
            if got.len() == want.len() && got.iter().all(|r| all.contains(r)) {
                eprintln!(
                    "SKIPPED order check on reqlite: case {i} (reqlite order_by mis-sorts null keys)"
                );
                reqlite_order_skips += 1;
                checked += 1;
                continue;
            }
        }
        if got != want {
            let detail = if ids(&got) == ids(&want) {
                let diff = got
                    .iter()
                    .zip(&want)
                    .find(|(a, b)| a != b)
                    .map(|(a, b)| format!("\n  got  {a:?}\n  want {b:?}"));
                format!("same ids, different values:{}", diff.unwrap_or_default())
            } else {
                format!("ids got {:?} want {:?}", ids(&got), ids(&want))
            };
            failures.push(format!(
                "case {i} {raw} sorts {:?}: {detail}",
                q.sorts
                    .iter()
                    .map(|s| (&s.path.raw, s.direction))
                    .collect::<Vec<_>>()
            ));
        }
        let cq = CountQuery {
            entity_type: "Shot".into(),
            filter: f.clone(),
            retired_only,
            now,
        };
        let want_n = reference_count(&mem, "Shot", &f, retired_only, now);
        match store.count(&cq).await {
            Ok(n) if n == want_n => {}
            Ok(n) => failures.push(format!("case {i} {raw}: count {n}, want {want_n}")),
            Err(e) => failures.push(format!("case {i} {raw}: count failed: {e}")),
        }
        checked += 1;
    }
    for f in &failures {
        eprintln!("DIFF {f}");
    }
    eprintln!(
        "differential: {checked} cases, {} differ, {reqlite_order_skips} order checks skipped on reqlite",
        failures.len()
    );
    assert!(checked >= 50, "only {checked} filters validated");
    if reqlite && !failures.is_empty() {
        // Not bent to reqlite: report the cases its 2.0-era semantics get wrong, fail on a real server.
        eprintln!(
            "reqlite differs from the reference in {} of {checked} cases (reqlite fidelity, see toolchain.md §1.2):",
            failures.len()
        );
        for f in &failures {
            eprintln!("  {f}");
        }
    }
    assert!(
        reqlite || failures.is_empty(),
        "{} of {checked} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    if reqlite {
        // Even on reqlite the bulk must agree, or the backend is broken rather than reqlite.
        assert!(
            failures.len() * 10 <= checked,
            "{} of {checked} cases differ on reqlite:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    store.drop_database().await.expect("drop database");
}

/// Filters that cover every compiled relation at least once (plus the random ones).
fn fixed_filters() -> Vec<Json> {
    vec![
        json!([]),
        json!([["code", "is", "ALPHA_001"]]),
        json!([["code", "starts_with", "über"]]),
        json!([["code", "contains", "A_0"]]),
        json!([["code", "ends_with", "5"]]),
        json!([["code", "not_contains", "a"]]),
        json!([["description", "is", null]]),
        json!([["description", "is_not", null]]),
        json!([["code", "in", ["beta_002", "STRASSE_003", "straße_004"]]]),
        json!([["sg_status_list", "is", "IP"]]),
        json!([["sg_status_list", "not_in", ["ip", "fin"]]]),
        json!([["sg_cut_in", "greater_than", 10]]),
        json!([["sg_cut_in", "less_than", 0]]),
        json!([["sg_cut_in", "between", [30, 5]]]),
        json!([["sg_cut_in", "is_not", 3]]),
        json!([["sg_cut_in", "in", [1, 2, 3, 40]]]),
        json!([["sg_frac", "is", 0.5]]),
        json!([["sg_frac", "greater_than", 1.0]]),
        json!([["sg_done", "is", false]]),
        json!([["due", "in_last", [3, "MONTH"]]]),
        json!([["due", "in_calendar_month", 0]]),
        json!([["due", "not_in_next", [1, "YEAR"]]]),
        json!([["created_at", "in_calendar_week", -1]]),
        json!([["created_at", "in_next", [30, "DAY"]]]),
        json!([["sg_sequence", "is", {"type": "Sequence", "id": 2}]]),
        json!([["sg_sequence", "is", {"type": "Sequence", "id": 5}]]),
        json!([["sg_sequence", "is", null]]),
        json!([["sg_sequence", "type_is", "Sequence"]]),
        json!([["sg_sequence", "name_contains", "seq"]]),
        json!([["sg_sequence.Sequence.code", "is", "SEQ02"]]),
        json!([["sg_sequence.Sequence.code", "is_not", "seq01"]]),
        json!([[
            "sg_sequence.Sequence.project.Project.name",
            "contains",
            "beta"
        ]]),
        json!([["assets", "is", {"type": "Asset", "id": 2}]]),
        json!([["assets", "is", null]]),
        json!([["assets", "not_in", [{"type": "Asset", "id": 1}, {"type": "Asset", "id": 4}]]]),
        json!([["assets.Asset.code", "contains", "a"]]),
        json!([["assets.Asset.sg_asset_type", "is_not", "Prop"]]),
        json!([["assets", "name_is", "GAMMA 2"]]),
        json!([["sg_kind", "is", "Shot"]]),
        json!([["sg_meta", "contains", {"k": 1}]]),
        json!([["id", "in", [3, 5, 8]]]),
        json!([["id", "between", [10, 20]]]),
        json!({"filter_operator": "any", "filters": [["code", "contains", "beta"], ["sg_cut_in", "less_than", 5]]}),
    ]
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

fn random_condition(rng: &mut StdRng, now: DateTime) -> Json {
    let word = WORDS[rng.random_range(0..WORDS.len())];
    let num = rng.random_range(-5..50i64);
    let day = Date::from_days_since_epoch(now.0.div_euclid(86_400) + rng.random_range(-400..400))
        .expect("in range");
    match rng.random_range(0..16) {
        0 => json!([
            "code",
            pick(
                rng,
                &[
                    "is",
                    "is_not",
                    "contains",
                    "not_contains",
                    "starts_with",
                    "ends_with"
                ]
            ),
            word
        ]),
        1 => json!([
            "description",
            pick(rng, &["contains", "not_contains", "is"]),
            word.to_uppercase()
        ]),
        2 => json!([
            "sg_status_list",
            pick(rng, &["is", "is_not", "in", "not_in"]),
            pick(rng, &["ip", "FIN", "wtg"])
        ]),
        3 => json!([
            "sg_cut_in",
            pick(rng, &["is", "is_not", "greater_than", "less_than"]),
            num
        ]),
        4 => json!(["sg_cut_in", "between", [num, rng.random_range(-5..50i64)]]),
        5 => json!([
            "sg_frac",
            pick(rng, &["greater_than", "less_than", "is"]),
            f64::from(rng.random_range(0..20)) / 10.0
        ]),
        6 => json!([
            "sg_done",
            pick(rng, &["is", "is_not"]),
            rng.random_bool(0.5)
        ]),
        7 => json!([
            "due",
            pick(rng, &["greater_than", "less_than", "is"]),
            day.to_string()
        ]),
        8 => json!([
            "due",
            pick(rng, &["in_last", "in_next", "not_in_last"]),
            [
                rng.random_range(1..20),
                pick(rng, &["DAY", "WEEK", "MONTH", "YEAR"])
            ]
        ]),
        9 => json!([
            "created_at",
            pick(
                rng,
                &[
                    "in_calendar_day",
                    "in_calendar_week",
                    "in_calendar_month",
                    "in_calendar_year"
                ]
            ),
            rng.random_range(-2..2)
        ]),
        10 => {
            json!(["sg_sequence", pick(rng, &["is", "is_not"]), {"type": "Sequence", "id": rng.random_range(1..8)}])
        }
        11 => json!([
            "sg_sequence.Sequence.code",
            pick(rng, &["is", "is_not", "starts_with"]),
            pick(rng, &["seq01", "SEQ02", "seq0"])
        ]),
        12 => {
            json!(["assets", pick(rng, &["is", "is_not"]), {"type": "Asset", "id": rng.random_range(1..9)}])
        }
        13 => json!([
            "assets.Asset.code",
            pick(rng, &["contains", "not_contains"]),
            word
        ]),
        14 => json!(["sg_sequence", pick(rng, &["is", "is_not"]), null]),
        _ => json!([
            "id",
            pick(rng, &["less_than", "greater_than", "is_not"]),
            rng.random_range(1..40)
        ]),
    }
}

// ---- server restarts -------------------------------------------------------------------------------

/// Starts a private reqlite with `scripts/reqlite/start` on `port`; returns its pid.
fn start_private_reqlite(port: u16) -> Option<u32> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = std::process::Command::new(format!("{root}/scripts/reqlite/start"))
        .arg(format!("{root}/.cache/reqlite"))
        .arg(port.to_string())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn free_port() -> u16 {
    // reqlite listens on 28015+N, so the port must be above 28015; ephemeral ports are.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local address").port()
}

/// While the server is down calls fail fast with `Unavailable`; after it restarts the same store
/// object works again without being rebuilt (broken pooled connections are replaced).
#[tokio::test]
async fn reconnects_after_server_restart() {
    if std::env::var("SHOTGUN_CACHE_TEST_REQLITE")
        .map(|v| v.is_empty())
        .unwrap_or(true)
    {
        eprintln!(
            "SKIPPED reconnects_after_server_restart: needs the reqlite install of scripts/test-rethinkdb (it restarts a private server; a real RethinkDB cannot be restarted from a test)"
        );
        return;
    }
    let port = free_port();
    let Some(pid) = start_private_reqlite(port) else {
        panic!("scripts/reqlite/start could not start a private reqlite on port {port}");
    };
    let store = RethinkStore::open_lazy_with(RethinkOptions {
        address: format!("127.0.0.1:{port}"),
        database: "restart".into(),
        user: "admin".into(),
        password: String::new(),
        pool_size: 2,
        timeout: Duration::from_secs(3),
    });
    store.ping().await.expect("ping while up");
    store
        .ping()
        .await
        .expect("ping on the second pooled connection");
    let kill = |pid: u32| {
        let _ = std::process::Command::new("kill")
            .arg(pid.to_string())
            .status();
    };
    kill(pid);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        match store.ping().await {
            Err(shotgun_cache_core::store::StoreError::Unavailable(_)) => {}
            other => panic!("expected Unavailable while the server is down, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "a call while down took {:?}",
            started.elapsed()
        );
    }
    let Some(pid2) = start_private_reqlite(port) else {
        panic!("could not restart reqlite on port {port}");
    };
    let mut ok = false;
    for _ in 0..20 {
        if store.ping().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kill(pid2);
    assert!(ok, "the store did not reconnect after the server came back");
}
