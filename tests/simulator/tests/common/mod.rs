//! Helpers shared by the simulator's integration tests: start a site, log in, call the REST API with a
//! plain HTTP client (reqwest), the way the syncer and the Python scripts do.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use serde_json::{Value as Json, json};
use shotgun_sim::{RunningSim, SimConfig, Simulator};

pub const ARRAY_CT: &str = "application/vnd+shotgun.api3_array+json";
pub const HASH_CT: &str = "application/vnd+shotgun.api3_hash+json";

pub struct Harness {
    pub sim: RunningSim,
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

pub async fn start(config: SimConfig) -> Harness {
    let sim = Simulator::start(config).await.expect("simulator starts");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client builds");
    let base = sim.base_url();
    let (name, key) = sim.credentials();
    let token = login(&http, &base, &name, &key).await;
    Harness {
        sim,
        http,
        base,
        token,
    }
}

pub async fn small() -> Harness {
    start(SimConfig {
        scale: 300,
        seed: 5,
        ..SimConfig::default()
    })
    .await
}

pub async fn login(http: &reqwest::Client, base: &str, name: &str, key: &str) -> String {
    let r = http
        .post(format!("{base}/api/v1/auth/access_token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", name),
            ("client_secret", key),
        ])
        .send()
        .await
        .expect("auth request");
    assert_eq!(r.status(), 200, "login as {name}");
    let body: Json = r.json().await.expect("auth json");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

impl Harness {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> (u16, Json) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Json::Null))
    }

    pub async fn search_ct(&self, slug: &str, ct: &str, body: Json) -> (u16, Json) {
        let r = self
            .http
            .post(self.url(&format!("/api/v1/entity/{slug}/_search")))
            .bearer_auth(&self.token)
            .header("content-type", ct)
            .body(body.to_string())
            .send()
            .await
            .expect("_search");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Json::Null))
    }

    pub async fn search(&self, slug: &str, body: Json) -> (u16, Json) {
        self.search_ct(slug, ARRAY_CT, body).await
    }

    /// Every event with an id above `after`, in id order, as REST records.
    pub async fn events_after(&self, after: i64) -> Vec<Json> {
        let (s, b) = self
            .search(
                "event_log_entries",
                json!({"filters": [["id", "greater_than", after]],
                       "fields": ["id", "event_type", "attribute_name", "meta", "entity", "project", "user", "session_uuid", "created_at"],
                       "sort": "id", "page": {"size": 5000}}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        b["data"].as_array().cloned().unwrap_or_default()
    }

    pub async fn control(&self, path: &str, body: Json) -> Json {
        let r = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("control call");
        let status = r.status();
        let v: Json = r.json().await.unwrap_or(Json::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }
}

/// `(event_type, attribute_name)` of each event.
pub fn kinds(events: &[Json]) -> Vec<(String, Option<String>)> {
    events
        .iter()
        .map(|e| {
            (
                e["attributes"]["event_type"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                e["attributes"]["attribute_name"]
                    .as_str()
                    .map(str::to_owned),
            )
        })
        .collect()
}
