//! Typed values for every Shotgun data type (protocol §4), and their JSON forms.
//!
//! A [`Value`] is the *representation* family; the field's [`DataType`] (from the schema) says which
//! Shotgun type it is. The mapping is fixed here and nowhere else:
//!
//! | data type | `Value` variant |
//! |---|---|
//! | text, status_list, list, entity_type, color, uuid, footage, system_task_type | `Text` |
//! | number, percent, duration, timecode | `Int` |
//! | float, currency | `Float` |
//! | checkbox | `Bool` (never `Null`) |
//! | date | `Date` |
//! | date_time | `DateTime` |
//! | entity | `Entity` |
//! | multi_entity | `MultiEntity` (ordered; never `Null`, empty is `[]`) |
//! | image | `Int` (the attachment id; never a signed URL) |
//! | url, serializable, jsonb, tag_list, addressing | `Json` |
//!
//! Every variant may also be `Null` except checkbox and multi_entity.
//! Dates serialise as `YYYY-MM-DD`, datetimes as `YYYY-MM-DDTHH:MM:SSZ` (UTC, second precision), exactly as Shotgun does.

use std::fmt;

use serde_json::Value as Json;

use super::schema::DataType;

/// A link to another entity: `{type, id, name}`.
///
/// `name` is the target's display name *as last seen*; readers overlay the live name from the
/// cached target where the target type is cached (protocol §3.8).
#[derive(Debug, Clone, PartialEq)]
pub struct EntityRef {
    pub entity_type: String,
    pub id: i64,
    pub name: Option<String>,
}

impl EntityRef {
    pub fn new(entity_type: impl Into<String>, id: i64) -> Self {
        EntityRef {
            entity_type: entity_type.into(),
            id,
            name: None,
        }
    }

    /// Same target (type and id); names are not compared.
    pub fn same_target(&self, other: &EntityRef) -> bool {
        self.id == other.id && self.entity_type == other.entity_type
    }

    /// Parses `{"type": "...", "id": N, "name": "..."}`; extra keys (`valid`, `status`, `uuid`) are ignored.
    pub fn from_json(v: &Json) -> Result<EntityRef, ValueError> {
        let obj = v
            .as_object()
            .ok_or_else(|| ValueError::new("an entity link {type, id}", v))?;
        let entity_type = obj
            .get("type")
            .and_then(Json::as_str)
            .ok_or_else(|| ValueError::new("an entity link with a string 'type'", v))?;
        let id = obj
            .get("id")
            .and_then(json_as_i64)
            .ok_or_else(|| ValueError::new("an entity link with an integer 'id'", v))?;
        let name = obj.get("name").and_then(Json::as_str).map(str::to_owned);
        Ok(EntityRef {
            entity_type: entity_type.to_owned(),
            id,
            name,
        })
    }

    /// `{"type", "id", "name"}` as the api3 server shapes links (`name` is null when unknown).
    pub fn to_json(&self) -> Json {
        serde_json::json!({"type": self.entity_type, "id": self.id, "name": self.name})
    }
}

/// A calendar date (UTC), serialised `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(pub time::Date);

/// An instant at second precision, UTC, serialised `YYYY-MM-DDTHH:MM:SSZ`. Stored as Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime(pub i64);

const DATE_FMT: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");
const DATETIME_FMT: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

