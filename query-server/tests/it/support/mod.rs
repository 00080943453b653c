//! Test support for the query-server's black-box tests: a small site schema, a fixture builder that
//! fills a real SQLite store file through `Store::commit` (as the syncer would), and a server
//! started in-process on `127.0.0.1:0` with a real gRPC client.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value as Json, json};
use shotgun_cache_core::config::Config;
use shotgun_cache_core::model::{DateTime, Entity, EntityRef, FieldSchema, SiteSchema, Value};
use shotgun_cache_core::store::sqlite::SqliteStore;
use shotgun_cache_core::store::{
    EntityWrite, FieldChange, Store, TypeLayout, TypePhase, TypeState, WriteBatch,
};
use shotgun_cache_proto::v1 as pb;
use shotgun_cache_proto::v1::query_service_client::QueryServiceClient;
use shotgun_cache_query_server::{Listeners, ServerOptions, run_with};
use tonic::transport::Channel;

/// Status values the fixture's shots cycle through.
/// The cached fields of Shot, one of each kind of value the fixture holds.
pub const SHOT_FIELDS: [&str; 10] = [
    "code",
    "sg_status_list",
    "sg_sequence",
    "assets",
    "project",
    "sg_cut_in",
    "sg_rate",
    "sg_due",
    "updated_at",
    "sg_flag",
];
pub const STATUSES: [&str; 4] = ["ip", "fin", "wtg", "omt"];
pub const SHOTS: i64 = 200;
pub const SEQUENCES: i64 = 5;
pub const ASSETS: i64 = 10;

fn field(data_type: &str, valid_types: &[&str], valid_values: &[&str]) -> Json {
    json!({
        "data_type": {"value": data_type, "editable": false},
        "name": {"value": "", "editable": true},
        "editable": {"value": true, "editable": false},
        "properties": {
            "valid_types": {"value": valid_types, "editable": false},
            "valid_values": {"value": valid_values, "editable": false},
            "default_value": {"value": null, "editable": false}
        }
    })
}

/// The fixture's site schema: Project, Sequence, Shot, Asset, Version (cached) and Note (not cached).
pub fn schema() -> SiteSchema {
    let s = json!({
        "Project": {"id": field("number", &[], &[]), "name": field("text", &[], &[])},
        "Sequence": {
            "id": field("number", &[], &[]),
            "code": field("text", &[], &[]),
            "project": field("entity", &["Project"], &[]),
        },
        "Asset": {
            "id": field("number", &[], &[]),
            "code": field("text", &[], &[]),
            "sg_asset_type": field("list", &[], &["Character", "Prop", "Environment"]),
        },
        "Shot": {
            "id": field("number", &[], &[]),
            "code": field("text", &[], &[]),
            "sg_status_list": field("status_list", &[], &["ip", "fin", "wtg", "omt"]),
            "sg_sequence": field("entity", &["Sequence"], &[]),
            "assets": field("multi_entity", &["Asset"], &[]),
            "project": field("entity", &["Project"], &[]),
            "sg_cut_in": field("number", &[], &[]),
            "sg_rate": field("float", &[], &[]),
            "sg_due": field("date", &[], &[]),
            "updated_at": field("date_time", &[], &[]),
            "sg_flag": field("checkbox", &[], &[]),
            "description": field("text", &[], &[]),
        },
        "Version": {
            "id": field("number", &[], &[]),
            "code": field("text", &[], &[]),
            "entity": field("entity", &["Shot", "Asset"], &[]),
        },
        "Note": {"id": field("number", &[], &[]), "subject": field("text", &[], &[])},
    });
    SiteSchema::from_json(&s, None).expect("the fixture schema is well formed")
}

fn layout(schema: &SiteSchema, t: &str, fields: &[&str], indexed: &[&str]) -> TypeLayout {
    let fields: Vec<FieldSchema> = fields
        .iter()
        .map(|f| schema.field(t, f).expect("fixture field exists").clone())
        .collect();
    TypeLayout {
        entity_type: t.into(),
        fields,
        indexed: indexed.iter().map(|s| s.to_string()).collect(),
    }
}

/// Cached types and fields: everything but `Note` and `Shot.description`.
pub fn layouts(schema: &SiteSchema) -> Vec<TypeLayout> {
    vec![
        layout(schema, "Project", &["name"], &[]),
        layout(schema, "Sequence", &["code", "project"], &["code"]),
        layout(schema, "Asset", &["code", "sg_asset_type"], &[]),
        layout(schema, "Shot", &SHOT_FIELDS, &["code", "sg_status_list"]),
        layout(schema, "Version", &["code", "entity"], &[]),
    ]
}

pub fn ready(t: &str, n: u64) -> TypeState {
    TypeState {
        entity_type: t.into(),
        phase: TypePhase::Ready,
        done: n,
        total: n,
        config_hash: "fixture".into(),
        ready_at: Some(DateTime(1_700_000_000)),
    }
}

