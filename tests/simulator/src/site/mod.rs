//! The simulated site's state and its public Rust API: read (find/count/summarize), write
//! (create/update/delete/revive/link/batch, each producing the event-log rows protocol §5.4 describes),
//! schema edits, script switches, event-log knobs, archiving and the whole-truth dump.
//!
//! Every HTTP surface (REST v1 in `rest`, the control API in `control`, and the api3 JSON-RPC endpoint
//! in `api3`) is a thin adapter over [`Site`]; tests may also call it directly.
//!
//! # Locking
//! All state sits behind one `parking_lot::RwLock`. One lock (rather than one per table) is what makes a
//! batch a single transaction and keeps a row, its reverse links and its events consistent; readers
//! share it, so paging scans run in parallel. `parking_lot` rather than `std` because the lock is never
//! held across an `.await` and it has no poisoning to unwrap (a panicking test must not wedge the site
//! for the others). Long scans are run by the HTTP layer on the blocking pool, not on the runtime.
//!
//! # Ids
//! Entity ids are allocated per entity type (Shot 1 and Asset 1 may both exist); EventLogEntry ids are
//! one site-wide sequence.

mod events;
mod read;
mod schema_edit;
pub(crate) mod state;
mod write;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use shotgun_cache_core::model::{DataType, EntityRef, SiteSchema, Value};

pub use read::{Fields, Query, QueryFilter, Row, RowField, SortKey, Summary, slug};
pub use write::{FieldWrite, MultiMode, WriteOp, WriteResult};

use crate::config::ScriptCredential;
use state::{Cascade, State};

/// A random 32-hex-digit id (error ids).
pub fn uuid_hex() -> String {
    use rand::Rng;
    format!("{:032x}", rand::rng().random::<u128>())
}

/// Event-log knobs (protocol §5.5): how late events become visible, how many commit out of id order,
/// and how many reserved ids are never committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventKnobs {
    /// Every transaction's events become visible this long after the write (real sites: 300–400 ms).
    pub visibility_delay_ms: u64,
    /// Fraction (0..=1) of transactions whose events commit late, after a random extra delay, so a
    /// higher id is visible before a lower one.
    pub out_of_order_rate: f64,
    /// Upper bound of that extra delay.
    pub out_of_order_max_delay_ms: u64,
    /// Fraction (0..=1) of event ids reserved and never committed (permanent gaps).
    pub gap_rate: f64,
    /// Seed of the knob draws.
    pub seed: u64,
}

impl Default for EventKnobs {
    fn default() -> Self {
        EventKnobs {
            visibility_delay_ms: 0,
            out_of_order_rate: 0.0,
            out_of_order_max_delay_ms: 2000,
            gap_rate: 0.0,
            seed: 7,
        }
    }
}

/// Who performs a write: the user recorded on events, and whether events are generated at all.
#[derive(Debug, Clone, PartialEq)]
pub struct Actor {
    /// `{type: ApiUser|HumanUser, id, name}`.
    pub user: EntityRef,
    /// The ApiUser's `generate_event_log_entries` at the time of the write.
    pub generate_events: bool,
    /// Null for scripts; set for web UI sessions.
    pub session_uuid: Option<String>,
    /// When a script writes as a user (`scope=sudo_as_login:<login>`): the script, recorded on events
    /// as `meta.sudo_actual_user` while `user` is the impersonated HumanUser.
    pub sudo_actual_user: Option<EntityRef>,
}

