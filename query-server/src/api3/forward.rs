//! What the api3 endpoint sends on: forwarding a call to the site unchanged, and read-your-writes
//! after a forwarded write.
//!
//! # Forwarding
//! The client's request body is sent to `{site.url}/api3/json` byte for byte, so the site sees the
//! client's own credentials (Shotgun's permissions apply) and the answer (status, body) comes back
//! unchanged.
//!
//! # Read-your-writes without writing the store
//! The query-server never writes the store (the syncer is the only writer). After a forwarded
//! `create`, `update`, `delete`, `revive` or `batch` succeeds, the endpoint collects the entities the
//! write touched (of cached types) and asks the syncer to re-read them now
//! (`SyncerService.Refresh`, at `api3.syncer_url`), which commits them before it answers. The
//! client is answered once the cache agrees with the site's answer to the write (the entity live or
//! retired, its written fields equal), so a create-then-find sees the write. That is normally true
//! right after the refresh; when the version guards keep a newer event's effect over the re-read
//! (a revive right after a delete whose retirement event is already applied), or without a syncer
//! URL, or when the syncer cannot be reached, the endpoint polls the store until the event log
//! brings the write, bounded by a timeout, and answers regardless when it runs out (the write itself
//! has succeeded on the site). The write's own events arrive later and are no-ops thanks to the
//! per-field version guards.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value as Json;
use shotgun_cache_core::model::{Entity, Value};
use shotgun_cache_core::store::Store;
use shotgun_cache_proto::v1 as pb;
use shotgun_cache_proto::v1::syncer_service_client::SyncerServiceClient;
use tonic::transport::Channel;

/// Why a call could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    #[error("the cache could not reach the site at {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

/// An answer from the site, passed back unchanged.
#[derive(Debug, Clone)]
pub(crate) struct SiteAnswer {
    pub(crate) status: u16,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Bytes,
}

/// Sends `body` to the site's api3 endpoint.
pub(crate) async fn forward(
    http: &reqwest::Client,
    site_url: &str,
    body: Bytes,
) -> Result<SiteAnswer, ForwardError> {
    let url = format!("{}/api3/json", site_url.trim_end_matches('/'));
    let unreachable = |e: reqwest::Error| ForwardError::Unreachable {
        url: url.clone(),
        reason: e.to_string(),
    };
    let resp = http
        .post(&url)
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .map_err(unreachable)?;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.bytes().await.map_err(unreachable)?;
    Ok(SiteAnswer {
        status,
        content_type,
        body,
    })
}

/// One entity a successful write touched, and what the cache should show afterwards.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Touched {
    pub(crate) entity_type: String,
    pub(crate) id: i64,
    pub(crate) expect: Expect,
}

/// What the cache must show before a write counts as visible (used when waiting on the event log).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expect {
    /// The entity is live and its cached fields agree with these values (the site's answer to the
    /// write, `type` and `id` left out; empty for a revive).
    Live {
        fields: serde_json::Map<String, Json>,
    },
    /// The entity is retired (deleted).
    Retired,
}

fn ref_of(v: &Json) -> Option<(String, i64)> {
    Some((v.get("type")?.as_str()?.to_owned(), v.get("id")?.as_i64()?))
}

fn touched_one(request_type: &str, req: &Json, result: &Json) -> Option<Touched> {
    let (entity_type, id, expect) = match request_type {
        "create" | "update" | "revive" => {
            let (t, id) = ref_of(result).or_else(|| ref_of(req))?;
            let mut fields = result.as_object().cloned().unwrap_or_default();
            fields.remove("type");
            fields.remove("id");
            (t, id, Expect::Live { fields })
        }
        "delete" => {
            let (t, id) = ref_of(req)?;
            (t, id, Expect::Retired)
        }
        _ => return None,
    };
    Some(Touched {
        entity_type,
        id,
        expect,
    })
}

