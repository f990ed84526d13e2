//! Environment overrides: `INFUSE_<SERVICE>_<SETTING>`.

use crate::core::{parse_duration, InitError, Settings};
use crate::registry::config::invalid;

/// The settings an environment variable can override, by the suffix of its name.
pub(crate) const FIELDS: [&str; 12] = [
    "FAIL_MAX",
    "RESET_TIMEOUT",
    "SUCCESS_THRESHOLD",
    "TIMEOUT",
    "TRIAL_TIMEOUT",
    "SLOW_CALL",
    "SLOW_CALL_RATE",
    "FAILURE_RATE",
    "WINDOW",
    "MIN_CALLS",
    "MIN_INSTANCES",
    "MAX_RESET_TIMEOUT",
];

/// The environment-variable prefix for a service: `users-api` → `INFUSE_USERS_API_`.
pub fn env_prefix(service: &str) -> String {
    let mut prefix = String::from("INFUSE_");
    prefix.extend(service.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    prefix.push('_');
    prefix
}

/// Splits `INFUSE_<SERVICE>_<FIELD>` into its service part and field. Some fields end
/// with others (`MAX_RESET_TIMEOUT`, `RESET_TIMEOUT`, `TIMEOUT`): the longest one wins, so
/// that a variable has one meaning (`INFUSE_USERS_MAX_RESET_TIMEOUT` is the
/// `MAX_RESET_TIMEOUT` of `USERS`, never the `TIMEOUT` of `USERS_MAX_RESET`).
pub(crate) fn split(variable: &str) -> Option<(&str, &'static str)> {
    let rest = variable.strip_prefix("INFUSE_")?;
    FIELDS
        .iter()
        .filter_map(|&field| {
            let service = rest.strip_suffix(field)?.strip_suffix('_')?;
            (!service.is_empty()).then_some((service, field))
        })
        .max_by_key(|(_, field)| field.len())
}

/// Applies the service's variables to `s`, then checks the result as a whole (so that
/// `SLOW_CALL` and `SLOW_CALL_RATE` may come from two variables). A value that does not
/// parse is an error naming its variable; invalid settings, one naming the variables
/// (of those set) whose settings the reason names.
pub(crate) fn apply(service: &str, mut s: Settings) -> Result<Settings, InitError> {
    let prefix = env_prefix(service);
    let origin = |variables: &[String]| format!("{} (service `{service}`)", variables.join(", "));
    let mut applied: Vec<(String, &str)> = Vec::new();
    for field in FIELDS {
        let var = format!("{prefix}{field}");
        // A variable a longer field claims is not this one (see `split`).
        if split(&var).map(|(_, f)| f) != Some(field) {
            continue;
        }
        let Ok(value) = std::env::var(&var) else {
            continue;
        };
        let fail = |reason: String| invalid(origin(std::slice::from_ref(&var)), reason);
        let whole = || {
            value
                .trim()
                .parse::<u32>()
                .map_err(|_| fail(format!("expected a whole number, found {value:?}")))
        };
        let duration = || parse_duration(&value).map_err(fail);
        s = match field {
            "FAIL_MAX" => s.fail_max(whole()?),
            "RESET_TIMEOUT" => s.reset_timeout(duration()?),
            "SUCCESS_THRESHOLD" => s.success_threshold(whole()?),
            "TIMEOUT" => s.timeout(duration()?),
            "TRIAL_TIMEOUT" => s.trial_timeout(duration()?),
            "SLOW_CALL" => s.slow_call(duration()?),
            "SLOW_CALL_RATE" => s.slow_call_rate(whole()?),
            "FAILURE_RATE" => s.failure_rate(whole()?),
            "WINDOW" => s.window(duration()?),
            "MIN_CALLS" => s.min_calls(whole()?),
            "MIN_INSTANCES" => s.min_instances(whole()?),
            "MAX_RESET_TIMEOUT" => s.max_reset_timeout(duration()?),
            _ => unreachable!("every field of FIELDS is applied"),
        };
        applied.push((var, field));
    }
    if let Err(reason) = s.validate() {
        let named: Vec<String> = applied
            .iter()
            .filter(|(_, field)| mentions(&reason, field))
            .map(|(var, _)| var.clone())
            .collect();
        // The settings before the environment were valid, so a variable is to blame; if
        // the reason names none of those set, all of them are.
        let blamed = if named.is_empty() {
            applied.into_iter().map(|(var, _)| var).collect()
        } else {
            named
        };
        return Err(invalid(origin(&blamed), reason));
    }
    Ok(s)
}

/// Whether `reason` names the setting of `field` (`SLOW_CALL` → the word `slow_call`, not
/// a part of `slow_call_rate`).
fn mentions(reason: &str, field: &str) -> bool {
    let setting = field.to_ascii_lowercase();
    reason
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|word| word == setting)
}

