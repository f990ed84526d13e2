//! Environment overrides: `INFUSE_<SERVICE>_<SETTING>`.

use infuse_settings::{Setting, SETTINGS};

use crate::core::{InitError, Settings};
use crate::registry::config::invalid;

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

/// Splits `INFUSE_<SERVICE>_<SETTING>` into its service part and setting. Some settings
/// end with others (`MAX_RESET_TIMEOUT`, `RESET_TIMEOUT`, `TIMEOUT`): the longest one wins,
/// so that a variable has one meaning (`INFUSE_USERS_MAX_RESET_TIMEOUT` is the
/// `MAX_RESET_TIMEOUT` of `USERS`, never the `TIMEOUT` of `USERS_MAX_RESET`).
pub(crate) fn split(variable: &str) -> Option<(&str, &'static Setting)> {
    let rest = variable.strip_prefix("INFUSE_")?;
    SETTINGS
        .iter()
        .filter_map(|setting| {
            let service = rest
                .strip_suffix(setting.env_suffix().as_str())?
                .strip_suffix('_')?;
            (!service.is_empty()).then_some((service, setting))
        })
        .max_by_key(|(_, setting)| setting.name.len())
}

/// Applies the service's variables to `s`, then checks the result as a whole (so that
/// `SLOW_CALL` and `SLOW_CALL_RATE` may come from two variables). A value that does not
/// read, or is out of its limits, is an error naming its variable; invalid settings, one
/// naming the variables (of those set) whose settings the reason names.
pub(crate) fn apply(service: &str, mut s: Settings) -> Result<Settings, InitError> {
    let prefix = env_prefix(service);
    let origin = |variables: &[String]| format!("{} (service `{service}`)", variables.join(", "));
    let mut applied: Vec<(String, &Setting)> = Vec::new();
    for setting in SETTINGS {
        let var = format!("{prefix}{}", setting.env_suffix());
        // A variable a longer setting claims is not this one (see `split`).
        if split(&var).map(|(_, claimed)| claimed.name) != Some(setting.name) {
            continue;
        }
        let Ok(text) = std::env::var(&var) else {
            continue;
        };
        let value = setting
            .read(&text)
            .and_then(|value| setting.check(value).map(|()| value))
            .map_err(|reason| invalid(origin(std::slice::from_ref(&var)), reason))?;
        s = s.with_value(setting, value);
        applied.push((var, setting));
    }
    if let Err(reason) = s.validate() {
        let named: Vec<String> = applied
            .iter()
            .filter(|(_, setting)| mentions(&reason, setting.name))
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

/// Whether `reason` names `setting` as a word (`slow_call`, not a part of
/// `slow_call_rate`).
fn mentions(reason: &str, setting: &str) -> bool {
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

/// The known name closest to `wanted` (comparing `key(name)`), if it is close enough to be
/// a typo.
pub(crate) fn closest<'a>(
    wanted: &str,
    known: impl IntoIterator<Item = &'a str>,
    key: impl Fn(&str) -> String,
) -> Option<String> {
    infuse_settings::closest(wanted, known.into_iter().map(|name| (key(name), name)))
        .map(str::to_owned)
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
    fn the_longest_setting_wins() {
        let split = |variable| split(variable).map(|(service, setting)| (service, setting.name));
        assert_eq!(
            split("INFUSE_USERS_MAX_RESET_TIMEOUT"),
            Some(("USERS", "max_reset_timeout"))
        );
        assert_eq!(
            split("INFUSE_USERS_RESET_TIMEOUT"),
            Some(("USERS", "reset_timeout"))
        );
        assert_eq!(split("INFUSE_USERS_TIMEOUT"), Some(("USERS", "timeout")));
        assert_eq!(
            split("INFUSE_USERS_TRIAL_TIMEOUT"),
            Some(("USERS", "trial_timeout"))
        );
        assert_eq!(
            split("INFUSE_USERS_SLOW_CALL_RATE"),
            Some(("USERS", "slow_call_rate"))
        );
        assert_eq!(
            split("INFUSE_USERS_SLOW_CALL"),
            Some(("USERS", "slow_call"))
        );
        assert_eq!(
            split("INFUSE_USERS_API_MIN_INSTANCES"),
            Some(("USERS_API", "min_instances"))
        );
        assert_eq!(
            split("INFUSE_A_MAX_RESET_TIMEOUT_RESET_TIMEOUT"),
            Some(("A_MAX_RESET_TIMEOUT", "reset_timeout"))
        );
        // The longest setting that leaves a service part.
        assert_eq!(
            split("INFUSE_MAX_RESET_TIMEOUT"),
            Some(("MAX", "reset_timeout"))
        );
        // No service part, or no setting.
        assert_eq!(split("INFUSE_TIMEOUT"), None);
        assert_eq!(split("INFUSE__TIMEOUT"), None);
        assert_eq!(split("INFUSE_USERS_COLOUR"), None);
        assert_eq!(split("USERS_TIMEOUT"), None);
        for setting in SETTINGS {
            let variable = format!("INFUSE_S_{}", setting.env_suffix());
            assert_eq!(
                super::split(&variable).map(|(_, s)| s.name),
                Some(setting.name)
            );
        }
    }

    #[test]
    fn reasons_name_settings_as_words() {
        let reason = "`slow_call_rate` needs `slow_call`: the duration";
        assert!(mentions(reason, "slow_call"));
        assert!(mentions(reason, "slow_call_rate"));
        assert!(!mentions(
            "`slow_call_rate = 0` is not a percentage",
            "slow_call"
        ));
        assert!(mentions(
            "`slow_call = \"2s\"` must be shorter than `timeout = \"1s\"` (a call that times out",
            "timeout"
        ));
        assert!(!mentions(
            "`max_reset_timeout = \"1s\"` is too short",
            "reset_timeout"
        ));
    }

    #[test]
    fn suggestions_compare_keys() {
        let known = ["users", "payments"];
        assert_eq!(closest("user", known, str::to_owned), Some("users".into()));
        assert_eq!(
            closest("INFUSE_PAYMNTS_", known, env_prefix),
            Some("payments".into())
        );
        assert_eq!(closest("inventory", known, str::to_owned), None);
    }

    #[test]
    fn a_switch_reads_true_or_false_and_names_the_variable_otherwise() {
        let service = "env-shadow-switch";
        let var = format!("{}SHADOW", env_prefix(service));
        assert_eq!(split(&var).map(|(_, s)| s.name), Some("shadow"));
        std::env::set_var(&var, "true");
        assert!(apply(service, Settings::DEFAULT).unwrap().shadow);
        std::env::set_var(&var, "False");
        assert!(
            !apply(service, Settings::DEFAULT.shadow(true))
                .unwrap()
                .shadow
        );
        std::env::set_var(&var, "yes");
        let error = apply(service, Settings::DEFAULT).unwrap_err().to_string();
        std::env::remove_var(&var);
        assert!(error.contains(&var), "{error}");
        assert!(
            error.contains(
                "`shadow` expects `true` or `false`, e.g. `shadow = true`, found \"yes\""
            ),
            "{error}"
        );
    }
}
