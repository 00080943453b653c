//! The `shotgun_api3` drop-in: `POST /api3/json` (protocol §2) on `query_server.http_listen`, so
//! existing Python tools get the cache by changing one URL.
//!
//! # What is answered here, and what goes to the site
//! - `info`: answered here (no auth, as on the site): the site's own `info` (fetched once) with a
//!   version of at least 8.0 so `shotgun_api3` turns on its modern paging, plus a `shotgun_cache`
//!   key so a person can tell the answer came from the cache.
//! - `read`, `summarize`, `schema_read`, `schema_entity_read`, `schema_field_read`: answered from the
//!   cache when every type, field, filter, sort and option in the call is cached and understood
//!   (the planners in [`read`]); otherwise forwarded.
//! - `create`, `update`, `delete`, `revive`, `batch`: forwarded, then made visible in the cache before
//!   the answer (see [`forward`]: the syncer re-reads the touched entities; the query-server never
//!   writes the store).
//! - Everything else (`text_search`, schema writes, ...): forwarded.
//! - Any other HTTP path (`/upload/...`, `/thumbnail/...`, `/file_serve/...`: uploads, thumbnails,
//!   downloads): passed through to the same path of the site, answers and redirects unchanged.
//!
//! "Forwarded" means sent to the site unchanged (with the client's own credentials) and answered
//! unchanged; with `api3.forward = false` the call is refused instead, with a fault that says why.
//!
//! # Credentials
//! Every call but `info` must carry script credentials listed in `api3.clients`
//! (`SHOTGUN_CACHE_API3__CLIENTS`); anything else gets the site's authentication fault shape
//! (code 102, which `shotgun_api3` raises as `AuthenticationFault`).

pub(crate) mod forward;
pub(crate) mod read;
pub(crate) mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value as Json, json};
use shotgun_cache_core::config::Config;
use shotgun_cache_core::filter::Filter;
use shotgun_cache_core::model::{DataType, DateTime, SiteSchema, Value};
use shotgun_cache_core::query::FindQuery;
use shotgun_cache_core::store::{CountQuery, Store};
use shotgun_cache_core::summarize::{self, SummarizeRequest, SummaryResult};
use shotgun_cache_proto::v1::syncer_service_client::SyncerServiceClient;
use tokio::sync::OnceCell;
use tonic::transport::{Channel, Endpoint};

use crate::AppState;
use crate::catalog::{Catalog, CatalogSnapshot};
use crate::error::QueryError;
use read::NotAnswerable;
use wire::{Call, ERR_REQUEST, Fault};

/// The version the cache claims when the site is older or cannot be asked: new enough for every
/// feature gate of `shotgun_api3` (paging without counts needs 7.4.0).
const MIN_VERSION: [i64; 3] = [8, 0, 0];

/// How long the site's `info` is waited for before the cache answers with its defaults.
const INFO_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a forwarded write may take to show in the cache before the client is answered anyway.
const VISIBILITY_WAIT: Duration = Duration::from_secs(10);

/// The HTTP router for the api3 listener, built from the shared query-server state. A bad
/// `api3.syncer_url` is logged, and read-your-writes then falls back to waiting for the event log.
pub fn router(state: AppState) -> Router {
    let api = match Api3::new(state.store.clone(), state.catalog.clone(), &state.config) {
        Ok(api) => api,
        Err(e) => {
            tracing::error!(error = %e, "api3: bad configuration; forwarded writes will wait for the event log");
            let mut config = (*state.config).clone();
            config.api3.syncer_url = String::new();
            match Api3::new(state.store.clone(), state.catalog.clone(), &config) {
                Ok(api) => api,
                Err(e) => {
                    tracing::error!(error = %e, "api3: cannot start the endpoint");
                    return Router::new();
                }
            }
        }
    };
    router_for(api)
}

/// The api3 routes (`POST /api3/json`) on `api`.
pub fn router_for(api: Api3) -> Router {
    Router::new()
        .route("/api3/json", post(handle))
        // Uploads, thumbnails and attachment downloads (`/upload/...`, `/thumbnail/...`,
        // `/file_serve/...`) are plain HTTP paths of the site: passed through unchanged.
        .fallback(passthrough)
        // Batches and large creates are forwarded whole; axum's default 2 MB would refuse them.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api)
}

