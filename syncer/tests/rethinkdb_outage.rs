//! The syncer on RethinkDB while RethinkDB is unreachable: it pauses (its `/readyz` and gRPC health
//! say the store is unreachable, and nothing reaches the store), and when RethinkDB is back it
//! resumes from the cursor it had persisted, with nothing lost: every entity created or changed on
//! the site during the outage is in the store afterwards, and the journal holds no change twice.
//! Two outages: a stalled server (connections open, nothing answers, as with a `kill -STOP`ped
//! process) and a crashed one (connections closed and refused).
//!
//! The syncer reaches RethinkDB through a proxy that the test freezes or cuts
//! (`shotgun-cache-core/tests/rethinkdb_support/freeze_proxy.rs`); the test reads the store
//! directly.
//!
//! Server: `SHOTGUN_CACHE_TEST_RETHINKDB=host:port` (a real RethinkDB) or
//! `SHOTGUN_CACHE_TEST_REQLITE=host:port` (the reqlite test server `scripts/test-rethinkdb` starts).
//! Without either the test prints SKIPPED and passes.

mod support;

#[path = "../../shotgun-cache-core/tests/rethinkdb_support/freeze_proxy.rs"]
mod freeze_proxy;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shotgun_cache_core::store::Store;
use shotgun_cache_core::store::rethinkdb::{RethinkOptions, RethinkStore};
use shotgun_cache_syncer::site::{Site, SiteOptions};
use support::*;

const OUTAGE_TYPES: &[&str] = &["Note", "Project", "Shot", "Task", "Version"];

fn options(address: String, database: &str, timeout: Duration) -> RethinkOptions {
    RethinkOptions {
        address,
        database: database.to_owned(),
        user: "admin".into(),
        password: std::env::var("SHOTGUN_CACHE_TEST_RETHINKDB_PASSWORD").unwrap_or_default(),
        pool_size: 4,
        timeout,
    }
}

async fn readyz(admin: std::net::SocketAddr) -> (u16, String) {
    http_get(admin, "/readyz").await
}

async fn health(grpc: std::net::SocketAddr) -> i32 {
    let Ok(ch) = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .expect("url")
        .connect()
        .await
    else {
        return -1;
    };
    let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
    match h
        .check(tonic_health::pb::HealthCheckRequest {
            service: "shotgun_cache.v1.SyncerService".into(),
        })
        .await
    {
        Ok(r) => r.into_inner().status,
        Err(_) => -1,
    }
}

