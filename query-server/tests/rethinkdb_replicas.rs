//! Three query-server replicas on one RethinkDB: a Watch on one replica sees what the writer (the
//! syncer's role) commits; a client that loses its replica resumes on another from its last
//! sequence number with nothing missed and nothing repeated; every replica answers Find with the
//! new data.
//!
//! Server: `SHOTGUN_CACHE_TEST_RETHINKDB=host:port` (a real RethinkDB) or
//! `SHOTGUN_CACHE_TEST_REQLITE=host:port` (the reqlite test server `scripts/test-rethinkdb` starts).
//! Without either the test prints SKIPPED and passes.

#[path = "it/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use shotgun_cache_core::model::Value;
use shotgun_cache_core::store::rethinkdb::{RethinkOptions, RethinkStore};
use shotgun_cache_core::store::{FieldChange, Store, WriteBatch};
use shotgun_cache_proto::v1 as pb;
use support::*;

fn options(database: &str) -> Option<RethinkOptions> {
    let address = ["SHOTGUN_CACHE_TEST_RETHINKDB", "SHOTGUN_CACHE_TEST_REQLITE"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))?;
    Some(RethinkOptions {
        address,
        database: database.to_owned(),
        user: "admin".into(),
        password: std::env::var("SHOTGUN_CACHE_TEST_RETHINKDB_PASSWORD").unwrap_or_default(),
        pool_size: 2,
        timeout: Duration::from_secs(20),
    })
}

/// A replica: its own store object (its own connections and changefeed) on the shared database.
async fn replica(opts: &RethinkOptions) -> (Fixture, Server) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("unused.db");
    let fx = Fixture {
        dir,
        path,
        store: Arc::new(RethinkStore::open_lazy_with(opts.clone())),
    };
    let srv = Server::start(&fx).await;
    (fx, srv)
}

fn watch_from(after: u64) -> pb::WatchRequest {
    pb::WatchRequest {
        entity_types: vec!["Shot".into()],
        start: Some(pb::watch_request::Start::AfterSeq(after)),
        heartbeat_secs: 1,
        ..Default::default()
    }
}

async fn changes(stream: &mut tonic::Streaming<pb::WatchEvent>, n: usize) -> Vec<pb::Change> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(15), stream.message()).await {
            Ok(Ok(Some(pb::WatchEvent {
                kind: Some(pb::watch_event::Kind::Change(c)),
            }))) => out.push(c),
            Ok(Ok(Some(_))) => {}
            other => panic!(
                "the watch stream ended or stalled after {} changes: {other:?}",
                out.len()
            ),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_rethinkdb() {
    let database = format!("sgc_replicas_{:016x}", rand::random::<u64>());
    let Some(opts) = options(&database) else {
        eprintln!(
            "SKIPPED three_replicas_share_one_rethinkdb: no ReQL server (set SHOTGUN_CACHE_TEST_RETHINKDB=host:port or run scripts/test-rethinkdb)"
        );
        return;
    };
    // The writer: the fixture of the black-box tests, committed as the syncer would.
    let writer = RethinkStore::connect_with(opts.clone())
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
    for i in 1..=SHOTS {
        writes.push(upsert(shot(i)));
    }
    writer
        .commit(WriteBatch {
            writes,
            type_states: vec![
                ready("Project", 1),
                ready("Sequence", SEQUENCES as u64),
                ready("Asset", 0),
                ready("Shot", SHOTS as u64),
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

    let (_fa, a) = replica(&opts).await;
    let (_fb, b) = replica(&opts).await;
    let (_fc, c) = replica(&opts).await;
    let head0 = writer.journal_head().await.expect("head");
    let mut on_a = a
        .client()
        .await
        .watch(watch_from(head0))
        .await
        .expect("watch on A")
        .into_inner();

    let patch = |id: i64, event: i64| {
        Fixture::patch(
            id,
            event,
            vec![FieldChange::Set("sg_cut_in".into(), Value::Int(event))],
        )
    };
    let mut event = 100;
    for _ in 0..10 {
        event += 1;
        writer
            .commit(WriteBatch {
                writes: vec![patch(1 + event % SHOTS, event)],
                journal: true,
                ..Default::default()
            })
            .await
            .expect("journaled patch");
    }
    // A sees the first five, then loses its replica.
    let first = changes(&mut on_a, 5).await;
    let last = first.last().map(|c| c.seq).expect("five changes");
    drop(on_a);
    a.stop().await;
    // More writes while the client moves to B, resuming after the last seq it saw.
    for _ in 0..5 {
        event += 1;
        writer
            .commit(WriteBatch {
                writes: vec![patch(1 + event % SHOTS, event)],
                journal: true,
                ..Default::default()
            })
            .await
            .expect("journaled patch");
    }
    let mut on_b = b
        .client()
        .await
        .watch(watch_from(last))
        .await
        .expect("watch on B")
        .into_inner();
    let rest = changes(&mut on_b, 10).await;
    let seqs: Vec<u64> = first.iter().chain(&rest).map(|c| c.seq).collect();
    let journal: Vec<u64> = writer
        .journal_after(head0, 1000)
        .await
        .expect("journal")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(
        seqs, journal,
        "the resumed watch delivers the journal exactly: nothing missed, nothing twice"
    );
    let events: Vec<i64> = first.iter().chain(&rest).map(|c| c.event_id).collect();
    assert_eq!(events, (101..=115).collect::<Vec<_>>());

    // Every remaining replica reads the new data.
    let last_id = 1 + event % SHOTS;
    for srv in [&b, &c] {
        let mut cl = srv.client().await;
        let r = cl
            .find(find(
                "Shot",
                Some(cond("id", pb::Operator::Is, vec![i(last_id)])),
                &["sg_cut_in"],
            ))
            .await
            .expect("find")
            .into_inner();
        let rec = r.records.first().expect("the shot");
        let cut = rec.fields.get("sg_cut_in").cloned();
        assert_eq!(
            cut,
            Some(i(event)),
            "replica {} reads the last write",
            srv.grpc
        );
    }
    drop(on_b);
    b.stop().await;
    c.stop().await;
    writer
        .drop_database()
        .await
        .expect("drop the test database");
}
