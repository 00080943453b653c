//! What to cache: each `[types.X]` table resolved against the site schema into a [`TypePlan`]
//! (cached fields, store layout, cache filter, config hash). This is where the config is checked
//! against the schema: unknown types and fields are named, uncacheable fields are refused with the
//! reason from `FieldSchema::cacheability`.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use shotgun_cache_core::config::{Config, FieldSelection, toml_to_json};
use shotgun_cache_core::filter::{self, Filter};
use shotgun_cache_core::model::{Cacheability, SiteSchema};
use shotgun_cache_core::store::TypeLayout;

/// A `[types.X]` table that does not fit the site schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "config key `types.{entity_type}`: entity type '{entity_type}' does not exist on the site{hint}"
    )]
    UnknownType { entity_type: String, hint: String },
    #[error(
        "config key `types.{entity_type}.{key}`: field '{field}' does not exist on {entity_type}"
    )]
    UnknownField {
        entity_type: String,
        key: &'static str,
        field: String,
    },
    #[error(
        "config key `types.{entity_type}.fields`: field {entity_type}.{field} cannot be cached: {reason}"
    )]
    NotCacheable {
        entity_type: String,
        field: String,
        reason: &'static str,
    },
    #[error(
        "config key `types.{entity_type}.filterable`: field '{field}' is not in the cached fields of {entity_type}"
    )]
    FilterableNotCached { entity_type: String, field: String },
    #[error("config key `types.{entity_type}.filter`: {reason}")]
    BadFilter { entity_type: String, reason: String },
    #[error("config key `types`: {entity_type} cannot be cached (the syncer reads it itself)")]
    Reserved { entity_type: String },
}

/// One cached type, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct TypePlan {
    pub entity_type: String,
    /// The cached fields (never `id`), sorted, the display field included.
    pub fields: Vec<String>,
    pub layout: TypeLayout,
    /// The cache filter as the site takes it (REST array or hash form), if any.
    pub site_filter: Option<Json>,
    /// The validated cache filter, for local evaluation.
    pub filter: Option<Filter>,
    /// First-hop fields the filter reads: a change to one of them can move an entity in or out.
    pub filter_fields: Vec<String>,
    /// A hash of the fields (with their data types) and the filter: a change triggers a re-import.
    pub config_hash: String,
}

impl TypePlan {
    pub fn caches(&self, field: &str) -> bool {
        self.fields
            .binary_search_by(|f| f.as_str().cmp(field))
            .is_ok()
    }
}

/// Resolves every `[types.X]` table of the config against the schema.
pub fn resolve(
    config: &Config,
    schema: &SiteSchema,
) -> Result<BTreeMap<String, TypePlan>, PlanError> {
    let mut out = BTreeMap::new();
    for (name, tc) in &config.types {
        if name == "EventLogEntry" {
            return Err(PlanError::Reserved {
                entity_type: name.clone(),
            });
        }
        let Some(ty) = schema.entity(name) else {
            let hint = schema
                .types
                .keys()
                .find(|t| t.eq_ignore_ascii_case(name))
                .map(|t| format!(" (did you mean '{t}'?)"))
                .unwrap_or_default();
            return Err(PlanError::UnknownType {
                entity_type: name.clone(),
                hint,
            });
        };
        let mut fields: Vec<String> = match &tc.fields {
            FieldSelection::All(_) => ty
                .fields
                .values()
                .filter(|f| f.name != "id" && f.cacheability() == Cacheability::Cacheable)
                .map(|f| f.name.clone())
                .collect(),
            FieldSelection::List(list) => {
                let mut v = Vec::new();
                for f in list {
                    if f == "id" {
                        continue;
                    }
                    let Some(fs) = ty.field(f) else {
                        return Err(PlanError::UnknownField {
                            entity_type: name.clone(),
                            key: "fields",
                            field: f.clone(),
                        });
                    };
                    if let Cacheability::NotCacheable(reason) = fs.cacheability() {
                        return Err(PlanError::NotCacheable {
                            entity_type: name.clone(),
                            field: f.clone(),
                            reason,
                        });
                    }
                    v.push(f.clone());
                }
                v
            }
        };
        if let Some(df) = ty.display_field()
            && ty
                .field(df)
                .is_some_and(|f| f.cacheability() == Cacheability::Cacheable)
            && !fields.iter().any(|f| f == df)
        {
            fields.push(df.to_owned());
        }
        fields.sort();
        fields.dedup();
        for f in &tc.filterable {
            if ty.field(f).is_none() {
                return Err(PlanError::UnknownField {
                    entity_type: name.clone(),
                    key: "filterable",
                    field: f.clone(),
                });
            }
            if !fields.contains(f) {
                return Err(PlanError::FilterableNotCached {
                    entity_type: name.clone(),
                    field: f.clone(),
                });
            }
        }
        let (site_filter, filter, filter_fields) = match &tc.filter {
            None => (None, None, Vec::new()),
            Some(v) => {
                let json = toml_to_json(v);
                let raw = filter::parse::parse_any(&json).map_err(|e| PlanError::BadFilter {
                    entity_type: name.clone(),
                    reason: e.to_string(),
                })?;
                let validated =
                    filter::validate(schema, name, &raw).map_err(|e| PlanError::BadFilter {
                        entity_type: name.clone(),
                        reason: e.to_string(),
                    })?;
                let mut ff = Vec::new();
                collect_first_hops(&validated, &mut ff);
                ff.sort();
                ff.dedup();
                (Some(json), Some(validated), ff)
            }
        };
        let layout = TypeLayout {
            entity_type: name.clone(),
            fields: fields.iter().filter_map(|f| ty.field(f).cloned()).collect(),
            indexed: tc.filterable.clone(),
        };
        let mut hash_input = String::new();
        for f in &layout.fields {
            hash_input.push_str(&f.name);
            hash_input.push(':');
            hash_input.push_str(f.data_type.as_str());
            hash_input.push(';');
        }
        hash_input.push('|');
        if let Some(j) = &site_filter {
            hash_input.push_str(&j.to_string());
        }
        let config_hash = fnv_hex(&hash_input);
        out.insert(
            name.clone(),
            TypePlan {
                entity_type: name.clone(),
                fields,
                layout,
                site_filter,
                filter,
                filter_fields,
                config_hash,
            },
        );
    }
    Ok(out)
}

fn collect_first_hops(f: &Filter, out: &mut Vec<String>) {
    match f {
        Filter::Condition(c) => out.push(
            c.path
                .hops
                .first()
                .map(|h| h.field.clone())
                .unwrap_or_else(|| c.path.leaf.clone()),
        ),
        Filter::Group { children, .. } => children.iter().for_each(|c| collect_first_hops(c, out)),
    }
}

/// A stable 64-bit FNV-1a hash in hex (stable across builds, unlike `DefaultHasher`).
pub fn fnv_hex(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
