//! The api3 JSON-RPC endpoint of the simulated site (`POST /api3/json`, protocol §2), over [`Site`]:
//! `info`, `read`, `summarize`, `schema_read`, `schema_entity_read`, `schema_field_read`, `create`,
//! `update`, `delete`, `revive`, `batch` and `query_display_name_cache` (`text_search`).
//!
//! Faults are answered as the real site does: HTTP 200 with `{"exception": true, "message",
//! "error_code"}` (102 for credentials, the [`SiteError`] code otherwise), so `shotgun_api3` raises
//! the same exceptions with the same messages. The routes sit behind the fault injector (latency,
//! errors) like the REST routes.
//!
//! Shapes follow the real server where sources say so, and the query-server's api3 endpoint (which
//! must answer identically from the cache) elsewhere: records carry `type` and `id`, links
//! `{type, id, name}`, datetimes `YYYY-MM-DDTHH:MM:SSZ`; `paging_info` has `has_next_page`, plus
//! `entity_count`, `current_page`, `entities_per_page` and `page_count` when `return_paging_info` asks
//! for counts. `summarize` uses the shared implementation in `shotgun_cache_core::summarize`; summary
//! types and groupings it does not implement are answered with a fault saying they are not simulated.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value as Json, json};
use shotgun_cache_core::filter::validate_path;
use shotgun_cache_core::model::DataType;
use shotgun_cache_core::query::{Direction, Record};
use shotgun_cache_core::summarize::{self, SummarizeError};

use crate::server::AppState;
use crate::site::{
    Actor, FieldWrite, Fields, MultiMode, Query, QueryFilter, Row, Site, SiteError, SortKey,
    WriteOp, WriteResult,
};

/// The version the simulated site reports (a current hosted site).
const VERSION: [i64; 3] = [8, 89, 0];

/// The api3 routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api3/json", post(handle))
        .with_state(state)
}

/// A fault: `(error_code, message)`.
struct Fault(i64, String);

impl From<SiteError> for Fault {
    fn from(e: SiteError) -> Fault {
        Fault(i64::from(e.code()), e.to_string())
    }
}

fn bad(msg: impl Into<String>) -> Fault {
    Fault(103, msg.into())
}

