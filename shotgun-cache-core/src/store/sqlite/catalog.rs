//! The catalog: which types are cached, their layouts, the physical tables that hold them, and the DDL
//! that creates and migrates those tables.
//!
//! Physical names carry a *generation* number: type `Shot` at generation 7 lives in `e7_Shot` (one row
//! per entity) and `m7_Shot` (its multi_entity links), with indexes `ix7_Shot_<field>`. A staging copy
//! is simply a newer generation; promoting it repoints the catalog and drops the old tables, so no
//! table is ever renamed. The catalog generation (`sc_meta.gen`) is bumped by every DDL change, and
//! every reader compares it inside its read transaction, so readers in other processes pick up new
//! layouts without restarting.
//!
//! Text indexes are expression indexes on `sg_fold(col)`, so they hold the output of the fold of the
//! build that wrote them. `sc_meta.fold` records that fold's version (`filter::eval::FOLD_VERSION`;
//! a file without it was written with version 1); [`ensure_fold_version`] runs on open and rebuilds
//! the `sg_fold` indexes (`REINDEX`) when the file's version differs from this build's.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde_json::Value as Json;

use super::codec::{self, Shape, ident};
use super::sql_err;
use crate::filter::eval::FOLD_VERSION;
use crate::model::{DataType, FieldSchema, SiteSchema};
use crate::store::{StoreError, TypeLayout};

/// The bookkeeping tables, created on open.
pub(crate) const BOOTSTRAP: &str = "
CREATE TABLE IF NOT EXISTS sc_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sc_types(
    entity_type TEXT PRIMARY KEY,
    layout TEXT NOT NULL,
    generation INTEGER NOT NULL,
    staging TEXT,
    staging_gen INTEGER
);
CREATE TABLE IF NOT EXISTS sc_type_state(
    entity_type TEXT PRIMARY KEY,
    phase TEXT NOT NULL,
    done INTEGER NOT NULL,
    total INTEGER NOT NULL,
    config_hash TEXT NOT NULL,
    ready_at INTEGER
);
CREATE TABLE IF NOT EXISTS sc_state(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sc_journal(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id INTEGER NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id INTEGER NOT NULL,
    op TEXT NOT NULL,
    fields TEXT NOT NULL,
    at INTEGER NOT NULL,
    entity TEXT
);
INSERT OR IGNORE INTO sc_meta(key, value) VALUES ('gen', '1');
";

/// One cached type.
#[derive(Debug, Clone)]
pub(crate) struct TypeCat {
    pub(crate) layout: TypeLayout,
    pub(crate) generation: i64,
    /// The staging copy in progress: its layout and generation.
    pub(crate) staging: Option<(TypeLayout, i64)>,
    /// The cached field holding the display name, when it is cached.
    pub(crate) display_field: Option<String>,
    /// Field name → index into `layout.fields`.
    pub(crate) by_name: BTreeMap<String, usize>,
}

impl TypeCat {
    fn new(
        layout: TypeLayout,
        generation: i64,
        staging: Option<(TypeLayout, i64)>,
        schema: Option<&SiteSchema>,
    ) -> TypeCat {
        let by_name = layout
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.clone(), i))
            .collect::<BTreeMap<_, _>>();
        let display_field = schema
            .and_then(|s| s.entity(&layout.entity_type))
            .and_then(|t| t.display_field())
            .filter(|f| by_name.contains_key(*f))
            .map(str::to_owned);
        TypeCat {
            layout,
            generation,
            staging,
            display_field,
            by_name,
        }
    }

    pub(crate) fn field(&self, name: &str) -> Option<&FieldSchema> {
        self.by_name.get(name).map(|i| &self.layout.fields[*i])
    }

    pub(crate) fn table(&self) -> String {
        entity_table(&self.layout.entity_type, self.generation)
    }

    pub(crate) fn multi_table(&self) -> String {
        multi_table(&self.layout.entity_type, self.generation)
    }
}

/// Everything a query needs to know about the physical layout.
#[derive(Debug, Clone, Default)]
pub(crate) struct Catalog {
    pub(crate) generation: i64,
    pub(crate) schema: Option<SiteSchema>,
    pub(crate) types: BTreeMap<String, TypeCat>,
}

