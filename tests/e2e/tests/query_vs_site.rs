//! End to end: the simulator edits, the syncer follows, and a `Find` through the query-server
//! returns what the site itself returns (its own REST `_search`) for a set of realistic pipeline
//! queries — after the import, and again after a burst of random edits.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use shotgun_cache_core::config::Config;
use shotgun_cache_proto::v1 as pb;
use shotgun_cache_proto::v1::query_service_client::QueryServiceClient;
use tonic::transport::Channel;

const TYPES: &[&str] = &[
    "Asset",
    "HumanUser",
    "Project",
    "Sequence",
    "Shot",
    "Step",
    "Task",
    "Version",
];

/// One pipeline query: a REST array filter (used verbatim against the site and converted to the
/// typed gRPC filter), return fields and an optional sort.
struct Query {
    name: &'static str,
    entity_type: &'static str,
    filters: Json,
    fields: &'static [&'static str],
    sort: Option<(&'static str, bool)>,
}

fn queries(seq_id: i64, shot_id: i64) -> Vec<Query> {
    vec![
        Query {
            name: "shots in progress, by code",
            entity_type: "Shot",
            filters: json!([["sg_status_list", "is", "ip"]]),
            fields: &["code", "sg_status_list", "sg_sequence"],
            sort: Some(("code", false)),
        },
        Query {
            name: "shots of one sequence",
            entity_type: "Shot",
            filters: json!([["sg_sequence", "is", {"type": "Sequence", "id": seq_id}]]),
            fields: &["code", "sg_cut_in", "assets"],
            sort: None,
        },
        Query {
            name: "shot tasks waiting or in progress",
            entity_type: "Task",
            filters: json!([
                ["entity", "type_is", "Shot"],
                ["sg_status_list", "in", ["wtg", "ip"]]
            ]),
            fields: &["content", "entity", "step", "sg_status_list", "due_date"],
            sort: Some(("due_date", true)),
        },
        Query {
            name: "tasks of one shot (deep link)",
            entity_type: "Task",
            filters: json!([["entity.Shot.id", "is", shot_id]]),
            fields: &["content", "entity.Shot.code", "task_assignees"],
            sort: None,
        },
        Query {
            name: "versions of a sequence's shots (two hops)",
            entity_type: "Version",
            filters: json!([["entity.Shot.sg_sequence.Sequence.id", "is", seq_id]]),
            fields: &["code", "entity", "sg_task", "user", "created_at"],
            sort: Some(("created_at", true)),
        },
        Query {
            name: "assets by name fragment",
            entity_type: "Asset",
            filters: json!([["code", "contains", "a"]]),
            fields: &["code", "sg_asset_type"],
            sort: Some(("code", true)),
        },
        Query {
            name: "first versions not approved",
            entity_type: "Version",
            filters: json!([
                ["sg_status_list", "is_not", "apr"],
                ["code", "ends_with", "_v001"]
            ]),
            fields: &["code", "sg_status_list"],
            sort: None,
        },
    ]
}

fn to_pb_value(v: &Json) -> pb::Value {
    use pb::value::Kind;
    let kind = match v {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) if n.is_i64() => Kind::IntValue(n.as_i64().expect("checked i64")),
        Json::Number(n) => Kind::DoubleValue(n.as_f64().expect("a number")),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Object(o) if o.contains_key("type") => Kind::EntityValue(pb::EntityRef {
            r#type: o["type"].as_str().expect("type").to_owned(),
            id: o["id"].as_i64().expect("id"),
            name: None,
        }),
        other => Kind::JsonValue(other.to_string()),
    };
    pb::Value { kind: Some(kind) }
}

/// A REST array filter as the typed gRPC filter (an `and` group of conditions).
fn to_pb_filter(filters: &Json) -> pb::Filter {
    let children = filters
        .as_array()
        .expect("array filter")
        .iter()
        .map(|c| {
            let c = c.as_array().expect("triple");
            let op = pb::Operator::from_str_name(&format!(
                "OPERATOR_{}",
                c[1].as_str().expect("op").to_uppercase()
            ))
            .expect("a known operator");
            let values = match &c[2] {
                Json::Array(vs) => vs.iter().map(to_pb_value).collect(),
                v => vec![to_pb_value(v)],
            };
            pb::Filter {
                node: Some(pb::filter::Node::Condition(pb::Condition {
                    path: c[0].as_str().expect("path").to_owned(),
                    operator: op as i32,
                    values,
                })),
            }
        })
        .collect();
    pb::Filter {
        node: Some(pb::filter::Node::Group(pb::FilterGroup {
            op: pb::LogicalOperator::And as i32,
            children,
        })),
    }
}

