//! The reference evaluator: a pure, in-memory definition of Shotgun's filter semantics.
//!
//! [`matches`](fn@matches) decides whether one cached entity matches a validated [`Filter`]. The store backends
//! are tested against it, and the simulator, Watch filters and per-type cache filters use it
//! directly, so it is written to allocate nothing per row: operands were typed (and folded, see
//! [`fold`], where matching is case-insensitive) by `validate`, text is compared through folding
//! character iterators, and deep links resolve through [`EntitySource::entity`].
//!
//! # Semantics table
//!
//! This is the one place where the rules of protocol §3 are written down as this code implements
//! them. "⚠" marks a rule the protocol leaves unverified, with the decision taken here; each is
//! covered by a case in `filter/tests.rs`.
//!
//! | topic | rule |
//! |---|---|
//! | operators per type | protocol §3.1 server lists (`validate::valid_relations`). `not_between` is rejected on every type (server rejects it on number/duration; ⚠ assumed the same for float/percent/timecode/currency/date). ⚠ `name_starts_with`/`name_ends_with` are accepted on entity and multi_entity (REF lists them). ⚠ color, footage and system_task_type take the text relations |
//! | negation | every negated relation is `NOT` of its positive counterpart: `is_not`=¬`is`, `not_in`=¬`in`, `not_contains`=¬`contains`, `not_in_last`/`not_in_next`=¬`in_last`/¬`in_next`, `type_is_not`=¬`type_is`, `name_not_contains`=¬`name_contains`. So negated relations include null rows, and comparisons (`less_than`, `greater_than`, `between`, `in_last`, ...) exclude them |
//! | null operand | `is None` matches null (text `""` counts as null; multi_entity, tag_list and addressing: an empty list after dropping retired targets). `is ""`/`is_not ""` on text-like and uuid fields equal `is None`/`is_not None`. `in [None]` is 400 on every type (⚠ verified only for text). checkbox `null` is 400; uuid `is null` is 400 |
//! | text case | text, list, status_list (⚠), color, footage: every relation is case-insensitive, comparing by [`fold`]: per-character Unicode lowercase (`char::to_lowercase`), then final sigma `ς` as `σ`, so `Σ`/`σ`/`ς` are one letter in every position (`is "ΑΣ"` matches `ΑΣ`, `ας`, `ασ`). ⚠ Shotgun matches in PostgreSQL (`ILIKE`/`lower()`: per-character lowercase, which maps `Σ` to `σ` and leaves `ς`, so there `ας` ≠ `ΑΣ`); we take the per-character lowercase and also equate `ς` with `σ`, since the two are one letter written by position (and `str::to_lowercase`/ICU choose between them by context). No full case folding and no locale rules: `ß` ≠ `ss` (`ẞ` = `ß`), `İ` folds to `i̇` (`i` + U+0307: it matches `i̇` and `İ`, not `i`), `I` folds to `i`, never to Turkish `ı`. Sorting is not affected (`query` sorts by `str::to_lowercase`). entity_type: case-sensitive. uuid: normalised (case, hyphens, braces) |
//! | `contains ""` | matches every non-null row; `in [""]` matches nothing |
//! | numbers | number/percent/duration/timecode take integers (integral floats and numeric strings are accepted; fractional floats are 400). ⚠ float/currency accept integers as well as floats and numeric strings (lenient; the server rejects integers). Float equality compares at 6 decimal places. `0` is not null |
//! | `between` | inclusive on both ends and order-insensitive on every type (⚠ verified on dates only). A null endpoint matches 0 rows |
//! | `in_last N U` | `[now − N·U, now]`; `in_next N U` is `[now, now + N·U]`. HOUR/DAY/WEEK are fixed lengths; MONTH/YEAR use calendar arithmetic (day clamped to the month's length). For date fields both ends are taken as UTC dates and compared on the date |
//! | `in_calendar_*` | UTC-aligned buckets offset by N from the current one. ⚠ Weeks start on **Monday** (ISO). A date field compares its date with the bucket's dates |
//! | entity `is` | exact link match (type and id); names are not compared |
//! | multi_entity | `is A` = contains A; `in [A, B]` = contains any; `is None` = empty; `type_is T` = some element has type T; `name_*` = some element's name matches; negations per the negation rule |
//! | `name_*` | apply to the link's live name (the cached target's display name when the target is cached and live, else the stored name). ⚠ Case-insensitive, like text. A link without a name reads as a null name |
//! | `type_is` | compares the link's type case-sensitively. ⚠ On a null single link `type_is_not` matches (negation rule) |
//! | link rule | see [`EntitySource`]: a link to a cached, retired target is absent everywhere (a single link reads null, the element is dropped from lists), so `is`/`in` on a deleted id match 0 rows |
//! | deep links | `f.Type.g` follows entity and multi_entity hops, any number of them. Through a multi_entity hop the condition holds when **any** linked row satisfies it. A hop reads null (one null leaf) when the link is null, points at another type, points at a target that is not cached, or the list is empty. ⚠ Negated relations through any hop are the negation of the positive relation over the whole path ("no linked row matches"), consistent with the null rule; so through a multi_entity hop `is_not None` holds only when every linked branch reads non-null |
//! | empty group | `and []` and ⚠ `or []` both match everything (an empty group is no condition) |
//! | tag_list | ⚠ values are lists of tag names or Tag links: `is X` = some tag has that name (case-insensitive) or that link; `name_contains`/`name_not_contains` on the tag names. Elements are read as in `any_link`: a string is a tag name (type `Tag`, no id), an object a link (`type`, integer `id`, string `name`, under the link rule), anything else is ignored; a value that is not a list has no tags (and is not null) |
//! | jsonb | `is` compares the JSON value; `contains` is containment (objects: every key contained; arrays: every element contained in some element; scalars: equal) |
//! | addressing | ⚠ handled like multi_entity over its `[{type, id, name}]` list (elements read as for tag_list); `contains X` = `is X`. Links to any cached type follow the link rule, whatever the field's `valid_types` |
//! | sorting (`query`) | keys in order, then `id` ascending as the final tiebreak. Nulls first on asc, last on desc (⚠). Text case-insensitive (⚠). Entity by live name (case-insensitive), then type, then id. Deep-link sorts follow single-entity hops; a multi_entity hop sorts as null. multi_entity, json-valued and other unsortable types sort as null; an unset checkbox sorts (and reads) as false |
//! | sort fields (`validate_sort_field`) | ⚠ a field that does not exist, and summary/url/serializable fields, are silently ignored; uuid and pivot_column are 400 (protocol §3.6) |
//! | path length and list sizes | ⚠ a deep-link path follows at most 12 links (`validate::MAX_PATH_HOPS`, our bound: Shotgun documents none, and a path around a cycle of links can be any length); groups nest at most 64 deep. `in` lists and groups of any length are accepted (the simulator shares these rules) |
//! | return fields (`validate_return_field`) | a hop to a type outside the link's `valid_types`, or through a url field, makes the field absent (not an error); unknown fields and types are errors (protocol §3.5) |
//! | projection (`query`) | deep-link return fields through single-entity links read the target's value (null when the link is null, points at another type or at an uncached target); through a multi_entity hop they are absent. Links in returned values have live names and drop retired targets |

