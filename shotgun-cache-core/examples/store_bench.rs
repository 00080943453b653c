//! The SQLite store benchmark: loads N Shot-like entities (links to projects and sequences, a status,
//! text, dates, a multi_entity list) and prints the figures of issue 2:
//! indexed find, a deep-link filter, an unindexed text scan, batch upsert throughput, and the file
//! size relative to the JSON size of the same data. It prints figures; it asserts nothing.
//!
//! `cargo run --release -p shotgun-cache-core --example store_bench -- --entities 1000000 [--dir DIR]`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use shotgun_cache_core::filter::{Filter, parse_any, validate, validate_path};
use shotgun_cache_core::model::{Date, DateTime, Entity, EntityRef, SiteSchema, Value};
use shotgun_cache_core::query::FindQuery;
use shotgun_cache_core::store::conformance::{test_layouts, test_schema};
use shotgun_cache_core::store::sqlite::SqliteStore;
use shotgun_cache_core::store::{
    CountQuery, EntityWrite, FieldChange, Store, WriteBatch, WriteOutcome,
};

/// The allocator the syncer and query-server binaries use, so the figures are theirs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PROJECTS: i64 = 20;
const SEQUENCES: i64 = 4_000;
const ASSETS: i64 = 20_000;
const STATUSES: [&str; 6] = ["wtg", "rdy", "ip", "rev", "fin", "omt"];
const WORDS: [&str; 16] = [
    "hero", "crowd", "night", "day", "exterior", "interior", "chase", "fight", "rain", "snow",
    "wide", "close", "pan", "tilt", "crane", "static",
];

struct Args {
    entities: i64,
    dir: Option<PathBuf>,
    /// Query an existing benchmark file in `dir` instead of generating and loading one.
    reuse: bool,
    /// Only run the write benchmarks (e.g. under a profiler).
    writes_only: bool,
}

fn args() -> Args {
    let mut a = Args {
        entities: 1_000_000,
        dir: None,
        reuse: false,
        writes_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        match k.as_str() {
            "--entities" => {
                a.entities = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--entities takes a number")
            }
            "--dir" => a.dir = it.next().map(PathBuf::from),
            "--reuse" => a.reuse = true,
            "--writes-only" => a.writes_only = true,
            other => panic!(
                "unknown argument {other}; use --entities N [--dir DIR] [--reuse] [--writes-only]"
            ),
        }
    }
    a
}

fn link(t: &str, id: i64, name: String) -> EntityRef {
    EntityRef {
        entity_type: t.into(),
        id,
        name: Some(name),
    }
}

fn shot(rng: &mut StdRng, id: i64, now: i64) -> Entity {
    let mut e = Entity::new("Shot", id);
    let project = rng.random_range(1..=PROJECTS);
    let seq = rng.random_range(1..=SEQUENCES);
    let code = format!("sh{id:07}");
    let words: Vec<&str> = (0..rng.random_range(3..9))
        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
        .collect();
    let f = &mut e.fields;
    f.insert("code".into(), Value::Text(code.clone()));
    f.insert("description".into(), Value::Text(words.join(" ")));
    f.insert(
        "sg_status_list".into(),
        Value::Text(STATUSES[rng.random_range(0..STATUSES.len())].into()),
    );
    f.insert(
        "project".into(),
        Value::Entity(link("Project", project, format!("Project {project}"))),
    );
    f.insert(
        "sg_sequence".into(),
        Value::Entity(link("Sequence", seq, format!("SQ{seq:04}"))),
    );
    let n = rng.random_range(0..4);
    let assets = (0..n).map(|_| {
        let a = rng.random_range(1..=ASSETS);
        link("Asset", a, format!("asset_{a:05}"))
    });
    f.insert("assets".into(), Value::MultiEntity(assets.collect()));
    f.insert("sg_cut_in".into(), Value::Int(rng.random_range(900..1100)));
    f.insert(
        "sg_rate".into(),
        Value::Float(f64::from(rng.random_range(0..100)) / 4.0),
    );
    let days = now.div_euclid(86_400) + rng.random_range(-300..300);
    f.insert(
        "sg_due".into(),
        Value::Date(Date::from_days_since_epoch(days).expect("date in range")),
    );
    f.insert(
        "created_at".into(),
        Value::DateTime(DateTime(now - rng.random_range(0..400 * 86_400))),
    );
    f.insert("sg_flag".into(), Value::Bool(rng.random_bool(0.3)));
    e.display_name = Some(code);
    e
}

