//! The site schema: entity types, their fields and data types, loaded from a `schema_read` answer
//! (the shape of `shared/data/shotgun-schema/schema.json`: every property wrapped in `{value, editable}`).
//!
//! The raw JSON of every field is kept, so `schema_read`/`GetSchema` answers are the site's own.

use std::collections::BTreeMap;

use serde_json::Value as Json;

/// Shotgun data types (protocol §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataType {
    Text,
    Number,
    Float,
    Percent,
    Duration,
    Timecode,
    Currency,
    Checkbox,
    Date,
    DateTime,
    Entity,
    MultiEntity,
    StatusList,
    List,
    EntityType,
    Color,
    Uuid,
    Url,
    Image,
    TagList,
    Serializable,
    Jsonb,
    Footage,
    Addressing,
    SystemTaskType,
    Calculated,
    Summary,
    PivotColumn,
    Password,
    /// A data type this build does not know; never cached, never filterable.
    Unknown,
}

impl DataType {
    pub fn parse(s: &str) -> DataType {
        use DataType::*;
        match s {
            "text" => Text,
            "number" => Number,
            "float" => Float,
            "percent" => Percent,
            "duration" => Duration,
            "timecode" => Timecode,
            "currency" => Currency,
            "checkbox" => Checkbox,
            "date" => Date,
            "date_time" => DateTime,
            "entity" => Entity,
            "multi_entity" => MultiEntity,
            "status_list" => StatusList,
            "list" => List,
            "entity_type" => EntityType,
            "color" => Color,
            "uuid" => Uuid,
            "url" => Url,
            "image" => Image,
            "tag_list" => TagList,
            "serializable" => Serializable,
            "jsonb" => Jsonb,
            "footage" => Footage,
            "addressing" => Addressing,
            "system_task_type" => SystemTaskType,
            "calculated" => Calculated,
            "summary" => Summary,
            "pivot_column" => PivotColumn,
            "password" => Password,
            _ => Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        use DataType::*;
        match self {
            Text => "text",
            Number => "number",
            Float => "float",
            Percent => "percent",
            Duration => "duration",
            Timecode => "timecode",
            Currency => "currency",
            Checkbox => "checkbox",
            Date => "date",
            DateTime => "date_time",
            Entity => "entity",
            MultiEntity => "multi_entity",
            StatusList => "status_list",
            List => "list",
            EntityType => "entity_type",
            Color => "color",
            Uuid => "uuid",
            Url => "url",
            Image => "image",
            TagList => "tag_list",
            Serializable => "serializable",
            Jsonb => "jsonb",
            Footage => "footage",
            Addressing => "addressing",
            SystemTaskType => "system_task_type",
            Calculated => "calculated",
            Summary => "summary",
            PivotColumn => "pivot_column",
            Password => "password",
            Unknown => "unknown",
        }
    }

    /// Whether values of this type are links (entity or multi_entity).
    pub fn is_link(self) -> bool {
        matches!(self, DataType::Entity | DataType::MultiEntity)
    }
}

/// Whether a field can be kept in the cache, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cacheability {
    Cacheable,
    /// The reason, phrased to follow "field X cannot be cached: ".
    NotCacheable(&'static str),
}

/// One field of one entity type.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSchema {
    pub entity_type: String,
    pub name: String,
    pub display_name: String,
    pub data_type: DataType,
    /// For entity, multi_entity and tag_list fields: the types a link may point at.
    pub valid_types: Vec<String>,
    /// For list and status_list fields.
    pub valid_values: Vec<String>,
    pub default_value: Json,
    pub editable: bool,
    /// The site's own JSON for this field (`{data_type: {value, editable}, ...}`), served verbatim.
    pub raw: Json,
}

impl FieldSchema {
    /// Fields the event log does not carry cannot be kept up to date, so they cannot be cached.
    pub fn cacheability(&self) -> Cacheability {
        match self.data_type {
            DataType::Summary => Cacheability::NotCacheable(
                "summary fields are computed per read and not in the event log",
            ),
            DataType::Calculated => {
                Cacheability::NotCacheable("calculated fields are not in the event log")
            }
            DataType::PivotColumn => {
                Cacheability::NotCacheable("pivot_column fields always read null over the API")
            }
            DataType::Password => Cacheability::NotCacheable("password fields are never readable"),
            DataType::Unknown => {
                Cacheability::NotCacheable("its data type is unknown to this version")
            }
            _ => Cacheability::Cacheable,
        }
    }

