//! Shotgun's `summarize` (protocol §2.7): summary types and groupings computed over result records.
//!
//! One pure implementation shared by the api3 endpoint, the gRPC `Summarize` rpc and the simulated
//! site. It works on [`Record`]s (the rows a find returns, keyed by field path), so the caller fetches
//! the matching rows with the summary and grouping fields as return fields and hands them here.
//!
//! # What is answered, and what is not
//! Only what the cached data can answer *exactly*; everything else is [`SummarizeError::Unsupported`]
//! (the api3 endpoint then forwards the call to the site). The rules, from the GT `020_summarize`
//! probe and the `shotgun_api3` docstring:
//! - `summaries` is keyed by field; a second summary on the same field replaces the first (last wins).
//! - `record_count`: matching rows. `count`: rows whose value is not empty (null, `[]`).
//! - `sum`: numeric fields, nulls skipped, `0` over no value; integer fields sum to an integer.
//! - `maximum`/`minimum`: numeric fields, null over no value; of equal values (`0.0` and `-0.0`) the first row's. `average`: a float, null over no value.
//! - `earliest`/`latest`: date and date_time fields, in Shotgun's string forms, null over no value.
//! - `checked`/`unchecked`: checkbox fields, the number of rows with `true`/`false`.
//! - Not answered: `percentage` (its value argument has no verified wire shape) and
//!   `status_percentage`, `status_percentage_as_float`, `status_list` (they depend on the site-wide
//!   `status_list_summary_exclude` setting, which REST cannot read, so the cache cannot know it).
//! - Grouping: `exact` on text-like fields (text, status_list, list, entity_type) and on entity links.
//!   An entity group's `group_value` is the link plus `"valid": "valid"` and its `group_name` the
//!   link's name; rows with no value form one group with `group_name ""` and `group_value null`.
//!   Groups are ordered by `group_name` (case-insensitive; the empty group first on `asc`), then by
//!   link id. Nested groupings nest `groups`. The date buckets (`day` … `clustered_date`), number
//!   buckets (`tens` … `millions`), `entitytype` and `firstletter` render group names in ways no
//!   source verifies, and `exact` on other data types likewise: all are unsupported.

use std::cmp::Ordering;

use serde_json::Value as Json;

use crate::model::{DataType, Value};
use crate::query::{Direction, Record};

/// Every summary type of protocol §2.7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SummaryType {
    RecordCount,
    Count,
    Sum,
    Maximum,
    Minimum,
    Average,
    Earliest,
    Latest,
    Percentage,
    StatusPercentage,
    StatusPercentageAsFloat,
    StatusList,
    Checked,
    Unchecked,
}

impl SummaryType {
    pub const ALL: [SummaryType; 14] = [
        SummaryType::RecordCount,
        SummaryType::Count,
        SummaryType::Sum,
        SummaryType::Maximum,
        SummaryType::Minimum,
        SummaryType::Average,
        SummaryType::Earliest,
        SummaryType::Latest,
        SummaryType::Percentage,
        SummaryType::StatusPercentage,
        SummaryType::StatusPercentageAsFloat,
        SummaryType::StatusList,
        SummaryType::Checked,
        SummaryType::Unchecked,
    ];

