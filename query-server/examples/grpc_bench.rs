//! A bounded load client for the query-server: prints latency and throughput figures (not a timed
//! test; nothing asserts on them), for the SQLite backend and the RethinkDB backend side by side.
//!
//! For each backend it fills a store with shots (in `rows / 100` sequences, at most 1,000, of 10
//! projects), starts the real `shotgun-cache-query-server` binary on it, and measures over loopback
//! gRPC:
//! - an indexed `Find` returning 50 rows (`sg_sequence is <Sequence>`), one client: p50/p99;
//! - a two-hop deep-link `Find` (`sg_sequence.Sequence.project.Project.name is <name>`): p50/p99;
//! - the same indexed query run in process directly on the store (the server's overhead);
//! - the indexed query with 32 concurrent clients for `BENCH_SECS` seconds: Find/s, and the CPU
//!   per Find of the server and of the load client, three times: tonic clients decoding each
//!   answer in full, tonic clients decoding only its framing, and a lean raw-HTTP/2 client (one
//!   thread, pre-encoded requests) that shows what the server sustains when the client is cheap;
//! - `Watch`: 100 subscribers, delivery latency from journal commit (p50/p99);
//! - the query-server's peak RSS under that load.
//!
//! Then one table shows both backends' figures side by side, and finally the same shape of query
//! against the simulated site's REST `_search` (the uncached baseline), on a site of
//! `BENCH_SIM_SCALE` entities (default 20,000; 0 skips it).
//!
//! ```text
//! cargo build --release -p shotgun-cache-query-server --bins --examples
//! BENCH_ROWS=100000 target/release/examples/grpc_bench
//! ```
//!
//! Backends:
//! - SQLite: `BENCH_ROWS` shots (default 1,000,000) in `BENCH_DB` (default
//!   `.cache/bench/grpc-bench-<rows>.db`; reused when the file already holds them).
//! - RethinkDB: on the real server at `SHOTGUN_CACHE_TEST_RETHINKDB=host:port` when set (password
//!   from `SHOTGUN_CACHE_TEST_RETHINKDB_PASSWORD`; `BENCH_RETHINK_ROWS` shots, default
//!   `BENCH_ROWS`), otherwise on the reqlite ReQL test server, started for the run with
//!   `scripts/reqlite/start` (installed into `.cache/reqlite`). reqlite is an in-memory JavaScript
//!   server, far slower than RethinkDB, so it gets `BENCH_RETHINK_ROWS` shots (default 5,000) and its
//!   figures say nothing about a real server's; the output says which server ran. A fresh database
//!   is filled for each run and dropped at the end.
//! - `BENCH_BACKENDS` (default `sqlite,rethinkdb`) picks the backends.
//!
//! Other environment: `BENCH_SECS` (default 10), `BENCH_LOAD_CONCURRENCY` (the throughput runs'
//! concurrent clients, default 32), `BENCH_LOAD_CLIENTS` (the throughput runs'
//! load clients, default `full,framing,raw`), `BENCH_FINDS` (single-client Finds per
//! measurement, default 3,000; the deep-link run uses a third; on reqlite `BENCH_RETHINK_FINDS`,
//! default 300), `BENCH_SIM_SCALE`, and `BENCH_SLOW_US` (print each single-client call that took
//! at least this many microseconds, with its index and time, to find what a tail is made of).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;
use shotgun_cache_core::filter::{LogicalOp, RawCondition, RawFilter, validate};
use shotgun_cache_core::model::{DateTime, Entity, EntityRef, FieldSchema, SiteSchema, Value};
use shotgun_cache_core::query::FindQuery;
use shotgun_cache_core::store::rethinkdb::{RethinkOptions, RethinkStore};
use shotgun_cache_core::store::sqlite::SqliteStore;
use shotgun_cache_core::store::{
    EntityWrite, FieldChange, Store, TypeLayout, TypePhase, TypeState, WriteBatch,
};
use shotgun_cache_proto::v1 as pb;
use shotgun_cache_proto::v1::query_service_client::QueryServiceClient;
use tonic::transport::Channel;