/// The largest request body accepted (and forwarded).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The api3 endpoint's state. Cheap to clone.
#[derive(Clone)]
pub struct Api3 {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    catalog: Catalog,
    site_url: String,
    forward: bool,
    clients: Vec<(String, String)>,
    http: reqwest::Client,
    syncer: Option<SyncerServiceClient<Channel>>,
    site_info: OnceCell<Json>,
}

impl Api3 {
    /// Builds the endpoint from the shared config (`site.url`, `[api3]`).
    ///
    /// # Errors
    /// When `api3.syncer_url` is not a valid URI, or the HTTP client cannot be built.
    pub fn new(store: Arc<dyn Store>, catalog: Catalog, config: &Config) -> anyhow::Result<Api3> {
        let syncer = match config.api3.syncer_url.trim() {
            "" => None,
            url => Some(SyncerServiceClient::new(
                Endpoint::from_shared(url.to_owned())
                    .map_err(|e| {
                        anyhow::anyhow!("api3.syncer_url {url:?} is not a valid URI: {e}")
                    })?
                    .connect_timeout(Duration::from_secs(2))
                    .connect_lazy(),
            )),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .connect_timeout(Duration::from_secs(10))
            // Redirects (e.g. a download to its signed storage URL) go back to the client unchanged.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| {
                anyhow::anyhow!("cannot build the HTTP client for forwarding to the site: {e}")
            })?;
        Ok(Api3 {
            inner: Arc::new(Inner {
                store,
                catalog,
                site_url: config.site.url.clone(),
                forward: config.api3.forward,
                clients: config
                    .api3
                    .clients
                    .iter()
                    .map(|(n, k)| (n.clone(), k.expose().to_owned()))
                    .collect(),
                http,
                syncer,
                site_info: OnceCell::new(),
            }),
        })
    }
}

fn json_response(v: &Json) -> Response {
    let mut r = (StatusCode::OK, v.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

fn fault_response(f: &Fault) -> Response {
    json_response(&f.to_json())
}

/// Who answered a call, reported in the `x-shotgun-cache` response header and the
/// `api3_calls_total{method, answered_by}` counter: `cache`, `site` (forwarded), or `refused`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnsweredBy {
    Cache,
    Site,
    Refused,
}

impl AnsweredBy {
    fn as_str(self) -> &'static str {
        match self {
            AnsweredBy::Cache => "cache",
            AnsweredBy::Site => "site",
            AnsweredBy::Refused => "refused",
        }
    }
}

/// The method label of the metrics: the known api3 methods by name, anything else as `other` (the
/// method name comes from the client, so it must not become an unbounded label).
fn method_label(method: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "info",
        "read",
        "summarize",
        "schema_read",
        "schema_entity_read",
        "schema_field_read",
        "create",
        "update",
        "delete",
        "revive",
        "batch",
        "query_display_name_cache",
    ];
    KNOWN
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

async fn handle(State(api): State<Api3>, body: Bytes) -> Response {
    let method = wire::parse_call(&body)
        .map(|c| method_label(&c.method))
        .unwrap_or("other");
    let (by, mut response) = dispatch(&api, body).await;
    metrics::counter!("api3_calls_total", "method" => method, "answered_by" => by.as_str())
        .increment(1);
    response
        .headers_mut()
        .insert("x-shotgun-cache", HeaderValue::from_static(by.as_str()));
    response
}