    /// The wire name (`record_count`, `status_percentage_as_float`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SummaryType::RecordCount => "record_count",
            SummaryType::Count => "count",
            SummaryType::Sum => "sum",
            SummaryType::Maximum => "maximum",
            SummaryType::Minimum => "minimum",
            SummaryType::Average => "average",
            SummaryType::Earliest => "earliest",
            SummaryType::Latest => "latest",
            SummaryType::Percentage => "percentage",
            SummaryType::StatusPercentage => "status_percentage",
            SummaryType::StatusPercentageAsFloat => "status_percentage_as_float",
            SummaryType::StatusList => "status_list",
            SummaryType::Checked => "checked",
            SummaryType::Unchecked => "unchecked",
        }
    }

    pub fn parse(s: &str) -> Option<SummaryType> {
        SummaryType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Every grouping type of protocol §2.7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupingType {
    Exact,
    Tens,
    Hundreds,
    Thousands,
    TensOfThousands,
    HundredsOfThousands,
    Millions,
    Day,
    Week,
    Month,
    Quarter,
    Year,
    ClusteredDate,
    OneDay,
    FiveDays,
    EntityType,
    FirstLetter,
}

impl GroupingType {
    pub const ALL: [GroupingType; 17] = [
        GroupingType::Exact,
        GroupingType::Tens,
        GroupingType::Hundreds,
        GroupingType::Thousands,
        GroupingType::TensOfThousands,
        GroupingType::HundredsOfThousands,
        GroupingType::Millions,
        GroupingType::Day,
        GroupingType::Week,
        GroupingType::Month,
        GroupingType::Quarter,
        GroupingType::Year,
        GroupingType::ClusteredDate,
        GroupingType::OneDay,
        GroupingType::FiveDays,
        GroupingType::EntityType,
        GroupingType::FirstLetter,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupingType::Exact => "exact",
            GroupingType::Tens => "tens",
            GroupingType::Hundreds => "hundreds",
            GroupingType::Thousands => "thousands",
            GroupingType::TensOfThousands => "tensofthousands",
            GroupingType::HundredsOfThousands => "hundredsofthousands",
            GroupingType::Millions => "millions",
            GroupingType::Day => "day",
            GroupingType::Week => "week",
            GroupingType::Month => "month",
            GroupingType::Quarter => "quarter",
            GroupingType::Year => "year",
            GroupingType::ClusteredDate => "clustered_date",
            GroupingType::OneDay => "oneday",
            GroupingType::FiveDays => "fivedays",
            GroupingType::EntityType => "entitytype",
            GroupingType::FirstLetter => "firstletter",
        }
    }

    pub fn parse(s: &str) -> Option<GroupingType> {
        GroupingType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One requested summary: `{"field": "id", "type": "count"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryField {
    pub field: String,
    pub kind: SummaryType,
}

/// One grouping level: `{"field": "sg_status_list", "type": "exact", "direction": "asc"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Grouping {
    pub field: String,
    pub kind: GroupingType,
    pub direction: Direction,
}

/// A summarize request in domain terms (the filter is applied by whoever fetched the records).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SummarizeRequest {
    pub summaries: Vec<SummaryField>,
    pub grouping: Vec<Grouping>,
}

/// Why a summarize request cannot be answered here.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SummarizeError {
    /// A valid request the cache cannot answer exactly (the caller may forward it to the site).
    #[error("summary {what} cannot be answered from the cache: {reason}")]
    Unsupported { what: String, reason: String },
    /// A malformed request (unknown summary or grouping type, missing field name).
    #[error("invalid summarize request: {0}")]
    Invalid(String),
}

fn unsupported(what: impl Into<String>, reason: impl Into<String>) -> SummarizeError {
    SummarizeError::Unsupported {
        what: what.into(),
        reason: reason.into(),
    }
}

/// One group of the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryGroup {
    /// The server's display of the group value (a link's name; `""` for the empty group).
    pub name: String,
    /// The value grouped on (`Value::Null` for the empty group).
    pub value: Value,
    /// Summaries over the group's rows, in request order (last entry per field wins).
    pub summaries: Vec<(String, Value)>,
    /// The next grouping level (empty at the last level).
    pub groups: Vec<SummaryGroup>,
}

/// The answer: totals over every row, and the groups (empty without grouping).
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryResult {
    pub summaries: Vec<(String, Value)>,
    pub groups: Vec<SummaryGroup>,
}

impl SummaryResult {
    /// The api3 JSON form: `{"summaries": {...}, "groups": [{"group_name", "group_value", "summaries", ["groups"]}]}`.
    pub fn to_json(&self) -> Json {
        serde_json::json!({
            "summaries": summaries_json(&self.summaries),
            "groups": self.groups.iter().map(group_json).collect::<Vec<_>>(),
        })
    }
}

