//! The `/_sim` control API: every control action of [`Site`](crate::site::Site) (writes, schema edits,
//! script switches, event-log knobs, archiving, truth), plus fault knobs, tokens and workloads, as JSON
//! over HTTP for the Python tests and the demo. No auth, no fault injection. Documented in
//! `tests/simulator/README.md`.

// Handlers return a ready HTTP response as their error value; boxing it would buy nothing.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json as AxJson, Router};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use shotgun_cache_core::model::{DataType, EntityRef};

use crate::faults::{FaultKind, Faults};
use crate::server::AppState;
use crate::site::{Actor, EventKnobs, FieldWrite, MultiMode, SiteError, WriteOp, WriteResult};
use crate::workload::{WorkloadConfig, run_edits};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/_sim/info", get(info))
        .route("/_sim/create", post(create))
        .route("/_sim/update", post(update))
        .route("/_sim/delete", post(delete_entity))
        .route("/_sim/revive", post(revive))
        .route("/_sim/link", post(link))
        .route("/_sim/batch", post(batch))
        .route("/_sim/image", post(image))
        .route("/_sim/truth", get(truth))
        .route("/_sim/faults", get(get_faults).put(put_faults))
        .route("/_sim/faults/fail_next", post(fail_next))
        .route("/_sim/faults/stats", get(fault_stats))
        .route("/_sim/events", get(events))
        .route("/_sim/events/pending", get(pending))
        .route("/_sim/events/knobs", get(get_knobs).put(put_knobs))
        .route("/_sim/events/flush", post(flush))
        .route("/_sim/events/archive", post(archive))
        .route("/_sim/scripts/{name}/events", put(script_events))
        .route("/_sim/tokens/expire", post(expire_tokens))
        .route("/_sim/tokens/ttl", put(token_ttl))
        .route("/_sim/schema/fields", post(add_field))
        .route("/_sim/schema/fields/{entity}/{field}", delete(remove_field))
        .route(
            "/_sim/schema/fields/{entity}/{field}/valid_values",
            put(valid_values),
        )
        .route("/_sim/workload", post(start_workload))
        .route("/_sim/workload/run", post(run_workload))
        .route(
            "/_sim/workload/{id}",
            get(workload_status).delete(stop_workload),
        )
        .with_state(state)
}

fn ok(v: Json) -> Response {
    (StatusCode::OK, AxJson(v)).into_response()
}

fn err(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, AxJson(json!({"error": msg.into()}))).into_response()
}

fn site_err(e: &SiteError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        AxJson(json!({"error": e.to_string(), "code": e.code()})),
    )
        .into_response()
}

/// Who a control write is made as: `"as": "<script name>"` or `"as": {"human_user": id}`; default the
/// first configured script.
fn actor(state: &AppState, v: Option<&Json>) -> Result<Actor, Response> {
    match v {
        None | Some(Json::Null) => Ok(state.site.default_actor()),
        Some(Json::String(s)) => state
            .site
            .script_actor(s)
            .ok_or_else(|| err(StatusCode::BAD_REQUEST, format!("unknown script '{s}'"))),
        Some(Json::Object(o)) => match o.get("human_user").and_then(Json::as_i64) {
            Some(id) => state
                .site
                .human_actor(id)
                .ok_or_else(|| err(StatusCode::BAD_REQUEST, format!("unknown HumanUser {id}"))),
            None => Err(err(
                StatusCode::BAD_REQUEST,
                "'as' must be a script name or {\"human_user\": id}",
            )),
        },
        Some(other) => Err(err(
            StatusCode::BAD_REQUEST,
            format!("invalid 'as': {other}"),
        )),
    }
}

fn str_field<'a>(b: &'a Json, k: &str) -> Result<&'a str, Response> {
    b.get(k)
        .and_then(Json::as_str)
        .ok_or_else(|| err(StatusCode::BAD_REQUEST, format!("missing string '{k}'")))
}

fn int_field(b: &Json, k: &str) -> Result<i64, Response> {
    b.get(k)
        .and_then(Json::as_i64)
        .ok_or_else(|| err(StatusCode::BAD_REQUEST, format!("missing integer '{k}'")))
}

fn fields_of(b: &Json) -> serde_json::Map<String, Json> {
    b.get("fields")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default()
}

fn field_writes(b: &Json) -> Vec<FieldWrite> {
    let modes = b.get("modes").and_then(Json::as_object);
    fields_of(b)
        .into_iter()
        .map(|(k, v)| {
            let mode = modes
                .and_then(|m| m.get(&k))
                .and_then(|m| serde_json::from_value::<MultiMode>(m.clone()).ok())
                .unwrap_or_default();
            FieldWrite {
                field: k,
                value: v,
                mode,
            }
        })
        .collect()
}

