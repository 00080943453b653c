//! Validation of a [`RawFilter`] against the site schema, producing a typed [`Filter`].
//!
//! Validation resolves every path (deep links included), checks the relation against the leaf's
//! data type (protocol §3.1), checks the value shape (§3.2) and converts the values into typed
//! operands. Case-insensitive operands are folded here ([`eval::fold`](super::eval::fold)), once, so
//! the evaluator can compare without allocating (see [`Operand`]).
//!
//! Error messages follow Shotgun's wording where it is known (protocol §1.4, §3): they always name
//! the `Type.field`, the relation and the offending value.

use serde_json::Value as Json;

use crate::model::{DataType, Date, DateTime, EntityRef, SiteSchema, Value};

use super::ast::{
    Condition, FieldPath, Filter, Hop, Operand, Operator, RawCondition, RawFilter, TimeUnit,
};
use super::eval::fold;

/// The deepest nesting of groups a filter may have (the top-level group counts as one).
pub const MAX_FILTER_DEPTH: usize = 64;

/// The most hops (links followed) a deep-link path may take. Pipeline paths take one to four
/// (`entity.Shot.sg_sequence.Sequence.project.Project.name` is three). Each hop is a nested
/// subquery or a recursive step in the store backends and the evaluator, and a path of hundreds
/// of hops around a cycle of links (`sg_sequence.Sequence.shots.Shot.sg_sequence...`) overflowed
/// the stack and aborted the whole process.
pub const MAX_PATH_HOPS: usize = 12;

/// Why a filter (or a field path) was rejected. Every message names the field, operator or value at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    /// The JSON does not have the shape of any filter wire form.
    #[error("malformed filter: {0}")]
    Malformed(String),
    /// An entity type that is not in the schema (as the root type or inside a deep-link path).
    #[error("API read() entity type '{entity_type}' doesn't exist.")]
    UnknownType { entity_type: String },
    /// A field that is not in the schema; `field` is `Type.field`, `path` the path as written.
    #[error("API read() {field} doesn't exist.{}", deep_path_note(.path))]
    UnknownField { field: String, path: String },
    /// A deep-link path steps through a field that is not an entity or multi_entity link.
    #[error(
        "API read() {field} is a {data_type} field, not an entity link, so path '{path}' cannot follow it."
    )]
    NotALink {
        field: String,
        data_type: &'static str,
        path: String,
    },
    /// A deep-link path names a type the link field cannot point at.
    #[error(
        "API read() {field} cannot link to {target_type} (valid types: [{valid_types}]) in path '{path}'."
    )]
    InvalidLinkType {
        field: String,
        target_type: String,
        valid_types: String,
        path: String,
    },
    /// A dotted path that is not `field(.Type.field)*`.
    #[error("invalid field path '{path}': {reason}")]
    BadPath { path: String, reason: String },
    /// A field whose data type cannot be filtered on at all (url, serializable, summary, ...).
    #[error("API read() {field} ({data_type}) {reason}")]
    NotFilterable {
        field: String,
        data_type: &'static str,
        reason: &'static str,
    },
    /// A relation that is unknown or not valid for the field's data type.
    #[error(
        "Invalid operator '{operator}' for field {field} ({data_type}). Valid relations: [{valid}]"
    )]
    BadOperator {
        operator: String,
        field: String,
        data_type: &'static str,
        valid: String,
    },
    /// The relation got the wrong number of values.
    #[error("'{operator}' 'relation' expects {expected} (field {field} got {got} values)")]
    Arity {
        operator: &'static str,
        field: String,
        expected: &'static str,
        got: usize,
    },
    /// `in []` / `not_in []`.
    #[error(
        "'{operator}' 'relation' on field {field} needs at least one value: '{operator} []' is not allowed"
    )]
    EmptyIn {
        operator: &'static str,
        field: String,
    },
    /// A value of the wrong shape or class for the field's data type.
    #[error(
        "Invalid value {value} for field {field} with relation '{operator}': expected {expected}"
    )]
    BadValue {
        field: String,
        operator: &'static str,
        value: String,
        expected: String,
    },
    /// A date or date_time value that is not in an accepted format.
    #[error(
        "Invalid date {value} for field {field} ({data_type}) with relation '{operator}': expected {expected}"
    )]
    BadDate {
        field: String,
        data_type: &'static str,
        operator: &'static str,
        value: String,
        expected: &'static str,
    },
    /// A field whose data type cannot be sorted on (uuid, pivot_column: protocol §3.6).
    #[error("API read() {field} ({data_type}) cannot be used to sort.")]
    NotSortable {
        field: String,
        data_type: &'static str,
    },
    /// Groups nested deeper than [`MAX_FILTER_DEPTH`].
    #[error("filter nesting is deeper than {limit} groups")]
    TooDeep { limit: usize },
}

