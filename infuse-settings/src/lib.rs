//! The breaker settings of [infuse](https://docs.rs/infuse), defined once: each one's
//! name, type, default, limits, rules and documentation ([`for_each_setting!`], in
//! `table.rs`), and what every entry point derives from them — the checks and their
//! messages ([`check`]), the duration syntax ([`parse_duration`]), the closest-name
//! suggestion ([`closest`]) and the documentation table ([`markdown_table`]).
//!
//! The `#[circuit_breaker]` attribute, `infuse::Settings`, `infuse::ServiceOverride` and
//! the `INFUSE_<SERVICE>_<SETTING>` environment variables all read this crate, so they
//! accept the same values and refuse the others with the same words. Use infuse; this
//! crate has no API of its own for applications.

mod check;
mod duration;
mod markdown;
mod suggest;
mod table;
mod value;

use std::time::Duration;

pub use check::{check, Refusal, Site, Slot};
pub use duration::{describe, parse_duration, read_duration, DurationError};
pub use markdown::markdown_table;
pub use suggest::{closest, edit_distance};
pub use value::{SettingValue, Value};

/// The longest `timeout`, `trial_timeout` and `slow_call` (1 hour).
pub const MAX_CALL_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// The shortest `window` (1 second): ten buckets of 100 ms, the longest interval at which
/// a process reports its counts.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);

/// The longest `window` (1 hour).
pub const MAX_WINDOW: Duration = Duration::from_secs(60 * 60);

/// The longest `reset_timeout` and `max_reset_timeout` (24 hours).
pub const MAX_RESET_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest `slow_start` (1 hour).
pub const MAX_SLOW_START: Duration = Duration::from_secs(60 * 60);

/// The rate rules: the settings that count calls into the window.
pub const RATES: &[&str] = &["failure_rate", "slow_call_rate"];

/// One breaker setting, as [`for_each_setting!`] defines it.
#[derive(Debug, PartialEq, Eq)]
pub struct Setting {
    /// The field, builder, override and attribute argument name.
    pub name: &'static str,
    /// Its type: how it is written, read and checked.
    pub kind: Kind,
    /// The value it has unless set; `None`: unset (the rule it drives is off).
    pub default: Option<Value>,
    /// The smallest accepted value.
    pub min: Value,
    /// The largest accepted value.
    pub max: Value,
    /// What it does, in a phrase: the documentation table and error messages quote it.
    pub meaning: &'static str,
    /// What leaving it unset means (settings without a default).
    pub unset: &'static str,
    /// A valid value, as written in an environment variable (durations: `"15s"`).
    pub example: &'static str,
    /// Names other breaker libraries give it: the attribute suggests this setting for them.
    pub aliases: &'static [&'static str],
    /// How it must relate to the other settings.
    pub rules: &'static [Rule],
    /// One of pybreaker's own settings: always shown when settings are described.
    pub pybreaker: bool,
}

/// The type of a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole number (`u32`).
    Count,
    /// A whole percentage (`u32`, 1 to 100).
    Percent,
    /// A duration (`std::time::Duration`), written `"500ms"`, `"15s"`, `"2m"` or a whole
    /// number of seconds.
    Duration,
    /// A switch (`bool`), written `true` or `false` (held as 1 or 0).
    Bool,
}

/// A rule between a setting and others (named by their `name`). Each is checked only when
/// every value it compares is valid on its own, so that one mistake gives one error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Set only together with this other setting.
    Needs(&'static str),
    /// When both are set, shorter than the other; the reason why.
    Below(&'static str, &'static str),
    /// When set, at least the other (or the other's default); the reason why.
    NotBelow(&'static str, &'static str),
    /// Written alone it has no effect: where settings are written out (the attribute), it
    /// is refused unless one of these is written too; the reason why.
    Inert(&'static [&'static str], &'static str),
}