use std::cmp::Ordering;

use serde_json::Value as Json;

use crate::model::{DataType, Date, DateTime, Entity, EntityRef, Value};

use super::ast::{Condition, Filter, Hop, LogicalOp, Operand, Operator, TimeUnit};
use super::validate::is_case_insensitive_text;

/// Access to cached entities, for deep links and live link names.
///
/// Link rule (protocol §3.8), applied everywhere a link is read or matched: if the link's target type
/// is cached (`is_cached_type`) and the target is cached *and retired*, the link is treated as absent
/// (a single link reads null; the element is dropped from a multi_entity list). If the target is cached
/// and live, its `display_name` is the link's name. Otherwise the link is kept with its stored name.
pub trait EntitySource {
    /// The cached entity (retired or not), or `None`.
    fn entity(&self, entity_type: &str, id: i64) -> Option<&Entity>;
    /// Whether `entity_type` is cached at all.
    fn is_cached_type(&self, entity_type: &str) -> bool;
}

/// What the link rule makes of one link.
#[derive(Debug, Clone, Copy)]
pub enum LinkState<'a> {
    /// The target is cached and retired: the link is absent.
    Dropped,
    /// The target is cached and live.
    Live(&'a Entity),
    /// The target is not cached (or its type is not): the link is kept with its stored name.
    Unknown,
}

