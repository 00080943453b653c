//! The embedded store: one SQLite file in WAL mode (one writer process, many reader processes).
//!
//! # Layout
//! - One table per cached type, `e<generation>_<Type>`: `id INTEGER PRIMARY KEY`, bookkeeping columns
//!   (`_retired`, `_rv` retired_version, `_lev` last_event_id, `_dn` display name, `_vbase` + `_vx`
//!   per-field versions as "a base every field is at, plus a JSON map of the fields above it"), then one
//!   typed column per cached field (`codec::Shape`): text as TEXT, numbers as INTEGER, floats as REAL,
//!   checkbox as 0/1, dates as days since 1970, datetimes as Unix seconds, JSON-valued types as JSON
//!   text, and single links as three columns `<f>__t`, `<f>__id`, `<f>__n` (type, id, stored name).
//! - multi_entity values live in a side table per type, `m<generation>_<Type>(src_id, field, pos, dst_type,
//!   dst_id, name)`, keyed `(src_id, field, pos)`. multi_entity `is`/`in` and deep links through
//!   multi hops are `IN (SELECT ...)` subqueries on it.
//! - Indexes come from `TypeLayout::indexed`: text-like fields on `sg_fold(col)` (case-insensitive
//!   matching), numbers/dates on the column, links on `(<f>__id, <f>__t)`, multi_entity fields as a
//!   partial index `(dst_id, dst_type) WHERE field = '<f>'` on the side table (a multi_entity field
//!   that is not listed has no index, and a filter on it reads the side table). When `project` is indexed,
//!   indexed status_list/list/checkbox/entity_type fields also get a composite index led by the
//!   project link (project-scoped status filters are the most common Shotgun query).
//! - Bookkeeping tables: `sc_meta` (catalog generation, site schema), `sc_types` (layouts and table
//!   generations, see `catalog`), `sc_type_state`, `sc_state`, and the journal `sc_journal(seq INTEGER
//!   PRIMARY KEY AUTOINCREMENT, ...)` with the entity snapshot in the compact binary form of `snapshot` (JSON text in journals written before it, still read).
//! - Staging is a newer table generation; `promote_staging` repoints the catalog in one transaction
//!   (see `catalog`).
//!
//! # Connections and concurrency
//! rusqlite is synchronous. A read first runs on the calling task with a budget of
//! [`INLINE_READ_BUDGET`]: a progress handler interrupts it when the budget is spent, and the busy
//! timeout is cut to the budget too, so it never holds an async worker for longer. Only a read
//! that outlasts the budget is run again, from the start, on `spawn_blocking`. Indexed finds take a
//! fraction of a millisecond, and the hop to a blocking thread and back cost more than the query
//! itself (on a 2-core VM the in-process indexed find went from 285 to 168 µs p50, one gRPC client
//! from 0.93 to 0.67 ms). Writes always run on `spawn_blocking`, and a background thread copies the
//! WAL back into the file (see [`open_writer`]). One write connection (behind a
//! mutex: SQLite has one writer anyway) runs each batch as one `BEGIN IMMEDIATE` transaction; reads take
//! a connection from a small pool and run inside one read transaction (one WAL snapshot), so a find
//! and the follow-up loads of its page see the same data. Every connection uses WAL,
//! `synchronous=NORMAL` and a busy timeout, and registers the `sg_*` functions the schema and the
//! compiled filters use (see [`register_functions`]). Read connections get a small page cache and no
//! memory map (a query-server replica's memory stays bounded whatever the file's size); the write
//! connection a large cache, so a batch does not spill to the WAL before it commits. Every connection
//! sets the planner stability guarantee (a cached statement keeps its plan instead of being
//! re-prepared when a parameter changes). A file written by this backend therefore
//! needs these functions to be *written* by another SQLite client (reading works without them as
//! long as no `sg_` index expression is evaluated).
//!
//! # Semantics decisions (all backends follow them; the conformance suite checks them)
//! - `Upsert` replaces the fields it carries (a field absent from `entity.fields` keeps its value),
//!   raises every version to at least `floor`, takes `retired` unless `retired_version > floor` (and
//!   then raises `retired_version` to `floor`), and sets `last_event_id = max(last, floor, event_id)`.
//!   Its journal op is `Create` for a new row (fields: the layout fields it carried), `Retire`/`Revive`
//!   when the retired flag flips, else `Update` with the changed fields, else nothing.
//! - A value counts as changed when it differs, except that links compare by target (names are
//!   presentation, made live at read time) and multi_entity lists compare as multisets of targets.
//!   Changed names are still stored.
//! - A `Patch` changing the type's display field (`EntitySchema::display_field`) updates the display
//!   name. Fields that are not cached are ignored by `Upsert` and `Patch`.
//! - `Remove` deletes the row when `event_id` is 0 or at least the row's `last_event_id`.
//! - `journal_head` is the highest sequence number ever assigned (it does not go back after a trim).
//! - `find` through the trait uses the current time for relative date operators; [`SqliteStore::find_at`]
//!   takes it explicitly.
//! - Filters on fields that are not cached are `StoreError::Invalid`. tag_list and addressing filters
//!   are evaluated in SQL over the JSON array (`json_each`, see `compile`), without an index.
//!   jsonb/image `is None` match SQL NULL and JSON `null` only (a JSON array is a value).

mod catalog;
mod codec;
mod compile;
mod read;
mod results;
mod rows;
mod snapshot;
mod write;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use serde_json::Value as Json;

use self::catalog::Catalog;
use super::{
    CommitResult, CountQuery, FoundRows, JournalEntry, ResultCacheStats, Store, StoreError,
    TypeLayout, TypeState, WriteBatch,
};
use crate::filter::eval::{ci_contains, ci_ends_with, ci_eq, ci_starts_with, fold, json_contains};
use crate::model::{DateTime, Entity, SiteSchema};
use crate::query::{FindQuery, Record};

/// How many idle read connections are kept.
const MAX_IDLE_READERS: usize = 8;
/// How long a read may run on the calling async task before it is interrupted and run again on a
/// blocking thread (see the module docs).
pub const INLINE_READ_BUDGET: Duration = Duration::from_millis(2);
/// SQLite virtual-machine steps between two looks at the budget.
const INLINE_READ_CHECK_STEPS: std::os::raw::c_int = 1000;
/// How long a connection waits for a lock held by another connection before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `wait_journal` looks at the journal head when no in-process commit wakes it.
const JOURNAL_POLL: Duration = Duration::from_millis(20);

