//! Crash safety: the real `shotgun-cache-syncer` binary is SIGKILLed at random instants, during the
//! import and while it follows events under a running workload; after the last restart the store
//! equals the site and the journal holds no entry twice.

mod support;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use support::*;

const KILL_TYPES: &[&str] = &["Note", "Playlist", "Shot", "Task", "Version"];

fn spawn(config: &std::path::Path, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the log file");
    Command::new(env!("CARGO_BIN_EXE_shotgun-cache-syncer"))
        .args(["run", "--config"])
        .arg(config)
        .env("SHOTGUN_CACHE_SITE__SCRIPT_KEY", "secret")
        .env("SHOTGUN_CACHE_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the syncer binary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_at_random_instants_loses_and_duplicates_nothing() {
    let cycles = if slow() { 60 } else { 20 };
    let sim = start_sim(if slow() { 2000 } else { 400 }).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("cache.db");
    let cfg_path = dir.path().join("syncer.toml");
    let log_path = dir.path().join("syncer.log");
    let text = config_text(&sim.base_url(), &db, KILL_TYPES, "")
        .replace("page_size = 200", "page_size = 25")
        .replace("import_concurrency = 4", "import_concurrency = 2");
    std::fs::write(&cfg_path, text).expect("write the config");

    // A workload keeps editing the site through every crash and restart.
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let site = sim.site().clone();
        let stop = stop.clone();
        let actor = site.script_actor("cache").expect("script actor");
        tokio::task::spawn_blocking(move || {
            let mut seed = 1000;
            while !stop.load(Ordering::Relaxed) {
                shotgun_sim::workload::run_edits(&site, 5, seed, &actor);
                seed += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for cycle in 0..cycles {
        let mut child = spawn(&cfg_path, &log_path);
        // Early cycles kill during the import, later ones while following.
        let ms = if cycle < 5 {
            rng.random_range(50..600)
        } else {
            rng.random_range(100..1500)
        };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!(
                "the syncer exited by itself ({status}) in cycle {cycle}; log tail:\n{}",
                tail(&log)
            );
        }
        child.kill().expect("SIGKILL the syncer");
        let _ = child.wait();
    }
    stop.store(true, Ordering::Relaxed);
    worker.await.expect("workload stops");

    let mut child = spawn(&cfg_path, &log_path);
    let store = open_store(&db);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let diffs = store_vs_site(store.as_ref(), &sim, KILL_TYPES).await;
        if diffs.is_empty() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!(
                "store != site after the crashes: {} differences:\n{}\nlog tail:\n{}",
                diffs.len(),
                diffs
                    .iter()
                    .take(20)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n"),
                tail(&log)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _ = child.kill();
    let _ = child.wait();

    let entries = store.journal_after(0, 10_000_000).await.expect("journal");
    let mut seen = HashSet::new();
    for e in entries.iter().filter(|e| e.event_id > 0) {
        let key = (
            e.event_id,
            e.entity_type.clone(),
            e.entity_id,
            e.op,
            e.fields.clone(),
        );
        assert!(
            seen.insert(key.clone()),
            "journal entry twice after kill -9: {key:?}"
        );
    }
    assert!(!seen.is_empty(), "the followed edits were journaled");
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
