//! Watch: resume at random points (union == journal exactly), filtered exactness, heartbeats,
//! slow subscribers cut off with a resume position, trimmed positions.

use std::time::Duration;

use rand::Rng;
use shotgun_cache_core::model::{DateTime, Value};
use shotgun_cache_core::store::{FieldChange, JournalEntry};
use shotgun_cache_proto::v1 as pb;
use tonic::Code;

use crate::support::*;

fn watch_req(types: &[&str], after: Option<u64>) -> pb::WatchRequest {
    pb::WatchRequest {
        entity_types: types.iter().map(|t| t.to_string()).collect(),
        start: Some(match after {
            Some(n) => pb::watch_request::Start::AfterSeq(n),
            None => pb::watch_request::Start::FromNow(true),
        }),
        heartbeat_secs: 1,
        ..Default::default()
    }
}

async fn journal_after(fx: &Fixture, after: u64) -> Vec<JournalEntry> {
    fx.store
        .journal_after(after, 1_000_000)
        .await
        .expect("journal")
}

/// Writes `batches` journaled batches of random field changes on random shots, with short pauses.
async fn random_writes(fx: &Fixture, batches: usize, seed_event: i64) {
    let mut event = seed_event;
    for _ in 0..batches {
        let (n, pause) = {
            let mut rng = rand::rng();
            (rng.random_range(1..=5), rng.random_range(0..8))
        };
        let mut writes = Vec::new();
        for _ in 0..n {
            event += 1;
            let (id, status, seq) = {
                let mut rng = rand::rng();
                (
                    rng.random_range(1..=SHOTS),
                    STATUSES[rng.random_range(0..4)],
                    rng.random_range(1..=SEQUENCES),
                )
            };
            writes.push(Fixture::patch(
                id,
                event,
                vec![
                    FieldChange::Set("sg_status_list".into(), Value::Text(status.into())),
                    FieldChange::Set(
                        "sg_sequence".into(),
                        Value::Entity(link("Sequence", seq, &format!("SEQ_{seq:02}"))),
                    ),
                    FieldChange::Set("sg_cut_in".into(), Value::Int(event)),
                ],
            ));
        }
        fx.journaled(writes).await;
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Reads up to `max` changes (skipping heartbeats); stops early when no change came for `idle`.
async fn read_changes(
    stream: &mut tonic::Streaming<pb::WatchEvent>,
    max: usize,
    idle: Duration,
) -> Vec<pb::Change> {
    let mut out = Vec::new();
    let mut last_change = tokio::time::Instant::now();
    while out.len() < max {
        let left = idle.saturating_sub(last_change.elapsed());
        match tokio::time::timeout(left, stream.message()).await {
            Ok(Ok(Some(ev))) => {
                if let Some(pb::watch_event::Kind::Change(c)) = ev.kind {
                    out.push(c);
                    last_change = tokio::time::Instant::now();
                }
            }
            Ok(Ok(None)) => break,
            Ok(Err(e)) => panic!("stream failed: {e}"),
            Err(_) => break,
        }
    }
    out
}

/// Kill the stream at random points and resume from the last delivered seq: the union of
/// everything delivered equals the journal exactly (nothing missed, nothing repeated).
#[tokio::test]
async fn resume_at_random_points_delivers_the_journal_exactly() {
    let fx = Fixture::new().await;
    let mut opts = fast_options();
    // A small ring, so resumes exercise both the ring and the store catch-up path.
    opts.watch.ring_capacity = 16;
    let srv = Server::start_with(&fx, config(&fx.path, "", &[]), opts).await;
    let mut c = srv.client().await;
    let h0 = fx.store.journal_head().await.expect("head");
    let writer = {
        let store = fx.store.clone();
        let fx2 = Fixture {
            dir: tempfile::tempdir().expect("tmp"),
            path: fx.path.clone(),
            store,
        };
        tokio::spawn(async move {
            random_writes(&fx2, 80, 10_000).await;
        })
    };
    let mut delivered: Vec<pb::Change> = Vec::new();
    let mut pos = h0;
    let mut rounds = 0;
    loop {
        rounds += 1;
        let take = rand::rng().random_range(1..=25);
        let mut stream = c
            .watch(watch_req(&["Shot"], Some(pos)))
            .await
            .expect("watch")
            .into_inner();
        let got = read_changes(&mut stream, take, Duration::from_millis(1500)).await;
        drop(stream);
        if let Some(last) = got.last() {
            pos = last.seq;
        }
        delivered.extend(got);
        if writer.is_finished() {
            let head = fx.store.journal_head().await.expect("head");
            if pos >= head {
                break;
            }
        }
        assert!(rounds < 2000, "no progress");
    }
    writer.await.expect("writer");
    let journal = journal_after(&fx, h0).await;
    assert!(
        journal.len() >= 80,
        "the writer journaled {} entries",
        journal.len()
    );
    let got: Vec<(u64, i64)> = delivered.iter().map(|c| (c.seq, c.entity_id)).collect();
    let want: Vec<(u64, i64)> = journal.iter().map(|e| (e.seq, e.entity_id)).collect();
    assert_eq!(got, want, "delivered over {rounds} resumed streams");
    // The carried entity is the snapshot right after the change.
    for (c, e) in delivered.iter().zip(&journal) {
        let rec = c.entity.as_ref().expect("update carries the entity");
        let snap = e.entity.as_ref().expect("journal snapshot");
        assert_eq!(
            rec.fields.get("sg_cut_in").and_then(|v| v.kind.clone()),
            match snap.get("sg_cut_in") {
                Value::Int(n) => Some(pb::value::Kind::IntValue(*n)),
                other => panic!("unexpected {other:?}"),
            }
        );
    }
    srv.stop().await;
}

/// A filtered Watch (with a deep-link condition) delivers exactly the changes whose entity matches.
#[tokio::test]
async fn filtered_watch_delivers_exactly_the_matching_changes() {
    let fx = Fixture::new().await;
    let srv = Server::start(&fx).await;
    let mut c = srv.client().await;
    let h0 = fx.store.journal_head().await.expect("head");
    random_writes(&fx, 60, 20_000).await;
    let journal = journal_after(&fx, h0).await;
    let head = journal.last().expect("entries").seq;
    let filter = group(
        pb::LogicalOperator::And,
        vec![
            cond("sg_status_list", pb::Operator::Is, vec![s("ip")]),
            cond(
                "sg_sequence.Sequence.code",
                pb::Operator::Is,
                vec![s("SEQ_02")],
            ),
        ],
    );
    let req = pb::WatchRequest {
        filter: Some(filter),
        fields: vec!["sg_status_list".into()],
        ..watch_req(&["Shot"], Some(h0))
    };
    let mut stream = c.watch(req).await.expect("watch").into_inner();
    let mut got = Vec::new();
    // Read until a heartbeat says everything up to the head was considered.
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("a message within 5 s")
            .expect("stream ok")
            .expect("stream open");
        match ev.kind {
            Some(pb::watch_event::Kind::Change(c)) => {
                let rec = c.entity.as_ref().expect("entity");
                assert_eq!(
                    rec.fields.keys().collect::<Vec<_>>(),
                    vec!["sg_status_list"]
                );
                got.push(c.seq);
            }
            Some(pb::watch_event::Kind::Heartbeat(h)) if h.resume_after_seq >= head => break,
            _ => {}
        }
    }
    let want: Vec<u64> = journal
        .iter()
        .filter(|e| {
            let snap = e.entity.as_ref().expect("snapshot");
            matches!(snap.get("sg_status_list"), Value::Text(s) if s == "ip")
                && matches!(snap.get("sg_sequence"), Value::Entity(r) if r.id == 2)
        })
        .map(|e| e.seq)
        .collect();
    assert!(
        !want.is_empty(),
        "the random writes produced matching changes"
    );
    assert_eq!(got, want);
    srv.stop().await;
}

/// With nothing to send, heartbeats carry the head; `from_now` skips the past.
#[tokio::test]
async fn heartbeats_and_from_now() {
    let fx = Fixture::new().await;
    fx.journaled(vec![Fixture::patch(
        1,
        1,
        vec![FieldChange::Set("sg_cut_in".into(), Value::Int(1))],
    )])
    .await;
    let srv = Server::start(&fx).await;
    let mut c = srv.client().await;
    let head = fx.store.journal_head().await.expect("head");
    let mut stream = c
        .watch(watch_req(&[], None))
        .await
        .expect("watch")
        .into_inner();
    let ev = tokio::time::timeout(Duration::from_secs(3), stream.message())
        .await
        .expect("heartbeat within 3 s")
        .expect("ok")
        .expect("open");
    match ev.kind {
        Some(pb::watch_event::Kind::Heartbeat(h)) => {
            assert_eq!((h.head_seq, h.resume_after_seq), (head, head));
        }
        other => panic!("expected a heartbeat, got {other:?}"),
    }
    let seqs = fx
        .journaled(vec![Fixture::patch(
            2,
            2,
            vec![FieldChange::Set("sg_cut_in".into(), Value::Int(2))],
        )])
        .await;
    let got = read_changes(&mut stream, 1, Duration::from_secs(3)).await;
    assert_eq!(got.iter().map(|c| c.seq).collect::<Vec<_>>(), seqs);
    assert_eq!(got[0].op, pb::ChangeOp::Update as i32);
    assert_eq!(got[0].changed_fields, vec!["sg_cut_in"]);
    srv.stop().await;
}

/// A subscriber too slow for its buffer gets RESOURCE_EXHAUSTED with `resume-after-seq`, and
/// resuming there delivers the rest with nothing lost or repeated.
#[tokio::test]
async fn slow_subscriber_is_cut_off_with_a_resume_position() {
    let fx = Fixture::new().await;
    let h0 = fx.store.journal_head().await.expect("head");
    let long = "x".repeat(300);
    let writes = (0..3000)
        .map(|k| {
            Fixture::patch(
                (k % SHOTS) + 1,
                100 + k,
                vec![FieldChange::Set(
                    "code".into(),
                    Value::Text(format!("{long}{k}")),
                )],
            )
        })
        .collect();
    fx.journaled(writes).await;
    let mut opts = fast_options();
    opts.watch.buffer = 4;
    opts.watch.lag_timeout = Duration::from_millis(300);
    let srv = Server::start_with(&fx, config(&fx.path, "", &[]), opts).await;
    let ch = tonic::transport::Endpoint::from_shared(srv.url())
        .expect("url")
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .expect("connect");
    let mut c = pb::query_service_client::QueryServiceClient::new(ch);
    let mut stream = c
        .watch(watch_req(&["Shot"], Some(h0)))
        .await
        .expect("watch")
        .into_inner();
    // Do not read for a while: the server's buffer fills and stays full.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut seqs = Vec::new();
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("no hang")
        {
            Ok(Some(ev)) => {
                if let Some(pb::watch_event::Kind::Change(c)) = ev.kind {
                    seqs.push(c.seq);
                }
            }
            Ok(None) => panic!(
                "the stream ended without an error after {} changes",
                seqs.len()
            ),
            Err(status) => break status,
        }
    };
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{}",
        status.message()
    );
    let resume: u64 = status
        .metadata()
        .get("resume-after-seq")
        .expect("trailer resume-after-seq")
        .to_str()
        .expect("ascii")
        .parse()
        .expect("a number");
    assert!(
        seqs.len() < 3000,
        "the subscriber was cut off before the end"
    );
    assert_eq!(
        Some(&resume),
        seqs.last(),
        "resume after the last delivered change"
    );
    assert!(
        status.message().contains(&resume.to_string()),
        "{}",
        status.message()
    );
    let mut c = srv.client().await;
    let mut stream = c
        .watch(watch_req(&["Shot"], Some(resume)))
        .await
        .expect("resume")
        .into_inner();
    let rest = read_changes(&mut stream, 3000, Duration::from_secs(2)).await;
    seqs.extend(rest.iter().map(|c| c.seq));
    let want: Vec<u64> = journal_after(&fx, h0).await.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, want);
    srv.stop().await;
}

