//! The filter trees: [`RawFilter`] (what any wire form parses into, not yet checked) and
//! [`Filter`] (validated against the schema: paths resolved, operators checked for the field's data
//! type, operands typed). Only a [`Filter`] can be evaluated or compiled to a store query.

use serde_json::Value as Json;

use crate::model::{DataType, Value};

/// `and` / `or` (api3 `all` / `any`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogicalOp {
    And,
    Or,
}

/// A filter tree as parsed from a wire form, before validation.
#[derive(Debug, Clone, PartialEq)]
pub enum RawFilter {
    Condition(RawCondition),
    Group {
        op: LogicalOp,
        children: Vec<RawFilter>,
    },
}

/// One condition as sent: `path`, `relation` and the raw `values` list (api3 wire semantics: for
/// `["f", "in", [1, 2]]` the values are `[1, 2]`; for `["f", "is", 3]` they are `[3]`).
#[derive(Debug, Clone, PartialEq)]
pub struct RawCondition {
    pub path: String,
    pub relation: String,
    pub values: Vec<Json>,
}

/// Every relation of protocol §3.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    Is,
    IsNot,
    LessThan,
    GreaterThan,
    Contains,
    NotContains,
    StartsWith,
    EndsWith,
    Between,
    NotBetween,
    In,
    NotIn,
    InLast,
    NotInLast,
    InNext,
    NotInNext,
    InCalendarDay,
    InCalendarWeek,
    InCalendarMonth,
    InCalendarYear,
    TypeIs,
    TypeIsNot,
    NameIs,
    NameContains,
    NameNotContains,
    NameStartsWith,
    NameEndsWith,
}

impl Operator {
    pub const ALL: [Operator; 27] = [
        Operator::Is,
        Operator::IsNot,
        Operator::LessThan,
        Operator::GreaterThan,
        Operator::Contains,
        Operator::NotContains,
        Operator::StartsWith,
        Operator::EndsWith,
        Operator::Between,
        Operator::NotBetween,
        Operator::In,
        Operator::NotIn,
        Operator::InLast,
        Operator::NotInLast,
        Operator::InNext,
        Operator::NotInNext,
        Operator::InCalendarDay,
        Operator::InCalendarWeek,
        Operator::InCalendarMonth,
        Operator::InCalendarYear,
        Operator::TypeIs,
        Operator::TypeIsNot,
        Operator::NameIs,
        Operator::NameContains,
        Operator::NameNotContains,
        Operator::NameStartsWith,
        Operator::NameEndsWith,
    ];

    /// The wire name (`is`, `not_in`, `in_calendar_week`, ...).
    pub fn as_str(self) -> &'static str {
        use Operator::*;
        match self {
            Is => "is",
            IsNot => "is_not",
            LessThan => "less_than",
            GreaterThan => "greater_than",
            Contains => "contains",
            NotContains => "not_contains",
            StartsWith => "starts_with",
            EndsWith => "ends_with",
            Between => "between",
            NotBetween => "not_between",
            In => "in",
            NotIn => "not_in",
            InLast => "in_last",
            NotInLast => "not_in_last",
            InNext => "in_next",
            NotInNext => "not_in_next",
            InCalendarDay => "in_calendar_day",
            InCalendarWeek => "in_calendar_week",
            InCalendarMonth => "in_calendar_month",
            InCalendarYear => "in_calendar_year",
            TypeIs => "type_is",
            TypeIsNot => "type_is_not",
            NameIs => "name_is",
            NameContains => "name_contains",
            NameNotContains => "name_not_contains",
            NameStartsWith => "name_starts_with",
            NameEndsWith => "name_ends_with",
        }
    }

    pub fn parse(s: &str) -> Option<Operator> {
        Operator::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// `HOUR|DAY|WEEK|MONTH|YEAR` for `in_last`/`in_next` and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeUnit {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

/// One hop of a deep-link path: from a link field of the current type to `target_type`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hop {
    /// The link field on the current type.
    pub field: String,
    /// True when `field` is multi_entity ("any linked row matches" in filters; absent in return fields).
    pub multi: bool,
    /// The type named in the path (`sg_sequence.Sequence.code` → `Sequence`).
    pub target_type: String,
}

