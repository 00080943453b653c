//! A query-server on RethinkDB while RethinkDB is unreachable: gRPC health turns NOT_SERVING and
//! `Find` answers UNAVAILABLE with a message naming the store, both within a bounded time (the
//! backend's call timeout); when the server is reachable again health returns to SERVING, `Find`
//! answers with the data written meanwhile, and a Watch client that resumes from its last sequence
//! number has missed nothing. Two outages: a stalled server (connections open, nothing answers, as
//! with a `kill -STOP`ped process) and a crashed one (connections closed and refused).
//!
//! The replica reaches RethinkDB through a proxy that the test freezes or cuts
//! (`shotgun-cache-core/tests/rethinkdb_support/freeze_proxy.rs`); the writer (the syncer's role)
//! keeps its direct connection and commits during the outage.
//!
//! Server: `SHOTGUN_CACHE_TEST_RETHINKDB=host:port` (a real RethinkDB) or
//! `SHOTGUN_CACHE_TEST_REQLITE=host:port` (the reqlite test server `scripts/test-rethinkdb` starts).
//! Without either the test prints SKIPPED and passes.

#[path = "it/support/mod.rs"]
mod support;

#[path = "../../shotgun-cache-core/tests/rethinkdb_support/freeze_proxy.rs"]
mod freeze_proxy;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use shotgun_cache_core::model::Value;
use shotgun_cache_core::store::rethinkdb::{RethinkOptions, RethinkStore};
use shotgun_cache_core::store::{FieldChange, Store, WriteBatch};
use shotgun_cache_proto::v1 as pb;
use support::*;
use tonic_health::pb::health_check_response::ServingStatus;

/// The replica's call timeout: the bound on how long a call may take while RethinkDB is stalled.
const TIMEOUT: Duration = Duration::from_secs(2);

fn options(address: String, database: &str, timeout: Duration) -> RethinkOptions {
    RethinkOptions {
        address,
        database: database.to_owned(),
        user: "admin".into(),
        password: std::env::var("SHOTGUN_CACHE_TEST_RETHINKDB_PASSWORD").unwrap_or_default(),
        pool_size: 2,
        timeout,
    }
}

