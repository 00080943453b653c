//! A small builder for ReQL terms in the JSON wire form `[type, [args], {optargs}]`.
//!
//! Literal data must go through [`lit`]: in the wire form a bare JSON array is read as a term, so
//! arrays are wrapped in `MAKE_ARRAY`, recursively. Functions get fresh variable ids from a global
//! counter, so nested functions never capture each other's variables.

use std::sync::atomic::{AtomicU64, Ordering};

use ql2::term::TermType as T;
use serde_json::{Value as Json, json};

/// A ReQL term (wire JSON).
pub(crate) type Term = Json;

/// A term with positional arguments.
pub(crate) fn op(tt: T, args: Vec<Term>) -> Term {
    json!([tt as i32, args])
}

/// A term with positional and optional arguments.
pub(crate) fn op_opts(tt: T, args: Vec<Term>, opts: Json) -> Term {
    json!([tt as i32, args, opts])
}

/// Literal data as a term.
pub(crate) fn lit(v: &Json) -> Term {
    match v {
        Json::Array(items) => op(T::MakeArray, items.iter().map(lit).collect()),
        Json::Object(m) => Json::Object(m.iter().map(|(k, v)| (k.clone(), lit(v))).collect()),
        other => other.clone(),
    }
}

/// An array whose elements are terms.
pub(crate) fn array(items: Vec<Term>) -> Term {
    op(T::MakeArray, items)
}

static NEXT_VAR: AtomicU64 = AtomicU64::new(1);

/// A one-argument function `|x| body(x)`.
pub(crate) fn func1(body: impl FnOnce(Term) -> Term) -> Term {
    let id = NEXT_VAR.fetch_add(1, Ordering::Relaxed);
    let var = op(T::Var, vec![json!(id)]);
    op(T::Func, vec![array(vec![json!(id)]), body(var)])
}

pub(crate) fn db(name: &str) -> Term {
    op(T::Db, vec![json!(name)])
}

/// A table of `db` whose name is a term (a literal or a sub-query).
pub(crate) fn table(db_name: &str, name: Term) -> Term {
    op(T::Table, vec![db(db_name), name])
}

pub(crate) fn field(x: Term, name: &str) -> Term {
    op(T::GetField, vec![x, json!(name)])
}

pub(crate) fn get(tbl: Term, key: Term) -> Term {
    op(T::Get, vec![tbl, key])
}

/// `get_all` of literal keys, on the primary key (`index = None`) or a secondary index.
pub(crate) fn get_all(tbl: Term, keys: &[Json], index: Option<&str>) -> Term {
    let mut args = vec![tbl];
    args.extend(keys.iter().map(lit));
    match index {
        Some(i) => op_opts(T::GetAll, args, json!({"index": i})),
        None => op(T::GetAll, args),
    }
}

pub(crate) fn eq(a: Term, b: Term) -> Term {
    op(T::Eq, vec![a, b])
}
pub(crate) fn ne(a: Term, b: Term) -> Term {
    op(T::Ne, vec![a, b])
}
pub(crate) fn lt(a: Term, b: Term) -> Term {
    op(T::Lt, vec![a, b])
}
pub(crate) fn le(a: Term, b: Term) -> Term {
    op(T::Le, vec![a, b])
}
pub(crate) fn gt(a: Term, b: Term) -> Term {
    op(T::Gt, vec![a, b])
}
pub(crate) fn ge(a: Term, b: Term) -> Term {
    op(T::Ge, vec![a, b])
}
pub(crate) fn not(a: Term) -> Term {
    op(T::Not, vec![a])
}
/// Logical and; `true` when empty.
pub(crate) fn and(items: Vec<Term>) -> Term {
    match items.len() {
        0 => json!(true),
        1 => items.into_iter().next().expect("one item"),
        _ => op(T::And, items),
    }
}

/// Logical or; `false` when empty.
pub(crate) fn or(items: Vec<Term>) -> Term {
    match items.len() {
        0 => json!(false),
        1 => items.into_iter().next().expect("one item"),
        _ => op(T::Or, items),
    }
}

pub(crate) fn branch(cond: Term, then: Term, otherwise: Term) -> Term {
    op(T::Branch, vec![cond, then, otherwise])
}

/// `x.default(d)`: `d` when `x` is null or fails with a non-existence error.
pub(crate) fn default(x: Term, d: Term) -> Term {
    op(T::Default, vec![x, d])
}

/// Whether string `x` matches the regular expression `re`.
pub(crate) fn matches_re(x: Term, re: &str) -> Term {
    ne(op(T::Match, vec![x, json!(re)]), Json::Null)
}

/// Whether sequence `seq` has an element for which `pred` holds.
pub(crate) fn contains_fn(seq: Term, pred: impl FnOnce(Term) -> Term) -> Term {
    op(T::Contains, vec![seq, func1(pred)])
}

/// Whether sequence `seq` contains the value `v`.
pub(crate) fn contains(seq: Term, v: Term) -> Term {
    op(T::Contains, vec![seq, v])
}

pub(crate) fn map(seq: Term, f: impl FnOnce(Term) -> Term) -> Term {
    op(T::Map, vec![seq, func1(f)])
}

pub(crate) fn is_empty(seq: Term) -> Term {
    op(T::IsEmpty, vec![seq])
}

pub(crate) fn count(seq: Term) -> Term {
    op(T::Count, vec![seq])
}

pub(crate) fn skip(seq: Term, n: u64) -> Term {
    op(T::Skip, vec![seq, json!(n)])
}

pub(crate) fn limit(seq: Term, n: u64) -> Term {
    op(T::Limit, vec![seq, json!(n)])
}

pub(crate) fn asc(key: Term) -> Term {
    op(T::Asc, vec![key])
}

pub(crate) fn desc(key: Term) -> Term {
    op(T::Desc, vec![key])
}

/// Special strings RethinkDB's escape-free regexes (RE2) need escaped, for a literal substring.
pub(crate) fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_arrays_are_wrapped_recursively() {
        let t = lit(&json!({"a": [1, [2]]}));
        assert_eq!(
            t,
            json!({"a": [T::MakeArray as i32, [1, [T::MakeArray as i32, [2]]]]})
        );
    }

    #[test]
    fn regex_escape_escapes_metacharacters() {
        assert_eq!(regex_escape("a.b*c(d)"), "a\\.b\\*c\\(d\\)");
    }
}