/// Applies the link rule of [`EntitySource`] to a link given by type and id.
pub fn link_state<'a>(src: &'a dyn EntitySource, entity_type: &str, id: i64) -> LinkState<'a> {
    if !src.is_cached_type(entity_type) {
        return LinkState::Unknown;
    }
    match src.entity(entity_type, id) {
        Some(e) if e.retired => LinkState::Dropped,
        Some(e) => LinkState::Live(e),
        None => LinkState::Unknown,
    }
}

/// The name a link reads with under the link rule: the live target's display name (falling back to
/// the stored name when the target has none), or the stored name. `None` when the link is dropped.
pub fn live_link_name<'a>(src: &'a dyn EntitySource, r: &'a EntityRef) -> Option<Option<&'a str>> {
    match link_state(src, &r.entity_type, r.id) {
        LinkState::Dropped => None,
        LinkState::Live(e) => Some(e.display_name.as_deref().or(r.name.as_deref())),
        LinkState::Unknown => Some(r.name.as_deref()),
    }
}

/// Whether `entity` matches `filter`. `now` anchors `in_last`/`in_next`/`in_calendar_*`.
pub fn matches(filter: &Filter, entity: &Entity, src: &dyn EntitySource, now: DateTime) -> bool {
    Cx { src, now }.filter(filter, entity)
}

/// The positive relation a relation negates, and whether it does.
pub fn positive_form(op: Operator) -> (Operator, bool) {
    use Operator::*;
    match op {
        IsNot => (Is, true),
        NotIn => (In, true),
        NotContains => (Contains, true),
        NotBetween => (Between, true),
        NotInLast => (InLast, true),
        NotInNext => (InNext, true),
        TypeIsNot => (TypeIs, true),
        NameNotContains => (NameContains, true),
        other => (other, false),
    }
}

const NULL: Value = Value::Null;

/// `in` lists of integers longer than this are binary-searched (they are sorted by `validate`).
const SORTED_IN_THRESHOLD: usize = 16;

/// A callback over the live links of a value: `(type, id, live name)`; returns whether to stop.
type LinkVisitor<'a> = dyn FnMut(&str, Option<i64>, Option<&str>) -> bool + 'a;

struct Cx<'s> {
    src: &'s dyn EntitySource,
    now: DateTime,
}