fn reply(v: Json) -> Response {
    let mut r = v.to_string().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

async fn handle(State(state): State<AppState>, body: Bytes) -> Response {
    let answer = match serde_json::from_slice::<Json>(&body) {
        Ok(call) => {
            let site = state.site.clone();
            // Site calls take the state lock and may scan a type: run them off the async runtime.
            match tokio::task::spawn_blocking(move || dispatch(&site, &call)).await {
                Ok(a) => a,
                Err(e) => Err(Fault(103, format!("internal error: {e}"))),
            }
        }
        Err(e) => Err(bad(format!("request body is not valid JSON: {e}"))),
    };
    match answer {
        Ok(v) => reply(json!({ "results": v })),
        Err(Fault(code, message)) => {
            reply(json!({"exception": true, "message": message, "error_code": code}))
        }
    }
}

fn dispatch(site: &Arc<Site>, call: &Json) -> Result<Json, Fault> {
    let method = call
        .get("method_name")
        .and_then(Json::as_str)
        .ok_or_else(|| bad("request has no method_name"))?;
    let params = call
        .get("params")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    if method == "info" {
        return Ok(info());
    }
    let actor = authenticate(site, params.first())?;
    let p = params.get(1).cloned().unwrap_or(Json::Null);
    match method {
        "read" => read(site, &p),
        "summarize" => summarize_call(site, &p),
        "schema_read" => Ok(site.with_schema(|s| s.to_schema_read_json(None))),
        "schema_entity_read" => Ok(site.with_schema(|s| {
            Json::Object(
                s.types
                    .iter()
                    .map(|(n, t)| (n.clone(), t.raw.clone()))
                    .collect(),
            )
        })),
        "schema_field_read" => schema_field_read(site, &p),
        "create" => create(site, &actor, &p),
        "update" => update(site, &actor, &p),
        "delete" => Ok(Json::Bool(site.delete(
            &actor,
            type_param(&p)?,
            id_param(&p)?,
        )?)),
        "revive" => Ok(Json::Bool(site.revive(
            &actor,
            type_param(&p)?,
            id_param(&p)?,
        )?)),
        "batch" => batch(site, &actor, &p),
        "query_display_name_cache" => text_search(site, &p),
        other => Err(bad(format!("Unknown method: {other}"))),
    }
}

fn info() -> Json {
    json!({
        "version": VERSION,
        "full_version": [VERSION[0], VERSION[1], VERSION[2], 0],
        "user_authentication_method": "default",
        "api_max_entities_per_page": 500,
        "s3_uploads_enabled": false,
        "shotgun_sim": true,
    })
}

fn authenticate(site: &Site, auth: Option<&Json>) -> Result<Actor, Fault> {
    let s = |k: &str| auth.and_then(|a| a.get(k)).and_then(Json::as_str);
    match (s("script_name"), s("script_key")) {
        (Some(name), Some(key)) => site
            .authenticate_script(name, key)
            .map_err(|e| Fault(102, e.to_string())),
        _ => Err(Fault(
            102,
            "Authentication failed: the simulated site accepts script credentials only.".into(),
        )),
    }
}

fn type_param(p: &Json) -> Result<&str, Fault> {
    p.get("type")
        .and_then(Json::as_str)
        .ok_or_else(|| bad("Request Parameters invalid: 'type' is required."))
}

fn id_param(p: &Json) -> Result<i64, Fault> {
    p.get("id")
        .and_then(Json::as_i64)
        .ok_or_else(|| bad("Request Parameters invalid: 'id' is required."))
}

fn filter_param(p: &Json) -> QueryFilter {
    match p.get("filters") {
        None | Some(Json::Null) => QueryFilter::All,
        Some(f) => QueryFilter::Wire(f.clone()),
    }
}

/// `{"type", "id", <field>: <value>...}` for one row.
fn row_json(r: &Row) -> Json {
    let mut m = Map::new();
    m.insert("type".into(), Json::String(r.entity_type.clone()));
    m.insert("id".into(), Json::from(r.id));
    for f in &r.fields {
        m.insert(f.name.clone(), f.value.to_json());
    }
    Json::Object(m)
}

fn read(site: &Site, p: &Json) -> Result<Json, Fault> {
    let entity_type = type_param(p)?;
    let fields: Vec<String> = match p.get("return_fields") {
        None | Some(Json::Null) => vec!["id".into()],
        Some(Json::Array(a)) => a
            .iter()
            .filter_map(|f| f.as_str().map(str::to_owned))
            .collect(),
        Some(_) => {
            return Err(bad(
                "Request Parameters invalid: 'return_fields' must be a list.",
            ));
        }
    };
    let mut sorts = Vec::new();
    if let Some(Json::Array(a)) = p.get("sorts") {
        for s in a {
            let Some(field) = s.get("field_name").and_then(Json::as_str) else {
                continue;
            };
            let direction = if s.get("direction").and_then(Json::as_str) == Some("desc") {
                Direction::Desc
            } else {
                Direction::Asc
            };
            sorts.push(SortKey {
                field: field.to_owned(),
                direction,
            });
        }
    }
    let paging = p.get("paging").cloned().unwrap_or(Json::Null);
    let per_page = paging
        .get("entities_per_page")
        .and_then(Json::as_u64)
        .unwrap_or(500)
        .clamp(1, 5000);
    let page = paging
        .get("current_page")
        .and_then(Json::as_u64)
        .unwrap_or(1)
        .max(1);
    let retired_only = match p
        .get("return_only")
        .and_then(Json::as_str)
        .unwrap_or("active")
    {
        "active" => false,
        "retired" => true,
        other => {
            return Err(bad(format!(
                "Request Parameters invalid: return_only '{other}' must be active or retired."
            )));
        }
    };
    let filter = filter_param(p);
    let include_archived_projects = p.get("include_archived_projects") != Some(&Json::Bool(false));
    let q = Query {
        entity_type: entity_type.to_owned(),
        filter: filter.clone(),
        fields: Fields::Only(fields),
        sorts,
        offset: usize::try_from((page - 1) * per_page).unwrap_or(usize::MAX),
        limit: usize::try_from(per_page + 1).unwrap_or(usize::MAX),
        retired_only,
        include_archived_projects,
    };
    let mut rows = site.find(&q)?;
    let has_next_page = rows.len() as u64 > per_page;
    rows.truncate(usize::try_from(per_page).unwrap_or(usize::MAX));
    let mut paging_info = json!({ "has_next_page": has_next_page });
    if p.get("return_paging_info").and_then(Json::as_bool) == Some(true) {
        let mut count_q = q.clone();
        count_q.fields = Fields::Only(Vec::new());
        count_q.offset = 0;
        count_q.limit = usize::MAX;
        let n = site.find(&count_q)?.len() as u64;
        paging_info["entity_count"] = json!(n);
        paging_info["current_page"] = json!(page);
        paging_info["entities_per_page"] = json!(per_page);
        paging_info["page_count"] = json!(n.div_ceil(per_page));
    }
    Ok(
        json!({ "entities": rows.iter().map(row_json).collect::<Vec<_>>(), "paging_info": paging_info }),
    )
}

fn summarize_call(site: &Site, p: &Json) -> Result<Json, Fault> {
    let entity_type = type_param(p)?;
    let request =
        summarize::parse_wire(p.get("summaries").unwrap_or(&Json::Null), p.get("grouping"))
            .map_err(|e| bad(format!("Request Parameters invalid. {e}")))?;
    let schema = site.schema();
    if schema.entity(entity_type).is_none() {
        return Err(SiteError::UnknownEntityType(entity_type.to_owned()).into());
    }
    let mut data_types: Vec<(String, DataType)> = Vec::new();
    for f in request
        .summaries
        .iter()
        .map(|s| &s.field)
        .chain(request.grouping.iter().map(|g| &g.field))
    {
        if data_types.iter().any(|(k, _)| k == f) {
            continue;
        }
        let dt = if f == "id" {
            DataType::Number
        } else {
            validate_path(&schema, entity_type, f)
                .map_err(|_| SiteError::UnknownField {
                    verb: "summarize",
                    entity_type: entity_type.to_owned(),
                    field: f.clone(),
                })?
                .leaf_type
        };
        data_types.push((f.clone(), dt));
    }
    let q = Query {
        entity_type: entity_type.to_owned(),
        filter: filter_param(p),
        fields: Fields::Only(summarize::needed_fields(&request)),
        sorts: Vec::new(),
        offset: 0,
        limit: usize::MAX,
        retired_only: false,
        include_archived_projects: p.get("include_archived_projects") != Some(&Json::Bool(false)),
    };
    let records: Vec<Record> = site
        .find(&q)?
        .into_iter()
        .map(|r| Record {
            entity_type: r.entity_type,
            id: r.id,
            fields: r.fields.into_iter().map(|f| (f.name, f.value)).collect(),
        })
        .collect();
    let lookup = |f: &str| data_types.iter().find(|(k, _)| k == f).map(|(_, t)| *t);
    match summarize::summarize(&request, &records, &lookup) {
        Ok(r) => Ok(r.to_json()),
        Err(SummarizeError::Unsupported { what, reason }) => Err(bad(format!(
            "API summarize() {what} is not simulated: {reason}"
        ))),
        Err(SummarizeError::Invalid(m)) => Err(bad(format!("Request Parameters invalid. {m}"))),
    }
}

fn schema_field_read(site: &Site, p: &Json) -> Result<Json, Fault> {
    let entity_type = type_param(p)?;
    site.with_schema(|s| {
        let t = s
            .entity(entity_type)
            .ok_or_else(|| Fault::from(SiteError::UnknownEntityType(entity_type.to_owned())))?;
        match p.get("field_name").and_then(Json::as_str) {
            Some(f) => {
                let fs = t.field(f).ok_or_else(|| {
                    Fault::from(SiteError::UnknownSchemaField {
                        entity_type: entity_type.to_owned(),
                        field: f.to_owned(),
                    })
                })?;
                Ok(json!({ f: fs.raw }))
            }
            None => Ok(Json::Object(
                t.fields
                    .iter()
                    .map(|(f, s)| (f.clone(), s.raw.clone()))
                    .collect(),
            )),
        }
    })
}

/// `[{"field_name", "value", "multi_entity_update_mode"?}]` as field writes.
fn field_writes(p: &Json) -> Result<Vec<FieldWrite>, Fault> {
    let list = match p.get("fields") {
        None | Some(Json::Null) => return Ok(Vec::new()),
        Some(Json::Array(a)) => a,
        Some(_) => return Err(bad("Request Parameters invalid: 'fields' must be a list.")),
    };
    list.iter()
        .map(|f| {
            let field = f
                .get("field_name")
                .and_then(Json::as_str)
                .ok_or_else(|| bad("Request Parameters invalid: a field has no field_name."))?;
            let mode = match f.get("multi_entity_update_mode").and_then(Json::as_str) {
                None | Some("set") => MultiMode::Set,
                Some("add") => MultiMode::Add,
                Some("remove") => MultiMode::Remove,
                Some(other) => {
                    return Err(bad(format!(
                        "Request Parameters invalid: multi_entity_update_mode '{other}'."
                    )));
                }
            };
            Ok(FieldWrite {
                field: field.to_owned(),
                value: f.get("value").cloned().unwrap_or(Json::Null),
                mode,
            })
        })
        .collect()
}

/// The record a write answers with: `type`, `id`, the written fields and the requested return fields.
fn written_record(
    site: &Site,
    entity_type: &str,
    id: i64,
    writes: &[FieldWrite],
    return_fields: Option<&Json>,
) -> Result<Json, Fault> {
    let mut names: Vec<String> = writes.iter().map(|w| w.field.clone()).collect();
    if let Some(Json::Array(a)) = return_fields {
        names.extend(a.iter().filter_map(|f| f.as_str().map(str::to_owned)));
    }
    Ok(row_json(&site.read_one(
        entity_type,
        id,
        &Fields::Only(names),
        false,
    )?))
}

fn create(site: &Site, actor: &Actor, p: &Json) -> Result<Json, Fault> {
    let entity_type = type_param(p)?;
    let writes = field_writes(p)?;
    let map: Map<String, Json> = writes
        .iter()
        .map(|w| (w.field.clone(), w.value.clone()))
        .collect();
    let id = site.create(actor, entity_type, &map)?;
    written_record(site, entity_type, id, &writes, p.get("return_fields"))
}

fn update(site: &Site, actor: &Actor, p: &Json) -> Result<Json, Fault> {
    let entity_type = type_param(p)?;
    let id = id_param(p)?;
    let writes = field_writes(p)?;
    site.update_with(actor, entity_type, id, writes.clone())?;
    written_record(site, entity_type, id, &writes, None)
}

fn batch(site: &Site, actor: &Actor, p: &Json) -> Result<Json, Fault> {
    let list = p
        .as_array()
        .ok_or_else(|| bad("Request Parameters invalid: batch takes a list of requests."))?;
    let mut ops = Vec::new();
    let mut writes_of = Vec::new();
    for req in list {
        let kind = req
            .get("request_type")
            .and_then(Json::as_str)
            .unwrap_or_default();
        let entity_type = type_param(req)?.to_owned();
        let writes = field_writes(req)?;
        ops.push(match kind {
            "create" => WriteOp::Create {
                entity_type,
                fields: writes.clone(),
            },
            "update" => WriteOp::Update {
                entity_type,
                id: id_param(req)?,
                fields: writes.clone(),
            },
            "delete" => WriteOp::Delete {
                entity_type,
                id: id_param(req)?,
            },
            "revive" => WriteOp::Revive {
                entity_type,
                id: id_param(req)?,
            },
            other => {
                return Err(bad(format!(
                    "Request Parameters invalid: request_type '{other}' must be create, update, delete or revive."
                )));
            }
        });
        writes_of.push((writes, req.get("return_fields").cloned()));
    }
    let results = site.batch(actor, ops)?;
    results
        .iter()
        .zip(writes_of)
        .map(|(r, (writes, return_fields))| match r {
            WriteResult::Created { entity_type, id } => {
                written_record(site, entity_type, *id, &writes, return_fields.as_ref())
            }
            WriteResult::Updated {
                entity_type, id, ..
            } => written_record(site, entity_type, *id, &writes, None),
            WriteResult::Deleted { retired, .. } => Ok(Json::Bool(*retired)),
            WriteResult::Revived { revived, .. } => Ok(Json::Bool(*revived)),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Json::Array)
}

/// `text_search` (`query_display_name_cache`): rows of the given types (each with its own filter)
/// whose display name contains every word of the text, case-insensitively; shortest names first.
fn text_search(site: &Site, p: &Json) -> Result<Json, Fault> {
    let text = p.get("text").and_then(Json::as_str).unwrap_or_default();
    let terms: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    if text.trim().chars().count() < 3 {
        return Err(bad(
            "text_search: the text must be at least 3 characters long.",
        ));
    }
    let max = p
        .get("max_results")
        .and_then(Json::as_u64)
        .map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
    let types = p
        .get("entity_types")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    let schema = site.schema();
    let mut matches: Vec<(usize, String, i64, Json)> = Vec::new();
    for (entity_type, filter) in &types {
        let t = schema
            .entity(entity_type)
            .ok_or_else(|| Fault::from(SiteError::UnknownEntityType(entity_type.clone())))?;
        let Some(display) = t.display_field() else {
            continue;
        };
        let mut fields = vec![display.to_owned()];
        let has = |f: &str| t.field(f).is_some();
        for f in ["project", "sg_status_list"] {
            if has(f) {
                fields.push(f.to_owned());
            }
        }
        let q = Query {
            entity_type: entity_type.clone(),
            filter: if filter.is_null() {
                QueryFilter::All
            } else {
                QueryFilter::Wire(filter.clone())
            },
            fields: Fields::Only(fields),
            sorts: Vec::new(),
            offset: 0,
            limit: usize::MAX,
            retired_only: false,
            include_archived_projects: true,
        };
        for row in site.find(&q)? {
            let name = match row.get(display) {
                Some(shotgun_cache_core::model::Value::Text(s)) => s.clone(),
                _ => continue,
            };
            let lower = name.to_lowercase();
            if !terms.iter().all(|w| lower.contains(w.as_str())) {
                continue;
            }
            let project_id = match row.get("project") {
                Some(shotgun_cache_core::model::Value::Entity(r)) => json!(r.id),
                _ => Json::Null,
            };
            let status = row
                .get("sg_status_list")
                .map_or(Json::Null, |v| v.to_json());
            let m = json!({"type": row.entity_type, "id": row.id, "name": name, "project_id": project_id,
                           "links": ["", ""], "status": status, "image": null});
            matches.push((name.len(), row.entity_type.clone(), row.id, m));
        }
    }
    matches.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| a.1.cmp(&b.1))
            .then_with(|| a.2.cmp(&b.2))
    });
    let matches: Vec<Json> = matches.into_iter().take(max).map(|m| m.3).collect();
    Ok(json!({ "matches": matches, "terms": terms }))
}