/// A resolved field path: `code`, or `sg_sequence.Sequence.code` (hops + leaf).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    /// The path exactly as written, used as the key of deep-link return fields.
    pub raw: String,
    pub hops: Vec<Hop>,
    /// The last field name (`id` is valid on every type).
    pub leaf: String,
    pub leaf_type: DataType,
    /// The entity type that owns `leaf`.
    pub leaf_entity_type: String,
}

impl FieldPath {
    pub fn is_deep(&self) -> bool {
        !self.hops.is_empty()
    }
}

/// A typed operand, checked against the operator and the leaf's data type.
///
/// Normal forms established by `validate` (backends compiling a filter rely on them):
/// - text, list, status_list, color, footage and system_task_type operands are **folded**
///   (`eval::fold`: per-character lowercase with final sigma `ς` as `σ`), because every relation on
///   them is case-insensitive; so are the strings of `name_*` relations and tag names. `entity_type` operands keep their case (case-sensitive).
/// - `is ""` / `is_not ""` on those types (and uuid) become `One(Value::Null)` (`""` is stored as null).
/// - uuid operands are canonical: lowercase, hyphenated `8-4-4-4-12`.
/// - number-family operands are `Int`; float/currency operands are `Float`; date → `Date`;
///   date_time → `DateTime`; checkbox → `Bool`; entity, multi_entity and addressing → `Entity`
///   (the name is ignored when matching); jsonb → `Json`; tag_list → `Text` (a tag name) or `Entity`.
/// - `Many` never contains `Null` and is never empty. A `Many` of `Int`s is sorted ascending without
///   duplicates (the evaluator binary-searches long ones); code building operands by hand must keep that.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// `is`, `is_not`, `less_than`, `greater_than`, `contains`, ...: one value (may be `Null` for is/is_not).
    One(Value),
    /// `in`, `not_in`: one or more values.
    Many(Vec<Value>),
    /// `between`, `not_between`: inclusive bounds, as given.
    Range(Value, Value),
    /// `in_last`, `not_in_last`, `in_next`, `not_in_next`: a positive count of units.
    Relative(i64, TimeUnit),
    /// `in_calendar_*`: a signed offset from the current bucket (0 = current).
    Offset(i64),
    /// `type_is`, `type_is_not`, `name_*`: a string.
    Text(String),
}

/// A validated condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub path: FieldPath,
    pub operator: Operator,
    pub operand: Operand,
}

/// A validated filter tree. `Group { op: And, children: [] }` matches everything.
// A condition is larger than a group; boxing it would change a type every component matches on.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Condition(Condition),
    Group {
        op: LogicalOp,
        children: Vec<Filter>,
    },
}

impl Filter {
    /// The filter that matches every row.
    pub fn all() -> Filter {
        Filter::Group {
            op: LogicalOp::And,
            children: Vec::new(),
        }
    }

    /// Whether the filter has no condition at all (so it matches every row).
    pub fn is_all(&self) -> bool {
        match self {
            Filter::Condition(_) => false,
            Filter::Group { children, .. } => children.iter().all(Filter::is_all),
        }
    }

    /// Every condition of the tree, depth first, in order.
    pub fn conditions(&self) -> Vec<&Condition> {
        let mut out = Vec::new();
        self.visit(&mut |c| out.push(c));
        out
    }

    /// Calls `f` on every condition of the tree, depth first, in order.
    pub fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a Condition)) {
        match self {
            Filter::Condition(c) => f(c),
            Filter::Group { children, .. } => children.iter().for_each(|c| c.visit(f)),
        }
    }
}