impl Date {
    /// Parses the only form Shotgun accepts for date fields: `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Option<Date> {
        if s.len() != 10 {
            return None;
        }
        time::Date::parse(s, DATE_FMT).ok().map(Date)
    }

    /// Days since 1970-01-01 (negative before).
    pub fn days_since_epoch(self) -> i64 {
        i64::from(self.0.to_julian_day())
            - i64::from(time::macros::date!(1970 - 01 - 01).to_julian_day())
    }

    pub fn from_days_since_epoch(days: i64) -> Option<Date> {
        let jd = days + i64::from(time::macros::date!(1970 - 01 - 01).to_julian_day());
        time::Date::from_julian_day(i32::try_from(jd).ok()?)
            .ok()
            .map(Date)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.format(DATE_FMT) {
            Ok(s) => f.write_str(&s),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl DateTime {
    pub fn now() -> DateTime {
        DateTime(time::OffsetDateTime::now_utc().unix_timestamp())
    }

    /// Parses what Shotgun accepts for date_time values (protocol §3.2, §2.5):
    /// ISO with `Z`, with a numeric offset (normalised to UTC), zoneless (taken as UTC),
    /// date-only (midnight UTC), and the event-log meta form `YYYY-MM-DD HH:MM:SS UTC`.
    /// Fractional seconds are truncated.
    pub fn parse(s: &str) -> Option<DateTime> {
        let s = s.trim();
        if let Some(d) = Date::parse(s) {
            return Some(DateTime(d.0.midnight().assume_utc().unix_timestamp()));
        }
        let s = s.strip_suffix(" UTC").unwrap_or(s);
        if let Ok(t) =
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        {
            return Some(DateTime(t.unix_timestamp()));
        }
        // Zoneless: `YYYY-MM-DDTHH:MM:SS` or with a space, optional fraction.
        let s = s.replacen(' ', "T", 1);
        let main = s.split('.').next().unwrap_or(&s);
        let fmt =
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
        time::PrimitiveDateTime::parse(main, fmt)
            .ok()
            .map(|t| DateTime(t.assume_utc().unix_timestamp()))
    }

    pub fn to_offset(self) -> Option<time::OffsetDateTime> {
        time::OffsetDateTime::from_unix_timestamp(self.0).ok()
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.to_offset().ok_or(fmt::Error)?;
        match t.format(DATETIME_FMT) {
            Ok(s) => f.write_str(&s),
            Err(_) => Err(fmt::Error),
        }
    }
}

/// One field value. See the module docs for which data types use which variant.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Date(Date),
    DateTime(DateTime),
    Entity(EntityRef),
    MultiEntity(Vec<EntityRef>),
    Json(Json),
}

/// A value that does not fit its field's data type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("expected {expected}, got {got}")]
pub struct ValueError {
    pub expected: String,
    pub got: String,
}

impl ValueError {
    pub fn new(expected: impl Into<String>, got: &Json) -> Self {
        let mut got = got.to_string();
        if got.len() > 120 {
            got.truncate(117);
            got.push_str("...");
        }
        ValueError {
            expected: expected.into(),
            got,
        }
    }
}

fn json_as_i64(v: &Json) -> Option<i64> {
    match v {
        Json::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        _ => None,
    }
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value of a field that has never been set: `false` for checkbox, `[]` for multi_entity, else null.
    pub fn empty_for(data_type: DataType) -> Value {
        match data_type {
            DataType::Checkbox => Value::Bool(false),
            DataType::MultiEntity => Value::MultiEntity(Vec::new()),
            _ => Value::Null,
        }
    }

    /// Converts an api3/REST JSON value (as the site returns it, or as an event's `new_value`) into
    /// a typed value for a field of `data_type`.
    ///
    /// Accepts the REST quirks: floats as strings, links wrapped as `{"data": ...}` are *not*
    /// unwrapped here (the REST record parser does that). Text `""` becomes `Null` (Shotgun stores
    /// empty text as null). Image accepts an attachment id, or `{"id": N}`, or a URL string (kept as null id
    /// is impossible, so a string becomes `Json`).
    pub fn from_json(data_type: DataType, v: &Json) -> Result<Value, ValueError> {
        use DataType as D;
        if v.is_null() {
            return Ok(Value::empty_for(data_type));
        }
        Ok(match data_type {
            D::Text
            | D::StatusList
            | D::List
            | D::EntityType
            | D::Color
            | D::Uuid
            | D::Footage
            | D::SystemTaskType => match v {
                Json::String(s) if s.trim().is_empty() && data_type == D::Text => Value::Null,
                Json::String(s) => Value::Text(s.clone()),
                _ => {
                    return Err(ValueError::new(
                        format!("a string for a {} field", data_type.as_str()),
                        v,
                    ));
                }
            },
            D::Number | D::Percent | D::Duration | D::Timecode => match v {
                Json::Number(_) => {
                    Value::Int(json_as_i64(v).ok_or_else(|| ValueError::new("an integer", v))?)
                }
                Json::String(s) => Value::Int(
                    s.trim()
                        .parse()
                        .map_err(|_| ValueError::new("an integer", v))?,
                ),
                _ => return Err(ValueError::new("an integer", v)),
            },
            D::Float | D::Currency => match v {
                Json::Number(n) => {
                    Value::Float(n.as_f64().ok_or_else(|| ValueError::new("a number", v))?)
                }
                Json::String(s) => Value::Float(
                    s.trim()
                        .parse()
                        .map_err(|_| ValueError::new("a number", v))?,
                ),
                _ => return Err(ValueError::new("a number", v)),
            },
            D::Checkbox => match v {
                Json::Bool(b) => Value::Bool(*b),
                Json::String(s) if s == "true" => Value::Bool(true),
                Json::String(s) if s == "false" => Value::Bool(false),
                _ => return Err(ValueError::new("true or false", v)),
            },
            D::Date => match v {
                Json::String(s) => Value::Date(
                    Date::parse(s).ok_or_else(|| ValueError::new("a date YYYY-MM-DD", v))?,
                ),
                _ => return Err(ValueError::new("a date YYYY-MM-DD", v)),
            },
            D::DateTime => match v {
                Json::String(s) => Value::DateTime(
                    DateTime::parse(s)
                        .ok_or_else(|| ValueError::new("a datetime YYYY-MM-DDTHH:MM:SSZ", v))?,
                ),
                _ => return Err(ValueError::new("a datetime YYYY-MM-DDTHH:MM:SSZ", v)),
            },
            D::Entity => Value::Entity(EntityRef::from_json(v)?),
            D::MultiEntity => match v {
                Json::Array(items) => Value::MultiEntity(
                    items
                        .iter()
                        .map(EntityRef::from_json)
                        .collect::<Result<_, _>>()?,
                ),
                _ => return Err(ValueError::new("a list of entity links", v)),
            },
            D::Image => match v {
                Json::Number(_) => Value::Int(
                    json_as_i64(v).ok_or_else(|| ValueError::new("an attachment id", v))?,
                ),
                Json::Object(o) => match o.get("id").and_then(json_as_i64) {
                    Some(id) => Value::Int(id),
                    None => Value::Json(v.clone()),
                },
                _ => Value::Json(v.clone()),
            },
            D::Url | D::Serializable | D::Jsonb | D::TagList | D::Addressing => {
                Value::Json(v.clone())
            }
            D::Calculated | D::Summary | D::PivotColumn | D::Password | D::Unknown => {
                Value::Json(v.clone())
            }
        })
    }

    /// The api3 JSON form (what `shotgun_api3` receives): floats as numbers, dates and datetimes as
    /// Shotgun's strings, links as `{type, id, name}`.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(Json::Number)
                .unwrap_or(Json::Null),
            Value::Text(s) => Json::String(s.clone()),
            Value::Date(d) => Json::String(d.to_string()),
            Value::DateTime(t) => Json::String(t.to_string()),
            Value::Entity(r) => r.to_json(),
            Value::MultiEntity(v) => Json::Array(v.iter().map(EntityRef::to_json).collect()),
            Value::Json(j) => j.clone(),
        }
    }
}

