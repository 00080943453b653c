//! The Shotgun REST API v1 client: the only code that talks to the site (protocol §1).
//!
//! It authenticates with `client_credentials` (form-encoded), refreshes the access token before it
//! expires and on a 401, and retries 429 (honouring `Retry-After`), 502/503/504 and other 5xx,
//! timeouts and dropped connections with exponential backoff and full jitter. Records are parsed
//! from the REST shape (`attributes` + `relationships`, floats as strings, dotted keys) into typed
//! [`Entity`] values using the site schema. Every failure at this boundary is a [`SiteError`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use serde_json::{Value as Json, json};
use shotgun_cache_core::model::{DataType, Entity, EntityRef, SiteSchema, Value};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Errors at the site boundary.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SiteError {
    /// The site rejected the script credentials (not retried).
    #[error("authentication as script '{script}' failed: {message}")]
    Auth { script: String, message: String },
    /// A request the site answered with a 4xx other than 401/429 (not retried).
    #[error("site answered {status} to {what}: {message}")]
    Rejected {
        what: String,
        status: u16,
        message: String,
    },
    /// Retries were exhausted on 429/5xx/timeouts/connection errors.
    #[error("site unavailable for {what} after {attempts} attempts: {last}")]
    Unavailable {
        what: String,
        attempts: u32,
        last: String,
    },
    /// The answer did not have the expected shape.
    #[error("unexpected answer to {what}: {reason}")]
    Shape { what: String, reason: String },
}

