//! Filters and sorts compiled to ReQL that runs in the database, and the secondary indexes they use.
//!
//! # What runs where
//! - **Index selection**: one condition of the top-level `and` on `id` or an indexed field narrows the
//!   scan: `get_all` for `is`/`in` (numbers, dates, datetimes, case-insensitive text through the
//!   lowercase shadow, entity_type, links by `[type, id]`, multi_entity through a multi index),
//!   `between` for `less_than`/`greater_than`/`between`. The whole filter is still applied on top.
//! - **Predicates**: every condition compiles to a ReQL predicate that reproduces `filter::eval`
//!   exactly, including negation (`NOT` of the positive form), null rules, case-insensitive text
//!   (the `lc` shadow holds Unicode lowercase), float equality at 6 decimal places (`round`), the
//!   link rule (a sub-query reads the target's `retired`), deep links through entity and
//!   multi_entity hops (sub-queries `r.table(T).get(link.id)`, `contains` for "any linked row"),
//!   and relative dates (window bounds computed here with the reference's own calendar arithmetic).
//! - **Not expressed in ReQL** (the predicate is then `true` for that condition, marked inexact, and
//!   the reader finishes the filter in Rust with `filter::matches` on the candidates the rest of the
//!   filter leaves): uuid normalisation, JSON-valued fields (jsonb containment, tag_list, addressing,
//!   url/serializable), `name_*` relations (live names of uncached targets would need Unicode
//!   lowercase of stored link names inside lists), date fields compared with datetime operands,
//!   bounds outside the representable calendar, and case-insensitive text operands holding `σ`
//!   (the reference folds `ς` to `σ`, the `lc` shadows keep it; see `folds_like_shadow`).
//! - **Sorting** uses the same value expressions: `order_by` with one key per sort (lowercase shadows
//!   for text, `round(x·1e6)` for floats, live name / type / id for links), then `id` ascending.

use ql2::term::TermType as T;
use serde_json::{Value as Json, json};

use super::RethinkStore;
use super::doc::{Kind, encode_value, kind_of};
use super::term::{
    Term, and, array, asc, branch, contains_fn, default, desc, eq, field, func1, ge, get, gt,
    is_empty, le, lit, lt, map, matches_re, ne, not, op, or, regex_escape, table,
};
use crate::filter::ast::{Condition, FieldPath, Filter, Hop, LogicalOp, Operand, Operator};
use crate::filter::eval::{calendar_bucket, cmp_values, positive_form, shift};
use crate::filter::validate::is_case_insensitive_text;
use crate::model::{DataType, Date, DateTime, Value};
use crate::query::{Direction, Sort};
use crate::store::TypeLayout;

/// The secondary indexes of a type: `(name, function, multi)`.
pub(crate) fn index_defs(layout: &TypeLayout) -> Vec<(String, Term, bool)> {
    let mut out = Vec::new();
    for name in &layout.indexed {
        let Some(fs) = layout.fields.iter().find(|f| &f.name == name) else {
            continue;
        };
        let n = name.clone();
        let def = match kind_of(fs.data_type) {
            Kind::Int | Kind::Float | Kind::Date | Kind::DateTime | Kind::Bool => {
                Some((func1(|row| field(field(row, "f"), &n)), false))
            }
            Kind::Text if is_case_insensitive_text(fs.data_type) => {
                Some((func1(|row| field(field(row, "lc"), &n)), false))
            }
            Kind::Text => Some((func1(|row| field(field(row, "f"), &n)), false)),
            // A null link gets a sentinel key no query asks for, so the index function never fails.
            Kind::Link => Some((
                func1(|row| {
                    let l = default(field(field(row, "f"), &n), Json::Null);
                    let key = func1(|l| {
                        branch(
                            eq(l.clone(), Json::Null),
                            array(vec![json!(""), json!(0)]),
                            array(vec![field(l.clone(), "type"), field(l, "id")]),
                        )
                    });
                    op(T::Funcall, vec![key, l])
                }),
                false,
            )),
            Kind::Links => Some((
                func1(|row| {
                    map(default(field(field(row, "f"), &n), json!([])), |l| {
                        array(vec![field(l.clone(), "type"), field(l, "id")])
                    })
                }),
                true,
            )),
            Kind::Other => None,
        };
        if let Some((f, multi)) = def {
            out.push((format!("f_{name}"), f, multi));
        }
    }
    out
}