/// The api3 JSON size of an entity (`{"type", "id", fields...}`).
fn json_size(e: &Entity) -> usize {
    let mut m = serde_json::Map::new();
    m.insert("type".into(), e.entity_type.clone().into());
    m.insert("id".into(), e.id.into());
    for (k, v) in &e.fields {
        m.insert(k.clone(), v.to_json());
    }
    serde_json::Value::Object(m).to_string().len()
}

/// The test schema, built once (building it per query would dominate the measured CPU time).
fn schema() -> &'static SiteSchema {
    static SCHEMA: std::sync::OnceLock<SiteSchema> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(test_schema)
}

fn filter(f: serde_json::Value) -> Filter {
    let raw = parse_any(&f).expect("benchmark filters parse");
    validate(schema(), "Shot", &raw).expect("benchmark filters are valid")
}

fn query(f: serde_json::Value, limit: Option<u64>) -> FindQuery {
    let schema = schema();
    FindQuery {
        entity_type: "Shot".into(),
        filter: filter(f),
        fields: ["code", "sg_status_list", "project", "sg_sequence"]
            .iter()
            .map(|p| validate_path(schema, "Shot", p).expect("valid path"))
            .collect(),
        sorts: Vec::new(),
        offset: 0,
        limit,
        retired_only: false,
    }
}

/// This process's CPU time so far (user + system, all threads), from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 (1-based).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

async fn timed<F: std::future::Future<Output = usize>>(f: F) -> (Duration, usize) {
    let t = Instant::now();
    let n = f.await;
    (t.elapsed(), n)
}

