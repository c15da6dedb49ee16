//! Times on the command line (`--since`, `--from`, `--until`) and times shown to people.
//!
//! The wire carries seconds since the Unix epoch, 0 meaning "absent". People read local time
//! plus a relative hint ("in 59m"); scripts get RFC 3339 UTC strings beside the raw seconds.

use jiff::civil;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use pim_common::duration;
use pim_common::text::escape;

/// What a time is shown against: the current instant and the zone to show it in.
#[derive(Debug, Clone)]
pub struct Clock {
    pub now: i64,
    pub tz: TimeZone,
}

impl Clock {
    /// The real clock and the system's time zone (`TZ`, then /etc/localtime).
    pub fn system() -> Clock {
        Clock {
            now: Timestamp::now().as_second(),
            tz: TimeZone::system(),
        }
    }
}

/// The forms accepted by `parse`, for error messages and `--help`.
pub const TIME_FORMS: &str =
    "RFC 3339 (2026-11-21T14:00:00Z), a date (2026-11-21, local midnight), \
'YYYY-MM-DD HH:MM' (local time), @UNIX-SECONDS, now, or a relative time (-2h, +30m, '2h ago')";

/// Parses a time written on the command line into seconds since the epoch.
///
/// The error names the bad value; the caller adds which option held it.
pub fn parse(text: &str, clock: &Clock) -> Result<i64, String> {
    let bad = || format!("'{}' is not a time; use {TIME_FORMS}", escape(text));
    let t = text.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if t.eq_ignore_ascii_case("now") {
        return Ok(clock.now);
    }
    if let Some(secs) = t.strip_prefix('@') {
        return secs.parse::<i64>().map_err(|_| bad());
    }
    let relative = |dur: &str, sign: i64| -> Result<i64, String> {
        let secs = duration::parse(dur).map_err(|_| bad())?;
        let secs = i64::try_from(secs).map_err(|_| bad())?;
        let at = clock.now.checked_add(sign * secs).ok_or_else(bad)?;
        // Stay within what can be shown as a date.
        Timestamp::from_second(at).map_err(|_| bad())?;
        Ok(at)
    };
    if let Some(dur) = t.strip_prefix('-') {
        return relative(dur, -1);
    }
    if let Some(dur) = t.strip_prefix('+') {
        return relative(dur, 1);
    }
    if let Some(dur) = t.strip_suffix("ago") {
        return relative(dur.trim_end(), -1);
    }
    if let Some(dur) = t.strip_prefix("in ") {
        return relative(dur.trim_start(), 1);
    }
    // Only digits, '-', ':', 'T', ' ', 'Z', '+', '.' belong to the absolute forms; refusing
    // anything else early keeps jiff's wider grammar (time zone annotations) out.
    if !t.chars().all(|c| {
        c.is_ascii_digit() || matches!(c, '-' | ':' | 'T' | 't' | ' ' | 'Z' | 'z' | '+' | '.')
    }) {
        return Err(bad());
    }
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Ok(ts.as_second());
    }
    // A civil date or date and time, read in the local zone (a bare date is midnight).
    if let Ok(dt) = t.parse::<civil::DateTime>() {
        return dt
            .to_zoned(clock.tz.clone())
            .map(|z| z.timestamp().as_second())
            .map_err(|_| bad());
    }
    Err(bad())
}

/// RFC 3339 in UTC (`2026-11-21T14:00:00Z`); `None` for 0 (absent).
pub fn rfc3339(unix: i64) -> Option<String> {
    if unix == 0 {
        return None;
    }
    Some(match Timestamp::from_second(unix) {
        Ok(ts) => ts.to_string(),
        Err(_) => format!("@{unix}"),
    })
}

fn local(unix: i64, tz: &TimeZone, format: &str) -> String {
    let Ok(ts) = Timestamp::from_second(unix) else {
        return format!("@{unix}");
    };
    let zoned = ts.to_zoned(tz.clone());
    jiff::fmt::strtime::format(format, &zoned).unwrap_or_else(|_| ts.to_string())
}