pub fn entity(t: &str, id: i64, display: &str, fields: Vec<(&str, Value)>) -> Entity {
    let mut e = Entity::new(t, id);
    e.display_name = Some(display.to_owned());
    e.fields = fields
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect::<BTreeMap<_, _>>();
    e
}

pub fn link(t: &str, id: i64, name: &str) -> EntityRef {
    EntityRef {
        entity_type: t.into(),
        id,
        name: Some(name.into()),
    }
}

pub fn shot(i: i64) -> Entity {
    let seq = (i % SEQUENCES) + 1;
    let assets = (0..(i % 3)).map(|k| {
        let a = ((i + k) % ASSETS) + 1;
        link("Asset", a, &format!("asset{a:02}"))
    });
    entity(
        "Shot",
        i,
        &format!("sh{i:04}"),
        vec![
            ("code", Value::Text(format!("sh{i:04}"))),
            (
                "sg_status_list",
                Value::Text(STATUSES[(i % 4) as usize].into()),
            ),
            (
                "sg_sequence",
                Value::Entity(link("Sequence", seq, &format!("SEQ_{seq:02}"))),
            ),
            ("assets", Value::MultiEntity(assets.collect())),
            ("project", Value::Entity(link("Project", 1, "Alpha"))),
            ("sg_cut_in", Value::Int(i * 10)),
            ("sg_rate", Value::Float(i as f64 / 4.0)),
            (
                "sg_due",
                Value::Date(
                    shotgun_cache_core::model::Date::parse(&format!("2026-01-{:02}", (i % 28) + 1))
                        .expect("valid fixture date"),
                ),
            ),
            (
                "updated_at",
                Value::DateTime(DateTime(1_700_000_000 + i * 60)),
            ),
            ("sg_flag", Value::Bool(i % 2 == 0)),
        ],
    )
}

pub fn upsert(e: Entity) -> EntityWrite {
    EntityWrite::Upsert {
        entity: e,
        floor: 0,
        event_id: 0,
    }
}

/// A store file with the fixture loaded (all types ready except Version, which is importing).
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub store: Arc<dyn Store>,
}

impl Fixture {
    pub async fn new() -> Fixture {
        Self::with_version_phase(TypePhase::Importing).await
    }

    pub async fn with_version_phase(phase: TypePhase) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cache.db");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&path).expect("open the fixture store"));
        let schema = schema();
        store
            .prepare(&schema, &layouts(&schema))
            .await
            .expect("prepare");
        let mut writes = vec![upsert(entity(
            "Project",
            1,
            "Alpha",
            vec![("name", Value::Text("Alpha".into()))],
        ))];
        for s in 1..=SEQUENCES {
            writes.push(upsert(entity(
                "Sequence",
                s,
                &format!("SEQ_{s:02}"),
                vec![
                    ("code", Value::Text(format!("SEQ_{s:02}"))),
                    ("project", Value::Entity(link("Project", 1, "Alpha"))),
                ],
            )));
        }
        for a in 1..=ASSETS {
            let kind = ["Character", "Prop", "Environment"][(a % 3) as usize];
            writes.push(upsert(entity(
                "Asset",
                a,
                &format!("asset{a:02}"),
                vec![
                    ("code", Value::Text(format!("asset{a:02}"))),
                    ("sg_asset_type", Value::Text(kind.into())),
                ],
            )));
        }
        for i in 1..=SHOTS {
            writes.push(upsert(shot(i)));
        }
        writes.push(upsert(entity(
            "Version",
            1,
            "v001",
            vec![
                ("code", Value::Text("v001".into())),
                ("entity", Value::Entity(link("Shot", 1, "sh0001"))),
            ],
        )));
        let version_state = TypeState {
            entity_type: "Version".into(),
            phase,
            done: 120,
            total: 500,
            config_hash: "fixture".into(),
            ready_at: None,
        };
        let batch = WriteBatch {
            writes,
            journal: false,
            type_states: vec![
                ready("Project", 1),
                ready("Sequence", SEQUENCES as u64),
                ready("Asset", ASSETS as u64),
                ready("Shot", SHOTS as u64),
                version_state,
            ],
            schema: Some(schema),
            state: [("cursor".to_owned(), json!({"last_event_id": 4242}))]
                .into_iter()
                .collect(),
            ..Default::default()
        };
        store.commit(batch).await.expect("commit the fixture");
        Fixture { dir, path, store }
    }

    /// Commits journaled writes (as the syncer following events would).
    pub async fn journaled(&self, writes: Vec<EntityWrite>) -> Vec<u64> {
        let r = self
            .store
            .commit(WriteBatch {
                writes,
                journal: true,
                ..Default::default()
            })
            .await
            .expect("commit journaled writes");
        r.journal.iter().map(|e| e.seq).collect()
    }

    /// One journaled field change of one shot.
    pub fn patch(id: i64, event_id: i64, changes: Vec<FieldChange>) -> EntityWrite {
        EntityWrite::Patch {
            entity_type: "Shot".into(),
            id,
            event_id,
            changes,
        }
    }

    pub async fn set_state(&self, state: TypeState) {
        self.store
            .commit(WriteBatch {
                type_states: vec![state],
                ..Default::default()
            })
            .await
            .expect("commit a type state");
    }
}

