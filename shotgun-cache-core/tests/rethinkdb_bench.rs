//! Store-level benchmark of the RethinkDB backend next to the SQLite backend, on the same data and
//! the same queries (figures only; nothing asserts on them).
//!
//! Runs only with `SHOTGUN_CACHE_BENCH=1` and a ReQL server (`SHOTGUN_CACHE_TEST_RETHINKDB` or
//! `SHOTGUN_CACHE_TEST_REQLITE`), e.g. `SHOTGUN_CACHE_BENCH=1 scripts/test-rethinkdb` with
//! `--test rethinkdb_bench` added, or directly:
//!
//! ```text
//! SHOTGUN_CACHE_BENCH=1 SHOTGUN_CACHE_TEST_REQLITE=127.0.0.1:PORT \
//!   cargo test --release -p shotgun-cache-core --test rethinkdb_bench -- --nocapture
//! ```
//!
//! `BENCH_ROWS` shots (default 5,000: reqlite is an in-memory JavaScript server and slow, so keep it
//! small there; a real RethinkDB takes far more) in `BENCH_ROWS / 50` sequences of 10 projects;
//! `BENCH_REPS` repetitions per query (default 50).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use shotgun_cache_core::filter::parse::parse_any;
use shotgun_cache_core::filter::{Filter, validate, validate_path};
use shotgun_cache_core::model::{DateTime, Entity, EntityRef, FieldSchema, SiteSchema, Value};
use shotgun_cache_core::query::FindQuery;
use shotgun_cache_core::store::rethinkdb::{RethinkOptions, RethinkStore};
use shotgun_cache_core::store::sqlite::SqliteStore;
use shotgun_cache_core::store::{
    CountQuery, EntityWrite, FieldChange, Store, TypeLayout, WriteBatch,
};

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn schema() -> SiteSchema {
    let f = |dt: &str, vt: &[&str]| json!({"data_type": {"value": dt, "editable": false}, "properties": {"valid_types": {"value": vt, "editable": false}}});
    let s = json!({
        "Project": {"name": f("text", &[])},
        "Sequence": {"code": f("text", &[]), "project": f("entity", &["Project"])},
        "Shot": {
            "code": f("text", &[]),
            "sg_status_list": f("status_list", &[]),
            "sg_cut_in": f("number", &[]),
            "sg_sequence": f("entity", &["Sequence"]),
        },
    });
    SiteSchema::from_json(&s, None).expect("bench schema parses")
}

fn layouts(schema: &SiteSchema) -> Vec<TypeLayout> {
    schema
        .types
        .values()
        .map(|t| TypeLayout {
            entity_type: t.name.clone(),
            fields: t.fields.values().cloned().collect::<Vec<FieldSchema>>(),
            indexed: if t.name == "Shot" {
                vec![
                    "code".into(),
                    "sg_status_list".into(),
                    "sg_cut_in".into(),
                    "sg_sequence".into(),
                ]
            } else {
                vec!["code".into()]
            },
        })
        .collect()
}

fn data(rows: u64) -> Vec<Entity> {
    let seqs = (rows / 50).max(1) as i64;
    let mut out = Vec::new();
    for p in 1..=10 {
        let mut e = Entity::new("Project", p);
        e.fields
            .insert("name".into(), Value::Text(format!("Project {p}")));
        e.display_name = Some(format!("Project {p}"));
        out.push(e);
    }
    for s in 1..=seqs {
        let mut e = Entity::new("Sequence", s);
        e.fields
            .insert("code".into(), Value::Text(format!("seq{s:04}")));
        e.fields.insert(
            "project".into(),
            Value::Entity(EntityRef::new("Project", 1 + s % 10)),
        );
        e.display_name = Some(format!("seq{s:04}"));
        out.push(e);
    }
    for id in 1..=rows as i64 {
        let mut e = Entity::new("Shot", id);
        e.fields
            .insert("code".into(), Value::Text(format!("sh{id:07}")));
        e.fields.insert(
            "sg_status_list".into(),
            Value::Text(["ip", "fin", "wtg", "omt"][(id % 4) as usize].into()),
        );
        e.fields.insert("sg_cut_in".into(), Value::Int(id % 1000));
        e.fields.insert(
            "sg_sequence".into(),
            Value::Entity(EntityRef::new("Sequence", 1 + id % seqs)),
        );
        e.display_name = Some(format!("sh{id:07}"));
        out.push(e);
    }
    out
}