fn summaries_json(s: &[(String, Value)]) -> Json {
    let mut m = serde_json::Map::new();
    for (field, v) in s {
        m.insert(field.clone(), v.to_json());
    }
    Json::Object(m)
}

fn group_json(g: &SummaryGroup) -> Json {
    let value = match &g.value {
        Value::Entity(r) => {
            serde_json::json!({"type": r.entity_type, "id": r.id, "name": r.name, "valid": "valid"})
        }
        v => v.to_json(),
    };
    let mut m = serde_json::Map::new();
    m.insert("group_name".into(), Json::String(g.name.clone()));
    m.insert("group_value".into(), value);
    m.insert("summaries".into(), summaries_json(&g.summaries));
    if !g.groups.is_empty() {
        m.insert(
            "groups".into(),
            Json::Array(g.groups.iter().map(group_json).collect()),
        );
    }
    Json::Object(m)
}

fn is_numeric(t: DataType) -> bool {
    matches!(
        t,
        DataType::Number
            | DataType::Float
            | DataType::Percent
            | DataType::Duration
            | DataType::Currency
    )
}

fn is_exact_groupable(t: DataType) -> bool {
    matches!(
        t,
        DataType::Text
            | DataType::StatusList
            | DataType::List
            | DataType::EntityType
            | DataType::Entity
    )
}

/// The most grouping levels the cache answers (each level is a step of recursion, and requests of
/// thousands of levels overflowed the stack). Pipeline summaries group one to three levels deep;
/// a deeper request is [`SummarizeError::Unsupported`], so the api3 endpoint forwards it to the
/// site.
pub const MAX_GROUPING_LEVELS: usize = 16;

/// Checks that every summary and grouping of `req` can be answered exactly from cached records.
/// `data_type_of` gives the data type of a (possibly deep) field path, `None` when unknown.
pub fn check_supported(
    req: &SummarizeRequest,
    data_type_of: &dyn Fn(&str) -> Option<DataType>,
) -> Result<(), SummarizeError> {
    for s in &req.summaries {
        if s.field.is_empty() {
            return Err(SummarizeError::Invalid(format!(
                "summary type {} has no field",
                s.kind.as_str()
            )));
        }
        let what = format!("{} on {}", s.kind.as_str(), s.field);
        // Even `record_count`, which ignores its field's values, needs a known field: the site
        // rejects an unknown one, and only the site can word that fault.
        let t = data_type_of(&s.field)
            .ok_or_else(|| unsupported(&what, format!("field {} is not cached", s.field)))?;
        let ok = match s.kind {
            SummaryType::RecordCount | SummaryType::Count => true,
            SummaryType::Sum
            | SummaryType::Maximum
            | SummaryType::Minimum
            | SummaryType::Average => is_numeric(t),
            SummaryType::Earliest | SummaryType::Latest => {
                matches!(t, DataType::Date | DataType::DateTime)
            }
            SummaryType::Checked | SummaryType::Unchecked => t == DataType::Checkbox,
            SummaryType::Percentage => {
                return Err(unsupported(
                    what,
                    "the percentage value argument has no verified wire shape",
                ));
            }
            SummaryType::StatusPercentage
            | SummaryType::StatusPercentageAsFloat
            | SummaryType::StatusList => {
                return Err(unsupported(
                    what,
                    "status summaries depend on the site's status_list_summary_exclude setting, which the cache cannot read",
                ));
            }
        };
        if !ok {
            return Err(unsupported(
                what,
                format!("not answered for a {} field", t.as_str()),
            ));
        }
    }
    if req.grouping.len() > MAX_GROUPING_LEVELS {
        return Err(unsupported(
            format!("{} grouping levels", req.grouping.len()),
            format!("the cache groups at most {MAX_GROUPING_LEVELS} levels deep"),
        ));
    }
    for g in &req.grouping {
        if g.field.is_empty() {
            return Err(SummarizeError::Invalid(format!(
                "grouping type {} has no field",
                g.kind.as_str()
            )));
        }
        let what = format!("grouping {} on {}", g.kind.as_str(), g.field);
        let t = data_type_of(&g.field)
            .ok_or_else(|| unsupported(&what, format!("field {} is not cached", g.field)))?;
        if g.kind != GroupingType::Exact {
            return Err(unsupported(
                what,
                "the site's group names for this grouping type are not verified",
            ));
        }
        if !is_exact_groupable(t) {
            return Err(unsupported(
                what,
                format!("group names of a {} field are not verified", t.as_str()),
            ));
        }
    }
    Ok(())
}

