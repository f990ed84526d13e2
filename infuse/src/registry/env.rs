//! Environment overrides: `INFUSE_<SERVICE>_<SETTING>`.

use crate::core::{parse_duration, InitError, Settings};
use crate::registry::config::invalid;

/// The settings an environment variable can override, by the suffix of its name.
pub(crate) const FIELDS: [&str; 3] = ["FAIL_MAX", "RESET_TIMEOUT", "SUCCESS_THRESHOLD"];

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

/// Applies the service's variables to `s`; an invalid value is an error naming the
/// variable.
pub(crate) fn apply(service: &str, mut s: Settings) -> Result<Settings, InitError> {
    let prefix = env_prefix(service);
    for field in FIELDS {
        let var = format!("{prefix}{field}");
        let Ok(value) = std::env::var(&var) else {
            continue;
        };
        let name = format!("{var} (service `{service}`)");
        let whole = || {
            value.trim().parse::<u32>().map_err(|_| {
                invalid(
                    name.clone(),
                    format!("expected a whole number, found {value:?}"),
                )
            })
        };
        match field {
            "FAIL_MAX" => s.fail_max = whole()?,
            "SUCCESS_THRESHOLD" => s.success_threshold = whole()?,
            _ => s.reset_timeout = parse_duration(&value).map_err(|e| invalid(name.clone(), e))?,
        }
        s.validate().map_err(|reason| invalid(name, reason))?;
    }
    Ok(s)
}

/// The `INFUSE_<SERVICE>_<SETTING>` variables set in the environment, as
/// `(variable, service part)`.
pub(crate) fn overrides_set() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter_map(|name| {
            let rest = name.strip_prefix("INFUSE_")?;
            let service = FIELDS
                .iter()
                .find_map(|field| rest.strip_suffix(field)?.strip_suffix('_'))?
                .to_owned();
            (!service.is_empty()).then_some((name, service))
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
