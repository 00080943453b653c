//! Each fault knob does what it says: latency, every injected error kind (429 with Retry-After, 500,
//! 502, 503, 504, hung requests, dropped connections), error rates, the event-log knobs (visibility
//! delay, out-of-order commits, permanent gaps), archiving, and the workload driver.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::small;
use serde_json::{Value as Json, json};
use shotgun_sim::{EventKnobs, FaultKind, Faults};

async fn shot_id(h: &common::Harness) -> i64 {
    let (_, b) = h
        .search("shots", json!({"fields": ["code"], "page": {"size": 1}}))
        .await;
    b["data"][0]["id"].as_i64().unwrap()
}

/// Fixed latency delays API requests (not the control API).
#[tokio::test]
async fn latency_is_added_to_api_requests() {
    let h = small().await;
    h.sim.set_faults(Faults {
        latency_ms: 250,
        ..Faults::default()
    });
    let t = Instant::now();
    let (s, _) = h.get("/api/v1/entity/shots?page[size]=1").await;
    assert_eq!(s, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    let t = Instant::now();
    let r = h.http.get(h.url("/_sim/info")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "control API is not delayed"
    );
    // Jitter stays within its bound.
    h.sim.set_faults(Faults {
        latency_ms: 0,
        jitter_ms: 100,
        ..Faults::default()
    });
    let t = Instant::now();
    for _ in 0..5 {
        h.get("/api/v1/entity/shots?page[size]=1").await;
    }
    assert!(t.elapsed() < Duration::from_millis(5 * 100 + 300));
}

/// Each queued fault kind answers as documented, then the site behaves again.
#[tokio::test]
async fn each_error_kind() {
    let h = small().await;
    let url = h.url("/api/v1/entity/shots?page[size]=1");
    let faults = Faults {
        retry_after_secs: 7,
        hang_secs: 1,
        ..Faults::default()
    };
    h.sim.set_faults(faults);
    // Through the control API, as the Python tests do.
    h.control(
        "/_sim/faults/fail_next",
        json!({"kinds": ["too_many_requests", "internal_error", "bad_gateway", "service_unavailable", "gateway_timeout"]}),
    )
    .await;
    let r = h.http.get(&url).bearer_auth(&h.token).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    let r = h.http.get(&url).bearer_auth(&h.token).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let b: Json = r.json().await.unwrap();
    assert_eq!(b["errors"][0]["title"], "Shotgun Server Error");
    for code in [502, 503, 504] {
        let r = h.http.get(&url).bearer_auth(&h.token).send().await.unwrap();
        assert_eq!(r.status(), code);
    }
    let r = h.http.get(&url).bearer_auth(&h.token).send().await.unwrap();
    assert_eq!(r.status(), 200, "queue drained");

    // A hung request: a client with a short timeout gives up; the server answers 504 after hang_secs.
    h.sim.state().faults.fail_next(&[FaultKind::Hang]);
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let t = Instant::now();
    let e = quick
        .get(&url)
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(t.elapsed() >= Duration::from_millis(300));
    h.sim.state().faults.fail_next(&[FaultKind::Hang]);
    let t = Instant::now();
    let r = h.http.get(&url).bearer_auth(&h.token).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(t.elapsed() >= Duration::from_secs(1));

    // A dropped connection: no response at all.
    h.sim.state().faults.fail_next(&[FaultKind::Drop]);
    let fresh = reqwest::Client::new();
    let e = fresh
        .get(&url)
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap_err();
    assert!(
        !e.is_timeout() && e.status().is_none(),
        "connection closed without a response: {e}"
    );
    let r = fresh.get(&url).bearer_auth(&h.token).send().await.unwrap();
    assert_eq!(r.status(), 200, "the next connection works");
}

/// An error rate fails about that share of requests (seeded), and the stats count them.
#[tokio::test]
async fn error_rate_and_stats() {
    let h = small().await;
    h.sim.set_faults(Faults {
        error_rate: 0.3,
        error_kinds: vec![FaultKind::ServiceUnavailable, FaultKind::TooManyRequests],
        seed: 42,
        ..Faults::default()
    });
    let mut failed = 0;
    for _ in 0..200 {
        let r = h
            .http
            .get(h.url("/api/v1/entity/shots?page[size]=1"))
            .bearer_auth(&h.token)
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => {}
            429 | 503 => failed += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        (35..=85).contains(&failed),
        "about 30% of 200 failed: {failed}"
    );
    let stats: Json = h
        .http
        .get(h.url("/_sim/faults/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["injected"], failed);
    assert!(stats["requests"].as_u64().unwrap() >= 200);
    // The knobs round-trip through the control API.
    let r = h
        .http
        .put(h.url("/_sim/faults"))
        .json(&json!({"error_rate": 0.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, _) = h.get("/api/v1/entity/shots?page[size]=1").await;
    assert_eq!(s, 200);
}

/// Visibility delay: events appear only after the delay.
#[tokio::test]
async fn event_visibility_delay() {
    let h = small().await;
    let shot = shot_id(&h).await;
    h.sim.site().set_event_knobs(EventKnobs {
        visibility_delay_ms: 400,
        ..EventKnobs::default()
    });
    let start = h.sim.site().last_event_id();
    h.control(
        "/_sim/update",
        json!({"entity_type": "Shot", "id": shot, "fields": {"description": "late"}}),
    )
    .await;
    assert!(h.events_after(start).await.is_empty(), "not visible yet");
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(h.events_after(start).await.len(), 1);
}

/// Out-of-order commits: a higher id is visible while a lower one is still pending; later all appear.
/// Gaps: reserved ids that never appear.
#[tokio::test]
async fn out_of_order_commits_and_permanent_gaps() {
    let h = small().await;
    let shot = shot_id(&h).await;
    let r = h
        .http
        .put(h.url("/_sim/events/knobs"))
        .json(&json!({"out_of_order_rate": 0.5, "out_of_order_max_delay_ms": 600, "gap_rate": 0.0, "seed": 9}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let start = h.sim.site().last_event_id();
    for i in 0..20 {
        h.control("/_sim/update", json!({"entity_type": "Shot", "id": shot, "fields": {"description": format!("edit {i}")}})).await;
    }
    let visible: Vec<i64> = h
        .events_after(start)
        .await
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    let pending = h.sim.site().pending_event_ids();
    assert!(!pending.is_empty(), "some transactions commit late");
    assert!(
        pending.iter().any(|p| visible.iter().any(|v| v > p)),
        "a higher id is visible before a lower one"
    );
    tokio::time::sleep(Duration::from_millis(650)).await;
    let visible: Vec<i64> = h
        .events_after(start)
        .await
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        visible,
        ((start + 1)..=(start + 20)).collect::<Vec<_>>(),
        "all committed in the end, no gaps"
    );

    h.sim.site().set_event_knobs(EventKnobs {
        gap_rate: 0.3,
        seed: 4,
        ..EventKnobs::default()
    });
    let start = h.sim.site().last_event_id();
    for i in 0..30 {
        h.control("/_sim/update", json!({"entity_type": "Shot", "id": shot, "fields": {"description": format!("gap {i}")}})).await;
    }
    h.control("/_sim/events/flush", json!({})).await;
    let visible: Vec<i64> = h
        .events_after(start)
        .await
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(visible.len(), 30, "every write's event is there");
    let last = h.sim.site().last_event_id();
    let holes = (last - start) as usize - visible.len();
    assert!(holes >= 3, "permanent gaps: {holes}");
    assert!(h.sim.site().pending_event_ids().is_empty());
}

/// Archiving removes every event below an id from the API.
#[tokio::test]
async fn archive_truncates_the_log() {
    let h = small().await;
    let shot = shot_id(&h).await;
    for i in 0..10 {
        h.control(
            "/_sim/update",
            json!({"entity_type": "Shot", "id": shot, "fields": {"description": format!("a{i}")}}),
        )
        .await;
    }
    let all = h.events_after(0).await;
    let cut = all[5]["id"].as_i64().unwrap();
    let r = h
        .control("/_sim/events/archive", json!({"before": cut}))
        .await;
    assert_eq!(r["archived"], 5);
    let left = h.events_after(0).await;
    assert_eq!(left.len(), all.len() - 5);
    assert_eq!(left[0]["id"].as_i64().unwrap(), cut);
}

/// The workload driver makes edits at the asked rate and every edit logs events.
#[tokio::test]
async fn workload_driver() {
    let h = small().await;
    let start = h.sim.site().last_event_id();
    let r = h
        .control("/_sim/workload/run", json!({"count": 200, "seed": 8}))
        .await;
    assert!(r["done"].as_u64().unwrap() >= 180, "{r}");
    assert!(h.sim.site().last_event_id() > start + 180);

    let id = h
        .control(
            "/_sim/workload",
            json!({"rate_per_sec": 200.0, "count": 100, "seed": 2}),
        )
        .await["id"]
        .as_u64()
        .unwrap();
    let t = Instant::now();
    let status = loop {
        let s: Json = h
            .http
            .get(h.url(&format!("/_sim/workload/{id}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["finished"] == true || t.elapsed() > Duration::from_secs(10) {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status["finished"], true, "{status}");
    assert_eq!(
        status["done"].as_u64().unwrap() + status["errors"].as_u64().unwrap(),
        100
    );
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "rate-limited: {:?}",
        t.elapsed()
    );
}

/// The truth dump has every row (retired included) with every data field.
#[tokio::test]
async fn truth_dump() {
    let h = small().await;
    let truth = h.sim.site().truth(Some(&["Shot".to_owned()]));
    let (live, retired) = h.sim.site().counts()["Shot"];
    assert_eq!(truth.len() as u64, live + retired);
    assert!(
        truth
            .iter()
            .all(|r| r.fields.contains_key("sg_status_list") && r.fields.contains_key("tasks"))
    );
    let b: Json = h
        .http
        .get(h.url("/_sim/truth?types=Shot"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b["entities"].as_array().unwrap().len(), truth.len());
}
