//! The query-server: typed gRPC finds with Shotgun's semantics, change streams, and (in `api3`) the
//! shotgun_api3 JSON protocol, all read from the store the syncer writes.
//!
//! **Architecture Invariant:** the query-server never writes to the store, and holds no state of
//! its own beyond caches it can rebuild: any number of replicas can serve the same store.
//!
//! # Layout
//! - [`run`]: starts every listener (gRPC, admin HTTP, api3 HTTP) and the background tasks, and
//!   shuts them down gracefully. `main.rs` only parses the command line and loads the config.
//! - `catalog`: schema, cached layouts and type states, refreshed from the store; the
//!   partial-import rule.
//! - `service`: the domain service (Find, Count, schema, status, Watch planning) over `Arc<dyn Store>`.
//! - `watch`: the shared journal reader and bounded, resumable Watch streams.
//! - `convert`: wire ↔ domain conversion (the only code that knows both).
//! - `grpc`: the tonic adapter, auth interceptor and size-limit layer.
//! - `error`: the one error type and its one mapping to gRPC status codes.
//! - `admin`: the admin HTTP port (`/metrics`, `/healthz`, `/readyz`).
//! - `api3`: the shotgun_api3 JSON-RPC endpoint (`POST /api3/json`) on the HTTP listener.

pub mod admin;
pub mod api3;
pub mod catalog;
mod coalesce;
pub mod convert;
pub mod error;
pub mod grpc;
pub mod service;
pub mod watch;
mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shotgun_cache_core::config::{Backend, Config, StoreConfig};
use shotgun_cache_core::store::Store;
use shotgun_cache_proto::v1::query_service_server::QueryServiceServer;
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic_health::ServingStatus;

pub use crate::catalog::{Catalog, CatalogSnapshot};
pub use crate::error::QueryError;
pub use crate::service::QueryService;
pub use crate::watch::{JournalHub, WatchLimits};

/// The gRPC service name reported by health checks.
pub const SERVICE_NAME: &str = "shotgun_cache.v1.QueryService";

/// What every endpoint of one query-server process shares (gRPC and the api3 HTTP router). Cheap to clone.
///
/// - `store`: the store handle (read-only use: the query-server never writes).
/// - `catalog`: the site schema, cached type layouts and type states, refreshed from the store in
///   the background; `catalog.snapshot()` gives one consistent view
///   (`snapshot.schema()?`, `snapshot.check_served_type(t)?` for the partial-import rule,
///   `snapshot.check_path_cached(..)`).
/// - `service`: the domain query service (validation + `find`/`count`/`schema`/`sync_status`),
///   so other endpoints give the same answers and the same errors as gRPC.
/// - `config`: the whole loaded configuration (`config.api3`, `config.query_server`, ...).
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub catalog: Catalog,
    pub service: QueryService,
    pub config: Arc<Config>,
}

/// The three listeners, bound by the caller (tests bind `127.0.0.1:0`).
pub struct Listeners {
    /// gRPC: QueryService, health, reflection.
    pub grpc: TcpListener,
    /// HTTP: `/metrics`, `/healthz`, `/readyz`.
    pub admin: TcpListener,
    /// HTTP: the api3 JSON-RPC endpoint.
    pub http: TcpListener,
}

impl Listeners {
    /// Binds the addresses of `[query_server]`.
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let qs = &config.query_server;
        let bind = |addr: String, key: &'static str| async move {
            TcpListener::bind(&addr)
                .await
                .with_context(|| format!("bind query_server.{key} = {addr}"))
        };
        Ok(Listeners {
            grpc: bind(qs.grpc_listen.clone(), "grpc_listen").await?,
            admin: bind(qs.admin_listen.clone(), "admin_listen").await?,
            http: bind(qs.http_listen.clone(), "http_listen").await?,
        })
    }

    /// Binds all three on `127.0.0.1` with OS-chosen ports (for tests and examples).
    pub async fn bind_local() -> anyhow::Result<Listeners> {
        Ok(Listeners {
            grpc: TcpListener::bind("127.0.0.1:0").await?,
            admin: TcpListener::bind("127.0.0.1:0").await?,
            http: TcpListener::bind("127.0.0.1:0").await?,
        })
    }

    /// The bound addresses (grpc, admin, http).
    pub fn addrs(&self) -> anyhow::Result<(SocketAddr, SocketAddr, SocketAddr)> {
        Ok((
            self.grpc.local_addr()?,
            self.admin.local_addr()?,
            self.http.local_addr()?,
        ))
    }
}

