//! Syncer benchmark (prints figures; not a timed test). Against the in-process simulator, with a
//! real SQLite file:
//! 1. catch-up: applying N events (default 1,000,000) from the event log into SQLite;
//! 2. lag from the simulator's commit to the change being visible in the store, p50/p99, at poll
//!    intervals 1 s and 100 ms, under a 500 edits/s workload;
//! 3. import throughput with page size 500, at 0 and 50 ms simulated latency, 1 and 8 fetchers;
//! 4. peak memory (VmHWM) of the syncer binary importing M entities (default 1,000,000).
//!
//! `cargo run --release -p shotgun-cache-syncer --example sync_bench -- [catchup|lag|import|memory|all]`
//! Sizes: `BENCH_EVENTS`, `BENCH_IMPORT_SCALE`, `BENCH_MEMORY_SCALE`, `BENCH_LAG_SECS`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shotgun_cache_core::config::Config;
use shotgun_cache_core::model::Value;
use shotgun_cache_core::store::Store;
use shotgun_cache_core::store::sqlite::SqliteStore;
use shotgun_sim::{Faults, SimConfig, Simulator};

/// The allocator the syncer binary uses, so the figures are its.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn config(
    url: &str,
    db: &std::path::Path,
    types: &[&str],
    poll_ms: u64,
    page: u32,
    conc: u32,
) -> Config {
    let mut s = format!(
        "[site]\nurl = \"{url}\"\nscript_name = \"cache\"\n[store]\nsqlite_path = \"{}\"\n[syncer]\nadmin_listen = \"127.0.0.1:0\"\ngrpc_listen = \"127.0.0.1:0\"\npoll_interval_ms = {poll_ms}\npage_size = {page}\nimport_concurrency = {conc}\nreconcile_interval_secs = 86400\n",
        db.display()
    );
    for t in types {
        s.push_str(&format!("[types.{t}]\nfields = \"all\"\n"));
    }
    let env = HashMap::from([(
        "SHOTGUN_CACHE_SITE__SCRIPT_KEY".to_owned(),
        "secret".to_owned(),
    )]);
    Config::from_toml_str(&s, "bench.toml", &env).expect("bench config")
}

struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    admin: std::net::SocketAddr,
}

async fn start(cfg: Config) -> Running {
    let l = shotgun_cache_syncer::Listeners::bind_local()
        .await
        .expect("bind");
    let admin = l.admin.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(shotgun_cache_syncer::run(cfg, l, async move {
        let _ = rx.await;
    }));
    Running {
        stop: Some(tx),
        task,
        admin,
    }
}

