//! The syncer's gRPC service (`shotgun_cache.v1.SyncerService`): `Status` (the figures of the
//! admin port, per type), `Resync` (re-import one type into staging now) and `Refresh` (re-read
//! entities now, for the query-server's read-your-writes). Wire types stop here.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use shotgun_cache_core::store::TypePhase;
use shotgun_cache_proto::v1::syncer_service_server::SyncerService;
use shotgun_cache_proto::v1::{
    RefreshRequest, RefreshResponse, ResyncRequest, ResyncResponse, StatusRequest, StatusResponse,
    TypeStatus, TypeSyncStatus,
};
use tonic::{Request, Response, Status};

use crate::engine::{Engine, EngineError};

pub struct GrpcSyncer {
    pub engine: Arc<Engine>,
}

fn phase(p: TypePhase) -> i32 {
    use shotgun_cache_proto::v1::TypePhase as W;
    match p {
        TypePhase::Importing => W::Importing as i32,
        TypePhase::Ready => W::Ready as i32,
        TypePhase::Reimporting => W::Reimporting as i32,
    }
}

/// Builds the status answer (shared with the `status` command's output).
pub async fn status_response(engine: &Engine) -> StatusResponse {
    let s = &engine.status;
    let counts = engine.type_counts().await;
    let states = engine.store.type_states().await.unwrap_or_default();
    let progress = s.progress();
    let plans = engine.plans.read().await.clone();
    let mut types = Vec::new();
    for t in plans.keys() {
        let st = states.iter().find(|x| &x.entity_type == t);
        let (live, retired) = counts.get(t).copied().unwrap_or((0, 0));
        let pr = progress.get(t);
        let state = match pr {
            Some(p) if p.state == "importing" || p.state == "reimporting" => {
                let (rate, eta) = p.rate_eta();
                format!(
                    "{} {}/{} ({rate:.0}/s, eta {})",
                    p.state,
                    p.done,
                    p.total,
                    eta.map(|e| format!("{e:.0}s"))
                        .unwrap_or_else(|| "?".into())
                )
            }
            Some(p) if !p.state.is_empty() => p.state.clone(),
            _ => "waiting".into(),
        };
        types.push(TypeSyncStatus {
            status: Some(TypeStatus {
                entity_type: t.clone(),
                phase: st.map(|x| phase(x.phase)).unwrap_or(0),
                done: st.map(|x| x.done).unwrap_or(0),
                total: st.map(|x| x.total).unwrap_or(0),
                live_count: live,
                retired_count: retired,
                ready_at: st.and_then(|x| x.ready_at).map(|r| prost_types::Timestamp {
                    seconds: r.0,
                    nanos: 0,
                }),
            }),
            state,
            config_hash: st.map(|x| x.config_hash.clone()).unwrap_or_default(),
        });
    }
    let last_poll = s.last_poll_at.load(Ordering::Relaxed);
    StatusResponse {
        lag_seconds: s.lag_seconds(),
        last_applied_event_id: s.last_applied_event_id.load(Ordering::Relaxed),
        events_per_second: s.events_per_second(),
        open_gaps: s.open_gaps.load(Ordering::Relaxed) as u32,
        retries: engine.site.retries(),
        set_aside_events: s.set_aside.load(Ordering::Relaxed),
        types,
        last_poll_at: (last_poll > 0).then_some(prost_types::Timestamp {
            seconds: last_poll,
            nanos: 0,
        }),
        journal_head: engine.store.journal_head().await.unwrap_or(0),
    }
}

#[tonic::async_trait]
impl SyncerService for GrpcSyncer {
    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(status_response(&self.engine).await))
    }

    async fn resync(
        &self,
        req: Request<ResyncRequest>,
    ) -> Result<Response<ResyncResponse>, Status> {
        let t = req.into_inner().entity_type;
        if t.is_empty() {
            return Err(Status::invalid_argument("entity_type is required"));
        }
        if !self.engine.plans.read().await.contains_key(&t) {
            return Err(Status::invalid_argument(format!(
                "entity type '{t}' is not cached by this syncer"
            )));
        }
        if self.engine.is_importing(&t).await {
            return Err(Status::failed_precondition(format!(
                "{t} is already being imported"
            )));
        }
        let engine = Arc::clone(&self.engine);
        let t2 = t.clone();
        tokio::spawn(async move {
            if let Err(e) = engine.import_type(&t2, true).await {
                tracing::error!(entity_type = %t2, error = %e, "requested re-import failed");
            }
        });
        Ok(Response::new(ResyncResponse {
            started: true,
            message: format!("re-import of {t} started"),
        }))
    }

    async fn refresh(
        &self,
        req: Request<RefreshRequest>,
    ) -> Result<Response<RefreshResponse>, Status> {
        let r = req.into_inner();
        if r.ids.len() > 500 {
            return Err(Status::invalid_argument(format!(
                "at most 500 ids per call, got {}",
                r.ids.len()
            )));
        }
        if !self.engine.plans.read().await.contains_key(&r.entity_type) {
            return Err(Status::invalid_argument(format!(
                "entity type '{}' is not cached by this syncer",
                r.entity_type
            )));
        }
        if r.ids.is_empty() {
            return Ok(Response::new(RefreshResponse {
                upserted: 0,
                removed: 0,
            }));
        }
        match self.engine.refresh(&r.entity_type, &r.ids).await {
            Ok((upserted, removed)) => Ok(Response::new(RefreshResponse { upserted, removed })),
            Err(EngineError::Site(e)) => Err(Status::unavailable(e.to_string())),
            Err(e) => Err(Status::internal(e.to_string())),
        }
    }
}
