//! The thresholds of one breaker, and the duration syntax they accept.

use std::time::Duration;

use crate::core::store_ms;

/// The thresholds of one service's breaker: pybreaker's `fail_max`, `reset_timeout` and
/// `success_threshold`, and the backpressure rules (call timeouts, slow calls, failure
/// rates over a sliding window, backoff of the open time).
///
/// Every rule is off unless set, so the defaults are exactly pybreaker's. When rate
/// rules are set, the consecutive-failure rule (`fail_max`) still applies: whichever
/// trips first opens the breaker.
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
    /// A guarded call still running after this long is dropped (cancelled), counts as a
    /// failure and returns [`BreakerError::Timeout`](crate::BreakerError::Timeout).
    /// `None` (the default): no limit.
    pub timeout: Option<Duration>,
    /// The limit for a half-open trial call (default: `timeout`). The fleet's trial
    /// lease is derived from it, so a trial never outlives its slot.
    pub trial_timeout: Option<Duration>,
    /// Calls slower than this count as slow (they still return their own result); see
    /// `slow_call_rate`. Must be below `timeout`.
    pub slow_call: Option<Duration>,
    /// Trips when slow calls reach this percentage (1–100) of the calls in the window.
    pub slow_call_rate: Option<u32>,
    /// Trips when failures reach this percentage (1–100) of the calls in the window.
    pub failure_rate: Option<u32>,
    /// The sliding window both rates are measured over (≥ 1 s, at most 1 h; default
    /// 10 s), kept as ten buckets of a tenth each.
    pub window: Duration,
    /// No rate decision below this many calls in the window (≥ 1; default 20). With
    /// Redis, the fleet's calls.
    pub min_calls: u32,
    /// With Redis: a trip needs failures (or slow calls) reported by at least this many
    /// distinct processes (≥ 1; default 1) — in the window for a rate rule, in the
    /// current failure streak for `fail_max` — so that one sick caller cannot open the
    /// breaker for the whole fleet. That caller still protects its own calls: its own
    /// counts open the breaker for it alone. Above 1, a breaker reports its calls in
    /// batches (as with a rate rule), so that every process's successes count.
    pub min_instances: u32,
    /// When set, each re-open after a failed trial doubles the open time (less up to
    /// 20 % of jitter), up to this bound; a close resets it. `None` (the default): every
    /// open lasts `reset_timeout`, as in pybreaker.
    pub max_reset_timeout: Option<Duration>,
}

impl Settings {
    /// pybreaker's defaults: `fail_max = 5`, `reset_timeout = 60 s`, `success_threshold = 1`.
    pub const DEFAULT: Settings = Settings {
        fail_max: 5,
        reset_timeout: Duration::from_secs(60),
        success_threshold: 1,
        timeout: None,
        trial_timeout: None,
        slow_call: None,
        slow_call_rate: None,
        failure_rate: None,
        window: Duration::from_secs(10),
        min_calls: 20,
        min_instances: 1,
        max_reset_timeout: None,
    };

    /// The longest `timeout`, `trial_timeout` and `slow_call` (1 hour).
    pub const MAX_CALL_TIMEOUT: Duration = Duration::from_secs(60 * 60);

    /// The shortest `window` (1 second): ten buckets of 100 ms, the longest interval at
    /// which a process reports its counts.
    pub const MIN_WINDOW: Duration = Duration::from_secs(1);

    /// The longest `window` (1 hour).
    pub const MAX_WINDOW: Duration = Duration::from_secs(60 * 60);

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

    /// Sets `timeout`.
    pub const fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// Sets `trial_timeout`.
    pub const fn trial_timeout(mut self, d: Duration) -> Self {
        self.trial_timeout = Some(d);
        self
    }

    /// Sets `slow_call`.
    pub const fn slow_call(mut self, d: Duration) -> Self {
        self.slow_call = Some(d);
        self
    }

    /// Sets `slow_call_rate` (a percentage, 1–100).
    pub const fn slow_call_rate(mut self, percent: u32) -> Self {
        self.slow_call_rate = Some(percent);
        self
    }

    /// Sets `failure_rate` (a percentage, 1–100).
    pub const fn failure_rate(mut self, percent: u32) -> Self {
        self.failure_rate = Some(percent);
        self
    }

    /// Sets `window`.
    pub const fn window(mut self, d: Duration) -> Self {
        self.window = d;
        self
    }

    /// Sets `min_calls`.
    pub const fn min_calls(mut self, n: u32) -> Self {
        self.min_calls = n;
        self
    }