/// ` (path 'a.B.c')` when the path is a deep link (so the message says where the field was looked
/// up); nothing for a plain field, keeping Shotgun's exact wording.
fn deep_path_note(path: &str) -> String {
    if path.contains('.') {
        format!(" (path '{path}')")
    } else {
        String::new()
    }
}

/// The relations a current server accepts for a data type (protocol §3.1), in Shotgun's order.
/// Empty for types that cannot be filtered on.
pub fn valid_relations(data_type: DataType) -> &'static [Operator] {
    use DataType as D;
    use Operator::*;
    const TEXT: &[Operator] = &[
        Is,
        IsNot,
        Contains,
        NotContains,
        StartsWith,
        EndsWith,
        In,
        NotIn,
    ];
    const NUMBER: &[Operator] = &[Is, IsNot, GreaterThan, LessThan, Between, In, NotIn];
    const DATE: &[Operator] = &[
        Is,
        IsNot,
        GreaterThan,
        LessThan,
        InLast,
        NotInLast,
        InNext,
        NotInNext,
        InCalendarDay,
        InCalendarWeek,
        InCalendarMonth,
        InCalendarYear,
        Between,
        In,
        NotIn,
    ];
    const CHECKBOX: &[Operator] = &[Is, IsNot];
    const LIST: &[Operator] = &[Is, IsNot, In, NotIn];
    const LINK: &[Operator] = &[
        Is,
        IsNot,
        TypeIs,
        TypeIsNot,
        NameIs,
        NameContains,
        NameNotContains,
        NameStartsWith,
        NameEndsWith,
        In,
        NotIn,
    ];
    const TAG_LIST: &[Operator] = &[Is, IsNot, NameContains, NameNotContains];
    const IMAGE: &[Operator] = &[Is, IsNot];
    const JSONB: &[Operator] = &[Is, IsNot, Contains, NotContains];
    const ADDRESSING: &[Operator] = &[
        Is,
        IsNot,
        Contains,
        NotContains,
        In,
        TypeIs,
        TypeIsNot,
        NameContains,
        NameNotContains,
        NameStartsWith,
        NameEndsWith,
    ];
    match data_type {
        D::Text | D::Color | D::Footage | D::SystemTaskType => TEXT,
        D::Number | D::Float | D::Percent | D::Duration | D::Timecode | D::Currency => NUMBER,
        D::Date | D::DateTime => DATE,
        D::Checkbox => CHECKBOX,
        D::List | D::StatusList | D::EntityType | D::Uuid => LIST,
        D::Entity | D::MultiEntity => LINK,
        D::TagList => TAG_LIST,
        D::Image => IMAGE,
        D::Jsonb => JSONB,
        D::Addressing => ADDRESSING,
        D::Url
        | D::Serializable
        | D::Password
        | D::Summary
        | D::Calculated
        | D::PivotColumn
        | D::Unknown => &[],
    }
}

/// Whether filters on this data type compare text case-insensitively (operands are folded at
/// validation time, see `eval::fold`). `entity_type` is case-sensitive; uuid is normalised instead.
pub fn is_case_insensitive_text(data_type: DataType) -> bool {
    matches!(
        data_type,
        DataType::Text
            | DataType::Color
            | DataType::Footage
            | DataType::SystemTaskType
            | DataType::List
            | DataType::StatusList
    )
}