/// Computes the summaries and groups over `records` (already filtered). Calls [`check_supported`] first.
pub fn summarize(
    req: &SummarizeRequest,
    records: &[Record],
    data_type_of: &dyn Fn(&str) -> Option<DataType>,
) -> Result<SummaryResult, SummarizeError> {
    check_supported(req, data_type_of)?;
    let rows: Vec<&Record> = records.iter().collect();
    Ok(SummaryResult {
        summaries: compute(req, &rows, data_type_of),
        groups: group_level(req, &rows, 0, data_type_of),
    })
}

fn field_value<'a>(r: &'a Record, field: &str) -> Option<&'a Value> {
    if field == "id" {
        return None;
    }
    r.fields.get(field)
}

fn non_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::MultiEntity(l)) => !l.is_empty(),
        Some(Value::Text(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

fn num(r: &Record, field: &str) -> Option<f64> {
    if field == "id" {
        return Some(r.id as f64);
    }
    match field_value(r, field)? {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

fn int(r: &Record, field: &str) -> Option<i64> {
    if field == "id" {
        return Some(r.id);
    }
    match field_value(r, field)? {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn compute(
    req: &SummarizeRequest,
    rows: &[&Record],
    data_type_of: &dyn Fn(&str) -> Option<DataType>,
) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = Vec::new();
    for s in &req.summaries {
        let f = s.field.as_str();
        let is_int =
            f == "id" || !matches!(data_type_of(f), Some(DataType::Float | DataType::Currency));
        let v = match s.kind {
            SummaryType::RecordCount => Value::Int(rows.len() as i64),
            SummaryType::Count => Value::Int(
                rows.iter()
                    .filter(|r| f == "id" || non_empty(field_value(r, f)))
                    .count() as i64,
            ),
            SummaryType::Sum if is_int => Value::Int(rows.iter().filter_map(|r| int(r, f)).sum()),
            SummaryType::Sum => Value::Float(rows.iter().filter_map(|r| num(r, f)).sum()),
            SummaryType::Maximum | SummaryType::Minimum if is_int => {
                let it = rows.iter().filter_map(|r| int(r, f));
                let m = if s.kind == SummaryType::Maximum {
                    it.max()
                } else {
                    it.min()
                };
                m.map(Value::Int).unwrap_or(Value::Null)
            }
            SummaryType::Maximum | SummaryType::Minimum => {
                let vals: Vec<f64> = rows.iter().filter_map(|r| num(r, f)).collect();
                let m = if s.kind == SummaryType::Maximum {
                    vals.iter().copied().reduce(float_max)
                } else {
                    vals.iter().copied().reduce(float_min)
                };
                m.map(Value::Float).unwrap_or(Value::Null)
            }
            SummaryType::Average => {
                let vals: Vec<f64> = rows.iter().filter_map(|r| num(r, f)).collect();
                if vals.is_empty() {
                    Value::Null
                } else {
                    Value::Float(vals.iter().sum::<f64>() / vals.len() as f64)
                }
            }
            SummaryType::Earliest | SummaryType::Latest => {
                let vals = rows.iter().filter_map(|r| match field_value(r, f) {
                    Some(v @ (Value::Date(_) | Value::DateTime(_))) => Some(v),
                    _ => None,
                });
                let m = if s.kind == SummaryType::Latest {
                    vals.max_by(|a, b| cmp_dates(a, b))
                } else {
                    vals.min_by(|a, b| cmp_dates(a, b))
                };
                m.cloned().unwrap_or(Value::Null)
            }
            SummaryType::Checked | SummaryType::Unchecked => {
                let want = s.kind == SummaryType::Checked;
                Value::Int(
                    rows.iter()
                        .filter(|r| matches!(field_value(r, f), Some(Value::Bool(b)) if *b == want))
                        .count() as i64,
                )
            }
            // Rejected by `check_supported`.
            SummaryType::Percentage
            | SummaryType::StatusPercentage
            | SummaryType::StatusPercentageAsFloat
            | SummaryType::StatusList => Value::Null,
        };
        put(&mut out, f, v);
    }
    out
}

/// Sets the summary of `field`: the last entry per field wins, as on the site (GT 020).
fn put(out: &mut Vec<(String, Value)>, field: &str, v: Value) {
    if let Some(slot) = out.iter_mut().find(|(k, _)| k == field) {
        slot.1 = v;
    } else {
        out.push((field.to_owned(), v));
    }
}

/// Whether `req` needs only the number of matching rows: no grouping, and every summary a
/// `record_count` or a `count` of `id` (never empty). The caller can then count the rows instead of
/// fetching every one of them (a summary over a million rows held them all in memory), and answer
/// with [`summarize_row_count`].
pub fn needs_only_row_count(req: &SummarizeRequest) -> bool {
    req.grouping.is_empty()
        && req.summaries.iter().all(|s| {
            s.kind == SummaryType::RecordCount || (s.kind == SummaryType::Count && s.field == "id")
        })
}

/// What [`summarize`] gives for a request of which [`needs_only_row_count`] holds, over `rows`
/// matching rows.
pub fn summarize_row_count(req: &SummarizeRequest, rows: u64) -> SummaryResult {
    let n = Value::Int(i64::try_from(rows).unwrap_or(i64::MAX));
    let mut summaries = Vec::new();
    for s in &req.summaries {
        put(&mut summaries, &s.field, n.clone());
    }
    SummaryResult {
        summaries,
        groups: Vec::new(),
    }
}

fn cmp_dates(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Date(x), Value::Date(y)) => x.cmp(y),
        (Value::DateTime(x), Value::DateTime(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

/// The grouping key of one row: (display name, value).
fn group_key(r: &Record, field: &str) -> (String, Value) {
    match field_value(r, field) {
        Some(Value::Text(s)) if !s.is_empty() => (s.clone(), Value::Text(s.clone())),
        Some(Value::Entity(link)) => (
            link.name.clone().unwrap_or_default(),
            Value::Entity(link.clone()),
        ),
        _ => (String::new(), Value::Null),
    }
}

fn same_group(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Entity(x), Value::Entity(y)) => x.same_target(y),
        _ => a == b,
    }
}

fn group_level(
    req: &SummarizeRequest,
    rows: &[&Record],
    level: usize,
    data_type_of: &dyn Fn(&str) -> Option<DataType>,
) -> Vec<SummaryGroup> {
    let Some(g) = req.grouping.get(level) else {
        return Vec::new();
    };
    let mut buckets: Vec<(String, Value, Vec<&Record>)> = Vec::new();
    for r in rows {
        let (name, value) = group_key(r, &g.field);
        match buckets.iter_mut().find(|(_, v, _)| same_group(v, &value)) {
            Some(b) => b.2.push(r),
            None => buckets.push((name, value, vec![*r])),
        }
    }
    buckets.sort_by(|a, b| group_order((&a.0, &a.1), (&b.0, &b.1), g.direction));
    buckets
        .into_iter()
        .map(|(name, value, members)| SummaryGroup {
            name,
            value,
            summaries: compute(req, &members, data_type_of),
            groups: group_level(req, &members, level + 1, data_type_of),
        })
        .collect()
}

/// The order of groups at one level: by name (case-insensitive, then exact), then by link id;
/// reversed for `desc`.
fn group_order(a: (&str, &Value), b: (&str, &Value), direction: Direction) -> Ordering {
    let o =
        a.0.to_lowercase()
            .cmp(&b.0.to_lowercase())
            .then_with(|| a.0.cmp(b.0))
            .then_with(|| link_id(a.1).cmp(&link_id(b.1)));
    if direction == Direction::Desc {
        o.reverse()
    } else {
        o
    }
}

/// [`summarize`] fed one row at a time: the same answer (the tests compare the two), in memory
/// proportional to the number of groups instead of the number of rows, and a hash lookup per row
/// and level instead of a scan of the groups. Feed the rows in the order `summarize` would see
/// them (float sums depend on the order of their terms).
pub struct Summarizer {
    /// The request with one summary per field: the last one asked for, at the place of the first
    /// (what the answer shows), so a request repeating a field many times costs one accumulator.
    req: SummarizeRequest,
    /// Per summary: whether it sums, or takes the extremes of, integers.
    int: Vec<bool>,
    root: Node,
}

/// What is known of one group (or of all rows at the top).
struct Node {
    /// One accumulator per summary of the request.
    accs: Vec<Acc>,
    /// The next grouping level; `None` at the last.
    level: Option<Box<Level>>,
}

/// The groups of one level, in the order they were first seen.
#[derive(Default)]
struct Level {
    index: std::collections::HashMap<GroupId, usize>,
    groups: Vec<(String, Value, Node)>,
}

/// What makes two rows fall in the same group ([`same_group`]).
#[derive(Hash, PartialEq, Eq)]
enum GroupId {
    Empty,
    Text(String),
    Link(String, i64),
}

/// The running state of one summary.
enum Acc {
    Count(i64),
    IntSum(i64),
    /// A float sum, starting at the empty sum (`Iterator::sum`'s start).
    FloatSum(f64),
    Int(Option<i64>),
    Float(Option<f64>),
    Average(f64, u64),
    Date(Option<Value>),
    Nothing,
}

impl Node {
    fn new(req: &SummarizeRequest, int: &[bool], level: usize) -> Node {
        let empty_sum = std::iter::empty::<f64>().sum::<f64>();
        Node {
            accs: req
                .summaries
                .iter()
                .zip(int)
                .map(|(s, int)| match s.kind {
                    SummaryType::RecordCount
                    | SummaryType::Count
                    | SummaryType::Checked
                    | SummaryType::Unchecked => Acc::Count(0),
                    SummaryType::Sum if *int => Acc::IntSum(0),
                    SummaryType::Sum => Acc::FloatSum(empty_sum),
                    SummaryType::Maximum | SummaryType::Minimum if *int => Acc::Int(None),
                    SummaryType::Maximum | SummaryType::Minimum => Acc::Float(None),
                    SummaryType::Average => Acc::Average(empty_sum, 0),
                    SummaryType::Earliest | SummaryType::Latest => Acc::Date(None),
                    SummaryType::Percentage
                    | SummaryType::StatusPercentage
                    | SummaryType::StatusPercentageAsFloat
                    | SummaryType::StatusList => Acc::Nothing,
                })
                .collect(),
            level: (level < req.grouping.len()).then(Box::default),
        }
    }

    fn add(&mut self, req: &SummarizeRequest, ints: &[bool], r: &Record, depth: usize) {
        for (acc, s) in self.accs.iter_mut().zip(&req.summaries) {
            let f = s.field.as_str();
            match acc {
                Acc::Count(n) => {
                    let counts = match s.kind {
                        SummaryType::RecordCount => true,
                        SummaryType::Count => f == "id" || non_empty(field_value(r, f)),
                        SummaryType::Checked | SummaryType::Unchecked => {
                            let want = s.kind == SummaryType::Checked;
                            matches!(field_value(r, f), Some(Value::Bool(b)) if *b == want)
                        }
                        _ => false,
                    };
                    *n += i64::from(counts);
                }
                Acc::IntSum(sum) => {
                    if let Some(v) = int(r, f) {
                        *sum = sum.wrapping_add(v);
                    }
                }
                Acc::FloatSum(sum) => {
                    if let Some(v) = num(r, f) {
                        *sum += v;
                    }
                }
                Acc::Int(m) => {
                    if let Some(v) = int(r, f) {
                        *m = Some(match (*m, s.kind) {
                            (None, _) => v,
                            (Some(a), SummaryType::Maximum) => a.max(v),
                            (Some(a), _) => a.min(v),
                        });
                    }
                }
                Acc::Float(m) => {
                    if let Some(v) = num(r, f) {
                        *m = Some(match (*m, s.kind) {
                            (None, _) => v,
                            (Some(a), SummaryType::Maximum) => float_max(a, v),
                            (Some(a), _) => float_min(a, v),
                        });
                    }
                }
                Acc::Average(sum, n) => {
                    if let Some(v) = num(r, f) {
                        *sum += v;
                        *n += 1;
                    }
                }
                Acc::Date(m) => {
                    if let Some(v @ (Value::Date(_) | Value::DateTime(_))) = field_value(r, f) {
                        // As `max_by` (the last of equals) and `min_by` (the first of equals).
                        let take = match m {
                            None => true,
                            Some(a) if s.kind == SummaryType::Latest => {
                                cmp_dates(v, a) != Ordering::Less
                            }
                            Some(a) => cmp_dates(v, a) == Ordering::Less,
                        };
                        if take {
                            *m = Some(v.clone());
                        }
                    }
                }
                Acc::Nothing => {}
            }
        }
        let Some(level) = self.level.as_deref_mut() else {
            return;
        };
        let (name, value) = group_key(r, &req.grouping[depth].field);
        let id = match &value {
            Value::Entity(link) => GroupId::Link(link.entity_type.clone(), link.id),
            Value::Text(s) => GroupId::Text(s.clone()),
            _ => GroupId::Empty,
        };
        let i = match level.index.get(&id) {
            Some(i) => *i,
            None => {
                level
                    .groups
                    .push((name, value, Node::new(req, ints, depth + 1)));
                level.index.insert(id, level.groups.len() - 1);
                level.groups.len() - 1
            }
        };
        level.groups[i].2.add(req, ints, r, depth + 1);
    }

    fn finish(
        self,
        req: &SummarizeRequest,
        depth: usize,
    ) -> (Vec<(String, Value)>, Vec<SummaryGroup>) {
        let mut summaries = Vec::new();
        for (acc, s) in self.accs.into_iter().zip(&req.summaries) {
            let v = match acc {
                Acc::Count(n) | Acc::IntSum(n) => Value::Int(n),
                Acc::FloatSum(x) => Value::Float(x),
                Acc::Int(m) => m.map_or(Value::Null, Value::Int),
                Acc::Float(m) => m.map_or(Value::Null, Value::Float),
                Acc::Average(_, 0) => Value::Null,
                Acc::Average(sum, n) => Value::Float(sum / n as f64),
                Acc::Date(m) => m.unwrap_or(Value::Null),
                Acc::Nothing => Value::Null,
            };
            put(&mut summaries, &s.field, v);
        }
        let Some(level) = self.level else {
            return (summaries, Vec::new());
        };
        let direction = req.grouping[depth].direction;
        let mut members = level.groups;
        members.sort_by(|a, b| group_order((&a.0, &a.1), (&b.0, &b.1), direction));
        let groups = members
            .into_iter()
            .map(|(name, value, node)| {
                let (summaries, groups) = node.finish(req, depth + 1);
                SummaryGroup {
                    name,
                    value,
                    summaries,
                    groups,
                }
            })
            .collect();
        (summaries, groups)
    }
}

impl Summarizer {
    /// A summarizer for `req` (checked as [`summarize`] checks it).
    pub fn new(
        req: &SummarizeRequest,
        data_type_of: &dyn Fn(&str) -> Option<DataType>,
    ) -> Result<Summarizer, SummarizeError> {
        check_supported(req, data_type_of)?;
        let mut summaries: Vec<SummaryField> = Vec::new();
        for s in &req.summaries {
            match summaries.iter_mut().find(|e| e.field == s.field) {
                Some(e) => e.kind = s.kind,
                None => summaries.push(s.clone()),
            }
        }
        let req = SummarizeRequest {
            summaries,
            grouping: req.grouping.clone(),
        };
        let int: Vec<bool> = req
            .summaries
            .iter()
            .map(|s| {
                s.field == "id"
                    || !matches!(
                        data_type_of(&s.field),
                        Some(DataType::Float | DataType::Currency)
                    )
            })
            .collect();
        let root = Node::new(&req, &int, 0);
        Ok(Summarizer { req, int, root })
    }

    /// Adds one matching row.
    pub fn add(&mut self, r: &Record) {
        self.root.add(&self.req, &self.int, r, 0);
    }

    /// The summaries and groups over every row added.
    pub fn finish(self) -> SummaryResult {
        let (summaries, groups) = self.root.finish(&self.req, 0);
        SummaryResult { summaries, groups }
    }
}

fn link_id(v: &Value) -> i64 {
    match v {
        Value::Entity(r) => r.id,
        _ => 0,
    }
}

/// Parses the api3 wire form of `summaries` and `grouping`.
pub fn parse_wire(
    summaries: &Json,
    grouping: Option<&Json>,
) -> Result<SummarizeRequest, SummarizeError> {
    let list = summaries.as_array().ok_or_else(|| {
        SummarizeError::Invalid(format!("summaries must be a list, got {summaries}"))
    })?;
    let mut req = SummarizeRequest::default();
    for s in list {
        let field = s
            .get("field")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_owned();
        let t = s.get("type").and_then(Json::as_str).unwrap_or_default();
        let kind = SummaryType::parse(t).ok_or_else(|| {
            SummarizeError::Invalid(format!(
                "summary type {t:?} for field {field:?} must be one of: {}",
                SummaryType::ALL.map(SummaryType::as_str).join(", ")
            ))
        })?;
        req.summaries.push(SummaryField { field, kind });
    }
    if let Some(g) = grouping.filter(|g| !g.is_null()) {
        let list = g
            .as_array()
            .ok_or_else(|| SummarizeError::Invalid(format!("grouping must be a list, got {g}")))?;
        for item in list {
            let field = item
                .get("field")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned();
            let t = item.get("type").and_then(Json::as_str).unwrap_or("exact");
            let kind = GroupingType::parse(t).ok_or_else(|| {
                SummarizeError::Invalid(format!(
                    "grouping type {t:?} for field {field:?} must be one of: {}",
                    GroupingType::ALL.map(GroupingType::as_str).join(", ")
                ))
            })?;
            let direction = match item
                .get("direction")
                .and_then(Json::as_str)
                .unwrap_or("asc")
            {
                "desc" => Direction::Desc,
                _ => Direction::Asc,
            };
            req.grouping.push(Grouping {
                field,
                kind,
                direction,
            });
        }
    }
    Ok(req)
}

/// The fields a summarize needs as return fields of the underlying find.
pub fn needed_fields(req: &SummarizeRequest) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in req
        .summaries
        .iter()
        .map(|s| &s.field)
        .chain(req.grouping.iter().map(|g| &g.field))
    {
        if f != "id" && !out.contains(f) {
            out.push(f.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests;

/// The larger of two floats, the first of equal ones (so of `0.0` and `-0.0` the one seen first),
/// and the other one when one is NaN. `f64::max` may return either zero, and which one depended on
/// how the call was compiled: a debug and a release build of the same summary disagreed.
fn float_max(a: f64, b: f64) -> f64 {
    if b > a || a.is_nan() { b } else { a }
}

/// The smaller of two floats; as [`float_max`].
fn float_min(a: f64, b: f64) -> f64 {
    if b < a || a.is_nan() { b } else { a }
}
