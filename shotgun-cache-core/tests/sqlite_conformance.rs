//! The store conformance suite (`store::conformance`) run against the SQLite backend, one real
//! database file per test in a temporary directory.

use shotgun_cache_core::store::sqlite::SqliteStore;

async fn fresh() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let store = SqliteStore::open(&dir.path().join("cache.db")).expect("open a fresh sqlite store");
    (store, dir)
}

shotgun_cache_core::store_conformance_tests!(fresh);
