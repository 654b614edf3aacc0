//! The sliding hour as 61 one-minute buckets.
//!
//! A decision at second `t` counts the buckets `b-60 ..= b` where
//! `b = t / 60`: the current minute and the sixty before it. The oldest one
//! is partly outside the trailing hour but still counts in full, so the
//! window always covers at least the last 3,600 s: no interval of 3,600 s
//! can admit more than the budget. The price is under-admission of at most
//! one bucket (one minute's worth of requests) at the edge: a client pacing
//! itself at 98 % of budget/3,600 per second sends at most
//! 0.98 × 3,660/3,600 ≈ 99.6 % of the budget in any 61 minutes, so it is
//! never refused.
//!
//! The same arithmetic runs in Rust (local store) and in Lua (Redis store).

/// Buckets per window.
pub const BUCKETS: usize = 61;
/// Seconds per bucket.
pub const BUCKET_SECS: i64 = 60;

/// The outcome of one decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request was admitted (and counted).
    pub allowed: bool,
    /// The key's hourly budget.
    pub limit: u64,
    /// What is left after this request.
    pub remaining: u64,
    /// Unix second at which `remaining` next grows.
    pub reset_at: i64,
    /// Seconds until a refused request of the same cost would fit (≥ 1).
    pub retry_after: Option<u64>,
}

/// One key's counts: a ring of minute buckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    counts: [u32; BUCKETS],
    /// Bucket index (unix minute) of the newest slot.
    head: i64,
    /// The sum of `counts`, kept as they change.
    total: u64,
}

impl Window {
    /// An empty window.
    pub fn new() -> Self {
        Self {
            counts: [0; BUCKETS],
            head: i64::MIN,
            total: 0,
        }
    }

    /// Rebuilds a window from `(bucket, count)` pairs (persisted state).
    pub fn from_buckets(buckets: impl IntoIterator<Item = (i64, u32)>) -> Self {
        let mut w = Self::new();
        let mut pairs: Vec<_> = buckets.into_iter().filter(|(_, c)| *c > 0).collect();
        pairs.sort_unstable();
        for (bucket, count) in pairs {
            w.advance(bucket);
            w.add(slot(bucket), count);
        }
        w
    }

    /// The non-empty buckets still in the window at `now`, oldest first.
    pub fn buckets(&self, now: i64) -> Vec<(i64, u32)> {
        if self.head == i64::MIN {
            return Vec::new();
        }
        let span = BUCKETS as i64 - 1;
        let b = now.div_euclid(BUCKET_SECS);
        let (lo, hi) = ((b - span).max(self.head - span), b.min(self.head));
        (lo..=hi)
            .map(|k| (k, self.counts[slot(k)]))
            .filter(|(_, c)| *c > 0)
            .collect()
    }

    /// Whether nothing counted is left in the window at `now` (the key has
    /// been idle for the whole window, or never counted).
    pub fn is_idle(&self, now: i64) -> bool {
        self.head == i64::MIN || now.div_euclid(BUCKET_SECS) - self.head >= BUCKETS as i64
    }

    /// Adds `count` to a slot (saturating), keeping `total`.
    fn add(&mut self, index: usize, count: u32) {
        let before = self.counts[index];
        self.counts[index] = before.saturating_add(count);
        self.total += u64::from(self.counts[index] - before);
    }

    /// Moves the ring forward to bucket `b`, zeroing the minutes passed.
    fn advance(&mut self, b: i64) {
        if self.head == i64::MIN || b - self.head >= BUCKETS as i64 {
            self.counts = [0; BUCKETS];
            self.total = 0;
        } else if b > self.head {
            for k in self.head + 1..=b {
                self.total -= u64::from(self.counts[slot(k)]);
                self.counts[slot(k)] = 0;
            }
        } else {
            return;
        }
        self.head = b;
    }

    /// Admits `cost` requests at unix second `now` if they fit in `limit`.
    pub fn decide(&mut self, now: i64, limit: u64, cost: u64) -> Decision {
        let b = now.div_euclid(BUCKET_SECS);
        self.advance(b);
        let (total, oldest) = self.scan(now);
        if total + cost > limit {
            return outcome(false, &self.buckets(now), total, limit, cost, now);
        }
        // Allocation-free on the hot path: only a refusal lists the buckets.
        let added = u32::try_from(cost).unwrap_or(u32::MAX);
        self.add(slot(b), added);
        let oldest = match oldest {
            Some(k) => Some(k.min(b)),
            None if cost > 0 => Some(b),
            None => None,
        };
        Decision {
            allowed: true,
            limit,
            remaining: limit - total - cost,
            reset_at: oldest.map_or(now, leaves_at),
            retry_after: None,
        }
    }