/// The JSON form of [`EntityRef::to_json`], written straight to a serializer (no `Json` tree).
impl serde::Serialize for EntityRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("type", &self.entity_type)?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("name", &self.name)?;
        m.end()
    }
}

/// The JSON form of [`Value::to_json`], written straight to a serializer: the journal writes one
/// entity snapshot per change, and building the `Json` tree of every field first was most of the
/// snapshot's cost.
impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            // As `to_json`: a NaN or an infinity has no JSON number, and becomes null.
            Value::Float(f) if f.is_finite() => s.serialize_f64(*f),
            Value::Float(_) => s.serialize_unit(),
            Value::Text(t) => s.serialize_str(t),
            Value::Date(d) => s.collect_str(d),
            Value::DateTime(t) => s.collect_str(t),
            Value::Entity(r) => r.serialize(s),
            Value::MultiEntity(v) => s.collect_seq(v),
            Value::Json(j) => j.serialize(s),
        }
    }
}

#[cfg(test)]
mod serialize_tests {
    use super::*;

    #[test]
    fn serialize_writes_exactly_what_to_json_builds() {
        let link = EntityRef {
            entity_type: "Shot".into(),
            id: 7,
            name: Some("sh \"7\"".into()),
        };
        let unnamed = EntityRef::new("Asset", 9);
        let values = [
            Value::Null,
            Value::Bool(true),
            Value::Int(-42),
            Value::Float(2.5),
            Value::Float(f64::NAN),
            Value::Float(f64::INFINITY),
            Value::Text("caf\u{e9}\n\"q\"".into()),
            Value::Date(Date::parse("2024-02-29").expect("date")),
            Value::DateTime(DateTime(1_700_000_000)),
            Value::Entity(link.clone()),
            Value::MultiEntity(vec![link, unnamed]),
            Value::MultiEntity(Vec::new()),
            Value::Json(serde_json::json!({"k": [1, "x", null]})),
        ];
        for v in values {
            assert_eq!(
                serde_json::to_string(&v).expect("serialize"),
                v.to_json().to_string(),
                "{v:?}"
            );
        }
    }
}
