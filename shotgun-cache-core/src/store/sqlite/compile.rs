//! Compiles a validated [`Filter`] and the sorts of a find into SQL over the per-type tables.
//!
//! The SQL reproduces the reference evaluator (`filter::eval`) exactly; the rules below are the
//! reference's, spelled in SQL:
//! - A condition is compiled in its *positive* form `P` (e.g. `is` for `is_not`); a negated relation is
//!   `NOT COALESCE(P, 0)`. Every `P` is built so that SQL `NULL` only ever means "false".
//! - A deep-link path is "some leaf value reached through the hops passes the test", where a hop reads
//!   one null leaf when the link is null, points at another type, at an uncached or retired target, or
//!   (multi_entity) has no live element. Whether the test passes on a null leaf (`t0`, e.g. `is None`,
//!   checkbox `is false`) is asked of the reference evaluator itself, and only then are the null-leaf
//!   branches added. The positive branches are `IN (SELECT ...)` subqueries, so SQLite can drive them
//!   from the link-column indexes and a listed multi_entity field's partial side-table index
//!   `(dst_id, dst_type) WHERE field = '<f>'` (the field is a literal in the SQL, so the planner can
//!   match the index).
//! - Links apply the link rule: a link to a cached, retired target is absent (`dropped`), and names
//!   are live (`COALESCE(target._dn, stored name)` when the target is cached).
//! - Text is case-insensitive through the connection functions `sg_fold` (the reference's
//!   `filter::eval::fold`, also used by the expression indexes) and `sg_contains`/`sg_starts`/`sg_ends`,
//!   which call the reference's own `ci_*` functions, so non-ASCII text (final sigma included)
//!   matches exactly as in the reference. Operands arrive folded from `validate` and are bound as
//!   they are, so `sg_fold(col) = ?` can use the expression index. Floats compare through `sg_r6`
//!   (rounded to 6 decimal places, as the reference does).
//! - tag_list and addressing values are JSON arrays in one TEXT column; their relations (`is`, `in`,
//!   `contains`, `type_is`, `name_*`, `is None`, and the negations) are `EXISTS` over
//!   `json_each(col)` that read each element like the reference (a string is a tag name, an object a
//!   link with the link rule and live names). There is no index on them: such a condition is checked
//!   on the rows the rest of the filter (and its indexes) leaves; a link test (`is`/`in`/`contains`)
//!   first looks for the id's digits in the column text, and `type_is` for the quoted type name,
//!   which skips most rows without parsing (the column is serde_json's compact text).
//! - Lists and groups of any length compile: `in` lists and filter groups are balanced trees of
//!   `OR`/`AND` (SQLite refuses expressions nested deeper than 1,000), an integer `in` list longer
//!   than [`SHORT_IN_LIST`] is one JSON parameter read with `json_each` (one statement text for any
//!   length, no parameter limit), and a filter that still needs more than SQLite's 32,766 parameters
//!   is refused as `Invalid`, naming the count.

use rusqlite::types::Value as SqlValue;
use serde_json::Value as Json;

use super::catalog::{Catalog, TypeCat, folded};
use super::codec::{self, Shape, ident, lit};
use crate::filter::eval::{calendar_bucket, positive_form, shift};
use crate::filter::{
    Condition, EntitySource, FieldPath, Filter, Hop, LogicalOp, Operand, Operator, matches,
};
use crate::model::{DataType, DateTime, Entity, EntityRef, Value};
use crate::query::{Direction, Sort};
use crate::store::StoreError;

/// An entity source with nothing in it: used to ask the reference how a test treats a null leaf.
struct NoSource;

impl EntitySource for NoSource {
    fn entity(&self, _: &str, _: i64) -> Option<&Entity> {
        None
    }
    fn is_cached_type(&self, _: &str) -> bool {
        false
    }
}

/// Rounds like the reference's float comparison (6 decimal places).
pub(crate) fn r6(x: f64) -> f64 {
    (x * 1e6).round()
}

pub(crate) struct Compiler<'a> {
    cat: &'a Catalog,
    now: DateTime,
    pub(crate) params: Vec<SqlValue>,
    aliases: usize,
}

fn col(alias: &str, c: &str) -> String {
    format!("{alias}.{}", ident(c))
}

fn b(v: bool) -> String {
    if v { "1".into() } else { "0".into() }
}