/// A failed site operation, with the REST status/code it maps to. Messages follow the real site's wording.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SiteError {
    #[error("Entity type '{0}' does not exist.")]
    UnknownEntityType(String),
    #[error("API {verb}() {entity_type}.{field} doesn't exist.")]
    UnknownField {
        verb: &'static str,
        entity_type: String,
        field: String,
    },
    /// A filter the shared validator rejected; `field` is the `Type.field` at fault when known.
    #[error("{message}")]
    BadFilter {
        message: String,
        field: Option<String>,
    },
    #[error("{entity_type}: {id} not found")]
    NotFound { entity_type: String, id: i64 },
    #[error("API {verb}() {entity_type}.{field}: {message}")]
    InvalidValue {
        verb: &'static str,
        entity_type: String,
        field: String,
        message: String,
    },
    #[error("API {verb}() {entity_type}.{field} is not editable")]
    ReadOnlyField {
        verb: &'static str,
        entity_type: String,
        field: String,
    },
    #[error("Cannot sort by {entity_type}.{field}: {data_type} fields are not sortable")]
    Unsortable {
        entity_type: String,
        field: String,
        data_type: &'static str,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("Field '{entity_type}.{field}' does not exist.")]
    UnknownSchemaField { entity_type: String, field: String },
}

impl SiteError {
    /// The HTTP status the REST API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            SiteError::UnknownEntityType(_)
            | SiteError::NotFound { .. }
            | SiteError::UnknownSchemaField { .. } => 404,
            _ => 400,
        }
    }

    /// The Shotgun error code (102 auth, 103 bad request, 104 CRUD/not found).
    pub fn code(&self) -> u32 {
        match self {
            SiteError::NotFound { .. }
            | SiteError::Unsortable { .. }
            | SiteError::UnknownEntityType(_) => 104,
            _ => 103,
        }
    }

    /// The field the error is about, as the REST `source` key (`Type.field`).
    pub fn source_key(&self) -> Option<String> {
        match self {
            SiteError::UnknownField {
                entity_type, field, ..
            }
            | SiteError::InvalidValue {
                entity_type, field, ..
            }
            | SiteError::ReadOnlyField {
                entity_type, field, ..
            }
            | SiteError::Unsortable {
                entity_type, field, ..
            }
            | SiteError::UnknownSchemaField { entity_type, field } => {
                Some(format!("{entity_type}.{field}"))
            }
            SiteError::BadFilter { field, .. } => field.clone(),
            _ => None,
        }
    }
}

/// Why a script could not log in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("Can't authenticate script '{0}'")]
    BadScript(String),
}

/// One entity with every stored field, as the truth dump returns it (links per the link rule).
#[derive(Debug, Clone, PartialEq)]
pub struct TruthRow {
    pub entity_type: String,
    pub id: i64,
    pub retired: bool,
    /// Every schema field of the type that holds data (not summary/calculated/pivot/password), unset ones
    /// as their empty value.
    pub fields: BTreeMap<String, Value>,
}

impl TruthRow {
    /// `{"type", "id", "retired", <field>: <api3 JSON value>...}`.
    pub fn to_json(&self) -> Json {
        let mut m = serde_json::Map::new();
        m.insert("type".into(), Json::String(self.entity_type.clone()));
        m.insert("id".into(), Json::from(self.id));
        m.insert("retired".into(), Json::Bool(self.retired));
        for (k, v) in &self.fields {
            m.insert(k.clone(), v.to_json());
        }
        Json::Object(m)
    }
}

/// A simulated Shotgun site. Cheap to share as `Arc<Site>`; every method takes `&self`.
#[derive(Debug)]
pub struct Site {
    state: RwLock<State>,
    /// Set while reserved events wait for their commit time, so readers know to commit them first.
    has_pending: AtomicBool,
    scripts: RwLock<Vec<ScriptCredential>>,
}

impl Site {
    /// An empty site over `schema`. Scripts become ApiUser rows.
    pub fn new(
        schema: SiteSchema,
        scripts: Vec<ScriptCredential>,
        knobs: EventKnobs,
        cascade_retire: bool,
        cascade_events: bool,
    ) -> Site {
        let mut st = State::new(
            schema,
            knobs,
            Cascade {
                enabled: cascade_retire,
                logged: cascade_events,
            },
        );
        for s in &scripts {
            write::insert_script_user(&mut st, s);
        }
        Site {
            state: RwLock::new(st),
            has_pending: AtomicBool::new(false),
            scripts: RwLock::new(scripts),
        }
    }

