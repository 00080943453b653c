//! Throughput of the simulated site (run with `SHOTGUN_CACHE_SLOW_TESTS=1`, in release for real
//! figures): generation time at a large scale, and REST pages per second at zero latency for keyset
//! paging (the syncer's import) and event polling. Prints the figures; asserts only that every row was
//! read. Scale: `SHOTGUN_SIM_BENCH_SCALE` (default 1,000,000).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Instant;

use serde_json::json;
use shotgun_sim::SimConfig;

fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_per_second() {
    if std::env::var("SHOTGUN_CACHE_SLOW_TESTS").as_deref() != Ok("1") {
        eprintln!("skipped: set SHOTGUN_CACHE_SLOW_TESTS=1 to run the simulator benchmark");
        return;
    }
    let scale: u64 = std::env::var("SHOTGUN_SIM_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let t = Instant::now();
    let h = common::start(SimConfig {
        scale,
        seed: 1,
        ..SimConfig::default()
    })
    .await;
    let g = h.sim.generation();
    println!(
        "generated {} entities in {:.2} s (site start {:.2} s), RSS {} MiB",
        g.entities,
        g.seconds,
        t.elapsed().as_secs_f64(),
        rss_mib()
    );

    // Keyset paging over every Task, 500 per page, a realistic field list.
    let live = h.sim.site().counts()["Task"].0 as usize;
    let fields = json!([
        "content",
        "sg_status_list",
        "entity",
        "step",
        "project",
        "task_assignees",
        "start_date",
        "due_date",
        "est_in_mins",
        "updated_at"
    ]);
    let t = Instant::now();
    let (mut last, mut rows, mut pages) = (0i64, 0usize, 0u64);
    loop {
        let (s, b) = h.search("tasks", json!({"filters": [["id", "greater_than", last]], "fields": fields, "sort": "id", "page": {"size": 500}})).await;
        assert_eq!(s, 200);
        pages += 1;
        let data = b["data"].as_array().unwrap();
        if data.is_empty() {
            break;
        }
        rows += data.len();
        last = data.last().unwrap()["id"].as_i64().unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(rows, live);
    println!(
        "keyset paging: {pages} pages of 500 Tasks in {secs:.2} s = {:.0} pages/s ({:.0} rows/s), one client",
        pages as f64 / secs,
        rows as f64 / secs
    );

    // Four clients in parallel, offset paging over Versions.
    let t = Instant::now();
    let versions = h.sim.site().counts()["Version"].0 as usize;
    let per = versions.div_ceil(500).div_ceil(4);
    let mut tasks = Vec::new();
    for c in 0..4 {
        let (http, base, token) = (h.http.clone(), h.base.clone(), h.token.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            for p in (c * per + 1)..=((c + 1) * per) {
                let r = http
                    .get(format!("{base}/api/v1/entity/versions?page[size]=500&page[number]={p}&fields=code,sg_status_list,entity,sg_task,user,created_at"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                let b: serde_json::Value = r.json().await.unwrap();
                n += b["data"].as_array().map(Vec::len).unwrap_or(0);
            }
            (n, per)
        }));
    }
    let mut rows = 0;
    let mut pages = 0;
    for t in tasks {
        let (n, p) = t.await.unwrap();
        rows += n;
        pages += p;
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(rows, versions);
    println!(
        "offset paging, 4 clients: {pages} pages of Versions in {secs:.2} s = {:.0} pages/s",
        pages as f64 / secs
    );

    // Event polling: make 20,000 edits, then read the log 500 at a time.
    let start = h.sim.site().last_event_id();
    let t = Instant::now();
    let r = h
        .control("/_sim/workload/run", json!({"count": 20000, "seed": 1}))
        .await;
    println!(
        "workload: {} edits in {:.2} s ({} failed)",
        r["done"],
        t.elapsed().as_secs_f64(),
        r["errors"]
    );
    let t = Instant::now();
    let (mut last, mut events, mut pages) = (start, 0usize, 0u64);
    loop {
        let (s, b) = h
            .search(
                "event_log_entries",
                json!({"filters": [["id", "greater_than", last]], "fields": ["id", "event_type", "attribute_name", "meta", "entity", "project", "user", "session_uuid", "created_at"], "sort": "id", "page": {"size": 500}}),
            )
            .await;
        assert_eq!(s, 200);
        pages += 1;
        let data = b["data"].as_array().unwrap();
        if data.is_empty() {
            break;
        }
        events += data.len();
        last = data.last().unwrap()["id"].as_i64().unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "event polling: {events} events in {pages} pages, {secs:.2} s = {:.0} pages/s; RSS {} MiB",
        pages as f64 / secs,
        rss_mib()
    );
    assert!(events > 20_000);
}