impl<'a> Compiler<'a> {
    pub(crate) fn new(cat: &'a Catalog, now: DateTime) -> Self {
        Compiler {
            cat,
            now,
            params: Vec::new(),
            aliases: 0,
        }
    }

    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("a{}", self.aliases)
    }

    fn param(&mut self, v: SqlValue) -> String {
        self.params.push(v);
        format!("?{}", self.params.len())
    }

    fn text(&mut self, s: &str) -> String {
        self.param(SqlValue::Text(s.to_owned()))
    }

    /// The cached types a link field may point at (all cached types when the schema lists none).
    fn candidate_types(&self, valid_types: &[String]) -> Vec<&'a TypeCat> {
        self.cat
            .types
            .values()
            .filter(|tc| {
                valid_types.is_empty() || valid_types.iter().any(|v| v == &tc.layout.entity_type)
            })
            .collect()
    }

    /// Whether the link `(type_expr, id_expr)` points at a cached, retired target.
    fn dropped(&mut self, valid_types: &[String], ty: &str, id: &str) -> String {
        let parts: Vec<String> = self
            .candidate_types(valid_types)
            .into_iter()
            .map(|tc| {
                let x = format!("x{}", self.aliases + 1);
                self.aliases += 1;
                format!(
                    "({ty} = {} AND EXISTS (SELECT 1 FROM {} {x} WHERE {x}.id = {id} AND {x}._retired = 1))",
                    lit(&tc.layout.entity_type),
                    tc.table()
                )
            })
            .collect();
        any_of(&parts)
    }

    /// The live name of the link `(type_expr, id_expr, stored_name_expr)` (assuming it is not dropped).
    fn live_name(&mut self, valid_types: &[String], ty: &str, id: &str, stored: &str) -> String {
        let arms: Vec<String> = self
            .candidate_types(valid_types)
            .into_iter()
            .map(|tc| {
                self.aliases += 1;
                let x = format!("x{}", self.aliases);
                format!(
                    "WHEN {ty} = {} AND EXISTS (SELECT 1 FROM {t} {x} WHERE {x}.id = {id}) \
                     THEN COALESCE((SELECT {x}._dn FROM {t} {x} WHERE {x}.id = {id}), {stored})",
                    lit(&tc.layout.entity_type),
                    t = tc.table()
                )
            })
            .collect();
        if arms.is_empty() {
            stored.to_owned()
        } else {
            format!("(CASE {} ELSE {stored} END)", arms.join(" "))
        }
    }

    /// `Invalid` (naming the count) when the statement compiled so far needs more SQL parameters
    /// than SQLite binds ([`MAX_SQL_PARAMS`]), which only a list of tens of thousands of
    /// non-integer values does; call it once the whole statement is compiled.
    pub(crate) fn check_params(&self, tc: &TypeCat) -> Result<(), StoreError> {
        if self.params.len() > MAX_SQL_PARAMS {
            return Err(StoreError::Invalid(format!(
                "the filter on {} has too many values: it needs {} SQL parameters, at most {MAX_SQL_PARAMS} \
                 are supported (split the query, or filter on ids, whose lists have no such limit)",
                tc.layout.entity_type,
                self.params.len()
            )));
        }
        Ok(())
    }

    /// A predicate over the whole filter for rows of `tc` aliased `alias`.
    pub(crate) fn filter(
        &mut self,
        f: &Filter,
        alias: &str,
        tc: &TypeCat,
    ) -> Result<String, StoreError> {
        match f {
            Filter::Condition(c) => self.condition(c, alias, tc),
            Filter::Group { children, .. } if children.is_empty() => Ok("1".into()),
            Filter::Group { op, children } => {
                let parts = children
                    .iter()
                    .map(|c| self.filter(c, alias, tc))
                    .collect::<Result<Vec<_>, _>>()?;
                let join = if *op == LogicalOp::And { "AND" } else { "OR" };
                Ok(balanced(&parts, join))
            }
        }
    }

    fn condition(
        &mut self,
        c: &Condition,
        alias: &str,
        tc: &TypeCat,
    ) -> Result<String, StoreError> {
        let (op, negated) = positive_form(c.operator);
        let probe = Condition {
            path: FieldPath {
                raw: c.path.leaf.clone(),
                hops: Vec::new(),
                leaf: "\u{0}null".into(),
                leaf_type: c.path.leaf_type,
                leaf_entity_type: c.path.leaf_entity_type.clone(),
            },
            operator: op,
            operand: c.operand.clone(),
        };
        let t0 = matches(
            &Filter::Condition(probe),
            &Entity::new("\u{0}", 0),
            &NoSource,
            self.now,
        );
        let p = self.any(&c.path.hops, c, op, t0, alias, tc)?;
        Ok(if negated {
            format!("NOT COALESCE({p}, 0)")
        } else {
            p
        })
    }

    fn field<'t>(
        &self,
        tc: &'t TypeCat,
        name: &str,
    ) -> Result<&'t crate::model::FieldSchema, StoreError> {
        tc.field(name).ok_or_else(|| {
            StoreError::Invalid(format!(
                "field {}.{name} is not cached, so it cannot be filtered on",
                tc.layout.entity_type
            ))
        })
    }

    fn any(
        &mut self,
        hops: &[Hop],
        c: &Condition,
        op: Operator,
        t0: bool,
        a: &str,
        tc: &TypeCat,
    ) -> Result<String, StoreError> {
        let Some((hop, rest)) = hops.split_first() else {
            return self.leaf(c, op, a, tc);
        };
        let f = self.field(tc, &hop.field)?;
        let target = self.cat.types.get(&hop.target_type);
        let tlit = lit(&hop.target_type);
        if !hop.multi {
            let Some(ttc) = target else { return Ok(b(t0)) };
            let (ft, fid) = (
                col(a, &codec::link_type_col(&f.name)),
                col(a, &codec::link_id_col(&f.name)),
            );
            let h = self.alias();
            let inner = self.any(rest, c, op, t0, &h, ttc)?;
            let pos = format!(
                "({ft} = {tlit} AND {fid} IN (SELECT {h}.id FROM {t} {h} WHERE {h}._retired = 0 AND {inner}))",
                t = ttc.table()
            );
            if !t0 {
                return Ok(pos);
            }
            let h2 = self.alias();
            Ok(format!(
                "({pos} OR NOT ({ft} IS NOT NULL AND {ft} = {tlit} AND EXISTS (SELECT 1 FROM {t} {h2} WHERE {h2}.id = {fid} AND {h2}._retired = 0)))",
                t = ttc.table()
            ))
        } else {
            let m = tc.multi_table();
            let fl = lit(&f.name);
            let valid = f.valid_types.clone();
            let pos = match target {
                None => "0".to_owned(),
                Some(ttc) => {
                    let (mm, h) = (self.alias(), self.alias());
                    let inner = self.any(rest, c, op, t0, &h, ttc)?;
                    format!(
                        "{a}.id IN (SELECT {mm}.src_id FROM {m} {mm} WHERE {mm}.field = {fl} AND {mm}.dst_type = {tlit} AND \
                         {mm}.dst_id IN (SELECT {h}.id FROM {t} {h} WHERE {h}._retired = 0 AND {inner}))",
                        t = ttc.table()
                    )
                }
            };
            if !t0 {
                return Ok(pos);
            }
            let m1 = self.alias();
            let d1 = self.dropped(&valid, &format!("{m1}.dst_type"), &format!("{m1}.dst_id"));
            let no_live = format!(
                "NOT EXISTS (SELECT 1 FROM {m} {m1} WHERE {m1}.src_id = {a}.id AND {m1}.field = {fl} AND NOT {d1})"
            );
            let m2 = self.alias();
            let d2 = self.dropped(&valid, &format!("{m2}.dst_type"), &format!("{m2}.dst_id"));
            let live_t = match target {
                None => "0".to_owned(),
                Some(ttc) => {
                    let h = self.alias();
                    format!(
                        "({m2}.dst_type = {tlit} AND EXISTS (SELECT 1 FROM {t} {h} WHERE {h}.id = {m2}.dst_id AND {h}._retired = 0))",
                        t = ttc.table()
                    )
                }
            };
            let other = format!(
                "EXISTS (SELECT 1 FROM {m} {m2} WHERE {m2}.src_id = {a}.id AND {m2}.field = {fl} AND NOT {d2} AND NOT {live_t})"
            );
            Ok(format!("({pos} OR {no_live} OR {other})"))
        }
    }

    /// The positive test on a leaf of the row aliased `a` (a null value passes exactly when the
    /// reference's test passes on null).
    fn leaf(
        &mut self,
        c: &Condition,
        op: Operator,
        a: &str,
        tc: &TypeCat,
    ) -> Result<String, StoreError> {
        use Operator::*;
        let name = c.path.leaf.as_str();
        let (dt, f) = if name == "id" {
            (DataType::Number, None)
        } else {
            let f = self.field(tc, name)?;
            (f.data_type, Some(f))
        };
        let unsupported = || {
            StoreError::Invalid(format!(
                "relation {} on {}.{name} ({}) is not supported by the SQLite store",
                c.operator.as_str(),
                tc.layout.entity_type,
                dt.as_str()
            ))
        };
        let cx = col(a, name);
        let shape = Shape::of(dt);
        match (shape, dt) {
            (_, DataType::TagList | DataType::Addressing) => self
                .json_links_leaf(op, &c.operand, &cx)
                .ok_or_else(unsupported),
            (Shape::Text, DataType::EntityType) => match (op, &c.operand) {
                (Is, Operand::One(Value::Null)) => Ok(format!("({cx} IS NULL OR {cx} = '')")),
                (Is, Operand::One(Value::Text(x))) => Ok(format!("{cx} = {}", self.text(x))),
                (In, Operand::Many(xs)) => {
                    let ps: Vec<String> = xs
                        .iter()
                        .filter_map(|x| {
                            if let Value::Text(x) = x {
                                Some(self.text(x))
                            } else {
                                None
                            }
                        })
                        .collect();
                    Ok(if ps.is_empty() {
                        "0".into()
                    } else {
                        format!("{cx} IN ({})", ps.join(", "))
                    })
                }
                _ => Err(unsupported()),
            },
            (Shape::Text, DataType::Uuid) => match (op, &c.operand) {
                (Is, Operand::One(Value::Null)) => Ok(format!("({cx} IS NULL OR {cx} = '')")),
                (Is, Operand::One(x)) => Ok(self.uuid_eq(&cx, x)),
                (In, Operand::Many(xs)) => {
                    let ps: Vec<String> = xs.iter().map(|x| self.uuid_eq(&cx, x)).collect();
                    Ok(any_of(&ps))
                }
                _ => Err(unsupported()),
            },
            (Shape::Text, _) => {
                let nonempty = format!("{cx} <> ''");
                match (op, &c.operand) {
                    (Is, Operand::One(Value::Null)) => Ok(format!("({cx} IS NULL OR {cx} = '')")),
                    (Is, Operand::One(Value::Text(x))) if !x.is_empty() => {
                        Ok(format!("{} = {}", folded(&cx), self.text(x)))
                    }
                    (Is, Operand::One(_)) => Ok("0".into()),
                    (In, Operand::Many(xs)) => {
                        let ps: Vec<String> = xs
                            .iter()
                            .filter_map(|x| match x {
                                Value::Text(x) if !x.is_empty() => Some(self.text(x)),
                                _ => None,
                            })
                            .collect();
                        Ok(if ps.is_empty() {
                            "0".into()
                        } else {
                            format!("{} IN ({})", folded(&cx), ps.join(", "))
                        })
                    }
                    (Contains | StartsWith | EndsWith, Operand::One(Value::Text(x))) => {
                        let func = match op {
                            Contains => "sg_contains",
                            StartsWith => "sg_starts",
                            _ => "sg_ends",
                        };
                        Ok(format!("({nonempty} AND {func}({cx}, {}))", self.text(x)))
                    }
                    (Contains | StartsWith | EndsWith, Operand::One(_)) => Ok("0".into()),
                    _ => Err(unsupported()),
                }
            }
            (Shape::Int | Shape::Float, _) => {
                self.compare(op, &c.operand, &cx, shape == Shape::Float, Scale::Number)
            }
            (Shape::Bool, _) => match (op, &c.operand) {
                (Is, Operand::One(Value::Bool(v))) => {
                    Ok(format!("COALESCE({cx}, 0) = {}", i64::from(*v)))
                }
                (Is, Operand::One(_)) => Ok("0".into()),
                _ => Err(unsupported()),
            },
            (Shape::Date, _) => self.time(op, &c.operand, &cx, true),
            (Shape::DateTime, _) => self.time(op, &c.operand, &cx, false),
            (Shape::Image, _) => match (op, &c.operand) {
                (Is, Operand::One(Value::Null)) => Ok(format!(
                    "({cx} IS NULL OR (typeof({cx}) = 'text' AND sg_json_null({cx})))"
                )),
                (Is, Operand::One(_)) => Ok("0".into()),
                _ => Err(unsupported()),
            },
            (Shape::Json, DataType::Jsonb) => match (op, &c.operand) {
                (Is, Operand::One(Value::Null)) => {
                    Ok(format!("({cx} IS NULL OR sg_json_null({cx}))"))
                }
                (Is, Operand::One(Value::Json(x))) => {
                    Ok(format!("sg_json_eq({cx}, {})", self.text(&x.to_string())))
                }
                (Contains, Operand::One(Value::Json(x))) => Ok(format!(
                    "sg_json_contains({cx}, {})",
                    self.text(&x.to_string())
                )),
                (Is | Contains, Operand::One(_)) => Ok("0".into()),
                _ => Err(unsupported()),
            },
            (Shape::Link, _) => {
                let f = f.ok_or_else(unsupported)?;
                self.link_leaf(op, &c.operand, a, &f.name, &f.valid_types.clone())
                    .ok_or_else(unsupported)
            }
            (Shape::Multi, _) => {
                let f = f.ok_or_else(unsupported)?;
                let (fname, valid) = (f.name.clone(), f.valid_types.clone());
                self.multi_leaf(op, &c.operand, a, tc, &fname, &valid)
                    .ok_or_else(unsupported)
            }
            _ => Err(unsupported()),
        }
    }

    fn uuid_eq(&mut self, cx: &str, x: &Value) -> String {
        match x {
            Value::Text(x) => format!("sg_uuid_eq({cx}, {})", self.text(x)),
            _ => "0".into(),
        }
    }

    /// A numeric (or time) operand as SQL, with the reference's float rounding when either side is a float.
    fn num(&mut self, v: &Value, float_col: bool, scale: Scale) -> Option<(String, bool)> {
        Some(match (v, scale) {
            (Value::Int(i), Scale::Number) if !float_col => {
                (self.param(SqlValue::Integer(*i)), false)
            }
            (Value::Int(i), Scale::Number) => (self.param(SqlValue::Real(r6(*i as f64))), true),
            (Value::Float(x), Scale::Number) => (self.param(SqlValue::Real(r6(*x))), true),
            (Value::Date(d), Scale::Days) => {
                (self.param(SqlValue::Integer(d.days_since_epoch())), false)
            }
            (Value::DateTime(t), Scale::Days) => (self.param(SqlValue::Integer(t.0)), true),
            (Value::Date(d), Scale::Secs) => (
                self.param(SqlValue::Integer(d.days_since_epoch() * 86_400)),
                false,
            ),
            (Value::DateTime(t), Scale::Secs) => (self.param(SqlValue::Integer(t.0)), false),
            _ => return None,
        })
    }

    /// `is`/`in`/`less_than`/`greater_than`/`between` on numbers, dates and datetimes.
    fn compare(
        &mut self,
        op: Operator,
        operand: &Operand,
        cx: &str,
        float_col: bool,
        scale: Scale,
    ) -> Result<String, StoreError> {
        use Operator::*;
        // The column side of a comparison: floats are rounded; a date column compared with a datetime
        // operand is scaled to seconds.
        let lhs = |converted: bool| -> String {
            match scale {
                Scale::Number if float_col || converted => format!("sg_r6({cx})"),
                Scale::Days if converted => format!("({cx} * 86400)"),
                _ => cx.to_owned(),
            }
        };
        let one = |me: &mut Self, v: &Value, sym: &str| -> String {
            match me.num(v, float_col, scale) {
                Some((p, conv)) => format!("{} {sym} {p}", lhs(conv)),
                None => "0".into(),
            }
        };
        Ok(match (op, operand) {
            (Is, Operand::One(Value::Null)) => format!("{cx} IS NULL"),
            (Is, Operand::One(v)) => one(self, v, "="),
            (In, Operand::Many(vs))
                if vs.len() > SHORT_IN_LIST
                    && scale == Scale::Number
                    && !float_col
                    && vs.iter().all(|v| matches!(v, Value::Int(_))) =>
            {
                // A long list of integers (ids, mostly) is one JSON parameter: one statement text
                // for every length (the statement cache is not filled with one per length) and no
                // limit on the number of SQL parameters. Integers compare exactly, as `=` does.
                let ints: Vec<i64> = vs
                    .iter()
                    .filter_map(|v| match v {
                        Value::Int(i) => Some(*i),
                        _ => None,
                    })
                    .collect();
                let p = self.param(SqlValue::Text(
                    serde_json::to_string(&ints).unwrap_or_else(|_| "[]".into()),
                ));
                format!("{cx} IN (SELECT value FROM json_each({p}))")
            }
            (In, Operand::Many(vs)) => {
                let ps: Vec<String> = vs.iter().map(|v| one(self, v, "=")).collect();
                any_of(&ps)
            }
            (LessThan, Operand::One(v)) => one(self, v, "<"),
            (GreaterThan, Operand::One(v)) => one(self, v, ">"),
            (Between, Operand::Range(lo, hi)) => {
                let (lo, hi) = match crate::filter::eval::cmp_values(lo, hi) {
                    Some(std::cmp::Ordering::Greater) => (hi, lo),
                    Some(_) => (lo, hi),
                    None => return Ok("0".into()),
                };
                format!("({} AND {})", one(self, lo, ">="), one(self, hi, "<="))
            }
            _ => {
                return Err(StoreError::Invalid(format!(
                    "relation {} is not supported on {cx}",
                    op.as_str()
                )));
            }
        })
    }

    /// Date (`days`) or datetime columns: comparisons plus the relative and calendar relations.
    fn time(
        &mut self,
        op: Operator,
        operand: &Operand,
        cx: &str,
        days: bool,
    ) -> Result<String, StoreError> {
        use Operator::*;
        let scale = if days { Scale::Days } else { Scale::Secs };
        match (op, operand) {
            (InLast | InNext, Operand::Relative(n, unit)) => {
                let shifted = shift(self.now.0, if op == InLast { -*n } else { *n }, *unit);
                let (lo, hi) = if op == InLast {
                    (shifted, self.now.0)
                } else {
                    (self.now.0, shifted)
                };
                Ok(self.range(cx, days, lo, hi, true))
            }
            (
                InCalendarDay | InCalendarWeek | InCalendarMonth | InCalendarYear,
                Operand::Offset(k),
            ) => {
                let (lo, hi) = calendar_bucket(self.now.0, op, *k);
                Ok(self.range(cx, days, lo, hi, false))
            }
            _ => self.compare(op, operand, cx, false, scale),
        }
    }

    fn range(&mut self, cx: &str, days: bool, lo: i64, hi: i64, inclusive_hi: bool) -> String {
        let (lo, hi) = if days {
            (lo.div_euclid(86_400), hi.div_euclid(86_400))
        } else {
            (lo, hi)
        };
        let (lo, hi) = (
            self.param(SqlValue::Integer(lo)),
            self.param(SqlValue::Integer(hi)),
        );
        format!(
            "({cx} >= {lo} AND {cx} {} {hi})",
            if inclusive_hi { "<=" } else { "<" }
        )
    }

    /// The reference's name test on a live-name expression.
    fn name_test(&mut self, op: Operator, x: &str, name: &str) -> Option<String> {
        let p = self.text(x);
        Some(match op {
            Operator::NameIs => format!("{} = {p}", folded(name)),
            Operator::NameContains => format!("sg_contains({name}, {p})"),
            Operator::NameStartsWith => format!("sg_starts({name}, {p})"),
            Operator::NameEndsWith => format!("sg_ends({name}, {p})"),
            _ => return None,
        })
    }

    /// Whether a fixed link target is cached and retired (an uncorrelated test SQLite runs once).
    fn target_retired(&mut self, r: &EntityRef) -> String {
        match self.cat.types.get(&r.entity_type) {
            None => "0".into(),
            Some(tc) => {
                let x = self.alias();
                format!(
                    "EXISTS (SELECT 1 FROM {} {x} WHERE {x}.id = {} AND {x}._retired = 1)",
                    tc.table(),
                    self.param(SqlValue::Integer(r.id))
                )
            }
        }
    }

    fn link_leaf(
        &mut self,
        op: Operator,
        operand: &Operand,
        a: &str,
        f: &str,
        valid: &[String],
    ) -> Option<String> {
        use Operator::*;
        let (ft, fid, fname) = (
            col(a, &codec::link_type_col(f)),
            col(a, &codec::link_id_col(f)),
            col(a, &codec::link_name_col(f)),
        );
        let dropped = self.dropped(valid, &ft, &fid);
        let live = format!("({ft} IS NOT NULL AND NOT {dropped})");
        let is_link = |me: &mut Self, r: &EntityRef| -> String {
            let retired = me.target_retired(r);
            format!(
                "({ft} = {} AND {fid} = {} AND NOT {retired})",
                me.text(&r.entity_type),
                me.param(SqlValue::Integer(r.id))
            )
        };
        Some(match (op, operand) {
            (Is, Operand::One(Value::Null)) => format!("NOT {live}"),
            (Is, Operand::One(Value::Entity(r))) => is_link(self, r),
            (Is, Operand::One(_)) => "0".into(),
            (In, Operand::Many(rs)) => {
                let ps: Vec<String> = rs
                    .iter()
                    .map(|v| {
                        if let Value::Entity(r) = v {
                            is_link(self, r)
                        } else {
                            "0".into()
                        }
                    })
                    .collect();
                any_of(&ps)
            }
            (TypeIs, Operand::Text(t)) => format!("({ft} = {} AND {live})", self.text(t)),
            (NameIs | NameContains | NameStartsWith | NameEndsWith, Operand::Text(x)) => {
                let name = self.live_name(valid, &ft, &fid, &fname);
                let test = self.name_test(op, x, &name)?;
                format!("({live} AND {test})")
            }
            _ => return None,
        })
    }

    fn multi_leaf(
        &mut self,
        op: Operator,
        operand: &Operand,
        a: &str,
        tc: &TypeCat,
        f: &str,
        valid: &[String],
    ) -> Option<String> {
        use Operator::*;
        let m = tc.multi_table();
        let fl = lit(f);
        let contains = |me: &mut Self, r: &EntityRef| -> String {
            let mm = me.alias();
            let retired = me.target_retired(r);
            format!(
                "({a}.id IN (SELECT {mm}.src_id FROM {m} {mm} WHERE {mm}.field = {fl} AND {mm}.dst_id = {} AND {mm}.dst_type = {}) AND NOT {retired})",
                me.param(SqlValue::Integer(r.id)),
                me.text(&r.entity_type)
            )
        };
        let mm = self.alias();
        let (ty, id, stored) = (
            format!("{mm}.dst_type"),
            format!("{mm}.dst_id"),
            format!("{mm}.name"),
        );
        let dropped = self.dropped(valid, &ty, &id);
        let live_el = format!("{mm}.src_id = {a}.id AND {mm}.field = {fl} AND NOT {dropped}");
        Some(match (op, operand) {
            (Is, Operand::One(Value::Null)) => {
                format!("NOT EXISTS (SELECT 1 FROM {m} {mm} WHERE {live_el})")
            }
            (Is, Operand::One(Value::Entity(r))) => contains(self, r),
            (Is, Operand::One(_)) => "0".into(),
            (In, Operand::Many(rs)) => {
                let ps: Vec<String> = rs
                    .iter()
                    .map(|v| {
                        if let Value::Entity(r) = v {
                            contains(self, r)
                        } else {
                            "0".into()
                        }
                    })
                    .collect();
                any_of(&ps)
            }
            (TypeIs, Operand::Text(t)) => {
                format!(
                    "EXISTS (SELECT 1 FROM {m} {mm} WHERE {live_el} AND {ty} = {})",
                    self.text(t)
                )
            }
            (NameIs | NameContains | NameStartsWith | NameEndsWith, Operand::Text(x)) => {
                let name = self.live_name(valid, &ty, &id, &stored);
                let test = self.name_test(op, x, &name)?;
                format!("EXISTS (SELECT 1 FROM {m} {mm} WHERE {live_el} AND {test})")
            }
            _ => return None,
        })
    }

    /// tag_list and addressing: the JSON array in the column `cx`, read element by element
    /// (`json_each`) exactly as the reference's `any_link` reads it: a string element is a tag
    /// (type `Tag`, no id, the string as its name); an object element is a link (its `type` when a
    /// string, else `""`; its `id` when an integer; its stored `name` when a string) under the link
    /// rule (dropped when the target is cached and retired, live name when it is cached); any other
    /// element, and a value that is not an array, has no links. Any cached type may be a target
    /// (the reference does not restrict JSON links to `valid_types`).
    fn json_links_leaf(&mut self, op: Operator, operand: &Operand, cx: &str) -> Option<String> {
        use Operator::*;
        let j = self.alias();
        // `json_each` fails on malformed JSON, and a non-array value has no elements: feed it only
        // valid arrays (CASE evaluates lazily, so `json_type` never sees invalid JSON).
        let array = format!(
            "(CASE WHEN json_valid({cx}) THEN (CASE WHEN json_type({cx}) = 'array' THEN {cx} END) END)"
        );
        // One row per element that can be a link, with its type, id and stored name computed once
        // (`LIMIT -1` keeps SQLite from flattening the subquery, which would recompute them in
        // every test that reads them).
        let e = self.alias();
        let elements = format!(
            "(SELECT (CASE WHEN {j}.type = 'text' THEN 'Tag' WHEN json_type({j}.value, '$.type') = 'text' \
             THEN json_extract({j}.value, '$.type') ELSE '' END) AS t, \
             (CASE WHEN {j}.type = 'object' THEN (CASE WHEN json_type({j}.value, '$.id') = 'integer' \
             THEN json_extract({j}.value, '$.id') END) END) AS i, \
             (CASE WHEN {j}.type = 'text' THEN {j}.value WHEN json_type({j}.value, '$.name') = 'text' \
             THEN json_extract({j}.value, '$.name') END) AS n, {j}.type AS k \
             FROM json_each({array}) {j} WHERE {j}.type IN ('text', 'object') LIMIT -1) {e}"
        );
        let (ty, id, stored) = (format!("{e}.t"), format!("{e}.i"), format!("{e}.n"));
        // Tags (string elements) have no id, so they are never dropped and read their own name.
        let dropped = format!(
            "(CASE WHEN {e}.k = 'object' THEN {} ELSE 0 END)",
            self.dropped(&[], &ty, &id)
        );
        let live = format!(
            "(CASE WHEN {e}.k = 'text' THEN {stored} ELSE {} END)",
            self.live_name(&[], &ty, &id, &stored)
        );
        // "Some live element satisfies `test`" (the test first: the link rule costs a lookup per
        // cached type, so it is only evaluated on elements that pass).
        let any = |test: &str| -> String {
            format!("EXISTS (SELECT 1 FROM {elements} WHERE {test} AND NOT {dropped})")
        };
        let is_link = |me: &mut Self, r: &EntityRef| -> String {
            // The target of a fixed link is dropped or not as a whole: test that once, outside.
            let retired = me.target_retired(r);
            // A cheap necessary condition first: the column is serde_json's compact text
            // (`codec::encode_field`), where an integer id is written as its decimal digits.
            let digits = me.text(&r.id.to_string());
            let test = format!(
                "{id} = {} AND {ty} = {}",
                me.param(SqlValue::Integer(r.id)),
                me.text(&r.entity_type)
            );
            format!(
                "(instr({cx}, {digits}) > 0 AND {} AND NOT {retired})",
                any(&test)
            )
        };
        Some(match (op, operand) {
            (Is, Operand::One(Value::Null)) => format!(
                "({cx} IS NULL OR (CASE WHEN json_valid({cx}) THEN json_type({cx}) END) = 'null' \
                 OR ({array} IS NOT NULL AND NOT {}))",
                any("1")
            ),
            (Is | Contains, Operand::One(Value::Entity(r))) => is_link(self, r),
            (Is, Operand::One(Value::Text(name))) => {
                let p = self.text(name);
                any(&format!("sg_eq({live}, {p})"))
            }
            (Is | Contains, Operand::One(_)) => "0".into(),
            (In, Operand::Many(xs)) => {
                let ps: Vec<String> = xs
                    .iter()
                    .map(|x| match x {
                        Value::Entity(r) => is_link(self, r),
                        Value::Text(name) => {
                            let p = self.text(name);
                            any(&format!("sg_eq({live}, {p})"))
                        }
                        _ => "0".into(),
                    })
                    .collect();
                any_of(&ps)
            }
            (TypeIs, Operand::Text(t)) => {
                let p = self.text(t);
                let test = any(&format!("{ty} = {p}"));
                if t == "Tag" {
                    // Tag names read as type `Tag` without the word in the text.
                    test
                } else {
                    // As for ids: serde_json writes the type string exactly as this needle.
                    let needle = self.text(&Json::String(t.clone()).to_string());
                    format!("(instr({cx}, {needle}) > 0 AND {test})")
                }
            }
            (NameIs, Operand::Text(x)) => {
                let p = self.text(x);
                any(&format!("sg_eq({live}, {p})"))
            }
            (NameContains | NameStartsWith | NameEndsWith, Operand::Text(x)) => {
                let test = self.name_test(op, x, &live)?;
                any(&test)
            }
            _ => return None,
        })
    }

    /// `ORDER BY` terms for the sorts (the final `id` tiebreak included).
    pub(crate) fn order_by(
        &mut self,
        sorts: &[Sort],
        a: &str,
        tc: &TypeCat,
    ) -> Result<String, StoreError> {
        let mut terms = Vec::new();
        for s in sorts {
            let dir = if s.direction == Direction::Desc {
                "DESC"
            } else {
                "ASC"
            };
            for e in self.sort_exprs(&s.path, a, tc)? {
                terms.push(format!("{e} {dir}"));
            }
        }
        terms.push(format!("{a}.id ASC"));
        Ok(terms.join(", "))
    }

    /// The SQL expressions whose tuple orders rows like the reference's sort key of `path`.
    fn sort_exprs(
        &mut self,
        path: &FieldPath,
        a: &str,
        tc: &TypeCat,
    ) -> Result<Vec<String>, StoreError> {
        if path.hops.iter().any(|h| h.multi) {
            return Ok(Vec::new());
        }
        self.sort_at(&path.hops, path, a, tc)
    }

    fn sort_at(
        &mut self,
        hops: &[Hop],
        path: &FieldPath,
        a: &str,
        tc: &TypeCat,
    ) -> Result<Vec<String>, StoreError> {
        let Some((hop, rest)) = hops.split_first() else {
            return self.sort_leaf(&path.leaf, a, tc);
        };
        let f = self.field(tc, &hop.field)?;
        let Some(ttc) = self.cat.types.get(&hop.target_type) else {
            return Ok(Vec::new());
        };
        let (ft, fid) = (
            col(a, &codec::link_type_col(&f.name)),
            col(a, &codec::link_id_col(&f.name)),
        );
        let h = self.alias();
        let inner = self.sort_at(rest, path, &h, ttc)?;
        Ok(inner
            .into_iter()
            .map(|e| {
                format!(
                    "(SELECT {e} FROM {t} {h} WHERE {h}.id = {fid} AND {ft} = {} AND {h}._retired = 0)",
                    lit(&hop.target_type),
                    t = ttc.table()
                )
            })
            .collect())
    }

    fn sort_leaf(&mut self, leaf: &str, a: &str, tc: &TypeCat) -> Result<Vec<String>, StoreError> {
        if leaf == "id" {
            return Ok(vec![format!("{a}.id")]);
        }
        let f = self.field(tc, leaf)?;
        let cx = col(a, leaf);
        Ok(match Shape::of(f.data_type) {
            Shape::Text => vec![format!("sg_lower(NULLIF({cx}, ''))")],
            Shape::Int | Shape::Bool | Shape::Date | Shape::DateTime => vec![cx],
            Shape::Float => vec![format!("sg_r6({cx})")],
            Shape::Image => vec![format!(
                "(CASE WHEN typeof({cx}) = 'integer' THEN {cx} END)"
            )],
            Shape::Json | Shape::Multi => Vec::new(),
            Shape::Link => {
                let valid = f.valid_types.clone();
                let (ft, fid, fname) = (
                    col(a, &codec::link_type_col(leaf)),
                    col(a, &codec::link_id_col(leaf)),
                    col(a, &codec::link_name_col(leaf)),
                );
                let dropped = self.dropped(&valid, &ft, &fid);
                let live = format!("({ft} IS NOT NULL AND NOT {dropped})");
                let name = self.live_name(&valid, &ft, &fid, &fname);
                vec![
                    format!("(CASE WHEN {live} THEN 1 END)"),
                    format!("(CASE WHEN {live} THEN sg_lower({name}) END)"),
                    format!("(CASE WHEN {live} THEN {ft} END)"),
                    format!("(CASE WHEN {live} THEN {fid} END)"),
                ]
            }
        })
    }
}