/// Maps a rusqlite error: busy/locked become `Unavailable` (retry later), everything else `Internal`.
pub(crate) fn sql_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            StoreError::Unavailable(format!("{LOCKED}{e}"))
        }
        _ => StoreError::Internal(format!("sqlite: {e}")),
    }
}

/// How an `Unavailable` error for a file locked by another connection begins.
const LOCKED: &str = "the store file is locked by another connection: ";
/// How long `open` waits for a file that another process is creating or recovering.
const OPEN_LOCKED_WAIT: Duration = Duration::from_secs(15);

fn text_arg<'a>(ctx: &'a rusqlite::functions::Context<'_>, i: usize) -> Option<&'a str> {
    match ctx.get_raw(i) {
        ValueRef::Text(s) => std::str::from_utf8(s).ok(),
        _ => None,
    }
}

/// Registers the deterministic functions the schema (expression indexes) and compiled filters use.
///
/// - `sg_fold(s)`: the reference's case folding for matching (`filter::eval::fold`; the expression
///   indexes are built on it, so a change of the fold bumps `eval::FOLD_VERSION`, see `catalog`).
/// - `sg_lower(s)`: the reference's sort key for text (`str::to_lowercase`).
/// - `sg_eq/sg_contains/sg_starts/sg_ends(s, folded)`: the reference's `ci_*` tests (`sg_eq` is
///   `sg_fold(s) = folded` without allocating, for where no index applies).
/// - `sg_uuid_eq(s, canonical)`, `sg_r6(x)` (float rounded to 6 places, scaled by 1e6),
///   `sg_json_null(j)`, `sg_json_eq(j, k)`, `sg_json_contains(j, k)`.
pub fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8
        | FunctionFlags::SQLITE_DETERMINISTIC
        | FunctionFlags::SQLITE_INNOCUOUS;
    conn.create_scalar_function("sg_fold", 1, flags, |ctx| Ok(text_arg(ctx, 0).map(fold)))?;
    conn.create_scalar_function("sg_lower", 1, flags, |ctx| {
        Ok(text_arg(ctx, 0).map(str::to_lowercase))
    })?;
    type Test = fn(&str, &str) -> bool;
    for (name, f) in [
        ("sg_eq", ci_eq as Test),
        ("sg_contains", ci_contains as Test),
        ("sg_starts", ci_starts_with),
        ("sg_ends", ci_ends_with),
    ] {
        conn.create_scalar_function(name, 2, flags, move |ctx| {
            Ok(match (text_arg(ctx, 0), text_arg(ctx, 1)) {
                (Some(s), Some(x)) => Some(f(s, x)),
                _ => None,
            })
        })?;
    }
    conn.create_scalar_function("sg_uuid_eq", 2, flags, |ctx| {
        let strip = |s: &str| -> String {
            s.chars()
                .filter(|c| !matches!(c, '-' | '{' | '}'))
                .map(|c| c.to_ascii_lowercase())
                .collect()
        };
        Ok(match (text_arg(ctx, 0), text_arg(ctx, 1)) {
            (Some(s), Some(x)) => Some(strip(s) == strip(x)),
            _ => None,
        })
    })?;
    conn.create_scalar_function("sg_r6", 1, flags, |ctx| {
        Ok(match ctx.get_raw(0) {
            ValueRef::Integer(i) => Some(compile::r6(i as f64)),
            ValueRef::Real(x) => Some(compile::r6(x)),
            _ => None,
        })
    })?;
    let parse = |ctx: &rusqlite::functions::Context<'_>, i: usize| -> Option<Json> {
        text_arg(ctx, i).and_then(|s| serde_json::from_str(s).ok())
    };
    // The reference's `is None` on jsonb and image values: only JSON null (an array, even an empty
    // one, is a value).
    conn.create_scalar_function("sg_json_null", 1, flags, move |ctx| {
        Ok(parse(ctx, 0).map(|j| j.is_null()))
    })?;
    conn.create_scalar_function("sg_json_eq", 2, flags, move |ctx| {
        Ok(match (parse(ctx, 0), parse(ctx, 1)) {
            (Some(a), Some(b)) => Some(a == b),
            _ => None,
        })
    })?;
    conn.create_scalar_function("sg_json_contains", 2, flags, move |ctx| {
        Ok(match (parse(ctx, 0), parse(ctx, 1)) {
            (Some(a), Some(b)) => Some(json_contains(&a, &b)),
            _ => None,
        })
    })?;
    Ok(())
}

/// What a connection is for; it decides the memory the connection may use.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// The one write connection (in the syncer): a large page cache, so a batch of thousands of
    /// rows does not spill dirty pages to the WAL before its commit, and memory-mapped reads.
    Writer,
    /// A pooled read connection (many per query-server replica): a small page cache and no memory
    /// map, so a replica's resident memory stays bounded (about [`READER_CACHE_KIB`] per
    /// connection) however large the file is; the OS page cache still holds the hot pages.
    Reader,
}

/// Page cache of a read connection, in KiB.
const READER_CACHE_KIB: i64 = 8 * 1024;
/// Page cache of the write connection, in KiB.
const WRITER_CACHE_KIB: i64 = 256 * 1024;
/// Memory map of the write connection, in bytes.
const WRITER_MMAP: i64 = 1 << 30;
/// WAL size (in frames) at which a commit wakes the background checkpointer, which copies the WAL
/// back into the file on its own connection and thread while the writer goes on.
const CHECKPOINT_PAGES: std::os::raw::c_int = 8192;
/// WAL size at which the writer checkpoints inline after its commit, as SQLite's own
/// autocheckpoint would: the backstop for when the checkpointer cannot catch up (writes that never
/// pause, or readers holding old frames), so the WAL stays bounded.
const CHECKPOINT_BACKSTOP_PAGES: std::os::raw::c_int = 65536;