impl Setting {
    /// The fields of a setting of `kind` that its entry may leave out: the type's limits
    /// (a count at least 1, a duration above zero), no aliases, no rules.
    #[doc(hidden)]
    pub const fn base(kind: Kind) -> Setting {
        let (min, max) = match kind {
            Kind::Count => (Value::count(1), Value::count(u32::MAX)),
            Kind::Percent => (Value::count(1), Value::count(100)),
            Kind::Duration => (Value::duration(Duration::from_nanos(1)), Value::MAX),
            Kind::Bool => (Value::FALSE, Value::TRUE),
        };
        Setting {
            name: "",
            kind,
            default: None,
            min,
            max,
            meaning: "",
            unset: "",
            example: "",
            aliases: &[],
            rules: &[],
            pybreaker: false,
        }
    }

    /// The setting called `name`.
    pub fn named(name: &str) -> Option<&'static Setting> {
        SETTINGS.iter().find(|setting| setting.name == name)
    }

    /// The suffix of its environment variable: `INFUSE_<SERVICE>_FAIL_MAX`.
    pub fn env_suffix(&self) -> String {
        self.name.to_ascii_uppercase()
    }

    /// Reads a value as written in an environment variable or attribute string: a whole
    /// number, a duration (see [`parse_duration`]), or `true`/`false` (any case). The
    /// error says what is expected.
    pub fn read(&self, text: &str) -> Result<Value, String> {
        let read = match self.kind {
            Kind::Bool => match text.trim() {
                t if t.eq_ignore_ascii_case("true") => Some(Value::TRUE),
                t if t.eq_ignore_ascii_case("false") => Some(Value::FALSE),
                _ => None,
            },
            Kind::Count | Kind::Percent => text.trim().parse::<i128>().map(Value).ok(),
            Kind::Duration => match read_duration(text) {
                Ok(duration) => Some(Value::duration(duration)),
                Err(DurationError::TooLarge) => {
                    return Err(format!("`{}`: duration {text:?} is too large", self.name))
                }
                Err(DurationError::Malformed) => None,
            },
        };
        read.ok_or_else(|| format!("{}, found {text:?}", self.expects()))
    }

    /// What a value of this setting looks like: "`fail_max` expects a whole number ≥ 1,
    /// e.g. `fail_max = 5`".
    pub fn expects(&self) -> String {
        format!(
            "`{}` expects {}, e.g. `{}`",
            self.name,
            self.form(),
            self.assignment(self.example_value())
        )
    }

    /// The form of its values, in words.
    pub fn form(&self) -> String {
        match self.kind {
            Kind::Count => format!("a whole number ≥ {}", self.min.0),
            Kind::Percent => format!(
                "a percentage, a whole number from {} to {}",
                self.min.0, self.max.0
            ),
            Kind::Duration => {
                "a duration like \"500ms\", \"15s\" or \"2m\", or a whole number of seconds".into()
            }
            Kind::Bool => "`true` or `false`".into(),
        }
    }

    /// Its example, read.
    pub fn example_value(&self) -> Value {
        self.read(self.example)
            .expect("every example is valid (tested)")
    }

    /// A value as written in the attribute (durations quoted: `"15s"`).
    pub fn literal(&self, value: Value) -> String {
        match self.kind {
            Kind::Duration => match value.written_duration() {
                Some(text) => format!("\"{text}\""),
                None => format!("{:?}", value.as_duration()),
            },
            Kind::Count | Kind::Percent => value.0.to_string(),
            Kind::Bool => value.as_bool_text(),
        }
    }

    /// A value as written in an environment variable (durations unquoted: `15s`).
    pub fn text(&self, value: Value) -> String {
        match self.kind {
            Kind::Duration => value
                .written_duration()
                .unwrap_or_else(|| format!("{:?}", value.as_duration())),
            Kind::Count | Kind::Percent => value.0.to_string(),
            Kind::Bool => value.as_bool_text(),
        }
    }

    /// `name = value`, as written in the attribute.
    pub fn assignment(&self, value: Value) -> String {
        format!("{} = {}", self.name, self.literal(value))
    }

    /// The values just outside its limits: every entry point refuses them, with the
    /// message of [`Setting::check`].
    /// A switch has none: every value it can be written as is valid.
    pub fn just_outside(&self) -> Vec<Value> {
        let step = match self.kind {
            Kind::Duration => Value::duration(Duration::from_millis(1)).0,
            Kind::Count | Kind::Percent => 1,
            Kind::Bool => return Vec::new(),
        };
        // A setting whose minimum is zero has nothing below it (its type is unsigned).
        let below = (self.min.0 > 0).then(|| (self.min.0 - step).max(0));
        below
            .into_iter()
            .chain([self.max.0 + step])
            .map(Value)
            .collect()
    }

    /// This setting at its example value, with the settings its rules need at theirs: a
    /// combination every entry point accepts.
    pub fn with_companions(&'static self) -> Vec<(&'static Setting, Value)> {
        let mut all = vec![(self, self.example_value())];
        let mut i = 0;
        while i < all.len() {
            for rule in all[i].0.rules {
                let needed = match *rule {
                    Rule::Needs(other) => Some(other),
                    Rule::Inert(unless, _) => unless.first().copied(),
                    Rule::Below(..) | Rule::NotBelow(..) => None,
                };
                let needed = needed.and_then(Setting::named);
                if let Some(other) = needed.filter(|o| all.iter().all(|(s, _)| s != o)) {
                    all.push((other, other.example_value()));
                }
            }
            i += 1;
        }
        all
    }
}

