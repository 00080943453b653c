//! REST API v1 (protocol §1) over the [`Site`](crate::site::Site): auth, entity reads (GET list,
//! `_search`, `_summarize`, single GET), writes (create, update, delete, revive, `_batch`) and schema.
//! Handlers only translate HTTP to site calls and site answers to the real response shapes.

// Handlers return a ready HTTP response as their error value; boxing it would buy nothing.
#![allow(clippy::result_large_err)]

pub mod error;
pub mod render;

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query as QueryParams, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value as Json, json};
use shotgun_cache_core::model::DataType;
use shotgun_cache_core::query::Direction;
use shotgun_cache_core::summarize;

use crate::auth::TokenError;
use crate::server::AppState;
use crate::site::{
    Actor, FieldWrite, Fields, Query, QueryFilter, Row, SiteError, SortKey, WriteOp, WriteResult,
    slug,
};
use error::{bad_request, envelope, site_error};

/// The `_search` content types (protocol §1.2).
pub const ARRAY_CT: &str = "application/vnd+shotgun.api3_array+json";
pub const HASH_CT: &str = "application/vnd+shotgun.api3_hash+json";

/// The REST routes. Fault injection is layered on by the server.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1", get(info))
        .route("/api/v1/", get(info))
        .route("/api/v1/auth/access_token", post(access_token))
        .route("/api/v1/entity/_batch", post(batch))
        .route("/api/v1/entity/{entity}", get(list).post(create))
        .route("/api/v1/entity/{entity}/_search", post(search))
        .route("/api/v1/entity/{entity}/_summarize", post(summarize))
        .route(
            "/api/v1/entity/{entity}/{id}",
            get(read_one).put(update).delete(delete).post(revive),
        )
        .route(
            "/api/v1/entity/{entity}/{id}/relationships/{field}",
            get(relationship),
        )
        .route("/api/v1/schema", get(schema_all))
        .route("/api/v1/schema/{entity}", get(schema_entity))
        .route("/api/v1/schema/{entity}/fields", get(schema_fields))
        .route("/api/v1/schema/{entity}/fields/{field}", get(schema_field))
        .with_state(state)
}

type Params = QueryParams<Vec<(String, String)>>;