    /// Sets `min_instances`.
    pub const fn min_instances(mut self, n: u32) -> Self {
        self.min_instances = n;
        self
    }

    /// Sets `max_reset_timeout`.
    pub const fn max_reset_timeout(mut self, d: Duration) -> Self {
        self.max_reset_timeout = Some(d);
        self
    }

    /// Whether a rate rule (`failure_rate`, `slow_call_rate`) is set: calls are then
    /// counted into the window.
    pub const fn has_rates(&self) -> bool {
        self.failure_rate.is_some() || self.slow_call_rate.is_some()
    }

    /// These settings for a store that serves one process (memory, or the local
    /// fallback): that process is the whole fleet, so `min_instances` is 1.
    pub(crate) fn alone(&self) -> Settings {
        Settings {
            min_instances: 1,
            ..*self
        }
    }

    /// The limit of a trial call: `trial_timeout`, else `timeout`.
    pub fn trial_limit(&self) -> Option<Duration> {
        self.trial_timeout.or(self.timeout)
    }

    /// How long the `reopens`-th consecutive re-open lasts (`reopens = 0`: a first trip),
    /// in milliseconds. With `max_reset_timeout`, `reset_timeout` doubles per re-open up
    /// to the bound, less `jitter`‰ of a fifth (`jitter < 1000`); the Lua scripts compute
    /// the same from the same integers. Times are taken as at most 2^53 - 1 ms (as the
    /// Redis store sends them), so that nothing overflows whatever the settings.
    pub fn open_ms(&self, reopens: u32, jitter: u32) -> u64 {
        let base = store_ms(self.reset_timeout).max(1);
        let Some(max) = self.max_reset_timeout else {
            return base;
        };
        if reopens == 0 {
            return base;
        }
        let max = store_ms(max).max(base);
        let doubled = if reopens >= 40 {
            max
        } else {
            base.saturating_mul(1 << reopens).min(max)
        };
        // doubled * jitter / 5000, by quotient and remainder (no overflow).
        let jitter = u64::from(jitter.min(999));
        doubled - (doubled / 5000 * jitter + doubled % 5000 * jitter / 5000)
    }

    /// Checks the invariants (`fail_max ≥ 1`, `0 < reset_timeout ≤ 24 h`,
    /// `success_threshold ≥ 1`, and the backpressure rules' bounds and combinations); the
    /// error names the setting and says what is allowed.
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
        for (name, value) in [
            ("timeout", self.timeout),
            ("trial_timeout", self.trial_timeout),
            ("slow_call", self.slow_call),
        ] {
            if let Some(value) = value {
                check_duration(name, value, Settings::MAX_CALL_TIMEOUT)?;
            }
        }
        for (name, value) in [
            ("failure_rate", self.failure_rate),
            ("slow_call_rate", self.slow_call_rate),
        ] {
            if let Some(percent) = value {
                check_percent(name, percent)?;
            }
        }
        match (self.slow_call, self.slow_call_rate) {
            (Some(_), None) => {
                return Err("slow_call needs slow_call_rate: the percentage of slow calls in the window that trips the breaker".into())
            }
            (None, Some(_)) => {
                return Err("slow_call_rate needs slow_call: the duration above which a call is slow".into())
            }
            _ => {}
        }
        if let (Some(slow), Some(timeout)) = (self.slow_call, self.timeout) {
            if slow >= timeout {
                return Err(format!(
                    "slow_call = {} must be shorter than timeout = {} (a call that times out is already a failure)",
                    describe_duration(slow),
                    describe_duration(timeout)
                ));
            }
        }
        if self.window < Settings::MIN_WINDOW {
            return Err(format!(
                "window = {} is shorter than the minimum of 1s",
                describe_duration(self.window)
            ));
        }
        check_duration("window", self.window, Settings::MAX_WINDOW)?;
        if self.min_calls == 0 {
            return Err("min_calls must be at least 1".into());
        }
        if self.min_instances == 0 {
            return Err("min_instances must be at least 1".into());
        }
        if let Some(max) = self.max_reset_timeout {
            check_duration("max_reset_timeout", max, Settings::MAX_RESET_TIMEOUT)?;
            if max < self.reset_timeout {
                return Err(format!(
                    "max_reset_timeout = {} is shorter than reset_timeout = {}",
                    describe_duration(max),
                    describe_duration(self.reset_timeout)
                ));
            }
        }
        Ok(())
    }
}

