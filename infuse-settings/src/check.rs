//! The checks of every entry point, and their words: each value within its limits, then
//! the rules between settings.

use crate::{describe, Kind, Rule, Setting, Value, SETTINGS};

/// A setting as an entry point holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Not set: its default (if any) applies.
    Unset,
    /// Set to this value.
    Set(Value),
    /// Written, but unreadable (already reported): it counts as given, and no rule
    /// compares it.
    Invalid,
}

/// Where the attribute reports a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// At the setting's value.
    Value,
    /// Over the whole `name = value`.
    Argument,
}

/// A value or combination an entry point must refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The setting at fault.
    pub setting: &'static Setting,
    /// Where the attribute points.
    pub site: Site,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl Setting {
    /// Checks a value against this setting's limits; the error names the setting, the
    /// value, and what is allowed.
    pub fn check(&self, value: Value) -> Result<(), String> {
        let name = self.name;
        let example = || self.assignment(self.example_value());
        if self.kind == Kind::Bool && (value < self.min || value > self.max) {
            return Err(self.expects());
        }
        if self.kind == Kind::Percent && (value < self.min || value > self.max) {
            return Err(format!(
                "`{}` is not a percentage from {} to {}, e.g. `{}`",
                self.assignment(value),
                self.min.0,
                self.max.0,
                example()
            ));
        }
        if value < self.min {
            return Err(match self.kind {
                Kind::Duration if self.min.0 > 1 => format!(
                    "`{}` is shorter than the minimum of {}: use at least `{}`",
                    self.assignment(value),
                    describe(self.min.as_duration()),
                    self.assignment(self.min),
                ),
                Kind::Duration => {
                    format!("`{name}` must be greater than zero, e.g. `{}`", example())
                }
                _ => format!(
                    "`{name}` must be at least {}, e.g. `{}`",
                    self.min.0,
                    example()
                ),
            });
        }
        if value > self.max {
            return Err(match self.kind {
                Kind::Duration => format!(
                    "`{}` exceeds the maximum of {}: use at most `{}`",
                    self.assignment(value),
                    describe(self.max.as_duration()),
                    self.assignment(self.max),
                ),
                _ => format!("`{name}` must be at most {}", self.max.0),
            });
        }
        Ok(())
    }
}