fn param<'a>(p: &'a [(String, String)], key: &str) -> Option<&'a str> {
    p.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn json_response(status: StatusCode, body: Json) -> Response {
    (
        status,
        [("content-type", "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

async fn info() -> Response {
    json_response(
        StatusCode::OK,
        json!({"data": {"shotgun_version": "v8.89.0.9724 (build simulated)", "api_version": "1.0",
                        "user_authentication_method": "default", "unified_login_flow_enabled": false,
                        "site_id": "simulated", "site_name": "shotgun-sim"}}),
    )
}

// ----- auth -----

fn unauthorized(detail: &str) -> Response {
    envelope(
        StatusCode::UNAUTHORIZED,
        102,
        "Unauthorized",
        None,
        Some(detail.to_owned()),
    )
}

/// The actor behind the request's bearer token, or the 401 to send.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<Actor, Response> {
    if let Some(accept) = headers.get("accept").and_then(|v| v.to_str().ok())
        && accept.contains("vnd+shotgun")
    {
        return Err(envelope(
            StatusCode::NOT_ACCEPTABLE,
            406,
            "Not Acceptable",
            None,
            Some(format!("Accept type '{accept}' is not supported")),
        ));
    }
    let Some(h) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(unauthorized("Authorization header is missing"));
    };
    let Some(token) = h
        .strip_prefix("Bearer ")
        .or_else(|| h.strip_prefix("bearer "))
    else {
        return Err(unauthorized(
            "Authorization header must be 'Bearer <access_token>'",
        ));
    };
    let (script, sudo) = state.auth.check_as(token.trim()).map_err(|e| match e {
        TokenError::Expired => unauthorized("The access token has expired"),
        TokenError::Invalid => unauthorized("The access token is not valid"),
    })?;
    let actor = state
        .site
        .script_actor(&script)
        .ok_or_else(|| unauthorized("The token's script no longer exists"))?;
    match sudo {
        None => Ok(actor),
        Some(login) => state
            .site
            .sudo_actor(&actor, &login)
            .ok_or_else(|| unauthorized("The token's sudo user no longer exists")),
    }
}

/// The login of `scope=sudo_as_login:<login>` (a plain `sudo_as_login` field is ignored, as on a real site).
fn sudo_scope(form: &HashMap<String, String>) -> Option<&str> {
    form.get("scope")
        .and_then(|s| s.strip_prefix("sudo_as_login:"))
}

async fn access_token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return envelope(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            415,
            "Unsupported Media Type",
            None,
            Some("Content-Type must be application/x-www-form-urlencoded".into()),
        );
    }
    let form: HashMap<String, String> = match serde_urlencoded_pairs(&body) {
        Some(f) => f,
        None => return bad_request(102, "Missing or invalid authentication arguments"),
    };
    let Some(grant) = form.get("grant_type") else {
        return bad_request(102, "Missing or invalid authentication arguments");
    };
    match grant.as_str() {
        "client_credentials" => {
            let (Some(name), Some(key)) = (form.get("client_id"), form.get("client_secret")) else {
                return bad_request(102, "Missing or invalid authentication arguments");
            };
            match state.site.authenticate_script(name, key) {
                Ok(actor) => {
                    let sudo = sudo_scope(&form);
                    if let Some(login) = sudo
                        && state.site.sudo_actor(&actor, login).is_none()
                    {
                        return bad_request(
                            102,
                            format!(
                                "Cannot 'sudo' - user '{login}' does not exist or is not active"
                            ),
                        );
                    }
                    token_response(&state, name, actor.user.id, sudo)
                }
                Err(e) => bad_request(102, e.to_string()),
            }
        }
        "refresh_token" => {
            let Some(rt) = form.get("refresh_token") else {
                return bad_request(102, "Missing or invalid authentication arguments");
            };
            match state
                .auth
                .redeem_refresh(rt)
                .and_then(|(s, sudo)| state.site.script_actor(&s).map(|a| (s, sudo, a)))
            {
                Some((script, sudo, actor)) => {
                    token_response(&state, &script, actor.user.id, sudo.as_deref())
                }
                None => envelope(
                    StatusCode::UNAUTHORIZED,
                    102,
                    "Invalid refresh token",
                    None,
                    None,
                ),
            }
        }
        "password" => bad_request(
            102,
            format!(
                "Can't authenticate user '{}'",
                form.get("username").map(String::as_str).unwrap_or("")
            ),
        ),
        other => bad_request(103, format!("Unsupported grant_type '{other}'")),
    }
}

fn serde_urlencoded_pairs(body: &[u8]) -> Option<HashMap<String, String>> {
    let s = std::str::from_utf8(body).ok()?;
    let mut out = HashMap::new();
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(url_decode(k)?, url_decode(v)?);
    }
    Some(out)
}

fn url_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let h = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn token_response(state: &AppState, script: &str, user_id: i64, sudo: Option<&str>) -> Response {
    let t = state.auth.issue_as(script, user_id, sudo);
    json_response(
        StatusCode::OK,
        json!({"token_type": "Bearer", "access_token": t.access_token, "expires_in": t.expires_in, "refresh_token": t.refresh_token}),
    )
}

// ----- reads -----

fn resolve(state: &AppState, segment: &str) -> Result<String, Response> {
    state
        .site
        .resolve_type(segment)
        .ok_or_else(|| site_error(&SiteError::UnknownEntityType(segment.to_owned())))
}