impl Cx<'_> {
    fn filter(&self, f: &Filter, e: &Entity) -> bool {
        match f {
            Filter::Condition(c) => self.condition(c, e),
            Filter::Group {
                op: LogicalOp::And,
                children,
            } => children.iter().all(|c| self.filter(c, e)),
            Filter::Group {
                op: LogicalOp::Or,
                children,
            } => children.is_empty() || children.iter().any(|c| self.filter(c, e)),
        }
    }

    fn condition(&self, c: &Condition, e: &Entity) -> bool {
        let (op, negated) = positive_form(c.operator);
        let hit = self.any_leaf(&c.path.hops, &c.path.leaf, e, &mut |v| self.test(op, c, v));
        hit != negated
    }

    /// Calls `f` on every leaf value the path reaches from `e` (one `Null` where a hop reads null),
    /// stopping at the first `true`.
    fn any_leaf(
        &self,
        hops: &[Hop],
        leaf: &str,
        e: &Entity,
        f: &mut dyn FnMut(&Value) -> bool,
    ) -> bool {
        let Some((hop, rest)) = hops.split_first() else {
            return if leaf == "id" {
                f(&Value::Int(e.id))
            } else {
                f(e.get(leaf))
            };
        };
        match e.get(&hop.field) {
            Value::Entity(r) => self.follow(r, hop, rest, leaf, f),
            Value::MultiEntity(list) => {
                let mut any_live = false;
                for r in list {
                    if matches!(
                        link_state(self.src, &r.entity_type, r.id),
                        LinkState::Dropped
                    ) {
                        continue;
                    }
                    any_live = true;
                    if self.follow(r, hop, rest, leaf, f) {
                        return true;
                    }
                }
                !any_live && f(&NULL)
            }
            _ => f(&NULL),
        }
    }

    fn follow(
        &self,
        r: &EntityRef,
        hop: &Hop,
        rest: &[Hop],
        leaf: &str,
        f: &mut dyn FnMut(&Value) -> bool,
    ) -> bool {
        if r.entity_type != hop.target_type {
            return f(&NULL);
        }
        match link_state(self.src, &r.entity_type, r.id) {
            LinkState::Live(t) => self.any_leaf(rest, leaf, t, f),
            LinkState::Dropped | LinkState::Unknown => f(&NULL),
        }
    }

    /// Calls `f(type, id, live name)` for every live link in a link-valued value, stopping at the
    /// first `true`. Tag names in a tag_list read as `("Tag", None, Some(name))`.
    fn any_link(&self, v: &Value, f: &mut LinkVisitor<'_>) -> bool {
        match v {
            Value::Entity(r) => self.link(r, f),
            Value::MultiEntity(list) => list.iter().any(|r| self.link(r, f)),
            Value::Json(Json::Array(items)) => items.iter().any(|item| match item {
                Json::String(s) => f("Tag", None, Some(s)),
                Json::Object(o) => {
                    let ty = o.get("type").and_then(Json::as_str).unwrap_or("");
                    let id = o.get("id").and_then(Json::as_i64);
                    let stored = o.get("name").and_then(Json::as_str);
                    match id.map(|id| link_state(self.src, ty, id)) {
                        Some(LinkState::Dropped) => false,
                        Some(LinkState::Live(e)) => f(ty, id, e.display_name.as_deref().or(stored)),
                        _ => f(ty, id, stored),
                    }
                }
                _ => false,
            }),
            _ => false,
        }
    }

    /// Whether `v` holds a link to `(entity_type, id)` under the link rule. The same answer as
    /// `any_link` with a type-and-id visitor, but the target is only looked up (to see whether it
    /// is retired) for a link that names it: most rows of a scan link elsewhere, and the lookup
    /// is the expensive part.
    fn links_to(&self, v: &Value, entity_type: &str, id: i64) -> bool {
        let dropped = |r: &EntityRef| {
            matches!(
                link_state(self.src, &r.entity_type, r.id),
                LinkState::Dropped
            )
        };
        match v {
            Value::Entity(r) => r.id == id && r.entity_type == entity_type && !dropped(r),
            Value::MultiEntity(list) => list
                .iter()
                .any(|r| r.id == id && r.entity_type == entity_type && !dropped(r)),
            _ => self.any_link(v, &mut |ty, got, _| ty == entity_type && got == Some(id)),
        }
    }

    fn link(&self, r: &EntityRef, f: &mut LinkVisitor<'_>) -> bool {
        match live_link_name(self.src, r) {
            None => false,
            Some(name) => f(&r.entity_type, Some(r.id), name),
        }
    }

    /// Whether a value reads as null for `is None`: links under the link rule, empty text, and for
    /// tag_list/addressing an empty list (after dropping retired targets). A jsonb array or object
    /// is a value, never null.
    fn is_null(&self, v: &Value, t: DataType) -> bool {
        match v {
            Value::Null => true,
            Value::Text(s) => s.is_empty(),
            Value::Entity(_) | Value::MultiEntity(_) => !self.any_link(v, &mut |_, _, _| true),
            Value::Json(Json::Null) => true,
            Value::Json(Json::Array(_))
                if matches!(t, DataType::TagList | DataType::Addressing) =>
            {
                !self.any_link(v, &mut |_, _, _| true)
            }
            _ => false,
        }
    }

    fn eq(&self, v: &Value, x: &Value, t: DataType) -> bool {
        use DataType as D;
        match t {
            _ if is_case_insensitive_text(t) => match (v, x) {
                (Value::Text(s), Value::Text(x)) => !s.is_empty() && ci_eq(s, x),
                _ => false,
            },
            D::EntityType => matches!((v, x), (Value::Text(s), Value::Text(x)) if s == x),
            D::Uuid => matches!((v, x), (Value::Text(s), Value::Text(x)) if uuid_eq(s, x)),
            D::Number | D::Percent | D::Duration | D::Timecode | D::Float | D::Currency => {
                num_eq(v, x)
            }
            D::Checkbox => match (v, x) {
                (Value::Bool(a), Value::Bool(b)) => a == b,
                (Value::Null, Value::Bool(b)) => !*b,
                _ => false,
            },
            D::Date | D::DateTime => cmp_values(v, x) == Some(Ordering::Equal),
            D::Entity | D::MultiEntity | D::Addressing | D::TagList => match x {
                Value::Entity(want) => self.links_to(v, &want.entity_type, want.id),
                Value::Text(name) => {
                    self.any_link(v, &mut |_, _, n| n.is_some_and(|n| ci_eq(n, name)))
                }
                _ => false,
            },
            D::Jsonb => matches!((v, x), (Value::Json(a), Value::Json(b)) if a == b),
            _ => false,
        }
    }

    fn test(&self, op: Operator, c: &Condition, v: &Value) -> bool {
        use Operator::*;
        let t = c.path.leaf_type;
        match (op, &c.operand) {
            (Is, Operand::One(x)) => {
                if x.is_null() {
                    self.is_null(v, t)
                } else {
                    self.eq(v, x, t)
                }
            }
            (In, Operand::Many(xs)) => match v {
                // Integer lists are sorted by `validate` (see `Operand`): binary-search long ones.
                Value::Int(i)
                    if xs.len() > SORTED_IN_THRESHOLD
                        && matches!(xs.first(), Some(Value::Int(_))) =>
                {
                    xs.binary_search_by(|x| match x {
                        Value::Int(x) => x.cmp(i),
                        _ => Ordering::Greater,
                    })
                    .is_ok()
                }
                _ => xs.iter().any(|x| self.eq(v, x, t)),
            },
            (LessThan, Operand::One(x)) => cmp_values(v, x) == Some(Ordering::Less),
            (GreaterThan, Operand::One(x)) => cmp_values(v, x) == Some(Ordering::Greater),
            (Between, Operand::Range(lo, hi)) => {
                let (lo, hi) = match cmp_values(lo, hi) {
                    Some(Ordering::Greater) => (hi, lo),
                    Some(_) => (lo, hi),
                    None => return false,
                };
                matches!(cmp_values(v, lo), Some(Ordering::Greater | Ordering::Equal))
                    && matches!(cmp_values(v, hi), Some(Ordering::Less | Ordering::Equal))
            }
            (Contains, Operand::One(x)) => match (t, v, x) {
                (DataType::Jsonb, Value::Json(a), Value::Json(b)) => json_contains(a, b),
                (DataType::Addressing, _, _) => self.eq(v, x, t),
                (_, Value::Text(s), Value::Text(x)) => !s.is_empty() && ci_contains(s, x),
                _ => false,
            },
            (StartsWith, Operand::One(Value::Text(x))) => {
                matches!(v, Value::Text(s) if !s.is_empty() && ci_starts_with(s, x))
            }
            (EndsWith, Operand::One(Value::Text(x))) => {
                matches!(v, Value::Text(s) if !s.is_empty() && ci_ends_with(s, x))
            }
            (InLast | InNext, Operand::Relative(n, unit)) => {
                let shifted = shift(self.now.0, if op == InLast { -*n } else { *n }, *unit);
                let (lo, hi) = if op == InLast {
                    (shifted, self.now.0)
                } else {
                    (self.now.0, shifted)
                };
                in_secs_range(v, lo, hi, true)
            }
            (
                InCalendarDay | InCalendarWeek | InCalendarMonth | InCalendarYear,
                Operand::Offset(k),
            ) => {
                let (lo, hi) = calendar_bucket(self.now.0, op, *k);
                in_secs_range(v, lo, hi, false)
            }
            (TypeIs, Operand::Text(want)) => self.any_link(v, &mut |ty, _, _| ty == want),
            (NameIs, Operand::Text(x)) => {
                self.any_link(v, &mut |_, _, n| n.is_some_and(|n| ci_eq(n, x)))
            }
            (NameContains, Operand::Text(x)) => {
                self.any_link(v, &mut |_, _, n| n.is_some_and(|n| ci_contains(n, x)))
            }
            (NameStartsWith, Operand::Text(x)) => {
                self.any_link(v, &mut |_, _, n| n.is_some_and(|n| ci_starts_with(n, x)))
            }
            (NameEndsWith, Operand::Text(x)) => {
                self.any_link(v, &mut |_, _, n| n.is_some_and(|n| ci_ends_with(n, x)))
            }
            // A validated filter never pairs a relation with another operand shape.
            _ => false,
        }
    }
}

