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
//! - unsortable values (multi_entity, JSON-valued types) sort as null.
//!
//! Every rule here is also a row of the semantics table in `filter::eval`, and is tested in
//! `filter/tests.rs`. [`MemorySource`] is the in-memory [`EntityCollection`] used by tests, the
//! simulator and Watch filters.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use crate::filter::eval::{LinkState, cmp_values, link_state, live_link_name};
use crate::filter::{EntitySource, FieldPath, Filter, matches};
use crate::model::{DataType, DateTime, Entity, EntityRef, Value};

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
    let rows = matching(src, &q.entity_type, &q.filter, q.retired_only, now);
    let mut keyed: Vec<(Vec<SortKey>, &Entity)> = rows
        .into_iter()
        .map(|e| {
            (
                q.sorts.iter().map(|s| sort_key(src, e, &s.path)).collect(),
                e,
            )
        })
        .collect();
    keyed.sort_by(|(ka, a), (kb, b)| {
        for (i, s) in q.sorts.iter().enumerate() {
            let o = ka[i].cmp(&kb[i]);
            let o = if s.direction == Direction::Desc {
                o.reverse()
            } else {
                o
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.id.cmp(&b.id)
    });
    let offset = usize::try_from(q.offset).unwrap_or(usize::MAX);
    let limit = q
        .limit
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    keyed
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(_, e)| project(src, e, &q.fields))
        .collect()
}

/// The reference count (filter only; no paging).
pub fn reference_count(
    src: &dyn EntityCollection,
    entity_type: &str,
    filter: &Filter,
    retired_only: bool,
    now: DateTime,
) -> u64 {
    matching(src, entity_type, filter, retired_only, now).len() as u64
}

fn matching<'a>(
    src: &'a dyn EntityCollection,
    entity_type: &str,
    filter: &Filter,
    retired_only: bool,
    now: DateTime,
) -> Vec<&'a Entity> {
    let as_source: &dyn EntitySource = upcast(src);
    src.all_of_type(entity_type)
        .into_iter()
        .filter(|e| e.retired == retired_only && matches(filter, e, as_source, now))
        .collect()
}

fn upcast(src: &dyn EntityCollection) -> &dyn EntitySource {
    src
}

/// Projects one entity onto the requested return fields, applying the link rule of
/// [`EntitySource`] (live names, retired targets dropped).
pub fn project(src: &dyn EntitySource, entity: &Entity, fields: &[FieldPath]) -> Record {
    let mut out = BTreeMap::new();
    for path in fields {
        if path.hops.iter().any(|h| h.multi) {
            // Deep reads through multi_entity links are absent, as in Shotgun.
            continue;
        }
        let v = match single_leaf(src, entity, path) {
            // An unset checkbox reads false and an unset multi_entity reads [] (never null).
            Some(LeafRef::Value(Value::Null)) => Value::empty_for(path.leaf_type),
            Some(v) => read_value(src, v),
            None => Value::Null,
        };
        out.insert(path.raw.clone(), v);
    }
    Record {
        entity_type: entity.entity_type.clone(),
        id: entity.id,
        fields: out,
    }
}

/// The leaf value reached through single-entity hops, or `None` when a hop reads null (null link,
/// another type, uncached or retired target) or goes through a multi_entity field.
fn single_leaf<'a>(
    src: &'a dyn EntitySource,
    entity: &'a Entity,
    path: &FieldPath,
) -> Option<LeafRef<'a>> {
    let mut current = entity;
    for hop in &path.hops {
        if hop.multi {
            return None;
        }
        let Value::Entity(r) = current.get(&hop.field) else {
            return None;
        };
        if r.entity_type != hop.target_type {
            return None;
        }
        match link_state(src, &r.entity_type, r.id) {
            LinkState::Live(t) => current = t,
            LinkState::Dropped | LinkState::Unknown => return None,
        }
    }
    Some(if path.leaf == "id" {
        LeafRef::Id(current.id)
    } else {
        LeafRef::Value(current.get(&path.leaf))
    })
}

enum LeafRef<'a> {
    Id(i64),
    Value(&'a Value),
}

fn read_value(src: &dyn EntitySource, v: LeafRef<'_>) -> Value {
    match v {
        LeafRef::Id(id) => Value::Int(id),
        LeafRef::Value(v) => live_value(src, v),
    }
}

/// A stored value as a reader sees it: links get live names (protocol §3.8), a single link to a
/// retired target reads null and such elements are dropped from multi_entity lists.
pub fn live_value(src: &dyn EntitySource, v: &Value) -> Value {
    match v {
        Value::Entity(r) => match live_link(src, r) {
            Some(r) => Value::Entity(r),
            None => Value::Null,
        },
        Value::MultiEntity(list) => {
            Value::MultiEntity(list.iter().filter_map(|r| live_link(src, r)).collect())
        }
        other => other.clone(),
    }
}

/// One link under the link rule: `None` when dropped, else the link with its live name.
pub fn live_link(src: &dyn EntitySource, r: &EntityRef) -> Option<EntityRef> {
    live_link_name(src, r).map(|name| EntityRef {
        entity_type: r.entity_type.clone(),
        id: r.id,
        name: name.map(str::to_owned),
    })
}