fn parse_fields(v: Option<&Json>) -> Fields {
    let names: Vec<String> = match v {
        None | Some(Json::Null) => return Fields::All,
        Some(Json::String(s)) => s
            .split(',')
            .map(|x| x.trim().to_owned())
            .filter(|x| !x.is_empty())
            .collect(),
        Some(Json::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        Some(_) => return Fields::All,
    };
    if names.iter().any(|n| n == "*") {
        Fields::All
    } else {
        Fields::Only(names)
    }
}

fn parse_sort(v: Option<&Json>) -> Result<Vec<SortKey>, Response> {
    let keys: Vec<String> = match v {
        None | Some(Json::Null) => return Ok(Vec::new()),
        Some(Json::String(s)) => s
            .split(',')
            .map(|x| x.trim().to_owned())
            .filter(|x| !x.is_empty())
            .collect(),
        Some(Json::Array(a)) if a.iter().all(Json::is_string) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        Some(_) => return Err(bad_request(103, "sort array is not valid")),
    };
    Ok(keys
        .into_iter()
        .map(|k| match k.strip_prefix('-') {
            Some(f) => SortKey {
                field: f.to_owned(),
                direction: Direction::Desc,
            },
            None => SortKey {
                field: k,
                direction: Direction::Asc,
            },
        })
        .collect())
}

/// `(size, number)` with the real bounds: size 1..=5000 (default 500), number ≥ 1.
fn parse_page(size: Option<&Json>, number: Option<&Json>) -> Result<(usize, usize), Response> {
    let as_int = |v: Option<&Json>| -> Result<Option<i64>, Response> {
        match v {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| bad_request(103, "page values must be integers")),
            Some(Json::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| bad_request(103, "page values must be integers")),
            Some(_) => Err(bad_request(103, "page values must be integers")),
        }
    };
    let size = as_int(size)?.unwrap_or(500);
    if size > 5000 {
        return Err(bad_request(103, "size must be less than 5000"));
    }
    if size < 1 {
        return Err(bad_request(103, "size must be greater than 0"));
    }
    let number = as_int(number)?.unwrap_or(1);
    if number < 1 {
        return Err(bad_request(103, "number must be greater than 0"));
    }
    Ok((size as usize, number as usize))
}

fn parse_return_only(v: Option<&Json>) -> Result<bool, Response> {
    match v.and_then(Json::as_str) {
        None | Some("active") => Ok(false),
        Some("retired") => Ok(true),
        Some(other) => Err(bad_request(
            103,
            format!("return_only must be 'active' or 'retired', got '{other}'"),
        )),
    }
}

fn parse_bool(v: Option<&Json>, default: bool) -> bool {
    match v {
        Some(Json::Bool(b)) => *b,
        Some(Json::String(s)) => s != "false",
        _ => default,
    }
}

fn page_links(path: &str, size: usize, number: usize) -> Json {
    let mk = |n: usize| format!("{path}?page[number]={n}&page[size]={size}");
    let mut links = serde_json::Map::new();
    links.insert("self".into(), Json::String(mk(number)));
    links.insert("next".into(), Json::String(mk(number + 1)));
    if number > 1 {
        links.insert("prev".into(), Json::String(mk(number - 1)));
    }
    Json::Object(links)
}

async fn run_find(state: &AppState, q: Query) -> Result<Vec<Row>, Response> {
    let site = state.site.clone();
    match tokio::task::spawn_blocking(move || site.find(&q)).await {
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err(e)) => Err(site_error(&e)),
        Err(e) => Err(envelope(
            StatusCode::INTERNAL_SERVER_ERROR,
            500,
            "Shotgun Server Error",
            None,
            Some(format!("find failed: {e}")),
        )),
    }
}