/// Compares two non-null values of the same family (numbers, dates, datetimes, booleans, text).
/// `None` when either is null or they are not comparable. Floats compare at 6 decimal places.
pub fn cmp_values(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Float(y)) => cmp_f64(*x as f64, *y),
        (Value::Float(x), Value::Int(y)) => cmp_f64(*x, *y as f64),
        (Value::Float(x), Value::Float(y)) => cmp_f64(*x, *y),
        (Value::Date(x), Value::Date(y)) => Some(x.cmp(y)),
        (Value::DateTime(x), Value::DateTime(y)) => Some(x.cmp(y)),
        (Value::Date(x), Value::DateTime(y)) => Some((x.days_since_epoch() * 86_400).cmp(&y.0)),
        (Value::DateTime(x), Value::Date(y)) => Some(x.0.cmp(&(y.days_since_epoch() * 86_400))),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn cmp_f64(a: f64, b: f64) -> Option<Ordering> {
    let (ra, rb) = ((a * 1e6).round(), (b * 1e6).round());
    ra.partial_cmp(&rb)
}

fn num_eq(a: &Value, b: &Value) -> bool {
    matches!(
        (a, b),
        (
            Value::Int(_) | Value::Float(_),
            Value::Int(_) | Value::Float(_)
        )
    ) && cmp_values(a, b) == Some(Ordering::Equal)
}