/// One sort key value. Variants are ordered Null < everything else, so nulls sort first on asc and
/// last on desc.
#[derive(Debug, Clone, PartialEq)]
enum SortKey {
    Null,
    Bool(bool),
    Num(Value),
    Text(String),
    Date(i64),
    DateTime(i64),
    Link(Option<String>, String, i64),
}

impl SortKey {
    fn rank(&self) -> u8 {
        match self {
            SortKey::Null => 0,
            SortKey::Bool(_) => 1,
            SortKey::Num(_) => 2,
            SortKey::Text(_) => 3,
            SortKey::Date(_) => 4,
            SortKey::DateTime(_) => 5,
            SortKey::Link(..) => 6,
        }
    }
}

impl Eq for SortKey {}

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SortKey {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (SortKey::Bool(a), SortKey::Bool(b)) => a.cmp(b),
            (SortKey::Num(a), SortKey::Num(b)) => cmp_values(a, b).unwrap_or(Ordering::Equal),
            (SortKey::Text(a), SortKey::Text(b)) => a.cmp(b),
            (SortKey::Date(a), SortKey::Date(b)) | (SortKey::DateTime(a), SortKey::DateTime(b)) => {
                a.cmp(b)
            }
            (SortKey::Link(na, ta, ia), SortKey::Link(nb, tb, ib)) => {
                na.cmp(nb).then_with(|| ta.cmp(tb)).then_with(|| ia.cmp(ib))
            }
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

fn sort_key(src: &dyn EntitySource, e: &Entity, path: &FieldPath) -> SortKey {
    let v = match single_leaf(src, e, path) {
        None => return SortKey::Null,
        Some(LeafRef::Id(id)) => return SortKey::Num(Value::Int(id)),
        Some(LeafRef::Value(v)) => v,
    };
    match v {
        Value::Null if path.leaf_type == DataType::Checkbox => SortKey::Bool(false),
        Value::Null => SortKey::Null,
        Value::Bool(b) => SortKey::Bool(*b),
        Value::Int(_) | Value::Float(_) => SortKey::Num(v.clone()),
        Value::Text(s) if s.is_empty() => SortKey::Null,
        Value::Text(s) => SortKey::Text(s.to_lowercase()),
        Value::Date(d) => SortKey::Date(d.days_since_epoch()),
        Value::DateTime(t) => SortKey::DateTime(t.0),
        Value::Entity(r) => match live_link_name(src, r) {
            None => SortKey::Null,
            Some(name) => SortKey::Link(name.map(str::to_lowercase), r.entity_type.clone(), r.id),
        },
        Value::MultiEntity(_) | Value::Json(_) => SortKey::Null,
    }
}

/// A simple in-memory entity collection: used by tests, the simulator and Watch filters.
///
/// Every type that has had an entity inserted (or was declared with [`MemorySource::declare_type`])
/// counts as cached for the link rule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemorySource {
    entities: BTreeMap<String, BTreeMap<i64, Entity>>,
    cached_types: BTreeSet<String>,
}

impl MemorySource {
    pub fn new() -> Self {
        MemorySource::default()
    }

    /// Marks a type as cached even while it has no entities.
    pub fn declare_type(&mut self, entity_type: impl Into<String>) {
        self.cached_types.insert(entity_type.into());
    }

    /// Inserts or replaces an entity (keyed by type and id); its type becomes cached.
    pub fn insert(&mut self, entity: Entity) -> Option<Entity> {
        if !self.cached_types.contains(&entity.entity_type) {
            self.cached_types.insert(entity.entity_type.clone());
        }
        self.entities
            .entry(entity.entity_type.clone())
            .or_default()
            .insert(entity.id, entity)
    }

    pub fn get(&self, entity_type: &str, id: i64) -> Option<&Entity> {
        self.entities.get(entity_type).and_then(|m| m.get(&id))
    }

    pub fn get_mut(&mut self, entity_type: &str, id: i64) -> Option<&mut Entity> {
        self.entities
            .get_mut(entity_type)
            .and_then(|m| m.get_mut(&id))
    }

    pub fn remove(&mut self, entity_type: &str, id: i64) -> Option<Entity> {
        self.entities
            .get_mut(entity_type)
            .and_then(|m| m.remove(&id))
    }

    /// Every entity, ordered by type then id.
    pub fn iter(&self) -> impl Iterator<Item = &Entity> {
        self.entities.values().flat_map(|m| m.values())
    }

    /// Entities of one type, ordered by id.
    pub fn iter_type<'a>(&'a self, entity_type: &str) -> impl Iterator<Item = &'a Entity> + 'a {
        self.entities
            .get(entity_type)
            .into_iter()
            .flat_map(|m| m.values())
    }

    pub fn len(&self) -> usize {
        self.entities.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The types counted as cached.
    pub fn cached_types(&self) -> &BTreeSet<String> {
        &self.cached_types
    }
}

impl EntitySource for MemorySource {
    fn entity(&self, entity_type: &str, id: i64) -> Option<&Entity> {
        self.get(entity_type, id)
    }

    fn is_cached_type(&self, entity_type: &str) -> bool {
        self.cached_types.contains(entity_type)
    }
}

impl EntityCollection for MemorySource {
    fn all_of_type(&self, entity_type: &str) -> Vec<&Entity> {
        self.iter_type(entity_type).collect()
    }
}
