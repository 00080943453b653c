//! The simulator's configuration: which schema, how big a dataset, which scripts may log in, how long
//! tokens live, and the initial fault and event-log knobs. Built by tests in Rust or by the binary's flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::faults::Faults;
use crate::site::EventKnobs;

/// One API script (an `ApiUser`) that may authenticate with `client_credentials`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptCredential {
    /// The script name (`client_id`).
    pub name: String,
    /// The script key (`client_secret`).
    pub key: String,
    /// The ApiUser's `generate_event_log_entries`: when false, its writes leave no events (protocol §5.5.2).
    pub generate_events: bool,
}

/// Where the site schema comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SchemaSource {
    /// The real site schema shipped in `tests/simulator/data/schema.json` (a copy of
    /// `shared/data/shotgun-schema/schema.json`), compiled into the binary.
    #[default]
    Embedded,
    /// A `schema_read` JSON file (and optionally its `schema_entity_read` companion).
    File {
        schema: PathBuf,
        schema_entity: Option<PathBuf>,
    },
}

/// Everything needed to start a simulated site.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where to listen; `None` binds `127.0.0.1:0` (an ephemeral port).
    pub listen: Option<SocketAddr>,
    /// Approximate number of generated entities (all types together). 0 generates only the fixed
    /// reference rows (pipeline steps, file types, the script users).
    pub scale: u64,
    /// Seed of the dataset generator (the same seed and scale give the same site).
    pub seed: u64,
    pub schema: SchemaSource,
    /// Restrict the schema to these entity types (plus `EventLogEntry`, `ApiUser`, `HumanUser`, which are
    /// always kept). `None` keeps the whole schema.
    pub types: Option<Vec<String>>,
    /// The scripts that may log in. The default is `cache`/`secret` (events on) and
    /// `silent`/`silent-secret` (events off).
    pub scripts: Vec<ScriptCredential>,
    /// Access-token lifetime (`expires_in`); the real default is 600 s.
    pub token_ttl: Duration,
    /// Initial request-level fault knobs.
    pub faults: Faults,
    /// Initial event-log knobs (visibility delay, out-of-order commits, gaps).
    pub events: EventKnobs,
    /// Deleting a row also retires the Versions and Tasks linked to it through `entity` (observed for
    /// Versions of a deleted Shot on a real site, GT 060). Default true.
    pub cascade_retire: bool,
    /// Whether cascaded retirements and revivals are logged. The real behaviour is unknown; the
    /// default (false) is the harsh choice: only a `retired_only` scan finds them.
    pub cascade_events: bool,
    /// The first EventLogEntry id handed out (real sites' logs start in the hundreds of thousands or
    /// millions; 1 by default).
    pub first_event_id: i64,
    /// Random workload edits made right after generation, so the site starts with an event log
    /// (the generated rows themselves have no events). 0 by default.
    pub history_edits: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: None,
            scale: 500,
            seed: 1,
            schema: SchemaSource::Embedded,
            types: None,
            scripts: vec![
                ScriptCredential {
                    name: "cache".into(),
                    key: "secret".into(),
                    generate_events: true,
                },
                ScriptCredential {
                    name: "silent".into(),
                    key: "silent-secret".into(),
                    generate_events: false,
                },
            ],
            token_ttl: Duration::from_secs(600),
            faults: Faults::default(),
            events: EventKnobs::default(),
            cascade_retire: true,
            cascade_events: false,
            first_event_id: 1,
            history_edits: 0,
        }
    }
}