fn page_response(rows: &[Row], path: &str, size: usize, number: usize) -> Response {
    let body = render::write_page(rows, &page_links(path, size, number));
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Typed query-string values for `filter[field]=v` on the GET list endpoint.
fn qs_value(dt: Option<DataType>, v: &str) -> Json {
    match dt {
        Some(DataType::Number | DataType::Duration | DataType::Percent | DataType::Timecode) => v
            .parse::<i64>()
            .map(Json::from)
            .unwrap_or_else(|_| Json::String(v.to_owned())),
        Some(DataType::Checkbox) => match v {
            "true" => Json::Bool(true),
            "false" => Json::Bool(false),
            _ => Json::String(v.to_owned()),
        },
        _ => Json::String(v.to_owned()),
    }
}

fn leaf_type(state: &AppState, entity_type: &str, path: &str) -> Option<DataType> {
    state.site.with_schema(|s| {
        let parts: Vec<&str> = path.split('.').collect();
        let (t, f) = if parts.len() >= 3 {
            (parts[parts.len() - 2], parts[parts.len() - 1])
        } else {
            (entity_type, parts[0])
        };
        if f == "id" {
            Some(DataType::Number)
        } else {
            s.field(t, f).map(|x| x.data_type)
        }
    })
}

async fn list(
    State(state): State<AppState>,
    Path(entity): Path<String>,
    headers: HeaderMap,
    QueryParams(params): Params,
) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let t = match resolve(&state, &entity) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let mut conditions = Vec::new();
    for (k, v) in &params {
        if let Some(f) = k.strip_prefix("filter[").and_then(|x| x.strip_suffix(']')) {
            let dt = leaf_type(&state, &t, f);
            if v.contains(',') {
                conditions.push(json!([
                    f,
                    "in",
                    v.split(',').map(|x| qs_value(dt, x)).collect::<Vec<_>>()
                ]));
            } else {
                conditions.push(json!([f, "is", qs_value(dt, v)]));
            }
        }
    }
    let (size, number) = match parse_page(
        param(&params, "page[size]")
            .map(|s| Json::String(s.to_owned()))
            .as_ref(),
        param(&params, "page[number]")
            .map(|s| Json::String(s.to_owned()))
            .as_ref(),
    ) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let sorts = match parse_sort(
        param(&params, "sort")
            .map(|s| Json::String(s.to_owned()))
            .as_ref(),
    ) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let retired = match parse_return_only(
        param(&params, "options[return_only]")
            .map(|s| Json::String(s.to_owned()))
            .as_ref(),
    ) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let q = Query {
        entity_type: t.clone(),
        filter: if conditions.is_empty() {
            QueryFilter::All
        } else {
            QueryFilter::Wire(Json::Array(conditions))
        },
        fields: parse_fields(
            param(&params, "fields")
                .map(|s| Json::String(s.to_owned()))
                .as_ref(),
        ),
        sorts,
        offset: (number - 1) * size,
        limit: size,
        retired_only: retired,
        include_archived_projects: parse_bool(
            param(&params, "options[include_archived_projects]")
                .map(|s| Json::String(s.to_owned()))
                .as_ref(),
            true,
        ),
    };
    match run_find(&state, q).await {
        Ok(rows) => page_response(&rows, &format!("/api/v1/entity/{}", slug(&t)), size, number),
        Err(r) => r,
    }
}

/// Checks the `_search` body's filters against the syntax its content type selects.
fn check_filter_syntax(hash: bool, filters: &Json, depth: usize) -> Result<(), Response> {
    if depth > 265 {
        return Err(envelope(
            StatusCode::INTERNAL_SERVER_ERROR,
            500,
            "Shotgun Server Error",
            None,
            Some("filter nesting too deep".into()),
        ));
    }
    if !hash {
        return match filters {
            Json::Array(_) => Ok(()),
            _ => Err(bad_request(
                103,
                "filters must be an array of [field, relation, value] conditions for application/vnd+shotgun.api3_array+json",
            )),
        };
    }
    let Json::Object(o) = filters else {
        return Err(bad_request(103, "Missing logical operator"));
    };
    match o.get("logical_operator").and_then(Json::as_str) {
        Some("and" | "or") => {}
        Some(other) => {
            return Err(bad_request(
                103,
                format!("Invalid logical operator '{other}'"),
            ));
        }
        None => return Err(bad_request(103, "Missing logical operator")),
    }
    let Some(conds) = o.get("conditions").and_then(Json::as_array) else {
        return Err(bad_request(103, "Missing conditions"));
    };
    for c in conds {
        match c {
            Json::Array(_) => {}
            Json::Object(_) => check_filter_syntax(true, c, depth + 1)?,
            _ => return Err(bad_request(103, format!("Invalid condition {c}"))),
        }
    }
    Ok(())
}

fn search_content_type(headers: &HeaderMap) -> Result<bool, Response> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let base = ct.split(';').next().unwrap_or("").trim();
    match base {
        ARRAY_CT => Ok(false),
        HASH_CT => Ok(true),
        _ => Err(envelope(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            415,
            "Unsupported Media Type",
            None,
            Some(format!(
                "Content-Type '{ct}' is not supported. Use '{ARRAY_CT}' or '{HASH_CT}'"
            )),
        )),
    }
}

fn body_json(body: &[u8]) -> Result<Json, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| bad_request(103, format!("Invalid JSON body: {e}")))
}