/// Headers that belong to one connection and are not passed through (RFC 9110 §7.6.1), plus `host`.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// Any path other than `/api3/json`: sent to the same path of the site (method, query, headers and
/// body), and the site's answer returned unchanged. The site authenticates these requests itself.
async fn passthrough(State(api): State<Api3>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let (by, mut response) = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Err(e) => (
            AnsweredBy::Refused,
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body refused: {e}"),
            )
                .into_response(),
        ),
        Ok(bytes) => {
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let url = format!("{}{path}", api.inner.site_url.trim_end_matches('/'));
            let mut rb = api
                .inner
                .http
                .request(parts.method.clone(), &url)
                .body(bytes);
            for (k, v) in &parts.headers {
                if !HOP_BY_HOP.contains(&k.as_str()) {
                    rb = rb.header(k, v);
                }
            }
            match rb.send().await {
                Err(e) => (
                    AnsweredBy::Refused,
                    (
                        StatusCode::BAD_GATEWAY,
                        format!("the cache could not reach the site at {url}: {e}"),
                    )
                        .into_response(),
                ),
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    match resp.bytes().await {
                        Err(e) => (
                            AnsweredBy::Refused,
                            (
                                StatusCode::BAD_GATEWAY,
                                format!("reading the site's answer: {e}"),
                            )
                                .into_response(),
                        ),
                        Ok(body) => {
                            let mut r = (status, body).into_response();
                            for (k, v) in &headers {
                                if !HOP_BY_HOP.contains(&k.as_str()) {
                                    r.headers_mut().append(k, v.clone());
                                }
                            }
                            (AnsweredBy::Site, r)
                        }
                    }
                }
            }
        }
    };
    metrics::counter!("api3_calls_total", "method" => "passthrough", "answered_by" => by.as_str())
        .increment(1);
    response
        .headers_mut()
        .insert("x-shotgun-cache", HeaderValue::from_static(by.as_str()));
    response
}

async fn dispatch(api: &Api3, body: Bytes) -> (AnsweredBy, Response) {
    let call = match wire::parse_call(&body) {
        Ok(c) => c,
        Err(f) => return (AnsweredBy::Refused, fault_response(&f)),
    };
    if call.method == "info" {
        return (
            AnsweredBy::Cache,
            json_response(&wire::results(api.info().await)),
        );
    }
    if let Err(f) = wire::check_auth(&call.auth, &api.inner.clients) {
        return (AnsweredBy::Refused, fault_response(&f));
    }
    let answered = match call.method.as_str() {
        "read" => api.read(&call.params).await,
        "summarize" => api.summarize(&call.params).await,
        "schema_read" | "schema_entity_read" | "schema_field_read" => {
            read::schema_answer(&api.inner.catalog.snapshot(), &call.method, &call.params)
        }
        "create" | "update" | "delete" | "revive" | "batch" => {
            return api.write_through(&call, body).await;
        }
        other => Err(NotAnswerable(format!(
            "method {other} is answered by the site only"
        ))),
    };
    match answered {
        Ok(v) => (AnsweredBy::Cache, json_response(&wire::results(v))),
        Err(reason) => {
            tracing::debug!(method = %call.method, %reason, "api3 call forwarded");
            api.forward_or_refuse(&call, body, &reason).await
        }
    }
}

