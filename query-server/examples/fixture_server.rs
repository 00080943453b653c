//! A query-server over a small fixture store, for the Python client tests (`scripts/test-python`).
//!
//! It builds the same fixture as the black-box tests (200 shots in 5 sequences, assets, a project)
//! in a temporary SQLite file, journals five changes, starts the query-server on `127.0.0.1:0`,
//! prints `READY <grpc address>` on stdout, then journals one more shot change every 300 ms (so a
//! Watch has something to see) until it gets SIGTERM or Ctrl-C.
//!
//! ```text
//! cargo run -p shotgun-cache-query-server --example fixture_server
//! ```

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::io::Write;
use std::time::Duration;

use shotgun_cache_core::model::Value;
use shotgun_cache_core::store::FieldChange;
use shotgun_cache_query_server::{Listeners, run_with};

use support::{Fixture, SHOTS, config, fast_options};

fn cut_in(id: i64, event: i64) -> shotgun_cache_core::store::EntityWrite {
    Fixture::patch(
        id,
        event,
        vec![FieldChange::Set("sg_cut_in".into(), Value::Int(event))],
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let fx = Fixture::new().await;
    fx.journaled((1..=5).map(|k| cut_in(k, k)).collect()).await;
    let listeners = Listeners::bind_local().await?;
    let (grpc, _, _) = listeners.addrs()?;
    let cfg = config(&fx.path, "", &[]);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run_with(
        cfg,
        fx.store.clone(),
        listeners,
        async {
            let _ = stop_rx.await;
        },
        fast_options(),
    ));
    println!("READY {grpc}");
    std::io::stdout().flush()?;
    let mut event = 100;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(Duration::from_millis(300)) => {
                event += 1;
                fx.journaled(vec![cut_in((event % SHOTS) + 1, event)]).await;
            }
        }
        if server.is_finished() {
            break;
        }
    }
    let _ = stop_tx.send(());
    server.await??;
    Ok(())
}