fn filter(schema: &SiteSchema, f: serde_json::Value) -> Filter {
    validate(schema, "Shot", &parse_any(&f).expect("bench filter parses"))
        .expect("bench filter is valid")
}

/// p50 and p99 of `reps` runs of `f`, in milliseconds.
async fn measure<F, Fut>(reps: u64, mut f: F) -> (f64, f64)
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ms = Vec::new();
    for i in 0..reps {
        let t = Instant::now();
        f(i).await;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

/// Runs every measurement on one store; returns `(name, p50, p99)` rows.
async fn run(store: Arc<dyn Store>, rows: u64, reps: u64) -> Vec<(String, f64, f64)> {
    let schema = schema();
    let mut out = Vec::new();
    store
        .prepare(&schema, &layouts(&schema))
        .await
        .expect("prepare");
    let all = data(rows);
    let t = Instant::now();
    for chunk in all.chunks(500) {
        let writes = chunk
            .iter()
            .map(|e| EntityWrite::Upsert {
                entity: e.clone(),
                floor: 0,
                event_id: 0,
            })
            .collect();
        store
            .commit(WriteBatch {
                writes,
                journal: false,
                ..Default::default()
            })
            .await
            .expect("load");
    }
    let secs = t.elapsed().as_secs_f64();
    out.push((
        format!("load {} rows, rows/s", all.len()),
        all.len() as f64 / secs,
        f64::NAN,
    ));
    let seqs = (rows / 50).max(1);
    let path = |p: &str| validate_path(&schema, "Shot", p).expect("bench path");
    let fields = vec![path("code"), path("sg_status_list"), path("sg_sequence")];
    let find = |f: Filter, sorts: Vec<shotgun_cache_core::query::Sort>| FindQuery {
        entity_type: "Shot".into(),
        filter: f,
        fields: fields.clone(),
        sorts,
        offset: 0,
        limit: Some(50),
        retired_only: false,
    };
    let (p50, p99) = measure(reps, |i| {
        let q = find(
            filter(
                &schema,
                json!([["sg_sequence", "is", {"type": "Sequence", "id": 1 + i % seqs}]]),
            ),
            vec![],
        );
        let s = store.clone();
        async move {
            s.find(&q).await.expect("indexed find");
        }
    })
    .await;
    out.push((
        "Find sg_sequence is <Sequence> (index), 50 rows".into(),
        p50,
        p99,
    ));
    let (p50, p99) = measure(reps, |i| {
        let q = find(
            filter(
                &schema,
                json!([[
                    "sg_sequence.Sequence.project.Project.name",
                    "is",
                    format!("Project {}", 1 + i % 10)
                ]]),
            ),
            vec![],
        );
        let s = store.clone();
        async move {
            s.find(&q).await.expect("deep find");
        }
    })
    .await;
    out.push(("Find two-hop deep link, first 50 rows".into(), p50, p99));
    let (p50, p99) = measure(reps, |i| {
        let sort = shotgun_cache_core::query::Sort {
            path: path("code"),
            direction: shotgun_cache_core::query::Direction::Desc,
        };
        let q = find(
            filter(
                &schema,
                json!([["sg_cut_in", "greater_than", (i * 37) % 1000]]),
            ),
            vec![sort],
        );
        let s = store.clone();
        async move {
            s.find(&q).await.expect("sorted find");
        }
    })
    .await;
    out.push((
        "Find sg_cut_in > x sorted by code desc, 50 rows".into(),
        p50,
        p99,
    ));
    let (p50, p99) = measure(reps, |i| {
        let status = ["ip", "fin", "wtg", "omt"][(i % 4) as usize];
        let q = CountQuery {
            entity_type: "Shot".into(),
            filter: filter(&schema, json!([["sg_status_list", "is", status]])),
            retired_only: false,
            now: DateTime::now(),
        };
        let s = store.clone();
        async move {
            s.count(&q).await.expect("count");
        }
    })
    .await;
    out.push(("Count sg_status_list is <status>".into(), p50, p99));
    let (p50, p99) = measure(reps, |i| {
        let w = EntityWrite::Patch {
            entity_type: "Shot".into(),
            id: 1 + (i as i64 % rows as i64),
            event_id: 1000 + i as i64,
            changes: vec![FieldChange::Set(
                "sg_cut_in".into(),
                Value::Int(5000 + i as i64),
            )],
        };
        let s = store.clone();
        async move {
            s.commit(WriteBatch {
                writes: vec![w],
                journal: true,
                ..Default::default()
            })
            .await
            .expect("patch");
        }
    })
    .await;
    out.push(("commit one journaled patch".into(), p50, p99));
    let (p50, p99) = measure(reps.min(20), |i| {
        let s = store.clone();
        async move {
            let head = s.journal_head().await.expect("head");
            let waiter = {
                let s = s.clone();
                tokio::spawn(async move {
                    s.wait_journal(head, Duration::from_secs(10))
                        .await
                        .expect("wait");
                })
            };
            tokio::time::sleep(Duration::from_millis(5)).await;
            let w = EntityWrite::Patch {
                entity_type: "Shot".into(),
                id: 1,
                event_id: 100_000 + i as i64,
                changes: vec![FieldChange::Set("sg_cut_in".into(), Value::Int(i as i64))],
            };
            s.commit(WriteBatch {
                writes: vec![w],
                journal: true,
                ..Default::default()
            })
            .await
            .expect("patch");
            waiter.await.expect("waiter");
        }
    })
    .await;
    out.push((
        "commit + wait_journal wake (incl. 5 ms head start)".into(),
        p50,
        p99,
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_rethinkdb_vs_sqlite() {
    if std::env::var("SHOTGUN_CACHE_BENCH").as_deref() != Ok("1") {
        eprintln!(
            "SKIPPED bench_rethinkdb_vs_sqlite: set SHOTGUN_CACHE_BENCH=1 (and a ReQL server) to run the benchmark"
        );
        return;
    }
    let (address, server) = match (
        std::env::var("SHOTGUN_CACHE_TEST_RETHINKDB")
            .ok()
            .filter(|a| !a.is_empty()),
        std::env::var("SHOTGUN_CACHE_TEST_REQLITE")
            .ok()
            .filter(|a| !a.is_empty()),
    ) {
        (Some(a), _) => (a, "RethinkDB"),
        (None, Some(a)) => (a, "reqlite"),
        (None, None) => {
            eprintln!(
                "SKIPPED bench_rethinkdb_vs_sqlite: no ReQL server (set SHOTGUN_CACHE_TEST_RETHINKDB or run scripts/test-rethinkdb)"
            );
            return;
        }
    };
    let rows = env_u64("BENCH_ROWS", 5000);
    let reps = env_u64("BENCH_REPS", 50);
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("bench.db")).expect("sqlite store"));
    let sq = run(sqlite, rows, reps).await;
    let opts = RethinkOptions {
        address,
        database: format!("sgc_bench_{:016x}", rand::random::<u64>()),
        user: "admin".into(),
        password: std::env::var("SHOTGUN_CACHE_TEST_RETHINKDB_PASSWORD").unwrap_or_default(),
        pool_size: 4,
        timeout: Duration::from_secs(60),
    };
    let rdb = RethinkStore::connect_with(opts).await.expect("connect");
    let rt = run(Arc::new(rdb.clone()), rows, reps).await;
    rdb.drop_database().await.expect("drop bench database");
    println!(
        "\nstore benchmark: {rows} shots, {reps} runs per query (ms unless noted); RethinkDB backend on {server}"
    );
    println!(
        "{:<52} {:>20} {:>20}",
        "measurement",
        "SQLite p50 / p99",
        format!("{server} p50 / p99")
    );
    for ((name, a50, a99), (_, b50, b99)) in sq.iter().zip(&rt) {
        let cell = |p50: f64, p99: f64| {
            if p99.is_nan() {
                format!("{p50:.0}")
            } else {
                format!("{p50:.2} / {p99:.2}")
            }
        };
        println!(
            "{name:<52} {:>20} {:>20}",
            cell(*a50, *a99),
            cell(*b50, *b99)
        );
    }
}