impl Api3 {
    async fn info(&self) -> Json {
        let site = self
            .inner
            .site_info
            .get_or_try_init(|| async {
                let body = Bytes::from_static(br#"{"method_name":"info","params":[]}"#);
                // `info` is every client's first call: a site that does not answer quickly must not
                // hold it up (the defaults are answered instead, and the site is asked again next time).
                let answer = tokio::time::timeout(
                    INFO_TIMEOUT,
                    forward::forward(&self.inner.http, &self.inner.site_url, body),
                )
                .await
                .map_err(|_| format!("no answer within {INFO_TIMEOUT:?}"))?
                .map_err(|e| e.to_string())?;
                let v: Json = serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
                v.get("results")
                    .cloned()
                    .filter(Json::is_object)
                    .ok_or_else(|| format!("unexpected info answer {v}"))
            })
            .await
            .cloned()
            .unwrap_or_else(|e: String| {
                tracing::warn!(error = %e, "cannot read the site's info; answering with the cache's defaults");
                json!({"api_max_entities_per_page": 500, "user_authentication_method": "default", "s3_uploads_enabled": false})
            });
        info_answer(site, &self.inner.site_url, &self.inner.catalog.snapshot())
    }

    async fn read(&self, p: &Json) -> Result<Json, NotAnswerable> {
        let snap = self.inner.catalog.snapshot();
        let plan = read::plan_read(&snap, p)?;
        let rows = self.inner.store.find(&plan.query).await.map_err(store_na)?;
        let count = if plan.want_count {
            let q = CountQuery {
                entity_type: plan.query.entity_type.clone(),
                filter: plan.query.filter.clone(),
                retired_only: plan.query.retired_only,
                now: shotgun_cache_core::model::DateTime::now(),
            };
            Some(self.inner.store.count(&q).await.map_err(store_na)?)
        } else {
            None
        };
        Ok(read::read_answer(&plan, rows, count))
    }

    async fn summarize(&self, p: &Json) -> Result<Json, NotAnswerable> {
        let snap = self.inner.catalog.snapshot();
        let plan = read::plan_summarize(&snap, p)?;
        let schema = snap.schema().map_err(|e| NotAnswerable(e.to_string()))?;
        let lookup = |f: &str| {
            plan.data_types
                .iter()
                .find(|(k, _)| k == f)
                .map(|(_, t)| *t)
        };
        match summarize_rows(
            self.inner.store.as_ref(),
            schema,
            &plan.query,
            &plan.request,
            &lookup,
        )
        .await
        {
            Ok(result) => Ok(result.to_json()),
            Err(QueryError::Store(e)) => Err(store_na(e)),
            Err(e) => Err(NotAnswerable(e.to_string())),
        }
    }

    async fn forward_or_refuse(
        &self,
        call: &Call,
        body: Bytes,
        reason: &NotAnswerable,
    ) -> (AnsweredBy, Response) {
        if !self.inner.forward {
            let f = Fault::new(
                ERR_REQUEST,
                format!(
                    "API {}() cannot be answered from the cache: {reason}; forwarding to the site is disabled (api3.forward = false)",
                    call.method
                ),
            );
            return (AnsweredBy::Refused, fault_response(&f));
        }
        match forward::forward(&self.inner.http, &self.inner.site_url, body).await {
            Ok(answer) => (AnsweredBy::Site, site_response(answer)),
            Err(e) => (
                AnsweredBy::Refused,
                fault_response(&Fault::new(ERR_REQUEST, e.to_string())),
            ),
        }
    }

    async fn write_through(&self, call: &Call, body: Bytes) -> (AnsweredBy, Response) {
        if !self.inner.forward {
            let f = Fault::new(
                ERR_REQUEST,
                format!(
                    "API {}() is a write, which only the site can do; forwarding is disabled (api3.forward = false)",
                    call.method
                ),
            );
            return (AnsweredBy::Refused, fault_response(&f));
        }
        let answer = match forward::forward(&self.inner.http, &self.inner.site_url, body).await {
            Ok(a) => a,
            Err(e) => {
                return (
                    AnsweredBy::Refused,
                    fault_response(&Fault::new(ERR_REQUEST, e.to_string())),
                );
            }
        };
        // A successful write answers HTTP 200 with `results` and no `exception`.
        let parsed = (answer.status == 200)
            .then(|| serde_json::from_slice::<Json>(&answer.body).ok())
            .flatten();
        if let Some(results) = parsed
            .as_ref()
            .filter(|v| v.get("exception").and_then(Json::as_bool) != Some(true))
            .and_then(|v| v.get("results"))
        {
            let snap = self.inner.catalog.snapshot();
            let touched: Vec<_> = forward::touched(&call.method, &call.params, results)
                .into_iter()
                .filter(|t| snap.is_cached_type(&t.entity_type))
                .collect();
            forward::make_visible(
                self.inner.syncer.as_ref(),
                self.inner.store.as_ref(),
                &touched,
                VISIBILITY_WAIT,
            )
            .await;
        }
        (AnsweredBy::Site, site_response(answer))
    }
}

fn store_na(e: shotgun_cache_core::store::StoreError) -> NotAnswerable {
    NotAnswerable(format!("the store failed: {e}"))
}

fn site_response(answer: forward::SiteAnswer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut r = (status, answer.body).into_response();
    if let Some(ct) = answer
        .content_type
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    r
}

/// The `info` answer: the site's info, its version raised to at least [`MIN_VERSION`], and a
/// `shotgun_cache` key naming the cache, its version, the site and the types it serves.
pub(crate) fn info_answer(mut site: Json, site_url: &str, snap: &CatalogSnapshot) -> Json {
    let version: Vec<i64> = site
        .get("version")
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_i64).collect())
        .unwrap_or_default();
    if version.len() < 3 || version[..3] < MIN_VERSION[..] {
        site["version"] = json!(MIN_VERSION);
        site["full_version"] = json!([MIN_VERSION[0], MIN_VERSION[1], MIN_VERSION[2], 0]);
    }
    if site.get("api_max_entities_per_page").is_none() {
        site["api_max_entities_per_page"] = json!(500);
    }
    let types: Vec<&String> = snap.layouts.keys().collect();
    site["shotgun_cache"] = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "site": site_url,
        "cached_types": types,
    });
    site
}