#[cfg(test)]
mod tests {
    //! The site's api3 methods called through `dispatch`, on a small generated site.

    use super::*;
    use crate::config::SimConfig;

    fn site() -> Arc<Site> {
        let config = SimConfig {
            scale: 300,
            types: Some(vec!["Project".into(), "Sequence".into(), "Shot".into()]),
            ..SimConfig::default()
        };
        crate::server::build_site(&config)
            .expect("build the site")
            .0
    }

    fn call(site: &Arc<Site>, method: &str, params: Json) -> Result<Json, (i64, String)> {
        let body = json!({"method_name": method, "params": [{"script_name": "cache", "script_key": "secret"}, params]});
        dispatch(site, &body).map_err(|Fault(code, msg)| (code, msg))
    }

    #[test]
    fn info_and_credentials() {
        let s = site();
        let info = dispatch(&s, &json!({"method_name": "info", "params": []}))
            .map_err(|f| f.1)
            .expect("info");
        assert_eq!(info["version"], json!([8, 89, 0]));
        let bad = json!({"method_name": "read", "params": [{"script_name": "cache", "script_key": "nope"}, {"type": "Shot"}]});
        let Err(Fault(code, msg)) = dispatch(&s, &bad) else {
            panic!("a bad key must fault")
        };
        assert_eq!(
            (code, msg.as_str()),
            (102, "Can't authenticate script 'cache'")
        );
    }