async fn search(
    State(state): State<AppState>,
    Path(entity): Path<String>,
    headers: HeaderMap,
    QueryParams(params): Params,
    body: Bytes,
) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let hash = match search_content_type(&headers) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let t = match resolve(&state, &entity) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let b = match body_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let qp = |k: &str| param(&params, k).map(|s| Json::String(s.to_owned()));
    let filters = b.get("filters").cloned().unwrap_or(if hash {
        json!({"logical_operator": "and", "conditions": []})
    } else {
        json!([])
    });
    if let Err(r) = check_filter_syntax(hash, &filters, 0) {
        return r;
    }
    let page = b.get("page");
    let (size, number) = match parse_page(
        page.and_then(|p| p.get("size"))
            .cloned()
            .or_else(|| qp("page[size]"))
            .as_ref(),
        page.and_then(|p| p.get("number"))
            .cloned()
            .or_else(|| qp("page[number]"))
            .as_ref(),
    ) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let sorts = match parse_sort(b.get("sort").cloned().or_else(|| qp("sort")).as_ref()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let options = b.get("options");
    let retired = match parse_return_only(
        options
            .and_then(|o| o.get("return_only"))
            .cloned()
            .or_else(|| qp("options[return_only]"))
            .as_ref(),
    ) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let include_archived = parse_bool(
        options
            .and_then(|o| o.get("include_archived_projects"))
            .cloned()
            .or_else(|| qp("options[include_archived_projects]"))
            .as_ref(),
        true,
    );
    let is_empty = match &filters {
        Json::Array(a) => a.is_empty(),
        Json::Object(o) => o
            .get("conditions")
            .and_then(Json::as_array)
            .is_some_and(|c| c.is_empty()),
        _ => false,
    };
    let q = Query {
        entity_type: t.clone(),
        filter: if is_empty {
            QueryFilter::All
        } else {
            QueryFilter::Wire(filters)
        },
        fields: parse_fields(b.get("fields").cloned().or_else(|| qp("fields")).as_ref()),
        sorts,
        offset: (number - 1) * size,
        limit: size,
        retired_only: retired,
        include_archived_projects: include_archived,
    };
    match run_find(&state, q).await {
        Ok(rows) => page_response(
            &rows,
            &format!("/api/v1/entity/{}/_search", slug(&t)),
            size,
            number,
        ),
        Err(r) => r,
    }
}

async fn summarize(
    State(state): State<AppState>,
    Path(entity): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let hash = match search_content_type(&headers) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let t = match resolve(&state, &entity) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let b = match body_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let filters = b.get("filters").cloned().unwrap_or(if hash {
        json!({"logical_operator": "and", "conditions": []})
    } else {
        json!([])
    });
    if let Err(r) = check_filter_syntax(hash, &filters, 0) {
        return r;
    }
    let request = match summarize::parse_wire(
        b.get("summary_fields").unwrap_or(&json!([])),
        b.get("grouping"),
    ) {
        Ok(r) => r,
        Err(e) => return bad_request(103, e.to_string()),
    };
    let include_archived = parse_bool(
        b.get("options")
            .and_then(|o| o.get("include_archived_projects")),
        true,
    );
    let site = state.site.clone();
    let result = tokio::task::spawn_blocking(move || {
        site.summarize_request(&t, &QueryFilter::Wire(filters), &request, include_archived)
    })
    .await;
    match result {
        Ok(Ok(r)) => json_response(StatusCode::OK, json!({ "data": r.to_json() })),
        Ok(Err(e)) => site_error(&e),
        Err(e) => envelope(
            StatusCode::INTERNAL_SERVER_ERROR,
            500,
            "Shotgun Server Error",
            None,
            Some(e.to_string()),
        ),
    }
}

fn parse_id(id: &str, t: &str) -> Result<i64, Response> {
    id.parse().map_err(|_| {
        site_error(&SiteError::NotFound {
            entity_type: t.to_owned(),
            id: -1,
        })
    })
}

