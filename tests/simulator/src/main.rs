//! The `shotgun-sim` binary: builds a simulated site from flags, serves it, and prints one JSON line
//! (`{"url", "script_name", "script_key", ...}`) on stdout when ready, for scripts to parse.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use shotgun_sim::{EventKnobs, Faults, SchemaSource, ScriptCredential, SimConfig, Simulator};

/// A simulated Shotgun site (REST API v1 + event log + fault injection).
#[derive(Debug, Parser)]
#[command(name = "shotgun-sim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Approximate number of generated entities.
    #[arg(long, default_value_t = 1000)]
    scale: u64,
    /// Seed of the dataset generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Script name of the main API script (events on).
    #[arg(long, default_value = "cache")]
    script_name: String,
    /// Key of the main API script.
    #[arg(long, default_value = "secret", env = "SHOTGUN_SIM_SCRIPT_KEY")]
    script_key: String,
    /// Name of the second script, whose writes generate no events.
    #[arg(long, default_value = "silent")]
    silent_script_name: String,
    /// Key of the silent script.
    #[arg(long, default_value = "silent-secret")]
    silent_script_key: String,
    /// Access-token lifetime in seconds.
    #[arg(long, default_value_t = 600)]
    token_ttl: u64,
    /// Fixed latency added to every API request (ms).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Uniform extra latency 0..=N ms.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Probability (0..1) that an API request fails (429/5xx/hang/drop).
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Delay before events become visible (ms); real sites: 300-400.
    #[arg(long, default_value_t = 0)]
    event_delay_ms: u64,
    /// Fraction of transactions whose events commit late (out of id order).
    #[arg(long, default_value_t = 0.0)]
    out_of_order_rate: f64,
    /// Fraction of event ids never committed (permanent gaps).
    #[arg(long, default_value_t = 0.0)]
    gap_rate: f64,
    /// The first event-log id (a real site's log starts far above 1).
    #[arg(long, default_value_t = 1)]
    first_event_id: i64,
    /// Random edits made right after generation, so the site starts with an event log.
    #[arg(long, default_value_t = 0)]
    history_edits: u64,
    /// Comma-separated entity types to keep from the schema (default: all).
    #[arg(long, value_delimiter = ',')]
    types: Option<Vec<String>>,
    /// A `schema_read` JSON file to use instead of the embedded real-site schema.
    #[arg(long)]
    schema: Option<PathBuf>,
    /// Start a background workload of N random edits per second (0: none).
    #[arg(long, default_value_t = 0.0)]
    workload_rate: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
    let config = SimConfig {
        listen: Some(a.listen),
        scale: a.scale,
        seed: a.seed,
        schema: match a.schema {
            Some(p) => SchemaSource::File {
                schema: p,
                schema_entity: None,
            },
            None => SchemaSource::Embedded,
        },
        types: a.types,
        scripts: vec![
            ScriptCredential {
                name: a.script_name,
                key: a.script_key,
                generate_events: true,
            },
            ScriptCredential {
                name: a.silent_script_name,
                key: a.silent_script_key,
                generate_events: false,
            },
        ],
        token_ttl: Duration::from_secs(a.token_ttl),
        faults: Faults {
            latency_ms: a.latency_ms,
            jitter_ms: a.jitter_ms,
            error_rate: a.error_rate,
            ..Faults::default()
        },
        events: EventKnobs {
            visibility_delay_ms: a.event_delay_ms,
            out_of_order_rate: a.out_of_order_rate,
            gap_rate: a.gap_rate,
            ..EventKnobs::default()
        },
        first_event_id: a.first_event_id,
        history_edits: a.history_edits,
        ..SimConfig::default()
    };
    let sim = Simulator::start(config).await?;
    if a.workload_rate > 0.0 {
        let cfg = shotgun_sim::workload::WorkloadConfig {
            rate_per_sec: a.workload_rate,
            duration_secs: None,
            ..Default::default()
        };
        sim.state().workloads.start(sim.site().clone(), cfg);
    }
    let (name, key) = sim.credentials();
    let g = sim.generation();
    let silent = sim.scripts().get(1).cloned();
    println!(
        "{}",
        serde_json::json!({
            "url": sim.base_url(), "script_name": name, "script_key": key,
            "silent_script_name": silent.as_ref().map(|s| s.name.clone()), "silent_script_key": silent.map(|s| s.key),
            "entities": g.entities, "generation_seconds": g.seconds,
        })
    );
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}
