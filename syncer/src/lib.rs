//! shotgun-cache-syncer: keeps the store equal to the Shotgun site, continuously, and never loses
//! or duplicates a change.
//!
//! # Layout
//! - [`site`]: the Shotgun REST client (auth, retries, paging, record parsing) — the only code
//!   that talks to Shotgun.
//! - [`plan`]: the `[types.X]` config resolved against the site schema (cached fields, filter, hash).
//! - [`cursor`]: the event-log cursor (low-water mark, head, open gaps).
//! - [`apply`]: one EventLogEntry → store writes.
//! - [`engine`]: start-up, imports (live or staging), the follower, re-reads, reconciliation.
//! - [`status`]: the live figures; [`admin`]: `/healthz` `/readyz` `/metrics` `/webhook`;
//!   [`grpc`]: `SyncerService` (Status, Resync, Refresh).
//! - [`init_config`]: the `init-config` command (a starter config from the site schema).
//!
//! The binary (`main.rs`) only parses the command line and the config and calls [`run`].

pub mod admin;
pub mod apply;
pub mod cursor;
pub mod engine;
pub mod grpc;
pub mod init_config;
pub mod plan;
pub mod site;
pub mod status;

use std::future::Future;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use shotgun_cache_core::config::{Backend, Config};
use shotgun_cache_core::store::Store;
use shotgun_cache_proto::v1::syncer_service_server::SyncerServiceServer;
use tokio::net::TcpListener;

use crate::engine::{Engine, EngineError};
use crate::site::{Site, SiteOptions};
use crate::status::Status;

/// The two listeners, bound by the caller (tests bind `127.0.0.1:0`).
pub struct Listeners {
    /// HTTP: `/healthz`, `/readyz`, `/metrics`, `/webhook`.
    pub admin: TcpListener,
    /// gRPC: SyncerService, health, reflection.
    pub grpc: TcpListener,
}

impl Listeners {
    /// Binds `syncer.admin_listen` and `syncer.grpc_listen`.
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let s = &config.syncer;
        Ok(Listeners {
            admin: TcpListener::bind(&s.admin_listen)
                .await
                .with_context(|| format!("bind syncer.admin_listen = {}", s.admin_listen))?,
            grpc: TcpListener::bind(&s.grpc_listen)
                .await
                .with_context(|| format!("bind syncer.grpc_listen = {}", s.grpc_listen))?,
        })
    }

    /// Binds both on `127.0.0.1` with OS-chosen ports.
    pub async fn bind_local() -> anyhow::Result<Listeners> {
        Ok(Listeners {
            admin: TcpListener::bind("127.0.0.1:0").await?,
            grpc: TcpListener::bind("127.0.0.1:0").await?,
        })
    }
}

/// Opens the configured store backend (the one place that selects it).
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    match config.store.backend {
        Backend::Sqlite => {
            let s = shotgun_cache_core::store::sqlite::SqliteStore::open(Path::new(
                &config.store.sqlite_path,
            ))
            .with_context(|| format!("open store.sqlite_path = {}", config.store.sqlite_path))?;
            Ok(Arc::new(s))
        }
        Backend::Rethinkdb => {
            let s = shotgun_cache_core::store::rethinkdb::RethinkStore::connect(&config.store)
                .await
                .with_context(|| {
                    format!(
                        "connect to store.rethinkdb_address = {} (database {})",
                        config.store.rethinkdb_address, config.store.rethinkdb_database
                    )
                })?;
            Ok(Arc::new(s))
        }
    }
}

/// Sets up `tracing` (to stderr): JSON lines unless stdout is a terminal (or `SHOTGUN_CACHE_LOG_FORMAT`
/// says otherwise); the level from `RUST_LOG` (default `info`).
pub fn init_logging() {
    let json = match std::env::var("SHOTGUN_CACHE_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") | Ok("pretty") => false,
        _ => !std::io::stdout().is_terminal(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        b.json().try_init()
    } else {
        b.try_init()
    };
}