async fn wait_health(srv: &Server, want: ServingStatus, within: Duration, what: &str) -> Duration {
    let t = Instant::now();
    loop {
        if srv.health().await == want as i32 {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < within,
            "{what}: health did not become {want:?} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn shot_find(id: i64) -> pb::FindRequest {
    find(
        "Shot",
        Some(cond("id", pb::Operator::Is, vec![i(id)])),
        &["sg_cut_in"],
    )
}

/// `Find` fails with UNAVAILABLE within `within`; returns the message.
async fn find_unavailable(srv: &Server, within: Duration, what: &str) -> String {
    let mut c = srv.client().await;
    let t = Instant::now();
    let r = c.find(shot_find(1)).await;
    let took = t.elapsed();
    let status = match r {
        Err(s) => s,
        Ok(ok) => panic!("{what}: Find answered while RethinkDB is unreachable: {ok:?}"),
    };
    assert_eq!(
        status.code(),
        tonic::Code::Unavailable,
        "{what}: {status:?}"
    );
    assert!(took < within, "{what}: Find took {took:?}");
    eprintln!("{what}: UNAVAILABLE after {took:?}: {}", status.message());
    status.message().to_owned()
}

async fn cut_in(srv: &Server, id: i64) -> Option<pb::Value> {
    let r = srv
        .client()
        .await
        .find(shot_find(id))
        .await
        .expect("Find once RethinkDB is back")
        .into_inner();
    r.records
        .first()
        .and_then(|r| r.fields.get("sg_cut_in").cloned())
}

/// A Watch client on `url`: reads changes, and when its stream ends or fails (UNAVAILABLE during
/// the outage), reconnects and resumes after the last sequence number it saw, until it holds `n`
/// changes.
async fn watch_all(url: String, mut after: u64, n: usize, within: Duration) -> Vec<pb::Change> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut resumes = 0;
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "the watch client got {} of {n} changes ({resumes} resumes)",
            got.len()
        );
        let req = pb::WatchRequest {
            entity_types: vec!["Shot".into()],
            start: Some(pb::watch_request::Start::AfterSeq(after)),
            heartbeat_secs: 1,
            ..Default::default()
        };
        let client = pb::query_service_client::QueryServiceClient::connect(url.clone()).await;
        let Ok(resp) = (match client {
            Ok(mut c) => c.watch(req).await,
            Err(e) => Err(tonic::Status::unavailable(e.to_string())),
        }) else {
            resumes += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut stream = resp.into_inner();
        while got.len() < n {
            match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
                Ok(Ok(Some(pb::WatchEvent {
                    kind: Some(pb::watch_event::Kind::Change(c)),
                }))) => {
                    after = c.seq;
                    got.push(c);
                }
                Ok(Ok(Some(_))) => {}
                // Ended, failed or silent: resume.
                _ => {
                    resumes += 1;
                    break;
                }
            }
        }
    }
    eprintln!("the watch client resumed {resumes} times");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_rethinkdb_is_not_serving_then_recovers() {
    let Some(address) = ["SHOTGUN_CACHE_TEST_RETHINKDB", "SHOTGUN_CACHE_TEST_REQLITE"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    else {
        eprintln!(
            "SKIPPED unreachable_rethinkdb_is_not_serving_then_recovers: no ReQL server (set SHOTGUN_CACHE_TEST_RETHINKDB=host:port or run scripts/test-rethinkdb)"
        );
        return;
    };
    let database = format!("sgc_qs_outage_{:016x}", rand::random::<u64>());
    let writer =
        RethinkStore::connect_with(options(address.clone(), &database, Duration::from_secs(20)))
            .await
            .expect("connect the writer");
    let schema = schema();
    writer
        .prepare(&schema, &layouts(&schema))
        .await
        .expect("prepare");
    let mut writes = vec![upsert(entity(
        "Project",
        1,
        "Alpha",
        vec![("name", Value::Text("Alpha".into()))],
    ))];
    for s in 1..=SEQUENCES {
        writes.push(upsert(entity(
            "Sequence",
            s,
            &format!("SEQ_{s:02}"),
            vec![
                ("code", Value::Text(format!("SEQ_{s:02}"))),
                ("project", Value::Entity(link("Project", 1, "Alpha"))),
            ],
        )));
    }
    for n in 1..=20 {
        writes.push(upsert(shot(n)));
    }
    writer
        .commit(WriteBatch {
            writes,
            type_states: vec![
                ready("Project", 1),
                ready("Sequence", SEQUENCES as u64),
                ready("Asset", 0),
                ready("Shot", 20),
                ready("Version", 0),
            ],
            schema: Some(schema.clone()),
            state: [("cursor".to_owned(), json!({"last_event_id": 1}))]
                .into_iter()
                .collect(),
            ..Default::default()
        })
        .await
        .expect("commit the fixture");
    let patch = |event: i64| WriteBatch {
        writes: vec![Fixture::patch(
            1,
            event,
            vec![FieldChange::Set("sg_cut_in".into(), Value::Int(event))],
        )],
        journal: true,
        ..Default::default()
    };

    let proxy = freeze_proxy::Proxy::start(&address).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let fx = Fixture {
        path: dir.path().join("unused.db"),
        dir,
        store: Arc::new(RethinkStore::open_lazy_with(options(
            proxy.addr(),
            &database,
            TIMEOUT,
        ))),
    };
    let srv = Server::start(&fx).await;
    assert_eq!(cut_in(&srv, 1).await, Some(i(10)), "the fixture value");
    let head0 = writer.journal_head().await.expect("journal head");
    // A Watch client that runs through both outages.
    let watcher = tokio::spawn(watch_all(srv.url(), head0, 3, Duration::from_secs(90)));
    writer.commit(patch(101)).await.expect("patch before");

    // 1. A stalled RethinkDB.
    proxy.freeze();
    let took = wait_health(
        &srv,
        ServingStatus::NotServing,
        TIMEOUT * 3,
        "stalled RethinkDB",
    )
    .await;
    eprintln!("NOT_SERVING {took:?} after the freeze");
    let msg = find_unavailable(&srv, TIMEOUT * 3, "Find while stalled").await;
    assert!(
        msg.contains("RethinkDB") && msg.contains("unreachable"),
        "the message says what is wrong: {msg}"
    );
    // A second Find, on a connection opened during the outage, is bounded too.
    find_unavailable(&srv, TIMEOUT * 3, "second Find while stalled").await;
    writer
        .commit(patch(102))
        .await
        .expect("patch during the freeze");
    proxy.open();
    let took = wait_health(
        &srv,
        ServingStatus::Serving,
        Duration::from_secs(15),
        "after the freeze",
    )
    .await;
    eprintln!("SERVING {took:?} after the freeze ended");
    assert_eq!(
        cut_in(&srv, 1).await,
        Some(i(102)),
        "Find reads the write made during the stall"
    );

    // 2. A crashed RethinkDB: refused at once.
    proxy.cut();
    let took = wait_health(
        &srv,
        ServingStatus::NotServing,
        TIMEOUT * 3,
        "crashed RethinkDB",
    )
    .await;
    eprintln!("NOT_SERVING {took:?} after the cut");
    let msg = find_unavailable(&srv, Duration::from_secs(1), "Find while cut").await;
    assert!(msg.contains("store unavailable"), "{msg}");
    writer
        .commit(patch(103))
        .await
        .expect("patch during the cut");
    proxy.open();
    let took = wait_health(
        &srv,
        ServingStatus::Serving,
        Duration::from_secs(15),
        "after the cut",
    )
    .await;
    eprintln!("SERVING {took:?} after the cut ended");
    assert_eq!(
        cut_in(&srv, 1).await,
        Some(i(103)),
        "Find reads the write made during the cut"
    );

    // The client that watched from before the outages, resuming as needed, has all three changes.
    let got = watcher.await.expect("the watch client");
    let events: Vec<i64> = got.iter().map(|c| c.event_id).collect();
    assert_eq!(events, vec![101, 102, 103], "nothing missed, nothing twice");
    let journal: Vec<u64> = writer
        .journal_after(head0, 100)
        .await
        .expect("journal")
        .iter()
        .map(|e| e.seq)
        .collect();
    let seqs: Vec<u64> = got.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, journal);

    srv.stop().await;
    writer
        .drop_database()
        .await
        .expect("drop the test database");
}