    /// Total count and oldest non-empty bucket in the window at `now`.
    fn scan(&self, now: i64) -> (u64, Option<i64>) {
        if self.head == i64::MIN {
            return (0, None);
        }
        let span = BUCKETS as i64 - 1;
        let b = now.div_euclid(BUCKET_SECS);
        if b == self.head {
            // The common case: every slot holds one of the minutes
            // b-60 ..= b, and `total` is their sum. Only the oldest
            // non-empty minute is looked for, oldest first, without a
            // division per slot (61 of those were most of a decision's cost).
            if self.total == 0 {
                return (0, None);
            }
            let mut index = slot(b + 1);
            for age in 0..BUCKETS {
                if self.counts[index] > 0 {
                    return (self.total, Some(b - span + age as i64));
                }
                index += 1;
                if index == BUCKETS {
                    index = 0;
                }
            }
            return (self.total, None);
        }
        let (lo, hi) = ((b - span).max(self.head - span), b.min(self.head));
        let mut total = 0;
        let mut oldest = None;
        for k in lo..=hi {
            let c = self.counts[slot(k)];
            if c > 0 {
                total += u64::from(c);
                oldest.get_or_insert(k);
            }
        }
        (total, oldest)
    }

    /// The figures a request that is not counted would see.
    pub fn peek(&self, now: i64, limit: u64) -> Decision {
        let in_window = self.buckets(now);
        let total = in_window.iter().map(|(_, c)| u64::from(*c)).sum();
        let mut d = outcome(true, &in_window, total, limit, 0, now);
        d.retry_after = None;
        d
    }
}

impl Default for Window {
    fn default() -> Self {
        Self::new()
    }
}

fn slot(bucket: i64) -> usize {
    bucket.rem_euclid(BUCKETS as i64) as usize
}

/// When bucket `k` leaves the window.
fn leaves_at(k: i64) -> i64 {
    (k + BUCKETS as i64) * BUCKET_SECS
}

/// Headers and retry time from the buckets in the window (oldest first).
pub fn outcome(
    allowed: bool,
    buckets: &[(i64, u32)],
    total: u64,
    limit: u64,
    cost: u64,
    now: i64,
) -> Decision {
    let reset_at = buckets.first().map_or(now, |(k, _)| leaves_at(*k));
    let retry_after = if allowed {
        None
    } else if cost > limit {
        Some((BUCKETS as i64 * BUCKET_SECS) as u64)
    } else {
        let mut need = (total + cost).saturating_sub(limit);
        let mut at = now + 1;
        for (k, c) in buckets {
            at = leaves_at(*k);
            need = need.saturating_sub(u64::from(*c));
            if need == 0 {
                break;
            }
        }
        Some((at - now).max(1) as u64)
    };
    Decision {
        allowed,
        limit,
        remaining: limit.saturating_sub(total),
        reset_at,
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_budget_then_refuses_until_the_oldest_minute_leaves() {
        let mut w = Window::new();
        let t0 = 1_000_000 * 60 + 30;
        for i in 0..5 {
            let d = w.decide(t0, 5, 1);
            assert!(d.allowed);
            assert_eq!(d.remaining, 4 - i);
        }
        let refused = w.decide(t0 + 10, 5, 1);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        let retry = refused.retry_after.unwrap_or(0) as i64;
        assert_eq!(t0 + 10 + retry, refused.reset_at);
        assert!(!w.decide(t0 + 10 + retry - 1, 5, 1).allowed);
        assert!(w.decide(t0 + 10 + retry, 5, 1).allowed);
    }

    /// The kept total and the fast scan agree with the buckets, recounted,
    /// over a long irregular run (time moving 0–300 s per step, costs 0–3).
    #[test]
    fn running_total_matches_the_buckets() {
        let mut w = Window::new();
        let mut now = 1_700_000_000;
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            now += (seed % 301) as i64 * i64::from(!seed.is_multiple_of(5)) / 4;
            let cost = (seed >> 20) % 4;
            let d = w.decide(now, 500, cost);
            let buckets = w.buckets(now);
            let recount: u64 = buckets.iter().map(|(_, c)| u64::from(*c)).sum();
            assert_eq!(d.remaining, 500u64.saturating_sub(recount));
            let oldest = buckets.first().map_or(now, |(k, _)| leaves_at(*k));
            if d.allowed {
                assert_eq!(d.reset_at, oldest);
            }
        }
    }

    #[test]
    fn batches_are_all_or_nothing() {
        let mut w = Window::new();
        assert!(w.decide(120, 10, 8).allowed);
        let d = w.decide(121, 10, 3);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 2);
        assert!(w.decide(122, 10, 2).allowed);
        assert!(!w.decide(123, 10, 11).allowed);
    }

    #[test]
    fn round_trips_through_buckets() {
        let mut w = Window::new();
        for t in (0..4000).step_by(7) {
            w.decide(t, 1000, 1);
        }
        let copy = Window::from_buckets(w.buckets(4000));
        assert_eq!(copy.peek(4000, 1000), w.peek(4000, 1000));
    }
}
