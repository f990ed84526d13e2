//! The duration syntax of the attribute and the environment, and durations in words.

use std::time::Duration;

/// Why a text is not a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationError {
    /// Not of the form `500ms`, `15s`, `2m` or `15`.
    Malformed,
    /// Well-formed, but more milliseconds than a `u64` holds.
    TooLarge,
}

/// Reads an integer with a unit `ms`, `s` or `m` (`"500ms"`, `"15s"`, `"2m"`), or a bare
/// integer number of seconds (`"15"`); spaces around the number and unit are allowed.
pub fn read_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(DurationError::Malformed);
    }
    let per_unit: u64 = match unit.trim_start() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        _ => return Err(DurationError::Malformed),
    };
    let amount: u64 = digits.parse().map_err(|_| DurationError::TooLarge)?;
    let millis = amount
        .checked_mul(per_unit)
        .ok_or(DurationError::TooLarge)?;
    Ok(Duration::from_millis(millis))
}

/// [`read_duration`], with an error in words (`infuse::parse_duration`).
///
/// ```
/// use std::time::Duration;
/// assert_eq!(infuse_settings::parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(infuse_settings::parse_duration("2m"), Ok(Duration::from_secs(120)));
/// assert!(infuse_settings::parse_duration("soon").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    read_duration(text).map_err(|error| match error {
        DurationError::Malformed => format!(
            "expected a duration like \"500ms\", \"15s\" or \"2m\", found {:?}",
            text.trim()
        ),
        DurationError::TooLarge => format!("duration {:?} is too large", text.trim()),
    })
}

/// A duration as people say it, for limits and defaults: `250ms`, `15s`, `2m`, `24h`, or
/// seconds with a fraction; absurd values are shown in seconds.
pub fn describe(d: Duration) -> String {
    let ms = d.as_millis();
    if d.subsec_nanos() % 1_000_000 != 0 {
        format!("{d:?}")
    } else if ms < 1_000 {
        format!("{ms}ms")
    } else if ms % 3_600_000 == 0 && ms / 3_600_000 <= 24 * 365 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 && ms / 60_000 < 24 * 60 {
        format!("{}m", ms / 60_000)
    } else if ms % 1_000 == 0 {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_syntax() {
        let ms = |text| read_duration(text).map(|d| d.as_millis());
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("15s"), Ok(15_000));
        assert_eq!(ms("2m"), Ok(120_000));
        assert_eq!(ms("15"), Ok(15_000));
        assert_eq!(ms(" 15 s "), Ok(15_000));
        assert_eq!(ms("0ms"), Ok(0));
        for bad in [
            "",
            "s",
            "15h",
            "24h",
            "1.5s",
            "-1s",
            "fifteen",
            "15 seconds",
            "15sec",
        ] {
            assert_eq!(ms(bad), Err(DurationError::Malformed), "{bad:?}");
        }
        assert!(parse_duration("18446744073709551615ms").is_ok());
        assert_eq!(ms("18446744073709551615m"), Err(DurationError::TooLarge));
        assert_eq!(ms("99999999999999999999999"), Err(DurationError::TooLarge));
        assert_eq!(
            parse_duration(" soon"),
            Err("expected a duration like \"500ms\", \"15s\" or \"2m\", found \"soon\"".into())
        );
    }

    #[test]
    fn durations_are_described_as_said() {
        assert_eq!(describe(Duration::from_millis(250)), "250ms");
        assert_eq!(describe(Duration::from_secs(15)), "15s");
        assert_eq!(describe(Duration::from_secs(120)), "2m");
        assert_eq!(describe(Duration::from_secs(86_400)), "24h");
        assert_eq!(describe(Duration::from_millis(1_500)), "1500ms");
        assert!(describe(Duration::MAX).ends_with('s'));
    }
}
