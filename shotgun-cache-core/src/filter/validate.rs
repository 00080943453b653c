//! Validation of a [`RawFilter`] against the site schema, producing a typed [`Filter`].

use crate::model::SiteSchema;

use super::ast::{FieldPath, Filter, RawFilter};

/// Why a filter (or a field path) was rejected. Every message names the field, operator or value at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    #[error("malformed filter: {0}")]
    Malformed(String),
}

/// Resolves a (possibly dotted) field path on `entity_type`.
pub fn validate_path(schema: &SiteSchema, entity_type: &str, path: &str) -> Result<FieldPath, FilterError> {
    let _ = (schema, entity_type, path);
    todo!("filter helper: validate_path")
}

/// Validates a raw filter for `entity_type`.
pub fn validate(schema: &SiteSchema, entity_type: &str, raw: &RawFilter) -> Result<Filter, FilterError> {
    let _ = (schema, entity_type, raw);
    todo!("filter helper: validate")
}
