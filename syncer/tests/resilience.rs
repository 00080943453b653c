//! End-to-end resilience against the simulator with a real SQLite file: out-of-order commits and
//! permanent gaps, injected errors of every kind, writes without events (reconciliation), a log
//! archived past the cursor (re-import), and a config change that reloads only one type.

mod support;

use std::time::Duration;

use shotgun_cache_core::store::{JournalOp, TypePhase};
use shotgun_sim::{EventKnobs, FaultKind, Faults};
use support::*;

fn quick_types() -> &'static [&'static str] {
    &["Note", "Playlist", "Shot", "Task", "Version"]
}

async fn edits(sim: &shotgun_sim::RunningSim, script: &str, n: u64, seed: u64) -> u64 {
    let actor = sim.site().script_actor(script).expect("script actor");
    let site = sim.site().clone();
    let (ok, _) = tokio::task::spawn_blocking(move || {
        shotgun_sim::workload::run_edits(&site, n, seed, &actor)
    })
    .await
    .expect("edits run");
    ok
}

async fn metric(syncer: &RunningSyncer, name: &str) -> Option<f64> {
    let (_, text) = syncer.get("/metrics").await;
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_commits_and_permanent_gaps_lose_nothing() {
    let sim = start_sim(200).await;
    let (_dir, db) = temp_db();
    let cfg = load_config(&config_text(
        &sim.base_url(),
        &db,
        quick_types(),
        "gap_timeout_secs = 5\n",
    ));
    let syncer = RunningSyncer::start(cfg).await;
    syncer.wait_ready(Duration::from_secs(60)).await;
    sim.site().set_event_knobs(EventKnobs {
        visibility_delay_ms: 50,
        out_of_order_rate: 0.3,
        out_of_order_max_delay_ms: 1500,
        gap_rate: 0.05,
        seed: 3,
    });
    // Edits arrive while the syncer follows, in several waves.
    for wave in 0..4 {
        edits(&sim, "cache", 300, 100 + wave).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let store = open_store(&db);
    // `updated_at` is taken from the event's `created_at`, which the simulator stamps when the
    // (delayed) event becomes visible; reconciliation repairs it (tested below), not the log.
    wait_equal_except(
        store.as_ref(),
        &sim,
        quick_types(),
        &["updated_at"],
        Duration::from_secs(60),
    )
    .await;
    // Lag stays bounded: the cursor reaches the newest event and every gap expires.
    let last = sim.site().last_event_id() as f64;
    wait_for(
        "the cursor to reach the newest event",
        Duration::from_secs(20),
        || async {
            metric(&syncer, "shotgun_cache_syncer_last_applied_event_id")
                .await
                .is_some_and(|v| v >= last)
        },
    )
    .await;
    wait_for("open gaps to expire", Duration::from_secs(20), || async {
        metric(&syncer, "shotgun_cache_syncer_open_gaps").await == Some(0.0)
    })
    .await;
    assert!(
        metric(&syncer, "shotgun_cache_syncer_expired_gaps_total")
            .await
            .unwrap_or(0.0)
            > 0.0,
        "permanent gaps were seen and expired"
    );
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_percent_injected_errors_converge() {
    let sim = start_sim(120).await;
    // Short-lived tokens: the syncer must refresh before expiry (and on a 401) throughout.
    sim.set_token_ttl(Duration::from_secs(2));
    sim.set_faults(Faults {
        error_rate: 0.2,
        error_kinds: FaultKind::ALL.to_vec(),
        retry_after_secs: 1,
        hang_secs: 2,
        seed: 5,
        ..Faults::default()
    });
    let (_dir, db) = temp_db();
    let cfg = load_config(
        &config_text(
            &sim.base_url(),
            &db,
            quick_types(),
            "request_timeout_secs = 1\n",
        )
        .replace(
            "reconcile_interval_secs = 3600",
            "reconcile_interval_secs = 5",
        ),
    );
    let syncer = RunningSyncer::start(cfg).await;
    syncer.wait_ready(Duration::from_secs(120)).await;
    edits(&sim, "cache", 300, 9).await;
    let store = open_store(&db);
    wait_equal(
        store.as_ref(),
        &sim,
        quick_types(),
        Duration::from_secs(120),
    )
    .await;
    assert!(
        metric(&syncer, "shotgun_cache_syncer_retries_total")
            .await
            .unwrap_or(0.0)
            > 0.0,
        "errors were retried"
    );
    sim.set_faults(Faults::default());
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_without_events_are_repaired_by_reconciliation() {
    let sim = start_sim(200).await;
    let (_dir, db) = temp_db();
    let cfg = load_config(
        &config_text(&sim.base_url(), &db, quick_types(), "").replace(
            "reconcile_interval_secs = 3600",
            "reconcile_interval_secs = 2",
        ),
    );
    let syncer = RunningSyncer::start(cfg).await;
    syncer.wait_ready(Duration::from_secs(60)).await;
    let before = sim.site().last_event_id();
    let ok = edits(&sim, "silent", 300, 21).await;
    assert!(ok > 100);
    assert_eq!(
        sim.site().last_event_id(),
        before,
        "the silent script writes no events"
    );
    let store = open_store(&db);
    wait_equal(store.as_ref(), &sim, quick_types(), Duration::from_secs(60)).await;
    assert!(
        metric(&syncer, "shotgun_cache_syncer_reconcile_repairs_total")
            .await
            .unwrap_or(0.0)
            > 0.0
    );
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_archived_past_the_cursor_reimports() {
    let sim = start_sim(200).await;
    let (_dir, db) = temp_db();
    let text = config_text(&sim.base_url(), &db, quick_types(), "");
    let syncer = RunningSyncer::start(load_config(&text)).await;
    syncer.wait_ready(Duration::from_secs(60)).await;
    syncer.stop().await;
    // While the syncer is down: edits, then the log is archived past its cursor.
    edits(&sim, "cache", 300, 33).await;
    let last = sim.site().last_event_id();
    sim.site().archive_events_before(last + 1);
    edits(&sim, "cache", 50, 34).await;
    let store = open_store(&db);
    let reloads_before = store
        .journal_after(0, 1_000_000)
        .await
        .expect("journal")
        .iter()
        .filter(|e| e.op == JournalOp::Reload)
        .count();
    let syncer = RunningSyncer::start(load_config(&text)).await;
    wait_equal(store.as_ref(), &sim, quick_types(), Duration::from_secs(90)).await;
    let reloads: Vec<String> = store
        .journal_after(0, 1_000_000)
        .await
        .expect("journal")
        .into_iter()
        .filter(|e| e.op == JournalOp::Reload)
        .map(|e| e.entity_type)
        .collect();
    assert!(
        reloads.len() >= reloads_before + quick_types().len(),
        "every type was re-imported: {reloads:?}"
    );
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_change_reloads_only_that_type_and_queries_never_see_it_half_loaded() {
    let sim = start_sim(400).await;
    let (_dir, db) = temp_db();
    let narrow = config_text(&sim.base_url(), &db, &["Note", "Task", "Version"], "")
        + "[types.Shot]\nfields = [\"code\", \"sg_status_list\"]\n";
    let syncer = RunningSyncer::start(load_config(&narrow)).await;
    syncer.wait_ready(Duration::from_secs(60)).await;
    syncer.stop().await;
    let store = open_store(&db);
    let head = store.journal_head().await.expect("head");
    let shots = store.type_counts().await.expect("counts")["Shot"];
    let wide = config_text(
        &sim.base_url(),
        &db,
        &["Note", "Shot", "Task", "Version"],
        "",
    );
    let wide = wide
        .replace("page_size = 200", "page_size = 20")
        .replace("import_concurrency = 4", "import_concurrency = 1");
    let syncer = RunningSyncer::start(load_config(&wide)).await;
    // While the re-import runs, the live Shot copy stays served and complete.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut saw_reimport = false;
    loop {
        let states = store.type_states().await.expect("states");
        let shot = states
            .iter()
            .find(|s| s.entity_type == "Shot")
            .expect("Shot state");
        assert_ne!(
            shot.phase,
            TypePhase::Importing,
            "Shot must never be unserved during a re-import"
        );
        saw_reimport |= shot.phase == TypePhase::Reimporting;
        let counts = store.type_counts().await.expect("counts");
        assert!(
            counts["Shot"].0 >= shots.0,
            "live Shot rows never drop during the re-import: {:?} < {:?}",
            counts["Shot"],
            shots
        );
        let layouts = store.layouts().await.expect("layouts");
        let shot_fields = layouts
            .iter()
            .find(|l| l.entity_type == "Shot")
            .map(|l| l.fields.len())
            .unwrap_or(0);
        if shot.phase == TypePhase::Ready && shot_fields > 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "re-import of Shot did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = saw_reimport;
    let reloads: Vec<String> = store
        .journal_after(head, 1_000_000)
        .await
        .expect("journal")
        .into_iter()
        .filter(|e| e.op == JournalOp::Reload)
        .map(|e| e.entity_type)
        .collect();
    assert_eq!(
        reloads,
        vec!["Shot".to_owned()],
        "only the changed type reloads"
    );
    wait_equal(
        store.as_ref(),
        &sim,
        &["Note", "Shot", "Task", "Version"],
        Duration::from_secs(30),
    )
    .await;
    syncer.stop().await;
}