/// Local time to the minute with the zone's abbreviation: `2026-11-21 15:00 CET`.
pub fn local_minute(unix: i64, tz: &TimeZone) -> String {
    local(unix, tz, "%Y-%m-%d %H:%M %Z")
}

/// The zone's abbreviation at `unix`: `CET`, `UTC`.
pub fn zone_abbreviation(unix: i64, tz: &TimeZone) -> String {
    local(unix, tz, "%Z")
}

/// Local time to the second, for logs: `2026-11-21 15:00:05`.
pub fn local_second(unix: i64, tz: &TimeZone) -> String {
    local(unix, tz, "%Y-%m-%d %H:%M:%S")
}

/// A span in at most two units: `45s`, `4m30s` (seconds under ten minutes, where they
/// matter), then to the nearest minute: `59m`, `1h5m`, `2d3h`. Rounding, not truncating, so a
/// span shown a second after another (a day's grant at its start, then in `pim status`) does
/// not drop to `23h59m` from `1d`.
pub fn span(secs: u64) -> String {
    const M: u64 = 60;
    const H: u64 = 3600;
    const D: u64 = 86400;
    let two = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit}{small}{small_unit}")
        }
    };
    if secs < M {
        return format!("{secs}s");
    }
    if secs < 10 * M {
        return two(secs / M, "m", secs % M, "s");
    }
    let secs = (secs + M / 2) / M * M;
    if secs < H {
        format!("{}m", secs / M)
    } else if secs < D {
        two(secs / H, "h", secs % H / M, "m")
    } else {
        two(secs / D, "d", secs % D / H, "h")
    }
}

/// `in 59m`, `3m ago` or `now`, relative to the clock.
pub fn relative(unix: i64, now: i64) -> String {
    let diff = unix.saturating_sub(now);
    if diff == 0 {
        "now".to_string()
    } else if diff > 0 {
        format!("in {}", span(diff.unsigned_abs()))
    } else {
        format!("{} ago", span(diff.unsigned_abs()))
    }
}

/// `2026-11-21 15:00 CET (in 59m)`, or "-" when absent.
pub fn local_with_relative(unix: i64, clock: &Clock) -> String {
    if unix == 0 {
        return "-".to_string();
    }
    format!(
        "{} ({})",
        local_minute(unix, &clock.tz),
        relative(unix, clock.now)
    )
}