const PROJECTS: i64 = 10;
/// Concurrent clients in the throughput runs, each on its own connection.
/// The throughput runs' concurrent clients (`BENCH_LOAD_CONCURRENCY`, default 32: the issue's figure).
fn clients() -> usize {
    std::env::var("BENCH_LOAD_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n: &usize| *n > 0)
        .unwrap_or(32)
}
const STATUSES: [&str; 4] = ["ip", "fin", "wtg", "omt"];

/// Sequences for `rows` shots: 100 shots each, at most 1,000 sequences (1,000 shots each at
/// 1,000,000 rows); an indexed Find asks for 50 of a sequence's shots.
fn sequences(rows: u64) -> i64 {
    (rows as i64 / 100).clamp(1, 1000)
}

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn field(data_type: &str, valid_types: &[&str]) -> serde_json::Value {
    json!({
        "data_type": {"value": data_type, "editable": false},
        "properties": {"valid_types": {"value": valid_types, "editable": false}}
    })
}

fn schema() -> SiteSchema {
    let s = json!({
        "Project": {"id": field("number", &[]), "name": field("text", &[])},
        "Sequence": {"id": field("number", &[]), "code": field("text", &[]), "project": field("entity", &["Project"])},
        "Shot": {
            "id": field("number", &[]),
            "code": field("text", &[]),
            "sg_status_list": field("status_list", &[]),
            "sg_sequence": field("entity", &["Sequence"]),
            "project": field("entity", &["Project"]),
            "sg_cut_in": field("number", &[]),
        },
    });
    SiteSchema::from_json(&s, None).expect("bench schema")
}

fn layouts(schema: &SiteSchema) -> Vec<TypeLayout> {
    let l = |t: &str, fields: &[&str], indexed: &[&str]| TypeLayout {
        entity_type: t.into(),
        fields: fields
            .iter()
            .map(|f| schema.field(t, f).expect("bench field").clone())
            .collect::<Vec<FieldSchema>>(),
        indexed: indexed.iter().map(|s| s.to_string()).collect(),
    };
    vec![
        l("Project", &["name"], &["name"]),
        l("Sequence", &["code", "project"], &["code", "project"]),
        l(
            "Shot",
            &[
                "code",
                "sg_status_list",
                "sg_sequence",
                "project",
                "sg_cut_in",
            ],
            &["code", "sg_status_list", "sg_sequence"],
        ),
    ]
}

fn link(t: &str, id: i64, name: String) -> Value {
    Value::Entity(EntityRef {
        entity_type: t.into(),
        id,
        name: Some(name),
    })
}

fn ent(t: &str, id: i64, display: String, fields: Vec<(&str, Value)>) -> EntityWrite {
    let mut e = Entity::new(t, id);
    e.display_name = Some(display);
    e.fields = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    EntityWrite::Upsert {
        entity: e,
        floor: 0,
        event_id: 0,
    }
}

fn ready(t: &str, n: u64) -> TypeState {
    TypeState {
        entity_type: t.into(),
        phase: TypePhase::Ready,
        done: n,
        total: n,
        config_hash: "bench".into(),
        ready_at: Some(DateTime::now()),
    }
}

/// Fills the store unless it already holds `rows` shots.
async fn ensure_data(store: &dyn Store, rows: u64) -> anyhow::Result<()> {
    let seqs = sequences(rows);
    if store
        .get_state("bench_rows")
        .await?
        .and_then(|v| v.as_u64())
        == Some(rows)
    {
        println!("reusing the bench store ({rows} shots)");
        return Ok(());
    }
    let schema = schema();
    store.prepare(&schema, &layouts(&schema)).await?;
    let started = Instant::now();
    let mut writes = Vec::new();
    for p in 1..=PROJECTS {
        writes.push(ent(
            "Project",
            p,
            format!("P{p}"),
            vec![("name", Value::Text(format!("P{p}")))],
        ));
    }
    for s in 1..=seqs {
        let p = (s % PROJECTS) + 1;
        writes.push(ent(
            "Sequence",
            s,
            format!("SEQ_{s:04}"),
            vec![
                ("code", Value::Text(format!("SEQ_{s:04}"))),
                ("project", link("Project", p, format!("P{p}"))),
            ],
        ));
    }
    store
        .commit(WriteBatch {
            writes,
            schema: Some(schema),
            ..Default::default()
        })
        .await?;
    // Big batches suit SQLite; reqlite holds a batch in one JSON message, so keep its batches small.
    let chunk = if rows > 20_000 { 10_000 } else { 1_000 };
    let mut i = 1i64;
    while i <= rows as i64 {
        let end = (i + chunk - 1).min(rows as i64);
        let writes = (i..=end)
            .map(|i| {
                let s = (i % seqs) + 1;
                let p = (s % PROJECTS) + 1;
                ent(
                    "Shot",
                    i,
                    format!("sh{i:07}"),
                    vec![
                        ("code", Value::Text(format!("sh{i:07}"))),
                        (
                            "sg_status_list",
                            Value::Text(STATUSES[(i % 4) as usize].into()),
                        ),
                        ("sg_sequence", link("Sequence", s, format!("SEQ_{s:04}"))),
                        ("project", link("Project", p, format!("P{p}"))),
                        ("sg_cut_in", Value::Int(i % 5000)),
                    ],
                )
            })
            .collect();
        store
            .commit(WriteBatch {
                writes,
                ..Default::default()
            })
            .await?;
        if (end / chunk) % 10 == 0 || end == rows as i64 {
            println!(
                "  loaded {end} shots ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
        i = end + 1;
    }
    let mut state = std::collections::BTreeMap::new();
    state.insert("bench_rows".to_owned(), json!(rows));
    state.insert("cursor".to_owned(), json!({"head": 0}));
    store
        .commit(WriteBatch {
            type_states: vec![
                ready("Project", PROJECTS as u64),
                ready("Sequence", seqs as u64),
                ready("Shot", rows),
            ],
            state,
            ..Default::default()
        })
        .await?;
    println!(
        "loaded {rows} shots in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn cond(path: &str, op: pb::Operator, v: pb::value::Kind) -> pb::Filter {
    pb::Filter {
        node: Some(pb::filter::Node::Condition(pb::Condition {
            path: path.into(),
            operator: op as i32,
            values: vec![pb::Value { kind: Some(v) }],
        })),
    }
}

fn indexed_find(k: i64) -> pb::FindRequest {
    pb::FindRequest {
        entity_type: "Shot".into(),
        filter: Some(cond(
            "sg_sequence",
            pb::Operator::Is,
            pb::value::Kind::EntityValue(pb::EntityRef {
                r#type: "Sequence".into(),
                id: k,
                name: None,
            }),
        )),
        fields: vec!["code".into(), "sg_status_list".into(), "sg_cut_in".into()],
        limit: 50,
        ..Default::default()
    }
}

fn deep_find(k: i64) -> pb::FindRequest {
    pb::FindRequest {
        entity_type: "Shot".into(),
        filter: Some(cond(
            "sg_sequence.Sequence.project.Project.name",
            pb::Operator::Is,
            pb::value::Kind::StringValue(format!("P{k}")),
        )),
        fields: vec!["code".into(), "sg_sequence.Sequence.code".into()],
        limit: 50,
        ..Default::default()
    }
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// One measured figure, for the side-by-side table.
#[derive(Clone)]
enum Cell {
    Latency { n: u64, p50: f64, p99: f64 },
    Text(String),
}

impl Cell {
    fn of(h: &Histogram<u64>) -> Cell {
        Cell::Latency {
            n: h.len(),
            p50: h.value_at_quantile(0.5) as f64 / 1000.0,
            p99: h.value_at_quantile(0.99) as f64 / 1000.0,
        }
    }

    fn render(&self) -> String {
        match self {
            Cell::Latency { n, p50, p99 } => format!("{p50:.3} / {p99:.3} ms (n={n})"),
            Cell::Text(t) => t.clone(),
        }
    }
}

/// The figures of one backend, in the order they were measured.
struct Figures {
    backend: String,
    rows: Vec<(String, Cell)>,
}

impl Figures {
    fn push(&mut self, name: &str, cell: Cell) {
        self.rows.push((name.to_owned(), cell));
    }
}

fn report(name: &str, h: &Histogram<u64>) {
    println!(
        "{name:<58} n={:<6} p50={:>8.3} ms  p90={:>8.3} ms  p99={:>8.3} ms  max={:>8.3} ms",
        h.len(),
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.9) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0,
    );
}

async fn latency(
    c: &mut QueryServiceClient<Channel>,
    n: usize,
    mk: impl Fn(i64) -> pb::FindRequest,
) -> anyhow::Result<Histogram<u64>> {
    let mut h = hist();
    let slow_us = env_u64("BENCH_SLOW_US", 0);
    let start = Instant::now();
    for i in 0..(n + n / 10) {
        let req = mk(i as i64 * 7919);
        let t = Instant::now();
        let r = c.find(req).await?;
        let us = t.elapsed().as_micros() as u64;
        if slow_us > 0 && us >= slow_us {
            eprintln!(
                "slow call {i}: {us} us at {:.3} s",
                (t - start).as_secs_f64()
            );
        }
        anyhow::ensure!(
            !r.get_ref().records.is_empty(),
            "the bench query returned no rows"
        );
        if i >= n / 10 {
            h.record(us.max(1))?;
        }
    }
    Ok(h)
}

/// User + system CPU time of a process, in clock ticks (100 per second on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn rss_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

async fn connect(url: &str) -> anyhow::Result<QueryServiceClient<Channel>> {
    Ok(QueryServiceClient::new(connect_channel(url).await?).max_decoding_message_size(64 << 20))
}

/// A channel to the query-server, once it answers a Count (it may still be starting).
async fn connect_channel(url: &str) -> anyhow::Result<Channel> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(ch) = Channel::from_shared(url.to_owned())?.connect().await {
            let mut c = QueryServiceClient::new(ch.clone());
            if c.count(pb::CountRequest {
                entity_type: "Sequence".into(),
                ..Default::default()
            })
            .await
            .is_ok()
            {
                return Ok(ch);
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the query-server did not answer within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn server_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("shotgun-cache-query-server"))
        .ok_or_else(|| anyhow::anyhow!("cannot locate the target directory"))?;
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: cargo build --release -p shotgun-cache-query-server --bins --examples",
        bin.display()
    );
    Ok(bin)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The `[store]` section, the store handle the bench writes and reads through, and what to clean up.
struct Target {
    label: String,
    rows: u64,
    store_toml: String,
    /// Environment for the server process (the RethinkDB password).
    env: Vec<(String, String)>,
    store: Arc<dyn Store>,
    /// The RethinkDB store to drop its database from at the end.
    rethink: Option<RethinkStore>,
    /// A reqlite process started for the run.
    reqlite_pid: Option<u32>,
}

impl Target {
    async fn cleanup(&self) {
        if let Some(r) = &self.rethink
            && let Err(e) = r.drop_database().await
        {
            println!("could not drop the bench database {}: {e}", r.database());
        }
        if let Some(pid) = self.reqlite_pid {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
    }
}

async fn sqlite_target(rows: u64) -> anyhow::Result<Target> {
    let db = std::env::var("BENCH_DB")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(format!(".cache/bench/grpc-bench-{rows}.db")));
    if let Some(dir) = db.parent() {
        std::fs::create_dir_all(dir)?;
    }
    println!("\n== SQLite backend: {rows} shots in {} ==", db.display());
    let store = SqliteStore::open(&db)?;
    let reused = store
        .get_state("bench_rows")
        .await?
        .and_then(|v| v.as_u64())
        == Some(rows);
    ensure_data(&store, rows).await?;
    if !reused {
        store.analyze().await?;
    }
    Ok(Target {
        label: format!("SQLite ({rows} shots)"),
        rows,
        store_toml: format!("sqlite_path = {:?}\n", db.display().to_string()),
        env: Vec::new(),
        store: Arc::new(store),
        rethink: None,
        reqlite_pid: None,
    })
}

/// The repository root (for `scripts/reqlite/start` and its `.cache/reqlite` install).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Starts reqlite on a free port at or above 28015 (it listens on 28015 + N).
fn start_reqlite() -> anyhow::Result<(String, u32)> {
    let root = repo_root();
    let port = loop {
        let p = free_port()?;
        if p > 28015 {
            break p;
        }
    };
    let out = std::process::Command::new(root.join("scripts/reqlite/start"))
        .arg(root.join(".cache/reqlite"))
        .arg(port.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()?;
    let pid: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| {
            anyhow::anyhow!("scripts/reqlite/start did not start reqlite (is node installed?)")
        })?;
    Ok((format!("127.0.0.1:{port}"), pid))
}

async fn rethink_target(default_rows: u64) -> anyhow::Result<Target> {
    let real = std::env::var("SHOTGUN_CACHE_TEST_RETHINKDB")
        .ok()
        .filter(|a| !a.is_empty());
    let (address, reqlite_pid, server, rows) = match real {
        Some(a) => {
            let rows = env_u64("BENCH_RETHINK_ROWS", default_rows);
            (a, None, "RethinkDB", rows)
        }
        None => {
            let (a, pid) = start_reqlite()?;
            (
                a,
                Some(pid),
                "reqlite",
                env_u64("BENCH_RETHINK_ROWS", 5_000),
            )
        }
    };
    let database = format!("sgc_grpc_bench_{:016x}", rand::random::<u64>());
    let password = std::env::var("SHOTGUN_CACHE_TEST_RETHINKDB_PASSWORD").unwrap_or_default();
    if reqlite_pid.is_some() {
        println!(
            "\n== RethinkDB backend on reqlite at {address} (pid {}), NOT a real RethinkDB: an in-memory \
             JavaScript test server, far slower; {rows} shots in database {database} ==",
            reqlite_pid.unwrap_or(0)
        );
    } else {
        println!(
            "\n== RethinkDB backend on the real RethinkDB at {address}: {rows} shots in database {database} =="
        );
    }
    let opts = RethinkOptions {
        address: address.clone(),
        database: database.clone(),
        user: "admin".into(),
        password: password.clone(),
        pool_size: 4,
        timeout: Duration::from_secs(60),
    };
    let store = match RethinkStore::connect_with(opts).await {
        Ok(s) => s,
        Err(e) => {
            if let Some(pid) = reqlite_pid {
                let _ = std::process::Command::new("kill")
                    .arg(pid.to_string())
                    .status();
            }
            return Err(e.into());
        }
    };
    let target = Target {
        label: format!("{server} ({rows} shots)"),
        rows,
        store_toml: format!(
            "backend = \"rethinkdb\"\nrethinkdb_address = \"{address}\"\nrethinkdb_database = \"{database}\"\n"
        ),
        env: vec![("SHOTGUN_CACHE_STORE__RETHINKDB_PASSWORD".into(), password)],
        store: Arc::new(store.clone()),
        rethink: Some(store),
        reqlite_pid,
    };
    if let Err(e) = ensure_data(target.store.as_ref(), rows).await {
        target.cleanup().await;
        return Err(e);
    }
    Ok(target)
}

/// Starts the real query-server binary on the target's store, with a result cache of
/// `result_cache_mb` MiB (0: none; SQLite only), and runs the bench against it.
async fn run_backend(t: &Target, secs: u64, result_cache_mb: u64) -> anyhow::Result<Figures> {
    let (grpc, admin, http) = (free_port()?, free_port()?, free_port()?);
    let dir = PathBuf::from(".cache/bench");
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join(format!("grpc-bench-server-{grpc}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "[site]\nurl = \"http://127.0.0.1:1\"\nscript_name = \"bench\"\n[store]\n{}[query_server]\n\
             grpc_listen = \"127.0.0.1:{grpc}\"\nadmin_listen = \"127.0.0.1:{admin}\"\nhttp_listen = \"127.0.0.1:{http}\"\ndrain_secs = 0\n\
             result_cache_mb = {result_cache_mb}\n",
            t.store_toml
        ),
    )?;
    let mut cmd = std::process::Command::new(server_binary()?);
    cmd.arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .env("SHOTGUN_CACHE_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::null());
    for (k, v) in &t.env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let url = format!("http://127.0.0.1:{grpc}");
    let sqlite = t.rethink.is_none();
    let label = match (sqlite, result_cache_mb) {
        (false, _) => t.label.clone(),
        (true, 0) => format!("{}, no result cache", t.label),
        (true, mb) => format!("{}, result cache {mb} MiB", t.label),
    };
    println!("== {label} ==");
    let admin_url = format!("http://127.0.0.1:{admin}/metrics");
    let result = bench(
        &url,
        pid,
        t,
        secs,
        label,
        (sqlite && result_cache_mb > 0).then_some(admin_url.as_str()),
    )
    .await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_file(&cfg);
    result
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rows = env_u64("BENCH_ROWS", 1_000_000);
    let secs = env_u64("BENCH_SECS", 10);
    let sim_scale = env_u64("BENCH_SIM_SCALE", 20_000);
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,rethinkdb".into());
    println!("== query-server gRPC bench ({backends}) ==");
    let mut all = Vec::new();
    for b in backends.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let target = match b {
            "sqlite" => sqlite_target(rows).await?,
            "rethinkdb" => rethink_target(rows).await?,
            other => anyhow::bail!("BENCH_BACKENDS: unknown backend {other:?} (sqlite, rethinkdb)"),
        };
        // SQLite runs the server with its result cache and again without (`BENCH_RESULT_CACHE`,
        // default `on,off`); RethinkDB has none.
        let modes = std::env::var("BENCH_RESULT_CACHE").unwrap_or_else(|_| "on,off".into());
        let mut sizes = Vec::new();
        for m in modes.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            sizes.push(match m {
                "on" => 64,
                "off" => 0,
                other => anyhow::bail!("BENCH_RESULT_CACHE: unknown mode {other:?} (on, off)"),
            });
        }
        if b != "sqlite" {
            sizes = vec![0];
        }
        let mut failed = None;
        for mb in sizes {
            match run_backend(&target, secs, mb).await {
                Ok(f) => all.push(f),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        target.cleanup().await;
        if let Some(e) = failed {
            return Err(e);
        }
    }
    side_by_side(&all);
    if sim_scale > 0 {
        simulated_site_baseline(sim_scale).await?;
    }
    Ok(())
}

/// One table: a row per measurement, a column per backend.
fn side_by_side(all: &[Figures]) {
    if all.is_empty() {
        return;
    }
    let mut names: Vec<String> = Vec::new();
    for f in all {
        for (n, _) in &f.rows {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    let width = 34;
    println!("\n== side by side: query-server over loopback gRPC (latency p50 / p99) ==");
    let mut header = format!("{:<58}", "measurement");
    for f in all {
        header.push_str(&format!(" | {:<width$}", f.backend));
    }
    println!("{header}");
    println!("{}", "-".repeat(header.len()));
    for n in &names {
        let mut line = format!("{n:<58}");
        for f in all {
            let cell = f
                .rows
                .iter()
                .find(|(m, _)| m == n)
                .map(|(_, c)| c.render())
                .unwrap_or_else(|| "-".into());
            line.push_str(&format!(" | {cell:<width$}"));
        }
        println!("{line}");
    }
}

/// How the throughput run's load client decodes a FindResponse.
#[derive(Clone, Copy, PartialEq)]
enum Decode {
    /// Into the generated `FindResponse`, every record's fields into a map (what an application
    /// does).
    Full,
    /// Only the response's framing: each record is left as its encoded bytes (checked to be 50 of
    /// them, none empty). The client shares the machine's 2 cores with the server, and a full
    /// decode of 50 records with their field maps costs it about as much CPU as the server spends
    /// answering, so this run shows what the server sustains when the client is cheap.
    Framing,
}

/// The load client's view of a `FindResponse` for [`Decode::Framing`]: the same field numbers as
/// `shotgun_cache.v1.FindResponse`, with each record kept as bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct FindResponseFraming {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    records: Vec<bytes::Bytes>,
    #[prost(string, tag = "2")]
    next_cursor: String,
}

/// One throughput run's figures.
struct Throughput {
    total: u64,
    elapsed: f64,
    server_cpu_secs: f64,
    client_cpu_secs: f64,
    db_cpu_secs: Option<f64>,
    peak_rss: u64,
    peak_anon: u64,
}

impl Throughput {
    fn per_sec(&self) -> f64 {
        self.total as f64 / self.elapsed
    }

    /// CPU seconds spread over the run's Finds, in microseconds each.
    fn per_find(&self, cpu_secs: f64) -> f64 {
        cpu_secs * 1e6 / self.total.max(1) as f64
    }
}

/// One Find of [`indexed_find`] decoded only to its framing, on a raw gRPC client.
async fn find_framing(
    grpc: &mut tonic::client::Grpc<Channel>,
    req: pb::FindRequest,
) -> anyhow::Result<()> {
    grpc.ready().await?;
    let codec = tonic_prost::ProstCodec::<pb::FindRequest, FindResponseFraming>::default();
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/shotgun_cache.v1.QueryService/Find");
    let resp = grpc
        .unary(tonic::Request::new(req), path, codec)
        .await?
        .into_inner();
    anyhow::ensure!(
        resp.records.len() == 50 && resp.records.iter().all(|r| !r.is_empty()),
        "a Find returned {} records",
        resp.records.len()
    );
    Ok(())
}

/// 32 clients, each on its own connection, run the indexed Find for `secs` seconds.
async fn throughput(
    url: &str,
    pid: u32,
    t: &Target,
    secs: u64,
    decode: Decode,
) -> anyhow::Result<Throughput> {
    let seqs = sequences(t.rows);
    // Connect every client first, so the run measures Finds only.
    let mut channels = Vec::new();
    for _ in 0..clients() {
        channels.push(connect_channel(url).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for (w, ch) in channels.into_iter().enumerate() {
        let mut c = QueryServiceClient::new(ch.clone()).max_decoding_message_size(64 << 20);
        let mut grpc = tonic::client::Grpc::new(ch).max_decoding_message_size(64 << 20);
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut k = w as i64;
            while Instant::now() < deadline {
                k = (k * 31 + 17) % seqs + 1;
                match decode {
                    Decode::Full => {
                        let r = c.find(indexed_find(k)).await?.into_inner();
                        anyhow::ensure!(
                            r.records.len() == 50,
                            "a Find returned {} records",
                            r.records.len()
                        );
                    }
                    Decode::Framing => find_framing(&mut grpc, indexed_find(k)).await?,
                }
                n += 1;
            }
            anyhow::Ok(n)
        }));
    }
    measure(pid, t, deadline, async move {
        let mut total = 0;
        for t in tasks {
            total += t.await??;
        }
        Ok(total)
    })
    .await
}

/// Samples the server's memory until `deadline`, then waits for the clients' `finds` (their total)
/// and reads the CPU each process spent meanwhile.
async fn measure(
    pid: u32,
    t: &Target,
    deadline: Instant,
    finds: impl Future<Output = anyhow::Result<u64>>,
) -> anyhow::Result<Throughput> {
    let started = Instant::now();
    let cpu_before = cpu_ticks(pid);
    let client_cpu_before = cpu_ticks(std::process::id());
    let db_cpu_before = t.reqlite_pid.map(cpu_ticks);
    let mut peak_rss = 0;
    let mut peak_anon = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak_rss = peak_rss.max(rss_kb(pid, "VmRSS:").unwrap_or(0));
        peak_anon = peak_anon.max(rss_kb(pid, "RssAnon:").unwrap_or(0));
    }
    let total = finds.await?;
    let elapsed = started.elapsed().as_secs_f64();
    let secs_of = |ticks: u64| ticks as f64 / 100.0;
    Ok(Throughput {
        total,
        elapsed,
        server_cpu_secs: secs_of(cpu_ticks(pid).saturating_sub(cpu_before)),
        client_cpu_secs: secs_of(cpu_ticks(std::process::id()).saturating_sub(client_cpu_before)),
        db_cpu_secs: t
            .reqlite_pid
            .zip(db_cpu_before)
            .map(|(p, before)| secs_of(cpu_ticks(p).saturating_sub(before))),
        peak_rss,
        peak_anon,
    })
}

/// The same 32-client run as [`throughput`], from a lean load client: raw HTTP/2 (the `h2` crate)
/// on one thread, each request encoded once before the run, each answer checked only for what
/// proves it whole (HTTP 200, an uncompressed gRPC message that fills the body, 50 non-empty
/// records, the `grpc-status: 0` trailer). It shows what the server sustains when the client
/// takes as little of the shared cores as it can; the tonic rows are what an application sees.
async fn throughput_raw_h2(
    addr: std::net::SocketAddr,
    pid: u32,
    t: &Target,
    secs: u64,
) -> anyhow::Result<Throughput> {
    let seqs = sequences(t.rows);
    // One gRPC-framed request per sequence, shared by the clients.
    let frames: Arc<Vec<bytes::Bytes>> = Arc::new(
        (1..=seqs)
            .map(|k| raw_h2::grpc_frame(&indexed_find(k)))
            .collect(),
    );
    let (connected_tx, connected_rx) = tokio::sync::oneshot::channel::<Instant>();
    let client = std::thread::spawn(move || -> anyhow::Result<u64> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let uri: http::Uri =
                format!("http://{addr}/shotgun_cache.v1.QueryService/Find").parse()?;
            // Connect every client first, so the run measures Finds only.
            let mut conns = Vec::new();
            for _ in 0..clients() {
                conns.push(raw_h2::connect(addr).await?);
            }
            let deadline = Instant::now() + Duration::from_secs(secs);
            let _ = connected_tx.send(deadline);
            let mut tasks = Vec::new();
            for (w, mut send) in conns.into_iter().enumerate() {
                let (uri, frames) = (uri.clone(), frames.clone());
                tasks.push(tokio::spawn(async move {
                    let mut n = 0u64;
                    let mut k = w as i64;
                    let mut buf = Vec::new();
                    while Instant::now() < deadline {
                        k = (k * 31 + 17) % seqs + 1;
                        let frame = frames[(k - 1) as usize].clone();
                        raw_h2::find(&mut send, &uri, frame, &mut buf).await?;
                        n += 1;
                    }
                    anyhow::Ok(n)
                }));
            }
            let mut total = 0;
            for t in tasks {
                total += t.await??;
            }
            Ok(total)
        })
    });
    let Ok(deadline) = connected_rx.await else {
        // The client thread ended before its run began: its error says why.
        return Err(match client.join() {
            Ok(Err(e)) => e.context("the raw HTTP/2 client could not start"),
            _ => anyhow::anyhow!("the raw HTTP/2 client thread ended early"),
        });
    };
    measure(pid, t, deadline, async move {
        tokio::task::spawn_blocking(move || {
            client
                .join()
                .map_err(|_| anyhow::anyhow!("the raw HTTP/2 client thread panicked"))?
        })
        .await?
    })
    .await
}

/// The result cache's hit and miss counts, read from the server's `/metrics`.
async fn cache_counts(metrics_url: &str) -> anyhow::Result<(u64, u64)> {
    let m = CacheMetrics::read(metrics_url).await?;
    Ok((
        m.get("query_result_cache_requests_total{outcome=\"hit\"}"),
        m.get("query_result_cache_requests_total{outcome=\"miss\"}"),
    ))
}

/// The query-server's `/metrics` text.
struct CacheMetrics(String);

impl CacheMetrics {
    async fn read(metrics_url: &str) -> anyhow::Result<CacheMetrics> {
        Ok(CacheMetrics(reqwest::get(metrics_url).await?.text().await?))
    }

    /// A sample's value (`name` with its labels, as printed), 0 when absent.
    fn get(&self, name: &str) -> u64 {
        let prefix = format!("{name} ");
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }
}

/// The lean load client's gRPC over HTTP/2 (see [`throughput_raw_h2`]).
mod raw_h2 {
    use anyhow::{Context as _, anyhow, bail, ensure};
    use bytes::Bytes;

    /// A request message in gRPC's length-prefixed framing (uncompressed).
    pub(super) fn grpc_frame(msg: &impl prost::Message) -> Bytes {
        let len = msg.encoded_len();
        let mut b = Vec::with_capacity(5 + len);
        b.push(0);
        b.extend_from_slice(&(len as u32).to_be_bytes());
        msg.encode_raw(&mut b);
        b.into()
    }

    /// An HTTP/2 connection (prior knowledge, no TLS), driven by a task of its own.
    pub(super) async fn connect(
        addr: std::net::SocketAddr,
    ) -> anyhow::Result<h2::client::SendRequest<Bytes>> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        tcp.set_nodelay(true)?;
        let (send, conn) = h2::client::handshake(tcp).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                eprintln!("raw HTTP/2 connection ended: {e}");
            }
        });
        Ok(send)
    }

    /// One unary Find: sends `frame`, reads the answer into `buf` and checks it is whole and
    /// successful, with 50 non-empty records.
    pub(super) async fn find(
        send: &mut h2::client::SendRequest<Bytes>,
        uri: &http::Uri,
        frame: Bytes,
        buf: &mut Vec<u8>,
    ) -> anyhow::Result<()> {
        std::future::poll_fn(|cx| send.poll_ready(cx)).await?;
        let req = http::Request::post(uri.clone())
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())?;
        let (resp, mut stream) = send.send_request(req, false)?;
        stream.send_data(frame, true)?;
        let (head, mut body) = resp.await?.into_parts();
        ensure!(head.status == 200, "HTTP status {}", head.status);
        // A trailers-only answer is an error: its status is in the headers.
        if let Some(status) = head.headers.get("grpc-status") {
            bail!(
                "grpc-status {status:?}: {:?}",
                head.headers.get("grpc-message")
            );
        }
        buf.clear();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            body.flow_control().release_capacity(chunk.len())?;
            buf.extend_from_slice(&chunk);
        }
        let trailers = body
            .trailers()
            .await?
            .ok_or_else(|| anyhow!("no trailers"))?;
        let status = trailers
            .get("grpc-status")
            .ok_or_else(|| anyhow!("no grpc-status trailer"))?;
        ensure!(
            status == "0",
            "grpc-status {status:?}: {:?}",
            trailers.get("grpc-message")
        );
        let (prefix, msg) = buf
            .split_at_checked(5)
            .ok_or_else(|| anyhow!("a body of {} bytes has no gRPC prefix", buf.len()))?;
        ensure!(prefix[0] == 0, "a compressed answer (flag {})", prefix[0]);
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        ensure!(
            msg.len() == len,
            "the gRPC prefix says {len} bytes, the body has {}",
            msg.len()
        );
        let records = count_records(msg)?;
        ensure!(records == 50, "a Find returned {records} records");
        Ok(())
    }

    /// The `records` (field 1) of an encoded `FindResponse`, each checked to be non-empty; other
    /// fields are skipped.
    pub(super) fn count_records(msg: &[u8]) -> anyhow::Result<usize> {
        let mut at = 0;
        let mut records = 0;
        while at < msg.len() {
            let key = varint(msg, &mut at)?;
            let skip = match key & 7 {
                0 => {
                    varint(msg, &mut at)?;
                    0
                }
                1 => 8,
                5 => 4,
                2 => {
                    let len = varint(msg, &mut at)? as usize;
                    if key >> 3 == 1 {
                        ensure!(len > 0, "an empty record");
                        records += 1;
                    }
                    len
                }
                w => bail!("wire type {w} at byte {at}"),
            };
            at = at
                .checked_add(skip)
                .filter(|&end| end <= msg.len())
                .ok_or_else(|| anyhow!("a field runs past the message's end"))?;
        }
        Ok(records)
    }

    fn varint(b: &[u8], at: &mut usize) -> anyhow::Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*at).ok_or_else(|| anyhow!("a truncated varint"))?;
            *at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(v);
            }
        }
        bail!("a varint longer than 10 bytes")
    }
}