/// Whether a date or datetime value lies in `[lo, hi]` (`inclusive_hi`) or `[lo, hi)` seconds.
/// Dates compare by their UTC day against the days of the bounds.
fn in_secs_range(v: &Value, lo: i64, hi: i64, inclusive_hi: bool) -> bool {
    match v {
        Value::DateTime(t) => t.0 >= lo && if inclusive_hi { t.0 <= hi } else { t.0 < hi },
        Value::Date(d) => {
            let day = d.days_since_epoch();
            let (lo_d, hi_d) = (lo.div_euclid(86_400), hi.div_euclid(86_400));
            day >= lo_d
                && if inclusive_hi {
                    day <= hi_d
                } else {
                    day < hi_d
                }
        }
        _ => false,
    }
}

/// `secs` shifted by `n` units (negative = back). HOUR/DAY/WEEK are fixed lengths; MONTH/YEAR are
/// calendar steps with the day clamped to the target month. Saturates instead of overflowing.
pub fn shift(secs: i64, n: i64, unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Hour => secs.saturating_add(n.saturating_mul(3_600)),
        TimeUnit::Day => secs.saturating_add(n.saturating_mul(86_400)),
        TimeUnit::Week => secs.saturating_add(n.saturating_mul(7 * 86_400)),
        TimeUnit::Month => add_months(secs, n),
        TimeUnit::Year => add_months(secs, n.saturating_mul(12)),
    }
}

