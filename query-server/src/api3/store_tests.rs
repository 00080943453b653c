//! The api3 endpoint over a real SQLite store file (written here by the test, as the syncer would),
//! driven through its axum router: answers from the store, refusals when forwarding is off, `info`
//! without a reachable site, credentials, and the gRPC `Summarize` over the same store.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value as Json, json};
use shotgun_cache_core::config::{Api3Config, Config, Secret, SiteConfig};
use shotgun_cache_core::model::{Entity, EntityRef, Value};
use shotgun_cache_core::store::sqlite::SqliteStore;
use shotgun_cache_core::store::{EntityWrite, Store, WriteBatch};
use shotgun_cache_proto::v1 as pb;
use tower::ServiceExt;

use super::read::tests::{ready, schema_and_layouts};
use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    catalog: Catalog,
}

fn shot(id: i64, code: &str, status: &str, seq: i64, cut_in: i64) -> Entity {
    let mut e = Entity::new("Shot", id);
    e.fields.insert("code".into(), Value::Text(code.into()));
    e.fields
        .insert("sg_status_list".into(), Value::Text(status.into()));
    e.fields.insert(
        "sg_sequence".into(),
        Value::Entity(EntityRef::new("Sequence", seq)),
    );
    e.fields.insert("project".into(), Value::Null);
    e.fields.insert("created_at".into(), Value::Null);
    e.fields
        .insert("assets".into(), Value::MultiEntity(Vec::new()));
    e.fields.insert("image".into(), Value::Null);
    e.fields.insert("sg_cut_in".into(), Value::Int(cut_in));
    e.display_name = Some(code.into());
    e
}

fn sequence(id: i64, code: &str) -> Entity {
    let mut e = Entity::new("Sequence", id);
    e.fields.insert("code".into(), Value::Text(code.into()));
    e.display_name = Some(code.into());
    e
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("cache.db")).expect("open the store");
    let (schema, layouts) = schema_and_layouts();
    store.prepare(&schema, &layouts).await.expect("prepare");
    let upsert = |entity: Entity| EntityWrite::Upsert {
        entity,
        floor: 0,
        event_id: 0,
    };
    let batch = WriteBatch {
        writes: vec![
            upsert(sequence(1, "sq01")),
            upsert(sequence(2, "sq02")),
            upsert(shot(1, "sh010", "ip", 1, 10)),
            upsert(shot(2, "sh020", "fin", 1, 20)),
            upsert(shot(3, "sh030", "ip", 2, 30)),
            upsert(shot(4, "sh040", "wtg", 2, 40)),
        ],
        type_states: vec![ready("Shot"), ready("Sequence"), ready("Project")],
        schema: Some(schema),
        ..WriteBatch::default()
    };
    store.commit(batch).await.expect("commit");
    let store: Arc<dyn Store> = Arc::new(store);
    let catalog = Catalog::default();
    catalog
        .refresh(store.as_ref())
        .await
        .expect("catalog refresh");
    Fixture {
        _dir: dir,
        store,
        catalog,
    }
}

fn config(forward: bool) -> Config {
    Config {
        // Nothing listens on port 9 of the loopback: the site is unreachable.
        site: SiteConfig {
            url: "http://127.0.0.1:9".into(),
            script_name: "cache".into(),
            script_key: Secret::default(),
        },
        store: Default::default(),
        auth: Default::default(),
        syncer: Default::default(),
        query_server: Default::default(),
        api3: Api3Config {
            forward,
            syncer_url: String::new(),
            clients: vec![("tool".into(), Secret("k1".into()))],
        },
        types: BTreeMap::new(),
    }
}

async fn call(router: &Router, method: &str, params: Json) -> (String, Json) {
    let body = json!({"method_name": method, "params": [{"script_name": "tool", "script_key": "k1"}, params]});
    call_raw(router, body).await
}