#[tokio::main]
async fn main() {
    let a = args();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let dir = a.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&dir).expect("create the --dir directory");
    let path = dir.join("store_bench.db");
    if !a.reuse {
        let _ = std::fs::remove_file(&path);
    }
    let store = SqliteStore::open(&path).expect("open the store");
    // The filterable fields a site would configure for Shot: code, status, project, sequence.
    let mut layouts = test_layouts();
    for l in &mut layouts {
        if l.entity_type == "Shot" {
            l.indexed = ["code", "sg_status_list", "project", "sg_sequence"]
                .map(String::from)
                .to_vec();
        }
    }
    store
        .prepare(&test_schema(), &layouts)
        .await
        .expect("prepare");
    let now = DateTime::now().0;
    let mut rng = StdRng::seed_from_u64(42);
    println!(
        "store_bench: {} Shot entities in {}",
        a.entities,
        path.display()
    );

    if !a.reuse {
        // Link targets: projects, sequences, assets.
        let mut json_bytes = 0_usize;
        let mut targets = Vec::new();
        for p in 1..=PROJECTS {
            let mut e = Entity::new("Project", p);
            e.fields
                .insert("name".into(), Value::Text(format!("Project {p}")));
            e.display_name = Some(format!("Project {p}"));
            targets.push(e);
        }
        for s in 1..=SEQUENCES {
            let mut e = Entity::new("Sequence", s);
            e.fields
                .insert("code".into(), Value::Text(format!("SQ{s:04}")));
            e.fields.insert(
                "project".into(),
                Value::Entity(link(
                    "Project",
                    1 + s % PROJECTS,
                    format!("Project {}", 1 + s % PROJECTS),
                )),
            );
            e.display_name = Some(format!("SQ{s:04}"));
            targets.push(e);
        }
        for x in 1..=ASSETS {
            let mut e = Entity::new("Asset", x);
            e.fields
                .insert("code".into(), Value::Text(format!("asset_{x:05}")));
            e.display_name = Some(format!("asset_{x:05}"));
            targets.push(e);
        }
        json_bytes += targets.iter().map(json_size).sum::<usize>();
        store
            .commit(WriteBatch::import(targets))
            .await
            .expect("load link targets");

        // Shots, in import batches of 10,000 (a first import: not journaled).
        let mut generate = Duration::ZERO;
        let mut load = Duration::ZERO;
        let mut load_cpu = Duration::ZERO;
        let batch = 10_000;
        let mut id = 1;
        while id <= a.entities {
            let t = Instant::now();
            let end = (id + batch).min(a.entities + 1);
            let shots: Vec<Entity> = (id..end).map(|i| shot(&mut rng, i, now)).collect();
            json_bytes += shots.iter().map(json_size).sum::<usize>();
            let writes = WriteBatch::import(shots);
            generate += t.elapsed();
            let t = Instant::now();
            let c = cpu_time();
            store.commit(writes).await.expect("load a batch of shots");
            load += t.elapsed();
            load_cpu += cpu_time().saturating_sub(c);
            id = end;
        }
        let loaded = a.entities as f64;
        println!(
            "load: {} shots in {:.1} s ({:.0} entities/s wall clock, {:.0} entities per CPU-second; \
             generation took {:.1} s more)",
            a.entities,
            load.as_secs_f64(),
            loaded / load.as_secs_f64(),
            loaded / load_cpu.as_secs_f64().max(1e-3),
            generate.as_secs_f64()
        );
        let t = Instant::now();
        store.analyze().await.expect("analyze");
        store.checkpoint().await.expect("checkpoint");
        println!("analyze + checkpoint: {:.1} s", t.elapsed().as_secs_f64());

        // 5. File size relative to the JSON size of the same data (measured right after the import).
        let file = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!(
            "file size: {:.1} MiB for {:.1} MiB of api3 JSON (ratio {:.2}) (target <= 2.0)",
            file as f64 / 1048576.0,
            json_bytes as f64 / 1048576.0,
            file as f64 / json_bytes as f64
        );
    }
    if !a.writes_only {
        reads(&store).await;
    }
    writes(&store, &a, &mut rng, now).await;
    journal_size(&path);
}

/// The journal's entries and the average size of their entity snapshots (what each journaled
/// change stores besides the row itself).
fn journal_size(path: &std::path::Path) {
    let figures =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| {
                c.query_row(
            "SELECT count(*), avg(length(entity)), sum(typeof(entity) = 'blob') FROM sc_journal",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<f64>>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        )
            });
    match figures {
        Ok((n, avg, binary)) => println!(
            "journal: {n} entries, entity snapshots {:.0} bytes on average ({binary} binary, {} JSON from older runs)",
            avg.unwrap_or(0.0),
            n - binary
        ),
        Err(e) => println!("journal size: cannot read the file: {e}"),
    }
}