/// Tunables that are not in the config file (tests shorten them).
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// How often schema, layouts and type states are re-read from the store.
    pub catalog_refresh: Duration,
    /// How often the store is pinged for health.
    pub health_interval: Duration,
    /// The longest any unary call may run.
    pub call_cap: Duration,
    /// The largest request accepted (bigger ones get RESOURCE_EXHAUSTED).
    pub max_request_bytes: usize,
    /// At most this many store queries run at once (the rest wait, within their deadline).
    pub max_concurrent_queries: usize,
    pub watch: WatchLimits,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            catalog_refresh: Duration::from_secs(1),
            health_interval: Duration::from_secs(2),
            call_cap: Duration::from_secs(30),
            max_request_bytes: 4 * 1024 * 1024,
            max_concurrent_queries: service::default_query_concurrency(),
            watch: WatchLimits::default(),
        }
    }
}

/// Opens the configured store, with a result cache of `result_cache_mb` MiB on SQLite (0: none).
/// The query-server only ever reads from it.
pub fn open_store(config: &StoreConfig, result_cache_mb: u64) -> anyhow::Result<Arc<dyn Store>> {
    match config.backend {
        Backend::Sqlite => {
            // The SQLite backend has no read-only mode: `open` creates and bootstraps the file when
            // it is missing. The query-server still only calls read methods (the invariant).
            let store = shotgun_cache_core::store::sqlite::SqliteStore::open(Path::new(
                &config.sqlite_path,
            ))
            .with_context(|| format!("open the SQLite store at {}", config.sqlite_path))?;
            // At most 64 GiB (the config's bound), so the product fits a usize.
            store.enable_result_cache(usize::try_from(result_cache_mb << 20).unwrap_or(usize::MAX));
            Ok(Arc::new(store))
        }
        // Connects on first use, so the server starts (NOT_SERVING) while RethinkDB is unreachable.
        // No result cache: RethinkDB has no cheap "did anything change" check to keep one exact.
        Backend::Rethinkdb => Ok(Arc::new(
            shotgun_cache_core::store::rethinkdb::RethinkStore::open_lazy(config),
        )),
    }
}

/// Runs the query-server until `shutdown` resolves, then shuts down gracefully.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = open_store(&config.store, config.query_server.result_cache_mb)?;
    run_with(config, store, listeners, shutdown, ServerOptions::default()).await
}