async fn call_raw(router: &Router, body: Json) -> (String, Json) {
    let req = Request::post("/api3/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let resp = router
        .clone()
        .oneshot(req)
        .await
        .expect("the router answers");
    assert_eq!(resp.status(), StatusCode::OK);
    let by = resp
        .headers()
        .get("x-shotgun-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    (by, serde_json::from_slice(&bytes).expect("JSON answer"))
}

#[tokio::test]
async fn reads_are_answered_from_the_store() {
    let f = fixture().await;
    let router =
        router_for(Api3::new(f.store.clone(), f.catalog.clone(), &config(true)).expect("api3"));
    let (by, out) = call(
        &router,
        "read",
        json!({"type": "Shot", "return_fields": ["code", "sg_sequence", "sg_sequence.Sequence.code"],
               "filters": {"logical_operator": "and", "conditions": [{"path": "sg_status_list", "relation": "is_not", "values": ["wtg"]}]},
               "sorts": [{"field_name": "code", "direction": "desc"}],
               "paging": {"entities_per_page": 2, "current_page": 1},
               "return_paging_info_without_counts": true}),
    )
    .await;
    assert_eq!(by, "cache");
    assert_eq!(
        out["results"],
        json!({"entities": [
            {"type": "Shot", "id": 3, "code": "sh030", "sg_sequence": {"type": "Sequence", "id": 2, "name": "sq02"}, "sg_sequence.Sequence.code": "sq02"},
            {"type": "Shot", "id": 2, "code": "sh020", "sg_sequence": {"type": "Sequence", "id": 1, "name": "sq01"}, "sg_sequence.Sequence.code": "sq01"},
        ], "paging_info": {"has_next_page": true}})
    );
    let (_, page2) = call(
        &router,
        "read",
        json!({"type": "Shot", "return_fields": ["code"], "paging": {"entities_per_page": 3, "current_page": 2}, "return_paging_info": true}),
    )
    .await;
    assert_eq!(
        page2["results"],
        json!({"entities": [{"type": "Shot", "id": 4, "code": "sh040"}],
               "paging_info": {"has_next_page": false, "entity_count": 4, "current_page": 2, "entities_per_page": 3, "page_count": 2}})
    );
    let (by, sum) = call(
        &router,
        "summarize",
        json!({"type": "Shot", "summaries": [{"field": "sg_cut_in", "type": "sum"}],
               "grouping": [{"field": "sg_sequence", "type": "exact", "direction": "asc"}]}),
    )
    .await;
    assert_eq!(by, "cache");
    assert_eq!(sum["results"]["summaries"], json!({"sg_cut_in": 100}));
    assert_eq!(
        sum["results"]["groups"][1]["group_value"],
        json!({"type": "Sequence", "id": 2, "name": "sq02", "valid": "valid"})
    );
    assert_eq!(
        sum["results"]["groups"][1]["summaries"],
        json!({"sg_cut_in": 70})
    );
    // Row counts alone are counted in the store (no row fetched), with the same answer.
    let (by, counted) = call(
        &router,
        "summarize",
        json!({"type": "Shot",
               "filters": {"logical_operator": "and", "conditions": [
                   {"path": "sg_cut_in", "relation": "greater_than", "values": [15]}]},
               "summaries": [{"field": "id", "type": "record_count"},
                             {"field": "code", "type": "record_count"}]}),
    )
    .await;
    assert_eq!(by, "cache");
    assert_eq!(counted["results"]["summaries"], json!({"id": 3, "code": 3}));
    assert_eq!(counted["results"]["groups"], json!([]));
}

#[tokio::test]
async fn with_forwarding_off_the_cache_refuses_and_says_why() {
    let f = fixture().await;
    let router =
        router_for(Api3::new(f.store.clone(), f.catalog.clone(), &config(false)).expect("api3"));
    let (by, out) = call(
        &router,
        "read",
        json!({"type": "Asset", "return_fields": ["code"]}),
    )
    .await;
    assert_eq!(by, "refused");
    assert_eq!(out["exception"], json!(true));
    assert_eq!(out["error_code"], json!(103));
    let msg = out["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("API read() cannot be answered from the cache") && msg.contains("Asset"),
        "{msg}"
    );
    assert!(msg.contains("api3.forward = false"), "{msg}");
    let (_, out) = call(
        &router,
        "read",
        json!({"type": "Shot", "return_fields": ["description"]}),
    )
    .await;
    assert!(
        out["message"]
            .as_str()
            .unwrap_or_default()
            .contains("description"),
        "{out}"
    );
    let (by, out) = call(&router, "create", json!({"type": "Shot", "fields": []})).await;
    assert_eq!(by, "refused");
    assert!(
        out["message"]
            .as_str()
            .unwrap_or_default()
            .contains("is a write"),
        "{out}"
    );
    let (_, out) = call(&router, "query_display_name_cache", json!({"text": "abc"})).await;
    assert!(
        out["message"]
            .as_str()
            .unwrap_or_default()
            .contains("answered by the site only"),
        "{out}"
    );
}

#[tokio::test]
async fn an_unreachable_site_is_a_fault_and_info_still_answers() {
    let f = fixture().await;
    let router =
        router_for(Api3::new(f.store.clone(), f.catalog.clone(), &config(true)).expect("api3"));
    let (by, out) = call(&router, "read", json!({"type": "Asset"})).await;
    assert_eq!(by, "refused");
    assert!(
        out["message"]
            .as_str()
            .unwrap_or_default()
            .contains("could not reach the site"),
        "{out}"
    );
    let (by, info) = call_raw(&router, json!({"method_name": "info", "params": []})).await;
    assert_eq!(by, "cache");
    assert_eq!(info["results"]["version"], json!([8, 0, 0]));
    assert_eq!(
        info["results"]["shotgun_cache"]["cached_types"],
        json!(["Project", "Sequence", "Shot"])
    );
}

#[tokio::test]
async fn unknown_credentials_get_the_authentication_fault() {
    let f = fixture().await;
    let router =
        router_for(Api3::new(f.store.clone(), f.catalog.clone(), &config(true)).expect("api3"));
    let body = json!({"method_name": "read", "params": [{"script_name": "tool", "script_key": "nope"}, {"type": "Shot"}]});
    let (by, out) = call_raw(&router, body).await;
    assert_eq!(by, "refused");
    assert_eq!(out["error_code"], json!(102));
}

#[tokio::test]
async fn grpc_summarize_uses_the_same_implementation() {
    let f = fixture().await;
    let hub = crate::watch::JournalHub::new(f.store.clone(), crate::watch::WatchLimits::default());
    let svc = crate::service::QueryService::new(f.store.clone(), f.catalog.clone(), hub);
    let req = pb::SummarizeRequest {
        entity_type: "Shot".into(),
        filter: None,
        summaries: vec![
            pb::SummaryField {
                field: "id".into(),
                r#type: "count".into(),
            },
            pb::SummaryField {
                field: "sg_cut_in".into(),
                r#type: "maximum".into(),
            },
        ],
        grouping: vec![pb::SummaryGrouping {
            field: "sg_status_list".into(),
            r#type: String::new(),
            direction: pb::SortDirection::Desc as i32,
        }],
    };
    let out = summarize_grpc(&svc, &req).await.expect("answerable");
    assert_eq!(
        out.summaries.get("id"),
        Some(&crate::convert::value_to_pb(&Value::Int(4)))
    );
    assert_eq!(
        out.summaries.get("sg_cut_in"),
        Some(&crate::convert::value_to_pb(&Value::Int(40)))
    );
    let names: Vec<&str> = out.groups.iter().map(|g| g.group_name.as_str()).collect();
    assert_eq!(names, ["wtg", "ip", "fin"]);
    // Row counts alone (counted in the store), with a filter.
    let counted = summarize_grpc(
        &svc,
        &pb::SummarizeRequest {
            entity_type: "Shot".into(),
            filter: Some(pb::Filter {
                node: Some(pb::filter::Node::Condition(pb::Condition {
                    path: "sg_status_list".into(),
                    operator: pb::Operator::Is as i32,
                    values: vec![crate::convert::value_to_pb(&Value::Text("ip".into()))],
                })),
            }),
            summaries: vec![pb::SummaryField {
                field: "id".into(),
                r#type: "record_count".into(),
            }],
            grouping: Vec::new(),
        },
    )
    .await
    .expect("answerable");
    assert_eq!(
        counted.summaries.get("id"),
        Some(&crate::convert::value_to_pb(&Value::Int(2)))
    );
    assert!(counted.groups.is_empty());
    assert_eq!(
        out.groups[1].summaries.get("id"),
        Some(&crate::convert::value_to_pb(&Value::Int(2)))
    );

    let bad = pb::SummarizeRequest {
        entity_type: "Shot".into(),
        summaries: vec![pb::SummaryField {
            field: "sg_status_list".into(),
            r#type: "status_percentage".into(),
        }],
        ..Default::default()
    };
    let err = summarize_grpc(&svc, &bad)
        .await
        .expect_err("not answerable");
    assert_eq!(
        tonic::Status::from(err.clone()).code(),
        tonic::Code::InvalidArgument
    );
    assert!(
        err.to_string().contains("status_list_summary_exclude"),
        "{err}"
    );
    let unknown = pb::SummarizeRequest {
        entity_type: "Shot".into(),
        summaries: vec![pb::SummaryField {
            field: "id".into(),
            r#type: "median".into(),
        }],
        ..Default::default()
    };
    assert!(
        summarize_grpc(&svc, &unknown)
            .await
            .expect_err("unknown type")
            .to_string()
            .contains("record_count, count")
    );
    let deep = pb::SummarizeRequest {
        entity_type: "Shot".into(),
        summaries: vec![pb::SummaryField {
            field: "id".into(),
            r#type: "record_count".into(),
        }],
        grouping: vec![
            pb::SummaryGrouping {
                field: "sg_status_list".into(),
                r#type: String::new(),
                direction: 0,
            };
            summarize::MAX_GROUPING_LEVELS + 1
        ],
        ..Default::default()
    };
    let err = summarize_grpc(&svc, &deep)
        .await
        .expect_err("too many levels");
    assert_eq!(
        tonic::Status::from(err.clone()).code(),
        tonic::Code::InvalidArgument
    );
    assert!(err.to_string().contains("17 grouping levels"), "{err}");
}

#[tokio::test]
async fn without_a_syncer_a_write_waits_for_the_event_log() {
    use super::forward::{Expect, Touched, make_visible};
    let f = fixture().await;
    let expect = |fields: Json| Expect::Live {
        fields: fields.as_object().cloned().unwrap_or_default(),
    };
    // The syncer applies the new Shot 200 ms after the write (as the event log would bring it).
    let store = f.store.clone();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let batch = WriteBatch {
            writes: vec![EntityWrite::Upsert {
                entity: shot(9, "sh099", "ip", 1, 90),
                floor: 0,
                event_id: 0,
            }],
            ..WriteBatch::default()
        };
        store.commit(batch).await.expect("commit");
    });
    let touched = [Touched {
        entity_type: "Shot".into(),
        id: 9,
        expect: expect(json!({"code": "sh099", "sg_cut_in": 90})),
    }];
    let started = std::time::Instant::now();
    make_visible(
        None,
        f.store.as_ref(),
        &touched,
        std::time::Duration::from_secs(5),
    )
    .await;
    let waited = started.elapsed();
    writer.await.expect("writer");
    assert!(
        waited >= std::time::Duration::from_millis(150)
            && waited < std::time::Duration::from_secs(4),
        "{waited:?}"
    );
    assert!(f.store.get("Shot", 9).await.expect("get").is_some());

    // A write the cache never shows is answered when the wait runs out.
    let never = [Touched {
        entity_type: "Shot".into(),
        id: 1,
        expect: expect(json!({"code": "renamed"})),
    }];
    let started = std::time::Instant::now();
    make_visible(
        None,
        f.store.as_ref(),
        &never,
        std::time::Duration::from_millis(300),
    )
    .await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(290));
    // A write the cache already shows returns at once.
    let already = [Touched {
        entity_type: "Shot".into(),
        id: 1,
        expect: expect(json!({"code": "sh010"})),
    }];
    let started = std::time::Instant::now();
    make_visible(
        None,
        f.store.as_ref(),
        &already,
        std::time::Duration::from_secs(5),
    )
    .await;
    assert!(started.elapsed() < std::time::Duration::from_millis(200));
}