    /// Parses one field from the `schema_read` shape.
    pub fn from_json(entity_type: &str, name: &str, raw: &Json) -> FieldSchema {
        let get = |k: &str| raw.get(k).and_then(|v| v.get("value"));
        let prop = |k: &str| {
            raw.get("properties")
                .and_then(|p| p.get(k))
                .and_then(|v| v.get("value"))
        };
        let strings = |v: Option<&Json>| -> Vec<String> {
            v.and_then(Json::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        FieldSchema {
            entity_type: entity_type.to_owned(),
            name: name.to_owned(),
            display_name: get("name")
                .and_then(Json::as_str)
                .unwrap_or(name)
                .to_owned(),
            data_type: DataType::parse(get("data_type").and_then(Json::as_str).unwrap_or("")),
            valid_types: strings(prop("valid_types")),
            valid_values: strings(prop("valid_values")),
            default_value: prop("default_value").cloned().unwrap_or(Json::Null),
            editable: get("editable").and_then(Json::as_bool).unwrap_or(false),
            raw: raw.clone(),
        }
    }
}

/// One entity type and its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct EntitySchema {
    pub name: String,
    pub display_name: String,
    pub fields: BTreeMap<String, FieldSchema>,
    /// The `schema_entity_read` JSON for this type (`{name: {value, editable}, visible: ...}`).
    pub raw: Json,
}

impl EntitySchema {
    pub fn field(&self, name: &str) -> Option<&FieldSchema> {
        self.fields.get(name)
    }

    /// The field whose value is this type's display name (`cached_display_name`, the `name` in links):
    /// `content` for Task, `subject` for Note, `name` for Project and HumanUser, else `code`, else `name`,
    /// else `title` (protocol §2.6, §3.8). `None` when the type has none of them.
    pub fn display_field(&self) -> Option<&str> {
        let preferred: &[&str] = match self.name.as_str() {
            "Task" => &["content"],
            "Note" => &["subject"],
            "Project" | "HumanUser" | "ApiUser" | "Group" => &["name", "firstname"],
            _ => &[],
        };
        preferred
            .iter()
            .chain(["code", "name", "title", "content"].iter())
            .find(|f| self.fields.contains_key(**f))
            .copied()
    }
}

/// All entity types of a site.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SiteSchema {
    pub types: BTreeMap<String, EntitySchema>,
}

/// A schema document that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("schema must be an object keyed by entity type, got {0}")]
    Shape(String),
}

impl SiteSchema {
    /// Builds the schema from a `schema_read` answer and (optionally) a `schema_entity_read` answer.
    pub fn from_json(
        schema_read: &Json,
        schema_entity_read: Option<&Json>,
    ) -> Result<SiteSchema, SchemaError> {
        let types = schema_read
            .as_object()
            .ok_or_else(|| SchemaError::Shape("a non-object".into()))?;
        let mut out = SiteSchema::default();
        for (type_name, fields) in types {
            let fields_obj = fields
                .as_object()
                .ok_or_else(|| SchemaError::Shape(format!("a non-object for type {type_name}")))?;
            let fields = fields_obj
                .iter()
                .map(|(f, raw)| (f.clone(), FieldSchema::from_json(type_name, f, raw)))
                .collect();
            let raw = schema_entity_read
                .and_then(|e| e.get(type_name))
                .cloned()
                .unwrap_or_else(|| serde_json::json!({"name": {"value": type_name, "editable": false}, "visible": {"value": true, "editable": false}}));
            let display_name = raw
                .get("name")
                .and_then(|n| n.get("value"))
                .and_then(Json::as_str)
                .unwrap_or(type_name)
                .to_owned();
            out.types.insert(
                type_name.clone(),
                EntitySchema {
                    name: type_name.clone(),
                    display_name,
                    fields,
                    raw,
                },
            );
        }
        Ok(out)
    }

    pub fn entity(&self, entity_type: &str) -> Option<&EntitySchema> {
        self.types.get(entity_type)
    }

    pub fn field(&self, entity_type: &str, field: &str) -> Option<&FieldSchema> {
        self.types
            .get(entity_type)
            .and_then(|t| t.fields.get(field))
    }

    /// The `schema_read` JSON for the given types (all when `None`).
    pub fn to_schema_read_json(&self, only: Option<&[String]>) -> Json {
        let mut m = serde_json::Map::new();
        for (name, t) in &self.types {
            if only.is_some_and(|o| !o.iter().any(|x| x == name)) {
                continue;
            }
            let fields: serde_json::Map<String, Json> = t
                .fields
                .iter()
                .map(|(f, s)| (f.clone(), s.raw.clone()))
                .collect();
            m.insert(name.clone(), Json::Object(fields));
        }
        Json::Object(m)
    }
}
