//! The RethinkDB store: for studios that outgrow one machine. The syncer and any number of
//! query-server replicas share one database.
//!
//! # Layout (one database per deployment)
//! - `e_<Type>_<generation>`: one table per cached type; documents as in [`doc`]. The live table of a
//!   type is named by its `copies` document (`{id: Type, live, staging, gen}`); queries resolve it
//!   inside the database (`r.table(r.table("copies").get(T)("live"))`), so promoting a staging copy
//!   is one atomic single-document update that every replica sees at once.
//! - Secondary indexes `f_<field>` for the layout's indexed fields (see [`compile`]), created and
//!   waited for in `prepare` and `begin_staging`.
//! - `journal`: the change journal, primary key = a replay-proof key (see [`commit`]), indexes `seq`
//!   and `at`. `meta`: the `journal_seq` counter. `state`, `type_state`, `schema` (the site schema
//!   and the layouts).
//!
//! # Writes without transactions
//! See [`commit`]: every entity write is a compare-and-swap guarded by the document's `rev`, computed
//! with the ordering guard of [`apply`]; journal entries have deterministic keys and are written
//! before the data; the cursor (`state`) is written last. A batch interrupted at any point and
//! replayed writes every entity change and every journal entry exactly once.
//!
//! # Connections
//! [`wire`] is our own thin ReQL client (why: see its docs). A small pool of connections serves
//! calls (each connection multiplexes queries by token); every call has a timeout
//! ([`RethinkOptions::timeout`], covering the wait for a pooled connection, connecting, and the
//! exchange); a broken connection is replaced on the next call, so the store recovers by itself when
//! the server comes back. While the server is unreachable every call fails within its timeout with
//! `Unavailable`: at once when connections are refused or reset, after the timeout (plus a one-second
//! ping) when the server is stalled (a stopped process, a dead network path: TCP connects but
//! nothing answers). A call that times out on a connection that heard nothing from the server
//! meanwhile, and whose ping then goes unanswered too, closes that connection (see
//! `RethinkStore::bounded`); a timeout while the server answers is a slow query (`Timeout`) and
//! leaves the connection alone. `ping` (the services' health probes) is one
//! such call. `wait_journal` is served by one changefeed per store on its own connection,
//! reconnecting with backoff, with polling as a safety net.
//!
//! # Constructors
//! - [`RethinkStore::connect`] (the syncer): connects, creates the database and fixed tables if
//!   missing, loads the catalog; fails with `Unavailable` when the server cannot be reached.
//! - [`RethinkStore::open_lazy`] (the query-server): no I/O and nothing created; connects on first
//!   use, so a replica starts while RethinkDB is down and answers `Unavailable` until it is back. The
//!   layouts are re-read every few seconds, since the syncer (another process) changes them.
//!
//! # Known limits
//! - Sorting by anything but `id` is an in-memory `order_by` on the server (100,000 rows at most).
//! - No TLS (RethinkDB's driver port is plain TCP here, as with `reql`).
//! - Integers beyond 2^53 lose precision (RethinkDB numbers are doubles).
//! - Between a promotion's layout update and its table swap (two single-document writes), readers
//!   may briefly decode the old copy with the new layout.

pub mod apply;
mod commit;
mod compile;
pub(crate) mod doc;
mod read;
pub(crate) mod term;
pub(crate) mod wire;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use ql2::term::TermType as T;
use serde_json::{Value as Json, json};

use self::doc::Kinds;
use self::term::{Term, branch, contains, db, field, func1, get, lit, op, op_opts, table};
use self::wire::{Conn, ConnectOptions, ServerErrorKind, WireError};
use super::{
    CommitResult, CountQuery, JournalEntry, Store, StoreError, TypeLayout, TypeState, WriteBatch,
};
use crate::config::StoreConfig;
use crate::model::{DateTime, Entity, SiteSchema};
use crate::query::{FindQuery, Record};

/// Connection settings of the RethinkDB store.
#[derive(Debug, Clone)]
pub struct RethinkOptions {
    /// `host:port` of the driver port.
    pub address: String,
    pub database: String,
    pub user: String,
    pub password: String,
    /// Connections in the query pool.
    pub pool_size: usize,
    /// Deadline of every call.
    pub timeout: Duration,
}

