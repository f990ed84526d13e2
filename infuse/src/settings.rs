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
    /// How long the breaker stays open before a trial call is allowed (> 0).
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

    /// Sets `fail_max`. Zero is treated as 1 (the macro and [`Settings::validate`] reject it).
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

    /// Checks the invariants (`fail_max ≥ 1`, `reset_timeout > 0`, `success_threshold ≥ 1`).
    pub fn validate(&self) -> Result<(), String> {
        if self.fail_max == 0 {
            return Err("fail_max must be at least 1".into());
        }
        if self.reset_timeout.is_zero() {
            return Err("reset_timeout must be greater than zero".into());
        }
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
