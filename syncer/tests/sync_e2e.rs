//! End-to-end: import, then random edits of every kind, against the simulator with a real SQLite
//! file: the store equals the site and the journal has one entry per applied change.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_then_random_edits_store_equals_site() {
    let sim = start_sim(300).await;
    let (_dir, db) = temp_db();
    let cfg = load_config(&config_text(&sim.base_url(), &db, TYPES, ""));
    let syncer = RunningSyncer::start(cfg).await;
    syncer.wait_ready(Duration::from_secs(60)).await;
    let store = open_store(&db);
    wait_equal(store.as_ref(), &sim, TYPES, Duration::from_secs(30)).await;

    let head_before = store.journal_head().await.expect("journal head");
    let n = if slow() { 10_000 } else { 2_000 };
    let actor = sim.site().script_actor("cache").expect("script actor");
    let site = sim.site().clone();
    let (ok, _failed) =
        tokio::task::spawn_blocking(move || shotgun_sim::workload::run_edits(&site, n, 7, &actor))
            .await
            .expect("edits run");
    assert!(ok > n / 2, "most edits succeed ({ok} of {n})");
    wait_equal(store.as_ref(), &sim, TYPES, Duration::from_secs(60)).await;

    // One journal entry per applied change: no (event, entity, op) twice.
    let entries = store
        .journal_after(head_before, 1_000_000)
        .await
        .expect("journal");
    assert!(!entries.is_empty(), "edits produced journal entries");
    let mut seen = HashSet::new();
    for e in &entries {
        if e.event_id == 0 {
            continue;
        }
        let key = (e.event_id, e.entity_type.clone(), e.entity_id, e.op);
        assert!(seen.insert(key.clone()), "journal entry twice: {key:?}");
    }
    let (code, metrics) = syncer.get("/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("shotgun_cache_syncer_last_applied_event_id"),
        "{metrics}"
    );
    syncer.stop().await;
}