/// A gRPC value in the site's REST shape (links as `{type, id}` without names).
fn pb_to_json(v: &pb::Value) -> Json {
    use pb::value::Kind;
    let link = |e: &pb::EntityRef| json!({"type": e.r#type, "id": e.id});
    match v.kind.as_ref() {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => json!(b),
        Some(Kind::IntValue(i)) => json!(i),
        Some(Kind::DoubleValue(d)) => json!(d),
        Some(Kind::StringValue(s)) => json!(s),
        Some(Kind::DateValue(d)) => json!(format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)),
        Some(Kind::TimestampValue(t)) => {
            json!(shotgun_cache_core::model::DateTime(t.seconds).to_string())
        }
        Some(Kind::EntityValue(e)) => link(e),
        Some(Kind::EntitiesValue(l)) => Json::Array(l.refs.iter().map(link).collect()),
        Some(Kind::JsonValue(s)) => serde_json::from_str(s).unwrap_or(Json::Null),
    }
}

/// A REST record's field in the same shape (relationship data without names).
fn rest_field(rec: &Json, field: &str) -> Option<Json> {
    let strip = |v: &Json| match v {
        Json::Object(o) if o.contains_key("type") => json!({"type": o["type"], "id": o["id"]}),
        other => other.clone(),
    };
    if let Some(rel) = rec.get("relationships").and_then(|r| r.get(field)) {
        return Some(match rel.get("data") {
            Some(Json::Array(items)) => Json::Array(items.iter().map(strip).collect()),
            Some(v) => strip(v),
            None => Json::Null,
        });
    }
    rec.get("attributes")
        .and_then(|a| a.get(field))
        .map(|v| match v {
            // Empty text reads as null in the cache (Shotgun stores empty text as null).
            Json::String(s) if s.is_empty() => Json::Null,
            other => other.clone(),
        })
}

struct Site {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Site {
    async fn new(sim: &shotgun_sim::RunningSim) -> Site {
        let (script, key) = sim.credentials();
        let http = reqwest::Client::new();
        let base = sim.base_url();
        let t: Json = http
            .post(format!("{base}/api/v1/auth/access_token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", script.as_str()),
                ("client_secret", key.as_str()),
            ])
            .send()
            .await
            .expect("auth")
            .json()
            .await
            .expect("auth json");
        Site {
            http,
            base,
            token: t["access_token"].as_str().expect("token").to_owned(),
        }
    }

    /// `(id, fields)` rows of the site's own answer.
    async fn search(&self, q: &Query) -> Vec<(i64, Vec<Json>)> {
        let mut body =
            json!({"filters": q.filters, "fields": q.fields, "page": {"size": 500, "number": 1}});
        if let Some((f, desc)) = q.sort {
            body["sort"] = json!(if desc { format!("-{f}") } else { f.to_owned() });
        }
        let r: Json = self
            .http
            .post(format!(
                "{}/api/v1/entity/{}/_search",
                self.base, q.entity_type
            ))
            .bearer_auth(&self.token)
            .header("Content-Type", "application/vnd+shotgun.api3_array+json")
            .json(&body)
            .send()
            .await
            .expect("site _search")
            .json()
            .await
            .expect("site json");
        r["data"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no data in {r}", q.name))
            .iter()
            .map(|rec| {
                let id = rec["id"].as_i64().expect("id");
                (
                    id,
                    q.fields
                        .iter()
                        .map(|f| rest_field(rec, f).unwrap_or(Json::Null))
                        .collect(),
                )
            })
            .collect()
    }
}

async fn find(
    c: &mut QueryServiceClient<Channel>,
    q: &Query,
) -> Result<Vec<(i64, Vec<Json>)>, tonic::Status> {
    let req = pb::FindRequest {
        entity_type: q.entity_type.into(),
        filter: Some(to_pb_filter(&q.filters)),
        fields: q.fields.iter().map(|f| f.to_string()).collect(),
        sorts: q
            .sort
            .map(|(f, desc)| {
                vec![pb::Sort {
                    field: f.into(),
                    direction: if desc {
                        pb::SortDirection::Desc
                    } else {
                        pb::SortDirection::Asc
                    } as i32,
                }]
            })
            .unwrap_or_default(),
        limit: 500,
        ..Default::default()
    };
    let r = c.find(req).await?.into_inner();
    Ok(r.records
        .iter()
        .map(|rec| {
            (
                rec.id,
                q.fields
                    .iter()
                    .map(|f| rec.fields.get(*f).map(pb_to_json).unwrap_or(Json::Null))
                    .collect(),
            )
        })
        .collect())
}

/// Compares every query until all agree or `timeout` passes; returns the differences left.
async fn compare_all(
    c: &mut QueryServiceClient<Channel>,
    site: &Site,
    qs: &[Query],
    timeout: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut diffs = Vec::new();
        for q in qs {
            let want = site.search(q).await;
            match find(c, q).await {
                Ok(got) if got == want => {}
                Ok(got) => {
                    let first = got
                        .iter()
                        .zip(&want)
                        .position(|(a, b)| a != b)
                        .unwrap_or(got.len().min(want.len()));
                    diffs.push(format!(
                        "{}: cache {} rows, site {} rows; first difference at row {first}: cache {:?} / site {:?}",
                        q.name,
                        got.len(),
                        want.len(),
                        got.get(first),
                        want.get(first)
                    ));
                }
                Err(e) => diffs.push(format!("{}: {e}", q.name)),
            }
        }
        if diffs.is_empty() || Instant::now() >= deadline {
            return diffs;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_through_the_cache_equals_the_sites_own_search() {
    let scale = if std::env::var("SHOTGUN_CACHE_SLOW_TESTS").is_ok_and(|v| v == "1") {
        5000
    } else {
        600
    };
    let sim = shotgun_sim::Simulator::start(shotgun_sim::SimConfig {
        scale,
        seed: 11,
        ..Default::default()
    })
    .await
    .expect("start the simulator");
    let (script, key) = sim.credentials();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("cache.db");
    let mut text = format!(
        "[site]\nurl = \"{}\"\nscript_name = \"{script}\"\n[store]\nsqlite_path = {:?}\n\
         [syncer]\npoll_interval_ms = 100\npage_size = 200\nreconcile_interval_secs = 3600\n\
         [query_server]\ndrain_secs = 0\n",
        sim.base_url(),
        db.display().to_string()
    );
    for t in TYPES {
        text.push_str(&format!("[types.{t}]\nfields = \"all\"\n"));
    }
    let env: HashMap<String, String> =
        HashMap::from([("SHOTGUN_CACHE_SITE__SCRIPT_KEY".to_owned(), key.clone())]);
    let config = Config::from_toml_str(&text, "e2e.toml", &env).expect("config");

    let (stop_syncer, syncer_stop) = tokio::sync::oneshot::channel::<()>();
    let syncer_listeners = shotgun_cache_syncer::Listeners::bind_local()
        .await
        .expect("bind syncer");
    let mut syncer = tokio::spawn(shotgun_cache_syncer::run(
        config.clone(),
        syncer_listeners,
        async move {
            let _ = syncer_stop.await;
        },
    ));
    let (stop_qs, qs_stop) = tokio::sync::oneshot::channel::<()>();
    let qs_listeners = shotgun_cache_query_server::Listeners::bind_local()
        .await
        .expect("bind query-server");
    let (grpc, _, _) = qs_listeners.addrs().expect("addrs");
    let mut qs = tokio::spawn(shotgun_cache_query_server::run(
        config,
        qs_listeners,
        async move {
            let _ = qs_stop.await;
        },
    ));

    let site = Site::new(&sim).await;
    let ch = loop {
        if let Ok(ch) = Channel::from_shared(format!("http://{grpc}"))
            .expect("url")
            .connect()
            .await
        {
            break ch;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut c = QueryServiceClient::new(ch).max_decoding_message_size(64 << 20);

    // Anchors that exist on this generated site.
    let seqs = site
        .search(&Query {
            name: "sequences",
            entity_type: "Sequence",
            filters: json!([]),
            fields: &["code"],
            sort: None,
        })
        .await;
    let shots = site
        .search(&Query {
            name: "shots",
            entity_type: "Shot",
            filters: json!([]),
            fields: &["code"],
            sort: None,
        })
        .await;
    let (seq_id, shot_id) = (
        seqs.first().expect("a sequence").0,
        shots.first().expect("a shot").0,
    );
    let qs_list = queries(seq_id, shot_id);

    // A service that stops early fails the test at once, saying why, instead of the comparison
    // waiting out its deadline against a cache that will never fill.
    let diffs = tokio::select! {
        d = compare_all(&mut c, &site, &qs_list, Duration::from_secs(120)) => d,
        r = &mut syncer => panic!("the syncer stopped during the import: {r:?}"),
        r = &mut qs => panic!("the query-server stopped during the import: {r:?}"),
    };
    assert!(diffs.is_empty(), "after the import:\n{}", diffs.join("\n"));
    let nonempty = {
        let mut n = 0;
        for q in &qs_list {
            let rows = site.search(q).await.len();
            eprintln!("{}: {rows} rows (cache and site agree)", q.name);
            n += usize::from(rows > 0);
        }
        n
    };
    assert!(
        nonempty >= 5,
        "most pipeline queries match something on the site ({nonempty} of {})",
        qs_list.len()
    );

    // The site edits; the syncer follows; the cache keeps answering as the site does.
    let actor = sim.site().script_actor(&script).expect("script actor");
    let s = sim.site().clone();
    let (ok, _) =
        tokio::task::spawn_blocking(move || shotgun_sim::workload::run_edits(&s, 400, 5, &actor))
            .await
            .expect("edits");
    assert!(ok > 100, "edits applied: {ok}");
    let diffs = tokio::select! {
        d = compare_all(&mut c, &site, &qs_list, Duration::from_secs(90)) => d,
        r = &mut syncer => panic!("the syncer stopped while following the edits: {r:?}"),
        r = &mut qs => panic!("the query-server stopped while following the edits: {r:?}"),
    };
    assert!(diffs.is_empty(), "after {ok} edits:\n{}", diffs.join("\n"));

    let _ = stop_qs.send(());
    let _ = stop_syncer.send(());
    qs.await
        .expect("join query-server")
        .expect("query-server exits cleanly");
    syncer
        .await
        .expect("join syncer")
        .expect("syncer exits cleanly");
    sim.shutdown().await;
}
