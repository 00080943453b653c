//! Parsers for every wire form of a filter into one [`RawFilter`] tree.
//!
//! - REST array filters: `[["f", "op", v], ...]` (implicit and).
//! - REST hash filters: `{"logical_operator": "and"|"or", "conditions": [triple | group, ...]}`, nested.
//! - api3 wire conditions: `{"path", "relation", "values"}` inside `{"logical_operator", "conditions"}`.
//! - the shotgun_api3 Python form: a list of `[path, relation, *values]` with nested
//!   `{"filter_operator": "any"|"all", "filters": [...]}` groups.
//!
//! The forms may be mixed at any level (a REST hash group may hold api3 conditions, a Python list may
//! hold wire groups). `null` and `[]` mean "no filter" (match everything).
//!
//! Values follow shotgun_api3's translation (protocol §2.4): `[path, relation, *rest]` gives
//! `values = rest`, except that a single list argument is the values list itself, so
//! `["id", "in", 1, 2]` and `["id", "in", [1, 2]]` are the same and `["x", "is", null]` is `[null]`.

use serde_json::Value as Json;

use super::ast::{LogicalOp, RawCondition, RawFilter};
use super::validate::{FilterError, MAX_FILTER_DEPTH};

/// Parses any of the four wire forms (detected from the shape).
pub fn parse_any(v: &Json) -> Result<RawFilter, FilterError> {
    match v {
        Json::Null => Ok(RawFilter::Group {
            op: LogicalOp::And,
            children: Vec::new(),
        }),
        Json::Array(items) => parse_list(items, LogicalOp::And, 1),
        // A top-level group object is depth 1, like a top-level list.
        Json::Object(_) => parse_item(v, 0),
        other => Err(FilterError::Malformed(format!(
            "expected a list of conditions or a {{\"logical_operator\", \"conditions\"}} object, got {}",
            short(other)
        ))),
    }
}

/// Parses the api3 `find(filters, filter_operator)` pair: a Python-form list combined with `all`/`any`.
pub fn parse_with_operator(
    v: &Json,
    filter_operator: Option<&str>,
) -> Result<RawFilter, FilterError> {
    let op = match filter_operator {
        None => LogicalOp::And,
        Some(s) => parse_logical(s)?,
    };
    match v {
        Json::Array(items) => parse_list(items, op, 1),
        _ if filter_operator.is_some() => Err(FilterError::Malformed(
            "filter_operator can only be combined with a list of filters, not a filter object"
                .into(),
        )),
        _ => parse_any(v),
    }
}

fn short(v: &Json) -> String {
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

fn parse_logical(s: &str) -> Result<LogicalOp, FilterError> {
    match s {
        "and" | "all" => Ok(LogicalOp::And),
        "or" | "any" => Ok(LogicalOp::Or),
        other => Err(FilterError::Malformed(format!(
            "unknown logical operator '{other}': expected \"and\"/\"all\" or \"or\"/\"any\""
        ))),
    }
}

fn parse_list(items: &[Json], op: LogicalOp, depth: usize) -> Result<RawFilter, FilterError> {
    if depth > MAX_FILTER_DEPTH {
        return Err(FilterError::TooDeep {
            limit: MAX_FILTER_DEPTH,
        });
    }
    let children = items
        .iter()
        .map(|i| parse_item(i, depth))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RawFilter::Group { op, children })
}

/// One element of a condition list (or a top-level object); `depth` is the depth of the group
/// the element belongs to.
fn parse_item(v: &Json, depth: usize) -> Result<RawFilter, FilterError> {
    match v {
        Json::Array(parts) => parse_triple(parts).map(RawFilter::Condition),
        Json::Object(obj) => {
            if obj.contains_key("path") || obj.contains_key("relation") {
                return parse_wire_condition(v).map(RawFilter::Condition);
            }
            let (op_key, list_key) = if obj.contains_key("conditions")
                || obj.contains_key("logical_operator")
            {
                ("logical_operator", "conditions")
            } else if obj.contains_key("filters") || obj.contains_key("filter_operator") {
                ("filter_operator", "filters")
            } else {
                return Err(FilterError::Malformed(format!(
                    "a filter object needs \"logical_operator\"+\"conditions\", \"filter_operator\"+\"filters\" or \"path\"+\"relation\"+\"values\", got {}",
                    short(v)
                )));
            };
            let op = match obj.get(op_key) {
                None | Some(Json::Null) => LogicalOp::And,
                Some(Json::String(s)) => parse_logical(s)?,
                Some(other) => {
                    return Err(FilterError::Malformed(format!(
                        "\"{op_key}\" must be a string, got {}",
                        short(other)
                    )));
                }
            };
            match obj.get(list_key) {
                Some(Json::Array(items)) => parse_list(items, op, depth + 1),
                None | Some(Json::Null) => parse_list(&[], op, depth + 1),
                Some(other) => Err(FilterError::Malformed(format!(
                    "\"{list_key}\" must be a list, got {}",
                    short(other)
                ))),
            }
        }
        other => Err(FilterError::Malformed(format!(
            "a condition must be [path, relation, value...] or a group object, got {}",
            short(other)
        ))),
    }
}

/// `[path, relation, *rest]` (REST array and Python forms).
fn parse_triple(parts: &[Json]) -> Result<RawCondition, FilterError> {
    let (path, relation, rest) = match parts {
        [Json::String(p), Json::String(r), rest @ ..] => (p, r, rest),
        _ => {
            return Err(FilterError::Malformed(format!(
                "a condition must be [\"path\", \"relation\", value...], got {}",
                short(&Json::Array(parts.to_vec()))
            )));
        }
    };
    let values = match rest {
        [Json::Array(inner)] => inner.clone(),
        _ => rest.to_vec(),
    };
    Ok(RawCondition {
        path: path.clone(),
        relation: relation.clone(),
        values,
    })
}

/// `{"path", "relation", "values"}` (api3 wire form).
fn parse_wire_condition(v: &Json) -> Result<RawCondition, FilterError> {
    let path = v.get("path").and_then(Json::as_str).ok_or_else(|| {
        FilterError::Malformed(format!(
            "a wire condition needs a string \"path\", got {}",
            short(v)
        ))
    })?;
    let relation = v.get("relation").and_then(Json::as_str).ok_or_else(|| {
        FilterError::Malformed(format!(
            "a wire condition needs a string \"relation\" (path '{path}'), got {}",
            short(v)
        ))
    })?;
    let values = match v.get("values") {
        Some(Json::Array(vs)) => vs.clone(),
        // A bare scalar is taken as a one-element list, as for `in`.
        Some(other) => vec![other.clone()],
        None => {
            return Err(FilterError::Malformed(format!(
                "a wire condition needs \"values\" (path '{path}', relation '{relation}')"
            )));
        }
    };
    Ok(RawCondition {
        path: path.to_owned(),
        relation: relation.to_owned(),
        values,
    })
}