fn open_connection(path: &Path, role: Role) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err)?;
    let (cache_kib, mmap) = match role {
        Role::Writer => (WRITER_CACHE_KIB, WRITER_MMAP),
        Role::Reader => (READER_CACHE_KIB, 0),
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF; \
         PRAGMA temp_store = MEMORY; PRAGMA cache_size = -{cache_kib}; PRAGMA mmap_size = {mmap};",
    ))
    .map_err(sql_err)?;
    // The query planner stability guarantee: a statement keeps the plan it was prepared with. Without
    // it, the bundled SQLite (built with SQLITE_ENABLE_STAT4) re-prepares a cached statement on every
    // new binding of a parameter its plan might depend on (`src_id = ?1`, `project__id = ?2`), which
    // made parsing SQL a sixth of a find's and a tenth of a commit's CPU time.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map_err(sql_err)?;
    conn.set_prepared_statement_cache_capacity(256);
    register_functions(&conn).map_err(sql_err)?;
    Ok(conn)
}

/// Opens the write connection, with its background checkpointer.
///
/// Checkpointing inside the commit (SQLite's autocheckpoint) made every few commits copy 32 MB
/// back into the file and fsync it before returning. In `store_bench` on 1M rows (30 journaled
/// batches of 10,000 new rows back to back, 2 cores) the median batch went from 17.4k to 26.2k
/// rows/s, and 10,000 single-field patches from 26.5k to 47.6k/s. Under writes that never pause the
/// WAL grows towards the backstop (a few hundred MB) before it restarts; the syncer's pauses between
/// polls let it restart earlier. The writer's WAL hook wakes a thread that runs
/// `PASSIVE` checkpoints on its own connection (they never block the writer or readers); a PASSIVE
/// checkpoint is what the autocheckpoint ran too, so durability is unchanged (WAL with
/// `synchronous=NORMAL`). The thread ends when the write connection is closed.
fn open_writer(path: &Path, checkpoints: Arc<AtomicU64>) -> Result<Connection, StoreError> {
    let mut conn = open_connection(path, Role::Writer)?;
    // Files written before the journal was trimmed as a prefix by `seq` have an index on `at`, which
    // nothing reads any more and every journaled write would keep up (only the writer migrates:
    // query-servers never write).
    conn.execute_batch("DROP INDEX IF EXISTS sc_journal_at")
        .map_err(sql_err)?;
    let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
    let checkpoint_path = path.to_owned();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || checkpointer(&checkpoint_path, &woken, &checkpoints))
        .map_err(|e| StoreError::Internal(format!("cannot start the checkpoint thread: {e}")))?;
    conn.wal_hook(Some(
        move |wal: &mut rusqlite::hooks::Wal, frames: std::os::raw::c_int| {
            if frames >= CHECKPOINT_BACKSTOP_PAGES {
                // Busy (the checkpointer is at it) or failed: the next commit tries again.
                if let Err(e) = wal.checkpoint_v2(rusqlite::wal::CheckpointMode::PASSIVE) {
                    tracing::debug!(error = %e, frames, "inline checkpoint did not run");
                }
            } else if frames >= CHECKPOINT_PAGES {
                // Full: a wake-up is already pending.
                let _ = wake.try_send(());
            }
            // The commit has happened whatever this returns; an error would only be reported
            // as the commit's.
            Ok(())
        },
    ))
    .map_err(sql_err)?;
    Ok(conn)
}

/// The checkpoint thread: one `PASSIVE` checkpoint per wake-up, until the writer is gone.
fn checkpointer(path: &Path, woken: &std::sync::mpsc::Receiver<()>, done: &AtomicU64) {
    let conn = match open_connection(path, Role::Reader) {
        Ok(c) => c,
        Err(e) => {
            // The writer's inline backstop still bounds the WAL.
            tracing::warn!(error = %e, "no background checkpoints: cannot open a connection");
            return;
        }
    };
    while woken.recv().is_ok() {
        let started = std::time::Instant::now();
        match conn.wal_checkpoint_v2(
            rusqlite::DEFAULT_NAME,
            rusqlite::wal::CheckpointMode::PASSIVE,
        ) {
            Ok((frames, copied)) => {
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::trace!(
                    frames,
                    copied,
                    ms = started.elapsed().as_millis() as u64,
                    "checkpoint"
                );
            }
            Err(e) => tracing::debug!(error = %e, "checkpoint did not run"),
        }
    }
}

/// Sets its flag when dropped: tells a blocking read that nobody waits for it any more.
struct SetOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The one connection that watches `PRAGMA data_version` for the result cache (see `results`),
/// and the value it last saw.
struct Observer {
    conn: Connection,
    seen: Option<i64>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Option<Connection>>,
    readers: Mutex<Vec<Connection>>,
    /// The result cache's observer (opened on first use, dropped after an error).
    observer: Mutex<Option<Observer>>,
    /// Moves whenever the observer sees a commit of another connection, and when a new observer
    /// connection is opened (see `results`).
    generation: results::Generation,
    /// The result cache, when enabled ([`SqliteStore::enable_result_cache`]).
    results: std::sync::OnceLock<results::ResultCache>,
    catalog: RwLock<Arc<Catalog>>,
    journal_changed: tokio::sync::Notify,
    /// Checkpoints the background checkpointer has run.
    checkpoints: Arc<AtomicU64>,
}

impl Inner {
    /// The catalog matching the snapshot `conn` reads (reloaded when the generation moved).
    fn catalog(&self, conn: &Connection) -> Result<Arc<Catalog>, StoreError> {
        let generation = Catalog::read_gen(conn)?;
        let cached = self
            .catalog
            .read()
            .map_err(|_| StoreError::Internal("catalog lock poisoned".into()))?
            .clone();
        if cached.generation == generation {
            return Ok(cached);
        }
        let fresh = Arc::new(Catalog::load(conn)?);
        let mut slot = self
            .catalog
            .write()
            .map_err(|_| StoreError::Internal("catalog lock poisoned".into()))?;
        if fresh.generation > slot.generation {
            *slot = fresh.clone();
        }
        Ok(fresh)
    }