/// How the scan is narrowed by an index.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum IndexPlan {
    /// `get_all(keys, index)`; `index = "id"` is the primary key.
    GetAll { index: String, keys: Vec<Json> },
    /// `between(lo, hi, index)`; `None` bounds are open ends (minval/maxval).
    Between {
        index: String,
        lo: Option<Json>,
        hi: Option<Json>,
        lo_open: bool,
        hi_open: bool,
    },
}

impl IndexPlan {
    /// The narrowed selection of `tbl`.
    pub(crate) fn apply(&self, tbl: Term) -> Term {
        match self {
            IndexPlan::GetAll { index, keys } if index == "id" => {
                super::term::get_all(tbl, keys, None)
            }
            IndexPlan::GetAll { index, keys } => super::term::get_all(tbl, keys, Some(index)),
            IndexPlan::Between {
                index,
                lo,
                hi,
                lo_open,
                hi_open,
            } => super::term::op_opts(
                T::Between,
                vec![
                    tbl,
                    lo.as_ref()
                        .map(lit)
                        .unwrap_or_else(|| op(T::Minval, vec![])),
                    hi.as_ref()
                        .map(lit)
                        .unwrap_or_else(|| op(T::Maxval, vec![])),
                ],
                json!({
                    "index": index,
                    "left_bound": if *lo_open { "open" } else { "closed" },
                    "right_bound": if *hi_open { "open" } else { "closed" },
                }),
            ),
        }
    }
}

/// Picks one condition of the top-level `and` that an index can serve.
pub(crate) fn index_plan(filter: &Filter, layout: &TypeLayout) -> Option<IndexPlan> {
    let children: Vec<&Filter> = match filter {
        Filter::Condition(_) => vec![filter],
        Filter::Group {
            op: LogicalOp::And,
            children,
        } => children.iter().collect(),
        Filter::Group { .. } => return None,
    };
    children.into_iter().find_map(|c| match c {
        Filter::Condition(c) => condition_plan(c, layout),
        Filter::Group { .. } => None,
    })
}

