//! Test support for the syncer's end-to-end tests: start a simulated site and a syncer on a real
//! SQLite file, wait for conditions, and the one reusable check "the store equals the site".
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shotgun_cache_core::config::Config;
use shotgun_cache_core::filter::{Filter, validate_path};
use shotgun_cache_core::model::{EntityRef, SiteSchema, Value};
use shotgun_cache_core::query::FindQuery;
use shotgun_cache_core::store::Store;
use shotgun_cache_core::store::sqlite::SqliteStore;
use shotgun_sim::{RunningSim, SimConfig, Simulator};

/// The types the tests cache (everything the simulator's random workload edits, plus link targets).
pub const TYPES: &[&str] = &[
    "Asset", "Note", "Playlist", "Project", "Sequence", "Shot", "Task", "Version",
];

pub fn slow() -> bool {
    std::env::var("SHOTGUN_CACHE_SLOW_TESTS").is_ok_and(|v| v == "1")
}

pub async fn start_sim(scale: u64) -> RunningSim {
    Simulator::start(SimConfig {
        scale,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

/// The ReQL server the end-to-end tests use instead of SQLite, when one is configured:
/// `SHOTGUN_CACHE_TEST_RETHINKDB=host:port` (a real RethinkDB) or `SHOTGUN_CACHE_TEST_REQLITE`
/// (the reqlite test server `scripts/test-rethinkdb` starts). Each test gets its own database,
/// named from its temporary store path.
pub fn rethinkdb_target() -> Option<String> {
    ["SHOTGUN_CACHE_TEST_RETHINKDB", "SHOTGUN_CACHE_TEST_REQLITE"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

fn rethinkdb_database(db: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    db.hash(&mut h);
    format!("sgc_e2e_{:016x}", h.finish())
}

/// A config for a syncer against `sim`, caching `types` with every cacheable field.
pub fn config_text(sim_url: &str, db: &Path, types: &[&str], extra: &str) -> String {
    if let Some(addr) = rethinkdb_target() {
        let store = format!(
            "[store]\nbackend = \"rethinkdb\"\nrethinkdb_address = \"{addr}\"\nrethinkdb_database = \"{}\"\n",
            rethinkdb_database(db)
        );
        let sqlite = format!("[store]\nsqlite_path = \"{}\"\n", db.display());
        return config_text_sqlite(sim_url, db, types, extra).replace(&sqlite, &store);
    }
    config_text_sqlite(sim_url, db, types, extra)
}

fn config_text_sqlite(sim_url: &str, db: &Path, types: &[&str], extra: &str) -> String {
    let mut s = format!(
        "[site]\nurl = \"{sim_url}\"\nscript_name = \"cache\"\n\n[store]\nsqlite_path = \"{}\"\n\n[syncer]\nadmin_listen = \"127.0.0.1:0\"\ngrpc_listen = \"127.0.0.1:0\"\npoll_interval_ms = 100\npage_size = 200\nimport_concurrency = 4\nreconcile_interval_secs = 3600\n{extra}\n",
        db.display()
    );
    for t in types {
        s.push_str(&format!("[types.{t}]\nfields = \"all\"\n\n"));
    }
    s
}

pub fn env() -> HashMap<String, String> {
    HashMap::from([(
        "SHOTGUN_CACHE_SITE__SCRIPT_KEY".to_owned(),
        "secret".to_owned(),
    )])
}

pub fn load_config(text: &str) -> Config {
    Config::from_toml_str(text, "test.toml", &env()).expect("test config loads")
}

/// A syncer running in this process.
pub struct RunningSyncer {
    pub admin: std::net::SocketAddr,
    pub grpc: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningSyncer {
    pub async fn start(config: Config) -> RunningSyncer {
        let listeners = shotgun_cache_syncer::Listeners::bind_local()
            .await
            .expect("bind local ports");
        let admin = listeners.admin.local_addr().expect("admin addr");
        let grpc = listeners.grpc.local_addr().expect("grpc addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(shotgun_cache_syncer::run(config, listeners, async move {
            let _ = rx.await;
        }));
        RunningSyncer {
            admin,
            grpc,
            stop: Some(tx),
            task,
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let r = tokio::time::timeout(Duration::from_secs(20), &mut self.task).await;
        match r {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("syncer ended with an error: {e:#}"),
            Ok(Err(e)) => panic!("syncer task panicked: {e}"),
            Err(_) => panic!("syncer did not stop within 20 s"),
        }
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path).await
    }

    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.task.is_finished() {
                panic!("syncer stopped before it was ready");
            }
            if self.get("/readyz").await.0 == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "syncer not ready within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A minimal HTTP/1.1 GET over a real socket.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, &[], b"").await
}

pub async fn http_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    if s.write_all(req.as_bytes()).await.is_err() || s.write_all(body).await.is_err() {
        return (0, String::new());
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

pub fn open_store(db: &Path) -> Arc<dyn Store> {
    if let Some(address) = rethinkdb_target() {
        use shotgun_cache_core::store::rethinkdb::{RethinkOptions, RethinkStore};
        return Arc::new(RethinkStore::open_lazy_with(RethinkOptions {
            address,
            database: rethinkdb_database(db),
            user: "admin".into(),
            password: std::env::var("SHOTGUN_CACHE_TEST_RETHINKDB_PASSWORD").unwrap_or_default(),
            pool_size: 4,
            timeout: Duration::from_secs(30),
        }));
    }
    Arc::new(SqliteStore::open(db).expect("open the store file"))
}

pub fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().join("cache.db");
    (dir, p)
}

/// Waits until `f` returns true (polling), or panics with `what`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn norm_links(
    v: &Value,
    retired_on_site: &dyn Fn(&EntityRef) -> bool,
    cached: &dyn Fn(&str) -> bool,
) -> Value {
    let fix = |r: &EntityRef| EntityRef {
        entity_type: r.entity_type.clone(),
        id: r.id,
        name: if cached(&r.entity_type) {
            r.name.clone()
        } else {
            None
        },
    };
    match v {
        Value::Entity(r) if retired_on_site(r) => Value::Null,
        Value::Entity(r) => Value::Entity(fix(r)),
        Value::MultiEntity(list) => {
            let mut l: Vec<EntityRef> = list
                .iter()
                .filter(|r| !retired_on_site(r))
                .map(fix)
                .collect();
            l.sort_by(|a, b| (&a.entity_type, a.id).cmp(&(&b.entity_type, b.id)));
            Value::MultiEntity(l)
        }
        Value::Float(f) => Value::Float((f * 1e6).round() / 1e6),
        Value::Text(s) if s.trim().is_empty() => Value::Null,
        other => other.clone(),
    }
}

/// Compares every cached entity, cached field, retired flag and link name of the store with the
/// site's truth. Returns the differences (empty when equal). Links to types that are not cached
/// are compared by target only (the cache cannot know their live names), and links to targets
/// retired on the site are dropped on both sides (the link rule).
pub async fn store_vs_site(store: &dyn Store, sim: &RunningSim, types: &[&str]) -> Vec<String> {
    store_vs_site_except(store, sim, types, &[]).await
}

/// [`store_vs_site`] without comparing the fields in `skip`.
pub async fn store_vs_site_except(
    store: &dyn Store,
    sim: &RunningSim,
    types: &[&str],
    skip: &[&str],
) -> Vec<String> {
    let truth = sim.site().truth(None);
    let retired: std::collections::HashSet<(String, i64)> = truth
        .iter()
        .filter(|r| r.retired)
        .map(|r| (r.entity_type.clone(), r.id))
        .collect();
    let schema: SiteSchema = match store.schema().await {
        Ok(Some(s)) => s,
        _ => return vec!["the store has no schema".into()],
    };
    let layouts = store.layouts().await.unwrap_or_default();
    let cached_types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
    let is_cached = |t: &str| cached_types.iter().any(|c| c == t);
    let retired_on_site = |r: &EntityRef| retired.contains(&(r.entity_type.clone(), r.id));
    let mut diffs = Vec::new();
    for t in types {
        let Some(layout) = layouts.iter().find(|l| l.entity_type == *t) else {
            diffs.push(format!("{t}: not in the store"));
            continue;
        };
        let fields: Vec<String> = layout.fields.iter().map(|f| f.name.clone()).collect();
        let paths: Vec<_> = fields
            .iter()
            .filter_map(|f| validate_path(&schema, t, f).ok())
            .collect();
        let mut store_rows: BTreeMap<i64, (bool, BTreeMap<String, Value>)> = BTreeMap::new();
        for retired_only in [false, true] {
            let q = FindQuery {
                entity_type: (*t).to_owned(),
                filter: Filter::all(),
                fields: paths.clone(),
                sorts: Vec::new(),
                offset: 0,
                limit: None,
                retired_only,
            };
            match store.find(&q).await {
                Ok(rows) => {
                    for r in rows {
                        store_rows.insert(r.id, (retired_only, r.fields));
                    }
                }
                Err(e) => diffs.push(format!("{t}: store find failed: {e}")),
            }
        }
        let site_rows: BTreeMap<i64, &shotgun_sim::site::TruthRow> = truth
            .iter()
            .filter(|r| r.entity_type == *t)
            .map(|r| (r.id, r))
            .collect();
        for (id, row) in &site_rows {
            let Some((st_retired, st_fields)) = store_rows.get(id) else {
                diffs.push(format!(
                    "{t} {id}: on the site (retired={}) but not in the store",
                    row.retired
                ));
                continue;
            };
            if *st_retired != row.retired {
                let raw = store.get(t, *id).await.ok().flatten();
                diffs.push(format!(
                    "{t} {id}: retired is {st_retired} in the store (get: retired {:?}, retired_version {:?}, last_event_id {:?}), {} on the site",
                    raw.as_ref().map(|e| e.retired),
                    raw.as_ref().map(|e| e.retired_version),
                    raw.as_ref().map(|e| e.last_event_id),
                    row.retired
                ));
            }
            for f in fields.iter().filter(|f| !skip.contains(&f.as_str())) {
                let site_v = row.fields.get(f).cloned().unwrap_or(Value::Null);
                let store_v = st_fields.get(f).cloned().unwrap_or(Value::Null);
                let a = norm_links(&site_v, &retired_on_site, &is_cached);
                let b = norm_links(&store_v, &retired_on_site, &is_cached);
                if a != b {
                    diffs.push(format!("{t} {id}.{f}: store {b:?} != site {a:?}"));
                }
            }
        }
        for id in store_rows.keys() {
            if !site_rows.contains_key(id) {
                diffs.push(format!("{t} {id}: in the store but not on the site"));
            }
        }
    }
    diffs
}

/// Waits until the store equals the site, or panics showing the first differences.
pub async fn wait_equal(store: &dyn Store, sim: &RunningSim, types: &[&str], timeout: Duration) {
    wait_equal_except(store, sim, types, &[], timeout).await;
}

/// [`wait_equal`] without comparing the fields in `skip`.
pub async fn wait_equal_except(
    store: &dyn Store,
    sim: &RunningSim,
    types: &[&str],
    skip: &[&str],
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let d = store_vs_site_except(store, sim, types, skip).await;
        if d.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            let n = d.len();
            let shown: Vec<String> = d.into_iter().take(25).collect();
            panic!(
                "store != site after {timeout:?}: {n} differences, first:\n{}",
                shown.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
