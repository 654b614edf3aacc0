//! The in-memory aggregate every request bumps: counts per (key, hour),
//! sharded so that concurrent requests rarely meet on a lock, bounded in the
//! number of (key, hour) entries it holds, and drained whole by each flush.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Shards of the aggregate; a power of two.
const SHARDS: usize = 16;

/// What one bucket counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Every request made with the key (a batch of N counts N).
    pub requests: u64,
    /// The 429s among them.
    pub rate_limited: u64,
    /// The other answers that carried an error.
    pub errors: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.requests += other.requests;
        self.rate_limited += other.rate_limited;
        self.errors += other.errors;
    }
}

/// One key's counts in one hour, as a flush takes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub key_id: String,
    /// The hour's first instant, Unix seconds.
    pub hour: i64,
    pub counts: Counts,
}

/// A key's hours not yet flushed: almost always one, two around the hour.
type Hours = Vec<(i64, Counts)>;

/// Counts per (key, hour), at most `max_entries` of them.
pub struct Tally {
    shards: Vec<Mutex<HashMap<String, Hours>>>,
    hasher: RandomState,
    entries: AtomicUsize,
    max_entries: usize,
}

impl Tally {
    /// An empty aggregate holding at most `max_entries` (key, hour) pairs.
    pub fn new(max_entries: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            entries: AtomicUsize::new(0),
            max_entries,
        }
    }

    /// Adds `counts` to the key's hour. `false` when that would take a new
    /// entry beyond the bound (the counts are dropped).
    pub fn add(&self, key_id: &str, hour: i64, counts: Counts) -> bool {
        let mut shard = self.shard(key_id);
        if let Some(hours) = shard.get_mut(key_id) {
            if let Some((_, c)) = hours.iter_mut().find(|(h, _)| *h == hour) {
                c.add(counts);
                return true;
            }
            if !self.reserve() {
                return false;
            }
            hours.push((hour, counts));
            return true;
        }
        if !self.reserve() {
            return false;
        }
        shard.insert(key_id.to_owned(), vec![(hour, counts)]);
        true
    }

    /// Takes every entry, leaving the aggregate empty.
    pub fn take(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for shard in &self.shards {
            let taken = std::mem::take(&mut *shard.lock().unwrap_or_else(PoisonError::into_inner));
            for (key_id, hours) in taken {
                self.entries.fetch_sub(hours.len(), Ordering::Relaxed);
                rows.extend(hours.into_iter().map(|(hour, counts)| Row {
                    key_id: key_id.clone(),
                    hour,
                    counts,
                }));
            }
        }
        rows
    }

    /// Puts back rows a flush could not write; how many had to be dropped
    /// (over the bound).
    pub fn restore(&self, rows: Vec<Row>) -> usize {
        rows.into_iter()
            .filter(|row| !self.add(&row.key_id, row.hour, row.counts))
            .count()
    }

    /// (key, hour) entries held.
    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    /// Whether nothing is waiting to be flushed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key_id: &str) -> std::sync::MutexGuard<'_, HashMap<String, Hours>> {
        let i = (self.hasher.hash_one(key_id) as usize) & (SHARDS - 1);
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims room for one more entry.
    fn reserve(&self) -> bool {
        self.entries
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_entries).then_some(n + 1)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one() -> Counts {
        Counts {
            requests: 1,
            ..Counts::default()
        }
    }

    #[test]
    fn adds_per_key_and_hour_and_drains() {
        let t = Tally::new(10);
        assert!(t.add("a", 0, one()));
        assert!(t.add("a", 0, one()));
        assert!(t.add("a", 3600, one()));
        assert!(t.add(
            "b",
            0,
            Counts {
                requests: 3,
                rate_limited: 1,
                errors: 2
            }
        ));
        assert_eq!(t.len(), 3);
        let mut rows = t.take();
        rows.sort_by(|x, y| (&x.key_id, x.hour).cmp(&(&y.key_id, y.hour)));
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].counts.requests, 2);
        assert_eq!(
            rows[2].counts,
            Counts {
                requests: 3,
                rate_limited: 1,
                errors: 2
            }
        );
        assert!(t.is_empty());
        assert!(t.take().is_empty());
    }

    #[test]
    fn the_bound_drops_new_entries_but_still_counts_existing_ones() {
        let t = Tally::new(2);
        assert!(t.add("a", 0, one()));
        assert!(t.add("b", 0, one()));
        assert!(!t.add("c", 0, one()), "a third entry is over the bound");
        assert!(!t.add("a", 3600, one()), "so is a new hour of a known key");
        assert!(t.add("a", 0, one()), "an existing entry still counts");
        let rows = t.take();
        assert_eq!(rows.iter().map(|r| r.counts.requests).sum::<u64>(), 3);
        // Restoring merges into what came meanwhile, within the bound.
        assert!(t.add("a", 0, one()));
        let dropped = t.restore(rows);
        assert_eq!(dropped, 0);
        assert_eq!(t.len(), 2);
        let total: u64 = t.take().iter().map(|r| r.counts.requests).sum();
        assert_eq!(total, 4);
    }

    #[test]
    fn memory_for_100_000_keys_current_hour() {
        // Not a timing: the figure for the closing note, and a bound that
        // catches an accidental blow-up (an entry is well under 256 bytes).
        let t = Tally::new(1_000_000);
        let ids: Vec<String> = (0..100_000)
            .map(|i| format!("{i:08x}-0000-4000-8000-000000000000"))
            .collect();
        let before = rss_kib();
        for id in &ids {
            assert!(t.add(id, 0, one()));
        }
        let grown = rss_kib().saturating_sub(before);
        println!("usage tally: 100000 keys' current-hour counters grew RSS by {grown} KiB");
        // Other tests allocate in parallel: the bound is loose on purpose.
        assert!(grown < 64 * 1024, "grew {grown} KiB");
        assert_eq!(t.take().len(), 100_000);
    }

    fn rss_kib() -> usize {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    }
}