/// The shared summarize behind the gRPC `Summarize` rpc: checks that the type and every field are
/// cached and served, fetches the matching rows and computes the summaries.
///
/// # Errors
/// [`QueryError::InvalidArgument`] for a summary or grouping the cache cannot answer exactly (the
/// message says why), and the usual type, field and store errors.
pub async fn summarize_cached(
    store: &dyn Store,
    snap: &CatalogSnapshot,
    entity_type: &str,
    filter: Filter,
    request: &SummarizeRequest,
) -> Result<SummaryResult, QueryError> {
    snap.check_served_type(entity_type)?;
    let schema = snap.schema()?;
    let mut data_types: Vec<(String, DataType)> = Vec::new();
    let mut fields = Vec::new();
    for f in request
        .summaries
        .iter()
        .map(|s| &s.field)
        .chain(request.grouping.iter().map(|g| &g.field))
    {
        if data_types.iter().any(|(k, _)| k == f) {
            continue;
        }
        if f == "id" {
            data_types.push((f.clone(), DataType::Number));
            continue;
        }
        let fp = shotgun_cache_core::filter::validate_path(schema, entity_type, f)?;
        snap.check_path_cached(entity_type, &fp, "summary")?;
        data_types.push((f.clone(), fp.leaf_type));
        fields.push(fp);
    }
    let lookup = |f: &str| data_types.iter().find(|(k, _)| k == f).map(|(_, t)| *t);
    summarize::check_supported(request, &lookup)
        .map_err(|e| QueryError::InvalidArgument(e.to_string()))?;
    let query = FindQuery {
        entity_type: entity_type.to_owned(),
        filter,
        fields,
        sorts: Vec::new(),
        offset: 0,
        limit: None,
        retired_only: false,
    };
    summarize_rows(store, schema, &query, request, &lookup).await
}

/// Matching rows a summary reads per store query.
const SUMMARY_PAGE: u64 = 20_000;

/// Answers `request` over the rows `query` matches (its sorts empty: id order).
///
/// Row counts alone are one store count ([`summarize::needs_only_row_count`]). Otherwise the rows
/// are read a page at a time (keyset on id, in the order one find would return them) and fed to a
/// [`summarize::Summarizer`], so memory follows the number of groups, not of rows: a summary over a
/// million shots held a million records (over a gigabyte) before. Each page is its own read, so a
/// write committed meanwhile is seen by the rows read after it; no row is read twice.
async fn summarize_rows(
    store: &dyn Store,
    schema: &SiteSchema,
    query: &FindQuery,
    request: &SummarizeRequest,
    lookup: &(dyn Fn(&str) -> Option<DataType> + Sync),
) -> Result<SummaryResult, QueryError> {
    summarize_rows_paged(store, schema, query, request, lookup, SUMMARY_PAGE).await
}

/// [`summarize_rows`] with `page` rows per store query.
async fn summarize_rows_paged(
    store: &dyn Store,
    schema: &SiteSchema,
    query: &FindQuery,
    request: &SummarizeRequest,
    lookup: &(dyn Fn(&str) -> Option<DataType> + Sync),
    page_rows: u64,
) -> Result<SummaryResult, QueryError> {
    use shotgun_cache_core::filter::{Condition, LogicalOp, Operand, Operator};
    if summarize::needs_only_row_count(request) {
        let n = store.count(&row_count_query(query)).await?;
        return Ok(summarize::summarize_row_count(request, n));
    }
    let mut summarizer = summarize::Summarizer::new(request, lookup)
        .map_err(|e| QueryError::InvalidArgument(e.to_string()))?;
    let id = shotgun_cache_core::filter::validate_path(schema, &query.entity_type, "id")?;
    let mut after = None;
    loop {
        let filter = match after {
            None => query.filter.clone(),
            Some(last) => Filter::Group {
                op: LogicalOp::And,
                children: vec![
                    query.filter.clone(),
                    Filter::Condition(Condition {
                        path: id.clone(),
                        operator: Operator::GreaterThan,
                        operand: Operand::One(Value::Int(last)),
                    }),
                ],
            },
        };
        let page = store
            .find(&FindQuery {
                filter,
                sorts: Vec::new(),
                offset: 0,
                limit: Some(page_rows.max(1)),
                ..query.clone()
            })
            .await?;
        for row in &page {
            summarizer.add(row);
        }
        match page.last() {
            Some(last) if page.len() as u64 == page_rows.max(1) => after = Some(last.id),
            _ => break,
        }
    }
    Ok(summarizer.finish())
}