/// A summary read a page at a time gives what one read of every row gives, whatever the page size.
#[tokio::test]
async fn paged_summaries_equal_one_read() {
    let f = fixture().await;
    let snap = f.catalog.snapshot();
    let schema = snap.schema().expect("schema");
    let request = summarize::parse_wire(
        &json!([{"field": "sg_cut_in", "type": "sum"}, {"field": "id", "type": "record_count"},
                {"field": "sg_cut_in", "type": "maximum"}]),
        Some(
            &json!([{"field": "sg_sequence", "type": "exact", "direction": "desc"},
                     {"field": "sg_status_list", "type": "exact", "direction": "asc"}]),
        ),
    )
    .expect("valid request");
    let lookup = |f: &str| match f {
        "sg_cut_in" | "id" => Some(DataType::Number),
        "sg_sequence" => Some(DataType::Entity),
        "sg_status_list" => Some(DataType::StatusList),
        _ => None,
    };
    let fields = ["sg_cut_in", "sg_sequence", "sg_status_list"]
        .iter()
        .map(|p| shotgun_cache_core::filter::validate_path(schema, "Shot", p).expect("valid path"))
        .collect();
    let query = FindQuery {
        entity_type: "Shot".into(),
        filter: Filter::all(),
        fields,
        sorts: Vec::new(),
        offset: 0,
        limit: None,
        retired_only: false,
    };
    let all = f.store.find(&query).await.expect("find");
    assert_eq!(all.len(), 4);
    let want = summarize::summarize(&request, &all, &lookup).expect("supported");
    for page in [1, 2, 3, 4, 5, 20_000] {
        let got =
            super::summarize_rows_paged(f.store.as_ref(), schema, &query, &request, &lookup, page)
                .await
                .expect("summarized");
        assert_eq!(got, want, "{page} rows a page");
    }
}