async fn reads(store: &SqliteStore) {
    // 1. Indexed find: project is X and status is Y, 50 rows.
    let mut samples = Vec::new();
    let cpu0 = cpu_time();
    for i in 0..2_000 {
        let p = 1 + i % PROJECTS;
        let st = STATUSES[(i as usize / 3) % STATUSES.len()];
        let q = query(
            serde_json::json!([["project", "is", {"type": "Project", "id": p}], ["sg_status_list", "is", st]]),
            Some(50),
        );
        let t = Instant::now();
        let rows = store.find(&q).await.expect("indexed find");
        samples.push(t.elapsed());
        assert_eq!(rows.len(), 50, "the indexed find fills its page");
    }
    let cpu = cpu_time().saturating_sub(cpu0) / 2_000;
    println!(
        "indexed find CPU time (user + system, all threads) per call: {} \
         (the wall-clock figures below include waiting for a CPU on a shared machine)",
        us(cpu)
    );
    println!(
        "indexed find (project is X and status is Y, 50 rows): p50 {} p99 {} (target p50 <= 200 µs)",
        us(pct(samples.clone(), 0.5)),
        us(pct(samples, 0.99))
    );

    // 2. Two-hop deep-link filter.
    let mut samples = Vec::new();
    let mut matched = 0;
    for i in 0..200 {
        let q = query(
            serde_json::json!([[
                "sg_sequence.Sequence.code",
                "contains",
                format!("SQ{:02}", 10 + i % 40)
            ]]),
            Some(50),
        );
        let (d, n) = timed(async { store.find(&q).await.expect("deep-link find").len() }).await;
        samples.push(d);
        matched += n;
    }
    println!(
        "deep-link find (sg_sequence.Sequence.code contains ..., 50 rows): p50 {} p99 {} ({matched} rows over 200 runs)",
        us(pct(samples.clone(), 0.5)),
        us(pct(samples, 0.99))
    );
    let cq = CountQuery {
        entity_type: "Shot".into(),
        filter: filter(serde_json::json!([[
            "sg_sequence.Sequence.code",
            "contains",
            "SQ01"
        ]])),
        retired_only: false,
        now: DateTime::now(),
    };
    let t = Instant::now();
    let n = store.count(&cq).await.expect("deep-link count");
    println!(
        "deep-link count (sg_sequence.Sequence.code contains SQ01): {n} rows in {}",
        us(t.elapsed())
    );

    // 3. Text contains on an unindexed field (a scan).
    let mut samples = Vec::new();
    let mut found = 0;
    for w in ["zzz", "crane static", "HERO crowd"] {
        let q = query(
            serde_json::json!([["description", "contains", w]]),
            Some(50),
        );
        let (d, n) = timed(async { store.find(&q).await.expect("scan find").len() }).await;
        samples.push(d);
        found += n;
        let cq = CountQuery {
            entity_type: "Shot".into(),
            filter: q.filter.clone(),
            retired_only: false,
            now: DateTime::now(),
        };
        let (d, n) = timed(async { store.count(&cq).await.expect("scan count") as usize }).await;
        println!(
            "unindexed text contains {w:?}: count {n} rows in {:.1} ms",
            d.as_secs_f64() * 1e3
        );
    }
    println!(
        "unindexed text contains (find, 50 rows): p50 {} over {} queries ({found} rows)",
        us(pct(samples, 0.5)),
        3
    );
}

/// 10,000 new shots with ids (and event ids) from `base`, as upserts.
fn new_shots(rng: &mut StdRng, base: i64, now: i64) -> Vec<EntityWrite> {
    (base..base + 10_000)
        .map(|i| EntityWrite::Upsert {
            entity: shot(rng, i, now),
            floor: 0,
            event_id: i,
        })
        .collect()
}

/// A journaled batch of `writes` (as the syncer's live path commits).
fn journaled(writes: Vec<EntityWrite>) -> WriteBatch {
    WriteBatch {
        writes,
        journal: true,
        ..WriteBatch::default()
    }
}

