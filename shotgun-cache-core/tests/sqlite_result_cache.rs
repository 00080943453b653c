//! The SQLite result cache (`SqliteStore::enable_result_cache`): a cached answer is never older
//! than a read started at the same moment. Writers and cached readers run concurrently, on one
//! store handle and on two handles of one file; every answer is checked against what had
//! committed before the request began.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::json;

use shotgun_cache_core::filter::validate_path;
use shotgun_cache_core::model::{DateTime, Value};
use shotgun_cache_core::query::FindQuery;
use shotgun_cache_core::store::conformance::{entity, filter, test_layouts, test_schema};
use shotgun_cache_core::store::sqlite::SqliteStore;
use shotgun_cache_core::store::{CountQuery, EntityWrite, FieldChange, Store, WriteBatch};

const ROUNDS: i64 = 300;

fn shot(id: i64, cut_in: i64) -> EntityWrite {
    EntityWrite::Upsert {
        entity: entity(
            "Shot",
            id,
            &[
                ("code", Value::Text(format!("sh{id:05}"))),
                ("sg_cut_in", Value::Int(cut_in)),
            ],
        ),
        floor: 0,
        event_id: id,
    }
}

fn find_cut_in(id: i64) -> FindQuery {
    FindQuery {
        entity_type: "Shot".into(),
        filter: filter("Shot", json!([["id", "is", id]])),
        fields: vec![validate_path(&test_schema(), "Shot", "sg_cut_in").expect("path")],
        sorts: Vec::new(),
        offset: 0,
        limit: Some(10),
        retired_only: false,
    }
}

fn count_all() -> CountQuery {
    CountQuery {
        entity_type: "Shot".into(),
        filter: filter("Shot", json!([])),
        retired_only: false,
        now: DateTime::now(),
    }
}

async fn prepared(path: &std::path::Path) -> SqliteStore {
    let store = SqliteStore::open(path).expect("open");
    store
        .prepare(&test_schema(), &test_layouts())
        .await
        .expect("prepare");
    store
        .commit(WriteBatch::import(vec![entity(
            "Shot",
            1,
            &[("sg_cut_in", Value::Int(0))],
        )]))
        .await
        .expect("first row");
    store
}