impl SiteError {
    fn shape(what: &str, reason: impl Into<String>) -> SiteError {
        SiteError::Shape {
            what: what.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Which rows a search returns (`options.return_only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnOnly {
    Active,
    Retired,
}

impl ReturnOnly {
    fn as_str(self) -> &'static str {
        match self {
            ReturnOnly::Active => "active",
            ReturnOnly::Retired => "retired",
        }
    }
}

/// One EventLogEntry as the syncer needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: i64,
    pub event_type: String,
    pub attribute_name: Option<String>,
    pub meta: Json,
    /// The `entity` link (null once the entity is retired; use `meta` instead).
    pub entity: Option<EntityRef>,
    /// Unix seconds (server clock).
    pub created_at: i64,
    /// Who wrote it (`user`), if returned.
    pub user: Option<EntityRef>,
}

/// Connection settings of the client. `Debug` never shows the key.
#[derive(Clone)]
pub struct SiteOptions {
    pub url: String,
    pub script_name: String,
    pub script_key: String,
    pub request_timeout: Duration,
    /// Attempts per request (the first included) before giving up with [`SiteError::Unavailable`].
    pub max_attempts: u32,
    /// First backoff delay; doubled per attempt up to `max_backoff`, with full jitter.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl std::fmt::Debug for SiteOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteOptions")
            .field("url", &self.url)
            .field("script_name", &self.script_name)
            .field("script_key", &"***")
            .field("request_timeout", &self.request_timeout)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl SiteOptions {
    pub fn new(
        url: &str,
        script_name: &str,
        script_key: &str,
        request_timeout: Duration,
    ) -> SiteOptions {
        SiteOptions {
            url: url.trim_end_matches('/').to_owned(),
            script_name: script_name.to_owned(),
            script_key: script_key.to_owned(),
            request_timeout,
            max_attempts: 8,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

struct Token {
    access: String,
    /// Refresh when this instant passes (90 % of `expires_in`).
    refresh_at: Instant,
}

/// The REST client. Cheap to clone; clones share the token and the counters.
#[derive(Clone)]
pub struct Site {
    http: reqwest::Client,
    opts: Arc<SiteOptions>,
    token: Arc<Mutex<Option<Token>>>,
    retries: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

/// What one attempt produced.
enum Attempt<T> {
    Done(T),
    /// Retry after this delay (or the backoff when `None`); the string says why.
    Retry(Option<Duration>, String),
    /// The token was refused: drop it and retry at once.
    Reauth(String),
}

const ARRAY_MIME: &str = "application/vnd+shotgun.api3_array+json";
const HASH_MIME: &str = "application/vnd+shotgun.api3_hash+json";

impl Site {
    pub fn new(opts: SiteOptions) -> Result<Site, SiteError> {
        let http = reqwest::Client::builder()
            .timeout(opts.request_timeout)
            .connect_timeout(opts.request_timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| SiteError::shape("client setup", e.to_string()))?;
        Ok(Site {
            http,
            opts: Arc::new(opts),
            token: Arc::new(Mutex::new(None)),
            retries: Arc::new(AtomicU64::new(0)),
            requests: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Requests retried since start (all causes).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Requests sent since start (attempts, including retries).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .opts
            .base_backoff
            .saturating_mul(1u32 << attempt.min(16));
        let cap = exp.min(self.opts.max_backoff);
        let ms = rand::rng().random_range(0..=cap.as_millis().max(1) as u64);
        Duration::from_millis(ms)
    }

    async fn authenticate(&self) -> Result<String, SiteError> {
        let what = "POST /api/v1/auth/access_token";
        let url = format!("{}/api/v1/auth/access_token", self.opts.url);
        let mut last = String::new();
        for attempt in 0..self.opts.max_attempts {
            if attempt > 0 {
                self.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(self.backoff(attempt)).await;
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let resp = self
                .http
                .post(&url)
                .header("Accept", "application/json")
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", self.opts.script_name.as_str()),
                    ("client_secret", self.opts.script_key.as_str()),
                ])
                .send()
                .await;
            let resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    last = describe_reqwest(&e);
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let retry_after = retry_after(&resp);
            let body = resp.text().await.unwrap_or_default();
            if status == 429 || status >= 500 {
                last = format!("HTTP {status}");
                if let Some(d) = retry_after {
                    tokio::time::sleep(d).await;
                }
                continue;
            }
            if status != 200 {
                return Err(SiteError::Auth {
                    script: self.opts.script_name.clone(),
                    message: error_title(&body, status),
                });
            }
            let v: Json =
                serde_json::from_str(&body).map_err(|e| SiteError::shape(what, e.to_string()))?;
            let access = v
                .get("access_token")
                .and_then(Json::as_str)
                .ok_or_else(|| SiteError::shape(what, "no access_token"))?
                .to_owned();
            let expires = v
                .get("expires_in")
                .and_then(Json::as_u64)
                .unwrap_or(600)
                .max(2);
            let refresh_at = Instant::now() + Duration::from_millis(expires * 900);
            *self.token.lock().await = Some(Token {
                access: access.clone(),
                refresh_at,
            });
            return Ok(access);
        }
        Err(SiteError::Unavailable {
            what: what.to_owned(),
            attempts: self.opts.max_attempts,
            last,
        })
    }

    async fn bearer(&self) -> Result<String, SiteError> {
        {
            let guard = self.token.lock().await;
            if let Some(t) = guard.as_ref()
                && Instant::now() < t.refresh_at
            {
                return Ok(t.access.clone());
            }
        }
        self.authenticate().await
    }

    /// Sends one request with auth, retries and backoff; returns the decoded JSON body.
    async fn call(
        &self,
        what: &str,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<Json, SiteError> {
        self.call_as(what, build, decode_json).await
    }

    /// [`Site::call`] with the success body decoded by `decode` (an error from it is an
    /// undecodable body, retried like a dropped connection).
    async fn call_as<T>(
        &self,
        what: &str,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
        decode: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, SiteError> {
        let mut last = String::new();
        let mut reauths = 0;
        let mut attempt = 0;
        while attempt < self.opts.max_attempts {
            let token = self.bearer().await?;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let outcome = match build(&self.http, &token)
                .header("Accept", "application/json")
                .bearer_auth(&token)
                .send()
                .await
            {
                Err(e) => Attempt::Retry(None, describe_reqwest(&e)),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let ra = retry_after(&resp);
                    match resp.text().await {
                        Err(e) => Attempt::Retry(
                            None,
                            format!("reading the body: {}", describe_reqwest(&e)),
                        ),
                        Ok(body) => match status {
                            200..=299 => match decode(&body) {
                                Ok(v) => Attempt::Done(v),
                                // A truncated body (dropped connection mid-answer) is retried.
                                Err(e) => Attempt::Retry(None, format!("undecodable body: {e}")),
                            },
                            401 => Attempt::Reauth(error_title(&body, status)),
                            429 => Attempt::Retry(ra, "HTTP 429".into()),
                            500..=599 => Attempt::Retry(
                                ra,
                                format!("HTTP {status}: {}", error_title(&body, status)),
                            ),
                            _ => {
                                return Err(SiteError::Rejected {
                                    what: what.to_owned(),
                                    status,
                                    message: error_title(&body, status),
                                });
                            }
                        },
                    }
                }
            };
            match outcome {
                Attempt::Done(v) => return Ok(v),
                Attempt::Reauth(msg) => {
                    *self.token.lock().await = None;
                    reauths += 1;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    if reauths > 3 {
                        return Err(SiteError::Auth {
                            script: self.opts.script_name.clone(),
                            message: msg,
                        });
                    }
                }
                Attempt::Retry(after, why) => {
                    attempt += 1;
                    last = why;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    if attempt < self.opts.max_attempts {
                        let delay = after
                            .map(|d| d.min(Duration::from_secs(60)))
                            .unwrap_or_else(|| self.backoff(attempt));
                        tracing::debug!(what, attempt, error = %last, delay_ms = delay.as_millis() as u64, "retrying site request");
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }
        Err(SiteError::Unavailable {
            what: what.to_owned(),
            attempts: self.opts.max_attempts,
            last,
        })
    }

    /// `GET /api/v1/` (server info; no auth needed, but sending it is harmless).
    pub async fn info(&self) -> Result<Json, SiteError> {
        let url = format!("{}/api/v1/", self.opts.url);
        self.call("GET /api/v1/", |c, _| c.get(&url)).await
    }

    /// Reads the whole site schema: the type list, then each type's fields.
    pub async fn schema(&self) -> Result<SiteSchema, SiteError> {
        let url = format!("{}/api/v1/schema", self.opts.url);
        let entity_read = self.call("GET /api/v1/schema", |c, _| c.get(&url)).await?;
        let types = entity_read
            .get("data")
            .and_then(Json::as_object)
            .ok_or_else(|| SiteError::shape("GET /api/v1/schema", "no data object"))?
            .clone();
        let mut schema_read = serde_json::Map::new();
        for type_name in types.keys() {
            let what = format!("GET /api/v1/schema/{type_name}/fields");
            let url = format!("{}/api/v1/schema/{type_name}/fields", self.opts.url);
            let v = self.call(&what, |c, _| c.get(&url)).await?;
            let fields = v
                .get("data")
                .cloned()
                .ok_or_else(|| SiteError::shape(&what, "no data object"))?;
            schema_read.insert(type_name.clone(), fields);
        }
        SiteSchema::from_json(&Json::Object(schema_read), Some(&Json::Object(types)))
            .map_err(|e| SiteError::shape("schema", e.to_string()))
    }

    /// One `_search` page: raw REST records.
    pub async fn search_raw(
        &self,
        entity_type: &str,
        filters: &Json,
        fields: &[String],
        sort: &str,
        page_size: u32,
        return_only: ReturnOnly,
    ) -> Result<Vec<Json>, SiteError> {
        let v = self
            .search_as(
                entity_type,
                filters,
                fields,
                sort,
                page_size,
                return_only,
                decode_json,
            )
            .await?;
        data_array(&format!("POST /api/v1/entity/{entity_type}/_search"), v)
    }

    /// One `_search` page, its body decoded by `decode`.
    #[allow(clippy::too_many_arguments)]
    async fn search_as<T>(
        &self,
        entity_type: &str,
        filters: &Json,
        fields: &[String],
        sort: &str,
        page_size: u32,
        return_only: ReturnOnly,
        decode: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, SiteError> {
        let what = format!("POST /api/v1/entity/{entity_type}/_search");
        let url = format!("{}/api/v1/entity/{entity_type}/_search", self.opts.url);
        let mime = if filters.is_object() {
            HASH_MIME
        } else {
            ARRAY_MIME
        };
        let body = json!({
            "filters": filters,
            "fields": fields.join(","),
            "sort": sort,
            "page": {"size": page_size, "number": 1},
            "options": {"return_only": return_only.as_str(), "include_archived_projects": true},
        });
        let body = body.to_string();
        self.call_as(
            &what,
            |c, _| c.post(&url).header("Content-Type", mime).body(body.clone()),
            decode,
        )
        .await
    }

    /// Reads entities of one type by keyset: ids `> after` (and `<= upto` when given), in id order,
    /// at most `page_size`, parsed with `fields` (the cached fields plus the display field).
    #[allow(clippy::too_many_arguments)]
    pub async fn page(
        &self,
        schema: &SiteSchema,
        entity_type: &str,
        fields: &[String],
        extra_filter: Option<&Json>,
        after: i64,
        upto: Option<i64>,
        page_size: u32,
        return_only: ReturnOnly,
    ) -> Result<Vec<Entity>, SiteError> {
        let mut conds = vec![json!(["id", "greater_than", after])];
        if let Some(hi) = upto {
            conds.push(json!(["id", "less_than", hi.saturating_add(1)]));
        }
        let filters = combine(conds, extra_filter);
        let raw = self
            .search_raw(entity_type, &filters, fields, "id", page_size, return_only)
            .await?;
        raw.iter()
            .map(|r| {
                parse_record(
                    schema,
                    entity_type,
                    fields,
                    r,
                    return_only == ReturnOnly::Retired,
                )
            })
            .collect()
    }

    /// Reads entities by id (both live and retired), with an optional extra filter applied by the site.
    pub async fn read_ids(
        &self,
        schema: &SiteSchema,
        entity_type: &str,
        fields: &[String],
        extra_filter: Option<&Json>,
        ids: &[i64],
    ) -> Result<Vec<Entity>, SiteError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(500) {
            // Live rows first; only the ids not found live are asked for as tombstones.
            let mut wanted: Vec<i64> = chunk.to_vec();
            for ro in [ReturnOnly::Active, ReturnOnly::Retired] {
                if wanted.is_empty() {
                    break;
                }
                let filters = combine(vec![json!(["id", "in", wanted])], extra_filter);
                let raw = self
                    .search_raw(entity_type, &filters, fields, "id", 500, ro)
                    .await?;
                for r in &raw {
                    let e =
                        parse_record(schema, entity_type, fields, r, ro == ReturnOnly::Retired)?;
                    wanted.retain(|id| *id != e.id);
                    out.push(e);
                }
            }
        }
        Ok(out)
    }

    /// Ids of rows (live) whose link field `field` points at any of `targets`.
    pub async fn linking_ids(
        &self,
        entity_type: &str,
        field: &str,
        targets: &[EntityRef],
    ) -> Result<Vec<i64>, SiteError> {
        let mut out = Vec::new();
        for chunk in targets.chunks(100) {
            let links: Vec<Json> = chunk
                .iter()
                .map(|t| json!({"type": t.entity_type, "id": t.id}))
                .collect();
            let mut after = 0;
            loop {
                let filters = json!([[field, "in", links], ["id", "greater_than", after]]);
                let raw = self
                    .search_raw(
                        entity_type,
                        &filters,
                        &["id".to_owned()],
                        "id",
                        500,
                        ReturnOnly::Active,
                    )
                    .await?;
                let n = raw.len();
                for r in &raw {
                    if let Some(id) = r.get("id").and_then(Json::as_i64) {
                        after = after.max(id);
                        out.push(id);
                    }
                }
                if n < 500 {
                    break;
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// One page of the rows changed since `since` (unix seconds, inclusive), live or retired, with
    /// ids `> after`, in id order (keyset paging: the caller passes the last id of the previous page).
    #[allow(clippy::too_many_arguments)]
    pub async fn updated_since_page(
        &self,
        schema: &SiteSchema,
        entity_type: &str,
        fields: &[String],
        extra_filter: Option<&Json>,
        since: i64,
        after: i64,
        page_size: u32,
        return_only: ReturnOnly,
    ) -> Result<Vec<Entity>, SiteError> {
        let since = shotgun_cache_core::model::DateTime(since.saturating_sub(1)).to_string();
        let conds = vec![
            json!(["updated_at", "greater_than", since]),
            json!(["id", "greater_than", after]),
        ];
        let filters = combine(conds, extra_filter);
        let raw = self
            .search_raw(entity_type, &filters, fields, "id", page_size, return_only)
            .await?;
        raw.iter()
            .map(|r| {
                parse_record(
                    schema,
                    entity_type,
                    fields,
                    r,
                    return_only == ReturnOnly::Retired,
                )
            })
            .collect()
    }

    /// Every id of a type (live or retired as asked), in order, with an optional extra filter.
    pub async fn all_ids(
        &self,
        entity_type: &str,
        extra_filter: Option<&Json>,
        page_size: u32,
        return_only: ReturnOnly,
    ) -> Result<Vec<i64>, SiteError> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let filters = combine(vec![json!(["id", "greater_than", after])], extra_filter);
            let raw = self
                .search_raw(
                    entity_type,
                    &filters,
                    &["id".to_owned()],
                    "id",
                    page_size,
                    return_only,
                )
                .await?;
            let n = raw.len();
            for r in &raw {
                let id = r
                    .get("id")
                    .and_then(Json::as_i64)
                    .ok_or_else(|| SiteError::shape("id scan", "record without id"))?;
                after = after.max(id);
                out.push(id);
            }
            if n < page_size as usize {
                return Ok(out);
            }
        }
    }

    /// The highest id of a type (live or retired as asked), or 0 when there are none.
    pub async fn max_id(
        &self,
        entity_type: &str,
        extra_filter: Option<&Json>,
        return_only: ReturnOnly,
    ) -> Result<i64, SiteError> {
        let filters = combine(Vec::new(), extra_filter);
        let raw = self
            .search_raw(
                entity_type,
                &filters,
                &["id".to_owned()],
                "-id",
                1,
                return_only,
            )
            .await?;
        Ok(raw
            .first()
            .and_then(|r| r.get("id"))
            .and_then(Json::as_i64)
            .unwrap_or(0))
    }

    /// The number of rows matching the filter, via `_summarize`, or `None` when the site cannot say.
    pub async fn count(
        &self,
        entity_type: &str,
        extra_filter: Option<&Json>,
        return_only: ReturnOnly,
    ) -> Option<u64> {
        let what = format!("POST /api/v1/entity/{entity_type}/_summarize");
        let url = format!("{}/api/v1/entity/{entity_type}/_summarize", self.opts.url);
        let filters = combine(Vec::new(), extra_filter);
        let mime = if filters.is_object() {
            HASH_MIME
        } else {
            ARRAY_MIME
        };
        let mut body =
            json!({"filters": filters, "summary_fields": [{"field": "id", "type": "count"}]});
        if return_only == ReturnOnly::Retired {
            body["options"] = json!({"return_only": "retired"});
        }
        let body = body.to_string();
        let v = self
            .call(&what, |c, _| {
                c.post(&url).header("Content-Type", mime).body(body.clone())
            })
            .await
            .ok()?;
        let s = v.get("data").unwrap_or(&v).get("summaries")?.get("id")?;
        s.as_u64()
            .or_else(|| s.as_str().and_then(|x| x.parse().ok()))
    }

    /// EventLogEntries with `id > after`, in id order, at most `limit`.
    pub async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<Event>, SiteError> {
        let filters = json!([["id", "greater_than", after]]);
        self.events(&filters, limit).await
    }

    /// EventLogEntries with the given ids (those that exist), in id order.
    pub async fn events_in(&self, ids: &[i64]) -> Result<Vec<Event>, SiteError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(500) {
            let filters = json!([["id", "in", chunk]]);
            out.extend(self.events(&filters, chunk.len() as u32).await?);
        }
        Ok(out)
    }

    /// The newest EventLogEntry id (0 when the log is empty).
    pub async fn newest_event_id(&self) -> Result<i64, SiteError> {
        let raw = self
            .search_raw(
                "EventLogEntry",
                &json!([]),
                &["id".to_owned()],
                "-id",
                1,
                ReturnOnly::Active,
            )
            .await?;
        Ok(raw
            .first()
            .and_then(|r| r.get("id"))
            .and_then(Json::as_i64)
            .unwrap_or(0))
    }

    /// The oldest readable EventLogEntry id (0 when the log is empty).
    pub async fn oldest_event_id(&self) -> Result<i64, SiteError> {
        let raw = self
            .search_raw(
                "EventLogEntry",
                &json!([]),
                &["id".to_owned()],
                "id",
                1,
                ReturnOnly::Active,
            )
            .await?;
        Ok(raw
            .first()
            .and_then(|r| r.get("id"))
            .and_then(Json::as_i64)
            .unwrap_or(0))
    }

    async fn events(&self, filters: &Json, limit: u32) -> Result<Vec<Event>, SiteError> {
        let fields: Vec<String> = [
            "id",
            "event_type",
            "attribute_name",
            "meta",
            "entity",
            "created_at",
            "user",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let page = self
            .search_as(
                "EventLogEntry",
                filters,
                &fields,
                "id",
                limit.clamp(1, 5000),
                ReturnOnly::Active,
                decode_event_page,
            )
            .await?;
        match page {
            EventPage::Wire(p) => p.data.into_iter().map(event_from_wire).collect(),
            EventPage::Json(v) => data_array("POST /api/v1/entity/EventLogEntry/_search", v)?
                .into_iter()
                .map(parse_event_owned)
                .collect(),
        }
    }
}

/// A body as a `Json` tree.
fn decode_json(body: &str) -> Result<Json, String> {
    serde_json::from_str(body).map_err(|e| e.to_string())
}

/// The `data` array of a `_search` answer.
fn data_array(what: &str, v: Json) -> Result<Vec<Json>, SiteError> {
    match v {
        Json::Object(mut m) => match m.remove("data") {
            Some(Json::Array(a)) => Ok(a),
            _ => Err(SiteError::shape(what, "no data array")),
        },
        _ => Err(SiteError::shape(what, "no data array")),
    }
}

/// An EventLogEntry page, decoded straight into [`EventWire`] records when it has the shape REST
/// gives (the catch-up reads millions of them: a `Json` tree of every page was a tenth of the
/// syncer's CPU), or as a `Json` tree for [`parse_event_owned`] when it has any other shape.
enum EventPage {
    Wire(EventPageWire),
    Json(Json),
}

fn decode_event_page(body: &str) -> Result<EventPage, String> {
    match serde_json::from_str::<EventPageWire>(body) {
        Ok(p) => Ok(EventPage::Wire(p)),
        Err(_) => decode_json(body).map(EventPage::Json),
    }
}

#[derive(serde::Deserialize)]
struct EventPageWire {
    data: Vec<EventWire>,
}

/// The keys of an EventLogEntry record that [`parse_event`] reads, each `None` when absent and
/// `Some(Json::Null)` when null (the distinction `parse_event`'s lookups make). A record whose
/// `attributes` or `relationships` is neither an object nor null fails to decode, and its page
/// goes the `Json` way.
#[derive(serde::Deserialize)]
struct EventWire {
    id: Json,
    #[serde(default)]
    attributes: Option<EventFieldsWire>,
    #[serde(default)]
    relationships: Option<EventLinksWire>,
    /// The same keys at the top level (serde buffers only the top level's other keys for this,
    /// `type` and `links` in REST: the large `attributes` and `relationships` decode directly).
    #[serde(flatten)]
    top: EventFieldsWire,
}

#[derive(serde::Deserialize, Default)]
struct EventFieldsWire {
    #[serde(default, deserialize_with = "present")]
    event_type: Option<Json>,
    #[serde(default, deserialize_with = "present")]
    attribute_name: Option<Json>,
    #[serde(default, deserialize_with = "present")]
    meta: Option<Json>,
    #[serde(default, deserialize_with = "present")]
    created_at: Option<Json>,
    #[serde(default, deserialize_with = "present")]
    entity: Option<Json>,
    #[serde(default, deserialize_with = "present")]
    user: Option<Json>,
}

#[derive(serde::Deserialize)]
struct EventLinksWire {
    #[serde(default, deserialize_with = "present")]
    entity: Option<Json>,
    #[serde(default, deserialize_with = "present")]
    user: Option<Json>,
}

/// A present key as `Some`, null included (serde's `Option` would make a null `None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Json>, D::Error> {
    <Json as serde::Deserialize>::deserialize(d).map(Some)
}

/// An [`Event`] from a decoded record, by exactly the rules of [`parse_event_owned`].
fn event_from_wire(w: EventWire) -> Result<Event, SiteError> {
    let what = "EventLogEntry record";
    let id =
        w.id.as_i64()
            .ok_or_else(|| SiteError::shape(what, "no integer id"))?;
    // `parse_event` looks a key up in `attributes` (when it is an object), then at the top level.
    let a = w.attributes.unwrap_or_default();
    let t = w.top;
    let event_type = a.event_type.or(t.event_type);
    let attribute_name = a.attribute_name.or(t.attribute_name);
    let meta = a.meta.or(t.meta);
    let created_at = a.created_at.or(t.created_at);
    let entity_attr = a.entity.or(t.entity);
    let user_attr = a.user.or(t.user);
    let (rel_entity, rel_user) = match w.relationships {
        Some(r) => (r.entity, r.user),
        None => (None, None),
    };
    let link = |rel: Option<Json>, fallback: Option<Json>| {
        rel.map(|r| match r {
            Json::Object(mut m) if m.contains_key("data") => m.remove("data").unwrap_or_default(),
            other => other,
        })
        .or(fallback)
        .filter(|v| !v.is_null())
        .and_then(|v| EntityRef::from_json(&v).ok())
    };
    Ok(Event {
        id,
        event_type: event_type
            .as_ref()
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_owned(),
        attribute_name: attribute_name
            .as_ref()
            .and_then(Json::as_str)
            .map(str::to_owned),
        meta: match meta {
            Some(Json::String(s)) => serde_json::from_str(&s).unwrap_or(Json::Null),
            Some(v) => v,
            None => Json::Null,
        },
        entity: link(rel_entity, entity_attr),
        created_at: created_at
            .as_ref()
            .and_then(Json::as_str)
            .and_then(shotgun_cache_core::model::DateTime::parse)
            .map(|t| t.0)
            .unwrap_or(0),
        user: link(rel_user, user_attr),
    })
}

/// ANDs extra conditions with an optional cache filter (array or hash form).
fn combine(mut conds: Vec<Json>, extra: Option<&Json>) -> Json {
    match extra {
        None => Json::Array(conds),
        Some(Json::Array(a)) => {
            conds.extend(a.iter().cloned());
            Json::Array(conds)
        }
        Some(hash) => {
            let mut c: Vec<Json> = conds;
            c.push(hash.clone());
            json!({"logical_operator": "and", "conditions": c})
        }
    }
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("timeout: {e}")
    } else if e.is_connect() {
        format!("connection failed: {e}")
    } else {
        e.to_string()
    }
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get("retry-after")?.to_str().ok()?;
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// The `title` of the first REST error, or a short body excerpt.
fn error_title(body: &str, status: u16) -> String {
    if let Ok(v) = serde_json::from_str::<Json>(body)
        && let Some(t) = v
            .get("errors")
            .and_then(|e| e.get(0))
            .and_then(|e| e.get("title"))
            .and_then(Json::as_str)
    {
        return t.to_owned();
    }
    let mut s: String = body.chars().take(200).collect();
    if s.is_empty() {
        s = format!("HTTP {status}");
    }
    s
}

/// Values from the site that did not fit their field's data type (cached as empty), since start.
pub static BAD_VALUES: AtomicU64 = AtomicU64::new(0);

/// Parses one REST record into an entity with the requested fields (unset fields get their
/// empty value). `retired` is what the query asked for (`return_only`).
pub fn parse_record(
    schema: &SiteSchema,
    entity_type: &str,
    fields: &[String],
    rec: &Json,
    retired: bool,
) -> Result<Entity, SiteError> {
    let what = format!("{entity_type} record");
    let id = rec
        .get("id")
        .and_then(Json::as_i64)
        .ok_or_else(|| SiteError::shape(&what, "record without an integer id"))?;
    let mut e = Entity::new(entity_type, id);
    e.retired = retired;
    let attrs = rec.get("attributes").and_then(Json::as_object);
    let rels = rec.get("relationships").and_then(Json::as_object);
    let ty = schema.entity(entity_type);
    for f in fields {
        if f == "id" {
            continue;
        }
        let Some(fs) = ty.and_then(|t| t.field(f)) else {
            continue;
        };
        let raw = if fs.data_type.is_link() {
            rels.and_then(|r| r.get(f))
                .map(|r| r.get("data").unwrap_or(r))
                .or_else(|| attrs.and_then(|a| a.get(f)))
        } else {
            attrs.and_then(|a| a.get(f)).or_else(|| {
                rels.and_then(|r| r.get(f))
                    .map(|r| r.get("data").unwrap_or(r))
            })
        };
        let value = match raw {
            None | Some(Json::Null) => Value::empty_for(fs.data_type),
            // REST renders image fields as signed, expiring URLs; the cache keeps the attachment
            // id (what events carry), taken from the URL's `/files/<id>/` segment when present.
            Some(Json::String(url)) if fs.data_type == DataType::Image => {
                attachment_id(url).map(Value::Int).unwrap_or(Value::Null)
            }
            // A value that does not fit its field's data type must not stop the import or the
            // follower: the field reads empty, and the problem is logged and counted.
            Some(v) => match Value::from_json(fs.data_type, v) {
                Ok(v) => v,
                Err(err) => {
                    BAD_VALUES.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        entity_type,
                        id,
                        field = %f,
                        data_type = fs.data_type.as_str(),
                        error = %err,
                        "a value from the site does not fit its field; cached as empty"
                    );
                    Value::empty_for(fs.data_type)
                }
            },
        };
        e.fields.insert(f.clone(), value);
    }
    let display_field = ty.and_then(|t| t.display_field());
    e.display_name = display_field
        .and_then(|df| e.fields.get(df))
        .and_then(|v| match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        })
        .or_else(|| {
            attrs
                .and_then(|a| a.get("cached_display_name"))
                .and_then(Json::as_str)
                .map(str::to_owned)
        });
    Ok(e)
}

/// The attachment id in an image URL (`.../files/<id>/...`), if any.
pub fn attachment_id(url: &str) -> Option<i64> {
    let rest = url.split("/files/").nth(1)?;
    rest.split(['/', '?']).next()?.parse().ok()
}

/// Parses one EventLogEntry record, taking its `meta` without a copy.
pub fn parse_event_owned(mut rec: Json) -> Result<Event, SiteError> {
    let meta = rec
        .get_mut("attributes")
        .and_then(|a| a.get_mut("meta"))
        .map(Json::take);
    let mut ev = parse_event(&rec)?;
    match meta {
        Some(Json::String(s)) => ev.meta = serde_json::from_str(&s).unwrap_or(Json::Null),
        Some(Json::Null) | None => {}
        Some(v) => ev.meta = v,
    }
    Ok(ev)
}

/// Parses one EventLogEntry record.
pub fn parse_event(rec: &Json) -> Result<Event, SiteError> {
    let what = "EventLogEntry record";
    let id = rec
        .get("id")
        .and_then(Json::as_i64)
        .ok_or_else(|| SiteError::shape(what, "no integer id"))?;
    let attrs = rec.get("attributes").and_then(Json::as_object);
    let get = |k: &str| attrs.and_then(|a| a.get(k)).or_else(|| rec.get(k));
    let event_type = get("event_type")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_owned();
    let attribute_name = get("attribute_name")
        .and_then(Json::as_str)
        .map(str::to_owned);
    let meta = match get("meta") {
        Some(Json::String(s)) => serde_json::from_str(s).unwrap_or(Json::Null),
        Some(v) => v.clone(),
        None => Json::Null,
    };
    let entity = rec
        .get("relationships")
        .and_then(|r| r.get("entity"))
        .map(|r| r.get("data").unwrap_or(r))
        .or_else(|| get("entity"))
        .filter(|v| !v.is_null())
        .and_then(|v| EntityRef::from_json(v).ok());
    let user = rec
        .get("relationships")
        .and_then(|r| r.get("user"))
        .map(|r| r.get("data").unwrap_or(r))
        .or_else(|| get("user"))
        .filter(|v| !v.is_null())
        .and_then(|v| EntityRef::from_json(v).ok());
    let created_at = get("created_at")
        .and_then(Json::as_str)
        .and_then(shotgun_cache_core::model::DateTime::parse)
        .map(|t| t.0)
        .unwrap_or(0);
    Ok(Event {
        id,
        event_type,
        attribute_name,
        meta,
        entity,
        created_at,
        user,
    })
}

/// A value from an event's `meta` (`new_value`, `added`, `removed`) typed for a field.
pub fn meta_value(
    data_type: DataType,
    v: &Json,
) -> Result<Value, shotgun_cache_core::model::ValueError> {
    // Event meta writes datetimes as `YYYY-MM-DD HH:MM:SS UTC`; `DateTime::parse` accepts it.
    Value::from_json(data_type, v)
}

/// Links from a meta `added`/`removed` list.
pub fn meta_links(v: Option<&Json>) -> Vec<EntityRef> {
    v.and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| EntityRef::from_json(x).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Fields to request for a type: the cached ones plus its display field.
pub fn request_fields(schema: &SiteSchema, entity_type: &str, cached: &[String]) -> Vec<String> {
    let mut out: Vec<String> = cached.to_vec();
    if let Some(df) = schema.entity(entity_type).and_then(|t| t.display_field())
        && !out.iter().any(|f| f == df)
    {
        out.push(df.to_owned());
    }
    out
}

/// A map from entity id to its record, for callers that merge results.
pub fn by_id(entities: Vec<Entity>) -> BTreeMap<i64, Entity> {
    entities.into_iter().map(|e| (e.id, e)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ways of reading an event page (straight into `EventWire`s, and as a `Json` tree for
    /// `parse_event_owned`) give the same events, for the REST shape and for the odd ones.
    #[test]
    fn a_decoded_event_page_reads_as_the_json_tree_does() {
        let records = vec![
            // REST as the site writes it: meta an object, links under relationships.data.
            json!({"type": "EventLogEntry", "id": 11, "links": {"self": "/x"},
                "attributes": {"event_type": "Shotgun_Shot_Change", "attribute_name": "code",
                    "meta": {"type": "attribute_change", "new_value": "a", "entity_id": 3},
                    "created_at": "2024-01-02T03:04:05Z"},
                "relationships": {"entity": {"data": {"type": "Shot", "id": 3, "name": "a"},
                    "links": {"related": "/s"}}, "user": {"data": {"type": "ApiUser", "id": 1}}}}),
            // meta as JSON text, a retired entity (null link), no user.
            json!({"id": 12, "attributes": {"event_type": "Shotgun_Shot_Retirement",
                "attribute_name": null, "meta": "{\"entity_id\": 3, \"retirement_date\": \"x\"}",
                "created_at": "2024-01-02 03:04:05 UTC"},
                "relationships": {"entity": {"data": null}}}),
            // No relationships: links and fields in attributes, some at the top level.
            json!({"id": 13, "event_type": "top", "attributes": {"meta": null,
                "entity": {"type": "Asset", "id": 4}}, "user": {"type": "HumanUser", "id": 2}}),
            // A relationship without data (the link itself), attributes null, odd types.
            json!({"id": 14, "attributes": null, "relationships": {"entity": {"type": "Shot", "id": 5},
                "user": null}, "meta": "not json", "created_at": 7, "attribute_name": 3}),
            // A link refused by EntityRef::from_json, and an attribute null over a top-level one.
            json!({"id": 15, "attributes": {"event_type": null, "entity": {"type": "Shot"}},
                "event_type": "ignored", "relationships": {}}),
        ];
        let body = json!({"data": records, "links": {"self": "/p"}}).to_string();
        let Ok(EventPage::Wire(page)) = decode_event_page(&body) else {
            panic!("the page did not decode into EventWire records");
        };
        let wire: Vec<Event> = page
            .data
            .into_iter()
            .map(event_from_wire)
            .collect::<Result<_, _>>()
            .expect("wire events");
        let tree: Vec<Event> = records
            .into_iter()
            .map(parse_event_owned)
            .collect::<Result<_, _>>()
            .expect("tree events");
        assert_eq!(wire, tree);
        assert_eq!(
            wire[0].entity,
            Some(EntityRef {
                entity_type: "Shot".into(),
                id: 3,
                name: Some("a".into()),
            })
        );
        assert_eq!(wire[1].meta["entity_id"], 3);
        assert_eq!(wire[2].event_type, "top");
        assert_eq!(wire[3].entity.as_ref().map(|e| e.id), Some(5));
        assert_eq!(wire[4].event_type, "");

        // A record the typed decoder refuses (attributes a string, id a string) sends the page
        // the Json way, with the same outcome as before: the bad id is a shape error.
        let odd = json!({"data": [{"id": 16, "attributes": "x"}]}).to_string();
        assert!(matches!(decode_event_page(&odd), Ok(EventPage::Json(_))));
        let bad = json!({"data": [{"id": "16"}]}).to_string();
        let Ok(EventPage::Wire(p)) = decode_event_page(&bad) else {
            panic!("a string id still decodes (as Json)");
        };
        assert!(p.data.into_iter().map(event_from_wire).all(|e| e.is_err()));
        assert!(
            decode_event_page("{\"data\": [").is_err(),
            "a truncated body is an error"
        );
    }

    #[test]
    fn options_never_show_the_key() {
        let o = SiteOptions::new("https://x/", "s", "topsecret", Duration::from_secs(1));
        assert!(!format!("{o:?}").contains("topsecret"));
        assert_eq!(o.url, "https://x");
    }

    #[test]
    fn records_parse_attributes_relationships_and_quirks() {
        let schema = SiteSchema::from_json(
            &json!({"Version": {
                "code": {"data_type": {"value": "text"}}, "sg_rate": {"data_type": {"value": "float"}},
                "entity": {"data_type": {"value": "entity"}}, "playlists": {"data_type": {"value": "multi_entity"}},
                "image": {"data_type": {"value": "image"}}, "frame_count": {"data_type": {"value": "number"}}}}),
            None,
        )
        .expect("schema");
        let rec = json!({"type": "Version", "id": 17, "attributes": {"code": "v001", "sg_rate": "0.040000", "frame_count": "abc",
            "image": "http://m/files/42/t.jpg?X-Amz-Expires=900"},
            "relationships": {"entity": {"data": {"type": "Shot", "id": 3, "name": "sh010"}}, "playlists": {"data": []}}});
        let fields: Vec<String> = [
            "code",
            "sg_rate",
            "entity",
            "playlists",
            "image",
            "frame_count",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let e = parse_record(&schema, "Version", &fields, &rec, false).expect("parses");
        assert_eq!(e.fields["code"], Value::Text("v001".into()));
        assert_eq!(e.fields["sg_rate"], Value::Float(0.04));
        assert_eq!(
            e.fields["entity"],
            Value::Entity(EntityRef {
                entity_type: "Shot".into(),
                id: 3,
                name: Some("sh010".into())
            })
        );
        assert_eq!(e.fields["playlists"], Value::MultiEntity(vec![]));
        assert_eq!(e.fields["image"], Value::Int(42));
        assert_eq!(
            e.fields["frame_count"],
            Value::Null,
            "a value that does not fit is cached empty"
        );
        assert_eq!(e.display_name.as_deref(), Some("v001"));
        let ev = parse_event(&json!({"id": 5, "attributes": {"event_type": "Shotgun_Shot_Change", "meta": {"entity_id": 1},
            "created_at": "2026-01-01T00:00:01Z"}, "relationships": {"entity": {"data": null}, "user": {"data": {"type": "ApiUser", "id": 1}}}}))
        .expect("event");
        assert_eq!(
            (ev.id, ev.entity.is_none(), ev.created_at),
            (5, true, 1_767_225_601)
        );
        assert_eq!(ev.user.map(|u| u.id), Some(1));
    }
}