impl Catalog {
    pub(crate) fn get(&self, entity_type: &str) -> Result<&TypeCat, StoreError> {
        self.types
            .get(entity_type)
            .ok_or_else(|| StoreError::Invalid(format!("entity type {entity_type} is not cached")))
    }

    /// The data type of a field of a type, from the layout or else the site schema.
    pub(crate) fn data_type(&self, entity_type: &str, field: &str) -> Option<DataType> {
        self.types
            .get(entity_type)
            .and_then(|t| t.field(field))
            .map(|f| f.data_type)
            .or_else(|| {
                self.schema
                    .as_ref()
                    .and_then(|s| s.field(entity_type, field))
                    .map(|f| f.data_type)
            })
    }

    /// Reads the catalog generation only.
    pub(crate) fn read_gen(conn: &Connection) -> Result<i64, StoreError> {
        // Read on every transaction: as an integer in SQL, no string to allocate and parse (a
        // value that is not a number reads as 0, as a failed parse did).
        let v: Option<i64> = conn
            .prepare_cached("SELECT CAST(value AS INTEGER) FROM sc_meta WHERE key = 'gen'")
            .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
            .map_err(sql_err)?;
        Ok(v.unwrap_or(0))
    }

    pub(crate) fn load(conn: &Connection) -> Result<Catalog, StoreError> {
        let generation = Catalog::read_gen(conn)?;
        let schema_json: Option<String> = conn
            .query_row("SELECT value FROM sc_meta WHERE key = 'schema'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql_err)?;
        let schema = match schema_json {
            None => None,
            Some(s) => {
                let j: Json = serde_json::from_str(&s)
                    .map_err(|e| StoreError::Corrupt(format!("stored schema: {e}")))?;
                Some(codec::schema_from_json(&j)?)
            }
        };
        let mut stmt = conn
            .prepare("SELECT entity_type, layout, generation, staging, staging_gen FROM sc_types")
            .map_err(sql_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            })
            .map_err(sql_err)?;
        let mut types = BTreeMap::new();
        for row in rows {
            let (t, layout, g, staging, sgen) = row.map_err(sql_err)?;
            let parse = |s: &str| -> Result<TypeLayout, StoreError> {
                let j: Json = serde_json::from_str(s)
                    .map_err(|e| StoreError::Corrupt(format!("stored layout of {t}: {e}")))?;
                codec::layout_from_json(&j)
            };
            let layout = parse(&layout)?;
            let staging = match (staging, sgen) {
                (Some(s), Some(g)) => Some((parse(&s)?, g)),
                _ => None,
            };
            types.insert(t.clone(), TypeCat::new(layout, g, staging, schema.as_ref()));
        }
        Ok(Catalog {
            generation,
            schema,
            types,
        })
    }
}

pub(crate) fn entity_table(entity_type: &str, generation: i64) -> String {
    ident(&format!("e{generation}_{entity_type}"))
}

pub(crate) fn multi_table(entity_type: &str, generation: i64) -> String {
    ident(&format!("m{generation}_{entity_type}"))
}

/// The bookkeeping columns every entity table has, before the field columns.
pub(crate) const BOOK_COLUMNS: [&str; 7] =
    ["id", "_retired", "_rv", "_lev", "_dn", "_vbase", "_vx"];

/// The expression a case-insensitive text column is compared and indexed by.
pub(crate) fn folded(col: &str) -> String {
    format!("sg_fold({col})")
}

/// The fold version the file's `sg_fold` indexes were built with (`None`: written before versions
/// were recorded, i.e. version 1).
fn stored_fold_version(conn: &Connection) -> Result<Option<String>, StoreError> {
    conn.query_row("SELECT value FROM sc_meta WHERE key = 'fold'", [], |r| {
        r.get(0)
    })
    .optional()
    .map_err(sql_err)
}