/// Checks every setting as `slot` gives it: each set value within its limits, then the
/// [`Rule`]s of each valid one. `written`: the slots are what a user wrote out (the
/// attribute), so a setting that has no effect alone ([`Rule::Inert`]) is refused.
/// Returns every refusal, in the table's order (limits first); an entry point that reports
/// one error reports the first.
pub fn check(slot: impl Fn(&'static Setting) -> Slot, written: bool) -> Vec<Refusal> {
    let mut refusals = Vec::new();
    let slots: Vec<Slot> = SETTINGS
        .iter()
        .map(|setting| match slot(setting) {
            Slot::Set(value) => match setting.check(value) {
                Ok(()) => Slot::Set(value),
                Err(message) => {
                    refusals.push(Refusal {
                        setting,
                        site: Site::Value,
                        message,
                    });
                    Slot::Invalid
                }
            },
            other => other,
        })
        .collect();
    let slot_of = |name: &str| {
        SETTINGS
            .iter()
            .position(|setting| setting.name == name)
            .map_or(Slot::Unset, |i| slots[i])
    };
    for (setting, slot) in SETTINGS.iter().zip(&slots) {
        let Slot::Set(value) = *slot else { continue };
        for rule in setting.rules {
            if let Some((site, message)) = broken(setting, value, rule, &slot_of, written) {
                refusals.push(Refusal {
                    setting,
                    site,
                    message,
                });
            }
        }
    }
    refusals
}

/// The refusal of `setting = value` by `rule`, if it breaks it.
fn broken(
    setting: &Setting,
    value: Value,
    rule: &Rule,
    slot_of: &dyn Fn(&str) -> Slot,
    written: bool,
) -> Option<(Site, String)> {
    let name = setting.name;
    match *rule {
        Rule::Needs(other) => {
            let other = Setting::named(other)?;
            (slot_of(other.name) == Slot::Unset).then(|| {
                let message = format!(
                    "`{name}` needs `{}`: {}, e.g. `{}`",
                    other.name,
                    other.meaning,
                    other.assignment(other.example_value())
                );
                (Site::Argument, message)
            })
        }
        Rule::Below(other, why) | Rule::NotBelow(other, why) => {
            let (other, bound) = compared(other, slot_of)?;
            let word = if setting.kind == Kind::Duration {
                "shorter"
            } else {
                "less"
            };
            let (this, bound_text) = (setting.assignment(value), quoted(other, bound));
            let message = match rule {
                Rule::Below(..) if value >= bound => {
                    format!("`{this}` must be {word} than {bound_text} ({why})")
                }
                Rule::NotBelow(..) if value < bound => {
                    format!("`{this}` is {word} than {bound_text}: {why}")
                }
                _ => return None,
            };
            Some((Site::Value, message))
        }
        Rule::Inert(unless, why) => {
            let alone = unless.iter().all(|other| slot_of(other) == Slot::Unset);
            if !(written && alone) {
                return None;
            }
            let first = Setting::named(unless.first()?)?;
            let names: Vec<String> = unless.iter().map(|o| format!("`{o}`")).collect();
            let message = format!(
                "`{name}` has no effect without {}: {why}; add one, e.g. `{}`, or remove `{name}`",
                names.join(" or "),
                first.assignment(first.example_value())
            );
            Some((Site::Argument, message))
        }
    }
}

/// The other setting of a comparison and the value compared with: its valid value, or
/// its default when unset; `None` when there is nothing to compare with.
fn compared(other: &str, slot_of: &dyn Fn(&str) -> Slot) -> Option<(&'static Setting, Value)> {
    let other = Setting::named(other)?;
    match slot_of(other.name) {
        Slot::Set(value) => Some((other, value)),
        Slot::Unset => Some((other, other.default?)),
        Slot::Invalid => None,
    }
}

/// `` `name = value` ``, noting a default.
fn quoted(setting: &Setting, value: Value) -> String {
    let note = if setting.default == Some(value) {
        " (the default)"
    } else {
        ""
    };
    format!("`{}`{note}", setting.assignment(value))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The refusals of these settings as written, the others unset.
    fn refused(written: &[(&str, Value)]) -> Vec<String> {
        check(
            |setting| match written.iter().find(|(name, _)| *name == setting.name) {
                Some((_, value)) => Slot::Set(*value),
                None => Slot::Unset,
            },
            true,
        )
        .into_iter()
        .map(|refusal| refusal.message)
        .collect()
    }

    fn ms(ms: u64) -> Value {
        Value::duration(Duration::from_millis(ms))
    }

    #[test]
    fn limits() {
        let cases = [
            ("fail_max", Value(0), "`fail_max` must be at least 1, e.g. `fail_max = 5`"),
            ("fail_max", Value(1 << 32), "`fail_max` must be at most 4294967295"),
            (
                "failure_rate",
                Value(101),
                "`failure_rate = 101` is not a percentage from 1 to 100, e.g. `failure_rate = 50`",
            ),
            (
                "reset_timeout",
                Value(0),
                "`reset_timeout` must be greater than zero, e.g. `reset_timeout = \"15s\"`",
            ),
            (
                "reset_timeout",
                ms(86_401_000),
                "`reset_timeout = \"86401s\"` exceeds the maximum of 24h: use at most `reset_timeout = \"1440m\"`",
            ),
            (
                "window",
                ms(999),
                "`window = \"999ms\"` is shorter than the minimum of 1s: use at least `window = \"1s\"`",
            ),
            (
                "timeout",
                Value::duration(Duration::MAX),
                "`timeout = 18446744073709551615.999999999s` exceeds the maximum of 1h: use at most `timeout = \"60m\"`",
            ),
        ];
        for (name, value, expected) in cases {
            let setting = Setting::named(name).unwrap();
            assert_eq!(setting.check(value), Err(expected.to_owned()), "{name}");
        }
    }

    #[test]
    fn rules() {
        assert_eq!(
            refused(&[("slow_call", ms(500))]),
            ["`slow_call` needs `slow_call_rate`: the percentage of slow calls in the window that trips the breaker, e.g. `slow_call_rate = 50`"]
        );
        assert_eq!(
            refused(&[("slow_call", ms(500)), ("slow_call_rate", Value(50)), ("timeout", ms(500))]),
            ["`slow_call = \"500ms\"` must be shorter than `timeout = \"500ms\"` (a call that times out is already a failure)"]
        );
        assert_eq!(
            refused(&[("max_reset_timeout", ms(30_000))]),
            ["`max_reset_timeout = \"30s\"` is shorter than `reset_timeout = \"1m\"` (the default): backoff doubles the open time from `reset_timeout` up to `max_reset_timeout`"]
        );
        assert_eq!(
            refused(&[("window", ms(10_000))]),
            ["`window` has no effect without `failure_rate` or `slow_call_rate`: it applies to the rate of failed or slow calls in the window; add one, e.g. `failure_rate = 50`, or remove `window`"]
        );
        // Only where settings are written out.
        let slots = |s: &Setting| {
            if s.name == "window" {
                Slot::Set(ms(10_000))
            } else {
                Slot::Unset
            }
        };
        assert_eq!(check(slots, false), Vec::new());
    }

    #[test]
    fn one_error_per_mistake() {
        // An invalid value is not compared, and an unreadable one still counts as given.
        assert_eq!(
            refused(&[
                ("timeout", Value(0)),
                ("slow_call", ms(1_000)),
                ("slow_call_rate", Value(5))
            ])
            .len(),
            1
        );
        let invalid_rate = check(
            |s| match s.name {
                "slow_call" => Slot::Set(ms(1_000)),
                "slow_call_rate" | "failure_rate" => Slot::Invalid,
                "window" => Slot::Set(ms(5_000)),
                _ => Slot::Unset,
            },
            true,
        );
        assert_eq!(invalid_rate, Vec::new());
        // Independent mistakes are all reported, limits first.
        let all = refused(&[
            ("slow_call", ms(3_000)),
            ("timeout", ms(2_000)),
            ("window", ms(10_000)),
            ("max_reset_timeout", ms(1_000)),
            ("fail_max", Value(0)),
        ]);
        assert_eq!(all.len(), 5, "{all:?}");
        assert!(all[0].starts_with("`fail_max`"), "{all:?}");
    }
}