/// Builds [`SETTINGS`] from the table.
macro_rules! settings_table {
    ($( $(#[$doc:meta])* $name:ident : $kind:ident [$($default:expr)?] { $($field:ident : $value:expr),* $(,)? } )*) => {
        /// Every setting, in the order of the documentation (pybreaker's first).
        pub static SETTINGS: &[Setting] = &[$(
            Setting {
                name: stringify!($name),
                default: $crate::default_value!($kind [$($default)?]),
                $($field: $value,)*
                ..Setting::base(Kind::$kind)
            },
        )*];
    };
}

for_each_setting!(settings_table);

/// The Rust type of a setting's values, by its kind (`Count` → `u32`).
#[macro_export]
macro_rules! value_type {
    (Count) => {
        u32
    };
    (Percent) => {
        u32
    };
    (Duration) => {
        ::core::time::Duration
    };
    (Bool) => {
        bool
    };
}

/// The type of a setting's field: its [`value_type!`], or an `Option` of it when it has
/// no default (`[]`).
#[macro_export]
macro_rules! field_type {
    ($kind:ident []) => { ::core::option::Option<$crate::value_type!($kind)> };
    ($kind:ident [$default:expr]) => { $crate::value_type!($kind) };
}

/// The field's default: `$default`, or `None`.
#[macro_export]
macro_rules! field_default {
    ([]) => {
        ::core::option::Option::None
    };
    ([$default:expr]) => {
        $default
    };
}

/// What a builder stores for `value`: the value, or `Some(value)` for an `Option` field.
#[macro_export]
macro_rules! field_value {
    ($value:expr, []) => {
        ::core::option::Option::Some($value)
    };
    ($value:expr, [$default:expr]) => {
        $value
    };
}

/// A field's value, if set.
#[macro_export]
macro_rules! field_get {
    ($field:expr, []) => {
        ::core::option::Option::map($field, $crate::SettingValue::to_value)
    };
    ($field:expr, [$default:expr]) => {
        ::core::option::Option::Some($crate::SettingValue::to_value($field))
    };
}

/// The table's default of a setting: `None`, or its value.
#[doc(hidden)]
#[macro_export]
macro_rules! default_value {
    ($kind:ident []) => {
        ::core::option::Option::None
    };
    (Duration [$default:expr]) => {
        ::core::option::Option::Some($crate::Value::duration($default))
    };
    (Bool [$default:expr]) => {
        ::core::option::Option::Some($crate::Value::bool($default))
    };
    ($kind:ident [$default:expr]) => {
        ::core::option::Option::Some($crate::Value::count($default))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_rules_name_settings() {
        for (i, setting) in SETTINGS.iter().enumerate() {
            assert!(
                SETTINGS[..i].iter().all(|other| other.name != setting.name),
                "{} twice",
                setting.name
            );
            for alias in setting.aliases {
                assert!(Setting::named(alias).is_none(), "{alias} is a setting");
            }
            for rule in setting.rules {
                let others: &[&str] = match rule {
                    Rule::Needs(other) | Rule::Below(other, _) | Rule::NotBelow(other, _) => {
                        std::slice::from_ref(other)
                    }
                    Rule::Inert(unless, _) => unless,
                };
                for other in others {
                    let other = Setting::named(other)
                        .unwrap_or_else(|| panic!("{}: no setting {other}", setting.name));
                    if matches!(rule, Rule::Below(..) | Rule::NotBelow(..)) {
                        assert_eq!(other.kind, setting.kind, "{}", setting.name);
                    }
                }
            }
            assert!(!setting.meaning.is_empty(), "{}", setting.name);
            assert_eq!(setting.default.is_none(), !setting.unset.is_empty());
            assert!(setting.min <= setting.max, "{}", setting.name);
        }
    }

    #[test]
    fn examples_and_defaults_are_valid() {
        for setting in SETTINGS {
            assert_eq!(
                setting.check(setting.example_value()),
                Ok(()),
                "{}",
                setting.name
            );
            if let Some(default) = setting.default {
                assert_eq!(setting.check(default), Ok(()), "{}", setting.name);
            }
            let values: Vec<(&Setting, Value)> = setting.with_companions();
            let refused = check(
                |s| match values.iter().find(|(v, _)| *v == s) {
                    Some((_, value)) => Slot::Set(*value),
                    None => Slot::Unset,
                },
                true,
            );
            assert_eq!(refused, Vec::new(), "{}", setting.name);
            for value in setting.just_outside() {
                assert!(setting.check(value).is_err(), "{} {value:?}", setting.name);
            }
        }
    }

    #[test]
    fn values_are_read_and_written_back() {
        let timeout = Setting::named("timeout").unwrap();
        let fail_max = Setting::named("fail_max").unwrap();
        assert_eq!(
            timeout.read("2m"),
            Ok(Value::duration(Duration::from_secs(120)))
        );
        assert_eq!(timeout.literal(timeout.read("120").unwrap()), "\"2m\"");
        assert_eq!(timeout.text(timeout.read("1500ms").unwrap()), "1500ms");
        assert_eq!(
            timeout.literal(Value::duration(Duration::from_micros(1500))),
            "1.5ms"
        );
        assert_eq!(
            timeout.read("soon"),
            Err("`timeout` expects a duration like \"500ms\", \"15s\" or \"2m\", or a whole number of seconds, e.g. `timeout = \"2s\"`, found \"soon\"".into())
        );
        assert!(timeout
            .read("18446744073709551615m")
            .unwrap_err()
            .ends_with("is too large"));
        assert_eq!(fail_max.read(" 8 "), Ok(Value(8)));
        assert_eq!(fail_max.read("-1"), Ok(Value(-1)));
        assert_eq!(
            fail_max.read("3.5"),
            Err("`fail_max` expects a whole number ≥ 1, e.g. `fail_max = 5`, found \"3.5\"".into())
        );
        assert_eq!(fail_max.env_suffix(), "FAIL_MAX");
    }

    #[test]
    fn switches_read_true_or_false_only() {
        let shadow = Setting::named("shadow").unwrap();
        assert_eq!(shadow.kind, Kind::Bool);
        assert_eq!(shadow.default, Some(Value::FALSE));
        for (text, value) in [("true", true), (" FALSE ", false), ("True", true)] {
            assert_eq!(shadow.read(text), Ok(Value::bool(value)), "{text}");
        }
        for text in ["yes", "1", "0", "on", ""] {
            assert_eq!(
                shadow.read(text),
                Err(format!(
                    "`shadow` expects `true` or `false`, e.g. `shadow = true`, found {text:?}"
                ))
            );
        }
        assert_eq!(shadow.literal(Value::TRUE), "true");
        assert_eq!(shadow.text(Value::FALSE), "false");
        assert_eq!(shadow.just_outside(), Vec::new());
        assert_eq!(
            shadow.check(Value(2)),
            Err("`shadow` expects `true` or `false`, e.g. `shadow = true`".into())
        );
    }

    #[test]
    fn companions_satisfy_the_rules() {
        let names = |name: &str| -> Vec<&str> {
            Setting::named(name)
                .unwrap()
                .with_companions()
                .iter()
                .map(|(s, _)| s.name)
                .collect()
        };
        assert_eq!(names("fail_max"), ["fail_max"]);
        assert_eq!(names("slow_call"), ["slow_call", "slow_call_rate"]);
        assert_eq!(names("window"), ["window", "failure_rate"]);
    }
}