/// Brings the `sg_fold` expression indexes in line with this build's fold: when `sc_meta.fold` is not
/// [`FOLD_VERSION`], every index whose definition calls `sg_fold` is rebuilt and the version is
/// recorded, in one write transaction (so concurrent openers rebuild once). Returns how many
/// indexes were rebuilt. `conn` must have the `sg_*` functions registered and no open transaction.
pub(crate) fn ensure_fold_version(conn: &Connection) -> Result<usize, StoreError> {
    let want = FOLD_VERSION.to_string();
    if stored_fold_version(conn)?.as_deref() == Some(want.as_str()) {
        return Ok(0);
    }
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate).map_err(sql_err)?;
    if stored_fold_version(&tx)?.as_deref() == Some(want.as_str()) {
        return Ok(0);
    }
    let names: Vec<String> = tx
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql LIKE '%sg_fold(%'")
        .and_then(|mut st| {
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(sql_err)?;
    for name in &names {
        tx.execute_batch(&format!("REINDEX {};", ident(name)))
            .map_err(sql_err)?;
    }
    tx.execute(
        "INSERT OR REPLACE INTO sc_meta(key, value) VALUES ('fold', ?1)",
        params![want],
    )
    .map_err(sql_err)?;
    tx.commit().map_err(sql_err)?;
    Ok(names.len())
}

/// One index a layout wants: its name, the table it is on, its key and, for a partial index, its
/// `WHERE` clause.
struct IndexDef {
    name: String,
    table: String,
    cols: String,
    partial: Option<String>,
}

impl IndexDef {
    fn create_sql(&self) -> String {
        let partial = self
            .partial
            .as_ref()
            .map(|w| format!(" WHERE {w}"))
            .unwrap_or_default();
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} ({}){partial};\n",
            self.name, self.table, self.cols
        )
    }
}

/// The one index over every multi_entity field of a type's side table that files written before
/// multi_entity indexes followed `TypeLayout::indexed` have (see [`reconcile_indexes`]).
/// Its name, unquoted.
fn legacy_multi_index(entity_type: &str, generation: i64) -> String {
    format!("mx{generation}_{entity_type}")
}

/// The indexes wanted for a layout at a generation: the entity table's for its indexed fields, and
/// for each indexed multi_entity field a partial index on the side table.
///
/// A multi_entity field gets an index only when the layout lists it, like every other field. Before,
/// the side table had one index over every multi_entity field: each new row's links were inserted at
/// random places in it whether or not anything filtered on them, and in `store_bench` (1M shots,
/// journaled batches of 10,000 new shots with a few asset links each, 2-core VM) that index was
/// about a third of a batch's cost (median 21k → 29k rows/s without it). The partial index
/// `WHERE field = '<f>'` is keyed by target only, and the compiled filters name the field as a
/// literal, so the planner can use it (`compile` never binds the field name as a parameter).
fn index_defs(layout: &TypeLayout, generation: i64) -> Vec<IndexDef> {
    let t = &layout.entity_type;
    let table = entity_table(t, generation);
    let mut out = Vec::new();
    let on_table = |name: String, cols: String| IndexDef {
        name,
        table: table.clone(),
        cols,
        partial: None,
    };
    for name in &layout.indexed {
        let Some(f) = layout.fields.iter().find(|f| &f.name == name) else {
            continue;
        };
        let cols = match Shape::of(f.data_type) {
            Shape::Text => folded(&ident(name)),
            Shape::Int | Shape::Float | Shape::Bool | Shape::Date | Shape::DateTime => ident(name),
            Shape::Link => format!(
                "{}, {}",
                ident(&codec::link_id_col(name)),
                ident(&codec::link_type_col(name))
            ),
            Shape::Multi => {
                out.push(IndexDef {
                    name: ident(&format!("mx{generation}_{t}_{name}")),
                    table: multi_table(t, generation),
                    cols: "dst_id, dst_type".to_owned(),
                    partial: Some(format!("field = {}", codec::lit(name))),
                });
                continue;
            }
            // Images and JSON are not indexable.
            Shape::Image | Shape::Json => continue,
        };
        out.push(on_table(
            ident(&format!("ix{generation}_{t}_{name}")),
            cols.clone(),
        ));
        // Nearly every Shotgun query is scoped to a project, and low-cardinality fields (statuses,
        // lists, checkboxes) are poor indexes alone: when `project` is indexed, such fields also
        // get a composite index led by the project link.
        let low_cardinality = matches!(
            f.data_type,
            DataType::StatusList | DataType::List | DataType::Checkbox | DataType::EntityType
        );
        let project_indexed = layout.indexed.iter().any(|i| i == "project")
            && layout
                .fields
                .iter()
                .any(|f| f.name == "project" && f.data_type == DataType::Entity);
        if low_cardinality && project_indexed {
            out.push(on_table(
                ident(&format!("ixp{generation}_{t}_{name}")),
                format!(
                    "{}, {}, {cols}",
                    ident(&codec::link_id_col("project")),
                    ident(&codec::link_type_col("project"))
                ),
            ));
        }
    }
    // A composite index led by the project link also serves `project` filters alone, so the plain
    // project index would only cost every write one more index insert.
    let composite = format!("ixp{generation}_{t}_");
    if out.iter().any(|d| d.name.contains(&composite)) {
        let plain = ident(&format!("ix{generation}_{t}_project"));
        out.retain(|d| d.name != plain);
    }
    out
}

