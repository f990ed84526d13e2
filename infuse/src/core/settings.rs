//! The thresholds of one breaker, and the duration syntax they accept.

use std::time::Duration;

/// The thresholds of one service's breaker (pybreaker's `fail_max`, `reset_timeout`,
/// `success_threshold`).
///
/// Built in `const` context by `#[circuit_breaker]`, overridable at boot by
/// [`Config::service`](crate::Config::service) and environment variables.
///
/// ```
/// use std::time::Duration;
/// let s = infuse::Settings::DEFAULT.fail_max(3).reset_timeout(Duration::from_secs(15));
/// assert_eq!((s.fail_max, s.reset_timeout, s.success_threshold), (3, Duration::from_secs(15), 1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Settings {
    /// Consecutive failures that trip the breaker (≥ 1).
    pub fail_max: u32,
    /// How long the breaker stays open before a trial call is allowed (> 0, at most
    /// [`Settings::MAX_RESET_TIMEOUT`]).
    pub reset_timeout: Duration,
    /// Successful trial calls needed in half-open to close (≥ 1).
    pub success_threshold: u32,
}

impl Settings {
    /// pybreaker's defaults: `fail_max = 5`, `reset_timeout = 60 s`, `success_threshold = 1`.
    pub const DEFAULT: Settings = Settings {
        fail_max: 5,
        reset_timeout: Duration::from_secs(60),
        success_threshold: 1,
    };

    /// The longest `reset_timeout` (24 hours). To keep a breaker open longer, for a
    /// maintenance window, use [`Breaker::open_for`](crate::Breaker::open_for) or
    /// [`Breaker::force_open`](crate::Breaker::force_open).
    pub const MAX_RESET_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

    /// Sets `fail_max` (zero is invalid: [`Settings::validate`] and the attribute reject it).
    pub const fn fail_max(mut self, n: u32) -> Self {
        self.fail_max = n;
        self
    }

    /// Sets `reset_timeout`.
    pub const fn reset_timeout(mut self, d: Duration) -> Self {
        self.reset_timeout = d;
        self
    }

    /// Sets `success_threshold`.
    pub const fn success_threshold(mut self, n: u32) -> Self {
        self.success_threshold = n;
        self
    }

    /// Checks the invariants (`fail_max ≥ 1`, `0 < reset_timeout ≤ 24 h`,
    /// `success_threshold ≥ 1`); the error names the setting and says what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        if self.fail_max == 0 {
            return Err("fail_max must be at least 1".into());
        }
        check_duration(
            "reset_timeout",
            self.reset_timeout,
            Settings::MAX_RESET_TIMEOUT,
        )?;
        if self.success_threshold == 0 {
            return Err("success_threshold must be at least 1".into());
        }
        Ok(())
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings::DEFAULT
    }
}

/// Checks that a duration setting is above zero and at most `max`, with an error that
/// names the setting and its bounds.
pub(crate) fn check_duration(name: &str, value: Duration, max: Duration) -> Result<(), String> {
    if value.is_zero() {
        return Err(format!("{name} must be greater than zero"));
    }
    if value > max {
        return Err(format!(
            "{name} = {} exceeds the maximum of {}",
            describe_duration(value),
            describe_duration(max)
        ));
    }
    Ok(())
}

/// A duration as people write it: `250ms`, `15s`, `2m`, `24h`, or seconds with a
/// fraction; absurd values are shown in seconds.
pub(crate) fn describe_duration(d: Duration) -> String {
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
        format!("{}ms", ms)
    }
}

/// Parses the duration syntax shared by the attribute and environment variables:
/// an integer with a unit `ms`, `s` or `m` (`"500ms"`, `"15s"`, `"2m"`), or a bare
/// integer number of seconds (`"15"`).
///
/// ```
/// use std::time::Duration;
/// assert_eq!(infuse::parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(infuse::parse_duration("2m"), Ok(Duration::from_secs(120)));
/// assert!(infuse::parse_duration("soon").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let expected =
        || format!("expected a duration like \"500ms\", \"15s\" or \"2m\", found {text:?}");
    if digits.is_empty() {
        return Err(expected());
    }
    let amount: u64 = digits.parse().map_err(|_| expected())?;
    let millis = match unit.trim() {
        "ms" => Some(amount),
        "" | "s" => amount.checked_mul(1_000),
        "m" => amount.checked_mul(60_000),
        _ => return Err(expected()),
    }
    .ok_or_else(|| format!("duration {text:?} is too large"))?;
    Ok(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_the_setting() {
        let too_long = Settings::DEFAULT.reset_timeout(Duration::MAX);
        let error = too_long.validate().unwrap_err();
        assert!(error.starts_with("reset_timeout = "), "{error}");
        assert!(error.ends_with("exceeds the maximum of 24h"), "{error}");
        let zero = Settings::DEFAULT.reset_timeout(Duration::ZERO);
        assert_eq!(
            zero.validate().unwrap_err(),
            "reset_timeout must be greater than zero"
        );
        assert!(Settings::DEFAULT
            .reset_timeout(Settings::MAX_RESET_TIMEOUT)
            .validate()
            .is_ok());
    }

    #[test]
    fn durations_are_described_as_written() {
        assert_eq!(describe_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(describe_duration(Duration::from_secs(15)), "15s");
        assert_eq!(describe_duration(Duration::from_secs(120)), "2m");
        assert_eq!(describe_duration(Duration::from_secs(86_400)), "24h");
        assert_eq!(describe_duration(Duration::from_millis(1_500)), "1500ms");
        assert!(describe_duration(Duration::MAX).ends_with('s'));
    }

    #[test]
    fn huge_durations_do_not_overflow() {
        assert!(parse_duration("18446744073709551615ms").is_ok());
        assert!(parse_duration("18446744073709551615m").is_err());
        assert!(parse_duration("99999999999999999999999").is_err());
    }
}
