//! `quire api-keys usage`: the range from the flags, and `keyUsage`'s answer
//! as a table (one row per bucket and key) or as JSON. (`client` sends it.)

use chrono::{DateTime, Duration, NaiveDate, Utc};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};

/// Bucket size on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Granularity {
    Hour,
    Day,
}

/// `quire api-keys usage`'s own flags (the client's are beside them).
#[derive(Args, Clone)]
pub struct UsageArgs {
    /// First day or instant (`YYYY-MM-DD` or RFC 3339; default: 29 days
    /// before today, so 30 days with today).
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Last day (inclusive, `YYYY-MM-DD`) or end instant (exclusive, RFC
    /// 3339); default: the end of today.
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    /// Bucket size.
    #[arg(long, value_enum, default_value_t = Granularity::Day)]
    pub granularity: Granularity,
}

/// The `keyUsage` query the command sends.
pub const QUERY: &str = "query($from: DateTime!, $to: DateTime!, $g: UsageGranularity) { keyUsage(from: $from, to: $to, granularity: $g) { start keyId keyName maskedKey requests rateLimited errors } }";

/// The variables of [`QUERY`] for these flags at `now`.
pub fn variables(args: &UsageArgs, now: DateTime<Utc>) -> Result<Value, String> {
    let (from, to) = range(args.from.as_deref(), args.to.as_deref(), now)?;
    let granularity = match args.granularity {
        Granularity::Hour => "HOUR",
        Granularity::Day => "DAY",
    };
    Ok(json!({ "from": stamp(from), "to": stamp(to), "g": granularity }))
}

/// What the command prints for `keyUsage`'s answer: the JSON, or a table.
pub fn render(buckets: &Value, args: &UsageArgs, as_json: bool) -> String {
    if as_json {
        format!("{buckets}\n")
    } else {
        table(buckets, args.granularity)
    }
}

/// `[from, to)` from the flags: a date-only `--to` includes that day.
fn range(
    from: Option<&str>,
    to: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    let today = start_of_day(now.date_naive());
    let from = match from {
        Some(s) => parse(s, false).map_err(|e| format!("--from: {e}"))?,
        None => today - Duration::days(29),
    };
    let to = match to {
        Some(s) => parse(s, true).map_err(|e| format!("--to: {e}"))?,
        None => today + Duration::days(1),
    };
    if to <= from {
        return Err("--to must be after --from".into());
    }
    Ok((from, to))
}

/// A `YYYY-MM-DD` day (its start; with `end`, the next day's start) or an
/// RFC 3339 instant.
fn parse(s: &str, end: bool) -> Result<DateTime<Utc>, String> {
    if let Ok(day) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let start = start_of_day(day);
        return Ok(if end {
            start + Duration::days(1)
        } else {
            start
        });
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("\"{s}\" is neither YYYY-MM-DD nor RFC 3339"))
}

fn start_of_day(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One row per bucket and key, columns aligned.
fn table(buckets: &Value, granularity: Granularity) -> String {
    let mut rows = vec![[
        match granularity {
            Granularity::Hour => "HOUR".to_owned(),
            Granularity::Day => "DAY".to_owned(),
        },
        "KEY".to_owned(),
        "NAME".to_owned(),
        "REQUESTS".to_owned(),
        "RATE LIMITED".to_owned(),
        "ERRORS".to_owned(),
    ]];
    for b in buckets.as_array().into_iter().flatten() {
        let start = b["start"].as_str().unwrap_or("");
        let start = match granularity {
            Granularity::Day => start.get(..10).unwrap_or(start),
            Granularity::Hour => start.get(..16).unwrap_or(start),
        };
        rows.push([
            start.replace('T', " "),
            b["maskedKey"].as_str().unwrap_or("").to_owned(),
            b["keyName"].as_str().unwrap_or("").to_owned(),
            b["requests"].to_string(),
            b["rateLimited"].to_string(),
            b["errors"].to_string(),
        ]);
    }
    if rows.len() == 1 {
        return "no requests in this range\n".to_owned();
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i >= 3 {
                    format!("{c:>w$}", w = widths[i])
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn default_range_is_the_last_30_days_with_today() {
        let now = DateTime::parse_from_rfc3339("2026-11-28T15:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let (from, to) = range(None, None, now).unwrap();
        assert_eq!(stamp(from), "2026-10-30T00:00:00.000Z");
        assert_eq!(stamp(to), "2026-11-29T00:00:00.000Z");
        let (from, to) = range(Some("2026-11-01"), Some("2026-11-01"), now).unwrap();
        assert_eq!(
            (to - from).num_hours(),
            24,
            "a date-only --to includes its day"
        );
        let (_, to) = range(None, Some("2026-11-28T12:00:00Z"), now).unwrap();
        assert_eq!(stamp(to), "2026-11-28T12:00:00.000Z");
        assert!(range(Some("yesterday"), None, now).is_err());
        assert!(range(Some("2026-11-02"), Some("2026-11-01"), now).is_err());
    }

    #[test]
    fn table_has_one_row_per_bucket_and_key() {
        let buckets = json!([
            {"start": "2026-11-27T00:00:00.000Z", "keyId": "1", "keyName": "site", "maskedKey": "pk_live_abcd…wxyz", "requests": 12, "rateLimited": 2, "errors": 1},
            {"start": "2026-11-28T00:00:00.000Z", "keyId": "1", "keyName": "site", "maskedKey": "pk_live_abcd…wxyz", "requests": 3, "rateLimited": 0, "errors": 0}
        ]);
        let t = table(&buckets, Granularity::Day);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("DAY"));
        assert!(lines[1].starts_with("2026-11-27  pk_live_abcd…wxyz  site"));
        assert!(lines[1].ends_with("12             2       1"), "{t}");
        assert_eq!(
            table(&json!([]), Granularity::Day),
            "no requests in this range\n"
        );
    }
}
