//! What `#[circuit_breaker]` declares: a service with its settings, collected
//! binary-wide so that `init` knows every service before its first call. Plumbing of the
//! attribute, reached through `infuse::__private`.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::breaker::Breaker;
use crate::core::{InitError, Settings};

/// One `#[circuit_breaker]` declaration: which service, with which settings, where.
#[derive(Debug)]
pub struct BreakerSpec {
    /// The target service.
    pub service: &'static str,
    /// The declared settings.
    pub settings: Settings,
    /// `module::function` that declared it.
    pub function: &'static str,
    /// Source file.
    pub file: &'static str,
    /// Source line.
    pub line: u32,
}

impl BreakerSpec {
    /// A declaration (built in `const` context by the attribute).
    pub const fn new(
        service: &'static str,
        settings: Settings,
        function: &'static str,
        file: &'static str,
        line: u32,
    ) -> BreakerSpec {
        BreakerSpec {
            service,
            settings,
            function,
            file,
            line,
        }
    }

    pub(crate) fn describe(&self) -> String {
        format!("{} at {}:{}", self.function, self.file, self.line)
    }
}

/// A registered declaration, collected binary-wide so `init` knows every service.
pub struct Declaration(pub &'static BreakerSpec);

inventory::collect!(Declaration);

/// Registers a `static` [`BreakerSpec`] so that `init` creates its breaker and checks it
/// against other declarations of the same service. `#[circuit_breaker]` emits this.
#[doc(hidden)]
#[macro_export]
macro_rules! __infuse_register {
    ($spec:path) => {
        $crate::__private::inventory::submit! { $crate::__private::Declaration(&$spec) }
    };
}

/// Every declaration in the binary.
pub fn declarations() -> impl Iterator<Item = &'static BreakerSpec> {
    inventory::iter::<Declaration>.into_iter().map(|d| d.0)
}

/// The breaker of one declaration, resolved once and cached: what a `#[circuit_breaker]`
/// function keeps in a `static`, so calls do no lookup.
pub struct StaticBreaker {
    spec: &'static BreakerSpec,
    cell: OnceLock<Breaker>,
}

impl StaticBreaker {
    /// Caches the breaker of `spec` on first use.
    pub const fn new(spec: &'static BreakerSpec) -> StaticBreaker {
        StaticBreaker {
            spec,
            cell: OnceLock::new(),
        }
    }

    /// The breaker, from the process-wide registry.
    #[inline]
    pub fn get(&self) -> &Breaker {
        match self.cell.get() {
            Some(breaker) => breaker,
            None => self.init(),
        }
    }

    #[cold]
    fn init(&self) -> &Breaker {
        self.cell.get_or_init(|| {
            let spec = self.spec;
            if let Some(other) = declarations()
                .find(|d| d.service == spec.service && d.settings != spec.settings)
            {
                // `init` refuses this; without `init`, say it once per call site.
                tracing::warn!(
                    service = spec.service,
                    function = %spec.describe(),
                    other = %other.describe(),
                    "service declared with conflicting settings; the first one used wins (infuse::init reports this as an error)"
                );
            }
            crate::registry::global().breaker_with(spec.service, Some(spec.settings))
        })
    }
}

/// Groups declarations by service; conflicting settings are an error naming both
/// functions.
pub(crate) fn check_declarations() -> Result<HashMap<&'static str, &'static BreakerSpec>, InitError>
{
    let mut seen: HashMap<&'static str, &'static BreakerSpec> = HashMap::new();
    let mut all: Vec<_> = declarations().collect();
    all.sort_by_key(|d| (d.service, d.file, d.line));
    for spec in all {
        crate::registry::validate_name(spec.service)?;
        match seen.get(spec.service) {
            Some(first) if first.settings != spec.settings => {
                return Err(InitError::ConflictingSettings {
                    service: spec.service,
                    first: first.describe(),
                    first_settings: describe_settings(&first.settings),
                    second: spec.describe(),
                    second_settings: describe_settings(&spec.settings),
                });
            }
            Some(_) => {}
            None => {
                seen.insert(spec.service, spec);
            }
        }
    }
    Ok(seen)
}

/// The settings as declared: the three of pybreaker, then each other setting that
/// differs from its default (two declarations may differ in those alone).
fn describe_settings(s: &Settings) -> String {
    let parts: Vec<String> = infuse_settings::SETTINGS
        .iter()
        .filter_map(|setting| {
            let value = s.value(setting)?;
            (setting.pybreaker || Some(value) != setting.default).then(|| setting.assignment(value))
        })
        .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn settings_are_described_as_declared() {
        assert_eq!(
            describe_settings(&Settings::DEFAULT),
            "fail_max = 5, reset_timeout = \"1m\", success_threshold = 1"
        );
        let s = Settings::DEFAULT
            .timeout(Duration::from_secs(2))
            .trial_timeout(Duration::from_secs(5))
            .slow_call(Duration::from_millis(500))
            .slow_call_rate(40)
            .failure_rate(50)
            .window(Duration::from_secs(30))
            .min_calls(10)
            .min_instances(2)
            .max_reset_timeout(Duration::from_secs(300));
        assert_eq!(
            describe_settings(&s),
            "fail_max = 5, reset_timeout = \"1m\", success_threshold = 1, timeout = \"2s\", \
             trial_timeout = \"5s\", slow_call = \"500ms\", slow_call_rate = 40, failure_rate = 50, \
             window = \"30s\", min_calls = 10, min_instances = 2, max_reset_timeout = \"5m\""
        );
    }
}
