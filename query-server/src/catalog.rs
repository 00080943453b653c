//! The catalog: what the cache knows about the site, read from the store and refreshed in the
//! background (site schema, cached type layouts, per-type import states).
//!
//! The query-server is stateless: the syncer owns all of this and persists it in the store. A
//! background task re-reads it every `refresh` interval (cheap: three small reads), so a schema or
//! config change made by the syncer is picked up without a restart. Readers take an immutable
//! [`CatalogSnapshot`] (an `Arc`), so a request sees one consistent view.
//!
//! The partial-import rule lives here: a type is served only when the snapshot holds a state for it
//! that is `Ready` or `Reimporting`. A type with a layout but no state yet counts as not imported.
//! Because a type only moves forward (importing → ready), a stale snapshot can refuse a type a
//! little longer than needed, but never serves one too early.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use shotgun_cache_core::filter::{FieldPath, FilterError, LogicalOp, RawFilter, validate};
use shotgun_cache_core::model::SiteSchema;
use shotgun_cache_core::store::{Store, StoreError, TypeLayout, TypePhase, TypeState};

use crate::error::QueryError;

/// One consistent view of the schema, layouts and type states.
#[derive(Debug, Default)]
pub struct CatalogSnapshot {
    /// The persisted site schema; `None` until the syncer has written one.
    pub schema: Option<Arc<SiteSchema>>,
    /// Layouts of the cached types, by type name.
    pub layouts: BTreeMap<String, TypeLayout>,
    /// Import states, by type name.
    pub states: BTreeMap<String, TypeState>,
    /// Per cached type, the set of cached field names (for fast membership checks).
    cached_fields: BTreeMap<String, BTreeSet<String>>,
}

impl CatalogSnapshot {
    pub fn new(
        schema: Option<SiteSchema>,
        layouts: Vec<TypeLayout>,
        states: Vec<TypeState>,
    ) -> CatalogSnapshot {
        let cached_fields = layouts
            .iter()
            .map(|l| {
                (
                    l.entity_type.clone(),
                    l.fields.iter().map(|f| f.name.clone()).collect(),
                )
            })
            .collect();
        CatalogSnapshot {
            schema: schema.map(Arc::new),
            layouts: layouts
                .into_iter()
                .map(|l| (l.entity_type.clone(), l))
                .collect(),
            states: states
                .into_iter()
                .map(|s| (s.entity_type.clone(), s))
                .collect(),
            cached_fields,
        }
    }

    /// The schema, or `NoSchema` when the syncer has not written one yet.
    pub fn schema(&self) -> Result<&Arc<SiteSchema>, QueryError> {
        self.schema.as_ref().ok_or(QueryError::NoSchema)
    }

    pub fn is_cached_type(&self, entity_type: &str) -> bool {
        self.layouts.contains_key(entity_type)
    }

    /// Whether `entity_type.field` is kept in the cache (`id` always is, on a cached type).
    pub fn is_cached_field(&self, entity_type: &str, field: &str) -> bool {
        match self.cached_fields.get(entity_type) {
            Some(fields) => field == "id" || fields.contains(field),
            None => false,
        }
    }

    /// Whether `entity_type.field` is indexed.
    pub fn is_indexed_field(&self, entity_type: &str, field: &str) -> bool {
        self.layouts
            .get(entity_type)
            .is_some_and(|l| l.indexed.iter().any(|f| f == field))
    }

