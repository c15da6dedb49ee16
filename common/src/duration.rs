//! Durations as people write them in pim.toml and on the command line: `30s`, `15m`, `8h`,
//! `1d`, or a sum such as `1h30m`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError(String);

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DurationError {}

/// Parses a duration into seconds. Zero is refused: no grant, window or lockout lasts no time.
pub fn parse(text: &str) -> Result<u64, DurationError> {
    let bad = || {
        DurationError(format!(
            "'{}' is not a duration; write a number and a unit (s, m, h, d), e.g. 30s, 15m, 8h, 1d or 1h30m",
            crate::text::escape(text)
        ))
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for ch in text.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(bad()),
        };
        if digits.is_empty() {
            return Err(bad());
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    if total == 0 {
        return Err(DurationError(format!(
            "'{}' is zero; a duration must be at least 1s",
            crate::text::escape(text)
        )));
    }
    Ok(total)
}

/// Formats seconds the way `parse` reads them, largest units first (`1h30m`, `2d`, `45s`).
pub fn format(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{}", rest / size, unit));
            rest %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_each_unit_then_seconds_are_scaled() {
        assert_eq!(parse("30s"), Ok(30));
        assert_eq!(parse("15m"), Ok(900));
        assert_eq!(parse("8h"), Ok(28800));
        assert_eq!(parse("1d"), Ok(86400));
    }

    #[test]
    fn given_a_sum_then_parts_add_up() {
        assert_eq!(parse("1h30m"), Ok(5400));
        assert_eq!(parse(" 2m10s "), Ok(130));
    }

    #[test]
    fn given_malformed_text_then_error_names_it() {
        for bad in ["", "h", "10", "10x", "1.5h", "-1h", "1h 30m", "m5"] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("is not a duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn given_zero_or_overflow_then_refused() {
        assert!(parse("0s").unwrap_err().to_string().contains("zero"));
        assert!(parse("99999999999999999999d").is_err());
        assert!(parse("999999999999999999d").is_err());
    }

    #[test]
    fn given_seconds_then_format_round_trips() {
        for secs in [1, 59, 60, 61, 3600, 5400, 86400, 90061] {
            assert_eq!(parse(&format(secs)), Ok(secs));
        }
        assert_eq!(format(5400), "1h30m");
    }
}