impl Running {
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }

    async fn metric(&self, name: &str) -> Option<f64> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.admin).await.ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut b = String::new();
        s.read_to_string(&mut b).await.ok()?;
        b.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
    }

    async fn wait_ready(&self) {
        loop {
            if self.metric("shotgun_cache_syncer_ready").await == Some(1.0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn catchup() {
    let n_events = env_u64("BENCH_EVENTS", 1_000_000);
    let sim = Simulator::start(SimConfig {
        scale: 2000,
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("c.db");
    let types = ["Note", "Playlist", "Shot", "Task", "Version"];
    let r = start(config(&sim.base_url(), &db, &types, 100, 5000, 4)).await;
    r.wait_ready().await;
    r.stop().await;
    // Generate the backlog while the syncer is down.
    let t0 = Instant::now();
    let site = sim.site().clone();
    let actor = site.script_actor("cache").expect("actor");
    let start_id = site.last_event_id();
    let made = tokio::task::spawn_blocking(move || {
        let mut seed = 1;
        while site.last_event_id() - start_id < n_events as i64 {
            shotgun_sim::workload::run_edits(&site, 1000, seed, &actor);
            seed += 1;
        }
        site.last_event_id() - start_id
    })
    .await
    .expect("generate");
    eprintln!(
        "generated {made} events in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    let target = sim.site().last_event_id() as f64;
    let t0 = Instant::now();
    let r = start(config(&sim.base_url(), &db, &types, 100, 5000, 4)).await;
    loop {
        if r.metric("shotgun_cache_syncer_last_applied_event_id")
            .await
            .is_some_and(|v| v >= target)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "catch-up: {made} events applied in {secs:.1} s = {:.0} events/s (page size 5000, SQLite)",
        made as f64 / secs
    );
    r.stop().await;
}

async fn lag() {
    let secs = env_u64("BENCH_LAG_SECS", 20);
    for poll_ms in [1000u64, 100] {
        let sim = Simulator::start(SimConfig {
            scale: 2000,
            ..SimConfig::default()
        })
        .await
        .expect("sim");
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("c.db");
        let r = start(config(&sim.base_url(), &db, &["Shot"], poll_ms, 500, 4)).await;
        r.wait_ready().await;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).expect("store"));
        let shots: Vec<i64> = sim
            .site()
            .truth(Some(&["Shot".to_owned()]))
            .iter()
            .filter(|t| !t.retired)
            .map(|t| t.id)
            .collect();
        let sent: Arc<parking_lot_free::Sent> = Arc::new(parking_lot_free::Sent::default());
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let site = sim.site().clone();
            let sent = sent.clone();
            let stop = stop.clone();
            let actor = site.script_actor("cache").expect("actor");
            tokio::task::spawn_blocking(move || {
                let t0 = Instant::now();
                let mut n: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    // 500 edits/s, paced.
                    let due = t0 + Duration::from_micros(n * 2000);
                    if let Some(d) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                    let id = shots[(n as usize) % shots.len()];
                    let code = format!("bench-{n}");
                    sent.put(n, Instant::now());
                    let _ = site.update(
                        &actor,
                        "Shot",
                        id,
                        serde_json::json!({"code": code}).as_object().expect("obj"),
                    );
                    n += 1;
                }
                n
            })
        };
        let mut hist = hdrhistogram::Histogram::<u64>::new(3).expect("hist");
        let mut after = store.journal_head().await.expect("head");
        let t_end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < t_end {
            let _ = store.wait_journal(after, Duration::from_millis(50)).await;
            let entries = store.journal_after(after, 10_000).await.expect("journal");
            let now = Instant::now();
            for e in &entries {
                after = after.max(e.seq);
                if let Some(Value::Text(code)) =
                    e.entity.as_ref().and_then(|x| x.fields.get("code"))
                    && let Some(n) = code
                        .strip_prefix("bench-")
                        .and_then(|x| x.parse::<u64>().ok())
                    && let Some(t) = sent.take(n)
                {
                    let _ = hist.record(now.duration_since(t).as_micros() as u64);
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        let n = writer.await.expect("writer");
        println!(
            "lag at poll {poll_ms} ms, 500 edits/s for {secs} s ({n} edits, {} seen): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            hist.len(),
            hist.value_at_quantile(0.5) as f64 / 1000.0,
            hist.value_at_quantile(0.99) as f64 / 1000.0,
            hist.max() as f64 / 1000.0
        );
        r.stop().await;
    }
}

/// A small mutex-protected map (no extra dependency).
mod parking_lot_free {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Instant;

    #[derive(Default)]
    pub(crate) struct Sent(Mutex<HashMap<u64, Instant>>);

    impl Sent {
        pub(crate) fn put(&self, n: u64, t: Instant) {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(n, t);
        }
        pub(crate) fn take(&self, n: u64) -> Option<Instant> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&n)
        }
    }
}

async fn import() {
    let scale = env_u64("BENCH_IMPORT_SCALE", 100_000);
    let sim = Simulator::start(SimConfig {
        scale,
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let types = ["Task", "Version", "Note", "Shot"];
    for latency in [0u64, 50] {
        sim.set_faults(Faults {
            latency_ms: latency,
            ..Faults::default()
        });
        for conc in [1u32, 8] {
            let dir = tempfile::tempdir().expect("dir");
            let db = dir.path().join("c.db");
            let t0 = Instant::now();
            let r = start(config(&sim.base_url(), &db, &types, 1000, 500, conc)).await;
            r.wait_ready().await;
            let secs = t0.elapsed().as_secs_f64();
            let store = SqliteStore::open(&db).expect("store");
            let rows: u64 = store
                .type_counts()
                .await
                .expect("counts")
                .values()
                .map(|(a, b)| a + b)
                .sum();
            println!(
                "import: {rows} rows ({}) page 500, latency {latency} ms, {conc} fetcher(s): {secs:.1} s = {:.0} rows/s",
                types.join("+"),
                rows as f64 / secs
            );
            r.stop().await;
        }
    }
    sim.set_faults(Faults::default());
}

async fn memory() {
    let scale = env_u64("BENCH_MEMORY_SCALE", 1_000_000);
    let t0 = Instant::now();
    let sim = Simulator::start(SimConfig {
        scale,
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    eprintln!(
        "simulator with scale {scale} built in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("c.db");
    let cfg_path = dir.path().join("c.toml");
    let types = [
        "Task",
        "Version",
        "PublishedFile",
        "Note",
        "Shot",
        "Asset",
        "Sequence",
        "Playlist",
        "Project",
        "HumanUser",
    ];
    let mut s = format!(
        "[site]\nurl = \"{}\"\nscript_name = \"cache\"\n[store]\nsqlite_path = \"{}\"\n[syncer]\nadmin_listen = \"127.0.0.1:0\"\ngrpc_listen = \"127.0.0.1:0\"\npage_size = 500\nimport_concurrency = 8\n",
        sim.base_url(),
        db.display()
    );
    for t in types {
        s.push_str(&format!("[types.{t}]\nfields = \"all\"\n"));
    }
    std::fs::write(&cfg_path, s).expect("config");
    let exe = std::env::var("SYNCER_BIN").unwrap_or_else(|_| {
        let me = std::env::current_exe().expect("exe");
        me.parent()
            .and_then(|p| p.parent())
            .map(|p| p.join("shotgun-cache-syncer").display().to_string())
            .unwrap_or_default()
    });
    let mut child = std::process::Command::new(&exe)
        .args(["run", "--config"])
        .arg(&cfg_path)
        .env("SHOTGUN_CACHE_SITE__SCRIPT_KEY", "secret")
        .env("SHOTGUN_CACHE_LOG_FORMAT", "json")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {exe}: {e} (build it with cargo build --release -p shotgun-cache-syncer, or set SYNCER_BIN)"));
    let pid = child.id();
    let t0 = Instant::now();
    let store = loop {
        if let Ok(s) = SqliteStore::open(&db) {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut peak_kb = 0u64;
    loop {
        if let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(v) = st
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        {
            peak_kb = v;
        }
        let states = store.type_states().await.unwrap_or_default();
        if states.len() == types.len()
            && states
                .iter()
                .all(|s| s.phase == shotgun_cache_core::store::TypePhase::Ready)
        {
            break;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("syncer exited: {st}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let rows: u64 = store
        .type_counts()
        .await
        .expect("counts")
        .values()
        .map(|(a, b)| a + b)
        .sum();
    println!(
        "memory: imported {rows} entities in {secs:.0} s ({:.0} rows/s); syncer peak RSS (VmHWM) {:.0} MiB",
        rows as f64 / secs,
        peak_kb as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::main]
async fn main() {
    if std::env::var("RUST_LOG").is_ok() {
        shotgun_cache_syncer::init_logging();
    }
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    if what == "catchup" || what == "all" {
        catchup().await;
    }
    if what == "lag" || what == "all" {
        lag().await;
    }
    if what == "import" || what == "all" {
        import().await;
    }
    if what == "memory" || what == "all" {
        memory().await;
    }
}