/// Positions that were trimmed, or that the store never had, are OUT_OF_RANGE.
#[tokio::test]
async fn trimmed_positions_are_out_of_range() {
    let fx = Fixture::new().await;
    let first = fx
        .journaled(
            (1..=5)
                .map(|k| {
                    Fixture::patch(
                        k,
                        k,
                        vec![FieldChange::Set("sg_cut_in".into(), Value::Int(-k))],
                    )
                })
                .collect(),
        )
        .await;
    let trimmed = fx
        .store
        .trim_journal(DateTime(DateTime::now().0 + 10))
        .await
        .expect("trim");
    assert_eq!(trimmed, 5);
    let later = fx
        .journaled(vec![Fixture::patch(
            9,
            99,
            vec![FieldChange::Set("sg_cut_in".into(), Value::Int(99))],
        )])
        .await;
    let srv = Server::start(&fx).await;
    let mut c = srv.client().await;
    let err = c
        .watch(watch_req(&["Shot"], Some(first[0])))
        .await
        .expect_err("trimmed");
    assert_eq!(err.code(), Code::OutOfRange);
    assert!(err.message().contains("trimmed"), "{}", err.message());
    let err = c
        .watch(watch_req(&["Shot"], Some(later[0] + 100)))
        .await
        .expect_err("past head");
    assert_eq!(err.code(), Code::OutOfRange);
    // Resuming right before the retained entry works.
    let mut stream = c
        .watch(watch_req(&["Shot"], Some(later[0] - 1)))
        .await
        .expect("resume at tail")
        .into_inner();
    let got = read_changes(&mut stream, 1, Duration::from_secs(3)).await;
    assert_eq!(got.iter().map(|c| c.seq).collect::<Vec<_>>(), later);
    // Bad Watch input.
    let mut bad = watch_req(&["Shot", "Asset"], Some(0));
    bad.filter = Some(cond("code", pb::Operator::Is, vec![s("x")]));
    assert_eq!(
        c.watch(bad).await.expect_err("two types + filter").code(),
        Code::InvalidArgument
    );
    let err = c
        .watch(watch_req(&["Note"], Some(0)))
        .await
        .expect_err("uncached type");
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut hb = watch_req(&["Shot"], Some(0));
    hb.heartbeat_secs = 301;
    assert_eq!(
        c.watch(hb).await.expect_err("heartbeat too long").code(),
        Code::InvalidArgument
    );
    let mut wide = watch_req(&["Shot"], Some(0));
    wide.fields = vec!["code".into(); 1001];
    let err = c.watch(wide).await.expect_err("too many fields");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("1001 fields"), "{}", err.message());
    srv.stop().await;
}