async fn info(State(state): State<AppState>) -> Response {
    let counts: serde_json::Map<String, Json> = state
        .site
        .counts()
        .into_iter()
        .map(|(k, (live, retired))| (k, json!({"live": live, "retired": retired})))
        .collect();
    ok(json!({
        "scripts": state.site.scripts(),
        "counts": counts,
        "last_event_id": state.site.last_event_id(),
        "token_ttl_secs": state.auth.ttl().as_secs(),
    }))
}

async fn create(State(state): State<AppState>, AxJson(b): AxJson<Json>) -> Response {
    let a = match actor(&state, b.get("as")) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let t = match str_field(&b, "entity_type") {
        Ok(t) => t.to_owned(),
        Err(r) => return r,
    };
    match state.site.create(&a, &t, &fields_of(&b)) {
        Ok(id) => ok(json!({"type": t, "id": id})),
        Err(e) => site_err(&e),
    }
}

async fn update(State(state): State<AppState>, AxJson(b): AxJson<Json>) -> Response {
    let a = match actor(&state, b.get("as")) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (t, id) = match (str_field(&b, "entity_type"), int_field(&b, "id")) {
        (Ok(t), Ok(id)) => (t.to_owned(), id),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    match state.site.update_with(&a, &t, id, field_writes(&b)) {
        Ok(changed) => ok(json!({"type": t, "id": id, "changed": changed})),
        Err(e) => site_err(&e),
    }
}

async fn delete_entity(State(state): State<AppState>, AxJson(b): AxJson<Json>) -> Response {
    let a = match actor(&state, b.get("as")) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (t, id) = match (str_field(&b, "entity_type"), int_field(&b, "id")) {
        (Ok(t), Ok(id)) => (t.to_owned(), id),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    match state.site.delete(&a, &t, id) {
        Ok(retired) => ok(json!({"retired": retired})),
        Err(e) => site_err(&e),
    }
}

async fn revive(State(state): State<AppState>, AxJson(b): AxJson<Json>) -> Response {
    let a = match actor(&state, b.get("as")) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (t, id) = match (str_field(&b, "entity_type"), int_field(&b, "id")) {
        (Ok(t), Ok(id)) => (t.to_owned(), id),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    match state.site.revive(&a, &t, id) {
        Ok(revived) => ok(json!({"revived": revived})),
        Err(e) => site_err(&e),
    }
}

fn links(v: Option<&Json>) -> Result<Vec<EntityRef>, Response> {
    match v {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Array(a)) => a
            .iter()
            .map(|x| {
                EntityRef::from_json(x).map_err(|e| err(StatusCode::BAD_REQUEST, e.to_string()))
            })
            .collect(),
        Some(x) => EntityRef::from_json(x)
            .map(|r| vec![r])
            .map_err(|e| err(StatusCode::BAD_REQUEST, e.to_string())),
    }
}

async fn link(State(state): State<AppState>, AxJson(b): AxJson<Json>) -> Response {
    let a = match actor(&state, b.get("as")) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (t, id, f) = match (
        str_field(&b, "entity_type"),
        int_field(&b, "id"),
        str_field(&b, "field"),
    ) {
        (Ok(t), Ok(id), Ok(f)) => (t.to_owned(), id, f.to_owned()),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    let (add, remove) = match (links(b.get("add")), links(b.get("remove"))) {
        (Ok(a), Ok(r)) => (a, r),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let to_json = |l: &[EntityRef]| {
        Json::Array(
            l.iter()
                .map(|r| json!({"type": r.entity_type, "id": r.id}))
                .collect(),
        )
    };
    let mut writes = Vec::new();
    if !add.is_empty() {
        writes.push(FieldWrite {
            field: f.clone(),
            value: to_json(&add),
            mode: MultiMode::Add,
        });
    }
    if !remove.is_empty() {
        writes.push(FieldWrite {
            field: f.clone(),
            value: to_json(&remove),
            mode: MultiMode::Remove,
        });
    }
    // Add and remove run as one transaction.
    let ops = writes
        .into_iter()
        .map(|w| WriteOp::Update {
            entity_type: t.clone(),
            id,
            fields: vec![w],
        })
        .collect();
    match state.site.batch(&a, ops) {
        Ok(_) => ok(json!({"type": t, "id": id})),
        Err(e) => site_err(&e),
    }
}

async fn batch(State(state): State<AppState>, AxJson(b): AxJson<Json>) -> Response {
    let a = match actor(&state, b.get("as")) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Some(list) = b.get("ops").and_then(Json::as_array) else {
        return err(StatusCode::BAD_REQUEST, "missing 'ops' array");
    };
    let mut ops = Vec::new();
    for o in list {
        let t = match str_field(o, "entity_type") {
            Ok(t) => t.to_owned(),
            Err(r) => return r,
        };
        let op = match (
            o.get("op").and_then(Json::as_str),
            o.get("id").and_then(Json::as_i64),
        ) {
            (Some("create"), _) => WriteOp::Create {
                entity_type: t,
                fields: field_writes(o),
            },
            (Some("update"), Some(id)) => WriteOp::Update {
                entity_type: t,
                id,
                fields: field_writes(o),
            },
            (Some("delete"), Some(id)) => WriteOp::Delete { entity_type: t, id },
            (Some("revive"), Some(id)) => WriteOp::Revive { entity_type: t, id },
            _ => return err(StatusCode::BAD_REQUEST, format!("invalid op {o}")),
        };
        ops.push(op);
    }
    match state.site.batch(&a, ops) {
        Ok(results) => ok(json!({"results": results.iter().map(|r| match r {
            WriteResult::Created { entity_type, id } => json!({"op": "create", "type": entity_type, "id": id}),
            WriteResult::Updated { entity_type, id, changed } => json!({"op": "update", "type": entity_type, "id": id, "changed": changed}),
            WriteResult::Deleted { entity_type, id, retired } => json!({"op": "delete", "type": entity_type, "id": id, "retired": retired}),
            WriteResult::Revived { entity_type, id, revived } => json!({"op": "revive", "type": entity_type, "id": id, "revived": revived}),
        }).collect::<Vec<_>>()})),
        Err(e) => site_err(&e),
    }
}

async fn image(State(state): State<AppState>, AxJson(b): AxJson<Json>) -> Response {
    let a = match actor(&state, b.get("as")) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (t, id) = match (str_field(&b, "entity_type"), int_field(&b, "id")) {
        (Ok(t), Ok(id)) => (t.to_owned(), id),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let f = b
        .get("field")
        .and_then(Json::as_str)
        .unwrap_or("image")
        .to_owned();
    if b.get("finish_only").and_then(Json::as_bool) == Some(true) {
        return match state.site.finish_image(&a, &t, id, &f) {
            Ok(()) => ok(json!({"finished": true})),
            Err(e) => site_err(&e),
        };
    }
    let finish = b.get("finish").and_then(Json::as_bool).unwrap_or(true);
    match state.site.set_image(&a, &t, id, &f, finish) {
        Ok(att) => ok(json!({"attachment_id": att})),
        Err(e) => site_err(&e),
    }
}

async fn truth(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let types: Option<Vec<String>> = q
        .get("types")
        .map(|s| s.split(',').map(str::to_owned).collect());
    let site = state.site.clone();
    match tokio::task::spawn_blocking(move || {
        site.truth(types.as_deref())
            .iter()
            .map(|r| r.to_json())
            .collect::<Vec<_>>()
    })
    .await
    {
        Ok(rows) => ok(json!({"entities": rows})),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn get_faults(State(state): State<AppState>) -> Response {
    ok(serde_json::to_value(state.faults.get()).unwrap_or(Json::Null))
}

async fn put_faults(State(state): State<AppState>, AxJson(f): AxJson<Faults>) -> Response {
    state.faults.set(f.clone());
    ok(serde_json::to_value(f).unwrap_or(Json::Null))
}

#[derive(Deserialize)]
struct FailNext {
    kinds: Vec<FaultKind>,
}

async fn fail_next(State(state): State<AppState>, AxJson(b): AxJson<FailNext>) -> Response {
    state.faults.fail_next(&b.kinds);
    ok(json!({"queued": b.kinds.len()}))
}

async fn fault_stats(State(state): State<AppState>) -> Response {
    ok(serde_json::to_value(state.faults.stats()).unwrap_or(Json::Null))
}

async fn events(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let after = q.get("after").and_then(|s| s.parse().ok()).unwrap_or(0);
    let rows: Vec<Json> = state
        .site
        .event_log(after)
        .iter()
        .map(|r| r.to_json())
        .collect();
    ok(json!({"events": rows, "last_event_id": state.site.last_event_id()}))
}

async fn pending(State(state): State<AppState>) -> Response {
    ok(json!({"pending": state.site.pending_event_ids()}))
}

async fn get_knobs(State(state): State<AppState>) -> Response {
    ok(serde_json::to_value(state.site.event_knobs()).unwrap_or(Json::Null))
}

async fn put_knobs(State(state): State<AppState>, AxJson(k): AxJson<EventKnobs>) -> Response {
    state.site.set_event_knobs(k.clone());
    ok(serde_json::to_value(k).unwrap_or(Json::Null))
}

async fn flush(State(state): State<AppState>) -> Response {
    state.site.flush_pending_events();
    ok(json!({"flushed": true}))
}

async fn archive(State(state): State<AppState>, AxJson(b): AxJson<Json>) -> Response {
    match int_field(&b, "before") {
        Ok(before) => ok(json!({"archived": state.site.archive_events_before(before)})),
        Err(r) => r,
    }
}

async fn script_events(
    State(state): State<AppState>,
    Path(name): Path<String>,
    AxJson(b): AxJson<Json>,
) -> Response {
    let Some(on) = b.get("enabled").and_then(Json::as_bool) else {
        return err(StatusCode::BAD_REQUEST, "missing boolean 'enabled'");
    };
    if state.site.set_event_generation(&name, on) {
        ok(json!({"script": name, "enabled": on}))
    } else {
        err(StatusCode::NOT_FOUND, format!("unknown script '{name}'"))
    }
}

async fn expire_tokens(State(state): State<AppState>) -> Response {
    state.auth.expire_all();
    ok(json!({"expired": true}))
}

async fn token_ttl(State(state): State<AppState>, AxJson(b): AxJson<Json>) -> Response {
    match int_field(&b, "secs") {
        Ok(s) if s >= 0 => {
            state.auth.set_ttl(Duration::from_secs(s as u64));
            ok(json!({"token_ttl_secs": s}))
        }
        Ok(_) => err(StatusCode::BAD_REQUEST, "secs must be >= 0"),
        Err(r) => r,
    }
}

async fn add_field(State(state): State<AppState>, AxJson(b): AxJson<Json>) -> Response {
    let a = match actor(&state, b.get("as")) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (t, f, dt) = match (
        str_field(&b, "entity_type"),
        str_field(&b, "field"),
        str_field(&b, "data_type"),
    ) {
        (Ok(t), Ok(f), Ok(dt)) => (t.to_owned(), f.to_owned(), DataType::parse(dt)),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    let name = b
        .get("name")
        .and_then(Json::as_str)
        .unwrap_or(&f)
        .to_owned();
    let props = b.get("properties").cloned().unwrap_or_else(|| json!({}));
    match state.site.schema_add_field(&a, &t, &f, dt, &name, &props) {
        Ok(()) => ok(json!({"entity_type": t, "field": f})),
        Err(e) => site_err(&e),
    }
}

async fn remove_field(
    State(state): State<AppState>,
    Path((t, f)): Path<(String, String)>,
) -> Response {
    let a = state.site.default_actor();
    match state.site.schema_remove_field(&a, &t, &f) {
        Ok(()) => ok(json!({"entity_type": t, "field": f, "removed": true})),
        Err(e) => site_err(&e),
    }
}

async fn valid_values(
    State(state): State<AppState>,
    Path((t, f)): Path<(String, String)>,
    AxJson(b): AxJson<Json>,
) -> Response {
    let a = state.site.default_actor();
    let values: Vec<String> = b
        .get("values")
        .and_then(Json::as_array)
        .map(|v| {
            v.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    match state.site.schema_set_valid_values(&a, &t, &f, &values) {
        Ok(()) => ok(json!({"entity_type": t, "field": f, "valid_values": values})),
        Err(e) => site_err(&e),
    }
}

async fn start_workload(
    State(state): State<AppState>,
    AxJson(cfg): AxJson<WorkloadConfig>,
) -> Response {
    let id = state.workloads.start(state.site.clone(), cfg);
    ok(json!({"id": id}))
}

async fn run_workload(State(state): State<AppState>, AxJson(b): AxJson<Json>) -> Response {
    let n = b.get("count").and_then(Json::as_u64).unwrap_or(100);
    let seed = b.get("seed").and_then(Json::as_u64).unwrap_or(3);
    let a = match actor(&state, b.get("as")) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let site = state.site.clone();
    match tokio::task::spawn_blocking(move || run_edits(&site, n, seed, &a)).await {
        Ok((done, errors)) => ok(json!({"done": done, "errors": errors})),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn workload_status(State(state): State<AppState>, Path(id): Path<u64>) -> Response {
    match state.workloads.report(id) {
        Some(r) => ok(serde_json::to_value(r).unwrap_or(Json::Null)),
        None => err(StatusCode::NOT_FOUND, format!("no workload {id}")),
    }
}

async fn stop_workload(State(state): State<AppState>, Path(id): Path<u64>) -> Response {
    if state.workloads.stop(id) {
        ok(json!({"stopping": id}))
    } else {
        err(StatusCode::NOT_FOUND, format!("no workload {id}"))
    }
}