/// `cache_metrics`: the server's `/metrics` address when its result cache is on (its hit counts are
/// printed after the throughput runs, and one more run measures the cache while commits land).
async fn bench(
    url: &str,
    pid: u32,
    t: &Target,
    secs: u64,
    label: String,
    cache_metrics: Option<&str>,
) -> anyhow::Result<Figures> {
    let store = t.store.as_ref();
    let seqs = sequences(t.rows);
    // reqlite answers a Find in tens of milliseconds: fewer runs there (the table shows n).
    let finds = if t.reqlite_pid.is_some() {
        env_u64("BENCH_RETHINK_FINDS", 300)
    } else {
        env_u64("BENCH_FINDS", 3000)
    } as usize;
    let mut fig = Figures {
        backend: label,
        rows: Vec::new(),
    };
    let mut c = connect(url).await?;
    println!(
        "query-server pid {pid}, RSS at start {} kB",
        rss_kb(pid, "VmRSS:").unwrap_or(0)
    );

    let name = "indexed Find, 50 rows, 1 client (gRPC)";
    let h = latency(&mut c, finds, |k| indexed_find(k % seqs + 1)).await?;
    report(name, &h);
    fig.push(name, Cell::of(&h));
    let name = "two-hop deep-link Find, 50 rows, 1 client (gRPC)";
    let h = latency(&mut c, (finds / 3).max(1), |k| deep_find(k % PROJECTS + 1)).await?;
    report(name, &h);
    fig.push(name, Cell::of(&h));

    // The same indexed query in process, directly on the store.
    let schema = store
        .schema()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no schema"))?;
    let mut h = hist();
    let warm = finds / 10;
    for i in 0..(finds + warm) as i64 {
        let k = (i * 7919) % seqs + 1;
        let raw = RawFilter::Group {
            op: LogicalOp::And,
            children: vec![RawFilter::Condition(RawCondition {
                path: "sg_sequence".into(),
                relation: "is".into(),
                values: vec![json!({"type": "Sequence", "id": k})],
            })],
        };
        let t = Instant::now();
        let q = FindQuery {
            entity_type: "Shot".into(),
            filter: validate(&schema, "Shot", &raw)?,
            fields: ["code", "sg_status_list", "sg_cut_in"]
                .iter()
                .map(|f| shotgun_cache_core::filter::validate_path(&schema, "Shot", f))
                .collect::<Result<_, _>>()?,
            sorts: Vec::new(),
            offset: 0,
            limit: Some(50),
            retired_only: false,
        };
        let rows = store.find(&q).await?;
        let us = t.elapsed().as_micros() as u64;
        anyhow::ensure!(
            rows.len() == 50,
            "in-process query returned {} rows",
            rows.len()
        );
        if i >= warm as i64 {
            h.record(us.max(1))?;
        }
    }
    let name = "indexed Find, 50 rows, in process on the store (no gRPC)";
    report(name, &h);
    fig.push(name, Cell::of(&h));

    // Throughput: 32 concurrent clients, each on its own connection; first decoding every
    // response in full, then decoding only each response's record framing (see `Decode`).
    let load_clients =
        std::env::var("BENCH_LOAD_CLIENTS").unwrap_or_else(|_| "full,framing,raw".into());
    let addr: std::net::SocketAddr = url
        .trim_start_matches("http://")
        .parse()
        .map_err(|e| anyhow::anyhow!("the server address in {url}: {e}"))?;
    let mut runs = Vec::new();
    for c in load_clients
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        runs.push(match c {
            "full" => (
                throughput(url, pid, t, secs, Decode::Full).await?,
                "full decode",
            ),
            "framing" => (
                throughput(url, pid, t, secs, Decode::Framing).await?,
                "framing decode",
            ),
            "raw" => (
                throughput_raw_h2(addr, pid, t, secs).await?,
                "raw HTTP/2 client",
            ),
            other => anyhow::bail!(
                "BENCH_LOAD_CLIENTS: unknown load client {other:?} (full, framing, raw)"
            ),
        });
    }
    // SQLite: one more raw-client run while the store takes commits, a busy site's event stream
    // (one commit every `BENCH_COMMIT_MS`, default 100): each commit makes the readers drop their
    // page caches, and the result cache its answers.
    if t.rethink.is_none() && runs.iter().any(|(_, l)| *l == "raw HTTP/2 client") {
        let (hits, misses) = match cache_metrics {
            Some(metrics_url) => cache_counts(metrics_url).await?,
            None => (0, 0),
        };
        if let Some(metrics_url) = cache_metrics {
            let name = "result cache: hits / misses so far";
            println!("{name:<58} {hits} / {misses}");
            fig.push(name, Cell::Text(format!("{hits} / {misses}")));
            // What the cache holds after the load (its estimate), beside the process's RSS.
            let m = CacheMetrics::read(metrics_url).await?;
            let name = "result cache: entries, estimated MiB / budget MiB";
            let text = format!(
                "{} entries, {:.1} / {:.0} MiB",
                m.get("query_result_cache_entries"),
                m.get("query_result_cache_bytes") as f64 / f64::from(1 << 20),
                m.get("query_result_cache_budget_bytes") as f64 / f64::from(1 << 20)
            );
            println!("{name:<58} {text}");
            fig.push(name, Cell::Text(text));
        }
        let every = Duration::from_millis(env_u64("BENCH_COMMIT_MS", 100).max(1));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (stop, store, rows) = (stop.clone(), t.store.clone(), t.rows as i64);
            tokio::spawn(async move {
                let base = DateTime::now().0 * 1000;
                let mut k = 0i64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tokio::time::sleep(every).await;
                    store
                        .commit(WriteBatch {
                            writes: vec![EntityWrite::Patch {
                                entity_type: "Shot".into(),
                                id: (k * 104_729) % rows.max(1) + 1,
                                event_id: base + k,
                                changes: vec![FieldChange::Set(
                                    "sg_cut_in".into(),
                                    Value::Int(base + k),
                                )],
                            }],
                            journal: true,
                            ..Default::default()
                        })
                        .await?;
                    k += 1;
                }
                anyhow::Ok(k)
            })
        };
        let run = throughput_raw_h2(addr, pid, t, secs).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let commits = writer.await??;
        let run = run?;
        let name = "  while commits land: commits, result cache hits / misses";
        let mut text = format!("{commits} commits in {:.1} s", run.elapsed);
        if let Some(metrics_url) = cache_metrics {
            let (h2, m2) = cache_counts(metrics_url).await?;
            text.push_str(&format!(
                "; {} / {} ({:.1}% hits)",
                h2 - hits,
                m2 - misses,
                100.0 * (h2 - hits) as f64 / ((h2 - hits) + (m2 - misses)).max(1) as f64
            ));
        }
        println!("{name:<58} {text}");
        fig.push(name, Cell::Text(text));
        runs.push((run, "raw HTTP/2 client, commits landing"));
    }
    for (run, label) in &runs {
        let n = clients();
        let name = format!("indexed Find, {n} concurrent clients, {label} (gRPC): Find/s");
        fig.push(
            &name,
            Cell::Text(format!(
                "{:.0} Find/s ({} in {:.1} s)",
                run.per_sec(),
                run.total,
                run.elapsed
            )),
        );
        println!(
            "{:<58} {:.0} Find/s ({} in {:.1} s; client and server share the machine's cores)",
            format!("indexed Find, {n} clients, {label}"),
            run.per_sec(),
            run.total,
            run.elapsed
        );
        // (process, its CPU-seconds over the run, what they cover)
        let mut cpu = vec![(
            "query-server",
            run.server_cpu_secs,
            format!(
                "server process only: {:.1} CPU-s, i.e. {:.0} Find/s per core",
                run.server_cpu_secs,
                run.total as f64 / run.server_cpu_secs.max(0.01)
            ),
        )];
        cpu.push((
            "load client",
            run.client_cpu_secs,
            format!(
                "the {n} clients, same cores: {:.1} CPU-s",
                run.client_cpu_secs
            ),
        ));
        if let Some(db_secs) = run.db_cpu_secs {
            cpu.push((
                "reqlite",
                db_secs,
                format!("database server: {db_secs:.1} CPU-s"),
            ));
        }
        for (process, secs, detail) in cpu {
            let us = run.per_find(secs);
            fig.push(
                &format!("  {process} CPU per Find, {label}"),
                Cell::Text(format!("{us:.0} us")),
            );
            println!(
                "{:<58} {us:.0} us CPU per Find ({detail})",
                format!("  {process} CPU")
            );
        }
    }
    let peak_rss = runs.iter().map(|(r, _)| r.peak_rss).max().unwrap_or(0);
    let peak_anon = runs.iter().map(|(r, _)| r.peak_anon).max().unwrap_or(0);

    // Watch: 100 subscribers; latency from the writer's commit to delivery.
    let subscribers = 100;
    let changes = 300u64;
    // seq -> (commit call started, commit returned).
    type Times = std::collections::HashMap<u64, (Instant, Instant)>;
    let commit_times: Arc<std::sync::Mutex<Times>> = Arc::default();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<Vec<(u64, Instant)>>(subscribers);
    let mut ready_count = 0;
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(subscribers);
    for _ in 0..subscribers {
        let url = url.to_owned();
        let done_tx = done_tx.clone();
        let ready_tx = ready_tx.clone();
        tokio::spawn(async move {
            let mut c = connect(&url).await?;
            let mut s = c
                .watch(pb::WatchRequest {
                    entity_types: vec!["Shot".into()],
                    start: Some(pb::watch_request::Start::FromNow(true)),
                    fields: vec!["sg_cut_in".into()],
                    ..Default::default()
                })
                .await?
                .into_inner();
            let _ = ready_tx.send(()).await;
            let mut got = Vec::new();
            while (got.len() as u64) < changes {
                match tokio::time::timeout(Duration::from_secs(30), s.message()).await {
                    Ok(Ok(Some(ev))) => {
                        if let Some(pb::watch_event::Kind::Change(ch)) = ev.kind {
                            got.push((ch.seq, Instant::now()));
                        }
                    }
                    _ => break,
                }
            }
            let _ = done_tx.send(got).await;
            anyhow::Ok(())
        });
    }
    drop(done_tx);
    while ready_count < subscribers {
        ready_rx
            .recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("a subscriber failed to start"))?;
        ready_count += 1;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut peak_watch_rss = 0;
    // Event ids above every earlier run's, so each patch passes the per-field version guard.
    let run_base = DateTime::now().0 * 1000;
    for k in 0..changes {
        let id = (k as i64 * 104_729) % (t.rows as i64).clamp(1, 1000) + 1;
        let begun = Instant::now();
        let r = store
            .commit(WriteBatch {
                writes: vec![EntityWrite::Patch {
                    entity_type: "Shot".into(),
                    id,
                    event_id: run_base + k as i64,
                    changes: vec![FieldChange::Set(
                        "sg_cut_in".into(),
                        Value::Int(run_base + k as i64),
                    )],
                }],
                journal: true,
                ..Default::default()
            })
            .await?;
        let at = Instant::now();
        if let Some(e) = r.journal.first() {
            commit_times
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .insert(e.seq, (begun, at));
        }
        if k % 50 == 0 {
            peak_watch_rss = peak_watch_rss.max(rss_kb(pid, "VmRSS:").unwrap_or(0));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut h = hist();
    let mut h_begun = hist();
    let mut complete = 0;
    while let Some(got) = done_rx.recv().await {
        if got.len() as u64 == changes {
            complete += 1;
        }
        let times = commit_times
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        for (seq, at) in got {
            if let Some((b, c)) = times.get(&seq) {
                h.record((at.saturating_duration_since(*c).as_micros() as u64).max(1))?;
                h_begun.record((at.saturating_duration_since(*b).as_micros() as u64).max(1))?;
            }
        }
    }
    report(
        &format!(
            "Watch delivery from commit, {subscribers} subscribers ({complete} got all {changes})"
        ),
        &h,
    );
    fig.push(
        &format!("Watch delivery from commit, {subscribers} subscribers"),
        Cell::of(&h),
    );
    // RethinkDB writes the journal entry before the data, so a subscriber may get it before the
    // commit call returns (counted as ~0 above); from the call's start is the fair upper bound.
    let name = "Watch delivery from the start of the commit call";
    report(&format!("  {name}"), &h_begun);
    fig.push(&format!("  {name}"), Cell::of(&h_begun));
    fig.push(
        "  subscribers that got every change",
        Cell::Text(format!("{complete} of {subscribers} ({changes} changes)")),
    );
    fig.push(
        "query-server peak RSS during Find load / Watch",
        Cell::Text(format!("{peak_rss} kB / {peak_watch_rss} kB")),
    );
    println!(
        "query-server RSS: peak during Find load {} kB (anonymous {} kB), during Watch {} kB, high-water mark {} kB \
         (now: anonymous {} kB + file-backed {} kB, e.g. the SQLite mmap of the store file)",
        peak_rss,
        peak_anon,
        peak_watch_rss,
        rss_kb(pid, "VmHWM:").unwrap_or(0),
        rss_kb(pid, "RssAnon:").unwrap_or(0),
        rss_kb(pid, "RssFile:").unwrap_or(0),
    );

    Ok(fig)
}

/// The uncached baseline: the same shape of query (a link filter, 50 rows) against the simulated
/// site's REST `_search`.
async fn simulated_site_baseline(scale: u64) -> anyhow::Result<()> {
    let sim = shotgun_sim::Simulator::start(shotgun_sim::SimConfig {
        scale,
        ..Default::default()
    })
    .await?;
    let (script, key) = sim.credentials();
    let http = reqwest::Client::new();
    let base = sim.base_url();
    let token: serde_json::Value = http
        .post(format!("{base}/api/v1/auth/access_token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &script),
            ("client_secret", &key),
        ])
        .send()
        .await?
        .json()
        .await?;
    let token = token["access_token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no access token: {token}"))?
        .to_owned();
    // Pick sequences that exist on the simulated site.
    let seqs: serde_json::Value = http
        .post(format!("{base}/api/v1/entity/sequences/_search"))
        .bearer_auth(&token)
        .header("Content-Type", "application/vnd+shotgun.api3_array+json")
        .json(&json!({"filters": [], "fields": ["id"], "page": {"size": 100, "number": 1}}))
        .send()
        .await?
        .json()
        .await?;
    let ids: Vec<i64> = seqs["data"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["id"].as_i64()).collect())
        .unwrap_or_default();
    anyhow::ensure!(
        !ids.is_empty(),
        "the simulated site has no sequences: {seqs}"
    );
    let mut h = hist();
    for i in 0..330usize {
        let id = ids[i % ids.len()];
        let t = Instant::now();
        let r = http
            .post(format!("{base}/api/v1/entity/shots/_search"))
            .bearer_auth(&token)
            .header("Content-Type", "application/vnd+shotgun.api3_array+json")
            .json(&json!({
                "filters": [["sg_sequence", "is", {"type": "Sequence", "id": id}]],
                "fields": ["code", "sg_status_list", "sg_cut_in"],
                "page": {"size": 50, "number": 1}
            }))
            .send()
            .await?;
        anyhow::ensure!(
            r.status().is_success(),
            "simulated _search failed: {}",
            r.status()
        );
        let _body = r.bytes().await?;
        if i >= 30 {
            h.record((t.elapsed().as_micros() as u64).max(1))?;
        }
    }
    report(
        &format!("uncached: simulated site REST _search ({scale} entities)"),
        &h,
    );
    sim.shutdown().await;
    Ok(())
}
