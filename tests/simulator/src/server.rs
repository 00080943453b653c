//! Starting and stopping a simulated site: builds the site (schema + generated dataset), assembles the
//! HTTP app in one place (REST v1 and api3 behind the fault injector, the `/_sim` control API beside
//! them), and serves it on 127.0.0.1 with an accept loop that can drop a connection on demand.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

use crate::auth::Auth;
use crate::config::{ScriptCredential, SimConfig};
use crate::faults::{FaultInjector, Faults};
use crate::generate::{self, GenerationReport};
use crate::site::Site;
use crate::workload::Workloads;
use crate::{api3, control, faults, rest, schema_data};

/// The state every handler shares. Cloning is cheap (all `Arc`s).
#[derive(Clone, Debug)]
pub struct AppState {
    pub site: Arc<Site>,
    pub auth: Arc<Auth>,
    pub faults: Arc<FaultInjector>,
    pub workloads: Arc<Workloads>,
}

/// Put in every request's extensions: notifying it closes the request's connection without a response.
#[derive(Clone, Debug)]
pub struct ConnKill(pub Arc<Notify>);

/// The whole HTTP app. This is the one place routes are assembled: the API routes (REST v1 and
/// api3) get the fault injector; the control API does not.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .merge(rest::router(state.clone()))
        .merge(api3::router(state.clone()))
        .layer(axum::middleware::from_fn_with_state(
            state.faults.clone(),
            faults::inject,
        ));
    api.merge(control::router(state))
}

/// Builds the site a config describes (schema, scripts, generated dataset). Blocking: large scales take
/// seconds.
pub fn build_site(config: &SimConfig) -> anyhow::Result<(Arc<Site>, GenerationReport)> {
    let schema = schema_data::load(&config.schema, config.types.as_deref())
        .context("load the site schema")?;
    let site = Arc::new(Site::new(
        schema,
        config.scripts.clone(),
        config.events.clone(),
        config.cascade_retire,
        config.cascade_events,
    ));
    site.set_first_event_id(config.first_event_id);
    let started = Instant::now();
    let mut report = generate::generate(&site, config.scale, config.seed);
    if config.history_edits > 0 {
        let actor = site.default_actor();
        crate::workload::run_edits(&site, config.history_edits, config.seed, &actor);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok((site, report))
}

/// Entry point for tests and the binary.
#[derive(Debug)]
pub struct Simulator;

impl Simulator {
    /// Builds the site and serves it on `config.listen` (default `127.0.0.1:0`).
    ///
    /// # Errors
    /// The schema cannot be loaded or the address cannot be bound.
    pub async fn start(config: SimConfig) -> anyhow::Result<RunningSim> {
        let addr = config
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind {addr}"))?;
        Simulator::start_on(listener, config).await
    }

    /// Like [`Simulator::start`] on a listener the caller bound.
    pub async fn start_on(listener: TcpListener, config: SimConfig) -> anyhow::Result<RunningSim> {
        let cfg = config.clone();
        let (site, generation) = tokio::task::spawn_blocking(move || build_site(&cfg))
            .await
            .context("join the site builder")??;
        let state = AppState {
            site,
            auth: Arc::new(Auth::new(config.token_ttl)),
            faults: Arc::new(FaultInjector::new(config.faults.clone())),
            workloads: Arc::new(Workloads::default()),
        };
        let addr = listener.local_addr().context("read the bound address")?;
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, app(state.clone()), rx));
        Ok(RunningSim {
            addr,
            state,
            shutdown: Some(tx),
            task: Some(task),
            generation,
            scripts: config.scripts,
        })
    }
}

/// A running simulated site. Dropping it stops the server (without waiting).
#[derive(Debug)]
pub struct RunningSim {
    addr: SocketAddr,
    state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    generation: GenerationReport,
    scripts: Vec<ScriptCredential>,
}

impl RunningSim {
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The site: direct Rust access to its state and control actions.
    pub fn site(&self) -> &Arc<Site> {
        &self.state.site
    }

    /// The shared handler state (site, tokens, faults, workloads).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The main script (events on): `(name, key)`.
    pub fn credentials(&self) -> (String, String) {
        self.scripts
            .first()
            .map(|s| (s.name.clone(), s.key.clone()))
            .unwrap_or_default()
    }

    /// Every configured script.
    pub fn scripts(&self) -> &[ScriptCredential] {
        &self.scripts
    }

    /// What the dataset generator made and how long it took.
    pub fn generation(&self) -> &GenerationReport {
        &self.generation
    }

    /// Replaces the request fault knobs.
    pub fn set_faults(&self, faults: Faults) {
        self.state.faults.set(faults);
    }

    /// Changes the lifetime of access tokens issued from now on.
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.state.auth.set_ttl(ttl);
    }

    /// Stops accepting, closes every connection and waits for the server task.
    pub async fn shutdown(mut self) {
        self.state.workloads.stop_all();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.state.workloads.stop_all();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn serve(listener: TcpListener, app: Router, mut shutdown: oneshot::Receiver<()>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(serve_conn(stream, app.clone()));
                }
                Err(e) => {
                    tracing::warn!(cause = %e, "failed to accept");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

async fn serve_conn(stream: TcpStream, app: Router) {
    let kill = Arc::new(Notify::new());
    let k = kill.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnKill(k.clone()));
        app.clone().oneshot(req)
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
    tokio::select! {
        _ = conn => {}
        _ = kill.notified() => {}
    }
}