fn add_months(secs: i64, months: i64) -> i64 {
    let saturated = if months < 0 { i64::MIN } else { i64::MAX };
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs) else {
        return saturated;
    };
    let total = i64::from(t.year()) * 12 + i64::from(u8::from(t.month())) - 1;
    let Some(total) = total.checked_add(months) else {
        return saturated;
    };
    let (year, month0) = (total.div_euclid(12), total.rem_euclid(12));
    let Ok(year) = i32::try_from(year) else {
        return saturated;
    };
    let Ok(month) = time::Month::try_from(u8::try_from(month0 + 1).unwrap_or(1)) else {
        return saturated;
    };
    let day = t.day().min(month.length(year));
    match time::Date::from_calendar_date(year, month, day) {
        Ok(d) => time::PrimitiveDateTime::new(d, t.time())
            .assume_utc()
            .unix_timestamp(),
        Err(_) => saturated,
    }
}

/// The UTC bucket `[start, end)` in seconds for `in_calendar_*` with offset `k` from the bucket
/// holding `now`. Weeks start on Monday.
pub fn calendar_bucket(now: i64, op: Operator, k: i64) -> (i64, i64) {
    const DAY: i64 = 86_400;
    let today = now.div_euclid(DAY);
    match op {
        Operator::InCalendarDay => {
            let start = today.saturating_add(k).saturating_mul(DAY);
            (start, start.saturating_add(DAY))
        }
        Operator::InCalendarWeek => {
            // 1970-01-01 was a Thursday: Monday-based weekday 3.
            let monday = today - (today + 3).rem_euclid(7);
            let start = monday
                .saturating_add(k.saturating_mul(7))
                .saturating_mul(DAY);
            (start, start.saturating_add(7 * DAY))
        }
        Operator::InCalendarMonth | Operator::InCalendarYear => {
            let months_per = if op == Operator::InCalendarMonth {
                1
            } else {
                12
            };
            let first = first_of_bucket(now, op == Operator::InCalendarYear);
            (
                add_months(first, k.saturating_mul(months_per)),
                add_months(first, k.saturating_add(1).saturating_mul(months_per)),
            )
        }
        _ => (i64::MIN, i64::MIN),
    }
}

/// Midnight UTC of the first day of the month (or year) holding `secs`.
fn first_of_bucket(secs: i64, year: bool) -> i64 {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs) else {
        return secs;
    };
    let month = if year {
        time::Month::January
    } else {
        t.month()
    };
    match time::Date::from_calendar_date(t.year(), month, 1) {
        Ok(d) => d.midnight().assume_utc().unix_timestamp(),
        Err(_) => secs,
    }
}

/// The UTC date of a datetime.
pub fn utc_date(t: DateTime) -> Option<Date> {
    Date::from_days_since_epoch(t.0.div_euclid(86_400))
}

/// The version of [`fold`], stored by backends that persist folded text (the SQLite expression
/// indexes on `sg_fold`): bump it whenever `fold` changes, so they rebuild what they built with the
/// old fold. 1 was per-character lowercase; 2 adds final sigma.
pub const FOLD_VERSION: u32 = 2;