fn relation_list(data_type: DataType) -> String {
    valid_relations(data_type)
        .iter()
        .map(|o| o.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resolves a (possibly dotted) field path on `entity_type`.
///
/// `field(.Type.field)*`: every hop's field must be an entity or multi_entity link, the named type
/// must exist and (when the field lists `valid_types`) be one of them. `id` is a valid leaf on every
/// type (a number).
pub fn validate_path(
    schema: &SiteSchema,
    entity_type: &str,
    path: &str,
) -> Result<FieldPath, FilterError> {
    let mut current = schema
        .entity(entity_type)
        .ok_or_else(|| FilterError::UnknownType {
            entity_type: entity_type.to_owned(),
        })?;
    let parts: Vec<&str> = path.split('.').collect();
    let hop_count = parts.len() / 2;
    if hop_count > MAX_PATH_HOPS {
        // The path can be megabytes long: the message quotes its start.
        let start: String = path.chars().take(120).collect();
        return Err(FilterError::BadPath {
            path: if start.len() < path.len() {
                format!("{start}...")
            } else {
                start
            },
            reason: format!(
                "it follows {hop_count} links; a deep-link path may follow at most {MAX_PATH_HOPS}"
            ),
        });
    }
    if parts.iter().any(|p| p.is_empty()) {
        return Err(FilterError::BadPath {
            path: path.to_owned(),
            reason: "empty path segment".into(),
        });
    }
    if parts.len().is_multiple_of(2) {
        return Err(FilterError::BadPath {
            path: path.to_owned(),
            reason: "a deep-link path is field.EntityType.field; it must end with a field name"
                .into(),
        });
    }
    let mut hops = Vec::with_capacity(parts.len() / 2);
    let mut i = 0;
    while i + 1 < parts.len() {
        let (field_name, target) = (parts[i], parts[i + 1]);
        let field = current
            .field(field_name)
            .ok_or_else(|| FilterError::UnknownField {
                field: format!("{}.{}", current.name, field_name),
                path: path.to_owned(),
            })?;
        if !field.data_type.is_link() {
            return Err(FilterError::NotALink {
                field: format!("{}.{}", current.name, field_name),
                data_type: field.data_type.as_str(),
                path: path.to_owned(),
            });
        }
        let next = schema
            .entity(target)
            .ok_or_else(|| FilterError::UnknownType {
                entity_type: target.to_owned(),
            })?;
        if !field.valid_types.is_empty() && !field.valid_types.iter().any(|t| t == target) {
            return Err(FilterError::InvalidLinkType {
                field: format!("{}.{}", current.name, field_name),
                target_type: target.to_owned(),
                valid_types: field.valid_types.join(", "),
                path: path.to_owned(),
            });
        }
        hops.push(Hop {
            field: field_name.to_owned(),
            multi: field.data_type == DataType::MultiEntity,
            target_type: target.to_owned(),
        });
        current = next;
        i += 2;
    }
    let leaf = parts[parts.len() - 1];
    let leaf_type = if leaf == "id" {
        DataType::Number
    } else {
        current
            .field(leaf)
            .ok_or_else(|| FilterError::UnknownField {
                field: format!("{}.{}", current.name, leaf),
                path: path.to_owned(),
            })?
            .data_type
    };
    Ok(FieldPath {
        raw: path.to_owned(),
        hops,
        leaf: leaf.to_owned(),
        leaf_type,
        leaf_entity_type: current.name.clone(),
    })
}

/// Resolves a return field of a find (protocol §3.5). Shotgun leaves some deep paths out of every
/// record instead of failing: a hop to a type outside the link's `valid_types`, or a hop through a url
/// field (`sg_uploaded_movie.Attachment.url`). Those give `Ok(None)` (the field is absent). Paths
/// through multi_entity resolve normally; projection leaves them out. Unknown fields and types are errors.
pub fn validate_return_field(
    schema: &SiteSchema,
    entity_type: &str,
    path: &str,
) -> Result<Option<FieldPath>, FilterError> {
    match validate_path(schema, entity_type, path) {
        Ok(p) => Ok(Some(p)),
        Err(FilterError::InvalidLinkType { .. }) => Ok(None),
        Err(FilterError::NotALink { data_type, .. }) if data_type == DataType::Url.as_str() => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Resolves a sort field (protocol §3.6). ⚠ Sorting on a field that does not exist, or on a summary,
/// url, serializable or unknown-type field, is silently ignored (`Ok(None)`); uuid and pivot_column
/// are errors ([`FilterError::NotSortable`]). Other path errors (unknown type, bad hop) are errors.
pub fn validate_sort_field(
    schema: &SiteSchema,
    entity_type: &str,
    path: &str,
) -> Result<Option<FieldPath>, FilterError> {
    let p = match validate_path(schema, entity_type, path) {
        Ok(p) => p,
        Err(FilterError::UnknownField { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    match p.leaf_type {
        DataType::Uuid | DataType::PivotColumn => Err(FilterError::NotSortable {
            field: format!("{}.{}", p.leaf_entity_type, p.leaf),
            data_type: p.leaf_type.as_str(),
        }),
        DataType::Summary | DataType::Url | DataType::Serializable | DataType::Unknown => Ok(None),
        _ => Ok(Some(p)),
    }
}

/// Validates a raw filter for `entity_type`.
pub fn validate(
    schema: &SiteSchema,
    entity_type: &str,
    raw: &RawFilter,
) -> Result<Filter, FilterError> {
    if schema.entity(entity_type).is_none() {
        return Err(FilterError::UnknownType {
            entity_type: entity_type.to_owned(),
        });
    }
    validate_node(schema, entity_type, raw, 0)
}

fn validate_node(
    schema: &SiteSchema,
    entity_type: &str,
    raw: &RawFilter,
    depth: usize,
) -> Result<Filter, FilterError> {
    match raw {
        RawFilter::Condition(c) => Ok(Filter::Condition(validate_condition(
            schema,
            entity_type,
            c,
        )?)),
        RawFilter::Group { op, children } => {
            if depth + 1 > MAX_FILTER_DEPTH {
                return Err(FilterError::TooDeep {
                    limit: MAX_FILTER_DEPTH,
                });
            }
            let children = children
                .iter()
                .map(|c| validate_node(schema, entity_type, c, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Filter::Group { op: *op, children })
        }
    }
}

/// Validates one condition for `entity_type`.
pub fn validate_condition(
    schema: &SiteSchema,
    entity_type: &str,
    raw: &RawCondition,
) -> Result<Condition, FilterError> {
    let path = validate_path(schema, entity_type, &raw.path)?;
    let field_name = format!("{}.{}", path.leaf_entity_type, path.leaf);
    let data_type = path.leaf_type;
    let valid = valid_relations(data_type);
    if valid.is_empty() {
        let reason = match data_type {
            DataType::PivotColumn => "is not supported in API filters.",
            _ => "data type cannot be used in a filter.",
        };
        return Err(FilterError::NotFilterable {
            field: field_name,
            data_type: data_type.as_str(),
            reason,
        });
    }
    let operator = Operator::parse(&raw.relation)
        .filter(|o| valid.contains(o))
        .ok_or_else(|| FilterError::BadOperator {
            operator: raw.relation.clone(),
            field: field_name.clone(),
            data_type: data_type.as_str(),
            valid: relation_list(data_type),
        })?;
    let ctx = Ctx {
        field: &field_name,
        data_type,
        operator,
    };
    let operand = ctx.operand(&raw.values)?;
    Ok(Condition {
        path,
        operator,
        operand,
    })
}

/// What a value is being checked for: the field (`Type.field`), its data type and the relation.
struct Ctx<'a> {
    field: &'a str,
    data_type: DataType,
    operator: Operator,
}

fn show(v: &Json) -> String {
    let mut s = v.to_string();
    if s.len() > 120 {
        let mut cut = 117;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// `[[1, 2]]` → `[1, 2]`: some clients wrap list operands once more than the wire form needs.
fn flatten_single_list(values: &[Json]) -> &[Json] {
    match values {
        [Json::Array(inner)] => inner,
        _ => values,
    }
}

impl Ctx<'_> {
    fn op(&self) -> &'static str {
        self.operator.as_str()
    }

    fn bad(&self, v: &Json, expected: impl Into<String>) -> FilterError {
        FilterError::BadValue {
            field: self.field.to_owned(),
            operator: self.op(),
            value: show(v),
            expected: expected.into(),
        }
    }

    fn arity(&self, expected: &'static str, got: usize) -> FilterError {
        FilterError::Arity {
            operator: self.op(),
            field: self.field.to_owned(),
            expected,
            got,
        }
    }

    fn single<'v>(&self, values: &'v [Json]) -> Result<&'v Json, FilterError> {
        match values {
            [v] => Ok(v),
            _ => Err(self.arity("a 1-element array", values.len())),
        }
    }

    fn operand(&self, values: &[Json]) -> Result<Operand, FilterError> {
        use Operator::*;
        match self.operator {
            Is | IsNot => {
                // `["f", "is", [A]]` arrives as values [A]; `["f", "is", [[A]]]`-style double wrapping is
                // not accepted. A multi_entity/jsonb/tag_list field may compare with a list value only
                // through an explicit single element, so a bare list of two is the arity error.
                let v = self.single(values)?;
                Ok(Operand::One(self.value(v, true)?))
            }
            LessThan | GreaterThan => {
                let v = self.single(values)?;
                if v.is_null() {
                    return Err(self.bad(
                        v,
                        format!(
                            "a non-null {} value (comparisons never match null)",
                            self.data_type.as_str()
                        ),
                    ));
                }
                Ok(Operand::One(self.value(v, false)?))
            }
            Contains | NotContains | StartsWith | EndsWith => {
                let v = self.single(values)?;
                if v.is_null() {
                    return Err(self.bad(v, "a string (null is not allowed)"));
                }
                if self.data_type == DataType::Jsonb {
                    return Ok(Operand::One(Value::Json(v.clone())));
                }
                if self.data_type == DataType::Addressing {
                    return Ok(Operand::One(Value::Entity(self.link(v)?)));
                }
                match v {
                    Json::String(s) => Ok(Operand::One(Value::Text(fold(s)))),
                    _ => Err(self.bad(v, "a string")),
                }
            }
            In | NotIn => {
                let vs = flatten_single_list(values);
                if vs.is_empty() {
                    return Err(FilterError::EmptyIn {
                        operator: self.op(),
                        field: self.field.to_owned(),
                    });
                }
                let mut out = Vec::with_capacity(vs.len());
                for v in vs {
                    if v.is_null() {
                        return Err(self.bad(
                            v,
                            format!(
                                "a non-null {} value ('{} [None]' is not allowed)",
                                self.data_type.as_str(),
                                self.op()
                            ),
                        ));
                    }
                    out.push(self.value(v, false)?);
                }
                if out.iter().all(|v| matches!(v, Value::Int(_))) {
                    // Sorted and deduplicated, so the evaluator can binary-search long id lists.
                    out.sort_by_key(|v| match v {
                        Value::Int(i) => *i,
                        _ => 0,
                    });
                    out.dedup();
                }
                Ok(Operand::Many(out))
            }
            Between | NotBetween => {
                let vs = flatten_single_list(values);
                let [lo, hi] = vs else {
                    return Err(self.arity("a 2-element array [low, high]", vs.len()));
                };
                Ok(Operand::Range(self.value(lo, true)?, self.value(hi, true)?))
            }
            InLast | NotInLast | InNext | NotInNext => {
                let vs = flatten_single_list(values);
                let [n, unit] = vs else {
                    return Err(self.arity(
                        "a 2-element array [N, \"HOUR\"|\"DAY\"|\"WEEK\"|\"MONTH\"|\"YEAR\"]",
                        vs.len(),
                    ));
                };
                let count = n
                    .as_i64()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| self.bad(n, "a positive integer count"))?;
                let unit =
                    match unit.as_str() {
                        Some("HOUR") => TimeUnit::Hour,
                        Some("DAY") => TimeUnit::Day,
                        Some("WEEK") => TimeUnit::Week,
                        Some("MONTH") => TimeUnit::Month,
                        Some("YEAR") => TimeUnit::Year,
                        _ => return Err(self.bad(
                            unit,
                            "one of \"HOUR\", \"DAY\", \"WEEK\", \"MONTH\", \"YEAR\" (uppercase)",
                        )),
                    };
                Ok(Operand::Relative(count, unit))
            }
            InCalendarDay | InCalendarWeek | InCalendarMonth | InCalendarYear => {
                let v = self.single(flatten_single_list(values))?;
                let offset = v
                    .as_i64()
                    .ok_or_else(|| self.bad(v, "an integer offset (0 = current, -1 = previous)"))?;
                Ok(Operand::Offset(offset))
            }
            TypeIs | TypeIsNot => {
                let v = self.single(values)?;
                match v {
                    Json::String(s) if !s.is_empty() => Ok(Operand::Text(s.clone())),
                    _ => Err(self.bad(v, "an entity type name")),
                }
            }
            NameIs | NameContains | NameNotContains | NameStartsWith | NameEndsWith => {
                let v = self.single(values)?;
                match v {
                    Json::String(s) => Ok(Operand::Text(fold(s))),
                    _ => Err(self.bad(v, "a string (null is not allowed)")),
                }
            }
        }
    }

    fn link(&self, v: &Json) -> Result<EntityRef, FilterError> {
        EntityRef::from_json(v)
            .map_err(|_| self.bad(v, "an entity link {\"type\": ..., \"id\": ...}"))
    }

    /// One operand value for the field's data type. `null_ok`: whether `null` is acceptable here.
    fn value(&self, v: &Json, null_ok: bool) -> Result<Value, FilterError> {
        use DataType as D;
        if v.is_null() {
            return match self.data_type {
                D::Checkbox => Err(self.bad(v, "true or false (a checkbox is never null)")),
                D::Uuid => Err(self.bad(v, "a uuid string (use is \"\" to find empty uuids)")),
                _ if null_ok => Ok(Value::Null),
                _ => Err(self.bad(v, "a non-null value")),
            };
        }
        let dt = self.data_type;
        match dt {
            D::Text | D::Color | D::Footage | D::SystemTaskType | D::List | D::StatusList => match v {
                // `is ""` equals `is None`: Shotgun stores "" as null (writes are trimmed).
                Json::String(s) if s.trim().is_empty() && matches!(self.operator, Operator::Is | Operator::IsNot) => Ok(Value::Null),
                Json::String(s) => Ok(Value::Text(fold(s))),
                _ => Err(self.bad(v, "a string")),
            },
            D::EntityType => match v {
                Json::String(s) => Ok(Value::Text(s.clone())),
                _ => Err(self.bad(v, "an entity type name")),
            },
            D::Uuid => match v {
                Json::String(s) if s.trim().is_empty() && matches!(self.operator, Operator::Is | Operator::IsNot) => Ok(Value::Null),
                Json::String(s) => normalize_uuid(s).map(Value::Text).ok_or_else(|| self.bad(v, "a uuid")),
                _ => Err(self.bad(v, "a uuid string")),
            },
            D::Number | D::Percent | D::Duration | D::Timecode => match v {
                Json::Number(n) => match n.as_i64() {
                    Some(i) => Ok(Value::Int(i)),
                    None => match n.as_f64() {
                        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Value::Int(f as i64)),
                        _ => Err(self.bad(v, "an integer (number fields reject floats)")),
                    },
                },
                Json::String(s) => s.trim().parse::<i64>().map(Value::Int).map_err(|_| self.bad(v, "an integer")),
                _ => Err(self.bad(v, "an integer")),
            },
            D::Float | D::Currency => match v {
                Json::Number(n) => n.as_f64().map(Value::Float).ok_or_else(|| self.bad(v, "a number")),
                Json::String(s) => s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(Value::Float)
                    .ok_or_else(|| self.bad(v, "a number or a numeric string")),
                _ => Err(self.bad(v, "a number")),
            },
            D::Checkbox => match v {
                Json::Bool(b) => Ok(Value::Bool(*b)),
                Json::String(s) if s == "true" => Ok(Value::Bool(true)),
                Json::String(s) if s == "false" => Ok(Value::Bool(false)),
                _ => Err(self.bad(v, "true or false")),
            },
            D::Date => v.as_str().and_then(Date::parse).map(Value::Date).ok_or_else(|| FilterError::BadDate {
                field: self.field.to_owned(),
                data_type: dt.as_str(),
                operator: self.op(),
                value: show(v),
                expected: "a date \"YYYY-MM-DD\"",
            }),
            D::DateTime => v.as_str().and_then(DateTime::parse).map(Value::DateTime).ok_or_else(|| FilterError::BadDate {
                field: self.field.to_owned(),
                data_type: dt.as_str(),
                operator: self.op(),
                value: show(v),
                expected: "a datetime \"YYYY-MM-DDTHH:MM:SSZ\" (or with an offset, zoneless = UTC, or date-only)",
            }),
            D::Entity | D::MultiEntity | D::Addressing => Ok(Value::Entity(self.link(v)?)),
            D::TagList => match v {
                Json::String(s) => Ok(Value::Text(fold(s))),
                Json::Object(_) => Ok(Value::Entity(self.link(v)?)),
                _ => Err(self.bad(v, "a tag name or a Tag link")),
            },
            D::Image => Err(self.bad(v, "null (image fields can only be compared with null)")),
            D::Jsonb => Ok(Value::Json(v.clone())),
            D::Url | D::Serializable | D::Password | D::Summary | D::Calculated | D::PivotColumn | D::Unknown => {
                Err(self.bad(v, "nothing: this data type cannot be used in a filter"))
            }
        }
    }
}

/// Canonical uuid form: lowercase hex, hyphenated 8-4-4-4-12. Accepts any case, with or without
/// hyphens and braces. `None` when the input is not a uuid.
pub fn normalize_uuid(s: &str) -> Option<String> {
    let hex: String = s
        .trim()
        .chars()
        .filter(|c| !matches!(c, '-' | '{' | '}'))
        .collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let h = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}