/// Whether a cached value agrees with the value the site answered a write with. Links compare by
/// target (names may lag), multi_entity lists as sets; an image the site answers as a signed URL
/// agrees with any cached attachment id.
pub(crate) fn agrees(cached: &Value, site: &Json) -> bool {
    match (cached, site) {
        (Value::Entity(r), Json::Object(_)) => ref_of(site) == Some((r.entity_type.clone(), r.id)),
        (Value::MultiEntity(list), Json::Array(items)) => {
            let a: BTreeSet<(String, i64)> =
                list.iter().map(|r| (r.entity_type.clone(), r.id)).collect();
            let b: BTreeSet<(String, i64)> = items.iter().filter_map(ref_of).collect();
            a == b && b.len() == items.len()
        }
        (Value::Int(_), Json::String(_)) => true,
        // url, serializable, tag_list and the like: the site may answer them re-signed or
        // re-rendered, so they cannot be compared reliably.
        (Value::Json(_), _) => true,
        (Value::Float(x), Json::Number(n)) => n.as_f64().is_some_and(|y| (x - y).abs() < 1e-6),
        _ => cached.to_json() == *site,
    }
}

fn visible(e: Option<&Entity>, expect: &Expect) -> bool {
    match (e, expect) {
        (Some(e), Expect::Live { fields }) => {
            !e.retired
                && fields
                    .iter()
                    .all(|(f, v)| e.fields.get(f).is_none_or(|c| agrees(c, v)))
        }
        (Some(e), Expect::Retired) => e.retired,
        // A deleted entity the cache never had is as good as invisible.
        (None, Expect::Retired) => true,
        (None, Expect::Live { .. }) => false,
    }
}

/// The entities a successful write answer touched. `params` is the call's parameters and `results`
/// the site's `results` value.
pub(crate) fn touched(method: &str, params: &Json, results: &Json) -> Vec<Touched> {
    match method {
        "batch" => {
            let (Some(reqs), Some(res)) = (params.as_array(), results.as_array()) else {
                return Vec::new();
            };
            reqs.iter()
                .zip(res)
                .filter_map(|(req, result)| {
                    let kind = req.get("request_type").and_then(Json::as_str)?;
                    touched_one(kind, req, result)
                })
                .collect()
        }
        "revive" if results == &Json::Bool(false) => Vec::new(),
        m => touched_one(m, params, results).into_iter().collect(),
    }
}

/// Makes the touched entities visible in the cache before the client is answered.
pub(crate) async fn make_visible(
    syncer: Option<&SyncerServiceClient<Channel>>,
    store: &dyn Store,
    touched: &[Touched],
    wait: Duration,
) {
    if touched.is_empty() {
        return;
    }
    if let Some(client) = syncer {
        let mut by_type: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for t in touched {
            by_type
                .entry(t.entity_type.as_str())
                .or_default()
                .push(t.id);
        }
        for (entity_type, ids) in by_type {
            let mut client = client.clone();
            let mut req = tonic::Request::new(pb::RefreshRequest {
                entity_type: entity_type.to_owned(),
                ids: ids.clone(),
            });
            req.set_timeout(wait);
            if let Err(status) = client.refresh(req).await {
                tracing::warn!(entity_type, ?ids, error = %status, "the syncer did not refresh a forwarded write; waiting for the event log instead");
            }
        }
    }
    // Even after a refresh the cache may not show the write yet: the version guards keep a newer
    // event's effect over a re-read (e.g. a revive right after a delete whose retirement event was
    // already applied stays retired until the revival event arrives). Waiting here (it returns at
    // once when the write is visible) keeps read-your-writes true in those cases too.
    wait_for_event_log(store, touched, wait).await;
}

/// Polls the store until every touched entity shows its expected state, or `wait` passes.
pub(crate) async fn wait_for_event_log(store: &dyn Store, touched: &[Touched], wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    let mut pending: Vec<&Touched> = touched.iter().collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for t in pending {
            let visible = match store.get(&t.entity_type, t.id).await {
                Ok(e) => visible(e.as_ref(), &t.expect),
                Err(_) => false,
            };
            if !visible {
                still.push(t);
            }
        }
        pending = still;
        if pending.is_empty() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !pending.is_empty() {
        tracing::warn!(
            pending = pending.len(),
            "forwarded write not yet visible in the cache after {wait:?}; answering anyway"
        );
    }
}