    /// [`with_reader`](Self::with_reader) with a time budget: `None` when the budget ran out
    /// before the read finished (it was interrupted and rolled back; nothing is half-read).
    fn with_reader_budget<R>(
        &self,
        f: impl FnOnce(&Connection, &Catalog) -> Result<R, StoreError>,
        budget: Duration,
    ) -> Option<Result<R, StoreError>> {
        let spent = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let started = std::time::Instant::now();
        let flag = spent.clone();
        let result = self.with_reader_hooked(f, move |conn: &mut Connection| {
            let flag = flag.clone();
            // A lock wait (only during recovery after a crash, in WAL mode) gives up at the budget
            // as well; `with_reader_hooked` restores the full timeout.
            conn.busy_timeout(budget)?;
            conn.progress_handler(
                INLINE_READ_CHECK_STEPS,
                Some(move || {
                    let over = started.elapsed() > budget;
                    if over {
                        flag.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    over
                }),
            )
        });
        // Interrupted, or failed (busy) once the budget was gone: the blocking thread tries again.
        if result.is_err()
            && (spent.load(std::sync::atomic::Ordering::Relaxed) || started.elapsed() >= budget)
        {
            return None;
        }
        Some(result)
    }

    #[cfg(test)]
    fn with_reader<R>(
        &self,
        f: impl FnOnce(&Connection, &Catalog) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.with_reader_hooked(f, |_: &mut Connection| Ok(()))
    }

    /// A read connection from the pool, or a new one when none is idle.
    fn take_reader(&self) -> Result<Connection, StoreError> {
        let pooled = self
            .readers
            .lock()
            .map_err(|_| StoreError::Internal("reader pool lock poisoned".into()))?
            .pop();
        match pooled {
            Some(c) => Ok(c),
            None => open_connection(&self.path, Role::Reader),
        }
    }

    /// Runs `f` in a read transaction on a pooled connection; `hook` is called on the connection
    /// first (to install a progress handler), which is removed again before the connection goes
    /// back to the pool.
    fn with_reader_hooked<R>(
        &self,
        f: impl FnOnce(&Connection, &Catalog) -> Result<R, StoreError>,
        hook: impl FnOnce(&mut Connection) -> rusqlite::Result<()>,
    ) -> Result<R, StoreError> {
        let mut reader = self.take_reader()?;
        let conn = &mut reader;
        hook(conn).map_err(sql_err)?;
        // The read transaction's BEGIN and COMMIT are cached statements: `Connection::transaction`
        // parses both each time (`execute_batch`), 2-3% of an indexed find's server CPU.
        fn run(conn: &Connection, sql: &str) -> Result<(), StoreError> {
            conn.prepare_cached(sql)
                .and_then(|mut s| s.execute([]))
                .map(|_| ())
                .map_err(sql_err)
        }
        let mut result = run(conn, "BEGIN DEFERRED")
            .and_then(|()| self.catalog(conn))
            .and_then(|cat| f(conn, &cat));
        if result.is_ok()
            && let Err(e) = run(conn, "COMMIT")
        {
            result = Err(e);
        }
        if result.is_err() && !conn.is_autocommit() {
            // Not interrupted by a spent budget itself. (A failed rollback leaves the transaction
            // open: the connection is dropped below instead of pooled.)
            let _ = conn.progress_handler(0, None::<fn() -> bool>);
            let _ = run(conn, "ROLLBACK");
        }
        // A connection whose handler or timeout cannot be reset, or that is still in a
        // transaction, is not reused (it would interrupt later reads, or read an old snapshot).
        if conn.is_autocommit()
            && conn.progress_handler(0, None::<fn() -> bool>).is_ok()
            && conn.busy_timeout(BUSY_TIMEOUT).is_ok()
            && let Ok(mut pool) = self.readers.lock()
            && pool.len() < MAX_IDLE_READERS
        {
            pool.push(reader);
        }
        result
    }

    /// Observes whether another connection committed since the observer last looked, moves the
    /// data generation if so (or if the observer connection is new), and returns the generation.
    /// See `results` for why this makes cached answers exact.
    ///
    /// One connection observes for the whole store, so one commit moves the generation once (a
    /// connection per request would each see the same commit later, and each drop the answers
    /// cached since). It runs on the calling (async) task under a mutex, so it never waits for a
    /// lock: a locked file makes it give up at once (the mutex is not held while the file stays
    /// locked), and the caller then reads without the cache, on the path that waits on a blocking
    /// thread.
    fn observe(&self) -> Result<u64, StoreError> {
        let mut slot = self
            .observer
            .lock()
            .map_err(|_| StoreError::Internal("result cache observer lock poisoned".into()))?;
        if slot.is_none() {
            let conn = open_connection(&self.path, Role::Reader)?;
            conn.busy_timeout(Duration::ZERO).map_err(sql_err)?;
            // A new observer has seen nothing yet: its first look moves the generation.
            *slot = Some(Observer { conn, seen: None });
        }
        let Some(observer) = slot.as_mut() else {
            return Err(StoreError::Internal("no result cache observer".into()));
        };
        // In autocommit mode the pragma is a read transaction of its own, which is what refreshes
        // the connection's view of the WAL.
        let version = observer
            .conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)));
        match version {
            Ok(v) => {
                if observer.seen != Some(v) {
                    self.generation.advance();
                    observer.seen = Some(v);
                }
                Ok(self.generation.get())
            }
            Err(e) => {
                // A lock: the connection is fine, and what it saw last still stands. Anything else:
                // replaced on the next call (whose first look moves the generation).
                if !matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                ) {
                    *slot = None;
                }
                Err(sql_err(e))
            }
        }
    }

    /// Runs `f` in one write transaction. `f` returns whether it changed the catalog.
    fn with_writer<R>(
        &self,
        f: impl FnOnce(&Connection, &Catalog) -> Result<(R, bool), StoreError>,
    ) -> Result<R, StoreError> {
        self.with_writer_on((), |c, cat, ()| f(c, cat))
            .map_err(|(e, _)| e)
    }

    /// [`with_writer`](Self::with_writer) with an input `f` consumes: a failure before `f` runs
    /// (the writer cannot be opened, the file is locked) hands `input` back with the error.
    fn with_writer_on<T, R>(
        &self,
        input: T,
        f: impl FnOnce(&Connection, &Catalog, T) -> Result<(R, bool), StoreError>,
    ) -> Result<R, (StoreError, Option<T>)> {
        let mut guard = match self.writer.lock() {
            Ok(g) => g,
            Err(_) => {
                return Err((
                    StoreError::Internal("writer lock poisoned".into()),
                    Some(input),
                ));
            }
        };
        if guard.is_none() {
            match open_writer(&self.path, self.checkpoints.clone()) {
                Ok(c) => *guard = Some(c),
                Err(e) => return Err((e, Some(input))),
            }
        }
        let conn = guard
            .as_mut()
            .expect("the writer connection was just opened");
        let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => return Err((sql_err(e), Some(input))),
        };
        let cat = match self.catalog(&tx) {
            Ok(cat) => cat,
            Err(e) => return Err((e, Some(input))),
        };
        // From here on `input` is used up: an error rolls the transaction back (dropping `tx`).
        let used = |e| (e, None);
        let (r, changed) = f(&tx, &cat, input).map_err(used)?;
        if changed {
            let fresh = Arc::new(Catalog::load(&tx).map_err(used)?);
            tx.commit().map_err(|e| used(sql_err(e)))?;
            if let Ok(mut slot) = self.catalog.write() {
                *slot = fresh;
            }
        } else {
            tx.commit().map_err(|e| used(sql_err(e)))?;
        }
        Ok(r)
    }
}

