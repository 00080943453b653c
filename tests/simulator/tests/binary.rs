//! The `shotgun-sim` binary starts with one command, prints its ready line (URL and credentials as one
//! JSON line), and serves a site a plain client can log in to, page through and read events from.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{Value as Json, json};

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_serves_a_generated_site() {
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_shotgun-sim"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--scale",
                "2000",
                "--seed",
                "3",
                "--script-name",
                "cache",
                "--script-key",
                "k3y",
                "--token-ttl",
                "120",
                "--first-event-id",
                "500000",
                "--history-edits",
                "30",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn shotgun-sim"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut l = String::new();
        BufReader::new(stdout).read_line(&mut l).map(|_| l)
    })
    .await
    .unwrap()
    .unwrap();
    let ready: Json = serde_json::from_str(&line).expect("ready line is JSON");
    assert_eq!(ready["script_name"], "cache");
    assert_eq!(ready["script_key"], "k3y");
    assert!(ready["entities"].as_u64().unwrap() >= 2000);
    let base = ready["url"].as_str().unwrap().to_owned();

    let http = reqwest::Client::new();
    let auth: Json = http
        .post(format!("{base}/api/v1/auth/access_token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "cache"),
            ("client_secret", "k3y"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(auth["expires_in"], 120);
    let token = auth["access_token"].as_str().unwrap().to_owned();
    let mut shots = 0;
    for page in 1.. {
        let b: Json = http
            .get(format!(
                "{base}/api/v1/entity/shots?page[size]=50&page[number]={page}&fields=code"
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let n = b["data"].as_array().unwrap().len();
        if n == 0 {
            break;
        }
        shots += n;
    }
    assert!(shots > 100, "{shots} shots");
    let r: Json = http
        .post(format!("{base}/_sim/workload/run"))
        .json(&json!({"count": 20}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["done"].as_u64().unwrap() > 10);
    let ev: Json = http
        .post(format!("{base}/api/v1/entity/event_log_entries/_search"))
        .bearer_auth(&token)
        .header("content-type", "application/vnd+shotgun.api3_array+json")
        .body(json!({"filters": [["id", "greater_than", 0]], "fields": ["event_type", "meta"], "sort": "id"}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(ev["data"].as_array().unwrap().len() > 10);
    assert!(
        ev["data"][0]["id"].as_i64().unwrap() >= 500_000,
        "event ids start at --first-event-id"
    );
    assert!(
        ev["data"].as_array().unwrap().len() > 40,
        "history edits plus the workload's"
    );
}
