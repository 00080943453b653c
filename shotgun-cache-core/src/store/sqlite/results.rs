//! The result cache: answers of finds and counts kept in memory and served again while the store's
//! data has not changed, for the identical requests that pipeline tools and render farms repeat
//! (a thousand frames of one shot asking for the same shot, its versions, its tasks).
//!
//! # Coherence
//! An answer is kept with the *data generation* observed just before its read began (see
//! [`Generation`]); it is served only while the generation is unchanged. The generation moves
//! whenever the store's one observer connection sees, through SQLite's `PRAGMA data_version`, that
//! another connection (the syncer, in this process or another one) committed since it last looked,
//! and when a new observer connection is opened (the first, or one replacing a connection that
//! failed). Every lookup first observes. So a request that starts after a commit has finished never
//! gets an answer read before that commit: it reads the store (no cache is ever staler than an
//! uncached read started at the same moment). The argument:
//! - an observer connection's first observation always moves the generation, and so does any
//!   later observation that sees a different `data_version` from its previous one;
//! - let answer A be stamped with generation `g`, read from a snapshot that misses commit C, so C
//!   committed after `g` was loaded (the stamp is loaded before the read's snapshot begins);
//! - a request R starting after C observes on the observer connection Y of that moment. Among Y's
//!   observations up to and including R's, the first one after C either is Y's first observation,
//!   or follows one before C and sees a changed `data_version`: either way it moved the generation
//!   after C, hence after `g` was loaded, so R sees a generation other than `g` and does not get A.
//!
//! One connection observes for the whole store (observations take turns on a mutex; each is one
//! `PRAGMA`). With a connection per request instead, every pooled connection would see the same
//! commit at its own next use and move the generation again, dropping the answers cached since
//! the first one did.
//!
//! Finds and counts whose filter depends on the current time (`in_last`, `in_next`,
//! `in_calendar_*` and their negations) change answers without any commit and are never cached.
//!
//! # Admission and bounds
//! An answer is kept the second time its request misses within one generation, not the first:
//! keeping one costs a copy of it, which only pays when the request comes back before the next
//! commit. On a site whose commits land faster than most requests repeat, the cache then costs a
//! lookup per request instead of a copy of every answer (the figures are in the issue notes and the
//! grpc_bench output). At most `budget` bytes are kept (an estimate of each entry's heap size, key
//! included), least recently used entries evicted first. When the generation moves, the whole cache
//! is dropped at the next lookup: every entry in it belongs to an older generation and can never be
//! served again.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hashlink::LruCache;

use crate::filter::{Filter, Operator};
use crate::model::Value;
use crate::query::{FindQuery, Record};
use crate::store::{CountQuery, FoundRows, ResultCacheStats};

/// The data generation of one store (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Generation(AtomicU64);

impl Generation {
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Records that data may have changed.
    pub(crate) fn advance(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Clone)]
pub(crate) enum Cached {
    Rows(Arc<FoundRows>),
    Count(u64),
}

/// What a lookup found.
pub(crate) enum Lookup {
    Hit(Cached),
    /// Not cached; `keep` when the answer should be kept (its request missed before in this
    /// generation).
    Miss {
        keep: bool,
    },
}

struct State {
    generation: u64,
    entries: LruCache<String, (Cached, usize)>,
    /// Hashes of the keys that missed once in this generation (see the module docs).
    missed_once: HashSet<u64>,
    stats: ResultCacheStats,
}

/// At most this many remembered first misses (a generation without commits that sees more
/// distinct requests starts remembering afresh).
const MAX_MISSED_ONCE: usize = 100_000;

pub(crate) struct ResultCache {
    budget: usize,
    hasher: RandomState,
    state: Mutex<State>,
}

impl ResultCache {
    pub(crate) fn new(budget: usize) -> ResultCache {
        ResultCache {
            budget,
            hasher: RandomState::new(),
            state: Mutex::new(State {
                generation: 0,
                entries: LruCache::new_unbounded(),
                missed_once: HashSet::new(),
                stats: ResultCacheStats {
                    budget_bytes: budget as u64,
                    ..ResultCacheStats::default()
                },
            }),
        }
    }

    /// Moves the cache to `generation` when that is newer. The older entries are handed back, to
    /// be dropped with [`drop_later`] once the lock is released.
    fn sync(state: &mut State, generation: u64) -> Option<LruCache<String, (Cached, usize)>> {
        if generation <= state.generation {
            return None;
        }
        state.stats.invalidations += state.entries.len() as u64;
        state.missed_once.clear();
        state.stats.bytes = 0;
        state.generation = generation;
        Some(std::mem::replace(
            &mut state.entries,
            LruCache::new_unbounded(),
        ))
    }

