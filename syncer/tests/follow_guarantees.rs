//! End-to-end guarantees of the follower against the simulator with a real SQLite file:
//! - an event for an entity the cache never saw is applied with its re-read in the same batch as
//!   the events around it (one commit, with the cursor);
//! - reconciliation runs beside event following: a change still shows up in well under a second
//!   while reconciliation rounds run back to back;
//! - an interrupted first import resumes after the last committed id of each range, and its
//!   progress counts the rows committed before the interruption.

mod support;

use std::time::{Duration, Instant};

use shotgun_cache_core::model::Value;
use shotgun_cache_core::store::{JournalOp, TypePhase};
use shotgun_sim::Faults;
use shotgun_sim::site::{FieldWrite, MultiMode, WriteOp};
use support::*;

async fn metric(syncer: &RunningSyncer, name: &str) -> Option<f64> {
    let (_, text) = syncer.get("/metrics").await;
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

fn set(field: &str, v: serde_json::Value) -> FieldWrite {
    FieldWrite {
        field: field.to_owned(),
        value: v,
        mode: MultiMode::Set,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unseen_entity_is_reread_in_the_same_batch_as_the_events_around_it() {
    let sim = start_sim(100).await;
    let (_dir, db) = temp_db();
    let types = ["Shot"];
    let cfg = load_config(&config_text(&sim.base_url(), &db, &types, ""));
    let syncer = RunningSyncer::start(cfg).await;
    syncer.wait_ready(Duration::from_secs(60)).await;
    let store = open_store(&db);
    wait_equal(store.as_ref(), &sim, &types, Duration::from_secs(30)).await;

    // A Shot the cache never saw: created by a script that writes no events.
    let silent = sim.site().script_actor("silent").expect("silent actor");
    let project = sim
        .site()
        .truth(Some(&["Project".to_owned()]))
        .into_iter()
        .find(|r| !r.retired)
        .map(|r| r.id)
        .expect("a project");
    let unseen = sim
        .site()
        .create(
            &silent,
            "Shot",
            serde_json::json!({"code": "unseen", "project": {"type": "Project", "id": project}})
                .as_object()
                .expect("obj"),
        )
        .expect("silent create");
    let shots: Vec<i64> = sim
        .site()
        .truth(Some(&["Shot".to_owned()]))
        .into_iter()
        .filter(|r| !r.retired && r.id != unseen)
        .map(|r| r.id)
        .take(2)
        .collect();
    assert_eq!(shots.len(), 2);
    let batches_before = metric(&syncer, "shotgun_cache_syncer_batches_total")
        .await
        .expect("batches metric");
    let head_before = store.journal_head().await.expect("head");
    let first_event = sim.site().last_event_id() + 1;

    // One site transaction: its events become visible together, so the follower reads them in
    // one page. The middle one updates the unseen Shot.
    let cache = sim.site().script_actor("cache").expect("cache actor");
    sim.site()
        .batch(
            &cache,
            vec![
                WriteOp::Update {
                    entity_type: "Shot".into(),
                    id: shots[0],
                    fields: vec![set("code", serde_json::json!("before-unseen"))],
                },
                WriteOp::Update {
                    entity_type: "Shot".into(),
                    id: unseen,
                    fields: vec![set("code", serde_json::json!("unseen-updated"))],
                },
                WriteOp::Update {
                    entity_type: "Shot".into(),
                    id: shots[1],
                    fields: vec![set("code", serde_json::json!("after-unseen"))],
                },
            ],
        )
        .expect("batch");
    let last_event = sim.site().last_event_id();
    assert!(last_event >= first_event + 2, "three change events");
    wait_for(
        "the cursor to pass the batch",
        Duration::from_secs(20),
        || async {
            metric(&syncer, "shotgun_cache_syncer_last_applied_event_id")
                .await
                .is_some_and(|v| v >= last_event as f64)
        },
    )
    .await;

    // All three changes, the unseen Shot included, came in exactly one follower commit.
    let batches = metric(&syncer, "shotgun_cache_syncer_batches_total")
        .await
        .expect("batches metric");
    assert_eq!(
        batches - batches_before,
        1.0,
        "the three events and the re-read commit together"
    );
    assert_eq!(
        metric(&syncer, "shotgun_cache_syncer_late_rereads_total").await,
        Some(0.0),
        "no write needed a second commit"
    );
    let row = store
        .get("Shot", unseen)
        .await
        .expect("get")
        .expect("the unseen Shot is cached");
    assert_eq!(
        row.fields.get("code"),
        Some(&Value::Text("unseen-updated".into()))
    );
    let entries = store
        .journal_after(head_before, 1000)
        .await
        .expect("journal");
    let ids: Vec<(i64, JournalOp)> = entries.iter().map(|e| (e.entity_id, e.op)).collect();
    assert!(
        ids.contains(&(unseen, JournalOp::Create)),
        "the re-read journals the unseen Shot's creation: {ids:?}"
    );
    assert!(ids.contains(&(shots[0], JournalOp::Update)), "{ids:?}");
    assert!(ids.contains(&(shots[1], JournalOp::Update)), "{ids:?}");
    // The re-read's entry carries the event that asked for it, and the journal's sequence is
    // contiguous over the batch (nothing else was committed in between).
    let create = entries
        .iter()
        .find(|e| e.entity_id == unseen)
        .expect("create entry");
    assert!(create.event_id >= first_event && create.event_id <= last_event);
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "one batch: {seqs:?}"
    );
    wait_equal(store.as_ref(), &sim, &types, Duration::from_secs(30)).await;
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_runs_beside_event_following() {
    let sim = start_sim(300).await;
    let (_dir, db) = temp_db();
    let types = ["Note", "Playlist", "Shot", "Task", "Version"];
    let text = config_text(&sim.base_url(), &db, &types, "").replace(
        "reconcile_interval_secs = 3600",
        "reconcile_interval_secs = 1",
    );
    let syncer = RunningSyncer::start(load_config(&text)).await;
    syncer.wait_ready(Duration::from_secs(60)).await;
    let store = open_store(&db);
    // Every request now takes 40 ms: one reconciliation round (schema, an updated_at scan and an
    // id diff of five types, page by page) takes well over a second.
    sim.set_faults(Faults {
        latency_ms: 40,
        ..Faults::default()
    });
    let rounds_at = |v: Option<f64>| v.unwrap_or(0.0);
    let r0 = rounds_at(metric(&syncer, "shotgun_cache_syncer_reconcile_rounds_total").await);
    let cache = sim.site().script_actor("cache").expect("cache actor");
    let shots: Vec<i64> = sim
        .site()
        .truth(Some(&["Shot".to_owned()]))
        .into_iter()
        .filter(|r| !r.retired)
        .map(|r| r.id)
        .collect();
    let mut lags = Vec::new();
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(8) {
        let id = shots[n % shots.len()];
        let code = format!("lag-{n}");
        sim.site()
            .update(
                &cache,
                "Shot",
                id,
                serde_json::json!({"code": code}).as_object().expect("obj"),
            )
            .expect("update");
        let t0 = Instant::now();
        loop {
            let got = store.get("Shot", id).await.expect("get");
            if got.is_some_and(|e| e.fields.get("code") == Some(&Value::Text(code.clone()))) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "change {n} never arrived"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        lags.push(t0.elapsed());
        n += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let r1 = rounds_at(metric(&syncer, "shotgun_cache_syncer_reconcile_rounds_total").await);
    sim.set_faults(Faults::default());
    assert!(
        r1 - r0 >= 1.0,
        "reconciliation rounds ran while changes were followed ({r0} -> {r1})"
    );
    lags.sort();
    let max = lags.last().copied().unwrap_or_default();
    assert!(
        max < Duration::from_millis(1000),
        "a change took {max:?} to show up while reconciliation ran (lags {lags:?})"
    );
    wait_equal(store.as_ref(), &sim, &types, Duration::from_secs(30)).await;
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_first_import_resumes_from_the_last_committed_id() {
    let sim = start_sim(2000).await;
    let types = ["Task"];
    let rows = sim.site().truth(Some(&["Task".to_owned()])).len() as u64;
    assert!(rows >= 400, "enough Task rows to page through: {rows}");
    let page = 20u64;
    let text = |db: &std::path::Path| {
        config_text(&sim.base_url(), db, &types, "")
            .replace("page_size = 200", &format!("page_size = {page}"))
            .replace("import_concurrency = 4", "import_concurrency = 2")
    };
    sim.set_faults(Faults {
        latency_ms: 30,
        ..Faults::default()
    });
    let requests = || sim.state().faults.stats().requests;

    // Baseline: the requests of a whole first import.
    let (_d0, db0) = temp_db();
    let r0 = requests();
    let syncer = RunningSyncer::start(load_config(&text(&db0))).await;
    syncer.wait_ready(Duration::from_secs(120)).await;
    let full = requests() - r0;
    syncer.stop().await;

    // Interrupted about half way (the task is dropped, as a crash would end it).
    let (_d1, db1) = temp_db();
    let store = open_store(&db1);
    let syncer = RunningSyncer::start(load_config(&text(&db1))).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = store
            .type_states()
            .await
            .unwrap_or_default()
            .iter()
            .find(|s| s.entity_type == "Task")
            .map(|s| s.done)
            .unwrap_or(0);
        if done >= rows / 2 {
            break;
        }
        assert!(Instant::now() < deadline, "import did not progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut syncer = syncer;
    syncer.task.abort();
    let _ = (&mut syncer.task).await;
    drop(syncer);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let state = store
        .type_states()
        .await
        .expect("states")
        .into_iter()
        .find(|s| s.entity_type == "Task")
        .expect("Task state");
    assert_eq!(state.phase, TypePhase::Importing, "interrupted mid-import");
    let counts = store.type_counts().await.expect("counts");
    let committed = counts.get("Task").map(|(a, b)| a + b).unwrap_or(0);
    assert_eq!(
        state.done, committed,
        "the persisted progress is exactly the rows committed"
    );
    assert!(
        committed >= rows / 2 && committed < rows,
        "{committed} of {rows}"
    );

    // Restart: the import resumes; progress never drops below what was committed.
    let r1 = requests();
    let syncer = RunningSyncer::start(load_config(&text(&db1))).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = store
            .type_states()
            .await
            .unwrap_or_default()
            .into_iter()
            .find(|s| s.entity_type == "Task");
        if let Some(st) = &st {
            assert!(
                st.done >= committed,
                "progress restarted from {} below the {committed} rows already committed",
                st.done
            );
            if st.phase == TypePhase::Ready {
                break;
            }
        }
        assert!(Instant::now() < deadline, "resumed import did not finish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    syncer.wait_ready(Duration::from_secs(30)).await;
    let resumed = requests() - r1;
    let saved_pages = committed / page;
    assert!(
        resumed + saved_pages / 2 <= full,
        "the resumed import re-read the committed ranges: {resumed} requests vs {full} for a whole import ({saved_pages} pages were already committed)"
    );
    let counts = store.type_counts().await.expect("counts");
    let total = counts.get("Task").map(|(a, b)| a + b).unwrap_or(0);
    let state = store
        .type_states()
        .await
        .expect("states")
        .into_iter()
        .find(|s| s.entity_type == "Task")
        .expect("Task state");
    assert_eq!(state.done, total, "progress counts every row exactly once");
    assert_eq!(total, rows, "every Task row imported");
    for key in ["import/Task", "import/Task/0"] {
        assert!(
            store
                .get_state(key)
                .await
                .expect("state")
                .is_none_or(|v| v.is_null()),
            "{key} is cleared once the import is done"
        );
    }
    sim.set_faults(Faults::default());
    wait_equal(store.as_ref(), &sim, &types, Duration::from_secs(30)).await;
    syncer.stop().await;
}