/// The count of the rows a summary's find would fetch: a request of row counts only
/// ([`summarize::needs_only_row_count`]) is counted in the store, without holding every matching
/// row in memory.
fn row_count_query(q: &FindQuery) -> CountQuery {
    CountQuery {
        entity_type: q.entity_type.clone(),
        filter: q.filter.clone(),
        retired_only: q.retired_only,
        now: DateTime::now(),
    }
}

/// The gRPC `Summarize` rpc over the domain service: converts the request, resolves the filter with
/// the same validation as Find, and runs [`summarize_cached`].
///
/// # Errors
/// INVALID_ARGUMENT-class [`QueryError`]s for unknown summary or grouping types and for what the cache
/// cannot answer exactly; the usual type, field and store errors.
pub async fn summarize_grpc(
    svc: &crate::service::QueryService,
    req: &shotgun_cache_proto::v1::SummarizeRequest,
) -> Result<shotgun_cache_proto::v1::SummarizeResponse, QueryError> {
    use shotgun_cache_core::query::Direction;
    use shotgun_cache_core::summarize::{Grouping, GroupingType, SummaryField, SummaryType};
    use shotgun_cache_proto::v1 as pb;

    let mut request = SummarizeRequest::default();
    for (i, s) in req.summaries.iter().enumerate() {
        let kind = SummaryType::parse(&s.r#type).ok_or_else(|| {
            QueryError::InvalidArgument(format!(
                "summaries[{i}]: summary type {:?} for field {:?} must be one of: {}",
                s.r#type,
                s.field,
                SummaryType::ALL.map(SummaryType::as_str).join(", ")
            ))
        })?;
        request.summaries.push(SummaryField {
            field: s.field.clone(),
            kind,
        });
    }
    for (i, g) in req.grouping.iter().enumerate() {
        let t = if g.r#type.is_empty() {
            "exact"
        } else {
            g.r#type.as_str()
        };
        let kind = GroupingType::parse(t).ok_or_else(|| {
            QueryError::InvalidArgument(format!(
                "grouping[{i}]: grouping type {t:?} for field {:?} must be one of: {}",
                g.field,
                GroupingType::ALL.map(GroupingType::as_str).join(", ")
            ))
        })?;
        let direction = if g.direction == pb::SortDirection::Desc as i32 {
            Direction::Desc
        } else {
            Direction::Asc
        };
        request.grouping.push(Grouping {
            field: g.field.clone(),
            kind,
            direction,
        });
    }
    let snap = svc.catalog().snapshot();
    let raw = crate::convert::filter_from_pb(req.filter.as_ref())?;
    let filter =
        crate::service::QueryService::resolve_filter(&snap, &req.entity_type, raw.as_ref())?;
    let result = summarize_cached(
        svc.store().as_ref(),
        &snap,
        &req.entity_type,
        filter,
        &request,
    )
    .await?;
    Ok(pb::SummarizeResponse {
        summaries: summaries_to_pb(&result.summaries),
        groups: result.groups.iter().map(group_to_pb).collect(),
    })
}

fn summaries_to_pb(
    s: &[(String, shotgun_cache_core::model::Value)],
) -> std::collections::BTreeMap<String, shotgun_cache_proto::v1::Value> {
    s.iter()
        .map(|(k, v)| (k.clone(), crate::convert::value_to_pb(v)))
        .collect()
}

fn group_to_pb(g: &summarize::SummaryGroup) -> shotgun_cache_proto::v1::SummaryGroup {
    shotgun_cache_proto::v1::SummaryGroup {
        group_name: g.name.clone(),
        group_value: Some(crate::convert::value_to_pb(&g.value)),
        summaries: summaries_to_pb(&g.summaries),
        groups: g.groups.iter().map(group_to_pb).collect(),
    }
}

#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod tests;
