//! The reference evaluator: a pure, in-memory definition of Shotgun's filter semantics.

use crate::model::{DateTime, Entity};

use super::ast::Filter;

/// Access to cached entities, for deep links and live link names.
///
/// Link rule (protocol §3.8), applied everywhere a link is read or matched: if the link's target type
/// is cached (`is_cached_type`) and the target is cached *and retired*, the link is treated as absent
/// (a single link reads null; the element is dropped from a multi_entity list). If the target is cached
/// and live, its `display_name` is the link's name. Otherwise the link is kept with its stored name.
pub trait EntitySource {
    /// The cached entity (retired or not), or `None`.
    fn entity(&self, entity_type: &str, id: i64) -> Option<&Entity>;
    /// Whether `entity_type` is cached at all.
    fn is_cached_type(&self, entity_type: &str) -> bool;
}

/// Whether `entity` matches `filter`. `now` anchors `in_last`/`in_next`/`in_calendar_*`.
pub fn matches(filter: &Filter, entity: &Entity, src: &dyn EntitySource, now: DateTime) -> bool {
    let _ = (filter, entity, src, now);
    todo!("filter helper: matches")
}