/// What a numeric column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scale {
    Number,
    Days,
    Secs,
}

/// SQLite's limit on the parameters of one statement (`SQLITE_MAX_VARIABLE_NUMBER` of the bundled
/// build).
const MAX_SQL_PARAMS: usize = 32_766;

/// Integer `in` lists up to this length compile to one `=` per value (the planner sees each);
/// longer ones to one `IN (SELECT value FROM json_each(?))`.
const SHORT_IN_LIST: usize = 16;

/// `(p1 OR p2 OR ...)` as a balanced tree of `OR`s (see [`balanced`]); `0` for no parts.
fn any_of(parts: &[String]) -> String {
    if parts.is_empty() {
        "0".into()
    } else {
        balanced(parts, "OR")
    }
}

/// The parts joined by `op` (`AND` or `OR`, both associative in SQL's three-valued logic) as a
/// balanced tree of parenthesised halves. SQLite parses `a OR b OR c ...` into a chain as deep as
/// the list is long and refuses an expression deeper than 1,000 (`SQLITE_MAX_EXPR_DEPTH`), so
/// `id in [<1,000 ids>]` or a group of 1,000 conditions failed; halves keep the depth at
/// log2 of the length.
fn balanced(parts: &[String], op: &str) -> String {
    match parts {
        [] => "1".into(),
        [one] => format!("({one})"),
        _ => {
            let (left, right) = parts.split_at(parts.len() / 2);
            let side = |half: &[String]| match half {
                [one] => one.clone(),
                _ => balanced(half, op),
            };
            format!("({} {op} {})", side(left), side(right))
        }
    }
}