/// Seconds left until `unix`, never negative.
pub fn remaining(unix: i64, now: i64) -> u64 {
    u64::try_from(unix.saturating_sub(now)).unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// 2026-11-21T14:00:00Z: "now" in the client's unit tests.
    pub(crate) const NOW: i64 = 1_795_269_600;

    /// A clock stopped at [`NOW`], in UTC.
    pub(crate) fn utc() -> Clock {
        Clock {
            now: NOW,
            tz: TimeZone::UTC,
        }
    }

    fn plus_one() -> Clock {
        Clock {
            now: NOW,
            tz: TimeZone::fixed(jiff::tz::offset(1)),
        }
    }

    #[test]
    fn given_the_test_clock_then_it_is_the_documented_instant() {
        assert_eq!(rfc3339(NOW).as_deref(), Some("2026-11-21T14:00:00Z"));
    }

    #[test]
    fn given_rfc3339_then_seconds_are_exact() {
        assert_eq!(parse("2026-11-21T14:00:00Z", &utc()), Ok(NOW));
        assert_eq!(parse("2026-11-21T15:00:00+01:00", &utc()), Ok(NOW));
        assert_eq!(parse("2026-11-21t14:00:00z", &plus_one()), Ok(NOW));
    }

    #[test]
    fn given_a_date_then_local_midnight() {
        assert_eq!(parse("2026-11-21", &utc()), Ok(NOW - 14 * 3600));
        assert_eq!(parse("2026-11-21", &plus_one()), Ok(NOW - 15 * 3600));
    }

    #[test]
    fn given_a_local_date_and_time_then_the_zone_applies() {
        assert_eq!(parse("2026-11-21 14:00", &utc()), Ok(NOW));
        assert_eq!(parse("2026-11-21 15:00", &plus_one()), Ok(NOW));
        assert_eq!(parse("2026-11-21T15:00:30", &plus_one()), Ok(NOW + 30));
    }

    #[test]
    fn given_unix_seconds_or_now_then_taken_as_is() {
        assert_eq!(parse("@1795269600", &utc()), Ok(NOW));
        assert_eq!(parse("now", &utc()), Ok(NOW));
        assert_eq!(parse(" NOW ", &utc()), Ok(NOW));
    }

    #[test]
    fn given_relative_times_then_offset_from_now() {
        assert_eq!(parse("-2h", &utc()), Ok(NOW - 7200));
        assert_eq!(parse("+30m", &utc()), Ok(NOW + 1800));
        assert_eq!(parse("2h ago", &utc()), Ok(NOW - 7200));
        assert_eq!(parse("1h30m ago", &utc()), Ok(NOW - 5400));
        assert_eq!(parse("in 1d", &utc()), Ok(NOW + 86400));
    }

    #[test]
    fn given_bad_times_then_error_names_the_value_and_the_forms() {
        for bad in [
            "",
            "yesterday",
            "5x",
            "-5x",
            "2026-13-01",
            "2026-11-21 25:00",
            "@abc",
            "ago",
            "2026-11-21T14:00:00[Europe/Paris]",
            "+999999999999d",
        ] {
            let err = parse(bad, &utc()).unwrap_err();
            assert!(err.contains("is not a time"), "{bad}: {err}");
            assert!(err.contains("RFC 3339"), "{bad}: {err}");
        }
        assert!(parse("5x", &utc()).unwrap_err().starts_with("'5x'"));
    }

    #[test]
    fn given_control_characters_in_a_bad_time_then_the_error_escapes_them() {
        let err = parse("\x1b[31m", &utc()).unwrap_err();
        assert!(err.contains("\\x1b"), "{err}");
        assert!(!err.contains('\x1b'));
    }

    #[test]
    fn given_zero_then_rfc3339_is_absent() {
        assert_eq!(rfc3339(0), None);
    }

    #[test]
    fn given_spans_then_two_units_seconds_under_ten_minutes_else_the_nearest_minute() {
        assert_eq!(span(0), "0s");
        assert_eq!(span(45), "45s");
        assert_eq!(span(270), "4m30s");
        assert_eq!(span(300), "5m");
        assert_eq!(span(3540), "59m");
        assert_eq!(span(3600), "1h");
        assert_eq!(span(3900), "1h5m");
        assert_eq!(span(86400 + 3 * 3600 + 59), "1d3h");
        assert_eq!(span(2 * 86400), "2d");
    }

    #[test]
    fn given_the_same_end_a_second_apart_then_the_span_reads_the_same() {
        // A day's grant as activate shows it, then as pim status shows it a second later.
        assert_eq!(span(86400), span(86399));
        assert_eq!(span(3600), span(3599));
        assert_eq!(relative(NOW + 86400, NOW + 1), "in 1d");
    }

    #[test]
    fn given_future_and_past_then_relative_reads_naturally() {
        assert_eq!(relative(NOW + 3540, NOW), "in 59m");
        assert_eq!(relative(NOW - 180, NOW), "3m ago");
        assert_eq!(relative(NOW, NOW), "now");
    }

    #[test]
    fn given_a_zone_then_local_time_shows_it() {
        assert_eq!(local_minute(NOW, &TimeZone::UTC), "2026-11-21 14:00 UTC");
        assert_eq!(local_second(NOW + 5, &TimeZone::UTC), "2026-11-21 14:00:05");
        assert!(local_minute(NOW, &plus_one().tz).starts_with("2026-11-21 15:00"));
        assert_eq!(
            local_with_relative(NOW + 3600, &utc()),
            "2026-11-21 15:00 UTC (in 1h)"
        );
        assert_eq!(local_with_relative(0, &utc()), "-");
    }

    #[test]
    fn given_a_past_end_then_remaining_is_zero() {
        assert_eq!(remaining(NOW - 10, NOW), 0);
        assert_eq!(remaining(NOW + 10, NOW), 10);
    }
}