    /// Runs `f` on the state moved to `generation` (when that is newer) and frees the entries of
    /// a past generation after the lock is released; `None` when the lock is poisoned.
    fn with_state<R>(&self, generation: u64, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        let (r, old) = {
            let mut state = self.state.lock().ok()?;
            let old = Self::sync(&mut state, generation);
            (f(&mut state), old)
        };
        if let Some(old) = old {
            drop_later(old);
        }
        Some(r)
    }

    /// The answer for `key` read at `generation`, if there is one, and else whether to keep the
    /// answer about to be read.
    pub(crate) fn get(&self, key: &str, generation: u64) -> Lookup {
        self.with_state(generation, |state| {
            let current = state.generation == generation;
            if let Some((c, _)) = state.entries.get(key).filter(|_| current) {
                let c = c.clone();
                state.stats.hits += 1;
                return Lookup::Hit(c);
            }
            state.stats.misses += 1;
            if !current {
                return Lookup::Miss { keep: false };
            }
            if state.missed_once.len() >= MAX_MISSED_ONCE {
                state.missed_once.clear();
            }
            let first = state.missed_once.insert(self.hasher.hash_one(key));
            Lookup::Miss { keep: !first }
        })
        .unwrap_or(Lookup::Miss { keep: false })
    }

    pub(crate) fn count_uncacheable(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.stats.uncacheable += 1;
        }
    }

    /// Keeps an answer read from a snapshot that began after `generation` was observed. Too old
    /// (the generation moved on meanwhile) or too large for the budget: not kept.
    pub(crate) fn insert(&self, key: String, generation: u64, value: Cached) {
        let size = key.len() + cached_size(&value) + ENTRY_OVERHEAD;
        if size > self.budget / 4 {
            return;
        }
        self.with_state(generation, |state| {
            if state.generation != generation {
                return;
            }
            if let Some((_, old)) = state.entries.insert(key, (value, size)) {
                state.stats.bytes -= old as u64;
            }
            state.stats.bytes += size as u64;
            while state.stats.bytes > self.budget as u64 {
                match state.entries.remove_lru() {
                    Some((_, (_, s))) => {
                        state.stats.bytes -= s as u64;
                        state.stats.evictions += 1;
                    }
                    None => break,
                }
            }
        });
    }

    pub(crate) fn stats(&self) -> ResultCacheStats {
        self.state.lock().map_or_else(
            |_| ResultCacheStats::default(),
            |s| ResultCacheStats {
                entries: s.entries.len() as u64,
                ..s.stats
            },
        )
    }
}

/// Frees a past generation's entries off the request path when a runtime is at hand: a full
/// cache is tens of thousands of records (milliseconds of freeing, by estimate), which the one
/// request that saw the new generation first would otherwise wait for.
fn drop_later(old: LruCache<String, (Cached, usize)>) {
    if old.is_empty() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn_blocking(move || drop(old));
        }
        Err(_) => drop(old),
    }
}

/// Whether a filter's answer depends on the current time.
pub(crate) fn uses_now(filter: &Filter) -> bool {
    let mut found = false;
    filter.visit(&mut |c| {
        found |= matches!(
            c.operator,
            Operator::InLast
                | Operator::NotInLast
                | Operator::InNext
                | Operator::NotInNext
                | Operator::InCalendarDay
                | Operator::InCalendarWeek
                | Operator::InCalendarMonth
                | Operator::InCalendarYear
        );
    });
    found
}

/// The cache key of a find (`None`: not cacheable). The debug form of the whole query: every
/// part of it is data (strings quoted and escaped), so two queries share a key only when they are
/// equal.
pub(crate) fn find_key(q: &FindQuery) -> Option<String> {
    (!uses_now(&q.filter)).then(|| format!("find {q:?}"))
}

/// The cache key of a count (`None`: not cacheable); `now` is left out, as it does not matter
/// to a filter that does not use it.
pub(crate) fn count_key(q: &CountQuery) -> Option<String> {
    (!uses_now(&q.filter)).then(|| {
        format!(
            "count {:?} {:?} {:?}",
            q.entity_type, q.filter, q.retired_only
        )
    })
}

/// A map entry's own bookkeeping (the LRU links, the hash slot, the `Arc`).
const ENTRY_OVERHEAD: usize = 96;

fn cached_size(c: &Cached) -> usize {
    match c {
        Cached::Count(_) => 0,
        // The records, and their encoding, which the query-server keeps beside them.
        Cached::Rows(rows) => {
            rows.iter().map(record_size).sum::<usize>() + rows.wire_estimate() + 64
        }
    }
}

/// A B-tree node of a record's fields: room for 11 keys and values, and its bookkeeping (the
/// standard library's node capacity; a map of one field still allocates a whole node).
const FIELD_NODE: usize = 11 * (std::mem::size_of::<String>() + std::mem::size_of::<Value>()) + 48;