async fn read_one(
    State(state): State<AppState>,
    Path((entity, id)): Path<(String, String)>,
    headers: HeaderMap,
    QueryParams(params): Params,
) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let t = match resolve(&state, &entity) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let id = match parse_id(&id, &t) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let retired = match parse_return_only(
        param(&params, "options[return_only]")
            .map(|s| Json::String(s.to_owned()))
            .as_ref(),
    ) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let fields = parse_fields(
        param(&params, "fields")
            .map(|s| Json::String(s.to_owned()))
            .as_ref(),
    );
    match state.site.read_one(&t, id, &fields, retired) {
        Ok(row) => json_response(
            StatusCode::OK,
            json!({"data": render::record(&row), "links": {"self": format!("/api/v1/entity/{}/{id}", slug(&t))}}),
        ),
        Err(e) => site_error(&e),
    }
}

/// `GET /api/v1/entity/{type}/{id}/relationships/{field}`: one link field of one row.
async fn relationship(
    State(state): State<AppState>,
    Path((entity, id, field)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let t = match resolve(&state, &entity) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let id = match parse_id(&id, &t) {
        Ok(i) => i,
        Err(r) => return r,
    };
    match state
        .site
        .read_one(&t, id, &Fields::Only(vec![field.clone()]), false)
    {
        Ok(row) => match row
            .fields
            .iter()
            .find(|f| f.name == field && f.data_type.is_link())
        {
            Some(f) => json_response(
                StatusCode::OK,
                json!({"data": render::rest_value(f.data_type, &f.value),
                       "links": {"self": format!("/api/v1/entity/{}/{id}/relationships/{field}", slug(&t))}}),
            ),
            None => site_error(&SiteError::UnknownSchemaField {
                entity_type: t,
                field,
            }),
        },
        Err(e) => site_error(&e),
    }
}

// ----- writes -----

fn write_body(headers: &HeaderMap, body: &[u8]) -> Result<serde_json::Map<String, Json>, Response> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/json") {
        return Err(envelope(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            415,
            "Unsupported Media Type",
            None,
            Some("Content-Type must be application/json".into()),
        ));
    }
    match body_json(body)? {
        Json::Object(m) => Ok(m),
        _ => Err(bad_request(
            103,
            "the body must be a JSON object of field values",
        )),
    }
}

/// The fields a write answer carries: the ones sent plus the server-set ones.
fn written_fields(state: &AppState, t: &str, sent: &serde_json::Map<String, Json>) -> Fields {
    let mut names: Vec<String> = sent.keys().cloned().collect();
    state.site.with_schema(|s| {
        if let Some(et) = s.entity(t) {
            for f in [
                "created_at",
                "updated_at",
                "created_by",
                "updated_by",
                "cached_display_name",
            ] {
                if et.fields.contains_key(f) {
                    names.push(f.to_owned());
                }
            }
            for (n, fs) in &et.fields {
                if !fs.default_value.is_null() {
                    names.push(n.clone());
                }
            }
        }
    });
    Fields::Only(names)
}

