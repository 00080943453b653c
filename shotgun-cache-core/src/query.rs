//! A find/count request in domain terms, the result record, and the reference implementation of
//! find (filter + sort + page + project) over an in-memory entity source.
//!
//! The reference `find` defines ordering, paging and return-field projection exactly as the store
//! backends must implement them:
//! - sorts are applied in order, with `id` ascending as the final tiebreak; nulls sort **first** on
//!   ascending and last on descending (see the semantics table in `filter::eval`);
//! - text sorts compare case-insensitively;
//! - entity fields sort by the link's live name, then type, then id;
//! - deep-link sorts follow single-entity hops only (a multi_entity hop sorts as null);
//! - `offset`/`limit` apply after sorting; `retired_only` selects tombstones instead of live rows.
//! - projection: a deep-link return field through single-entity links reads the target's value (null
//!   when the link is null or points at another type); through a multi_entity hop it is **absent**.

use std::collections::BTreeMap;

use crate::filter::{EntitySource, FieldPath, Filter};
use crate::model::{DateTime, Entity, Value};

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Asc,
    Desc,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sort {
    pub path: FieldPath,
    pub direction: Direction,
}

/// A validated find request.
#[derive(Debug, Clone, PartialEq)]
pub struct FindQuery {
    pub entity_type: String,
    pub filter: Filter,
    /// Return fields (plain or deep-link). `type` and `id` are always returned and need not be listed.
    pub fields: Vec<FieldPath>,
    pub sorts: Vec<Sort>,
    /// Rows to skip after sorting.
    pub offset: u64,
    /// At most this many rows; `None` = no limit.
    pub limit: Option<u64>,
    /// Tombstones instead of live rows (Shotgun's `return_only: retired`).
    pub retired_only: bool,
}

/// One result row: `type`, `id`, and the requested fields keyed by the path as written.
/// A deep-link field through a multi_entity hop is absent from `fields` (as in Shotgun).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub entity_type: String,
    pub id: i64,
    pub fields: BTreeMap<String, Value>,
}

/// An in-memory collection usable by the reference `find`.
pub trait EntityCollection: EntitySource {
    /// Every cached entity of a type, retired ones included, in any order.
    fn all_of_type(&self, entity_type: &str) -> Vec<&Entity>;
}

/// The reference find: filter, sort, page and project, in memory. Defines the semantics the store
/// backends must reproduce (ids and order).
pub fn reference_find(src: &dyn EntityCollection, q: &FindQuery, now: DateTime) -> Vec<Record> {
    let _ = (src, q, now);
    todo!("filter helper: reference_find")
}

/// The reference count (filter only; no paging).
pub fn reference_count(src: &dyn EntityCollection, entity_type: &str, filter: &Filter, retired_only: bool, now: DateTime) -> u64 {
    let _ = (src, entity_type, filter, retired_only, now);
    todo!("filter helper: reference_count")
}

/// Projects one entity onto the requested return fields, applying the link rule of
/// [`EntitySource`] (live names, retired targets dropped).
pub fn project(src: &dyn EntitySource, entity: &Entity, fields: &[FieldPath]) -> Record {
    let _ = (src, entity, fields);
    todo!("filter helper: project")
}