/// [`run`] with an already opened store and explicit options.
///
/// Graceful shutdown: when `shutdown` resolves, health turns `NOT_SERVING`, the server waits
/// `query_server.drain_secs` (so load balancers stop sending), Watch streams end with a resume
/// position, the listeners stop accepting, in-flight calls finish, and this returns.
pub async fn run_with(
    config: Config,
    store: Arc<dyn Store>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    opts: ServerOptions,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let metrics = admin::metrics_handle();

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    health_reporter
        .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
        .await;

    let catalog = Catalog::default();
    if let Err(e) = catalog.refresh(store.as_ref()).await {
        tracing::warn!(error = %e, "the store is not readable yet; will retry");
    }
    let hub = JournalHub::new(store.clone(), opts.watch);
    let service = QueryService::new(store.clone(), catalog.clone(), hub.clone())
        .with_max_concurrent_queries(opts.max_concurrent_queries);
    let state = AppState {
        store: store.clone(),
        catalog: catalog.clone(),
        service: service.clone(),
        config: config.clone(),
    };

    // One signal that stops every background task and listener once draining is over.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(
        catalog
            .clone()
            .refresh_loop(store.clone(), opts.catalog_refresh, stopped()),
    );
    tasks.spawn(hub.clone().run_reader());
    tasks.spawn(health_loop(
        store.clone(),
        health_reporter.clone(),
        ready.clone(),
        draining.clone(),
        opts.health_interval,
        stopped(),
    ));

    let admin_router = admin::router(metrics, ready.clone(), catalog.clone(), store.clone());
    let admin_stop = stopped();
    let admin_listener = listeners.admin;
    let admin_task = tokio::spawn(async move {
        axum::serve(admin_listener, admin_router)
            .with_graceful_shutdown(admin_stop)
            .await
    });
    let http_router = api3::router(state.clone());
    let http_stop = stopped();
    let http_listener = listeners.http;
    let http_task = tokio::spawn(async move {
        axum::serve(http_listener, http_router)
            .with_graceful_shutdown(http_stop)
            .await
    });

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(shotgun_cache_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("build the reflection service (v1)")?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
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
    if config.auth.required && tokens.is_empty() {
        anyhow::bail!(
            "auth.required is true but no tokens are configured (set SHOTGUN_CACHE_AUTH__TOKENS or SHOTGUN_CACHE_AUTH__TOKENS_FILE)"
        );
    }
    // The unary calls in flight, which decide whether a connection's flush is put off (`coalesce`).
    let load = coalesce::Load::default();
    let query = QueryServiceServer::new(grpc::GrpcQueryService::new(
        service.clone(),
        opts.call_cap,
        load.clone(),
    ))
    .accept_compressed(CompressionEncoding::Gzip)
    .send_compressed(CompressionEncoding::Gzip)
    .max_decoding_message_size(opts.max_request_bytes);
    let query = tonic::service::interceptor::InterceptedService::new(
        query,
        shotgun_cache_proto::auth::BearerAuth::new(config.auth.required, &tokens).on_reject(|| {
            metrics::counter!("grpc_server_handled_total", "method" => "any", "code" => "UNAUTHENTICATED").increment(1);
        }),
    );

    let qs = &config.query_server;
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .trace_fn(|req| tracing::debug_span!("grpc", method = %req.uri().path()));
    if qs.max_connection_age_secs > 0 {
        builder = builder
            .max_connection_age(Duration::from_secs(qs.max_connection_age_secs))
            .max_connection_age_grace(Duration::from_secs(qs.drain_secs.max(1)));
    }
    match (qs.tls_cert_file.is_empty(), qs.tls_key_file.is_empty()) {
        (true, true) => {}
        (false, false) => {
            // Select rustls's ring provider explicitly: with several providers compiled in (as in
            // a workspace build), rustls cannot pick one and would panic on the first handshake.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let cert = std::fs::read(&qs.tls_cert_file)
                .with_context(|| format!("read query_server.tls_cert_file {}", qs.tls_cert_file))?;
            let key = std::fs::read(&qs.tls_key_file)
                .with_context(|| format!("read query_server.tls_key_file {}", qs.tls_key_file))?;
            builder = builder
                .tls_config(
                    tonic::transport::ServerTlsConfig::new()
                        .identity(tonic::transport::Identity::from_pem(cert, key)),
                )
                .context("configure TLS from query_server.tls_cert_file and tls_key_file")?;
        }
        _ => anyhow::bail!(
            "query_server.tls_cert_file and query_server.tls_key_file must be set together"
        ),
    }
    let grpc_stop = stopped();
    // With a pre-bound listener, the builder's TCP options do not apply: set them on the incoming
    // stream (no Nagle delay, which otherwise adds ~40 ms to small answers; TCP keepalive).
    let incoming = tonic::transport::server::TcpIncoming::from(listeners.grpc)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    // One write per answer instead of two (see `coalesce`).
    let incoming = futures::StreamExt::map(incoming, move |conn| {
        conn.map(|c| coalesce::CoalescingIo::new(c, load.clone()))
    });
    let router = builder
        .layer(grpc::WireErrorsLayer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(query);
    let grpc_task = tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, grpc_stop)
            .await
    });

    tracing::info!("query-server started");
    shutdown.await;

    tracing::info!(
        drain_secs = qs.drain_secs,
        "shutting down: reporting NOT_SERVING, then draining"
    );
    health_reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    health_reporter
        .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
        .await;
    ready.store(false, std::sync::atomic::Ordering::SeqCst);
    // Keep the health loop from flipping it back while draining.
    draining.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(qs.drain_secs)).await;
    hub.close();
    stop_tx.send_replace(true);

    let grpc_result = grpc_task.await.context("join the gRPC server")?;
    let admin_result = admin_task.await.context("join the admin server")?;
    let http_result = http_task.await.context("join the api3 HTTP server")?;
    tasks.shutdown().await;
    grpc_result.context("serve gRPC")?;
    admin_result.context("serve the admin port")?;
    http_result.context("serve the api3 HTTP port")?;
    tracing::info!("query-server stopped");
    Ok(())
}

/// Pings the store every `every`: SERVING while it answers, NOT_SERVING while it does not.
async fn health_loop(
    store: Arc<dyn Store>,
    reporter: tonic_health::server::HealthReporter,
    ready: Arc<std::sync::atomic::AtomicBool>,
    draining: Arc<std::sync::atomic::AtomicBool>,
    every: Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<bool> = None;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        if draining.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let ok = matches!(
            tokio::time::timeout(every.max(Duration::from_secs(1)), store.ping()).await,
            Ok(Ok(()))
        );
        if draining.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if last != Some(ok) {
            let status = if ok {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            reporter.set_service_status(SERVICE_NAME, status).await;
            ready.store(ok, std::sync::atomic::Ordering::SeqCst);
            if ok {
                tracing::info!("store reachable: SERVING");
            } else {
                tracing::warn!("store unreachable: NOT_SERVING");
            }
            last = Some(ok);
        }
    }
}