async fn writes(store: &SqliteStore, a: &Args, rng: &mut StdRng, now: i64) {
    // 4. Batch upsert of 10,000 entities (journaled, as the syncer's live path): new rows, then updates.
    // Shot ids are contiguous from 1, so the new rows start after every row there is (a --reuse run
    // adds new rows again instead of overwriting the previous run's).
    let counts = store.type_counts().await.expect("type counts");
    let base = counts
        .get("Shot")
        .map_or(0, |(live, retired)| (live + retired) as i64)
        + 1;
    // A long-running syncer writes with a warm page cache: one untimed batch first fills it (in a
    // fresh process the first batch also pays for growing the heap by the cache's size).
    let t = Instant::now();
    store
        .commit(journaled(new_shots(rng, base, now)))
        .await
        .expect("warm-up batch");
    println!(
        "warm-up batch of 10,000 new entities (journaled, first commit of the process): {:.0} entities/s",
        10_000.0 / t.elapsed().as_secs_f64()
    );
    // Timed batches back to back (a long-running syncer commits batch after batch; BENCH_BATCHES,
    // default 10): each one's rate, the median, and the CPU time over all of them.
    let batches: usize = std::env::var("BENCH_BATCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
        .max(1);
    let mut rates = Vec::new();
    let mut entries = 0;
    let c = cpu_time();
    let mut base = base + 10_000;
    for _ in 0..batches {
        let fresh = new_shots(rng, base, now);
        base += 10_000;
        let t = Instant::now();
        let r = store.commit(journaled(fresh)).await.expect("batch upsert");
        rates.push(10_000.0 / t.elapsed().as_secs_f64());
        entries += r.journal.len();
    }
    let cpu = cpu_time().saturating_sub(c);
    println!(
        "batch upsert CPU time: {:.0} entities per CPU-second",
        (batches * 10_000) as f64 / cpu.as_secs_f64().max(1e-3)
    );
    let each = rates
        .iter()
        .map(|r| format!("{r:.0}"))
        .collect::<Vec<_>>()
        .join(", ");
    rates.sort_by(f64::total_cmp);
    println!(
        "batch upsert of 10,000 new entities (journaled): median {:.0} entities/s over {batches} batches ({each}; {entries} journal entries) (target >= 50,000/s)",
        rates[batches / 2]
    );
    let updates: Vec<EntityWrite> = (1..=10_000)
        .map(|i| EntityWrite::Upsert {
            entity: shot(rng, i * (a.entities / 10_000).max(1), now),
            floor: 0,
            event_id: base + i,
        })
        .collect();
    let t = Instant::now();
    store
        .commit(journaled(updates))
        .await
        .expect("batch update");
    println!(
        "batch upsert of 10,000 existing entities (journaled updates): {:.0} entities/s",
        10_000.0 / t.elapsed().as_secs_f64()
    );
    // What the syncer's event following writes: one field change per event, as a patch. Each
    // patch sets its row's status to the one after its current status (read before the timed
    // batch), so every patch changes its row, on a fresh file and on a `--reuse` run alike (the
    // same value again would be a no-op patch). Three batches over different rows, each reported:
    // the first also fills the write connection's page cache with the pages it touches (a
    // long-running syncer's is warm).
    for k in 0..3 {
        let ids: Vec<i64> = (1..=10_000)
            .map(|i| 1 + ((k * 10_000 + i) * 7919) % a.entities)
            .collect();
        let current: std::collections::HashMap<i64, String> = store
            .find(&query(serde_json::json!([["id", "in", ids]]), None))
            .await
            .expect("read the statuses to patch")
            .into_iter()
            .filter_map(|r| match r.fields.get("sg_status_list") {
                Some(Value::Text(s)) => Some((r.id, s.clone())),
                _ => None,
            })
            .collect();
        let next_status = |id: i64| {
            let now = current
                .get(&id)
                .and_then(|s| STATUSES.iter().position(|x| x == s));
            STATUSES[now.map_or(0, |p| (p + 1) % STATUSES.len())]
        };
        let patches: Vec<EntityWrite> = ids
            .iter()
            .zip(1..)
            .map(|(&id, i)| EntityWrite::Patch {
                entity_type: "Shot".into(),
                id,
                event_id: base + 20_000 + k * 10_000 + i,
                changes: vec![FieldChange::Set(
                    "sg_status_list".into(),
                    Value::Text(next_status(id).into()),
                )],
            })
            .collect();
        let t = Instant::now();
        let c = cpu_time();
        let r = store.commit(journaled(patches)).await.expect("batch patch");
        let changed = r
            .outcomes
            .iter()
            .filter(|o| matches!(o, WriteOutcome::Applied { .. }))
            .count();
        println!(
            "batch {} of 3 of 10,000 single-field patches (journaled, as event following writes; {changed} changed a row): {:.0} patches/s ({:.0} per CPU-second)",
            k + 1,
            10_000.0 / t.elapsed().as_secs_f64(),
            10_000.0 / cpu_time().saturating_sub(c).as_secs_f64().max(1e-3)
        );
    }
}