/// The writer changes shot 1's `sg_cut_in` to 1, 2, ... and adds a shot each round, publishing
/// each round's number once its commit has returned; readers (finds and counts, cached) check
/// that they never see less than what was published before they asked.
async fn race(writer: Arc<SqliteStore>, reader: Arc<SqliteStore>) {
    let committed = Arc::new(AtomicI64::new(0));
    let w = {
        let (committed, writer) = (committed.clone(), writer.clone());
        tokio::spawn(async move {
            for k in 1..=ROUNDS {
                let batch = WriteBatch {
                    writes: vec![
                        EntityWrite::Patch {
                            entity_type: "Shot".into(),
                            id: 1,
                            event_id: 10_000 + k,
                            changes: vec![FieldChange::Set("sg_cut_in".into(), Value::Int(k))],
                        },
                        shot(1 + k, k),
                    ],
                    journal: true,
                    ..WriteBatch::default()
                };
                writer.commit(batch).await.expect("commit");
                committed.store(k, Ordering::SeqCst);
                if k % 3 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (committed, reader) = (committed.clone(), reader.clone());
        readers.push(tokio::spawn(async move {
            let mut reads = 0;
            loop {
                let before = committed.load(Ordering::SeqCst);
                let rows = reader.find(&find_cut_in(1)).await.expect("find");
                let Some(Value::Int(seen)) = rows.first().map(|r| r.fields["sg_cut_in"].clone())
                else {
                    panic!("shot 1 with its sg_cut_in: {rows:?}");
                };
                assert!(
                    seen >= before,
                    "a find started after round {before} committed saw round {seen}"
                );
                let n = reader.count(&count_all()).await.expect("count") as i64;
                assert!(
                    n > before,
                    "a count started after round {before} committed saw {n} shots"
                );
                reads += 1;
                if before == ROUNDS {
                    break reads;
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    w.await.expect("writer");
    for r in readers {
        assert!(r.await.expect("reader") > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_answers_follow_commits_of_the_same_handle() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Arc::new(prepared(&dir.path().join("one.db")).await);
    store.enable_result_cache(8 << 20);
    race(store.clone(), store.clone()).await;
    let s = store.result_cache_stats().expect("enabled");
    assert!(s.misses > 0 && s.invalidations > 0, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_answers_follow_commits_of_another_handle() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("two.db");
    let writer = Arc::new(prepared(&path).await);
    let reader = Arc::new(SqliteStore::open(&path).expect("open the reader"));
    reader.enable_result_cache(8 << 20);
    race(writer, reader.clone()).await;
    assert!(reader.result_cache_stats().expect("enabled").misses > 0);
}

#[tokio::test]
async fn unchanged_data_is_served_from_the_cache_and_a_commit_ends_that() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("hits.db");
    let writer = prepared(&path).await;
    let reader = SqliteStore::open(&path).expect("open the reader");
    assert!(reader.result_cache_stats().is_none(), "off until enabled");
    reader.enable_result_cache(8 << 20);
    let first = reader.find(&find_cut_in(1)).await.expect("find");
    for _ in 0..5 {
        assert_eq!(reader.find(&find_cut_in(1)).await.expect("find"), first);
        assert_eq!(reader.count(&count_all()).await.expect("count"), 1);
    }
    // An answer is kept when its request misses a second time: the first find and the first two
    // counts were read from the file, everything after from the cache.
    let s = reader.result_cache_stats().expect("enabled");
    assert_eq!((s.hits, s.misses, s.entries), (7, 4, 2), "{s:?}");
    assert!(s.bytes > 0 && s.bytes <= s.budget_bytes, "{s:?}");
    writer
        .commit(WriteBatch {
            writes: vec![shot(2, 7)],
            journal: true,
            ..WriteBatch::default()
        })
        .await
        .expect("commit");
    assert_eq!(reader.count(&count_all()).await.expect("count"), 2);
    let s = reader.result_cache_stats().expect("enabled");
    assert_eq!((s.hits, s.invalidations, s.entries), (7, 2, 0), "{s:?}");
    // Different queries are different entries.
    for _ in 0..3 {
        let rows = reader.find(&find_cut_in(2)).await.expect("find");
        assert_eq!(rows[0].fields["sg_cut_in"], Value::Int(7));
        assert_eq!(reader.find(&find_cut_in(1)).await.expect("find"), first);
    }
    let s = reader.result_cache_stats().expect("enabled");
    assert_eq!((s.hits, s.entries), (9, 2), "{s:?}");
}

#[tokio::test]
async fn answers_that_depend_on_the_time_are_never_cached() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = prepared(&dir.path().join("time.db")).await;
    store.enable_result_cache(8 << 20);
    for f in [
        json!([["created_at", "in_last", 2, "DAY"]]),
        json!([["created_at", "not_in_next", 1, "WEEK"]]),
        json!({"filter_operator": "any", "filters": [["id", "is", 1], ["sg_due", "in_calendar_month", 0]]}),
    ] {
        let q = CountQuery {
            entity_type: "Shot".into(),
            filter: filter("Shot", f.clone()),
            retired_only: false,
            now: DateTime::now(),
        };
        for _ in 0..2 {
            store.count(&q).await.expect("count");
            store
                .find(&FindQuery {
                    filter: q.filter.clone(),
                    ..find_cut_in(1)
                })
                .await
                .expect("find");
        }
    }
    let s = store.result_cache_stats().expect("enabled");
    assert_eq!(
        (s.uncacheable, s.hits, s.misses, s.entries),
        (12, 0, 0, 0),
        "{s:?}"
    );
}