/// Final sigma `ς` folds to `σ`; every other character is kept.
fn unsigma(c: char) -> char {
    if c == 'ς' { 'σ' } else { c }
}

/// The fold of one character: its Unicode lowercase (`char::to_lowercase`; one character except
/// `İ`, which gives `i` + U+0307), with final sigma as `σ`.
fn fold_char(c: char) -> std::iter::Map<std::char::ToLowercase, fn(char) -> char> {
    c.to_lowercase().map(unsigma as fn(char) -> char)
}

/// The case fold every case-insensitive relation compares by (the "text case" rule of the semantics
/// table): per-character Unicode lowercase, then final sigma `ς` as `σ`, so `Σ`, `σ` and `ς` are
/// one letter. No locale rules and no full case folding: `ß` stays `ß` (not `ss`), `İ` becomes
/// `i̇` (`i` + U+0307). Operands are folded once by `validate`; rows are folded on the fly by the
/// `ci_*` helpers, which must agree with this function character for character.
pub fn fold(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    s.chars().flat_map(fold_char).collect()
}

/// Case-insensitive equality of `row` with an already-folded operand ([`fold`]), without allocating.
pub fn ci_eq(row: &str, folded: &str) -> bool {
    if row.is_ascii() {
        return row.len() == folded.len()
            && row
                .bytes()
                .zip(folded.bytes())
                .all(|(a, b)| a.to_ascii_lowercase() == b);
    }
    row.chars().flat_map(fold_char).eq(folded.chars())
}

/// Case-insensitive prefix test against an already-folded operand.
pub fn ci_starts_with(row: &str, folded: &str) -> bool {
    if row.is_ascii() && folded.is_ascii() {
        return row.len() >= folded.len()
            && row.as_bytes()[..folded.len()].eq_ignore_ascii_case(folded.as_bytes());
    }
    let mut it = row.chars().flat_map(fold_char);
    folded.chars().all(|c| it.next() == Some(c))
}

/// Case-insensitive suffix test against an already-folded operand.
pub fn ci_ends_with(row: &str, folded: &str) -> bool {
    if row.is_ascii() && folded.is_ascii() {
        return row.len() >= folded.len()
            && row.as_bytes()[row.len() - folded.len()..].eq_ignore_ascii_case(folded.as_bytes());
    }
    let mut it = row.chars().rev().flat_map(|c| fold_char(c).rev());
    folded.chars().rev().all(|c| it.next() == Some(c))
}

/// Case-insensitive substring test against an already-folded operand (`""` is in every string).
pub fn ci_contains(row: &str, folded: &str) -> bool {
    if folded.is_empty() {
        return true;
    }
    if row.is_ascii() && folded.is_ascii() {
        return row
            .as_bytes()
            .windows(folded.len())
            .any(|w| w.eq_ignore_ascii_case(folded.as_bytes()));
    }
    row.char_indices()
        .any(|(i, _)| ci_starts_with(&row[i..], folded))
}

/// uuid equality ignoring case, hyphens and braces.
fn uuid_eq(row: &str, canonical: &str) -> bool {
    let strip = |c: &char| !matches!(c, '-' | '{' | '}');
    row.chars()
        .filter(strip)
        .map(|c| c.to_ascii_lowercase())
        .eq(canonical.chars().filter(strip))
}

/// jsonb containment: objects contain every key (recursively), arrays contain every element of the
/// operand in some element, scalars are equal.
pub fn json_contains(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Object(a), Json::Object(b)) => b
            .iter()
            .all(|(k, bv)| a.get(k).is_some_and(|av| json_contains(av, bv))),
        (Json::Array(a), Json::Array(b)) => {
            b.iter().all(|bv| a.iter().any(|av| json_contains(av, bv)))
        }
        (Json::Array(a), scalar) if !scalar.is_object() => a.iter().any(|av| av == scalar),
        _ => a == b,
    }
}