fn check_percent(name: &str, percent: u32) -> Result<(), String> {
    if (1..=100).contains(&percent) {
        Ok(())
    } else {
        Err(format!(
            "{name} = {percent} is not a percentage from 1 to 100"
        ))
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
    fn open_times_never_overflow_and_round_as_the_exact_product() {
        let open_ms = |reset: Duration, max: Duration, reopens: u32, jitter: u32| {
            Settings::DEFAULT
                .reset_timeout(reset)
                .max_reset_timeout(max)
                .open_ms(reopens, jitter)
        };
        let bound = crate::core::MAX_EXPIRY_MS;
        let exact = |doubled: u64, jitter: u64| {
            doubled - u64::try_from(u128::from(doubled) * u128::from(jitter) / 5000).unwrap()
        };
        assert_eq!(open_ms(Duration::MAX, Duration::MAX, 0, 999), bound);
        assert_eq!(
            open_ms(Duration::MAX, Duration::MAX, 39, 999),
            exact(bound, 999)
        );
        assert_eq!(
            open_ms(Duration::from_secs(1), Duration::MAX, u32::MAX, 999),
            exact(bound, 999)
        );
        for (doubled, jitter) in [(8_000, 437), (4_999, 999), (86_400_000, 1), (bound, 0)] {
            let reset = Duration::from_millis(doubled);
            assert_eq!(
                open_ms(reset, reset, 1, jitter),
                exact(doubled, u64::from(jitter)),
                "{doubled} ms, {jitter}"
            );
        }
    }

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
    fn backpressure_rules_are_checked() {
        let d = Duration::from_millis;
        let error = |s: Settings| s.validate().unwrap_err();
        assert_eq!(
            error(Settings::DEFAULT.failure_rate(0)),
            "failure_rate = 0 is not a percentage from 1 to 100"
        );
        assert!(error(Settings::DEFAULT.slow_call_rate(101)).starts_with("slow_call_rate = 101"));
        assert!(error(Settings::DEFAULT.slow_call(d(500))).starts_with("slow_call needs"));
        assert!(error(Settings::DEFAULT.slow_call_rate(50)).starts_with("slow_call_rate needs"));
        let slow_over_timeout = Settings::DEFAULT
            .slow_call(d(500))
            .slow_call_rate(50)
            .timeout(d(500));
        assert!(error(slow_over_timeout).starts_with("slow_call = 500ms must be shorter"));
        assert_eq!(
            error(Settings::DEFAULT.window(d(999))),
            "window = 999ms is shorter than the minimum of 1s"
        );
        assert_eq!(
            error(Settings::DEFAULT.min_calls(0)),
            "min_calls must be at least 1"
        );
        assert_eq!(
            error(Settings::DEFAULT.min_instances(0)),
            "min_instances must be at least 1"
        );
        assert_eq!(
            error(Settings::DEFAULT.timeout(Duration::ZERO)),
            "timeout must be greater than zero"
        );
        assert!(error(Settings::DEFAULT.max_reset_timeout(d(1000)))
            .starts_with("max_reset_timeout = 1s is shorter than reset_timeout = 1m"));
        let full = Settings::DEFAULT
            .timeout(d(2000))
            .trial_timeout(d(5000))
            .slow_call(d(500))
            .slow_call_rate(50)
            .failure_rate(50)
            .window(Duration::from_secs(10))
            .min_calls(20)
            .min_instances(2)
            .max_reset_timeout(Duration::from_secs(300));
        assert_eq!(full.validate(), Ok(()));
        assert_eq!(full.trial_limit(), Some(d(5000)));
    }

    #[test]
    fn open_time_doubles_with_jitter_up_to_the_bound() {
        let s = Settings::DEFAULT.reset_timeout(Duration::from_secs(10));
        assert_eq!(
            s.open_ms(5, 999),
            10_000,
            "no backoff unless max_reset_timeout"
        );
        let s = s.max_reset_timeout(Duration::from_secs(60));
        assert_eq!(s.open_ms(0, 999), 10_000, "a first trip is not jittered");
        assert_eq!(s.open_ms(1, 0), 20_000);
        assert_eq!(s.open_ms(2, 0), 40_000);
        assert_eq!(s.open_ms(3, 0), 60_000);
        assert_eq!(s.open_ms(200, 0), 60_000);
        assert_eq!(s.open_ms(1, 999), 20_000 - 20_000 * 999 / 5000);
        assert!(s.open_ms(1, 999) >= 16_000);
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
