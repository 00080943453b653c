//! The embedded store: one SQLite file in WAL mode (one writer process, many reader processes).

use std::path::Path;

use super::StoreError;

/// The SQLite backend. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    _private: (),
}

impl SqliteStore {
    /// Opens (creating if needed) the store file at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let _ = path;
        todo!("sqlite helper: open")
    }
}
