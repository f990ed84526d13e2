//! Every setting of the `infuse-settings` table, through every runtime entry point: the
//! `Settings` builders and `Settings::validate`, `ServiceOverride` through `Registry::new`,
//! and the `INFUSE_<SERVICE>_<SETTING>` variables. Each accepts the setting's example (with
//! what its rules need) and refuses the values just outside its limits with the words of
//! `Setting::check`. The attribute is held to the same words by the macro crate's own
//! test (`valid.rs`, `every_setting_of_the_table`), which calls its checks with the table.
//!
//! No setting is listed here: the builders and setters are reached through
//! `for_each_setting!`, so a new setting is tested as soon as it has its entry.

use infuse::{BreakerError, Config, InitError, Registry, ServiceOverride, Settings};
use infuse_settings::{Setting, SettingValue, Value, SETTINGS};

const SERVICE: &str = "settings-table";

#[infuse::circuit_breaker(service = "settings-table")]
async fn guarded() -> Result<(), BreakerError> {
    Ok(())
}

/// `value` in the Rust type of its setting, if it has one there (`4294967296` has no
/// `u32`, a negative count no type at all).
fn typed<T: SettingValue + Copy>(value: Value) -> Option<T> {
    let typed = T::from_value(value);
    (typed.to_value() == value).then_some(typed)
}

macro_rules! entry_points {
    ($( $(#[$doc:meta])* $name:ident : $kind:ident [$($default:expr)?] { $($data:tt)* } )*) => {
        /// `settings` with `setting` set by its builder.
        fn with_builder(settings: Settings, setting: &Setting, value: Value) -> Option<Settings> {
            match setting.name {
                $( stringify!($name) => Some(settings.$name(typed(value)?)), )*
                other => panic!("{other} has no builder"),
            }
        }

        /// `o` with `setting` set by its `ServiceOverride` setter.
        fn with_setter(o: ServiceOverride, setting: &Setting, value: Value) -> Option<ServiceOverride> {
            match setting.name {
                $( stringify!($name) => Some(o.$name(typed(value)?)), )*
                other => panic!("{other} has no setter"),
            }
        }

        /// The field of `setting`.
        fn field(settings: &Settings, setting: &Setting) -> Option<Value> {
            match setting.name {
                $( stringify!($name) => infuse_settings::field_get!(settings.$name, [$($default)?]), )*
                other => panic!("{other} has no field"),
            }
        }
    };
}

infuse_settings::for_each_setting!(entry_points);

/// The reason of an `InvalidSetting`, checking its origin.
fn reason(result: Result<Registry, InitError>, origin: &str, what: &str) -> String {
    match result {
        Err(InitError::InvalidSetting { origin: o, reason }) => {
            assert_eq!(o, origin, "{what}: {reason}");
            reason
        }
        Err(other) => panic!("{what}: expected InvalidSetting, got {other}"),
        Ok(_) => panic!("{what}: accepted"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_setting_through_settings_and_service_override() {
    let config = || Config::in_memory().env_overrides(false);
    let origin = format!("Config::service({SERVICE:?})");
    for setting in SETTINGS {
        let name = setting.name;
        let accepted = setting.with_companions();
        let settings = accepted
            .iter()
            .fold(Settings::DEFAULT, |s, (setting, value)| {
                with_builder(s, setting, *value).expect("an example has a Rust value")
            });
        assert_eq!(settings.validate(), Ok(()), "{name}");
        assert_eq!(field(&settings, setting), Some(accepted[0].1), "{name}");
        let o = accepted
            .iter()
            .fold(ServiceOverride::new(), |o, (setting, value)| {
                with_setter(o, setting, *value).expect("an example has a Rust value")
            });
        let registry = Registry::new(config().service(SERVICE, o))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(registry.breaker(SERVICE).settings(), settings, "{name}");

        for value in setting.just_outside() {
            let what = format!("{name} = {}", setting.literal(value));
            let expected = setting.check(value).unwrap_err();
            let Some(refused) = with_builder(settings, setting, value) else {
                continue;
            };
            assert_eq!(refused.validate(), Err(expected.clone()), "{what}");
            let o = with_setter(o, setting, value).unwrap();
            let result = Registry::new(config().service(SERVICE, o)).await;
            assert_eq!(reason(result, &origin, &what), expected, "{what}");
        }
    }
    guarded().await.unwrap();
}

/// The environment is process-wide: this is the only test of this binary that reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_setting_through_its_environment_variable() {
    let variable =
        |setting: &Setting| format!("{}{}", infuse::env_prefix(SERVICE), setting.env_suffix());
    let set = |values: &[(&'static Setting, Value)]| {
        for setting in SETTINGS {
            std::env::remove_var(variable(setting));
        }
        for (setting, value) in values {
            std::env::set_var(variable(setting), setting.text(*value));
        }
    };
    for setting in SETTINGS {
        let name = setting.name;
        let accepted = setting.with_companions();
        set(&accepted);
        let registry = Registry::new(Config::in_memory())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let settings = registry.breaker(SERVICE).settings();
        for (setting, value) in &accepted {
            assert_eq!(
                field(&settings, setting),
                Some(*value),
                "{name}: {}",
                setting.name
            );
        }

        for value in setting.just_outside() {
            let mut refused = accepted.clone();
            refused[0].1 = value;
            set(&refused);
            let what = format!("{}={}", variable(setting), setting.text(value));
            let origin = format!("{} (service `{SERVICE}`)", variable(setting));
            let result = Registry::new(Config::in_memory()).await;
            let expected = setting.check(value).unwrap_err();
            assert_eq!(reason(result, &origin, &what), expected, "{what}");
        }
    }
    set(&[]);
}