    #[test]
    fn reads_page_with_paging_info() {
        let s = site();
        let all = call(&s, "read", json!({"type": "Shot", "return_fields": ["code"], "paging": {"entities_per_page": 5000, "current_page": 1}}))
            .expect("read");
        let n = all["entities"].as_array().map_or(0, Vec::len) as u64;
        assert!(n > 5, "the site has shots");
        let page = call(
            &s,
            "read",
            json!({"type": "Shot", "return_fields": ["code", "sg_sequence.Sequence.code"], "return_paging_info": true,
                   "paging": {"entities_per_page": 5, "current_page": 2}}),
        )
        .expect("read");
        assert_eq!(page["entities"].as_array().map(Vec::len), Some(5));
        assert_eq!(page["entities"][0]["type"], json!("Shot"));
        assert!(
            page["entities"][0]
                .get("sg_sequence.Sequence.code")
                .is_some()
        );
        assert_eq!(page["paging_info"]["has_next_page"], json!(n > 10));
        assert_eq!(page["paging_info"]["entity_count"], json!(n));
        assert_eq!(page["paging_info"]["page_count"], json!(n.div_ceil(5)));
        let (code, msg) = call(
            &s,
            "read",
            json!({"type": "Shot", "filters": {"logical_operator": "and",
            "conditions": [{"path": "sg_nope", "relation": "is", "values": [1]}]}}),
        )
        .expect_err("unknown field");
        assert_eq!(code, 103);
        assert!(msg.contains("sg_nope"), "{msg}");
    }

