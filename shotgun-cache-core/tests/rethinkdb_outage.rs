//! The RethinkDB store while its server is unreachable: every call fails with `Unavailable` within
//! the call timeout (a stalled server as well as a refused one), concurrent calls do not queue up
//! behind each other, and the same store object works again, with its data, once the server is
//! back.
//!
//! Server: `SHOTGUN_CACHE_TEST_RETHINKDB=host:port` (a real RethinkDB) or
//! `SHOTGUN_CACHE_TEST_REQLITE=host:port` (the reqlite test server `scripts/test-rethinkdb` starts).
//! The outage is made by a proxy (`rethinkdb_support/freeze_proxy.rs`) that freezes or cuts the
//! store's connections; with reqlite, a second test also `kill -STOP`s a private reqlite process.

#[path = "rethinkdb_support/freeze_proxy.rs"]
mod freeze_proxy;

use std::time::{Duration, Instant};

use serde_json::json;
use shotgun_cache_core::store::rethinkdb::{RethinkOptions, RethinkStore};
use shotgun_cache_core::store::{Store, StoreError, WriteBatch};

const TIMEOUT: Duration = Duration::from_secs(2);

fn server() -> Option<String> {
    ["SHOTGUN_CACHE_TEST_RETHINKDB", "SHOTGUN_CACHE_TEST_REQLITE"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

fn options(address: String, database: &str) -> RethinkOptions {
    RethinkOptions {
        address,
        database: database.to_owned(),
        user: "admin".into(),
        password: std::env::var("SHOTGUN_CACHE_TEST_RETHINKDB_PASSWORD").unwrap_or_default(),
        pool_size: 2,
        timeout: TIMEOUT,
    }
}

async fn put(store: &RethinkStore, v: i64) {
    store
        .commit(WriteBatch {
            state: [("probe".to_owned(), json!(v))].into_iter().collect(),
            ..Default::default()
        })
        .await
        .expect("commit a state value");
}

/// Asserts that `ping` fails with `Unavailable` within `within`, and returns the message.
async fn unavailable_within(store: &RethinkStore, within: Duration, what: &str) -> String {
    let t = Instant::now();
    let r = store.ping().await;
    let took = t.elapsed();
    let msg = match r {
        Err(StoreError::Unavailable(m)) => m,
        other => panic!("{what}: expected Unavailable, got {other:?}"),
    };
    assert!(took < within, "{what}: the call took {took:?}");
    msg
}

/// Polls `ping` until it succeeds (the store reconnects by itself).
async fn back_within(store: &RethinkStore, within: Duration, what: &str) -> Duration {
    let t = Instant::now();
    loop {
        if store.ping().await.is_ok() {
            return t.elapsed();
        }
        assert!(t.elapsed() < within, "{what}: the store did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_fast_while_unreachable_and_recover() {
    let Some(address) = server() else {
        eprintln!(
            "SKIPPED calls_fail_fast_while_unreachable_and_recover: no ReQL server (set SHOTGUN_CACHE_TEST_RETHINKDB=host:port or run scripts/test-rethinkdb)"
        );
        return;
    };
    let database = format!("sgc_outage_{:016x}", rand::random::<u64>());
    let proxy = freeze_proxy::Proxy::start(&address).await;
    let store = RethinkStore::connect_with(options(proxy.addr(), &database))
        .await
        .expect("connect through the proxy");
    put(&store, 1).await;
    // Both pooled connections are open before the outage.
    store.ping().await.expect("ping");
    store.ping().await.expect("ping");

    // A stalled server: connections stay open, nothing answers.
    proxy.freeze();
    let msg = unavailable_within(&store, TIMEOUT * 2, "first call while frozen").await;
    assert!(
        msg.contains("stalled or unreachable") && msg.contains(&proxy.addr()),
        "the error says what is wrong and where: {msg}"
    );
    // Concurrent calls each fail within about one timeout, not one after the other.
    let t = Instant::now();
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { s.get_state("probe").await })
        })
        .collect();
    for c in calls {
        match c.await.expect("the call task") {
            Err(StoreError::Unavailable(_)) => {}
            other => panic!("a call while frozen: expected Unavailable, got {other:?}"),
        }
    }
    assert!(
        t.elapsed() < TIMEOUT * 2 + Duration::from_millis(500),
        "six concurrent calls while frozen took {:?}",
        t.elapsed()
    );
    proxy.open();
    let took = back_within(&store, Duration::from_secs(15), "after the freeze").await;
    eprintln!("recovered {took:?} after the freeze ended");
    assert_eq!(
        store
            .get_state("probe")
            .await
            .expect("read after the freeze"),
        Some(json!(1))
    );
    put(&store, 2).await;

    // A crashed server: connections are closed and refused; calls fail at once.
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..3 {
        unavailable_within(
            &store,
            Duration::from_secs(1),
            &format!("call {i} while cut"),
        )
        .await;
    }
    proxy.open();
    back_within(&store, Duration::from_secs(15), "after the cut").await;
    assert_eq!(
        store.get_state("probe").await.expect("read after the cut"),
        Some(json!(2))
    );
    store.drop_database().await.expect("drop the test database");
}

fn start_private_reqlite(port: u16) -> Option<u32> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = std::process::Command::new(format!("{root}/scripts/reqlite/start"))
        .arg(format!("{root}/.cache/reqlite"))
        .arg(port.to_string())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn signal(sig: &str, pid: u32) {
    let _ = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status();
}

/// Continues and then ends the private server, whatever the test's outcome.
struct Private(u32);

impl Drop for Private {
    fn drop(&mut self) {
        signal("-CONT", self.0);
        signal("-TERM", self.0);
    }
}

/// The real thing on reqlite: the server process is stopped (`SIGSTOP`) and continued
/// (`SIGCONT`); its data survives, and the store answers `Unavailable` meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstopped_reqlite_is_unavailable_then_recovers() {
    if std::env::var("SHOTGUN_CACHE_TEST_REQLITE")
        .map(|v| v.is_empty())
        .unwrap_or(true)
    {
        eprintln!(
            "SKIPPED sigstopped_reqlite_is_unavailable_then_recovers: needs the reqlite install of scripts/test-rethinkdb (it stops a private server; a real RethinkDB is not stopped from a test)"
        );
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let pid = start_private_reqlite(port).expect("start a private reqlite");
    let server = Private(pid);
    let store = RethinkStore::connect_with(options(format!("127.0.0.1:{port}"), "stopped"))
        .await
        .expect("connect to the private reqlite");
    put(&store, 7).await;
    signal("-STOP", server.0);
    let msg = unavailable_within(&store, TIMEOUT * 2, "first call while stopped").await;
    assert!(msg.contains("stalled or unreachable"), "{msg}");
    // The replaced connection cannot complete its handshake either.
    unavailable_within(&store, TIMEOUT * 2, "second call while stopped").await;
    signal("-CONT", server.0);
    let took = back_within(&store, Duration::from_secs(15), "after SIGCONT").await;
    eprintln!("recovered {took:?} after SIGCONT");
    assert_eq!(
        store.get_state("probe").await.expect("read after SIGCONT"),
        Some(json!(7)),
        "the stopped server kept its data"
    );
    put(&store, 8).await;
    assert_eq!(
        store.get_state("probe").await.expect("read"),
        Some(json!(8))
    );
}