/// An estimate of a record's heap size.
fn record_size(r: &Record) -> usize {
    // The record itself, its type name, the field map's nodes, and per field the key's and the
    // value's own heap parts.
    std::mem::size_of::<Record>()
        + r.entity_type.len()
        + r.fields.len().div_ceil(11).max(1) * FIELD_NODE
        + r.fields
            .iter()
            .map(|(k, v)| k.len() + value_size(v))
            .sum::<usize>()
}

fn value_size(v: &Value) -> usize {
    let link = |r: &crate::model::EntityRef| {
        56 + r.entity_type.len() + r.name.as_ref().map_or(0, String::len)
    };
    match v {
        Value::Null
        | Value::Bool(_)
        | Value::Int(_)
        | Value::Float(_)
        | Value::Date(_)
        | Value::DateTime(_) => 0,
        Value::Text(s) => s.len(),
        Value::Entity(r) => link(r),
        Value::MultiEntity(list) => list.iter().map(link).sum(),
        // Serialised length is close to a JSON tree's heap size order of magnitude.
        Value::Json(j) => 64 + j.to_string().len() * 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EntityRef;

    fn rows(n: usize) -> Cached {
        Cached::Rows(Arc::new(FoundRows::new(
            (0..n)
                .map(|i| Record {
                    entity_type: "Shot".into(),
                    id: i as i64,
                    fields: [("code".to_owned(), Value::Text(format!("sh{i:04}")))]
                        .into_iter()
                        .collect(),
                })
                .collect(),
        )))
    }

    fn ids(c: Lookup) -> Option<Vec<i64>> {
        match c {
            Lookup::Hit(Cached::Rows(r)) => Some(r.iter().map(|r| r.id).collect()),
            _ => None,
        }
    }

    fn hit(c: Lookup) -> bool {
        matches!(c, Lookup::Hit(_))
    }

    #[test]
    fn an_answer_is_kept_when_its_request_misses_a_second_time() {
        let c = ResultCache::new(1 << 20);
        assert!(matches!(c.get("a", 1), Lookup::Miss { keep: false }));
        assert!(matches!(c.get("b", 1), Lookup::Miss { keep: false }));
        assert!(matches!(c.get("a", 1), Lookup::Miss { keep: true }));
        // A new generation forgets the first misses too.
        assert!(matches!(c.get("b", 2), Lookup::Miss { keep: false }));
        assert!(matches!(c.get("b", 2), Lookup::Miss { keep: true }));
    }

    #[test]
    fn an_answer_is_served_only_at_its_generation() {
        let c = ResultCache::new(1 << 20);
        c.insert("a".into(), 3, rows(2));
        assert_eq!(ids(c.get("a", 3)), Some(vec![0, 1]));
        // A newer generation drops it for good, even if an older generation is asked again.
        assert!(!hit(c.get("a", 4)));
        assert!(!hit(c.get("a", 3)));
        // An answer read at an older generation than the cache's is not kept.
        c.insert("b".into(), 3, rows(1));
        assert!(!hit(c.get("b", 4)));
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.invalidations, s.entries), (1, 3, 1, 0));
    }

    #[test]
    fn the_budget_evicts_the_least_recently_used_first() {
        let one = key_size("k0") + cached_size(&rows(10));
        let c = ResultCache::new(one * 10 + one / 2);
        for k in 0..10 {
            c.insert(format!("k{k}"), 1, rows(10));
        }
        // k0 is used, so k1 is the least recently used when k10 arrives.
        assert!(hit(c.get("k0", 1)));
        c.insert("k10".into(), 1, rows(10));
        assert!(!hit(c.get("k1", 1)));
        for k in [0, 2, 9, 10] {
            assert!(hit(c.get(&format!("k{k}"), 1)), "k{k} evicted");
        }
        let s = c.stats();
        assert_eq!((s.evictions, s.entries), (1, 10));
        assert!(s.bytes <= s.budget_bytes, "{s:?}");
        // An answer over a quarter of the budget is not kept at all.
        c.insert("big".into(), 1, rows(100));
        assert!(!hit(c.get("big", 1)));
        assert_eq!(c.stats().entries, 10);
    }

    fn key_size(k: &str) -> usize {
        k.len() + ENTRY_OVERHEAD
    }

    #[test]
    fn record_sizes_grow_with_their_contents() {
        let link = |name: Option<&str>| EntityRef {
            entity_type: "Sequence".into(),
            id: 1,
            name: name.map(str::to_owned),
        };
        assert!(value_size(&Value::Text("x".repeat(100))) >= 100);
        assert!(
            value_size(&Value::Entity(link(Some("SQ010"))))
                > value_size(&Value::Entity(link(None)))
        );
        assert!(
            value_size(&Value::MultiEntity(vec![link(None); 10]))
                >= 10 * value_size(&Value::Entity(link(None)))
        );
    }
}