/// [`open_store`], waiting for a RethinkDB that cannot be reached yet: a syncer restarted during a
/// database outage waits (logging every attempt, with backoff) instead of exiting, and starts where
/// its cursor stopped once the database is back. Any other error (a bad SQLite path, a refused
/// schema) ends the start at once. `None`: `shutdown` came first.
async fn open_store_waiting(
    config: &Config,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> anyhow::Result<Option<Arc<dyn Store>>> {
    let mut attempt = 0u32;
    loop {
        let err = match open_store(config).await {
            Ok(s) => return Ok(Some(s)),
            Err(e) => e,
        };
        let transient = matches!(
            err.downcast_ref::<shotgun_cache_core::store::StoreError>(),
            Some(
                shotgun_cache_core::store::StoreError::Unavailable(_)
                    | shotgun_cache_core::store::StoreError::Timeout(_)
            )
        );
        if config.store.backend != Backend::Rethinkdb || !transient {
            return Err(err);
        }
        let wait = backoff(attempt);
        tracing::warn!(
            error = format!("{err:#}"),
            attempt,
            retry_in_ms = wait.as_millis() as u64,
            "store unreachable at start; waiting for it"
        );
        attempt += 1;
        tokio::select! {
            _ = &mut *shutdown => return Ok(None),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((200u64 << attempt.min(8)).min(30_000))
}

/// Runs the syncer until `shutdown` completes: serves the admin and gRPC ports, imports what needs
/// importing, then follows the event log, reconciles and trims the journal.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let key = config.require_script_key()?.to_owned();
    let mut shutdown = Box::pin(shutdown);
    let Some(store) = open_store_waiting(&config, &mut shutdown).await? else {
        return Ok(());
    };
    let site = Site::new(SiteOptions::new(
        &config.site.url,
        &config.site.script_name,
        &key,
        Duration::from_secs(config.syncer.request_timeout_secs),
    ))?;
    run_with(config, store, site, listeners, shutdown).await
}

/// [`run`] with an already opened store and site client.
pub async fn run_with(
    config: Config,
    store: Arc<dyn Store>,
    site: Site,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let status = Arc::new(Status::default());
    let engine = Arc::new(Engine::new(config.clone(), site, store, status.clone()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = {
        let rx = stop_rx.clone();
        move || {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        }
    };

    // Ports first, so probes answer while the import runs.
    let admin_router = admin::router(engine.clone());
    let admin_stop = stopped();
    let admin_task = tokio::spawn(async move {
        axum::serve(listeners.admin, admin_router)
            .with_graceful_shutdown(admin_stop)
            .await
    });
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<SyncerServiceServer<grpc::GrpcSyncer>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(shotgun_cache_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("build the reflection service (v1)")?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(shotgun_cache_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("build the reflection service (v1alpha)")?;
    let tokens: Vec<String> = config
        .auth
        .tokens
        .iter()
        .map(|t| t.expose().to_owned())
        .collect();
    let svc = tonic::service::interceptor::InterceptedService::new(
        SyncerServiceServer::new(grpc::GrpcSyncer {
            engine: engine.clone(),
        }),
        shotgun_cache_proto::auth::BearerAuth::new(config.auth.required, &tokens),
    );
    let probe = tokio::spawn(admin::store_probe(
        engine.clone(),
        health_reporter.clone(),
        Duration::from_secs(1),
    ));
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listeners.grpc);
    let grpc_stop = stopped();
    let grpc_task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, grpc_stop)
            .await
    });

    let result = tokio::select! {
        r = sync_main(engine.clone()) => r,
        _ = stopped() => Ok(()),
    };
    if let Err(e) = &result {
        tracing::error!(error = %e, "syncer stopped");
    } else {
        tracing::info!("syncer stopped");
    }
    // Stop the servers whatever ended the sync loop.
    probe.abort();
    let mut rx = stop_rx.clone();
    if !*rx.borrow_and_update() {
        admin_task.abort();
        grpc_task.abort();
    } else {
        let _ = admin_task.await;
        let _ = grpc_task.await;
    }
    result
}

/// Retries `f` with backoff until it succeeds; plan (config) errors are returned at once.
async fn retry_forever<T, F, Fut>(what: &str, engine: &Engine, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, EngineError>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(EngineError::Plan(e)) => return Err(anyhow::anyhow!(e)),
            Err(EngineError::Site(site::SiteError::Auth { script, message })) if attempt >= 3 => {
                // Wrong credentials do not heal by retrying quickly; keep trying slowly, loudly.
                tracing::error!(
                    script,
                    message,
                    "cannot authenticate with the site; check site.script_name and the script key"
                );
                engine.status.poll_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            Err(e) => {
                engine.status.poll_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(what, error = %e, attempt, "failed; retrying");
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
        attempt += 1;
    }
}

async fn sync_main(engine: Arc<Engine>) -> anyhow::Result<()> {
    let (first, re) = retry_forever("start-up", &engine, || engine.prepare()).await?;
    let progress_task = tokio::spawn(progress_reporter(engine.clone()));
    for t in &first {
        retry_forever("import", &engine, || engine.import_type(t, false)).await?;
    }
    engine.status.ready.store(true, Ordering::Relaxed);
    let n_types = engine.plans.read().await.len();
    tracing::info!(
        types = n_types,
        "initial import complete; following the event log"
    );
    for t in re {
        spawn_reimport(&engine, t);
    }
    let r = follow(engine.clone()).await;
    progress_task.abort();
    r
}

fn spawn_reimport(engine: &Arc<Engine>, t: String) {
    let engine = engine.clone();
    tokio::spawn(async move {
        let mut attempt = 0;
        loop {
            match engine.import_type(&t, true).await {
                Ok(_) => return,
                Err(EngineError::Other(msg)) => {
                    tracing::info!(entity_type = %t, msg, "re-import not started");
                    return;
                }
                Err(e) => {
                    tracing::warn!(entity_type = %t, error = %e, "re-import failed; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    });
}

/// Reconciliation, beside the follower: every `reconcile_interval_secs` one round over every
/// cached type. Its commits take the engine's write gate slice by slice, so event following goes
/// on while a round runs (a change still shows up within a poll or two).
async fn reconcile_loop(engine: Arc<Engine>) {
    let cfg = engine.config.syncer.clone();
    let every = Duration::from_secs(cfg.reconcile_interval_secs);
    let mut since = match engine.store.get_state("reconcile").await {
        Ok(Some(v)) => v.get("since").and_then(serde_json::Value::as_i64),
        _ => None,
    }
    .unwrap_or_else(|| time::OffsetDateTime::now_utc().unix_timestamp() - 3600);
    loop {
        tokio::time::sleep(every).await;
        let started = time::OffsetDateTime::now_utc().unix_timestamp();
        let t0 = Instant::now();
        // Overlap: the scan window reaches back past the previous scan's start.
        let overlap = 60 + cfg.reconcile_interval_secs as i64;
        match engine.reconcile(since - overlap).await {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(
                        repaired = n,
                        "reconciliation repaired rows the event log missed"
                    );
                }
                tracing::debug!(
                    ms = t0.elapsed().as_millis() as u64,
                    "reconciliation round done"
                );
                since = started;
                let mut b = shotgun_cache_core::store::WriteBatch::default();
                b.state
                    .insert("reconcile".into(), serde_json::json!({"since": started}));
                let _ = engine.store.commit(b).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reconciliation failed; retried next interval")
            }
        }
    }
}

/// The follow loop: poll, check for an archived log, trim; never returns on a transient error.
/// Reconciliation runs beside it ([`reconcile_loop`]).
async fn follow(engine: Arc<Engine>) -> anyhow::Result<()> {
    let cfg = engine.config.syncer.clone();
    let poll_every = Duration::from_millis(cfg.poll_interval_ms);
    let gap_every = poll_every.max(Duration::from_secs(1));
    let reconcile_every = Duration::from_secs(cfg.reconcile_interval_secs);
    let mut last_gap_query = Instant::now() - gap_every;
    let mut last_reconcile = Instant::now();
    let reconciler = tokio::spawn(reconcile_loop(engine.clone()));
    let _reconciler = AbortOnDrop(reconciler);
    let mut last_trim = Instant::now() - Duration::from_secs(3600);
    let mut errors = 0u32;
    loop {
        let qg = last_gap_query.elapsed() >= gap_every;
        if qg {
            last_gap_query = Instant::now();
        }
        let full = match engine.poll_once(qg).await {
            Ok(n) => {
                errors = 0;
                n >= cfg.page_size as usize
            }
            Err(EngineError::Store(e)) if errors >= 3 => {
                tracing::warn!(error = %e, "the store keeps refusing a batch; applying events one by one");
                match engine.poll_isolated().await {
                    Ok(_) => {
                        errors = 0;
                        false
                    }
                    Err(e) => {
                        errors += 1;
                        engine.status.poll_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "isolated poll failed; retrying with backoff");
                        tokio::time::sleep(backoff(errors)).await;
                        continue;
                    }
                }
            }
            Err(e) => {
                errors += 1;
                engine.status.poll_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, consecutive = errors, "poll failed; retrying with backoff");
                tokio::time::sleep(backoff(errors)).await;
                continue;
            }
        };
        for t in engine.take_pending_reimports().await {
            spawn_reimport(&engine, t);
        }
        if last_reconcile.elapsed() >= reconcile_every {
            last_reconcile = Instant::now();
            match engine.log_archived().await {
                Ok(true) => {
                    tracing::warn!(
                        "the event log was archived past the cursor; re-importing every cached type"
                    );
                    match engine.restart_from_archive().await {
                        Ok(types) => types.into_iter().for_each(|t| spawn_reimport(&engine, t)),
                        Err(e) => tracing::warn!(error = %e, "could not restart from the archive"),
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "archive check failed"),
            }
        }
        if last_trim.elapsed() >= Duration::from_secs(600) {
            last_trim = Instant::now();
            let before = shotgun_cache_core::model::DateTime::now().0
                - (cfg.journal_retention_hours as i64) * 3600;
            match engine
                .store
                .trim_journal(shotgun_cache_core::model::DateTime(before))
                .await
            {
                Ok(n) if n > 0 => tracing::info!(removed = n, "trimmed the change journal"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "journal trim failed"),
            }
        }
        if !full {
            tokio::select! {
                _ = tokio::time::sleep(poll_every) => {}
                _ = engine.poll_now.notified() => {}
            }
        }
    }
}

/// Aborts a background task when the loop that owns it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Logs import progress every few seconds (done/total, rate, ETA), and draws progress bars when
/// stderr is a terminal.
async fn progress_reporter(engine: Arc<Engine>) {
    let tty = std::io::stderr().is_terminal();
    let multi = indicatif::MultiProgress::new();
    let mut bars: std::collections::BTreeMap<String, indicatif::ProgressBar> = Default::default();
    let mut last_log = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(if tty { 250 } else { 1000 })).await;
        let progress = engine.status.progress();
        let log_now = last_log.elapsed() >= Duration::from_secs(5);
        for (t, p) in &progress {
            let active = p.state == "importing" || p.state == "reimporting";
            if tty {
                let bar = bars.entry(t.clone()).or_insert_with(|| {
                    let b = multi.add(indicatif::ProgressBar::new(p.total));
                    if let Ok(style) = indicatif::ProgressStyle::with_template(
                        "{prefix:>20} [{bar:40}] {pos}/{len} {per_sec} eta {eta}",
                    ) {
                        b.set_style(style);
                    }
                    b.set_prefix(t.clone());
                    b
                });
                bar.set_length(p.total.max(p.done));
                bar.set_position(p.done);
                if !active && !bar.is_finished() {
                    bar.finish();
                }
            }
            if active && log_now {
                let (rate, eta) = p.rate_eta();
                tracing::info!(entity_type = %t, phase = %p.state, done = p.done, total = p.total, rate = rate.round(), eta_secs = eta.map(f64::round), "import progress");
            }
        }
        if log_now {
            last_log = Instant::now();
        }
    }
}

/// Asks a running syncer for its status and renders it for a person (or as JSON).
pub async fn status_text(url: &str, token: Option<&str>, json: bool) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .context("--addr")?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("connect to the syncer at {url}"))?;
    let mut client =
        shotgun_cache_proto::v1::syncer_service_client::SyncerServiceClient::new(channel);
    let mut req = tonic::Request::new(shotgun_cache_proto::v1::StatusRequest {});
    if let Some(t) = token {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {t}")
                .parse()
                .context("token is not a valid header value")?,
        );
    }
    let s = client
        .status(req)
        .await
        .context("SyncerService/Status")?
        .into_inner();
    let mut out = String::new();
    if json {
        let types: Vec<serde_json::Value> = s
            .types
            .iter()
            .map(|t| {
                let st = t.status.clone().unwrap_or_default();
                serde_json::json!({"entity_type": st.entity_type, "phase": st.phase, "done": st.done, "total": st.total,
                    "live": st.live_count, "retired": st.retired_count, "state": t.state, "config_hash": t.config_hash})
            })
            .collect();
        let v = serde_json::json!({"lag_seconds": s.lag_seconds, "last_applied_event_id": s.last_applied_event_id,
            "events_per_second": s.events_per_second, "open_gaps": s.open_gaps, "retries": s.retries,
            "set_aside_events": s.set_aside_events, "journal_head": s.journal_head, "types": types});
        let _ = writeln!(out, "{}", serde_json::to_string_pretty(&v)?);
        return Ok(out);
    }
    let _ = writeln!(out, "last applied event   {}", s.last_applied_event_id);
    let _ = writeln!(
        out,
        "lag                  {}",
        s.lag_seconds
            .map(|l| format!("{l:.1} s"))
            .unwrap_or_else(|| "-".into())
    );
    let _ = writeln!(out, "events/s (1 min)     {:.1}", s.events_per_second);
    let _ = writeln!(out, "open gaps            {}", s.open_gaps);
    let _ = writeln!(out, "site retries         {}", s.retries);
    let _ = writeln!(out, "set-aside events     {}", s.set_aside_events);
    let _ = writeln!(out, "journal head         {}", s.journal_head);
    let _ = writeln!(
        out,
        "\n{:<24} {:<12} {:>10} {:>10} {:>10} {:>10}  state",
        "type", "phase", "done", "total", "live", "retired"
    );
    for t in &s.types {
        let st = t.status.clone().unwrap_or_default();
        let phase = shotgun_cache_proto::v1::TypePhase::try_from(st.phase)
            .map(|p| p.as_str_name().to_owned())
            .unwrap_or_default();
        let phase = phase.trim_start_matches("TYPE_PHASE_").to_lowercase();
        let _ = writeln!(
            out,
            "{:<24} {:<12} {:>10} {:>10} {:>10} {:>10}  {}",
            st.entity_type, phase, st.done, st.total, st.live_count, st.retired_count, t.state
        );
    }
    Ok(out)
}