/// Waits until `/readyz` reports the store unreachable; returns how long that took.
async fn wait_paused(admin: std::net::SocketAddr, grpc: std::net::SocketAddr, what: &str) {
    let t = Instant::now();
    loop {
        let (code, body) = readyz(admin).await;
        if code == 503 && body.contains("store unreachable") {
            eprintln!("{what}: /readyz says {body:?} after {:?}", t.elapsed());
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{what}: /readyz still says {code} {body:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        health(grpc).await,
        tonic_health::pb::health_check_response::ServingStatus::NotServing as i32,
        "{what}: the SyncerService health is NOT_SERVING"
    );
}

async fn wait_resumed(admin: std::net::SocketAddr, what: &str) {
    let t = Instant::now();
    loop {
        if readyz(admin).await.0 == 200 {
            eprintln!("{what}: ready again after {:?}", t.elapsed());
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{what}: /readyz not 200 again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Edits the site (creates, changes and retires) while the store is unreachable; returns the
/// number of rows of the outage types the site gained.
async fn edit_during(sim: &shotgun_sim::RunningSim, seed: u64, secs: u64) -> usize {
    let site = sim.site().clone();
    let before = site.truth(None).len();
    let actor = site.script_actor("cache").expect("script actor");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut s = seed;
    while Instant::now() < deadline {
        let (site, actor) = (site.clone(), actor.clone());
        tokio::task::spawn_blocking(move || shotgun_sim::workload::run_edits(&site, 10, s, &actor))
            .await
            .expect("edits");
        s += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    site.truth(None).len() - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncer_pauses_while_rethinkdb_is_unreachable_and_resumes_losing_nothing() {
    let Some(address) = rethinkdb_target() else {
        eprintln!(
            "SKIPPED syncer_pauses_while_rethinkdb_is_unreachable_and_resumes_losing_nothing: no ReQL server (set SHOTGUN_CACHE_TEST_RETHINKDB=host:port or run scripts/test-rethinkdb)"
        );
        return;
    };
    let sim = start_sim(200).await;
    let (_dir, db) = temp_db();
    let database = format!("sgc_sync_outage_{:016x}", rand::random::<u64>());
    let text = config_text(&sim.base_url(), &db, OUTAGE_TYPES, "");
    let config = load_config(&text);
    let proxy = freeze_proxy::Proxy::start(&address).await;
    // The syncer's store, through the proxy, with a short call timeout (the bound of each stalled
    // call); the test's own view, direct.
    let store: Arc<dyn Store> = Arc::new(
        RethinkStore::connect_with(options(proxy.addr(), &database, Duration::from_secs(3)))
            .await
            .expect("connect the syncer's store"),
    );
    let direct =
        RethinkStore::connect_with(options(address.clone(), &database, Duration::from_secs(30)))
            .await
            .expect("connect the test's store");
    let (script, key) = sim.credentials();
    let site = Site::new(SiteOptions::new(
        &sim.base_url(),
        &script,
        &key,
        Duration::from_secs(10),
    ))
    .expect("site client");
    let listeners = shotgun_cache_syncer::Listeners::bind_local()
        .await
        .expect("bind");
    let admin = listeners.admin.local_addr().expect("admin addr");
    let grpc = listeners.grpc.local_addr().expect("grpc addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(shotgun_cache_syncer::run_with(
        config,
        store,
        site,
        listeners,
        async move {
            let _ = stop_rx.await;
        },
    ));
    wait_for("the initial import", Duration::from_secs(180), || async {
        readyz(admin).await.0 == 200
    })
    .await;
    wait_equal(&direct, &sim, OUTAGE_TYPES, Duration::from_secs(60)).await;

    for (phase, seed) in [("stalled", 10_000), ("crashed", 20_000)] {
        match phase {
            "stalled" => proxy.freeze(),
            _ => proxy.cut(),
        }
        wait_paused(admin, grpc, phase).await;
        let head = direct.journal_head().await.expect("journal head");
        let created = edit_during(&sim, seed, 6).await;
        assert!(
            created > 0,
            "{phase}: the site gained rows during the outage"
        );
        assert_eq!(
            direct.journal_head().await.expect("journal head"),
            head,
            "{phase}: nothing reached the store while it was unreachable"
        );
        assert!(!task.is_finished(), "{phase}: the syncer kept running");
        proxy.open();
        wait_resumed(admin, phase).await;
        // Everything created or changed during the outage arrives.
        wait_equal(&direct, &sim, OUTAGE_TYPES, Duration::from_secs(120)).await;
        eprintln!("{phase}: store == site again ({created} rows created during the outage)");
    }

    let entries = direct.journal_after(0, 1_000_000).await.expect("journal");
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
            "journal entry twice after the outages: {key:?}"
        );
    }
    assert!(!seen.is_empty(), "the edits were journaled");

    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(20), task).await {
        Ok(Ok(Ok(()))) => {}
        other => panic!("the syncer did not stop cleanly: {other:?}"),
    }
    direct
        .drop_database()
        .await
        .expect("drop the test database");
}

/// A syncer started while RethinkDB is unreachable (a pod restarted during a database outage) waits
/// for it, logging each attempt, instead of exiting; once the database is back it imports, and the
/// store equals the site.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncer_started_while_rethinkdb_is_unreachable_waits_for_it() {
    let Some(address) = rethinkdb_target() else {
        eprintln!(
            "SKIPPED syncer_started_while_rethinkdb_is_unreachable_waits_for_it: no ReQL server (set SHOTGUN_CACHE_TEST_RETHINKDB=host:port or run scripts/test-rethinkdb)"
        );
        return;
    };
    let sim = start_sim(50).await;
    let (_dir, db) = temp_db();
    let text = config_text(&sim.base_url(), &db, OUTAGE_TYPES, "");
    let mut config = load_config(&text);
    let database = config.store.rethinkdb_database.clone();
    let proxy = freeze_proxy::Proxy::start(&address).await;
    proxy.cut();
    config.store.rethinkdb_address = proxy.addr();
    config.store.rethinkdb_timeout_secs = 2;
    config.store.rethinkdb_password = shotgun_cache_core::config::Secret(
        std::env::var("SHOTGUN_CACHE_TEST_RETHINKDB_PASSWORD").unwrap_or_default(),
    );
    config.site.script_key = shotgun_cache_core::config::Secret(sim.credentials().1);
    let listeners = shotgun_cache_syncer::Listeners::bind_local()
        .await
        .expect("bind");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(shotgun_cache_syncer::run(config, listeners, async move {
        let _ = stop_rx.await;
    }));
    // Several connection attempts fail (the first retries come after 0.2, 0.4 and 0.8 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !task.is_finished(),
        "the syncer waits for an unreachable store instead of exiting: {:?}",
        task.await
    );
    proxy.open();
    let direct =
        RethinkStore::connect_with(options(address.clone(), &database, Duration::from_secs(30)))
            .await
            .expect("connect the test's store");
    wait_equal(&direct, &sim, OUTAGE_TYPES, Duration::from_secs(120)).await;
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(20), task).await {
        Ok(Ok(Ok(()))) => {}
        other => panic!("the syncer did not stop cleanly: {other:?}"),
    }
    direct
        .drop_database()
        .await
        .expect("drop the test database");
}

/// A syncer asked to stop while it waits for an unreachable store stops at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncer_waiting_for_an_unreachable_store_stops_on_shutdown() {
    // Nothing listens on this port: the address is taken and released at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let (_dir, db) = temp_db();
    let text = config_text_sqlite_free("http://127.0.0.1:1", &db);
    let mut config = load_config(&text);
    config.store.backend = shotgun_cache_core::config::Backend::Rethinkdb;
    config.store.rethinkdb_address = format!("127.0.0.1:{port}");
    config.store.rethinkdb_timeout_secs = 1;
    let listeners = shotgun_cache_syncer::Listeners::bind_local()
        .await
        .expect("bind");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(shotgun_cache_syncer::run(config, listeners, async move {
        let _ = stop_rx.await;
    }));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !task.is_finished(),
        "the syncer is still waiting for the store"
    );
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(5), task).await {
        Ok(Ok(Ok(()))) => {}
        other => panic!("the syncer did not stop cleanly while waiting: {other:?}"),
    }
}

/// A minimal config (one type) whose store section the test replaces.
fn config_text_sqlite_free(url: &str, db: &std::path::Path) -> String {
    format!(
        "[site]\nurl = \"{url}\"\nscript_name = \"cache\"\n\n[store]\nsqlite_path = \"{}\"\n\n[syncer]\nadmin_listen = \"127.0.0.1:0\"\ngrpc_listen = \"127.0.0.1:0\"\n\n[types.Shot]\nfields = \"all\"\n",
        db.display()
    )
}
