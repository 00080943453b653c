//! `shotgun-cache-query-server`: parses the command line, loads the config, sets up logging, binds
//! the listeners and calls [`shotgun_cache_query_server::run`] until SIGTERM or Ctrl-C.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use shotgun_cache_core::config::Config;
use shotgun_cache_query_server::{Listeners, run};

/// mimalloc instead of glibc malloc: the per-request allocations of a find or a commit (records,
/// SQL text, rows) came to a fifth of the process's CPU time under glibc's arenas and consolidation.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Serves typed gRPC finds, change streams and the shotgun_api3 protocol from the Shotgun Cache store.
#[derive(Debug, Parser)]
#[command(name = "shotgun-cache-query-server", version)]
struct Args {
    /// The TOML config file (see docs/config-contract.md).
    #[arg(long, env = "SHOTGUN_CACHE_CONFIG")]
    config: PathBuf,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match std::env::var("SHOTGUN_CACHE_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("pretty") | Ok("text") => false,
        _ => !std::io::stdout().is_terminal(),
    };
    if json {
        tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging();
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = Config::load(&args.config, &env)
        .with_context(|| format!("load the config {}", args.config.display()))?;
    let listeners = Listeners::bind(&config).await?;
    let (grpc, admin, http) = listeners.addrs()?;
    tracing::info!(%grpc, %admin, %http, "listening");
    run(config, listeners, shutdown_signal()).await
}
