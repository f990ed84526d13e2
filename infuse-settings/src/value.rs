//! A setting's value as every entry point hands it to the checks.

use std::time::Duration;

/// A value in its setting's unit: a count, a percentage, or nanoseconds. Wide and signed,
/// so that what a user wrote (`-1`, `4294967296`, `"1441m"`) is checked, not wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Value(pub i128);

const NANOS_PER_MS: i128 = 1_000_000;

impl Value {
    /// The largest value.
    pub const MAX: Value = Value(i128::MAX);

    /// A switch that is off.
    pub const FALSE: Value = Value(0);
    /// A switch that is on.
    pub const TRUE: Value = Value(1);

    /// A switch.
    pub const fn bool(on: bool) -> Value {
        Value(on as i128)
    }

    /// A switch as written: `true` for any value but 0 (the checks refuse other values
    /// before anything reads them).
    pub fn as_bool_text(self) -> String {
        (self.0 != 0).to_string()
    }

    /// A count or percentage.
    pub const fn count(n: u32) -> Value {
        Value(n as i128)
    }

    /// A duration, in nanoseconds (`Duration::MAX` fits).
    pub const fn duration(d: Duration) -> Value {
        Value(d.as_nanos() as i128)
    }

    /// As a duration (negative: zero; saturating).
    pub fn as_duration(self) -> Duration {
        let nanos = u128::try_from(self.0).unwrap_or(0);
        match u64::try_from(nanos / 1_000_000_000) {
            Ok(secs) => Duration::new(secs, (nanos % 1_000_000_000) as u32),
            Err(_) => Duration::MAX,
        }
    }

    /// A duration of whole milliseconds in the syntax people write, in its largest exact
    /// unit (`"1440m"`, `"90s"`, `"1500ms"`); `None` for a fraction of a millisecond or a
    /// negative amount.
    pub fn written_duration(self) -> Option<String> {
        if self.0 < 0 || self.0 % NANOS_PER_MS != 0 {
            return None;
        }
        let ms = self.0 / NANOS_PER_MS;
        Some(match ms {
            0 => "0s".to_owned(),
            _ if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
            _ if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
            _ => format!("{ms}ms"),
        })
    }
}

/// The Rust types of settings, to and from [`Value`].
pub trait SettingValue: Sized {
    /// The value, in its setting's unit.
    fn to_value(self) -> Value;
    /// From a value (one its setting's checks accepted), saturating.
    fn from_value(value: Value) -> Self;
}

impl SettingValue for u32 {
    fn to_value(self) -> Value {
        Value::count(self)
    }

    fn from_value(value: Value) -> Self {
        u32::try_from(value.0.max(0)).unwrap_or(u32::MAX)
    }
}

impl SettingValue for bool {
    fn to_value(self) -> Value {
        Value::bool(self)
    }

    fn from_value(value: Value) -> Self {
        value.0 != 0
    }
}

impl SettingValue for Duration {
    fn to_value(self) -> Value {
        Value::duration(self)
    }

    fn from_value(value: Value) -> Self {
        value.as_duration()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip_and_saturate() {
        assert_eq!(
            Duration::from_value(Duration::MAX.to_value()),
            Duration::MAX
        );
        assert_eq!(Duration::from_value(Value(-5)), Duration::ZERO);
        assert_eq!(Duration::from_value(Value::MAX), Duration::MAX);
        assert_eq!(u32::from_value(Value(1 << 40)), u32::MAX);
        assert_eq!(u32::from_value(7u32.to_value()), 7);
    }

    #[test]
    fn durations_are_written_in_their_largest_exact_unit() {
        let written = |d: Duration| Value::duration(d).written_duration();
        assert_eq!(
            written(Duration::from_secs(86_400)).as_deref(),
            Some("1440m")
        );
        assert_eq!(written(Duration::from_secs(90)).as_deref(), Some("90s"));
        assert_eq!(
            written(Duration::from_millis(1_500)).as_deref(),
            Some("1500ms")
        );
        assert_eq!(written(Duration::ZERO).as_deref(), Some("0s"));
        assert_eq!(written(Duration::from_micros(1_500)), None);
    }
}