/// The SQLite backend. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store file at `path`.
    ///
    /// Two processes that open a new file at the same moment (a syncer and a query-server started
    /// together) can find it locked for a moment while the other one creates it: a locked file is
    /// tried again for up to [`OPEN_LOCKED_WAIT`].
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let deadline = std::time::Instant::now() + OPEN_LOCKED_WAIT;
        loop {
            match SqliteStore::open_once(path) {
                Err(StoreError::Unavailable(m))
                    if m.starts_with(LOCKED) && std::time::Instant::now() < deadline =>
                {
                    tracing::debug!(error = %m, "store file locked while opening; trying again");
                    std::thread::sleep(Duration::from_millis(50));
                }
                r => return r,
            }
        }
    }

    fn open_once(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = open_connection(path, Role::Reader)?;
        let exists: bool = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'sc_journal'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(sql_err)?
            > 0;
        if !exists {
            conn.execute_batch(&format!("BEGIN IMMEDIATE; {} COMMIT;", catalog::BOOTSTRAP))
                .map_err(sql_err)?;
        }
        catalog::ensure_fold_version(&conn)?;
        let cat = Catalog::load(&conn)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer: Mutex::new(None),
                readers: Mutex::new(vec![conn]),
                observer: Mutex::new(None),
                generation: results::Generation::default(),
                results: std::sync::OnceLock::new(),
                catalog: RwLock::new(Arc::new(cat)),
                journal_changed: tokio::sync::Notify::new(),
                checkpoints: Arc::new(AtomicU64::new(0)),
            }),
        })
    }

    /// The file this store was opened on.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Keeps the answers of finds and counts in memory (at most `budget_bytes`, least recently
    /// used evicted first) and serves them again while no commit has changed the data; see
    /// `results` for the guarantee (a cached answer is never older than a read started at the
    /// same moment). For a process that mostly reads, such as the query-server: every commit of
    /// any connection drops the whole cache. Has no effect when called again, or with 0.
    pub fn enable_result_cache(&self, budget_bytes: usize) {
        if budget_bytes > 0 {
            let _ = self
                .inner
                .results
                .set(results::ResultCache::new(budget_bytes));
        }
    }

    /// The result cache and a request's key when the request can be cached; a request that
    /// cannot (its filter uses the current time) is counted.
    fn cacheable(&self, key: Option<String>) -> Option<(&results::ResultCache, String)> {
        let cache = self.inner.results.get()?;
        match key {
            Some(k) => Some((cache, k)),
            None => {
                cache.count_uncacheable();
                None
            }
        }
    }

    /// Answers a request through the result cache (see `results`): `key` is its key (`None`:
    /// not cacheable), `read` reads the store, `pack` and `unpack` convert between the answer and
    /// a cache entry. Without a cache, for an uncacheable request, or on a locked file (see
    /// `observe`), it just reads.
    async fn through_cache<T, Fut>(
        &self,
        key: Option<String>,
        read: impl Fn() -> Fut,
        pack: fn(T) -> results::Cached,
        unpack: fn(results::Cached) -> Option<T>,
    ) -> Result<T, StoreError>
    where
        T: Clone,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let Some((cache, key)) = self.cacheable(key) else {
            return read().await;
        };
        let Ok(generation) = self.inner.observe() else {
            return read().await;
        };
        let keep = match cache.get(&key, generation) {
            results::Lookup::Hit(hit) => match unpack(hit) {
                Some(answer) => return Ok(answer),
                None => false,
            },
            results::Lookup::Miss { keep } => keep,
        };
        let answer = read().await?;
        if keep {
            cache.insert(key, generation, pack(answer.clone()));
        }
        Ok(answer)
    }

    /// Runs a read: on this task within [`INLINE_READ_BUDGET`], else again on a blocking thread.
    ///
    /// A read on the blocking thread stops when its caller stops waiting for it (a deadline ran
    /// out, the client went away): a progress handler sees the flag the dropped future sets, and
    /// the read is interrupted and rolled back. Without that, a client retrying a slow scan under a
    /// short deadline left every attempt running to the end on its own thread, and the query
    /// permits (released with the future) let new ones start beside them.
    async fn read<R: Send + 'static>(
        &self,
        f: impl Fn(&Connection, &Catalog) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        if let Some(r) = self.inner.with_reader_budget(&f, INLINE_READ_BUDGET) {
            return r;
        }
        let inner = self.inner.clone();
        let abandoned = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let _on_drop = SetOnDrop(abandoned.clone());
        tokio::task::spawn_blocking(move || {
            inner.with_reader_hooked(f, move |conn: &mut Connection| {
                conn.progress_handler(
                    INLINE_READ_CHECK_STEPS,
                    Some(move || abandoned.load(std::sync::atomic::Ordering::Relaxed)),
                )
            })
        })
        .await
        .map_err(|e| StoreError::Internal(format!("sqlite read task failed: {e}")))?
    }

    async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &Catalog) -> Result<(R, bool), StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.with_writer(f))
            .await
            .map_err(|e| StoreError::Internal(format!("sqlite write task failed: {e}")))?
    }

    /// `find` with an explicit anchor for relative date operators.
    pub async fn find_at(
        &self,
        query: &FindQuery,
        now: DateTime,
    ) -> Result<Vec<Record>, StoreError> {
        let q = query.clone();
        self.read(move |c, cat| read::find(c, cat, &q, now)).await
    }

    /// Runs `ANALYZE` so the planner knows the index selectivities (worth doing after a big import).
    pub async fn analyze(&self) -> Result<(), StoreError> {
        self.write(|c, _| {
            c.execute_batch("ANALYZE")
                .map(|_| ((), false))
                .map_err(sql_err)
        })
        .await
    }

    /// Copies the WAL into the database file and truncates the WAL (e.g. before measuring the
    /// file size, or after a big import).
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let guard = inner
                .writer
                .lock()
                .map_err(|_| StoreError::Internal("writer lock poisoned".into()))?;
            let own;
            let conn = match guard.as_ref() {
                Some(c) => c,
                None => {
                    own = open_connection(&inner.path, Role::Writer)?;
                    &own
                }
            };
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(sql_err)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("sqlite checkpoint task failed: {e}")))?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c, _| c.query_row("SELECT 1", [], |_| Ok(())).map_err(sql_err))
            .await
    }

    async fn prepare(&self, schema: &SiteSchema, layouts: &[TypeLayout]) -> Result<(), StoreError> {
        let (schema, layouts) = (schema.clone(), layouts.to_vec());
        self.write(move |c, cat| catalog::prepare(c, cat, &schema, &layouts).map(|()| ((), true)))
            .await
    }

    async fn schema(&self) -> Result<Option<SiteSchema>, StoreError> {
        self.read(|_, cat| Ok(cat.schema.clone())).await
    }

    async fn layouts(&self) -> Result<Vec<TypeLayout>, StoreError> {
        self.read(|_, cat| Ok(cat.types.values().map(|t| t.layout.clone()).collect()))
            .await
    }

    async fn commit(&self, batch: WriteBatch) -> Result<CommitResult, StoreError> {
        self.commit_or_return(batch).await.map_err(|(e, _)| e)
    }

    /// The batch comes back when the commit failed before its transaction used any of it (the
    /// file was locked by another connection, or the writer could not be opened).
    // The error carries the batch back by value: one move per commit, no allocation.
    #[allow(clippy::result_large_err)]
    async fn commit_or_return(
        &self,
        batch: WriteBatch,
    ) -> Result<CommitResult, (StoreError, Option<WriteBatch>)> {
        let inner = self.inner.clone();
        let result =
            tokio::task::spawn_blocking(move || inner.with_writer_on(batch, write::commit))
                .await
                .map_err(|e| {
                    (
                        StoreError::Internal(format!("sqlite write task failed: {e}")),
                        None,
                    )
                })??;
        if !result.journal.is_empty() {
            self.inner.journal_changed.notify_waiters();
        }
        Ok(result)
    }

    async fn begin_staging(&self, layout: &TypeLayout) -> Result<(), StoreError> {
        let layout = layout.clone();
        self.write(move |c, cat| write::begin_staging(c, cat, &layout).map(|()| ((), true)))
            .await
    }

    async fn promote_staging(&self, state: TypeState) -> Result<(), StoreError> {
        self.write(move |c, cat| write::promote_staging(c, cat, &state).map(|_| ((), true)))
            .await?;
        self.inner.journal_changed.notify_waiters();
        Ok(())
    }

    async fn find(&self, query: &FindQuery) -> Result<Vec<Record>, StoreError> {
        if self.inner.results.get().is_none() {
            return self.find_at(query, DateTime::now()).await;
        }
        Ok(self.find_shared(query).await?.into_records())
    }

    async fn find_shared(&self, query: &FindQuery) -> Result<Arc<FoundRows>, StoreError> {
        let read = || async {
            Ok(Arc::new(FoundRows::new(
                self.find_at(query, DateTime::now()).await?,
            )))
        };
        self.through_cache(
            results::find_key(query),
            read,
            results::Cached::Rows,
            |c| match c {
                results::Cached::Rows(rows) => Some(rows),
                results::Cached::Count(_) => None,
            },
        )
        .await
    }

    async fn count(&self, query: &CountQuery) -> Result<u64, StoreError> {
        let read = || {
            let q = query.clone();
            self.read(move |c, cat| read::count(c, cat, &q))
        };
        self.through_cache(
            results::count_key(query),
            read,
            results::Cached::Count,
            |c| match c {
                results::Cached::Count(n) => Some(n),
                results::Cached::Rows(_) => None,
            },
        )
        .await
    }

    fn result_cache_stats(&self) -> Option<ResultCacheStats> {
        self.inner.results.get().map(results::ResultCache::stats)
    }

    async fn get(&self, entity_type: &str, id: i64) -> Result<Option<Entity>, StoreError> {
        let t = entity_type.to_owned();
        self.read(move |c, cat| read::get(c, cat, &t, id)).await
    }

    async fn ids(
        &self,
        entity_type: &str,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<(i64, bool)>, StoreError> {
        let t = entity_type.to_owned();
        self.read(move |c, cat| read::ids(c, cat, &t, after_id, limit))
            .await
    }

    async fn type_counts(
        &self,
    ) -> Result<std::collections::BTreeMap<String, (u64, u64)>, StoreError> {
        self.read(read::type_counts).await
    }

    async fn type_states(&self) -> Result<Vec<TypeState>, StoreError> {
        self.read(|c, _| read::type_states(c)).await
    }

    async fn get_state(&self, key: &str) -> Result<Option<Json>, StoreError> {
        let k = key.to_owned();
        self.read(move |c, _| read::get_state(c, &k)).await
    }

    async fn journal_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        self.read(move |c, cat| read::journal_after(c, cat, after, limit))
            .await
    }

    async fn journal_head(&self) -> Result<u64, StoreError> {
        self.read(|c, _| read::journal_head(c)).await
    }

    async fn journal_tail(&self) -> Result<Option<u64>, StoreError> {
        self.read(|c, _| read::journal_tail(c)).await
    }

    async fn trim_journal(&self, before: DateTime) -> Result<u64, StoreError> {
        self.write(move |c, _| read::trim_journal(c, before).map(|n| (n, false)))
            .await
    }

    /// Wakes on commits made through this process's store at once, and polls the file (for commits
    /// by another process) every [`JOURNAL_POLL`].
    async fn wait_journal(&self, after: u64, timeout: Duration) -> Result<u64, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.journal_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let head = self.journal_head().await?;
            let now = tokio::time::Instant::now();
            if head > after || now >= deadline {
                return Ok(head);
            }
            let wake = (now + JOURNAL_POLL).min(deadline);
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query that runs far longer than any budget below (a million-row recursive CTE).
    fn long_sum(c: &Connection, _: &Catalog) -> Result<i64, StoreError> {
        c.query_row(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) \
             SELECT sum(i) FROM n",
            [],
            |r| r.get(0),
        )
        .map_err(sql_err)
    }

    /// One commit moves the result cache's generation once, however many read connections the
    /// store has pooled and whichever requests observe afterwards (concurrently or not); a new
    /// observer connection (after a failure) moves it too.
    #[tokio::test]
    async fn one_commit_moves_the_generation_once() {
        use crate::store::{Store, WriteBatch};

        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("s.db")).expect("open");
        // Several pooled read connections, each having run a read.
        let readers: Vec<Connection> = (0..6)
            .map(|_| store.inner.take_reader().expect("a read connection"))
            .collect();
        for r in &readers {
            r.query_row("SELECT count(*) FROM sc_state", [], |_| Ok(()))
                .expect("read");
        }
        store.inner.readers.lock().expect("pool").extend(readers);
        let before = store.inner.observe().expect("observe");
        assert_eq!(
            store.inner.observe().expect("observe"),
            before,
            "no commit, no move"
        );
        let commit = |v: i64| WriteBatch {
            state: [("k".to_owned(), serde_json::json!(v))]
                .into_iter()
                .collect(),
            ..Default::default()
        };
        store.commit(commit(1)).await.expect("commit");
        let seen: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| (0..20).map(|_| store.inner.observe()).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("observer thread"))
                .collect::<Result<_, _>>()
                .expect("observe")
        });
        assert!(
            seen.iter().all(|g| *g == before + 1),
            "one commit, one move: {seen:?} after {before}"
        );
        // A replaced observer connection has seen nothing: its first look moves the generation.
        *store.inner.observer.lock().expect("observer") = None;
        assert_eq!(store.inner.observe().expect("observe"), before + 2);
        assert_eq!(store.inner.observe().expect("observe"), before + 2);
    }

    /// A commit that fails before its transaction used the batch (the file is locked by another
    /// connection) hands the batch back, and the same batch commits once the lock is gone.
    #[tokio::test]
    async fn a_commit_refused_by_a_locked_file_hands_the_batch_back() {
        use crate::model::Value;
        use crate::store::conformance::{entity, test_layouts, test_schema};
        use crate::store::{EntityWrite, Store, WriteBatch};

        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.db");
        let store = SqliteStore::open(&path).expect("open");
        store
            .prepare(&test_schema(), &test_layouts())
            .await
            .expect("prepare");
        // Wait 50 ms for the lock instead of the usual 10 s.
        store
            .inner
            .writer
            .lock()
            .expect("writer lock")
            .as_ref()
            .expect("the writer is open after prepare")
            .busy_timeout(Duration::from_millis(50))
            .expect("busy timeout");
        let batch = || WriteBatch {
            writes: vec![EntityWrite::Upsert {
                entity: entity("Shot", 7, &[("code", Value::Text("sh070".into()))]),
                floor: 0,
                event_id: 3,
            }],
            journal: true,
            ..WriteBatch::default()
        };
        let other = rusqlite::Connection::open(&path).expect("second connection");
        other.execute_batch("BEGIN IMMEDIATE").expect("lock");
        let (err, back) = store
            .commit_or_return(batch())
            .await
            .expect_err("the file is locked");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        let back = back.expect("the batch comes back");
        assert_eq!(back.writes, batch().writes);
        other.execute_batch("ROLLBACK").expect("unlock");
        let r = store.commit_or_return(back).await.expect("commits");
        assert_eq!(r.journal.len(), 1);
        assert_eq!(
            store.get("Shot", 7).await.expect("get").map(|e| e.id),
            Some(7)
        );
    }

    /// Journals written before the binary snapshots hold JSON text: both read back as the entity,
    /// and a new entry after old ones is binary.
    #[tokio::test]
    async fn journal_snapshots_written_as_json_still_read() {
        use crate::store::conformance::{entity, test_layouts, test_schema};
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("s.db")).expect("open");
        store
            .prepare(&test_schema(), &test_layouts())
            .await
            .expect("prepare");
        let batch = |id: i64| WriteBatch {
            writes: vec![crate::store::EntityWrite::Upsert {
                entity: entity(
                    "Shot",
                    id,
                    &[
                        ("code", crate::model::Value::Text(format!("sh{id}"))),
                        (
                            "sg_due",
                            crate::model::Value::Date(
                                crate::model::Date::from_days_since_epoch(20_000).expect("date"),
                            ),
                        ),
                    ],
                ),
                floor: 0,
                event_id: id,
            }],
            journal: true,
            ..WriteBatch::default()
        };
        let first = store.commit(batch(1)).await.expect("commit").journal;
        // Rewrite the first entry's snapshot as the JSON text an older version wrote.
        let snap = first[0].entity.clone().expect("a snapshot");
        let text = codec::entity_to_json_string(&snap);
        store
            .write(move |c, _| {
                c.execute("UPDATE sc_journal SET entity = ?1 WHERE seq = 1", [&text])
                    .map_err(sql_err)?;
                Ok(((), false))
            })
            .await
            .expect("rewrite as JSON");
        let second = store.commit(batch(2)).await.expect("commit").journal;
        let kinds = store
            .read(|c, _| {
                let mut s = c
                    .prepare("SELECT typeof(entity) FROM sc_journal ORDER BY seq")
                    .map_err(sql_err)?;
                let v = s
                    .query_map([], |r| r.get::<_, String>(0))
                    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>());
                v.map_err(sql_err)
            })
            .await
            .expect("kinds");
        assert_eq!(kinds, ["text", "blob"]);
        let read = store.journal_after(0, 10).await.expect("journal");
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].entity, first[0].entity);
        assert_eq!(read[1].entity, second[0].entity);
    }

    /// The journal is trimmed as a prefix by sequence number: an entry whose time is older than
    /// the cut-off but comes after one that is kept (the writer's clock stepped back) stays, so the
    /// journal never has a hole a resumed Watch would skip without knowing.
    #[tokio::test]
    async fn trimming_the_journal_removes_a_prefix_even_when_the_clock_stepped_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.db");
        // An index on `at`, as files written before this version have: the writer drops it.
        let old = rusqlite::Connection::open(&path).expect("open raw");
        old.execute_batch(catalog::BOOTSTRAP).expect("bootstrap");
        old.execute_batch("CREATE INDEX sc_journal_at ON sc_journal(at)")
            .expect("old index");
        drop(old);
        let store = SqliteStore::open(&path).expect("open");
        // seq 1..=6 applied at 100, 200, 300, 250 (the clock stepped back), 400, 500.
        store
            .write(|c, _| {
                for at in [100, 200, 300, 250, 400, 500] {
                    c.execute(
                        "INSERT INTO sc_journal(event_id, entity_type, entity_id, op, fields, at) \
                         VALUES (1, 'Shot', 1, 'update', '[]', ?1)",
                        [at],
                    )
                    .map_err(sql_err)?;
                }
                Ok(((), false))
            })
            .await
            .expect("journal rows");
        let seqs = |c: &Connection, _: &Catalog| {
            let mut s = c
                .prepare("SELECT seq FROM sc_journal ORDER BY seq")
                .map_err(sql_err)?;
            let v = s
                .query_map([], |r| r.get::<_, i64>(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>());
            v.map_err(sql_err)
        };
        let indexes = |c: &Connection, _: &Catalog| {
            c.query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'sc_journal_at'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(sql_err)
        };
        assert_eq!(store.read(indexes).await.expect("indexes"), 0, "dropped");
        assert_eq!(store.trim_journal(DateTime(50)).await.expect("trim"), 0);
        // Entry 4 (at 250) is older than 260 but comes after entry 3 (at 300), which is kept.
        assert_eq!(store.trim_journal(DateTime(260)).await.expect("trim"), 2);
        assert_eq!(store.read(seqs).await.expect("seqs"), vec![3, 4, 5, 6]);
        assert_eq!(store.journal_tail().await.expect("tail"), Some(3));
        assert_eq!(store.trim_journal(DateTime(450)).await.expect("trim"), 3);
        assert_eq!(store.read(seqs).await.expect("seqs"), vec![6]);
        // Everything older: all of it goes, and the head stays.
        assert_eq!(store.trim_journal(DateTime(9999)).await.expect("trim"), 1);
        assert_eq!(store.journal_tail().await.expect("tail"), None);
        assert_eq!(store.journal_head().await.expect("head"), 6);
    }

    #[tokio::test]
    async fn a_big_wal_is_checkpointed_in_the_background_and_nothing_is_lost() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("s.db")).expect("open");
        // About 40 MB of rows in one commit: more WAL frames than CHECKPOINT_PAGES.
        store
            .write(|c, _| {
                c.execute_batch(
                    "CREATE TABLE big(x BLOB); \
                     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000) \
                     INSERT INTO big SELECT randomblob(4000) FROM n;",
                )
                .map(|()| ((), false))
                .map_err(sql_err)
            })
            .await
            .expect("big write");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while store
            .inner
            .checkpoints
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no background checkpoint within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The writer goes on, and every row is there, for this process and a fresh one.
        store
            .write(|c, _| {
                c.execute_batch("INSERT INTO big VALUES (x'00')")
                    .map(|()| ((), false))
                    .map_err(sql_err)
            })
            .await
            .expect("small write");
        let count = |c: &Connection, _: &Catalog| {
            c.query_row("SELECT count(*) FROM big", [], |r| r.get::<_, i64>(0))
                .map_err(sql_err)
        };
        assert_eq!(store.read(count).await.expect("count"), 10_001);
        drop(store);
        let again = SqliteStore::open(&dir.path().join("s.db")).expect("reopen");
        assert_eq!(again.read(count).await.expect("count"), 10_001);
    }

    #[tokio::test]
    async fn a_read_over_its_inline_budget_is_interrupted_and_run_again_on_a_blocking_thread() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("s.db")).expect("open");
        let pooled = || store.inner.readers.lock().map(|p| p.len()).unwrap_or(0);
        let idle = pooled().max(1);
        // Inline with no budget to speak of: interrupted, and nothing comes back.
        assert!(
            store
                .inner
                .with_reader_budget(long_sum, Duration::from_micros(1))
                .is_none(),
            "the budget interrupts the read"
        );
        assert_eq!(
            pooled(),
            idle,
            "the interrupted read's transaction is rolled back and its connection pooled again"
        );
        // The connection went back to the pool without its handler: an unbudgeted read on it runs
        // to the end.
        assert_eq!(
            store.inner.with_reader(long_sum).expect("sum"),
            500_000_500_000
        );
        // `read` moves the long read to a blocking thread and returns its full answer; a short one
        // is answered inline.
        assert_eq!(store.read(long_sum).await.expect("sum"), 500_000_500_000);
        let one = store
            .read(|c, _| {
                c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                    .map_err(sql_err)
            })
            .await
            .expect("select 1");
        assert_eq!(one, 1);
        assert!(
            store
                .inner
                .with_reader_budget(
                    |c, _| c
                        .query_row("SELECT 2", [], |r| r.get::<_, i64>(0))
                        .map_err(sql_err),
                    Duration::from_secs(5)
                )
                .is_some_and(|r| r.is_ok_and(|v| v == 2)),
            "a read within its budget is answered inline"
        );
    }

    /// A read that went to a blocking thread stops when its caller stops waiting (a deadline):
    /// it is interrupted and its connection pooled again, instead of running to its end.
    #[tokio::test]
    async fn an_abandoned_blocking_read_is_interrupted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("s.db")).expect("open");
        let pooled = || store.inner.readers.lock().map(|p| p.len()).unwrap_or(0);
        store
            .read(|c, _| {
                c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                    .map_err(sql_err)
            })
            .await
            .expect("select 1");
        let idle = pooled();
        assert!(idle >= 1, "a connection is pooled");
        // About a billion steps: minutes, if nothing stopped it.
        let endless = |c: &Connection, _: &Catalog| {
            c.query_row(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000) \
                 SELECT sum(i) FROM n",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(sql_err)
        };
        let started = std::time::Instant::now();
        let gave_up = tokio::time::timeout(Duration::from_millis(200), store.read(endless)).await;
        assert!(gave_up.is_err(), "the read outlasts its caller's deadline");
        while pooled() < idle {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the abandoned read is still running after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The connection is usable again.
        let two = store
            .read(|c, _| {
                c.query_row("SELECT 2", [], |r| r.get::<_, i64>(0))
                    .map_err(sql_err)
            })
            .await
            .expect("select 2");
        assert_eq!(two, 2);
    }
}