/// Brings the indexes of a type's tables at `generation` in line with `layout` where a file written
/// by an older build has others: drops the legacy side-table index over every multi_entity field
/// and creates the wanted partial indexes in its place. Returns whether it changed anything (a
/// file already in line costs one lookup in `sqlite_master`).
pub(crate) fn reconcile_indexes(
    conn: &Connection,
    layout: &TypeLayout,
    generation: i64,
) -> Result<bool, StoreError> {
    let legacy = legacy_multi_index(&layout.entity_type, generation);
    let present: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?1",
            params![legacy],
            |r| r.get(0),
        )
        .map_err(sql_err)?;
    if present == 0 {
        return Ok(false);
    }
    let mut sql = format!("DROP INDEX IF EXISTS {};\n", ident(&legacy));
    for d in index_defs(layout, generation) {
        sql.push_str(&d.create_sql());
    }
    conn.execute_batch(&sql).map_err(sql_err)?;
    Ok(true)
}

/// The column declarations of a layout.
fn field_columns(layout: &TypeLayout) -> Vec<(String, &'static str)> {
    layout
        .fields
        .iter()
        .flat_map(|f| Shape::of(f.data_type).columns(&f.name))
        .collect()
}

/// Creates the tables and indexes of a layout at a generation.
pub(crate) fn create_tables(
    conn: &Connection,
    layout: &TypeLayout,
    generation: i64,
) -> Result<(), StoreError> {
    let t = &layout.entity_type;
    let mut cols = vec![
        "id INTEGER PRIMARY KEY".to_owned(),
        "_retired INTEGER NOT NULL DEFAULT 0".to_owned(),
        "_rv INTEGER NOT NULL DEFAULT 0".to_owned(),
        "_lev INTEGER NOT NULL DEFAULT 0".to_owned(),
        "_dn TEXT".to_owned(),
        "_vbase INTEGER NOT NULL DEFAULT 0".to_owned(),
        "_vx TEXT".to_owned(),
    ];
    cols.extend(
        field_columns(layout)
            .into_iter()
            .map(|(c, ty)| format!("{} {ty}", ident(&c))),
    );
    let mut sql = format!(
        "CREATE TABLE {} ({});\n",
        entity_table(t, generation),
        cols.join(", ")
    );
    sql.push_str(&format!(
        "CREATE TABLE {m} (src_id INTEGER NOT NULL, field TEXT NOT NULL, pos INTEGER NOT NULL, dst_type TEXT NOT NULL, \
         dst_id INTEGER NOT NULL, name TEXT, PRIMARY KEY (src_id, field, pos)) WITHOUT ROWID;\n",
        m = multi_table(t, generation),
    ));
    for d in index_defs(layout, generation) {
        sql.push_str(&d.create_sql());
    }
    conn.execute_batch(&sql).map_err(sql_err)
}

