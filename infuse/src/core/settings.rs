//! The thresholds of one breaker, generated from the table of `infuse-settings`, and what
//! the breaker derives from them (trial limit, open time).

use std::time::Duration;

use infuse_settings::{describe, Setting, SettingValue, Slot, Value};

use crate::core::{saturating_nanos, store_ms};

/// Generates [`Settings`] from the table of `infuse-settings`: a field, a default and a
/// `const` builder per setting, and the access the checks and overrides use.
macro_rules! settings {
    ($( $(#[$doc:meta])* $name:ident : $kind:ident [$($default:expr)?] { $($data:tt)* } )*) => {
        /// The thresholds of one service's breaker: pybreaker's `fail_max`, `reset_timeout`
        /// and `success_threshold`, and the backpressure rules (call timeouts, slow calls,
        /// failure rates over a sliding window, backoff of the open time).
        ///
        /// Every rule is off unless set, so the defaults are exactly pybreaker's. When rate
        /// rules are set, the consecutive-failure rule (`fail_max`) still applies: whichever
        /// trips first opens the breaker.
        ///
        /// Built in `const` context by `#[circuit_breaker]`, overridable at boot by
        /// [`Config::service`](crate::Config::service) and environment variables. Every
        /// setting is defined once, in the `infuse-settings` crate; each entry point accepts
        /// the same values and refuses the others with the same words:
        ///
        #[doc = include_str!("../guide/settings_table.md")]
        ///
        /// ```
        /// use std::time::Duration;
        /// let s = infuse::Settings::DEFAULT.fail_max(3).reset_timeout(Duration::from_secs(15));
        /// assert_eq!((s.fail_max, s.reset_timeout, s.success_threshold), (3, Duration::from_secs(15), 1));
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub struct Settings {
            $( $(#[$doc])* pub $name: infuse_settings::field_type!($kind [$($default)?]), )*
        }

        impl Settings {
            /// pybreaker's defaults (`fail_max = 5`, `reset_timeout = 60 s`,
            /// `success_threshold = 1`), every other rule off.
            pub const DEFAULT: Settings = Settings {
                $( $name: infuse_settings::field_default!([$($default)?]), )*
            };

            $(
                #[doc = concat!("Sets [`", stringify!($name), "`](Settings::", stringify!($name),
                    ") (checked by [`Settings::validate`]).")]
                pub const fn $name(mut self, value: infuse_settings::value_type!($kind)) -> Self {
                    self.$name = infuse_settings::field_value!(value, [$($default)?]);
                    self
                }
            )*

            /// The value of `setting`, if set.
            pub(crate) fn value(&self, setting: &Setting) -> Option<Value> {
                match setting.name {
                    $( stringify!($name) => infuse_settings::field_get!(self.$name, [$($default)?]), )*
                    _ => None,
                }
            }

            /// Sets `setting` to `value` (one its checks accept).
            pub(crate) fn with_value(self, setting: &Setting, value: Value) -> Self {
                match setting.name {
                    $( stringify!($name) => self.$name(SettingValue::from_value(value)), )*
                    _ => self,
                }
            }
        }
    };
}

infuse_settings::for_each_setting!(settings);

impl Settings {
    /// The longest `timeout`, `trial_timeout` and `slow_call` (1 hour).
    pub const MAX_CALL_TIMEOUT: Duration = infuse_settings::MAX_CALL_TIMEOUT;

    /// The shortest `window` (1 second): ten buckets of 100 ms, the longest interval at
    /// which a process reports its counts.
    pub const MIN_WINDOW: Duration = infuse_settings::MIN_WINDOW;

    /// The longest `window` (1 hour).
    pub const MAX_WINDOW: Duration = infuse_settings::MAX_WINDOW;

    /// The longest `reset_timeout` (24 hours). To keep a breaker open longer, for a
    /// maintenance window, use [`Breaker::open_for`](crate::Breaker::open_for) or
    /// [`Breaker::force_open`](crate::Breaker::force_open).
    pub const MAX_RESET_TIMEOUT: Duration = infuse_settings::MAX_RESET_TIMEOUT;

    /// The longest `slow_start` (1 hour).
    pub const MAX_SLOW_START: Duration = infuse_settings::MAX_SLOW_START;

    /// The share of calls slow start admits `since_close` after the breaker closed, in
    /// percent: `slow_start_min` at the close, growing linearly to 100 over `slow_start`.
    /// `None` once slow start is over, or without it.
    ///
    /// ```
    /// use std::time::Duration;
    /// let s = infuse::Settings::DEFAULT.slow_start(Duration::from_secs(30)).slow_start_min(10);
    /// assert_eq!(s.slow_start_share(Duration::ZERO), Some(10));
    /// assert_eq!(s.slow_start_share(Duration::from_secs(15)), Some(55));
    /// assert_eq!(s.slow_start_share(Duration::from_secs(30)), None);
    /// ```
    pub fn slow_start_share(&self, since_close: Duration) -> Option<u8> {
        let ramp = saturating_nanos(self.slow_start?);
        let share = ramp_share(self.slow_start_min, saturating_nanos(since_close), ramp)?;
        u8::try_from(share).ok()
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

    /// Checks every setting's limits and the rules between them (the table of
    /// `infuse-settings`, as the attribute and the environment do); the error is the
    /// first refusal, naming the setting and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        let slot = |setting| self.value(setting).map_or(Slot::Unset, Slot::Set);
        match infuse_settings::check(slot, false).into_iter().next() {
            Some(refusal) => Err(refusal.message),
            None => Ok(()),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings::DEFAULT
    }
}

/// Slow start's share of calls admitted `elapsed` ns into a ramp of `ramp` ns starting at
/// `min` percent (taken as 1 to 100), in percent: linear, rounded down. `None` once the
/// ramp is over (`elapsed >= ramp`, or no ramp).
pub(crate) fn ramp_share(min: u32, elapsed: u64, ramp: u64) -> Option<u32> {
    if elapsed >= ramp {
        return None;
    }
    let min = u128::from(min.clamp(1, 100));
    let grown = (100 - min) * u128::from(elapsed) / u128::from(ramp);
    Some((min + grown).min(100) as u32)
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
    infuse_settings::parse_duration(text)
}

/// Checks that a duration setting of `Config` (not of a breaker) is above zero and at most
/// `max`, with an error that names the setting and its bounds.
pub(crate) fn check_duration(name: &str, value: Duration, max: Duration) -> Result<(), String> {
    if value.is_zero() {
        return Err(format!("{name} must be greater than zero"));
    }
    if value > max {
        return Err(format!(
            "{name} = {} exceeds the maximum of {}",
            describe(value),
            describe(max)
        ));
    }
    Ok(())
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
        assert!(error.starts_with("`reset_timeout = "), "{error}");
        assert!(
            error.ends_with("exceeds the maximum of 24h: use at most `reset_timeout = \"1440m\"`"),
            "{error}"
        );
        let zero = Settings::DEFAULT.reset_timeout(Duration::ZERO);
        assert_eq!(
            zero.validate().unwrap_err(),
            "`reset_timeout` must be greater than zero, e.g. `reset_timeout = \"15s\"`"
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
            "`failure_rate = 0` is not a percentage from 1 to 100, e.g. `failure_rate = 50`"
        );
        assert!(error(Settings::DEFAULT.slow_call_rate(101)).starts_with("`slow_call_rate = 101`"));
        assert!(error(Settings::DEFAULT.slow_call(d(500))).starts_with("`slow_call` needs"));
        assert!(error(Settings::DEFAULT.slow_call_rate(50)).starts_with("`slow_call_rate` needs"));
        let slow_over_timeout = Settings::DEFAULT
            .slow_call(d(500))
            .slow_call_rate(50)
            .timeout(d(500));
        assert!(error(slow_over_timeout).starts_with("`slow_call = \"500ms\"` must be shorter"));
        assert_eq!(
            error(Settings::DEFAULT.window(d(999))),
            "`window = \"999ms\"` is shorter than the minimum of 1s: use at least `window = \"1s\"`"
        );
        assert_eq!(
            error(Settings::DEFAULT.min_calls(0)),
            "`min_calls` must be at least 1, e.g. `min_calls = 20`"
        );
        assert_eq!(
            error(Settings::DEFAULT.min_instances(0)),
            "`min_instances` must be at least 1, e.g. `min_instances = 2`"
        );
        assert!(error(Settings::DEFAULT.timeout(Duration::ZERO))
            .starts_with("`timeout` must be greater than zero"));
        assert!(error(Settings::DEFAULT.max_reset_timeout(d(1000))).starts_with(
            "`max_reset_timeout = \"1s\"` is shorter than `reset_timeout = \"1m\"` (the default)"
        ));
        // A window without a rate is harmless here (the default window always is).
        assert_eq!(Settings::DEFAULT.window(d(30_000)).validate(), Ok(()));
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

    /// Every setting reads back what its builder and `with_value` set.
    #[test]
    fn fields_follow_the_table() {
        for setting in infuse_settings::SETTINGS {
            let value = setting.example_value();
            let s = Settings::DEFAULT.with_value(setting, value);
            assert_eq!(s.value(setting), Some(value), "{}", setting.name);
            let default = Settings::DEFAULT.value(setting);
            assert_eq!(default, setting.default, "{}", setting.name);
        }
    }

    /// `src/guide/settings_table.md` is the table of `infuse-settings`;
    /// `INFUSE_BLESS=1` rewrites it.
    #[test]
    fn the_committed_settings_table_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/guide/settings_table.md");
        let table = infuse_settings::markdown_table();
        if std::env::var_os("INFUSE_BLESS").is_some() {
            std::fs::write(path, &table).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == table,
            "{path} is out of date: run `INFUSE_BLESS=1 cargo test -p infuse --lib settings_table`"
        );
    }

    #[test]
    fn the_slow_start_share_grows_linearly_from_the_minimum() {
        let secs = Duration::from_secs;
        assert_eq!(
            Settings::DEFAULT.slow_start_share(Duration::ZERO),
            None,
            "off"
        );
        let s = Settings::DEFAULT.slow_start(secs(10)).slow_start_min(20);
        let shares: Vec<Option<u8>> = (0..=10).map(|t| s.slow_start_share(secs(t))).collect();
        let expected = [20, 28, 36, 44, 52, 60, 68, 76, 84, 92].map(Some);
        assert_eq!(shares[..10], expected);
        assert_eq!(shares[10], None, "over at slow_start");
        assert_eq!(
            s.slow_start_share(secs(10) - Duration::from_nanos(1)),
            Some(99)
        );
        assert_eq!(s.slow_start_share(secs(3600)), None);
        // At 100 % from the start, slow start admits everything (and ends on time).
        let all = Settings::DEFAULT.slow_start(secs(10)).slow_start_min(100);
        assert_eq!(all.slow_start_share(Duration::ZERO), Some(100));
        // Extremes neither panic nor leave 1..=100.
        assert_eq!(ramp_share(0, 0, 1), Some(1));
        assert_eq!(ramp_share(500, 0, 1), Some(100));
        assert_eq!(ramp_share(1, u64::MAX - 1, u64::MAX), Some(99));
        assert_eq!(ramp_share(1, 5, 0), None);
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
}
