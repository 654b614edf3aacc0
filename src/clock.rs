//! Time as a dependency, so expiry and rate-limit tests never sleep.

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The operating system's clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to (for tests).
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// Starts at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Mutex::new(start))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An instant as quire writes it everywhere (API, CLI, exports, audit
/// details, logs): RFC 3339 in UTC with milliseconds and a `Z`, such as
/// `2026-11-28T16:05:09.123Z`.
pub fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `#[serde(serialize_with = "crate::clock::serialize_stamp")]` for a `DateTime<Utc>`.
pub fn serialize_stamp<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&stamp(*t))
}

/// Like [`serialize_stamp`] for an `Option<DateTime<Utc>>` (`null` when unset).
pub fn serialize_stamp_opt<S: serde::Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&stamp(*t)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn stamps_are_utc_with_milliseconds_and_z() {
        let t = Utc.with_ymd_and_hms(2026, 11, 28, 16, 5, 9).unwrap()
            + Duration::nanoseconds(123_456_789);
        assert_eq!(stamp(t), "2026-11-28T16:05:09.123Z");
        let whole = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(stamp(whole), "2026-01-01T00:00:00.000Z");
    }
}