impl RethinkOptions {
    pub fn from_config(config: &StoreConfig) -> RethinkOptions {
        RethinkOptions {
            address: config.rethinkdb_address.clone(),
            database: config.rethinkdb_database.clone(),
            user: config.rethinkdb_user.clone(),
            password: config.rethinkdb_password.expose().to_owned(),
            pool_size: 4,
            timeout: Duration::from_secs(config.rethinkdb_timeout_secs),
        }
    }
}

/// The RethinkDB backend. Cheap to clone.
#[derive(Clone)]
pub struct RethinkStore {
    inner: Arc<Inner>,
}

struct Inner {
    opts: RethinkOptions,
    pool: Vec<tokio::sync::Mutex<Option<Conn>>>,
    next: AtomicUsize,
    /// The layouts and schema last seen (refreshed from the database on a miss).
    layouts: RwLock<BTreeMap<String, TypeLayout>>,
    schema: RwLock<Option<SiteSchema>>,
    /// One batch at a time, so journal sequence numbers become visible in order.
    write_lock: tokio::sync::Mutex<()>,
    feed: read::Feed,
    /// When the layouts were last read from the database (another process may change them).
    catalog_at: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How long a silent connection gets to answer a ping after a call timed out on it.
const LIVENESS_PROBE: Duration = Duration::from_secs(1);

const FIXED_TABLES: [&str; 6] = ["journal", "meta", "state", "type_state", "schema", "copies"];

impl RethinkStore {
    /// Connects with the settings of the config file and creates the database and its fixed
    /// tables if missing.
    pub async fn connect(config: &StoreConfig) -> Result<RethinkStore, StoreError> {
        RethinkStore::connect_with(RethinkOptions::from_config(config)).await
    }

    /// Connects with explicit settings (tests use their own database name).
    pub async fn connect_with(opts: RethinkOptions) -> Result<RethinkStore, StoreError> {
        let store = RethinkStore::open_lazy_with(opts);
        store.bootstrap().await?;
        store.refresh_catalog().await?;
        Ok(store)
    }

    /// A store that connects on first use and never creates anything: for readers (the
    /// query-server), which must start while RethinkDB is unreachable and then answer
    /// `Unavailable` until it is back. No I/O happens here.
    pub fn open_lazy(config: &StoreConfig) -> RethinkStore {
        RethinkStore::open_lazy_with(RethinkOptions::from_config(config))
    }

    /// [`open_lazy`](Self::open_lazy) with explicit settings.
    pub fn open_lazy_with(opts: RethinkOptions) -> RethinkStore {
        let size = opts.pool_size.max(1);
        RethinkStore {
            inner: Arc::new(Inner {
                pool: (0..size).map(|_| tokio::sync::Mutex::new(None)).collect(),
                next: AtomicUsize::new(0),
                layouts: RwLock::new(BTreeMap::new()),
                schema: RwLock::new(None),
                write_lock: tokio::sync::Mutex::new(()),
                feed: read::Feed::default(),
                catalog_at: std::sync::Mutex::new(None),
                opts,
            }),
        }
    }

    /// Reloads the layouts when they were never read or are older than a few seconds (the syncer,
    /// another process, changes them with `prepare`).
    pub(crate) async fn fresh_catalog(&self) -> Result<(), StoreError> {
        let stale = self
            .inner
            .catalog_at
            .lock()
            .expect("catalog clock lock is never poisoned")
            .is_none_or(|t| t.elapsed() > Duration::from_secs(5));
        if stale {
            self.refresh_catalog().await?;
        }
        Ok(())
    }

    /// The database this store uses.
    pub fn database(&self) -> &str {
        &self.inner.opts.database
    }

    /// Drops the whole database (tests clean up with it).
    pub async fn drop_database(&self) -> Result<(), StoreError> {
        let d = self.database().to_owned();
        self.atom(op(T::DbDrop, vec![json!(d)])).await.map(|_| ())
    }