    /// Checks that `entity_type` exists, is cached and may be served now.
    ///
    /// # Errors
    /// The shared "unknown type" validation error, [`QueryError::TypeNotCached`], or
    /// [`QueryError::TypeImporting`] with the import progress.
    pub fn check_served_type(&self, entity_type: &str) -> Result<(), QueryError> {
        let schema = self.schema()?;
        if entity_type.is_empty() {
            return Err(crate::error::invalid("entity_type is required"));
        }
        if schema.entity(entity_type).is_none() {
            // The shared validation names unknown types; run it on an empty filter so the message is
            // the same as anywhere else.
            let empty = RawFilter::Group {
                op: LogicalOp::And,
                children: Vec::new(),
            };
            validate(schema, entity_type, &empty)?;
            return Err(QueryError::Filter(FilterError::Malformed(format!(
                "unknown entity type '{entity_type}'"
            ))));
        }
        if !self.is_cached_type(entity_type) {
            return Err(QueryError::TypeNotCached(entity_type.to_owned()));
        }
        self.check_phase(entity_type)
    }

    fn check_phase(&self, entity_type: &str) -> Result<(), QueryError> {
        match self.states.get(entity_type) {
            Some(s) if matches!(s.phase, TypePhase::Ready | TypePhase::Reimporting) => Ok(()),
            Some(s) => {
                let pct = s
                    .done
                    .saturating_mul(100)
                    .checked_div(s.total)
                    .unwrap_or(0)
                    .min(100);
                Err(QueryError::TypeImporting(format!(
                    "type {entity_type} is still being imported: {}/{} ({pct}%)",
                    s.done, s.total
                )))
            }
            None => Err(QueryError::TypeImporting(format!(
                "type {entity_type} has not been imported yet (the syncer has not started its import)"
            ))),
        }
    }

    /// Checks that every field a resolved path reads is cached, and every type it steps into is
    /// cached and served. `usage` says where the path appears ("filter", "fields", "sorts").
    pub fn check_path_cached(
        &self,
        root_type: &str,
        path: &FieldPath,
        usage: &str,
    ) -> Result<(), QueryError> {
        let mut current = root_type.to_owned();
        for hop in &path.hops {
            if !self.is_cached_field(&current, &hop.field) {
                return Err(QueryError::FieldNotCached {
                    entity_type: current,
                    field: hop.field.clone(),
                    usage: format!("{usage} path '{}'", path.raw),
                });
            }
            if !self.is_cached_type(&hop.target_type) {
                return Err(QueryError::FieldNotCached {
                    entity_type: hop.target_type.clone(),
                    field: path.leaf.clone(),
                    usage: format!(
                        "{usage} path '{}'; type {} is not cached",
                        path.raw, hop.target_type
                    ),
                });
            }
            self.check_phase(&hop.target_type)?;
            current = hop.target_type.clone();
        }
        if !self.is_cached_field(&path.leaf_entity_type, &path.leaf) {
            return Err(QueryError::FieldNotCached {
                entity_type: path.leaf_entity_type.clone(),
                field: path.leaf.clone(),
                usage: format!("{usage} path '{}'", path.raw),
            });
        }
        Ok(())
    }
}

/// A shared, refreshable handle on the current [`CatalogSnapshot`]. Cheap to clone.
#[derive(Clone, Default)]
pub struct Catalog {
    // A std `RwLock` (not tokio's): it is held only to clone or swap an `Arc`, never across an await.
    current: Arc<RwLock<Arc<CatalogSnapshot>>>,
}

impl Catalog {
    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<CatalogSnapshot> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads schema, layouts and states from the store and swaps the snapshot in.
    pub async fn refresh(&self, store: &dyn Store) -> Result<(), StoreError> {
        let schema = store.schema().await?;
        let layouts = store.layouts().await?;
        let states = store.type_states().await?;
        let snap = Arc::new(CatalogSnapshot::new(schema, layouts, states));
        match self.current.write() {
            Ok(mut g) => *g = snap,
            Err(poisoned) => *poisoned.into_inner() = snap,
        }
        Ok(())
    }

    /// Refreshes every `every` until `stop` resolves. Errors are logged and retried next round.
    pub async fn refresh_loop(
        self,
        store: Arc<dyn Store>,
        every: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {
                    if let Err(e) = self.refresh(store.as_ref()).await {
                        tracing::warn!(error = %e, "failed to refresh the catalog from the store");
                    }
                }
            }
        }
    }
}
