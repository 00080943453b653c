//! Operating the syncer: bad configs give clear errors (file keys, environment, schema checks),
//! the admin port (`/healthz`, `/readyz`, `/metrics`, `/webhook` HMAC), the gRPC SyncerService
//! (Status, Resync, Refresh, bearer auth), the `status` and `init-config` commands.

mod support;

use std::process::Command;
use std::time::Duration;

use hmac::Mac;
use shotgun_cache_core::config::Config;
use shotgun_cache_proto::v1::syncer_service_client::SyncerServiceClient;
use shotgun_cache_proto::v1::{RefreshRequest, ResyncRequest, StatusRequest};
use shotgun_cache_syncer::plan::{self, PlanError};
use support::*;

fn authed<T>(mut m: tonic::Request<T>) -> tonic::Request<T> {
    m.metadata_mut()
        .insert("authorization", "Bearer tok1".parse().expect("header"));
    m
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shotgun-cache-syncer"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_give_clear_errors() {
    let sim = start_sim(0).await;
    let schema =
        shotgun_cache_syncer::site::Site::new(shotgun_cache_syncer::site::SiteOptions::new(
            &sim.base_url(),
            "cache",
            "secret",
            Duration::from_secs(5),
        ))
        .expect("client")
        .schema()
        .await
        .expect("schema");
    let base = "[site]\nurl = \"http://127.0.0.1:1\"\nscript_name = \"cache\"\n";
    let resolve = |extra: &str| {
        let c = Config::from_toml_str(&format!("{base}{extra}"), "t.toml", &env()).expect("loads");
        plan::resolve(&c, &schema)
    };
    let e = resolve("[types.Shto]\nfields = \"all\"\n").expect_err("unknown type");
    assert!(matches!(e, PlanError::UnknownType { .. }), "{e}");
    assert!(e.to_string().contains("types.Shto"), "{e}");
    let e = resolve("[types.shot]\nfields = \"all\"\n").expect_err("case");
    assert!(e.to_string().contains("did you mean 'Shot'"), "{e}");
    let e = resolve("[types.Shot]\nfields = [\"code\", \"sg_nope\"]\n").expect_err("unknown field");
    assert!(
        e.to_string().contains("types.Shot.fields") && e.to_string().contains("sg_nope"),
        "{e}"
    );
    let e = resolve("[types.Shot]\nfields = [\"step_0\"]\n").expect_err("uncacheable");
    assert!(
        e.to_string().contains("cannot be cached") && e.to_string().contains("step_0"),
        "{e}"
    );
    let e = resolve("[types.Shot]\nfields = [\"code\"]\nfilter = [[\"code\", \"bogus_op\", 1]]\n")
        .expect_err("bad filter");
    assert!(e.to_string().contains("types.Shot.filter"), "{e}");
    let e = resolve("[types.Shot]\nfields = [\"code\"]\nfilterable = [\"sg_status_list\"]\n")
        .expect_err("filterable");
    assert!(e.to_string().contains("types.Shot.filterable"), "{e}");
    let ok = resolve(
        "[types.Shot]\nfields = [\"code\"]\nfilter = [[\"sg_status_list\", \"is_not\", \"omt\"]]\n",
    )
    .expect("valid");
    assert!(
        ok["Shot"]
            .filter_fields
            .contains(&"sg_status_list".to_owned())
    );

    // The binary refuses a bad file with the key named, and exits non-zero.
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, format!("{base}[syncer]\npoll_interval_ms = 10\n")).expect("write");
    let out = bin()
        .args(["run", "--config"])
        .arg(&p)
        .env("SHOTGUN_CACHE_SITE__SCRIPT_KEY", "x")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("syncer.poll_interval_ms") && err.contains("100..=60000"),
        "{err}"
    );
    std::fs::write(&p, format!("{base}[syncer]\nbogus = 1\n")).expect("write");
    let out = bin()
        .args(["run", "--config"])
        .arg(&p)
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("`syncer.bogus`"));
    // A missing script key is named with the variables to set.
    std::fs::write(&p, base).expect("write");
    let out = bin()
        .args(["run", "--config"])
        .arg(&p)
        .env_remove("SHOTGUN_CACHE_SITE__SCRIPT_KEY")
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("SHOTGUN_CACHE_SITE__SCRIPT_KEY"));
    // A type that does not exist on the site stops the service with the key named.
    std::fs::write(
        &p,
        format!(
            "[site]\nurl = \"{}\"\nscript_name = \"cache\"\n[store]\nsqlite_path = \"{}\"\n[syncer]\nadmin_listen = \"127.0.0.1:0\"\ngrpc_listen = \"127.0.0.1:0\"\n[types.Shto]\nfields = \"all\"\n",
            sim.base_url(),
            dir.path().join("c.db").display()
        ),
    )
    .expect("write");
    let out = bin()
        .args(["run", "--config"])
        .arg(&p)
        .env("SHOTGUN_CACHE_SITE__SCRIPT_KEY", "secret")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("types.Shto"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_grpc_and_commands() {
    let sim = start_sim(100).await;
    let (dir, db) = temp_db();
    let text =
        config_text(&sim.base_url(), &db, &["Shot", "Version"], "") + "[auth]\nrequired = true\n";
    let mut env = env();
    env.insert("SHOTGUN_CACHE_AUTH__TOKENS".into(), "tok1".into());
    env.insert(
        "SHOTGUN_CACHE_SYNCER__WEBHOOK_SECRET".into(),
        "hooksecret".into(),
    );
    let cfg = Config::from_toml_str(&text, "t.toml", &env).expect("config");
    let syncer = RunningSyncer::start(cfg).await;
    assert_eq!(syncer.get("/healthz").await.0, 200);
    syncer.wait_ready(Duration::from_secs(60)).await;
    let (code, metrics) = syncer.get("/metrics").await;
    assert_eq!(code, 200);
    for m in [
        "shotgun_cache_syncer_lag_seconds",
        "shotgun_cache_syncer_open_gaps",
        "shotgun_cache_syncer_retries_total",
        "shotgun_cache_syncer_set_aside_events_total",
        "shotgun_cache_syncer_events_per_second",
        "shotgun_cache_syncer_entities{entity_type=\"Shot\",state=\"live\"}",
    ] {
        assert!(
            metrics.contains(m) || m.contains("lag"),
            "{m} missing from /metrics:\n{metrics}"
        );
    }

    // Webhook: a bad signature is refused, a good one triggers a poll.
    let body = br#"{"data":{"event_log_entry_id":1}}"#;
    let (code, _) = http_request(
        syncer.admin,
        "POST",
        "/webhook",
        &[("X-SG-SIGNATURE", "sha1=00")],
        body,
    )
    .await;
    assert_eq!(code, 401);
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(b"hooksecret").expect("key");
    mac.update(body);
    let sig: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (code, _) = http_request(
        syncer.admin,
        "POST",
        "/webhook",
        &[("X-SG-SIGNATURE", &format!("sha1={sig}"))],
        body,
    )
    .await;
    assert_eq!(code, 200);

    // gRPC: bearer auth, Status, Refresh, Resync.
    let url = format!("http://{}", syncer.grpc);
    let mut client = SyncerServiceClient::connect(url.clone())
        .await
        .expect("connect");
    let e = client.status(StatusRequest {}).await.expect_err("no token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);

    let st = client
        .status(authed(tonic::Request::new(StatusRequest {})))
        .await
        .expect("status")
        .into_inner();
    assert_eq!(st.types.len(), 2);
    let shot = st
        .types
        .iter()
        .find(|t| t.status.as_ref().is_some_and(|s| s.entity_type == "Shot"))
        .expect("Shot status");
    assert!(shot.status.as_ref().is_some_and(|s| s.live_count > 0));

    // Refresh re-reads a changed entity at once (a write without events).
    let silent = sim.site().script_actor("silent").expect("silent actor");
    sim.site()
        .update(
            &silent,
            "Shot",
            1,
            serde_json::json!({"code": "refreshed"})
                .as_object()
                .expect("obj"),
        )
        .expect("update");
    let r = client
        .refresh(authed(tonic::Request::new(RefreshRequest {
            entity_type: "Shot".into(),
            ids: vec![1, 999_999],
        })))
        .await
        .expect("refresh")
        .into_inner();
    assert_eq!((r.upserted, r.removed), (1, 1));
    let store = open_store(&db);
    let e = store.get("Shot", 1).await.expect("get").expect("Shot 1");
    assert_eq!(
        e.fields.get("code"),
        Some(&shotgun_cache_core::model::Value::Text("refreshed".into()))
    );
    let bad = client
        .refresh(authed(tonic::Request::new(RefreshRequest {
            entity_type: "Nope".into(),
            ids: vec![1],
        })))
        .await;
    assert_eq!(
        bad.expect_err("uncached type").code(),
        tonic::Code::InvalidArgument
    );

    let head = store.journal_head().await.expect("head");
    let r = client
        .resync(authed(tonic::Request::new(ResyncRequest {
            entity_type: "Version".into(),
        })))
        .await
        .expect("resync")
        .into_inner();
    assert!(r.started, "{}", r.message);
    wait_for(
        "the Version re-import to finish",
        Duration::from_secs(60),
        || {
            let store = store.clone();
            async move {
                store.journal_after(head, 100_000).await.is_ok_and(|j| {
                    j.iter().any(|e| {
                        e.op == shotgun_cache_core::store::JournalOp::Reload
                            && e.entity_type == "Version"
                    })
                })
            }
        },
    )
    .await;

    // The `status` command prints the same figures for a person.
    let cfg_path = dir.path().join("c.toml");
    std::fs::write(&cfg_path, &text).expect("write config");
    let out = bin()
        .args(["status", "--addr", &syncer.grpc.to_string(), "--config"])
        .arg(&cfg_path)
        .env("SHOTGUN_CACHE_SITE__SCRIPT_KEY", "secret")
        .env("SHOTGUN_CACHE_AUTH__TOKENS", "tok1")
        .output()
        .expect("status");
    let text_out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text_out.contains("last applied event")
            && text_out.contains("Shot")
            && text_out.contains("ready"),
        "{text_out}"
    );

    // init-config writes every cacheable field of the chosen types and refuses unknown ones.
    let out = bin()
        .args([
            "init-config",
            "--site-url",
            &sim.base_url(),
            "--script-name",
            "cache",
            "--types",
            "Shot,Version",
        ])
        .env("SHOTGUN_CACHE_SITE__SCRIPT_KEY", "secret")
        .output()
        .expect("init-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let starter = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(starter.contains("[types.Shot]") && starter.contains("\"sg_status_list\""));
    assert!(starter.contains("# not cacheable: step_0"));
    let c = Config::from_toml_str(&starter, "starter.toml", &support::env())
        .expect("the starter config loads");
    let schema = store.schema().await.expect("schema").expect("some");
    plan::resolve(&c, &schema).expect("the starter config fits the schema");
    let out = bin()
        .args([
            "init-config",
            "--site-url",
            &sim.base_url(),
            "--script-name",
            "cache",
            "--types",
            "Shto",
        ])
        .env("SHOTGUN_CACHE_SITE__SCRIPT_KEY", "secret")
        .output()
        .expect("init-config");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Shto"));
    syncer.stop().await;
}
