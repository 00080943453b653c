//! The event-log cursor (protocol §5.7, peer-systems §8.1): a low-water mark, the highest id seen
//! (`head`), and the open gaps between them. Every id in `(low_water, head]` is either seen or an
//! open gap, so the seen set is implicit and the cursor's size grows only with the number of gaps.
//!
//! A gap is waited for until it has been open for `gap_timeout` on the syncer's clock (its
//! first-seen time is persisted, so a restart does not reset it), or until the site's own clock
//! (`created_at` of the newest event) has moved `gap_timeout` past the event just above the gap
//! (this expires old gaps at once during a catch-up). The follower never re-reads a window: it
//! asks for `id > head`, and for the open gaps by `id in [...]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One id not yet seen below `head`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// When the syncer first noticed the gap (unix milliseconds, syncer clock).
    pub first_seen_ms: i64,
    /// `created_at` (unix seconds, site clock) of the first seen event above the gap.
    pub above_created_at: i64,
}

/// The persisted cursor (`state["cursor"]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Cursor {
    /// Every id `<= low_water` has been applied or has expired.
    pub low_water: i64,
    /// The highest id seen (or the starting point).
    pub head: i64,
    /// `created_at` of the event at `head` (site clock), 0 when unknown.
    pub head_created_at: i64,
    /// The open gaps in `(low_water, head)`, by id.
    pub gaps: BTreeMap<i64, Gap>,
    /// Entities to re-read (type, id, event id that asked), committed with the batch that found
    /// them, so a crash between the batch and the re-read loses nothing.
    #[serde(default)]
    pub dirty: Vec<(String, i64, i64)>,
    /// Gaps given up on since start (for metrics; not essential).
    #[serde(default)]
    pub expired_gaps: u64,
}

/// A gap expires after `timeout` on the syncer's clock, or once the site's clock (`created_at`,
/// one-second resolution, hence the extra second) has moved `timeout` past the event above it.
fn gap_expired(g: &Gap, head_created: i64, now_ms: i64, timeout_ms: i64) -> bool {
    let waited = now_ms.saturating_sub(g.first_seen_ms) >= timeout_ms;
    let site_moved = head_created > 0
        && g.above_created_at > 0
        && head_created - g.above_created_at > timeout_ms / 1000;
    waited || site_moved
}

/// What [`Cursor::observe`] decided about an event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not seen before: apply it.
    New,
    /// Already seen (or at/below the low-water mark): skip it.
    Duplicate,
}

impl Cursor {
    /// A cursor that will read every event with `id > start`.
    pub fn starting_at(start: i64) -> Cursor {
        Cursor {
            low_water: start,
            head: start,
            ..Cursor::default()
        }
    }

    /// Records that the event `id` (created at `created_at`, site clock) was read.
    pub fn observe(&mut self, id: i64, created_at: i64, now_ms: i64) -> Seen {
        if id <= self.low_water {
            return Seen::Duplicate;
        }
        if id > self.head {
            for missing in (self.head + 1)..id {
                self.gaps.insert(
                    missing,
                    Gap {
                        first_seen_ms: now_ms,
                        above_created_at: created_at,
                    },
                );
            }
            self.head = id;
            self.head_created_at = self.head_created_at.max(created_at);
            return Seen::New;
        }
        if self.gaps.remove(&id).is_some() {
            Seen::New
        } else {
            Seen::Duplicate
        }
    }

    /// Expires gaps older than `timeout_ms` and advances the low-water mark. Returns how many
    /// gaps expired.
    pub fn advance(&mut self, now_ms: i64, timeout_ms: i64) -> usize {
        let before = self.gaps.len();
        let head_created = self.head_created_at;
        self.gaps
            .retain(|_, g| !gap_expired(g, head_created, now_ms, timeout_ms));
        let expired = before - self.gaps.len();
        self.expired_gaps += expired as u64;
        self.low_water = match self.gaps.keys().next() {
            Some(first) => first - 1,
            None => self.head,
        };
        expired
    }

    /// Whether some gap would expire at `now_ms` (the follower asks for the gaps one last time
    /// before giving up on them).
    pub fn expiring(&self, now_ms: i64, timeout_ms: i64) -> bool {
        self.gaps
            .values()
            .any(|g| gap_expired(g, self.head_created_at, now_ms, timeout_ms))
    }

    /// The open gaps, oldest first, at most `limit`.
    pub fn gap_ids(&self, limit: usize) -> Vec<i64> {
        self.gaps.keys().take(limit).copied().collect()
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    pub fn from_json(v: &serde_json::Value) -> Option<Cursor> {
        serde_json::from_value(v.clone()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_events_advance_the_low_water_mark() {
        let mut c = Cursor::starting_at(10);
        for id in 11..=15 {
            assert_eq!(c.observe(id, 100, 0), Seen::New);
        }
        c.advance(0, 300_000);
        assert_eq!((c.low_water, c.head), (15, 15));
        assert_eq!(c.observe(12, 100, 0), Seen::Duplicate);
    }

    #[test]
    fn gaps_hold_the_low_water_mark_until_filled() {
        let mut c = Cursor::starting_at(10);
        c.observe(11, 100, 0);
        c.observe(14, 100, 0);
        c.advance(1_000, 300_000);
        assert_eq!(c.low_water, 11);
        assert_eq!(c.gap_ids(10), vec![12, 13]);
        assert_eq!(c.observe(13, 100, 2_000), Seen::New);
        assert_eq!(c.observe(13, 100, 2_000), Seen::Duplicate);
        c.advance(2_000, 300_000);
        assert_eq!(c.low_water, 11);
        assert_eq!(c.observe(12, 100, 3_000), Seen::New);
        c.advance(3_000, 300_000);
        assert_eq!((c.low_water, c.head), (14, 14));
    }

    #[test]
    fn gaps_expire_on_the_syncer_clock() {
        let mut c = Cursor::starting_at(0);
        c.observe(3, 100, 0);
        assert_eq!(c.advance(299_999, 300_000), 0);
        assert_eq!(c.low_water, 0);
        assert_eq!(c.advance(300_000, 300_000), 2);
        assert_eq!(c.low_water, 3);
        assert_eq!(c.observe(1, 100, 300_001), Seen::Duplicate);
    }

    #[test]
    fn gaps_expire_when_the_site_clock_moves_past_them() {
        let mut c = Cursor::starting_at(0);
        c.observe(2, 1_000, 0);
        c.observe(3, 1_300, 0);
        assert_eq!(c.advance(0, 300_000), 0);
        c.observe(4, 1_301, 0);
        assert_eq!(c.advance(0, 300_000), 1);
        assert_eq!(c.low_water, 4);
    }

    #[test]
    fn cursor_round_trips_through_json() {
        let mut c = Cursor::starting_at(5);
        c.observe(9, 10, 1);
        c.dirty.push(("Shot".into(), 3, 9));
        let back = Cursor::from_json(&c.to_json()).expect("round trip");
        assert_eq!(back, c);
    }
}
