//! Parsers for every wire form of a filter into one [`RawFilter`] tree.
//!
//! - REST array filters: `[["f", "op", v], ...]` (implicit and).
//! - REST hash filters: `{"logical_operator": "and"|"or", "conditions": [triple | group, ...]}`, nested.
//! - api3 wire conditions: `{"path", "relation", "values"}` inside `{"logical_operator", "conditions"}`.
//! - the shotgun_api3 Python form: a list of `[path, relation, *values]` with nested
//!   `{"filter_operator": "any"|"all", "filters": [...]}` groups.

use serde_json::Value as Json;

use super::ast::RawFilter;
use super::validate::FilterError;

/// Parses any of the four wire forms (detected from the shape).
pub fn parse_any(v: &Json) -> Result<RawFilter, FilterError> {
    let _ = v;
    todo!("filter helper: parse_any")
}