async fn create(
    State(state): State<AppState>,
    Path(entity): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let actor = match authorize(&state, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let t = match resolve(&state, &entity) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let fields = match write_body(&headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match state.site.create(&actor, &t, &fields) {
        Ok(id) => match state
            .site
            .read_one(&t, id, &written_fields(&state, &t, &fields), false)
        {
            Ok(row) => json_response(StatusCode::CREATED, json!({"data": render::record(&row)})),
            Err(e) => site_error(&e),
        },
        Err(e) => site_error(&e),
    }
}

async fn update(
    State(state): State<AppState>,
    Path((entity, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let actor = match authorize(&state, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let t = match resolve(&state, &entity) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let id = match parse_id(&id, &t) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let fields = match write_body(&headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match state.site.update(&actor, &t, id, &fields) {
        Ok(_) => match state.site.read_one(&t, id, &Fields::All, false) {
            Ok(row) => json_response(StatusCode::OK, json!({"data": render::record(&row)})),
            Err(e) => site_error(&e),
        },
        Err(e) => site_error(&e),
    }
}

async fn delete(
    State(state): State<AppState>,
    Path((entity, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let actor = match authorize(&state, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let t = match resolve(&state, &entity) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let id = match parse_id(&id, &t) {
        Ok(i) => i,
        Err(r) => return r,
    };
    match state.site.delete(&actor, &t, id) {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => site_error(&SiteError::NotFound { entity_type: t, id }),
        Err(e) => site_error(&e),
    }
}

async fn revive(
    State(state): State<AppState>,
    Path((entity, id)): Path<(String, String)>,
    headers: HeaderMap,
    QueryParams(params): Params,
) -> Response {
    let actor = match authorize(&state, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let t = match resolve(&state, &entity) {
        Ok(t) => t,
        Err(r) => return r,
    };
    if param(&params, "revive") != Some("true") {
        return envelope(
            StatusCode::METHOD_NOT_ALLOWED,
            405,
            "Method Not Allowed",
            None,
            Some("POST on a record needs ?revive=true".into()),
        );
    }
    let id = match parse_id(&id, &t) {
        Ok(i) => i,
        Err(r) => return r,
    };
    match state.site.revive(&actor, &t, id) {
        Ok(revived) => json_response(StatusCode::OK, json!({"meta": {"entity_revived": revived}})),
        Err(e) => site_error(&e),
    }
}

async fn batch(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let actor = match authorize(&state, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let b = match write_body(&headers, &body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(requests) = b.get("requests").and_then(Json::as_array) else {
        return bad_request(103, "_batch needs a 'requests' array");
    };
    let mut ops = Vec::new();
    for r in requests {
        let kind = r.get("request_type").and_then(Json::as_str).unwrap_or("");
        let seg = r.get("entity").and_then(Json::as_str).unwrap_or("");
        let t = match resolve(&state, seg) {
            Ok(t) => t,
            Err(resp) => return resp,
        };
        let id = r.get("record_id").and_then(Json::as_i64);
        let data = r
            .get("data")
            .and_then(Json::as_object)
            .cloned()
            .unwrap_or_default();
        let op = match (kind, id) {
            ("create", _) => WriteOp::Create {
                entity_type: t,
                fields: FieldWrite::set_all(&data),
            },
            ("update", Some(id)) => WriteOp::Update {
                entity_type: t,
                id,
                fields: FieldWrite::set_all(&data),
            },
            ("delete", Some(id)) => WriteOp::Delete { entity_type: t, id },
            _ => return bad_request(103, format!("invalid batch request {r}")),
        };
        ops.push(op);
    }
    match state.site.batch(&actor, ops) {
        Ok(results) => {
            let mut data = Vec::new();
            for r in results {
                data.push(match r {
                    WriteResult::Created { entity_type, id }
                    | WriteResult::Updated {
                        entity_type, id, ..
                    } => match state.site.read_one(&entity_type, id, &Fields::All, false) {
                        Ok(row) => render::record(&row),
                        Err(_) => Json::Null,
                    },
                    WriteResult::Deleted { retired, .. } => Json::Bool(retired),
                    WriteResult::Revived { revived, .. } => Json::Bool(revived),
                });
            }
            json_response(StatusCode::OK, json!({"data": data}))
        }
        Err(e) => site_error(&e),
    }
}

// ----- schema -----

async fn schema_all(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let data = state.site.with_schema(|s| {
        Json::Object(
            s.types
                .iter()
                .map(|(k, t)| (k.clone(), t.raw.clone()))
                .collect(),
        )
    });
    json_response(StatusCode::OK, json!({"data": data}))
}

async fn schema_entity(
    State(state): State<AppState>,
    Path(entity): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let t = match resolve(&state, &entity) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let data = state
        .site
        .with_schema(|s| s.entity(&t).map(|e| e.raw.clone()).unwrap_or(Json::Null));
    json_response(StatusCode::OK, json!({"data": data}))
}

async fn schema_fields(
    State(state): State<AppState>,
    Path(entity): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let t = match resolve(&state, &entity) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let data = state.site.with_schema(|s| {
        s.to_schema_read_json(Some(std::slice::from_ref(&t)))
            .get(&t)
            .cloned()
            .unwrap_or(Json::Null)
    });
    json_response(StatusCode::OK, json!({"data": data}))
}

async fn schema_field(
    State(state): State<AppState>,
    Path((entity, field)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let t = match resolve(&state, &entity) {
        Ok(t) => t,
        Err(r) => return r,
    };
    match state
        .site
        .with_schema(|s| s.field(&t, &field).map(|f| f.raw.clone()))
    {
        Some(raw) => json_response(StatusCode::OK, json!({"data": {field: raw}})),
        None => site_error(&SiteError::UnknownSchemaField {
            entity_type: t,
            field,
        }),
    }
}