    /// A fidelity probe of the server (tests use it to detect reqlite's gaps): whether an in-memory
    /// `order_by` breaks ties between null keys by the next key, as RethinkDB does. reqlite 2.3.0
    /// does not (it mis-sorts rows whose sort keys are null).
    pub async fn sorts_null_keys_correctly(&self) -> Result<bool, StoreError> {
        let rows = lit(&json!([{"k": null, "i": 2}, {"k": null, "i": 1}, {"k": null, "i": 3}]));
        let t = op(
            T::OrderBy,
            vec![
                rows,
                term::asc(func1(|x| field(x, "k"))),
                term::asc(json!("i")),
            ],
        );
        let got: Vec<Option<i64>> = self
            .list(t)
            .await?
            .iter()
            .map(|r| r.get("i").and_then(Json::as_i64))
            .collect();
        Ok(got == vec![Some(1), Some(2), Some(3)])
    }

    fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            addr: self.inner.opts.address.clone(),
            user: self.inner.opts.user.clone(),
            password: self.inner.opts.password.clone(),
        }
    }

    fn timeout(&self) -> Duration {
        self.inner.opts.timeout
    }

    /// A healthy pooled connection (reconnecting the slot if its connection broke). Waiting for the
    /// slot and connecting share one deadline, the call timeout; missing it is `Unavailable`.
    async fn conn(&self) -> Result<Conn, StoreError> {
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % self.inner.pool.len();
        let get = async {
            let mut slot = self.inner.pool[i].lock().await;
            if let Some(c) = slot.as_ref()
                && !c.is_broken()
            {
                return Ok(c.clone());
            }
            *slot = None;
            let c = Conn::connect(&self.connect_options())
                .await
                .map_err(map_wire)?;
            *slot = Some(c.clone());
            Ok(c)
        };
        match tokio::time::timeout(self.timeout(), get).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(format!(
                "RethinkDB at {} did not accept a connection within {:?} (the server is stalled or unreachable)",
                self.inner.opts.address,
                self.timeout()
            ))),
        }
    }

    /// Runs one exchange on `c` within the call timeout. When the call times out while the
    /// connection heard nothing from the server meanwhile, a trivial query on the same connection
    /// tells a slow query from a dead server: if it is answered within [`LIVENESS_PROBE`], the
    /// server is alive and the call was slow (`Timeout`, the connection stays); if not, the server
    /// is stalled or the network path is dead, so the connection is closed (failing the other
    /// queries waiting on it, so they do not each wait out their timeout), the next call opens a
    /// new one, and the error is `Unavailable`.
    pub(crate) async fn bounded<R>(
        &self,
        c: &Conn,
        call: impl std::future::Future<Output = Result<R, WireError>>,
    ) -> Result<R, StoreError> {
        let heard = c.frames_heard();
        match tokio::time::timeout(self.timeout(), call).await {
            Ok(r) => r.map_err(map_wire),
            Err(_) if c.frames_heard() == heard => {
                let probe = LIVENESS_PROBE.min(self.timeout());
                let alive = matches!(
                    tokio::time::timeout(probe, c.run_atom(&json!(1), &json!({}))).await,
                    Ok(Ok(_))
                );
                if alive {
                    return Err(StoreError::Timeout(self.timeout()));
                }
                let msg = format!(
                    "RethinkDB at {} did not answer within {:?}, nor a ping within {probe:?} (the server is stalled or unreachable)",
                    self.inner.opts.address,
                    self.timeout()
                );
                tracing::warn!(
                    address = %self.inner.opts.address,
                    "RethinkDB connection silent past the call timeout; closing it"
                );
                c.close(&msg);
                Err(StoreError::Unavailable(msg))
            }
            Err(_) => Err(StoreError::Timeout(self.timeout())),
        }
    }

    /// Runs a query and returns every item (sequences and array atoms flattened).
    pub(crate) async fn list(&self, t: Term) -> Result<Vec<Json>, StoreError> {
        let c = self.conn().await?;
        self.bounded(&c, c.run_list(&t, &json!({}))).await
    }

    /// Runs a query whose result is one value.
    pub(crate) async fn atom(&self, t: Term) -> Result<Json, StoreError> {
        let c = self.conn().await?;
        self.bounded(&c, c.run_atom(&t, &json!({}))).await
    }

    /// A table of this store's database, by literal name.
    pub(crate) fn tbl(&self, name: &str) -> Term {
        table(self.database(), json!(name))
    }

    /// The live table of a type, resolved inside the database from its `copies` document.
    pub(crate) fn live(&self, entity_type: &str) -> Term {
        table(
            self.database(),
            field(get(self.tbl("copies"), json!(entity_type)), "live"),
        )
    }

    /// Creates the database and the fixed tables and indexes if missing. Safe to run concurrently
    /// from several processes: "already exists" answers are ignored.
    async fn bootstrap(&self) -> Result<(), StoreError> {
        let d = self.database().to_owned();
        let create_db = branch(
            contains(op(T::DbList, vec![]), json!(d)),
            Json::Null,
            op(T::DbCreate, vec![json!(d)]),
        );
        ignore_exists(self.atom(create_db).await.map(|_| ()))?;
        for t in FIXED_TABLES {
            ignore_exists(self.ensure_table(t).await)?;
        }
        // (Databases made before the journal was trimmed by `seq` also have an index on `at`,
        // which nothing reads.)
        ignore_exists(
            self.ensure_index("journal", "seq", func1(|row| field(row, "seq")), false)
                .await,
        )?;
        self.index_wait(self.tbl("journal")).await?;
        let counter = op(
            T::Insert,
            vec![
                self.tbl("meta"),
                lit(&json!({"id": "journal_seq", "seq": 0})),
            ],
        );
        self.atom(counter).await?;
        Ok(())
    }

    pub(crate) async fn ensure_table(&self, name: &str) -> Result<(), StoreError> {
        let dbt = db(self.database());
        let t = branch(
            contains(op(T::TableList, vec![dbt.clone()]), json!(name)),
            Json::Null,
            op(T::TableCreate, vec![dbt, json!(name)]),
        );
        self.atom(t).await.map(|_| ())
    }

    pub(crate) async fn ensure_index(
        &self,
        table_name: &str,
        index: &str,
        f: Term,
        multi: bool,
    ) -> Result<(), StoreError> {
        let tb = self.tbl(table_name);
        let create = if multi {
            op_opts(
                T::IndexCreate,
                vec![tb.clone(), json!(index), f],
                json!({"multi": true}),
            )
        } else {
            op(T::IndexCreate, vec![tb.clone(), json!(index), f])
        };
        let t = branch(
            contains(op(T::IndexList, vec![tb]), json!(index)),
            Json::Null,
            create,
        );
        self.atom(t).await.map(|_| ())
    }

    /// `index_wait` on a table (reql cannot call it; here it is one term).
    pub(crate) async fn index_wait(&self, tb: Term) -> Result<(), StoreError> {
        self.atom(op(T::IndexWait, vec![tb])).await.map(|_| ())
    }

    /// Reloads layouts and schema from the database into the in-process cache.
    pub(crate) async fn refresh_catalog(&self) -> Result<(), StoreError> {
        let docs = self.list(self.tbl("schema")).await?;
        *self
            .inner
            .catalog_at
            .lock()
            .expect("catalog clock lock is never poisoned") = Some(std::time::Instant::now());
        for d in docs {
            match d.get("id").and_then(Json::as_str) {
                Some("layouts") => {
                    let mut map = BTreeMap::new();
                    for l in d
                        .get("layouts")
                        .and_then(Json::as_array)
                        .cloned()
                        .unwrap_or_default()
                    {
                        let l = doc::layout_from(&l)?;
                        map.insert(l.entity_type.clone(), l);
                    }
                    *self
                        .inner
                        .layouts
                        .write()
                        .expect("layout lock is never poisoned") = map;
                }
                Some("site") => {
                    let s = doc::schema_from(d.get("schema").unwrap_or(&Json::Null))?;
                    *self
                        .inner
                        .schema
                        .write()
                        .expect("schema lock is never poisoned") = Some(s);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The layout of a cached type (refreshing the cache once on a miss).
    pub(crate) async fn layout(&self, entity_type: &str) -> Result<TypeLayout, StoreError> {
        self.fresh_catalog().await?;
        if let Some(l) = self
            .inner
            .layouts
            .read()
            .expect("layout lock is never poisoned")
            .get(entity_type)
        {
            return Ok(l.clone());
        }
        self.refresh_catalog().await?;
        self.inner
            .layouts
            .read()
            .expect("layout lock is never poisoned")
            .get(entity_type)
            .cloned()
            .ok_or_else(|| StoreError::Invalid(format!("entity type {entity_type} is not cached")))
    }

    /// Field kinds of a type, from the cached layouts (empty when unknown).
    pub(crate) fn kinds(&self, entity_type: &str) -> Kinds {
        self.inner
            .layouts
            .read()
            .expect("layout lock is never poisoned")
            .get(entity_type)
            .map(doc::kinds_of)
            .unwrap_or_default()
    }

    pub(crate) fn cached_types(&self) -> Vec<String> {
        self.inner
            .layouts
            .read()
            .expect("layout lock is never poisoned")
            .keys()
            .cloned()
            .collect()
    }

    pub(crate) fn display_field(&self, entity_type: &str) -> Option<String> {
        let schema = self
            .inner
            .schema
            .read()
            .expect("schema lock is never poisoned");
        schema
            .as_ref()
            .and_then(|s| s.entity(entity_type))
            .and_then(|t| t.display_field())
            .map(str::to_owned)
    }

    /// The `copies` document of a type: (live table, staging table, generation).
    pub(crate) async fn copies(
        &self,
        entity_type: &str,
    ) -> Result<Option<(String, Option<String>, i64)>, StoreError> {
        let d = self
            .atom(get(self.tbl("copies"), json!(entity_type)))
            .await?;
        if d.is_null() {
            return Ok(None);
        }
        let live = d
            .get("live")
            .and_then(Json::as_str)
            .ok_or_else(|| StoreError::Corrupt(format!("copies of {entity_type}: {d}")))?;
        Ok(Some((
            live.to_owned(),
            d.get("staging").and_then(Json::as_str).map(str::to_owned),
            d.get("gen").and_then(Json::as_i64).unwrap_or(1),
        )))
    }

    /// The layout a type's staging copy was started with (`begin_staging`), if any.
    pub(crate) async fn staging_layout(
        &self,
        entity_type: &str,
    ) -> Result<Option<TypeLayout>, StoreError> {
        let d = self
            .atom(get(self.tbl("copies"), json!(entity_type)))
            .await?;
        match d.get("staging_layout") {
            Some(l) if !l.is_null() => doc::layout_from(l).map(Some),
            _ => Ok(None),
        }
    }

    /// Makes `layout` the type's layout (after a promotion), in the database and in this process.
    pub(crate) async fn set_layout(&self, layout: &TypeLayout) -> Result<(), StoreError> {
        use crate::store::Store as _;
        let mut all = self.layouts().await?;
        all.retain(|l| l.entity_type != layout.entity_type);
        all.push(layout.clone());
        all.sort_by(|a, b| a.entity_type.cmp(&b.entity_type));
        let d = json!({"id": "layouts", "layouts": all.iter().map(doc::layout_json).collect::<Vec<_>>()});
        self.atom(op_opts(
            T::Insert,
            vec![self.tbl("schema"), lit(&d)],
            json!({"conflict": "replace"}),
        ))
        .await?;
        *self
            .inner
            .layouts
            .write()
            .expect("layout lock is never poisoned") = all
            .into_iter()
            .map(|l| (l.entity_type.clone(), l))
            .collect();
        Ok(())
    }

    /// Creates a type's table with its indexes (idempotent) and waits for the indexes.
    pub(crate) async fn ensure_type_table(
        &self,
        name: &str,
        layout: &TypeLayout,
    ) -> Result<(), StoreError> {
        ignore_exists(self.ensure_table(name).await)?;
        let wanted: Vec<(String, Term, bool)> = compile::index_defs(layout);
        let existing = self.list(op(T::IndexList, vec![self.tbl(name)])).await?;
        for e in existing.iter().filter_map(Json::as_str) {
            if e.starts_with("f_") && !wanted.iter().any(|(n, _, _)| n == e) {
                self.atom(op(T::IndexDrop, vec![self.tbl(name), json!(e)]))
                    .await?;
            }
        }
        for (idx, f, multi) in wanted {
            ignore_exists(self.ensure_index(name, &idx, f, multi).await)?;
        }
        self.index_wait(self.tbl(name)).await
    }
}

/// Treats "already exists" races (two processes creating the same table) as success.
fn ignore_exists(r: Result<(), StoreError>) -> Result<(), StoreError> {
    match r {
        Err(StoreError::Internal(m) | StoreError::Unavailable(m))
            if m.contains("already exists") =>
        {
            Ok(())
        }
        other => other,
    }
}

/// The one mapping of wire errors to store errors.
fn map_wire(e: WireError) -> StoreError {
    match e {
        WireError::Connect { .. } | WireError::Broken(_) | WireError::Handshake { .. } => {
            StoreError::Unavailable(e.to_string())
        }
        WireError::Server {
            kind: ServerErrorKind::Availability,
            ..
        } => StoreError::Unavailable(e.to_string()),
        WireError::Server {
            kind: ServerErrorKind::ResourceLimit,
            message,
        } => StoreError::Invalid(format!(
            "the query exceeds a RethinkDB limit (in-memory sorts hold at most 100,000 rows; narrow the filter or sort by id): {message}"
        )),
        WireError::Server {
            kind: ServerErrorKind::Permission,
            message,
        } => StoreError::Unavailable(format!("permission denied: {message}")),
        WireError::Server { message, .. } => StoreError::Internal(message),
        WireError::Protocol(m) => StoreError::Internal(m),
    }
}

#[async_trait]
impl Store for RethinkStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.atom(json!(1)).await.map(|_| ())
    }

    async fn prepare(&self, schema: &SiteSchema, layouts: &[TypeLayout]) -> Result<(), StoreError> {
        self.bootstrap().await?;
        let schema_doc = json!({"id": "site", "schema": doc::schema_json(schema)});
        let layouts_doc = json!({"id": "layouts", "layouts": layouts.iter().map(doc::layout_json).collect::<Vec<_>>()});
        for d in [schema_doc, layouts_doc] {
            self.atom(op_opts(
                T::Insert,
                vec![self.tbl("schema"), lit(&d)],
                json!({"conflict": "replace"}),
            ))
            .await?;
        }
        for l in layouts {
            let first = format!("e_{}_1", l.entity_type);
            let copies = json!({"id": l.entity_type, "live": first, "staging": null, "gen": 1});
            self.atom(op(T::Insert, vec![self.tbl("copies"), lit(&copies)]))
                .await?;
            let (live, staging, _) = self.copies(&l.entity_type).await?.ok_or_else(|| {
                StoreError::Internal(format!("copies document of {} vanished", l.entity_type))
            })?;
            self.ensure_type_table(&live, l).await?;
            if let Some(s) = staging {
                self.ensure_type_table(&s, l).await?;
            }
        }
        *self
            .inner
            .schema
            .write()
            .expect("schema lock is never poisoned") = Some(schema.clone());
        *self
            .inner
            .layouts
            .write()
            .expect("layout lock is never poisoned") = layouts
            .iter()
            .map(|l| (l.entity_type.clone(), l.clone()))
            .collect();
        Ok(())
    }

    async fn schema(&self) -> Result<Option<SiteSchema>, StoreError> {
        let d = self.atom(get(self.tbl("schema"), json!("site"))).await?;
        match d.get("schema") {
            Some(s) => Ok(Some(doc::schema_from(s)?)),
            None => Ok(None),
        }
    }

    async fn layouts(&self) -> Result<Vec<TypeLayout>, StoreError> {
        let d = self.atom(get(self.tbl("schema"), json!("layouts"))).await?;
        d.get("layouts")
            .and_then(Json::as_array)
            .map(|a| a.iter().map(doc::layout_from).collect())
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    async fn commit(&self, batch: WriteBatch) -> Result<CommitResult, StoreError> {
        commit::commit(self, &batch).await
    }

    /// The batch always comes back: a commit here only reads it, and a replayed commit is exact
    /// (see `commit`).
    async fn commit_or_return(
        &self,
        batch: WriteBatch,
    ) -> Result<CommitResult, (StoreError, Option<WriteBatch>)> {
        match commit::commit(self, &batch).await {
            Ok(r) => Ok(r),
            Err(e) => Err((e, Some(batch))),
        }
    }

    async fn begin_staging(&self, layout: &TypeLayout) -> Result<(), StoreError> {
        commit::begin_staging(self, layout).await
    }

    async fn promote_staging(&self, state: TypeState) -> Result<(), StoreError> {
        commit::promote_staging(self, state).await
    }

    async fn find(&self, query: &FindQuery) -> Result<Vec<Record>, StoreError> {
        read::find(self, query).await
    }

    async fn count(&self, query: &CountQuery) -> Result<u64, StoreError> {
        read::count(
            self,
            &query.entity_type,
            &query.filter,
            query.retired_only,
            query.now,
        )
        .await
    }

    async fn get(&self, entity_type: &str, id: i64) -> Result<Option<Entity>, StoreError> {
        self.layout(entity_type).await?;
        let d = self.atom(get(self.live(entity_type), json!(id))).await?;
        if d.is_null() {
            return Ok(None);
        }
        doc::decode_entity(entity_type, &d, &self.kinds(entity_type)).map(Some)
    }

    async fn ids(
        &self,
        entity_type: &str,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<(i64, bool)>, StoreError> {
        read::ids(self, entity_type, after_id, limit).await
    }

    async fn type_counts(&self) -> Result<BTreeMap<String, (u64, u64)>, StoreError> {
        read::type_counts(self).await
    }

    async fn type_states(&self) -> Result<Vec<TypeState>, StoreError> {
        let docs = self.list(self.tbl("type_state")).await?;
        let mut out = docs
            .iter()
            .map(doc::type_state_from)
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.entity_type.cmp(&b.entity_type));
        Ok(out)
    }

    async fn get_state(&self, key: &str) -> Result<Option<Json>, StoreError> {
        let d = self.atom(get(self.tbl("state"), json!(key))).await?;
        Ok(d.get("value").cloned())
    }

    async fn journal_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        read::journal_after(self, after, limit).await
    }

    async fn journal_head(&self) -> Result<u64, StoreError> {
        // The head survives trimming: `meta/journal_trimmed` remembers the head at the last trim.
        let in_table = read::journal_edge(self, true).await?.unwrap_or(0);
        let trimmed = self
            .atom(get(self.tbl("meta"), json!("journal_trimmed")))
            .await?;
        Ok(in_table.max(trimmed.get("seq").and_then(Json::as_u64).unwrap_or(0)))
    }

    async fn journal_tail(&self) -> Result<Option<u64>, StoreError> {
        read::journal_edge(self, false).await
    }

    async fn trim_journal(&self, before: DateTime) -> Result<u64, StoreError> {
        // Remember the head first, so trimming everything never moves the head back.
        let head = self.journal_head().await?;
        let mark = json!({"id": "journal_trimmed", "seq": head});
        self.atom(op_opts(
            T::Insert,
            vec![self.tbl("meta"), lit(&mark)],
            json!({"conflict": "replace"}),
        ))
        .await?;
        // A prefix by sequence number, up to the first entry applied at or after `before` (all of
        // them, up to the head read above, when there is none): deleting by `at` alone would leave
        // a hole after a step back of the writer's clock, which a resumed Watch would skip without
        // knowing. The ordered scan stops at the first entry it keeps.
        let in_order = op_opts(
            T::OrderBy,
            vec![self.tbl("journal")],
            json!({"index": term::asc(json!("seq"))}),
        );
        let kept = op(
            T::Filter,
            vec![
                in_order,
                func1(|row| term::ge(field(row, "at"), json!(before.0))),
            ],
        );
        let first_kept = self
            .list(op(T::Pluck, vec![term::limit(kept, 1), json!("seq")]))
            .await?
            .first()
            .and_then(|d| d.get("seq"))
            .and_then(Json::as_u64);
        let sel = op_opts(
            T::Between,
            vec![
                self.tbl("journal"),
                op(T::Minval, vec![]),
                json!(first_kept.unwrap_or(head + 1)),
            ],
            json!({"index": "seq"}),
        );
        let r = self.atom(op(T::Delete, vec![sel])).await?;
        Ok(r.get("deleted").and_then(Json::as_u64).unwrap_or(0))
    }

    async fn wait_journal(&self, after: u64, timeout: Duration) -> Result<u64, StoreError> {
        read::wait_journal(self, after, timeout).await
    }
}