pub(crate) fn drop_tables(
    conn: &Connection,
    entity_type: &str,
    generation: i64,
) -> Result<(), StoreError> {
    conn.execute_batch(&format!(
        "DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {};",
        entity_table(entity_type, generation),
        multi_table(entity_type, generation)
    ))
    .map_err(sql_err)
}

/// Migrates the tables of `old` (at `generation`) in place to `new`: drops the field indexes, adds and drops
/// columns (a field whose data type changed is dropped and re-added, so its values become null), and
/// recreates the wanted indexes.
pub(crate) fn migrate_tables(
    conn: &Connection,
    old: &TypeLayout,
    new: &TypeLayout,
    generation: i64,
) -> Result<(), StoreError> {
    let t = &new.entity_type;
    let table = entity_table(t, generation);
    let mut sql = String::new();
    for d in index_defs(old, generation) {
        sql.push_str(&format!("DROP INDEX IF EXISTS {};\n", d.name));
    }
    sql.push_str(&format!(
        "DROP INDEX IF EXISTS {};\n",
        ident(&legacy_multi_index(t, generation))
    ));
    let old_fields: BTreeMap<&str, DataType> = old
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.data_type))
        .collect();
    let new_fields: BTreeMap<&str, DataType> = new
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.data_type))
        .collect();
    for (name, dt) in &old_fields {
        if new_fields.get(name) == Some(dt) {
            continue;
        }
        for (c, _) in Shape::of(*dt).columns(name) {
            sql.push_str(&format!("ALTER TABLE {table} DROP COLUMN {};\n", ident(&c)));
        }
        if Shape::of(*dt) == Shape::Multi {
            sql.push_str(&format!(
                "DELETE FROM {} WHERE field = {};\n",
                multi_table(t, generation),
                codec::lit(name)
            ));
        }
    }
    for (name, dt) in &new_fields {
        if old_fields.get(name) == Some(dt) {
            continue;
        }
        for (c, ty) in Shape::of(*dt).columns(name) {
            let default = if Shape::of(*dt) == Shape::Bool {
                " NOT NULL DEFAULT 0"
            } else {
                ""
            };
            sql.push_str(&format!(
                "ALTER TABLE {table} ADD COLUMN {} {ty}{default};\n",
                ident(&c)
            ));
        }
    }
    for d in index_defs(new, generation) {
        sql.push_str(&d.create_sql());
    }
    conn.execute_batch(&sql).map_err(sql_err)
}

/// Bumps the catalog generation and returns the new value (also used to name new tables).
pub(crate) fn bump_gen(conn: &Connection) -> Result<i64, StoreError> {
    let generation = Catalog::read_gen(conn)? + 1;
    conn.execute(
        "INSERT OR REPLACE INTO sc_meta(key, value) VALUES ('gen', ?1)",
        params![generation.to_string()],
    )
    .map_err(sql_err)?;
    Ok(generation)
}

pub(crate) fn save_type(
    conn: &Connection,
    layout: &TypeLayout,
    generation: i64,
    staging: Option<(&TypeLayout, i64)>,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR REPLACE INTO sc_types(entity_type, layout, generation, staging, staging_gen) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            layout.entity_type,
            codec::layout_to_json(layout).to_string(),
            generation,
            staging.map(|(l, _)| codec::layout_to_json(l).to_string()),
            staging.map(|(_, g)| g),
        ],
    )
    .map_err(sql_err)?;
    Ok(())
}

pub(crate) fn save_schema(conn: &Connection, schema: &SiteSchema) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR REPLACE INTO sc_meta(key, value) VALUES ('schema', ?1)",
        params![codec::schema_to_json(schema).to_string()],
    )
    .map_err(sql_err)?;
    Ok(())
}

