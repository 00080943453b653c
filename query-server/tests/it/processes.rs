//! Several query-server processes (the real binary) over one SQLite file, while this process
//! writes to it as the syncer would; SIGTERM shuts each down cleanly.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shotgun_cache_core::store::EntityWrite;
use shotgun_cache_proto::v1 as pb;

use crate::support::*;

/// Three distinct free ports: all three are held until each is picked, then released.
fn free_ports() -> (u16, u16, u16) {
    let l: Vec<_> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let port = |i: usize| l[i].local_addr().expect("addr").port();
    (port(0), port(1), port(2))
}

struct Proc {
    child: Child,
    grpc: u16,
    admin: u16,
    /// The child's stderr (JSON log lines).
    log: std::path::PathBuf,
}

fn spawn(fx: &Fixture, n: usize, attempt: usize) -> Proc {
    let (grpc, admin, http) = free_ports();
    let cfg = fx.dir.path().join(format!("qs{n}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "[site]\nurl = \"http://127.0.0.1:1\"\nscript_name = \"t\"\n[store]\nsqlite_path = {:?}\n\
             [query_server]\ngrpc_listen = \"127.0.0.1:{grpc}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
             http_listen = \"127.0.0.1:{http}\"\ndrain_secs = 1\n",
            fx.path.display().to_string()
        ),
    )
    .expect("write config");
    let log = fx.dir.path().join(format!("qs{n}-{attempt}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_shotgun-cache-query-server"))
        .arg("--config")
        .arg(&cfg)
        .env("SHOTGUN_CACHE_LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("create the server's log file"))
        .spawn()
        .expect("spawn the query-server binary");
    Proc {
        child,
        grpc,
        admin,
        log,
    }
}

type Client = pb::query_service_client::QueryServiceClient<tonic::transport::Channel>;

/// Starts query-server `n` and waits until it answers a Count.
///
/// The ports are picked free and then released, so another test's socket can take one before
/// the child binds it: a child that exits on a bind error is started again on new ports.
/// Any other early exit, or no answer within 60 s, fails with the child's log.
async fn start(fx: &Fixture, n: usize) -> (Proc, Client) {
    for attempt in 0..5 {
        let mut p = spawn(fx, n, attempt);
        match answering(&mut p).await {
            Ok(c) => return (p, c),
            Err(exit) => {
                let log = std::fs::read_to_string(&p.log).unwrap_or_default();
                assert!(
                    log.contains("bind query_server."),
                    "query-server {n} {exit}; its log:\n{log}"
                );
                eprintln!("query-server {n} could not bind a picked port, retrying: {log}");
            }
        }
    }
    panic!("query-server {n} could not bind free ports in 5 attempts");
}

/// Waits until the child answers a Count; `Err` if it exits first.
async fn answering(p: &mut Proc) -> Result<Client, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = p.child.try_wait().expect("wait") {
            return Err(format!("exited before answering ({st})"));
        }
        if let Ok(ch) =
            tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", p.grpc))
                .expect("url")
                .connect()
                .await
        {
            let mut c = pb::query_service_client::QueryServiceClient::new(ch);
            if c.count(pb::CountRequest {
                entity_type: "Shot".into(),
                ..Default::default()
            })
            .await
            .is_ok()
            {
                return Ok(c);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = p.child.kill();
            let log = std::fs::read_to_string(&p.log).unwrap_or_default();
            panic!(
                "query-server on port {} never answered in 60 s; its log:\n{log}",
                p.grpc
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn count(c: &mut Client) -> u64 {
    c.count(pb::CountRequest {
        entity_type: "Shot".into(),
        ..Default::default()
    })
    .await
    .expect("count")
    .into_inner()
    .count
}

/// The count of one outcome of the result cache on a server's `/metrics`.
async fn cache_requests(admin: u16, outcome: &str) -> u64 {
    let text = reqwest::get(format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    let prefix = format!("query_result_cache_requests_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse::<f64>().expect("a number") as u64)
}

/// Two processes serve the same file, see the writer's commits, stream them, and stop on SIGTERM.
/// Their result caches are on (the default): a count repeated until it comes from the cache still
/// sees the other process's commit at once.
#[tokio::test]
async fn two_processes_over_one_sqlite_file() {
    let fx = Fixture::new().await;
    let ((p1, mut a), (p2, mut b)) = (start(&fx, 1).await, start(&fx, 2).await);
    let mut procs = vec![p1, p2];
    for _ in 0..3 {
        assert_eq!(count(&mut a).await as i64, SHOTS);
        assert_eq!(count(&mut b).await as i64, SHOTS);
    }
    let hits = cache_requests(procs[0].admin, "hit").await;
    assert!(hits > 0, "repeated counts were served from the cache");

    let mut watch = b
        .watch(pb::WatchRequest {
            entity_types: vec!["Shot".into()],
            start: Some(pb::watch_request::Start::FromNow(true)),
            ..Default::default()
        })
        .await
        .expect("watch on process 2")
        .into_inner();
    let seqs = fx
        .journaled(vec![EntityWrite::Retire {
            entity_type: "Shot".into(),
            id: 11,
            event_id: 777,
        }])
        .await;
    assert_eq!(count(&mut a).await as i64, SHOTS - 1);
    assert_eq!(count(&mut b).await as i64, SHOTS - 1);
    assert_eq!(
        cache_requests(procs[0].admin, "hit").await,
        hits,
        "the count after the commit was read from the file"
    );
    let change = loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), watch.message())
            .await
            .expect("change within 5 s")
            .expect("ok")
            .expect("open");
        if let Some(pb::watch_event::Kind::Change(c)) = ev.kind {
            break c;
        }
    };
    assert_eq!(
        (change.seq, change.entity_id, change.op),
        (seqs[0], 11, pb::ChangeOp::Retire as i32)
    );
    assert!(change.retired);

    for p in &mut procs {
        let pid = p.child.id().to_string();
        let st = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(st.success());
    }
    // The open Watch ends with UNAVAILABLE and a resume position once draining is over.
    let end = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("stream ends");
    match end {
        Err(status) => {
            assert_eq!(
                status.code(),
                tonic::Code::Unavailable,
                "{}",
                status.message()
            );
            assert_eq!(
                status
                    .metadata()
                    .get("resume-after-seq")
                    .and_then(|v| v.to_str().ok()),
                Some(seqs[0].to_string().as_str())
            );
        }
        Ok(other) => panic!("expected the stream to end with UNAVAILABLE, got {other:?}"),
    }
    for p in &mut procs {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = p.child.try_wait().expect("wait") {
                assert!(
                    st.success(),
                    "the query-server exits 0 after SIGTERM, got {st}"
                );
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the query-server did not stop after SIGTERM"
            );
            // An async sleep: the client connections on this runtime must keep running to answer
            // the server's graceful GOAWAY/PING, or the server waits on them.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
