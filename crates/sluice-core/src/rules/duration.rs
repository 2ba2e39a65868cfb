//! Durations as written in rules files: a decimal number and one unit,
//! `250ms`, `1s`, `1.5s`, `2m`, `1h`.
//!
//! One unit per value keeps the syntax obvious; the result must fit a
//! protobuf `Duration` because that is where it ends up.

use std::time::Duration;

/// protobuf's `Duration` limit (10 000 years), which Envoy enforces.
const MAX_SECONDS: u128 = 315_576_000_000;

/// Parses `text`; the error is a sentence for the user.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let hint = "write a number and a unit: `250ms`, `1s`, `1.5s`, `2m` or `1h`";
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_nanos: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "" => return Err(format!("invalid duration `{text}`: missing unit; {hint}")),
        _ => return Err(format!("invalid duration `{text}`: unknown unit; {hint}")),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits_ok = !whole.is_empty()
        && whole.chars().all(|c| c.is_ascii_digit())
        && fraction.chars().all(|c| c.is_ascii_digit())
        && (fraction.len() <= 9)
        && !(number.ends_with('.'));
    let too_long = || format!("invalid duration `{text}`: too large");
    if !digits_ok {
        return Err(format!("invalid duration `{text}`: {hint}"));
    }
    // Digits only, at most 9 after the point: overflow is the only failure.
    let whole: u128 = whole.parse().map_err(|_| too_long())?;
    let scale = 10u128.pow(fraction.len() as u32);
    let fraction: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| too_long())?
    };
    let nanos = whole
        .checked_mul(unit_nanos)
        .and_then(|n| n.checked_add(fraction * unit_nanos / scale))
        .ok_or_else(too_long)?;
    let seconds = nanos / 1_000_000_000;
    if seconds > MAX_SECONDS {
        return Err(too_long());
    }
    let seconds = u64::try_from(seconds).map_err(|_| too_long())?;
    Ok(Duration::new(seconds, (nanos % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_units_and_fractions() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0.001ms"), Ok(Duration::from_nanos(1000)));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "1",
            "s",
            "1.s",
            ".5s",
            "-1s",
            "1 s",
            "1sec",
            "1.2.3s",
            "1e3s",
            "1.0000000001s",
            "99999999999999999999999999999999999999999h",
            "100000000h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        let err = parse_duration("5").expect_err("no unit");
        assert!(err.contains("missing unit"), "{err}");
    }
}