/// `prepare`: creates, migrates or drops type tables so they match `layouts`, and persists the schema.
pub(crate) fn prepare(
    conn: &Connection,
    cat: &Catalog,
    schema: &SiteSchema,
    layouts: &[TypeLayout],
) -> Result<(), StoreError> {
    save_schema(conn, schema)?;
    let generation = bump_gen(conn)?;
    for layout in layouts {
        if layout.fields.iter().any(|f| f.name == "id") {
            return Err(StoreError::Invalid(format!(
                "layout of {} lists the field id",
                layout.entity_type
            )));
        }
        match cat.types.get(&layout.entity_type) {
            None => {
                create_tables(conn, layout, generation)?;
                save_type(conn, layout, generation, None)?;
            }
            Some(tc) if &tc.layout == layout => {
                let mut tables = vec![(layout, tc.generation)];
                tables.extend(tc.staging.as_ref().map(|(l, g)| (l, *g)));
                for (l, g) in tables {
                    if reconcile_indexes(conn, l, g)? {
                        tracing::info!(
                            entity_type = %l.entity_type,
                            "multi_entity indexes now follow the layout's indexed fields (legacy side-table index dropped)"
                        );
                    }
                }
            }
            Some(tc) => {
                migrate_tables(conn, &tc.layout, layout, tc.generation)?;
                save_type(
                    conn,
                    layout,
                    tc.generation,
                    tc.staging.as_ref().map(|(l, g)| (l, *g)),
                )?;
            }
        }
    }
    for (t, tc) in &cat.types {
        if layouts.iter().any(|l| &l.entity_type == t) {
            continue;
        }
        drop_tables(conn, t, tc.generation)?;
        if let Some((_, g)) = &tc.staging {
            drop_tables(conn, t, *g)?;
        }
        conn.execute("DELETE FROM sc_types WHERE entity_type = ?1", params![t])
            .map_err(sql_err)?;
        conn.execute(
            "DELETE FROM sc_type_state WHERE entity_type = ?1",
            params![t],
        )
        .map_err(sql_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;
    use rusqlite::functions::FunctionFlags;
    use serde_json::json;

    use super::Catalog;
    use crate::model::{DateTime, Entity, Value};
    use crate::query::FindQuery;
    use crate::store::conformance::{filter, test_layouts, test_schema};
    use crate::store::sqlite::read::compile_find;
    use crate::store::sqlite::{SqliteStore, register_functions};
    use crate::store::{EntityWrite, Store, WriteBatch};

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).expect("count query")
    }

    /// The names of the indexes on the tables matching `like`.
    fn indexes_on(conn: &Connection, like: &str) -> Vec<String> {
        let mut st = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name LIKE ?1 \
                 AND sql IS NOT NULL ORDER BY name",
            )
            .expect("prepare");
        st.query_map([like], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .expect("index names")
    }

    /// The query plan's detail lines for a find of Shot with `f`, compiled as the store compiles it.
    fn plan(conn: &Connection, f: serde_json::Value) -> String {
        let cat = Catalog::load(conn).expect("catalog");
        let tc = cat.get("Shot").expect("Shot is cached");
        let q = FindQuery {
            entity_type: "Shot".into(),
            filter: filter("Shot", f),
            fields: Vec::new(),
            sorts: Vec::new(),
            offset: 0,
            limit: Some(50),
            retired_only: false,
        };
        let (sql, params) = compile_find(&cat, tc, &q, DateTime::now(), "t.id").expect("compiles");
        let mut st = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        st.query_map(rusqlite::params_from_iter(params), |r| {
            r.get::<_, String>(3)
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .expect("plan rows")
        .join("\n")
    }

    /// A multi_entity field gets a side-table index only when the layout lists it as indexed, and a
    /// find filtering on it then uses that index; a file with the older index over every
    /// multi_entity field is brought in line by `prepare`.
    #[tokio::test]
    async fn multi_entity_fields_are_indexed_only_when_the_layout_lists_them() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("multi.db");
        let assets_is = json!([["assets", "is", {"type": "Asset", "id": 7}]]);
        let mut layouts = test_layouts();
        {
            // Not listed: no index on the side table (its primary key is not an index entry here).
            let store = SqliteStore::open(&path).expect("open");
            store
                .prepare(&test_schema(), &layouts)
                .await
                .expect("prepare");
            let conn = Connection::open(&path).expect("open file");
            register_functions(&conn).expect("functions");
            assert_eq!(indexes_on(&conn, "m%_Shot"), Vec::<String>::new());
            assert!(
                !plan(&conn, assets_is.clone()).contains("mx"),
                "no side-table index to use"
            );
        }
        let shot = layouts
            .iter_mut()
            .find(|l| l.entity_type == "Shot")
            .expect("Shot layout");
        shot.indexed.push("assets".into());
        let store = SqliteStore::open(&path).expect("open");
        store
            .prepare(&test_schema(), &layouts)
            .await
            .expect("prepare with assets indexed");
        let conn = Connection::open(&path).expect("open file");
        register_functions(&conn).expect("functions");
        let names = indexes_on(&conn, "m%_Shot");
        assert_eq!(names.len(), 1, "one partial index: {names:?}");
        assert!(names[0].ends_with("_Shot_assets"), "{names:?}");
        let p = plan(&conn, assets_is.clone());
        assert!(p.contains(&names[0]), "the find uses {}: {p}", names[0]);

        // Play an older build: the one index over every multi_entity field instead.
        let generation: i64 = conn
            .query_row(
                "SELECT generation FROM sc_types WHERE entity_type = 'Shot'",
                [],
                |r| r.get(0),
            )
            .expect("Shot generation");
        conn.execute_batch(&format!(
            "DROP INDEX \"{}\"; CREATE INDEX \"mx{generation}_Shot\" ON \"m{generation}_Shot\" (field, dst_id, dst_type);",
            names[0]
        ))
        .expect("legacy index");
        assert_eq!(
            indexes_on(&conn, "m%_Shot"),
            vec![format!("mx{generation}_Shot")]
        );
        store
            .prepare(&test_schema(), &layouts)
            .await
            .expect("prepare again with the same layouts");
        assert_eq!(indexes_on(&conn, "m%_Shot"), names, "legacy index replaced");
        let p = plan(&conn, assets_is);
        assert!(p.contains(&names[0]), "the find uses {}: {p}", names[0]);
    }

    /// A long integer `in` list is one JSON parameter: it works past SQLite's 32,766 SQL
    /// parameters, reads by primary key, and every length compiles to the same statement text.
    #[tokio::test]
    async fn long_id_lists_are_one_parameter_and_read_by_primary_key() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("ids.db");
        let store = SqliteStore::open(&path).expect("open");
        store
            .prepare(&test_schema(), &test_layouts())
            .await
            .expect("prepare");
        store
            .commit(WriteBatch::import(
                (1..=300).map(|id| crate::model::Entity::new("Shot", id * 2)),
            ))
            .await
            .expect("commit shots");
        let ids: Vec<i64> = (1..=40_000).map(|i| i * 3).collect();
        let q = |ids: &[i64]| FindQuery {
            entity_type: "Shot".into(),
            filter: filter("Shot", json!([["id", "in", ids]])),
            fields: Vec::new(),
            sorts: Vec::new(),
            offset: 0,
            limit: None,
            retired_only: false,
        };
        let found: Vec<i64> = store
            .find(&q(&ids))
            .await
            .expect("a 40,000-id find")
            .into_iter()
            .map(|r| r.id)
            .collect();
        let expected: Vec<i64> = (1..=300).map(|i| i * 2).filter(|id| id % 3 == 0).collect();
        assert_eq!(found, expected);

        let conn = Connection::open(&path).expect("open file");
        register_functions(&conn).expect("functions");
        let p = plan(&conn, json!([["id", "in", ids]]));
        assert!(
            p.contains("INTEGER PRIMARY KEY"),
            "read by primary key: {p}"
        );
        let cat = Catalog::load(&conn).expect("catalog");
        let tc = cat.get("Shot").expect("Shot is cached");
        let sql = |ids: &[i64]| {
            compile_find(&cat, tc, &q(ids), DateTime::now(), "t.id")
                .expect("compiles")
                .0
        };
        assert_eq!(
            sql(&ids[..17]),
            sql(&ids),
            "one statement for every long list"
        );

        // A list that needs more parameters than SQLite binds is refused, naming the problem.
        let codes: Vec<String> = (0..33_000).map(|i| format!("sh{i}")).collect();
        let many = filter("Shot", json!([["code", "in", codes]]));
        let err = store
            .find(&FindQuery {
                filter: many.clone(),
                ..q(&ids)
            })
            .await
            .expect_err("33,000 codes are refused");
        let refused = |err: &crate::store::StoreError| {
            matches!(err, crate::store::StoreError::Invalid(m)
                if m.contains("too many values") && m.contains("33000 SQL parameters"))
        };
        assert!(refused(&err), "{err:?}");
        let err = store
            .count(&crate::store::CountQuery {
                entity_type: "Shot".into(),
                filter: many,
                retired_only: false,
                now: DateTime::now(),
            })
            .await
            .expect_err("a count of 33,000 codes is refused");
        assert!(refused(&err), "{err:?}");
    }

    /// A file whose `sg_fold` indexes were built by the version-1 fold (per-character lowercase,
    /// final sigma kept) is reindexed on open, so index lookups see the current fold.
    #[tokio::test]
    async fn stale_fold_indexes_are_rebuilt_on_open() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("fold.db");
        {
            let store = SqliteStore::open(&path).expect("open");
            store
                .prepare(&test_schema(), &test_layouts())
                .await
                .expect("prepare");
            let mut e = Entity::new("Sequence", 10);
            e.fields.insert("code".into(), Value::Text("ας".into()));
            store
                .commit(WriteBatch {
                    writes: vec![EntityWrite::Upsert {
                        entity: e,
                        floor: 0,
                        event_id: 0,
                    }],
                    ..WriteBatch::default()
                })
                .await
                .expect("commit");
        }
        let index: String = {
            // Play the old build: rebuild every index with the version-1 fold and forget the version.
            let conn = Connection::open(&path).expect("open file");
            conn.create_scalar_function(
                "sg_fold",
                1,
                FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
                |ctx| {
                    Ok(ctx
                        .get::<Option<String>>(0)?
                        .map(|s| s.chars().flat_map(char::to_lowercase).collect::<String>()))
                },
            )
            .expect("old sg_fold");
            conn.execute_batch("REINDEX; DELETE FROM sc_meta WHERE key = 'fold';")
                .expect("reindex with the old fold");
            conn.query_row(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'ix%_Sequence_code'",
                [],
                |r| r.get(0),
            )
            .expect("the Sequence.code index exists")
        };
        let (table, lookup) = {
            // With the current fold, the stale index misses the row that a scan finds.
            let conn = Connection::open(&path).expect("open file");
            register_functions(&conn).expect("functions");
            let table: String = conn
                .query_row(
                    "SELECT tbl_name FROM sqlite_master WHERE name = ?1",
                    [&index],
                    |r| r.get(0),
                )
                .expect("indexed table");
            let lookup = format!(
                "SELECT count(*) FROM \"{table}\" INDEXED BY \"{index}\" WHERE sg_fold(code) = 'ασ'"
            );
            assert_eq!(count(&conn, &lookup), 0, "the old index holds the old fold");
            assert_eq!(
                count(
                    &conn,
                    &format!(
                        "SELECT count(*) FROM \"{table}\" NOT INDEXED WHERE sg_fold(code) = 'ασ'"
                    )
                ),
                1
            );
            (table, lookup)
        };
        let store = SqliteStore::open(&path).expect("reopen");
        let found = store
            .find(&crate::query::FindQuery {
                entity_type: "Sequence".into(),
                filter: filter("Sequence", json!([["code", "is", "ΑΣ"]])),
                fields: vec![],
                sorts: vec![],
                offset: 0,
                limit: None,
                retired_only: false,
            })
            .await
            .expect("find");
        assert_eq!(found.iter().map(|r| r.id).collect::<Vec<_>>(), vec![10]);
        let conn = Connection::open(&path).expect("open file");
        register_functions(&conn).expect("functions");
        assert_eq!(count(&conn, &lookup), 1, "{table}: the index was rebuilt");
        let version: String = conn
            .query_row("SELECT value FROM sc_meta WHERE key = 'fold'", [], |r| {
                r.get(0)
            })
            .expect("fold version recorded");
        assert_eq!(version, super::FOLD_VERSION.to_string());
        // A second open finds the version current and rebuilds nothing.
        assert_eq!(super::ensure_fold_version(&conn).expect("check"), 0);
    }
}