    #[test]
    fn writes_answer_records_and_booleans() {
        let s = site();
        let created = call(
            &s,
            "create",
            json!({"type": "Shot", "fields": [{"field_name": "code", "value": "api3-sim"}], "return_fields": ["sg_status_list"]}),
        )
        .expect("create");
        let id = created["id"].as_i64().expect("an id");
        assert_eq!(created["type"], json!("Shot"));
        assert_eq!(created["code"], json!("api3-sim"));
        assert!(created.get("sg_status_list").is_some());
        let updated = call(&s, "update", json!({"type": "Shot", "id": id, "fields": [{"field_name": "code", "value": "renamed"}]}))
            .expect("update");
        assert_eq!(
            updated,
            json!({"type": "Shot", "id": id, "code": "renamed"})
        );
        assert_eq!(
            call(&s, "delete", json!({"type": "Shot", "id": id})).expect("delete"),
            json!(true)
        );
        assert_eq!(
            call(&s, "delete", json!({"type": "Shot", "id": id})).expect("delete again"),
            json!(false)
        );
        let batch = call(
            &s,
            "batch",
            json!([{"request_type": "revive", "type": "Shot", "id": id},
                   {"request_type": "create", "type": "Shot", "fields": [{"field_name": "code", "value": "b"}]}]),
        )
        .expect("batch");
        assert_eq!(batch[0], json!(true));
        assert_eq!(batch[1]["code"], json!("b"));
        let found = call(
            &s,
            "query_display_name_cache",
            json!({"text": "renamed", "entity_types": {"Shot": []}}),
        )
        .expect("text search");
        assert_eq!(found["matches"][0]["id"], json!(id));
    }

    #[test]
    fn summarize_and_schema() {
        let s = site();
        let out = call(
            &s,
            "summarize",
            json!({"type": "Shot", "summaries": [{"field": "id", "type": "count"}],
                   "grouping": [{"field": "sg_sequence", "type": "exact", "direction": "asc"}]}),
        )
        .expect("summarize");
        let total = out["summaries"]["id"].as_i64().expect("a count");
        let grouped: i64 = out["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .filter_map(|g| g["summaries"]["id"].as_i64())
            .sum();
        assert_eq!(grouped, total);
        let (_, msg) = call(&s, "summarize", json!({"type": "Shot", "summaries": [{"field": "sg_status_list", "type": "status_list"}]}))
            .expect_err("not simulated");
        assert!(msg.contains("not simulated"), "{msg}");
        let field = call(
            &s,
            "schema_field_read",
            json!({"type": "Shot", "field_name": "code"}),
        )
        .expect("schema");
        assert_eq!(field["code"]["data_type"]["value"], json!("text"));
        assert!(
            call(&s, "schema_read", Json::Null)
                .expect("schema_read")
                .get("Shot")
                .is_some()
        );
    }
}
