//! Loading the site schema: the real site schema embedded from `data/schema.json` (a copy of
//! `shared/data/shotgun-schema/schema.json`, with `schema_entity.json`), or a file, optionally cut
//! down to a subset of entity types.

use serde_json::Value as Json;
use shotgun_cache_core::model::SiteSchema;

use crate::config::SchemaSource;

const EMBEDDED_SCHEMA: &str = include_str!("../data/schema.json");
const EMBEDDED_SCHEMA_ENTITY: &str = include_str!("../data/schema_entity.json");

/// Types every simulated site keeps, whatever subset is asked for: the event log and its users.
pub const ALWAYS_KEPT: &[&str] = &["EventLogEntry", "ApiUser", "HumanUser"];

/// Why the schema could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SchemaLoadError {
    #[error("reading schema file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing schema JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("schema shape: {0}")]
    Shape(String),
    #[error("entity type {0} is not in the schema")]
    UnknownType(String),
}

fn read(path: &std::path::Path) -> Result<Json, SchemaLoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| SchemaLoadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(serde_json::from_str(&text)?)
}

/// Loads the schema and keeps only `types` (plus [`ALWAYS_KEPT`]) when given.
pub fn load(
    source: &SchemaSource,
    types: Option<&[String]>,
) -> Result<SiteSchema, SchemaLoadError> {
    let (schema, entity) = match source {
        SchemaSource::Embedded => (
            serde_json::from_str::<Json>(EMBEDDED_SCHEMA)?,
            Some(serde_json::from_str::<Json>(EMBEDDED_SCHEMA_ENTITY)?),
        ),
        SchemaSource::File {
            schema,
            schema_entity,
        } => (
            read(schema)?,
            schema_entity.as_deref().map(read).transpose()?,
        ),
    };
    let mut s = SiteSchema::from_json(&schema, entity.as_ref())
        .map_err(|e| SchemaLoadError::Shape(e.to_string()))?;
    if let Some(keep) = types {
        for t in keep {
            if !s.types.contains_key(t) {
                return Err(SchemaLoadError::UnknownType(t.clone()));
            }
        }
        s.types.retain(|name, _| {
            keep.iter().any(|k| k == name) || ALWAYS_KEPT.contains(&name.as_str())
        });
    }
    Ok(s)
}
