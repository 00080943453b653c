//! The `shotgun-cache-syncer` binary: parses the command line and the config, then calls the
//! library (`run`, `init-config`, `status`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shotgun_cache_core::config::Config;
use shotgun_cache_syncer::init_config::{InitOptions, render};
use shotgun_cache_syncer::site::{Site, SiteOptions};

/// mimalloc instead of glibc malloc: the per-request allocations of a find or a commit (records,
/// SQL text, rows) came to a fifth of the process's CPU time under glibc's arenas and consolidation.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "shotgun-cache-syncer",
    version,
    about = "Keeps a Shotgun Cache store equal to the Shotgun site"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import, then follow the event log (the service).
    Run {
        #[arg(long, env = "SHOTGUN_CACHE_CONFIG")]
        config: PathBuf,
    },
    /// Read the site schema and write a starter config with every cacheable field of the given types.
    InitConfig {
        /// The site URL, e.g. https://studio.shotgunstudio.com.
        #[arg(long)]
        site_url: String,
        /// The API script name; the key comes from SHOTGUN_CACHE_SITE__SCRIPT_KEY (or _FILE).
        #[arg(long)]
        script_name: String,
        /// Entity types to cache, comma-separated (e.g. Shot,Asset,Task).
        #[arg(long, value_delimiter = ',', required = true)]
        types: Vec<String>,
        #[arg(long, default_value = "shotgun-cache.db")]
        sqlite_path: String,
        /// Where to write the config (`-` for stdout).
        #[arg(long, short, default_value = "-")]
        output: String,
        /// Overwrite an existing output file.
        #[arg(long)]
        force: bool,
    },
    /// Print the running syncer's status (asks its gRPC port).
    Status {
        #[arg(long, env = "SHOTGUN_CACHE_CONFIG")]
        config: Option<PathBuf>,
        /// The syncer's gRPC address; default: from the config's syncer.grpc_listen.
        #[arg(long)]
        addr: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn env_map() -> HashMap<String, String> {
    std::env::vars().collect()
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(real_main(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn real_main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config } => {
            let config = Config::load(&config, &env_map())?;
            // Refuse a config without the script key before taking the ports: a bad config is
            // then named even while another process holds them.
            config.require_script_key()?;
            shotgun_cache_syncer::init_logging();
            let listeners = shotgun_cache_syncer::Listeners::bind(&config).await?;
            shotgun_cache_syncer::run(config, listeners, shutdown_signal()).await
        }
        Command::InitConfig {
            site_url,
            script_name,
            types,
            sqlite_path,
            output,
            force,
        } => {
            let env = env_map();
            let key = env
                .get("SHOTGUN_CACHE_SITE__SCRIPT_KEY")
                .cloned()
                .or_else(|| {
                    env.get("SHOTGUN_CACHE_SITE__SCRIPT_KEY_FILE")
                        .and_then(|p| std::fs::read_to_string(p).ok())
                        .map(|s| s.trim_end().to_owned())
                })
                .context("set SHOTGUN_CACHE_SITE__SCRIPT_KEY (or SHOTGUN_CACHE_SITE__SCRIPT_KEY_FILE) to read the site schema")?;
            let site = Site::new(SiteOptions::new(
                &site_url,
                &script_name,
                &key,
                Duration::from_secs(30),
            ))?;
            let schema = site.schema().await.context("read the site schema")?;
            let text = render(
                &schema,
                &InitOptions {
                    site_url,
                    script_name,
                    types,
                    sqlite_path,
                },
            )?;
            if output == "-" {
                print!("{text}");
            } else {
                if !force && std::path::Path::new(&output).exists() {
                    anyhow::bail!("--output {output} exists; pass --force to overwrite it");
                }
                std::fs::write(&output, text).with_context(|| format!("write {output}"))?;
                eprintln!("wrote {output}");
            }
            Ok(())
        }
        Command::Status { config, addr, json } => {
            let cfg = match &config {
                Some(p) => Some(Config::load(p, &env_map())?),
                None => None,
            };
            let addr = match (addr, &cfg) {
                (Some(a), _) => a,
                (None, Some(c)) => c.syncer.grpc_listen.replace("0.0.0.0", "127.0.0.1"),
                (None, None) => anyhow::bail!("give --addr or --config"),
            };
            let url = if addr.starts_with("http") {
                addr
            } else {
                format!("http://{addr}")
            };
            let token = cfg
                .as_ref()
                .and_then(|c| c.auth.tokens.first().map(|t| t.expose().to_owned()));
            let text = shotgun_cache_syncer::status_text(&url, token.as_deref(), json).await?;
            print!("{text}");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