/// The server options the tests use: fast refreshes.
pub fn fast_options() -> ServerOptions {
    ServerOptions {
        catalog_refresh: Duration::from_millis(100),
        health_interval: Duration::from_millis(100),
        ..ServerOptions::default()
    }
}

/// A config for tests (no drain delay); `extra` is appended TOML, `env` the environment.
pub fn config(store_path: &Path, extra: &str, env: &[(&str, &str)]) -> Config {
    let text = format!(
        "[site]\nurl = \"http://127.0.0.1:1\"\nscript_name = \"test\"\n[store]\nsqlite_path = {:?}\n[query_server]\ndrain_secs = 0\n{extra}",
        store_path.display().to_string()
    );
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_toml_str(&text, "test config", &env).expect("valid test config")
}

/// A server running in-process; dropping it does not stop it, call [`Server::stop`].
pub struct Server {
    pub grpc: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
    pub http: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    pub async fn start(fx: &Fixture) -> Server {
        Self::start_with(fx, config(&fx.path, "", &[]), fast_options()).await
    }

    pub async fn start_with(fx: &Fixture, config: Config, opts: ServerOptions) -> Server {
        let s = Self::start_unchecked(fx, config, opts).await;
        s.wait_serving().await;
        s
    }

    /// Starts without waiting for SERVING (for TLS servers, which the plain health probe cannot reach).
    pub async fn start_unchecked(fx: &Fixture, config: Config, opts: ServerOptions) -> Server {
        Self::start_on(fx.store.clone(), config, opts).await
    }

    /// Starts on the fixture's file through a store handle of its own with a result cache of
    /// `mib` MiB, as `run` opens it (the fixture's handle has none), and waits for SERVING.
    pub async fn start_cached(fx: &Fixture, mib: usize) -> (Server, Arc<SqliteStore>) {
        let store = SqliteStore::open(&fx.path).expect("open a second handle on the fixture");
        store.enable_result_cache(mib << 20);
        let store = Arc::new(store);
        let s = Self::start_on(store.clone(), config(&fx.path, "", &[]), fast_options()).await;
        s.wait_serving().await;
        (s, store)
    }

    async fn start_on(store: Arc<dyn Store>, config: Config, opts: ServerOptions) -> Server {
        let listeners = Listeners::bind_local().await.expect("bind");
        let (grpc, admin, http) = listeners.addrs().expect("addrs");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run_with(
            config,
            store,
            listeners,
            async move {
                let _ = rx.await;
            },
            opts,
        ));
        Server {
            grpc,
            admin,
            http,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Sends the shutdown signal without waiting for the server to stop.
    pub fn signal_stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// The health status of the QueryService.
    pub async fn health(&self) -> i32 {
        let ch = self.channel().await;
        let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
        h.check(tonic_health::pb::HealthCheckRequest {
            service: shotgun_cache_query_server::SERVICE_NAME.into(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect")
    }

    pub async fn client(&self) -> QueryServiceClient<Channel> {
        QueryServiceClient::new(self.channel().await).max_decoding_message_size(64 << 20)
    }

    /// Waits until gRPC health says SERVING.
    pub async fn wait_serving(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(ch) = Channel::from_shared(self.url())
                .expect("url")
                .connect()
                .await
            {
                let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
                if let Ok(r) = h
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    && r.into_inner().status
                        == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
                {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server never became SERVING"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let r = tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("the server stops within 20 s")
                .expect("the server task does not panic");
            r.expect("the server exits cleanly");
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Request builders.

pub fn s(v: &str) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::StringValue(v.into())),
    }
}

pub fn i(v: i64) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::IntValue(v)),
    }
}

pub fn ent(t: &str, id: i64) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::EntityValue(pb::EntityRef {
            r#type: t.into(),
            id,
            name: None,
        })),
    }
}

pub fn cond(path: &str, op: pb::Operator, values: Vec<pb::Value>) -> pb::Filter {
    pb::Filter {
        node: Some(pb::filter::Node::Condition(pb::Condition {
            path: path.into(),
            operator: op as i32,
            values,
        })),
    }
}

pub fn group(op: pb::LogicalOperator, children: Vec<pb::Filter>) -> pb::Filter {
    pb::Filter {
        node: Some(pb::filter::Node::Group(pb::FilterGroup {
            op: op as i32,
            children,
        })),
    }
}

pub fn find(t: &str, filter: Option<pb::Filter>, fields: &[&str]) -> pb::FindRequest {
    pb::FindRequest {
        entity_type: t.into(),
        filter,
        fields: fields.iter().map(|f| f.to_string()).collect(),
        ..Default::default()
    }
}

pub fn ids(records: &[pb::Record]) -> Vec<i64> {
    records.iter().map(|r| r.id).collect()
}

pub fn text(r: &pb::Record, field: &str) -> Option<String> {
    match r.fields.get(field)?.kind.as_ref()? {
        pb::value::Kind::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}