    pub(crate) fn read_state(&self) -> RwLockReadGuard<'_, State> {
        if self.has_pending.load(Ordering::Acquire) {
            let now = Instant::now();
            // Readers only queue for the write lock when some reserved event is actually due.
            let due = self
                .state
                .read()
                .pending
                .values()
                .any(|p| p.visible_at <= now);
            if due {
                let mut st = self.state.write();
                st.commit_due(now);
                self.has_pending
                    .store(!st.pending.is_empty(), Ordering::Release);
            }
        }
        self.state.read()
    }

    pub(crate) fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        let mut st = self.state.write();
        st.commit_due(Instant::now());
        st
    }

    pub(crate) fn note_pending(&self, st: &State) {
        self.has_pending
            .store(!st.pending.is_empty(), Ordering::Release);
    }

    /// A copy of the current schema.
    pub fn schema(&self) -> SiteSchema {
        self.read_state().schema.clone()
    }

    /// Runs `f` with the schema borrowed (no copy).
    pub fn with_schema<R>(&self, f: impl FnOnce(&SiteSchema) -> R) -> R {
        f(&self.read_state().schema)
    }

    // ----- scripts and actors -----

    /// Checks a script's name and key (`client_credentials`, api3 `script_name`/`script_key`).
    pub fn authenticate_script(&self, name: &str, key: &str) -> Result<Actor, AuthFailure> {
        let ok = self
            .scripts
            .read()
            .iter()
            .any(|s| s.name == name && s.key == key);
        if !ok {
            return Err(AuthFailure::BadScript(name.to_owned()));
        }
        self.script_actor(name)
            .ok_or_else(|| AuthFailure::BadScript(name.to_owned()))
    }

    /// The actor of a configured script (its ApiUser and current event switch).
    pub fn script_actor(&self, name: &str) -> Option<Actor> {
        let st = self.read_state();
        write::script_actor(&st, name)
    }

    /// The first configured script: the default actor of control-API writes.
    pub fn default_actor(&self) -> Actor {
        let first = self.scripts.read().first().map(|s| s.name.clone());
        first.and_then(|n| self.script_actor(&n)).unwrap_or(Actor {
            user: EntityRef::new("ApiUser", 0),
            generate_events: true,
            session_uuid: None,
            sudo_actual_user: None,
        })
    }

    /// A web-UI actor: a HumanUser with a session uuid (events carry `session_uuid`).
    pub fn human_actor(&self, user_id: i64) -> Option<Actor> {
        let st = self.read_state();
        let row = st.row("HumanUser", user_id)?;
        Some(Actor {
            user: EntityRef {
                entity_type: "HumanUser".into(),
                id: user_id,
                name: row.display_name.clone(),
            },
            generate_events: true,
            session_uuid: Some(events::uuid_for("session", user_id)),
            sudo_actual_user: None,
        })
    }

    /// A script acting as the HumanUser whose `login` is `login` (`sudo_as_login`); `None` when no
    /// live user has that login.
    pub fn sudo_actor(&self, script: &Actor, login: &str) -> Option<Actor> {
        let st = self.read_state();
        let (id, row) = st.tables.get("HumanUser")?.rows.iter().find(|(_, e)| {
            !e.retired && matches!(e.fields.get("login"), Some(Value::Text(l)) if l == login)
        })?;
        Some(Actor {
            user: EntityRef {
                entity_type: "HumanUser".into(),
                id: *id,
                name: row.display_name.clone(),
            },
            generate_events: script.generate_events,
            session_uuid: None,
            sudo_actual_user: Some(script.user.clone()),
        })
    }

    /// The configured scripts.
    pub fn scripts(&self) -> Vec<ScriptCredential> {
        self.scripts.read().clone()
    }

    /// Turns a script's `generate_event_log_entries` on or off. Returns false for an unknown script.
    pub fn set_event_generation(&self, script: &str, on: bool) -> bool {
        let mut scripts = self.scripts.write();
        let Some(s) = scripts.iter_mut().find(|s| s.name == script) else {
            return false;
        };
        s.generate_events = on;
        let mut st = self.write_state();
        write::set_script_flag(&mut st, script, on);
        true
    }

    // ----- writes -----

    /// Creates an entity from `{field: value}` (api3/REST JSON values). Returns the new id.
    ///
    /// # Errors
    /// Unknown type or field, read-only field, or a value that does not fit the field.
    pub fn create(
        &self,
        actor: &Actor,
        entity_type: &str,
        fields: &serde_json::Map<String, Json>,
    ) -> Result<i64, SiteError> {
        let op = WriteOp::Create {
            entity_type: entity_type.to_owned(),
            fields: FieldWrite::set_all(fields),
        };
        match self.batch(actor, vec![op])?.pop() {
            Some(WriteResult::Created { id, .. }) => Ok(id),
            other => Err(SiteError::BadRequest(format!("create returned {other:?}"))),
        }
    }

    /// Updates fields (multi_entity fields are replaced). Returns the fields that changed.
    pub fn update(
        &self,
        actor: &Actor,
        entity_type: &str,
        id: i64,
        fields: &serde_json::Map<String, Json>,
    ) -> Result<Vec<String>, SiteError> {
        self.update_with(actor, entity_type, id, FieldWrite::set_all(fields))
    }

    /// Updates fields with per-field multi_entity modes (api3 `multi_entity_update_mode`).
    pub fn update_with(
        &self,
        actor: &Actor,
        entity_type: &str,
        id: i64,
        fields: Vec<FieldWrite>,
    ) -> Result<Vec<String>, SiteError> {
        let op = WriteOp::Update {
            entity_type: entity_type.to_owned(),
            id,
            fields,
        };
        match self.batch(actor, vec![op])?.pop() {
            Some(WriteResult::Updated { changed, .. }) => Ok(changed),
            other => Err(SiteError::BadRequest(format!("update returned {other:?}"))),
        }
    }

    /// Retires an entity. `Ok(false)` when it is already retired (api3 `delete` returns false).
    pub fn delete(&self, actor: &Actor, entity_type: &str, id: i64) -> Result<bool, SiteError> {
        match self
            .batch(
                actor,
                vec![WriteOp::Delete {
                    entity_type: entity_type.to_owned(),
                    id,
                }],
            )?
            .pop()
        {
            Some(WriteResult::Deleted { retired, .. }) => Ok(retired),
            other => Err(SiteError::BadRequest(format!("delete returned {other:?}"))),
        }
    }

    /// Revives a retired entity. `Ok(false)` when it is not retired.
    pub fn revive(&self, actor: &Actor, entity_type: &str, id: i64) -> Result<bool, SiteError> {
        match self
            .batch(
                actor,
                vec![WriteOp::Revive {
                    entity_type: entity_type.to_owned(),
                    id,
                }],
            )?
            .pop()
        {
            Some(WriteResult::Revived { revived, .. }) => Ok(revived),
            other => Err(SiteError::BadRequest(format!("revive returned {other:?}"))),
        }
    }

    /// Adds links to a multi_entity field (or sets an entity field to the single given link).
    pub fn link_add(
        &self,
        actor: &Actor,
        entity_type: &str,
        id: i64,
        field: &str,
        targets: &[EntityRef],
    ) -> Result<Vec<String>, SiteError> {
        let value = Json::Array(
            targets
                .iter()
                .map(|t| serde_json::json!({"type": t.entity_type, "id": t.id}))
                .collect(),
        );
        self.update_with(
            actor,
            entity_type,
            id,
            vec![FieldWrite {
                field: field.to_owned(),
                value,
                mode: MultiMode::Add,
            }],
        )
    }

    /// Removes links from a multi_entity field (or clears an entity field pointing at one of them).
    pub fn link_remove(
        &self,
        actor: &Actor,
        entity_type: &str,
        id: i64,
        field: &str,
        targets: &[EntityRef],
    ) -> Result<Vec<String>, SiteError> {
        let value = Json::Array(
            targets
                .iter()
                .map(|t| serde_json::json!({"type": t.entity_type, "id": t.id}))
                .collect(),
        );
        self.update_with(
            actor,
            entity_type,
            id,
            vec![FieldWrite {
                field: field.to_owned(),
                value,
                mode: MultiMode::Remove,
            }],
        )
    }

    /// Runs several writes as one transaction: all apply, or none do (a failed batch still consumes
    /// the event ids it reserved, leaving a permanent gap, as a rolled-back transaction does).
    pub fn batch(&self, actor: &Actor, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, SiteError> {
        let mut st = self.write_state();
        let out = write::run_transaction(&mut st, actor, ops);
        self.note_pending(&st);
        out
    }

    /// Sets a new thumbnail on an image field, as an upload does: one `_Change` with the new attachment id
    /// and `is_transient: true` (the field reads as the "pending" URL), then, when `finish` is true, the
    /// final `_Change` with `is_transient: false`. Returns the attachment id.
    pub fn set_image(
        &self,
        actor: &Actor,
        entity_type: &str,
        id: i64,
        field: &str,
        finish: bool,
    ) -> Result<i64, SiteError> {
        let mut st = self.write_state();
        let out = write::set_image(&mut st, actor, entity_type, id, field, finish);
        self.note_pending(&st);
        out
    }

    /// Finishes processing a transient thumbnail (the second, final `_Change` row).
    pub fn finish_image(
        &self,
        actor: &Actor,
        entity_type: &str,
        id: i64,
        field: &str,
    ) -> Result<(), SiteError> {
        let mut st = self.write_state();
        let out = write::finish_image(&mut st, actor, entity_type, id, field);
        self.note_pending(&st);
        out
    }

    // ----- reads -----

    /// Finds rows (filter, sort, page, project). See [`Query`].
    pub fn find(&self, q: &Query) -> Result<Vec<Row>, SiteError> {
        let st = self.read_state();
        read::find(&st, q)
    }

    /// Counts rows matching a filter.
    pub fn count(
        &self,
        entity_type: &str,
        filter: &QueryFilter,
        retired_only: bool,
    ) -> Result<u64, SiteError> {
        let st = self.read_state();
        read::count(&st, entity_type, filter, retired_only)
    }

    /// `_summarize`: record counts, optionally grouped by one plain field (`exact`).
    pub fn summarize(
        &self,
        entity_type: &str,
        filter: &QueryFilter,
        group_by: Option<&str>,
    ) -> Result<Summary, SiteError> {
        let st = self.read_state();
        read::summarize(&st, entity_type, filter, group_by)
    }

    /// `summarize` with every summary type and grouping the shared implementation
    /// (`shotgun_cache_core::summarize`) answers, over the rows matching `filter`.
    ///
    /// # Errors
    /// Unknown type or field, a bad filter, or a summary the shared implementation does not compute.
    pub fn summarize_request(
        &self,
        entity_type: &str,
        filter: &QueryFilter,
        request: &shotgun_cache_core::summarize::SummarizeRequest,
        include_archived_projects: bool,
    ) -> Result<shotgun_cache_core::summarize::SummaryResult, SiteError> {
        use shotgun_cache_core::summarize::{self, SummarizeError};
        let schema = self.schema();
        if schema.entity(entity_type).is_none() {
            return Err(SiteError::UnknownEntityType(entity_type.to_owned()));
        }
        let mut data_types: Vec<(String, DataType)> = Vec::new();
        for f in request
            .summaries
            .iter()
            .map(|s| &s.field)
            .chain(request.grouping.iter().map(|g| &g.field))
        {
            if data_types.iter().any(|(k, _)| k == f) {
                continue;
            }
            let dt = if f == "id" {
                DataType::Number
            } else {
                shotgun_cache_core::filter::validate_path(&schema, entity_type, f)
                    .map_err(|_| SiteError::UnknownField {
                        verb: "summarize",
                        entity_type: entity_type.to_owned(),
                        field: f.clone(),
                    })?
                    .leaf_type
            };
            data_types.push((f.clone(), dt));
        }
        let q = Query {
            entity_type: entity_type.to_owned(),
            filter: filter.clone(),
            fields: Fields::Only(summarize::needed_fields(request)),
            sorts: Vec::new(),
            offset: 0,
            limit: usize::MAX,
            retired_only: false,
            include_archived_projects,
        };
        let records: Vec<shotgun_cache_core::query::Record> = self
            .find(&q)?
            .into_iter()
            .map(|r| shotgun_cache_core::query::Record {
                entity_type: r.entity_type,
                id: r.id,
                fields: r.fields.into_iter().map(|f| (f.name, f.value)).collect(),
            })
            .collect();
        let lookup = |f: &str| data_types.iter().find(|(k, _)| k == f).map(|(_, t)| *t);
        summarize::summarize(request, &records, &lookup).map_err(|e| match e {
            SummarizeError::Unsupported { what, reason } => {
                SiteError::BadRequest(format!("API summarize() {what} is not simulated: {reason}"))
            }
            SummarizeError::Invalid(m) => {
                SiteError::BadRequest(format!("Request Parameters invalid. {m}"))
            }
        })
    }

    /// One row with the requested fields (`None` fields = all). Retired rows only when `retired`.
    pub fn read_one(
        &self,
        entity_type: &str,
        id: i64,
        fields: &Fields,
        retired: bool,
    ) -> Result<Row, SiteError> {
        let st = self.read_state();
        read::read_one(&st, entity_type, id, fields, retired)
    }

    /// Resolves a REST path segment (`shots`, `Shot`, `event_log_entries`) to an entity type.
    pub fn resolve_type(&self, segment: &str) -> Option<String> {
        let st = self.read_state();
        read::resolve_type(&st.schema, segment)
    }

    /// The whole truth: every row of every type (or of the given types), retired ones included, with
    /// every data field. EventLogEntry is excluded unless asked for by name.
    pub fn truth(&self, types: Option<&[String]>) -> Vec<TruthRow> {
        let st = self.read_state();
        read::truth(&st, types)
    }

    /// The visible event log (id order), as truth rows; `after` excludes ids at or below it.
    pub fn event_log(&self, after: i64) -> Vec<TruthRow> {
        let st = self.read_state();
        read::event_log(&st, after)
    }

    /// Starts the event-id sequence at `first` (a real site's log starts far above 1). Only raises it.
    pub fn set_first_event_id(&self, first: i64) {
        let mut st = self.state.write();
        st.next_event_id = st.next_event_id.max(first);
    }

    /// Ids reserved but not yet visible (out-of-order commits in flight).
    pub fn pending_event_ids(&self) -> Vec<i64> {
        self.state.read().pending.keys().copied().collect()
    }

    /// The highest event id handed out so far (visible, pending or lost).
    pub fn last_event_id(&self) -> i64 {
        self.state.read().next_event_id - 1
    }

    /// A pseudo-random row id of a type (live or retired), chosen from the draw `r`; `None` when the type
    /// has no such row near the draw.
    pub fn random_row(&self, entity_type: &str, retired: bool, r: u64) -> Option<i64> {
        let st = self.read_state();
        let t = st.tables.get(entity_type)?;
        let first = *t.rows.keys().next()?;
        let last = *t.rows.keys().next_back()?;
        let start = first + (r % ((last - first + 1) as u64)) as i64;
        t.rows
            .range(start..)
            .chain(t.rows.range(..start))
            .take(20_000)
            .find(|(_, e)| e.retired == retired)
            .map(|(id, _)| *id)
    }

    /// Row counts per type (live, retired).
    pub fn counts(&self) -> BTreeMap<String, (u64, u64)> {
        let st = self.read_state();
        st.tables
            .iter()
            .filter(|(_, t)| !t.rows.is_empty())
            .map(|(k, t)| {
                let retired = t.rows.values().filter(|e| e.retired).count() as u64;
                (k.clone(), (t.rows.len() as u64 - retired, retired))
            })
            .collect()
    }

    // ----- event-log knobs -----

    /// The current event-log knobs.
    pub fn event_knobs(&self) -> EventKnobs {
        self.state.read().knobs.clone()
    }

    /// Replaces the event-log knobs (reseeding their random draws).
    pub fn set_event_knobs(&self, knobs: EventKnobs) {
        let mut st = self.write_state();
        st.event_rng = rand::rngs::StdRng::seed_from_u64(knobs.seed);
        st.knobs = knobs;
    }

    /// Makes every reserved event visible now (ends all out-of-order delays; gaps stay gaps).
    pub fn flush_pending_events(&self) {
        let mut st = self.state.write();
        let far = Instant::now() + std::time::Duration::from_secs(365 * 24 * 3600);
        st.commit_due(far);
        self.note_pending(&st);
    }

    /// Archives (deletes from the API) every event with an id below `id`, as hosted-site retention does.
    /// Returns how many were removed.
    pub fn archive_events_before(&self, id: i64) -> usize {
        let mut st = self.write_state();
        st.archived_before = st.archived_before.max(id);
        let table = st.tables.entry(state::EVENT_TYPE.to_owned()).or_default();
        let keep = table.rows.split_off(&id);
        let removed = std::mem::replace(&mut table.rows, keep).len();
        let pending_keep = st.pending.split_off(&id);
        let removed_pending = std::mem::replace(&mut st.pending, pending_keep).len();
        self.note_pending(&st);
        removed + removed_pending
    }

    // ----- schema edits -----

    /// Adds a field (`Shotgun_DisplayColumn_New`). `properties` holds plain values
    /// (`{"valid_values": [...], "default_value": ..., "valid_types": [...]}`).
    pub fn schema_add_field(
        &self,
        actor: &Actor,
        entity_type: &str,
        field: &str,
        data_type: DataType,
        display_name: &str,
        properties: &Json,
    ) -> Result<(), SiteError> {
        let mut st = self.write_state();
        let out = schema_edit::add_field(
            &mut st,
            actor,
            entity_type,
            field,
            data_type,
            display_name,
            properties,
        );
        self.note_pending(&st);
        out
    }

    /// Removes a field and its values (`Shotgun_DisplayColumn_Retirement`).
    pub fn schema_remove_field(
        &self,
        actor: &Actor,
        entity_type: &str,
        field: &str,
    ) -> Result<(), SiteError> {
        let mut st = self.write_state();
        let out = schema_edit::remove_field(&mut st, actor, entity_type, field);
        self.note_pending(&st);
        out
    }

    /// Replaces a list/status_list field's valid values (`Shotgun_DisplayColumn_Change` on `properties`).
    pub fn schema_set_valid_values(
        &self,
        actor: &Actor,
        entity_type: &str,
        field: &str,
        values: &[String],
    ) -> Result<(), SiteError> {
        let mut st = self.write_state();
        let out = schema_edit::set_valid_values(&mut st, actor, entity_type, field, values);
        self.note_pending(&st);
        out
    }

    /// Bulk access for the generator: runs `f` with the state locked for writing (no events).
    pub(crate) fn with_state_mut<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut st = self.state.write();
        f(&mut st)
    }
}