/// The `INFUSE_<SERVICE>_<SETTING>` variables set in the environment, as
/// `(variable, service part)`.
pub(crate) fn overrides_set() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter_map(|name| {
            let (service, _) = split(&name)?;
            let service = service.to_owned();
            Some((name, service))
        })
        .collect()
}

/// The edit distance between two strings (to suggest the service an override meant).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The known name closest to `wanted` (by `key`), if it is close enough to be a typo.
pub(crate) fn closest<'a>(
    wanted: &str,
    known: impl IntoIterator<Item = &'a str>,
    key: impl Fn(&str) -> String,
) -> Option<String> {
    known
        .into_iter()
        .map(|name| (edit_distance(wanted, &key(name)), name))
        .filter(|&(distance, _)| distance <= 2.max(wanted.len() / 3))
        .min()
        .map(|(_, name)| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(env_prefix("users-api"), "INFUSE_USERS_API_");
        assert_eq!(env_prefix("ünï"), "INFUSE__N__");
    }

    #[test]
    fn the_longest_field_wins() {
        assert_eq!(
            split("INFUSE_USERS_MAX_RESET_TIMEOUT"),
            Some(("USERS", "MAX_RESET_TIMEOUT"))
        );
        assert_eq!(
            split("INFUSE_USERS_RESET_TIMEOUT"),
            Some(("USERS", "RESET_TIMEOUT"))
        );
        assert_eq!(split("INFUSE_USERS_TIMEOUT"), Some(("USERS", "TIMEOUT")));
        assert_eq!(
            split("INFUSE_USERS_TRIAL_TIMEOUT"),
            Some(("USERS", "TRIAL_TIMEOUT"))
        );
        assert_eq!(
            split("INFUSE_USERS_SLOW_CALL_RATE"),
            Some(("USERS", "SLOW_CALL_RATE"))
        );
        assert_eq!(
            split("INFUSE_USERS_SLOW_CALL"),
            Some(("USERS", "SLOW_CALL"))
        );
        assert_eq!(
            split("INFUSE_USERS_API_MIN_INSTANCES"),
            Some(("USERS_API", "MIN_INSTANCES"))
        );
        assert_eq!(
            split("INFUSE_A_MAX_RESET_TIMEOUT_RESET_TIMEOUT"),
            Some(("A_MAX_RESET_TIMEOUT", "RESET_TIMEOUT"))
        );
        // The longest field that leaves a service part.
        assert_eq!(
            split("INFUSE_MAX_RESET_TIMEOUT"),
            Some(("MAX", "RESET_TIMEOUT"))
        );
        // No service part, or no field.
        assert_eq!(split("INFUSE_TIMEOUT"), None);
        assert_eq!(split("INFUSE__TIMEOUT"), None);
        assert_eq!(split("INFUSE_USERS_RETRIES"), None);
        assert_eq!(split("USERS_TIMEOUT"), None);
        for field in FIELDS {
            assert_eq!(split(&format!("INFUSE_S_{field}")), Some(("S", field)));
        }
    }

    #[test]
    fn reasons_name_settings_as_words() {
        assert!(mentions(
            "slow_call_rate needs slow_call: the duration",
            "SLOW_CALL"
        ));
        assert!(mentions(
            "slow_call_rate needs slow_call: the duration",
            "SLOW_CALL_RATE"
        ));
        assert!(!mentions(
            "slow_call_rate = 0 is not a percentage",
            "SLOW_CALL"
        ));
        assert!(mentions(
            "slow_call = 2s must be shorter than timeout = 1s (a call that times out",
            "TIMEOUT"
        ));
        assert!(!mentions(
            "max_reset_timeout = 1s is too short",
            "RESET_TIMEOUT"
        ));
    }

    #[test]
    fn distances_and_suggestions() {
        assert_eq!(edit_distance("user", "users"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        let known = ["users", "payments"];
        assert_eq!(closest("user", known, str::to_owned), Some("users".into()));
        assert_eq!(
            closest("paymnts", known, str::to_owned),
            Some("payments".into())
        );
        assert_eq!(closest("inventory", known, str::to_owned), None);
    }
}
