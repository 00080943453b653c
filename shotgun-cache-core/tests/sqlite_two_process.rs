//! Two processes on one SQLite file: this test binary re-executes itself as a writer process (the
//! `writer_process` test with `SHOTGUN_CACHE_TWO_PROCESS_DB` set) while the parent reads the same file
//! concurrently. The reader must never see an error, a half-committed batch, or data going backwards.
//! Its result cache is on (as in the query-server): a count must see at least every shot whose
//! journal entry was visible before the count began, so a cached count older than the writer's
//! last commit fails the test.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use shotgun_cache_core::filter::Filter;
use shotgun_cache_core::model::{DateTime, Value};
use shotgun_cache_core::store::conformance::{entity, test_layouts, test_schema};
use shotgun_cache_core::store::sqlite::SqliteStore;
use shotgun_cache_core::store::{CountQuery, EntityWrite, Store, WriteBatch};

const ENV: &str = "SHOTGUN_CACHE_TWO_PROCESS_DB";
const BATCHES: i64 = 150;
const PER_BATCH: i64 = 40;

fn count_query() -> CountQuery {
    CountQuery {
        entity_type: "Shot".into(),
        filter: Filter::all(),
        retired_only: false,
        now: DateTime::now(),
    }
}

/// Writes `BATCHES` journaled batches of `PER_BATCH` new shots, each with the cursor state.
async fn write_batches(path: &Path) {
    let store = SqliteStore::open(path).expect("writer opens the store");
    for b in 0..BATCHES {
        let writes = (0..PER_BATCH)
            .map(|i| {
                let id = b * PER_BATCH + i + 1;
                let e = entity(
                    "Shot",
                    id,
                    &[
                        ("code", Value::Text(format!("sh{id:05}"))),
                        ("sg_cut_in", Value::Int(b)),
                    ],
                );
                EntityWrite::Upsert {
                    entity: e,
                    floor: 0,
                    event_id: id,
                }
            })
            .collect();
        let mut batch = WriteBatch {
            writes,
            journal: true,
            ..WriteBatch::default()
        };
        batch.state.insert("cursor".into(), json!(b + 1));
        let r = store.commit(batch).await.expect("writer commits a batch");
        assert_eq!(
            r.journal.len() as i64,
            PER_BATCH,
            "one journal entry per created shot"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The writer half. Run by the reader test in a child process; run on its own it writes to a
/// temporary file and checks the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_process() {
    if let Ok(path) = std::env::var(ENV) {
        write_batches(Path::new(&path)).await;
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("alone.db");
    let store = SqliteStore::open(&path).expect("open");
    store
        .prepare(&test_schema(), &test_layouts())
        .await
        .expect("prepare");
    write_batches(&path).await;
    assert_eq!(
        store.count(&count_query()).await.expect("count"),
        (BATCHES * PER_BATCH) as u64
    );
    assert_eq!(
        store.journal_head().await.expect("head"),
        (BATCHES * PER_BATCH) as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_sees_consistent_growing_data_while_another_process_writes() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("shared.db");
    let store = SqliteStore::open(&path).expect("reader opens the store");
    store
        .prepare(&test_schema(), &test_layouts())
        .await
        .expect("prepare");
    store.enable_result_cache(8 << 20);
    let mut child = Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "--exact",
            "writer_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV, &path)
        .spawn()
        .expect("start the writer process");
    let (mut last_count, mut last_head, mut last_cursor, mut reads) = (0_u64, 0_u64, 0_i64, 0_u64);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        let done = child.try_wait().expect("poll the writer");
        // Every journal entry is a created shot.
        let visible = store.journal_head().await.expect("journal head");
        let n = store
            .count(&count_query())
            .await
            .expect("count while the writer writes");
        assert!(
            n >= visible,
            "a count begun when {visible} shots were journaled saw {n} (a stale cached answer)"
        );
        // Asked again at once, usually from the cache.
        let again = store.count(&count_query()).await.expect("count again");
        assert!(again >= n, "the count went back from {n} to {again}");
        assert_eq!(
            n % PER_BATCH as u64,
            0,
            "a batch is visible entirely or not at all (saw {n} rows)"
        );
        assert!(
            n >= last_count,
            "row count went back from {last_count} to {n}"
        );
        let head = store.journal_head().await.expect("journal head");
        assert!(
            head >= last_head,
            "journal head went back from {last_head} to {head}"
        );
        let cursor = store
            .get_state("cursor")
            .await
            .expect("state")
            .and_then(|v| v.as_i64())
            .unwrap_or(0);
        assert!(
            cursor >= last_cursor,
            "cursor went back from {last_cursor} to {cursor}"
        );
        if n > 0 {
            let entries = store
                .journal_after(head.saturating_sub(5), 10)
                .await
                .expect("journal_after");
            assert!(
                entries.windows(2).all(|w| w[1].seq == w[0].seq + 1),
                "journal entries are contiguous"
            );
            let e = store
                .get("Shot", n as i64)
                .await
                .expect("get")
                .expect("the last shot of a visible batch exists");
            assert_eq!(e.get("sg_cut_in"), &Value::Int((n as i64 - 1) / PER_BATCH));
        }
        (last_count, last_head, last_cursor) = (n, head, cursor);
        reads += 1;
        if let Some(status) = done {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the writer process did not finish in time"
        );
        tokio::time::sleep(Duration::from_millis(3)).await;
    };
    assert!(status.success(), "the writer process failed: {status}");
    assert_eq!(
        last_count,
        (BATCHES * PER_BATCH) as u64,
        "the final read sees every batch"
    );
    assert_eq!(last_cursor, BATCHES);
    assert!(
        reads > 10,
        "the reader read while the writer wrote ({reads} reads)"
    );
    let s = store.result_cache_stats().expect("the cache is on");
    assert!(
        s.hits > 0 && s.misses > 0,
        "counts were served both from the cache and from the file: {s:?}"
    );
}