fn condition_plan(c: &Condition, layout: &TypeLayout) -> Option<IndexPlan> {
    if c.path.is_deep() {
        return None;
    }
    let (index, kind, ci) = if c.path.leaf == "id" {
        ("id".to_owned(), Kind::Int, false)
    } else {
        if !layout.indexed.iter().any(|f| f == &c.path.leaf) {
            return None;
        }
        let dt = layout
            .fields
            .iter()
            .find(|f| f.name == c.path.leaf)?
            .data_type;
        (
            format!("f_{}", c.path.leaf),
            kind_of(dt),
            is_case_insensitive_text(dt),
        )
    };
    let key = |v: &Value| -> Option<Json> {
        match (kind, v) {
            (Kind::Int, Value::Int(_))
            | (Kind::Date, Value::Date(_))
            | (Kind::DateTime, Value::DateTime(_)) => Some(encode_value(v, kind)),
            (Kind::Bool, Value::Bool(true)) => Some(json!(true)),
            // See `folds_like_shadow`: an operand with `σ` cannot be looked up in the shadow index.
            (Kind::Text, Value::Text(s)) if !s.is_empty() && (!ci || folds_like_shadow(s)) => {
                Some(json!(if ci { s.to_lowercase() } else { s.clone() }))
            }
            (Kind::Link | Kind::Links, Value::Entity(r)) => Some(json!([r.entity_type, r.id])),
            _ => None,
        }
    };
    match (c.operator, &c.operand) {
        (Operator::Is, Operand::One(x)) => Some(IndexPlan::GetAll {
            index,
            keys: vec![key(x)?],
        }),
        (Operator::In, Operand::Many(xs)) if !xs.is_empty() => Some(IndexPlan::GetAll {
            index,
            keys: xs.iter().map(key).collect::<Option<Vec<_>>>()?,
        }),
        (Operator::LessThan | Operator::GreaterThan | Operator::Between, _)
            if matches!(kind, Kind::Int | Kind::Date | Kind::DateTime) =>
        {
            let plain = |v: &Value| match (kind, v) {
                (Kind::Int, Value::Int(_))
                | (Kind::Date, Value::Date(_))
                | (Kind::DateTime, Value::DateTime(_)) => Some(encode_value(v, kind)),
                _ => None,
            };
            match (c.operator, &c.operand) {
                (Operator::LessThan, Operand::One(x)) => Some(IndexPlan::Between {
                    index,
                    lo: None,
                    hi: Some(plain(x)?),
                    lo_open: false,
                    hi_open: true,
                }),
                (Operator::GreaterThan, Operand::One(x)) => Some(IndexPlan::Between {
                    index,
                    lo: Some(plain(x)?),
                    hi: None,
                    lo_open: true,
                    hi_open: false,
                }),
                (Operator::Between, Operand::Range(a, b)) => {
                    let (a, b) = match cmp_values(a, b)? {
                        std::cmp::Ordering::Greater => (b, a),
                        _ => (a, b),
                    };
                    Some(IndexPlan::Between {
                        index,
                        lo: Some(plain(a)?),
                        hi: Some(plain(b)?),
                        lo_open: false,
                        hi_open: false,
                    })
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Compiles filters and sorts for one store (table names are resolved inside the query).
pub(crate) struct Compiler<'a> {
    pub(crate) store: &'a RethinkStore,
    pub(crate) now: DateTime,
}

/// A predicate and whether it is exactly the reference semantics (else a superset).
type Pred = (Term, bool);

/// Whether a folded text operand (`eval::fold`) compares against the `lc` shadows
/// (`str::to_lowercase`) exactly as against the fold. The two differ only in sigma: the fold writes
/// every `σ`/`ς` as `σ`, a shadow keeps a stored `ς` or `σ` and lowercases `Σ` by position. An
/// operand without `σ` (a fold never holds `ς`) therefore matches a shadow exactly where it matches
/// the fold; one with `σ` is decided in Rust (and gets no index lookup).
fn folds_like_shadow(folded: &str) -> bool {
    !folded.contains('σ')
}

/// A condition ReQL cannot express exactly: `true` here, decided in Rust.
fn inexact() -> Pred {
    (json!(true), false)
}

impl Compiler<'_> {
    /// The live table of a type given as a term (e.g. a link's `type`).
    /// The stored document `id` of type `type_term` (a term), or null when the type is not cached or
    /// the document is missing. Written with explicit branches rather than relying on `default` to
    /// catch errors on null.
    fn lookup(&self, type_term: Term, id: Term) -> Term {
        // `default(.., null)` turns reqlite's "missing document" value into null (a no-op on RethinkDB).
        let copies = default(get(self.store.tbl("copies"), type_term), Json::Null);
        self.let_(copies, |c| {
            branch(
                eq(c.clone(), Json::Null),
                Json::Null,
                default(
                    get(table(self.store.database(), field(c, "live")), id),
                    Json::Null,
                ),
            )
        })
    }

    /// The stored target of a (non-null) link, or null (missing, uncached type).
    fn target(&self, link: Term) -> Term {
        self.lookup(field(link.clone(), "type"), field(link, "id"))
    }

    /// The link rule for a (non-null) link: dropped when its target is cached and retired.
    fn alive(&self, link: Term) -> Term {
        let t = self.target(link);
        self.let_(t, |t| {
            branch(
                eq(t.clone(), Json::Null),
                json!(true),
                not(field(t, "retired")),
            )
        })
    }

    /// `let x = value in body(x)`.
    fn let_(&self, value: Term, body: impl FnOnce(Term) -> Term) -> Term {
        op(T::Funcall, vec![func1(body), value])
    }

    /// The whole filter as a predicate on `row`.
    pub(crate) fn filter(&self, f: &Filter, row: &Term) -> Pred {
        match f {
            Filter::Condition(c) => self.condition(c, row),
            Filter::Group {
                op: LogicalOp::And,
                children,
            } => {
                let parts: Vec<Pred> = children.iter().map(|c| self.filter(c, row)).collect();
                let exact = parts.iter().all(|p| p.1);
                (and(parts.into_iter().map(|p| p.0).collect()), exact)
            }
            Filter::Group {
                op: LogicalOp::Or,
                children,
            } => {
                if children.is_empty() {
                    return (json!(true), true);
                }
                let parts: Vec<Pred> = children.iter().map(|c| self.filter(c, row)).collect();
                let exact = parts.iter().all(|p| p.1);
                (or(parts.into_iter().map(|p| p.0).collect()), exact)
            }
        }
    }

    fn condition(&self, c: &Condition, row: &Term) -> Pred {
        let (pos, negated) = positive_form(c.operator);
        // Check once that the leaf test is expressible (on a null leaf, the cheapest probe).
        if self.leaf_test(pos, c, json!(null), json!(null)).is_none() {
            return inexact();
        }
        let mut ok = true;
        let hit = self.any_leaf(&c.path.hops, &c.path, row.clone(), &mut |v, lc| match self
            .leaf_test(pos, c, v, lc)
        {
            Some(t) => t,
            None => {
                ok = false;
                json!(true)
            }
        });
        if !ok {
            return inexact();
        }
        (if negated { not(hit) } else { hit }, true)
    }

    /// Mirrors `eval::any_leaf`: `f(value, lowercase shadow)` on every leaf the path reaches from
    /// `doc` (null where a hop reads null), or-ed together.
    fn any_leaf(
        &self,
        hops: &[Hop],
        path: &FieldPath,
        doc: Term,
        f: &mut dyn FnMut(Term, Term) -> Term,
    ) -> Term {
        let Some((hop, rest)) = hops.split_first() else {
            if path.leaf == "id" {
                return f(field(doc, "id"), Json::Null);
            }
            let v = default(field(field(doc.clone(), "f"), &path.leaf), Json::Null);
            let lc = default(field(field(doc, "lc"), &path.leaf), Json::Null);
            return f(v, lc);
        };
        let on_null = f(Json::Null, Json::Null);
        let link_v = default(field(field(doc, "f"), &hop.field), Json::Null);
        if hop.multi {
            let list = op(
                T::Filter,
                vec![default(link_v, json!([])), func1(|l| self.alive(l))],
            );
            let on_null2 = on_null.clone();
            let follow = self.follow_fn(hop, rest, path, f, on_null2);
            self.let_(list, |list| {
                branch(
                    is_empty(list.clone()),
                    on_null,
                    op(T::Contains, vec![list, follow]),
                )
            })
        } else {
            let follow = self.follow_fn(hop, rest, path, f, on_null.clone());
            branch(
                eq(link_v.clone(), Json::Null),
                on_null,
                op(T::Funcall, vec![follow, link_v]),
            )
        }
    }

    /// A function of a (non-null) link that follows one hop (mirrors `eval::follow`).
    fn follow_fn(
        &self,
        hop: &Hop,
        rest: &[Hop],
        path: &FieldPath,
        f: &mut dyn FnMut(Term, Term) -> Term,
        on_null: Term,
    ) -> Term {
        let target_type = hop.target_type.clone();
        func1(|l| {
            let tgt = self.lookup(json!(target_type), field(l.clone(), "id"));
            let inner_null = on_null.clone();
            let body = self.let_(tgt, |t| {
                branch(
                    and(vec![
                        ne(t.clone(), Json::Null),
                        not(field(t.clone(), "retired")),
                    ]),
                    self.any_leaf(rest, path, t, f),
                    inner_null,
                )
            });
            branch(ne(field(l, "type"), json!(target_type)), on_null, body)
        })
    }

    /// The positive relation `op` on one leaf value (`v`, with its lowercase shadow `lc`), exactly as
    /// `eval::Cx::test`, or `None` when ReQL cannot express it exactly.
    fn leaf_test(&self, op_: Operator, c: &Condition, v: Term, lc: Term) -> Option<Term> {
        use Operator::*;
        let t = c.path.leaf_type;
        let k = if c.path.leaf == "id" {
            Kind::Int
        } else {
            kind_of(t)
        };
        match (op_, &c.operand) {
            (Is, Operand::One(x)) if x.is_null() => self.is_null(v, k, t),
            (Is, Operand::One(x)) => self.eq(v, lc, x, k, t),
            (In, Operand::Many(xs)) => {
                let parts = xs
                    .iter()
                    .map(|x| self.eq(v.clone(), lc.clone(), x, k, t))
                    .collect::<Option<Vec<_>>>()?;
                Some(or(parts))
            }
            (LessThan | GreaterThan, Operand::One(x)) => {
                let (a, b) = self.comparable(v.clone(), x, k)?;
                let cmp = if op_ == LessThan { lt(a, b) } else { gt(a, b) };
                Some(and(vec![ne(v, Json::Null), cmp]))
            }
            (Between, Operand::Range(lo, hi)) => {
                let (lo, hi) = match cmp_values(lo, hi) {
                    Some(std::cmp::Ordering::Greater) => (hi, lo),
                    Some(_) => (lo, hi),
                    None => return Some(json!(false)),
                };
                let (a, lo_t) = self.comparable(v.clone(), lo, k)?;
                let (_, hi_t) = self.comparable(v.clone(), hi, k)?;
                Some(and(vec![
                    ne(v, Json::Null),
                    ge(a.clone(), lo_t),
                    le(a, hi_t),
                ]))
            }
            (Contains | StartsWith | EndsWith, Operand::One(Value::Text(x)) | Operand::Text(x))
                if k == Kind::Text
                    && t != DataType::Uuid
                    && t != DataType::EntityType
                    && folds_like_shadow(x) =>
            {
                let x = regex_escape(&x.to_lowercase());
                let re = match op_ {
                    Contains => x,
                    StartsWith => format!("^{x}"),
                    _ => format!("{x}$"),
                };
                Some(and(vec![
                    ne(lc.clone(), Json::Null),
                    ne(lc.clone(), json!("")),
                    matches_re(lc, &re),
                ]))
            }
            (InLast | InNext, Operand::Relative(n, unit)) => {
                let shifted = shift(self.now.0, if op_ == InLast { -*n } else { *n }, *unit);
                let (lo, hi) = if op_ == InLast {
                    (shifted, self.now.0)
                } else {
                    (self.now.0, shifted)
                };
                self.secs_range(v, k, lo, hi, true)
            }
            (
                InCalendarDay | InCalendarWeek | InCalendarMonth | InCalendarYear,
                Operand::Offset(n),
            ) => {
                let (lo, hi) = calendar_bucket(self.now.0, op_, *n);
                self.secs_range(v, k, lo, hi, false)
            }
            (TypeIs, Operand::Text(want)) => match k {
                Kind::Link => Some(and(vec![
                    ne(v.clone(), Json::Null),
                    eq(field(v.clone(), "type"), json!(want)),
                    self.alive(v),
                ])),
                Kind::Links => Some(contains_fn(default(v, json!([])), |l| {
                    and(vec![
                        eq(field(l.clone(), "type"), json!(want)),
                        self.alive(l),
                    ])
                })),
                _ => None,
            },
            _ => None,
        }
    }

    /// `is None` (mirrors `eval::Cx::is_null`).
    fn is_null(&self, v: Term, k: Kind, t: DataType) -> Option<Term> {
        match k {
            Kind::Text => Some(or(vec![eq(v.clone(), Json::Null), eq(v, json!(""))])),
            Kind::Link => Some(or(vec![eq(v.clone(), Json::Null), not(self.alive(v))])),
            Kind::Links => Some(not(contains_fn(default(v, json!([])), |l| self.alive(l)))),
            Kind::Int | Kind::Float | Kind::Date | Kind::DateTime | Kind::Bool => {
                Some(eq(v, Json::Null))
            }
            Kind::Other => {
                let _ = t;
                None
            }
        }
    }

    /// Equality with one operand value (mirrors `eval::Cx::eq`).
    fn eq(&self, v: Term, lc: Term, x: &Value, k: Kind, t: DataType) -> Option<Term> {
        match (k, x) {
            (Kind::Text, Value::Text(s)) if is_case_insensitive_text(t) => {
                if s.is_empty() {
                    return Some(json!(false));
                }
                if !folds_like_shadow(s) {
                    return None;
                }
                Some(eq(lc, json!(s.to_lowercase())))
            }
            (Kind::Text, Value::Text(s)) if t == DataType::EntityType => Some(eq(v, json!(s))),
            (Kind::Int | Kind::Float, Value::Int(_) | Value::Float(_)) => {
                let (a, b) = self.comparable(v.clone(), x, k)?;
                Some(and(vec![ne(v, Json::Null), eq(a, b)]))
            }
            (Kind::Bool, Value::Bool(b)) => Some(if *b {
                eq(v, json!(true))
            } else {
                or(vec![eq(v.clone(), json!(false)), eq(v, Json::Null)])
            }),
            (Kind::Date, Value::Date(_)) | (Kind::DateTime, Value::DateTime(_)) => {
                Some(eq(v, encode_value(x, k)))
            }
            (Kind::DateTime, Value::Date(d)) => Some(eq(v, json!(d.days_since_epoch() * 86_400))),
            (Kind::Link, Value::Entity(r)) => Some(and(vec![
                ne(v.clone(), Json::Null),
                eq(field(v.clone(), "type"), json!(r.entity_type)),
                eq(field(v.clone(), "id"), json!(r.id)),
                self.alive(v),
            ])),
            (Kind::Links, Value::Entity(r)) => Some(contains_fn(default(v, json!([])), |l| {
                and(vec![
                    eq(field(l.clone(), "type"), json!(r.entity_type)),
                    eq(field(l.clone(), "id"), json!(r.id)),
                    self.alive(l),
                ])
            })),
            _ => None,
        }
    }

    /// The leaf and the operand as comparable terms: plain for integers, dates and datetimes;
    /// `round(x·1e6)` when a float is involved (floats compare at 6 decimal places).
    fn comparable(&self, v: Term, x: &Value, k: Kind) -> Option<(Term, Term)> {
        let round6 = |t: Term| op(T::Round, vec![op(T::Mul, vec![t, json!(1e6)])]);
        match (k, x) {
            (Kind::Int, Value::Int(i)) => Some((v, json!(i))),
            (Kind::Int | Kind::Float, Value::Float(f)) if f.is_finite() => {
                Some((round6(v), json!((f * 1e6).round())))
            }
            (Kind::Float, Value::Int(i)) => Some((round6(v), json!((*i as f64 * 1e6).round()))),
            (Kind::Date, Value::Date(_)) | (Kind::DateTime, Value::DateTime(_)) => {
                Some((v, encode_value(x, k)))
            }
            (Kind::DateTime, Value::Date(d)) => Some((v, json!(d.days_since_epoch() * 86_400))),
            _ => None,
        }
    }

    /// A datetime in `[lo, hi]`/`[lo, hi)` seconds, or a date by its UTC day (mirrors `in_secs_range`).
    fn secs_range(&self, v: Term, k: Kind, lo: i64, hi: i64, inclusive_hi: bool) -> Option<Term> {
        let upper = |a: Term, b: Term| if inclusive_hi { le(a, b) } else { lt(a, b) };
        match k {
            Kind::DateTime => Some(and(vec![
                ne(v.clone(), Json::Null),
                ge(v.clone(), json!(lo)),
                upper(v, json!(hi)),
            ])),
            Kind::Date => {
                let day = |s: i64| -> Option<Json> {
                    let d = Date::from_days_since_epoch(s.div_euclid(86_400))?;
                    (0..=9999)
                        .contains(&d.0.year())
                        .then(|| json!(d.to_string()))
                };
                Some(and(vec![
                    ne(v.clone(), Json::Null),
                    ge(v.clone(), day(lo)?),
                    upper(v, day(hi)?),
                ]))
            }
            _ => None,
        }
    }

    /// The sort keys of one sort (empty when the sort reads null for every row).
    pub(crate) fn sort_keys(&self, s: &Sort) -> Vec<Term> {
        if s.path.hops.iter().any(|h| h.multi) {
            return Vec::new();
        }
        let t = s.path.leaf_type;
        let k = if s.path.leaf == "id" {
            Kind::Int
        } else {
            kind_of(t)
        };
        let parts: Vec<&'static str> = match k {
            Kind::Link => vec!["name", "type", "id"],
            Kind::Links | Kind::Other => return Vec::new(),
            _ => vec!["value"],
        };
        parts
            .into_iter()
            .map(|part| {
                let key = func1(|row| {
                    self.single_leaf(&s.path.hops, &s.path, row, &|v, lc| {
                        self.sort_part(v, lc, k, part)
                    })
                });
                match s.direction {
                    Direction::Asc => asc(key),
                    Direction::Desc => desc(key),
                }
            })
            .collect()
    }

    /// The leaf reached through single-entity hops (null when a hop reads null), mapped by `f`.
    fn single_leaf(
        &self,
        hops: &[Hop],
        path: &FieldPath,
        doc: Term,
        f: &dyn Fn(Term, Term) -> Term,
    ) -> Term {
        let Some((hop, rest)) = hops.split_first() else {
            if path.leaf == "id" {
                return f(field(doc, "id"), Json::Null);
            }
            return f(
                default(field(field(doc.clone(), "f"), &path.leaf), Json::Null),
                default(field(field(doc, "lc"), &path.leaf), Json::Null),
            );
        };
        let link = default(field(field(doc, "f"), &hop.field), Json::Null);
        let target_type = hop.target_type.clone();
        self.let_(link, |l| {
            let tgt = self.lookup(json!(target_type), field(l.clone(), "id"));
            branch(
                eq(l.clone(), Json::Null),
                Json::Null,
                branch(
                    eq(field(l, "type"), json!(target_type)),
                    self.let_(tgt, |t| {
                        branch(
                            and(vec![
                                ne(t.clone(), Json::Null),
                                not(field(t.clone(), "retired")),
                            ]),
                            self.single_leaf(rest, path, t, f),
                            Json::Null,
                        )
                    }),
                    Json::Null,
                ),
            )
        })
    }

    /// One part of a sort key (mirrors `query::sort_key`).
    fn sort_part(&self, v: Term, lc: Term, k: Kind, part: &str) -> Term {
        match (k, part) {
            (Kind::Text, _) => branch(
                or(vec![eq(v, Json::Null), eq(lc.clone(), Json::Null)]),
                Json::Null,
                lc,
            ),
            (Kind::Bool, _) => branch(
                eq(v.clone(), Json::Null),
                Json::Null,
                branch(v, json!(1), json!(0)),
            ),
            (Kind::Float, _) => branch(
                eq(v.clone(), Json::Null),
                Json::Null,
                op(T::Round, vec![op(T::Mul, vec![v, json!(1e6)])]),
            ),
            (Kind::Link, part) => self.let_(v, |l| {
                let tgt = self.target(l.clone());
                let keyed = self.let_(tgt, |t| {
                    let dropped = and(vec![ne(t.clone(), Json::Null), field(t.clone(), "retired")]);
                    let value = match part {
                        "name" => branch(
                            ne(t.clone(), Json::Null),
                            default(field(t, "dn_lc"), Json::Null),
                            lc,
                        ),
                        "type" => field(l.clone(), "type"),
                        _ => field(l.clone(), "id"),
                    };
                    branch(dropped, Json::Null, value)
                });
                branch(eq(l, Json::Null), Json::Null, keyed)
            }),
            _ => v,
        }
    }
}

/// Collects every path a filter mentions.
pub(crate) fn filter_paths<'f>(f: &'f Filter, out: &mut Vec<&'f FieldPath>) {
    match f {
        Filter::Condition(c) => out.push(&c.path),
        Filter::Group { children, .. } => children.iter().for_each(|c| filter_paths(c, out)),
    }
}

/// Whether the sorts are "by id" only (then the primary index orders the scan lazily).
pub(crate) fn id_order(sorts: &[Sort]) -> Option<Direction> {
    match sorts {
        [] => Some(Direction::Asc),
        [s] if s.path.leaf == "id" && !s.path.is_deep() => Some(s.direction),
        _ => None,
    }
}
