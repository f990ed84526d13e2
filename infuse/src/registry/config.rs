//! Boot-time configuration: where state lives, and operator overrides.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::core::{check_duration, InitError, Settings};
use crate::fleet::{FleetStore, RedisOptions, UnavailablePolicy};
use crate::local::Listener;
use crate::registry::env;

/// What [`init`](crate::init) sets up.
///
/// ```
/// use std::time::Duration;
/// use infuse::{Config, ServiceOverride};
///
/// let config = Config::in_memory()
///     .service("users", ServiceOverride::new().fail_max(10).reset_timeout(Duration::from_secs(30)))
///     .trial_lease(Duration::from_secs(10));
/// # let _ = config;
/// ```
///
/// # Environment overrides
///
/// Unless disabled with [`Config::env_overrides`], `init` reads, for every service it
/// knows, `INFUSE_<SERVICE>_FAIL_MAX`, `INFUSE_<SERVICE>_RESET_TIMEOUT` (e.g. `30s`,
/// `500ms`, `2m`, or seconds) and `INFUSE_<SERVICE>_SUCCESS_THRESHOLD`, where `<SERVICE>`
/// is the service name upper-cased with every other character than `A-Z0-9` replaced by
/// `_` (`users-api` → `INFUSE_USERS_API_FAIL_MAX`). Precedence: environment, then
/// `Config::service`, then the `#[circuit_breaker]` arguments, then the defaults.
#[derive(Clone)]
pub struct Config {
    pub(crate) store: StoreConfig,
    pub(crate) redis: RedisOptions,
    pub(crate) services: HashMap<String, ServiceOverride>,
    pub(crate) listeners: Vec<Arc<dyn Listener>>,
    pub(crate) trial_lease: Duration,
    pub(crate) env_overrides: bool,
    pub(crate) allow_undeclared_overrides: bool,
}

#[derive(Clone, Debug)]
pub(crate) enum StoreConfig {
    Memory,
    Redis,
}

impl Config {
    /// Breakers kept in this process's memory (the default without `init`).
    pub fn in_memory() -> Config {
        Config {
            store: StoreConfig::Memory,
            redis: RedisOptions::default(),
            services: HashMap::new(),
            listeners: Vec::new(),
            trial_lease: Duration::from_secs(30),
            env_overrides: true,
            allow_undeclared_overrides: false,
        }
    }

    /// Breakers shared by every process of the fleet through Redis
    /// (`redis://[user:password@]host:port/db`). See the README's fleet section for the
    /// key layout and ACL. The password never appears in `Debug` output or errors.
    ///
    /// ```no_run
    /// # async fn boot() -> Result<(), infuse::InitError> {
    /// use infuse::{Config, UnavailablePolicy};
    /// infuse::init(
    ///     Config::redis("redis://127.0.0.1:6379/0")
    ///         .namespace("prod")
    ///         .on_redis_unavailable(UnavailablePolicy::LocalFallback),
    /// )
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub fn redis(url: impl Into<String>) -> Config {
        let mut config = Config::in_memory();
        config.store = StoreConfig::Redis;
        config.redis.url = url.into();
        config
    }

    /// The namespace of the Redis keys (default `"default"`): breakers of different
    /// namespaces never meet, even on one Redis. Must not be empty or contain `{`, `}`
    /// or `/`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.redis.namespace = namespace.into();
        self
    }

    /// What calls do while Redis is unavailable (default
    /// [`UnavailablePolicy::LocalFallback`]).
    pub fn on_redis_unavailable(mut self, policy: UnavailablePolicy) -> Self {
        self.redis.policy = policy;
        self
    }

    /// The longest a call waits on Redis (default 25 ms, at most 60 s): recording a
    /// failure, taking or settling the trial. Past it, the call goes on under the policy.
    /// Calls in the closed state with nothing to report never wait on Redis at all.
    pub fn redis_call_timeout(mut self, timeout: Duration) -> Self {
        self.redis.call_timeout = timeout;
        self
    }

    /// The deadline of inspection and control operations (`state()`, `open()`, …) and of
    /// resyncs (default 1 s, at most 5 min).
    pub fn redis_admin_timeout(mut self, timeout: Duration) -> Self {
        self.redis.admin_timeout = timeout;
        self
    }

    /// How long `init` tries to connect (default 2 s, at most 5 min).
    pub fn redis_connect_timeout(mut self, timeout: Duration) -> Self {
        self.redis.connect_timeout = timeout;
        self
    }

    /// How often every breaker is re-read from Redis to repair lost pub/sub messages
    /// (default 1 s, with ±20% jitter; at most 1 h).
    pub fn resync_interval(mut self, interval: Duration) -> Self {
        self.redis.resync_interval = interval;
        self
    }

    /// How long a breaker's keys live after their last write (default 24 h, at most 365
    /// days; never less than twice the open time), so keys of retired services vanish.
    /// Forced states (`force_open`, `disable`) do not expire.
    pub fn key_ttl(mut self, ttl: Duration) -> Self {
        self.redis.key_ttl = ttl;
        self
    }

    /// With `true`, `init` succeeds even if Redis is unreachable: breakers start under
    /// the policy and join the fleet once Redis answers. Default `false`: `init` fails
    /// with an error naming the address (and this option).
    pub fn start_degraded(mut self, yes: bool) -> Self {
        self.redis.start_degraded = yes;
        self
    }

    /// Overrides a service's settings without recompiling. `init` fails if no
    /// `#[circuit_breaker]` declares the service and no breaker of it exists yet (a typo
    /// would otherwise be ignored), unless
    /// [`allow_undeclared_overrides`](Config::allow_undeclared_overrides) is set.
    pub fn service(mut self, service: impl Into<String>, overrides: ServiceOverride) -> Self {
        self.services.insert(service.into(), overrides);
        self
    }

    /// Adds a listener to every breaker.
    pub fn listener(mut self, listener: Arc<dyn Listener>) -> Self {
        self.listeners.push(listener);
        self
    }

    /// How long a half-open trial call may hold the trial slot before another caller may
    /// take it (default 30 s, at most 1 h). Set it above your calls' own timeout.
    pub fn trial_lease(mut self, lease: Duration) -> Self {
        self.trial_lease = lease;
        self
    }

    /// Whether to read `INFUSE_<SERVICE>_*` environment variables (default `true`).
    pub fn env_overrides(mut self, enabled: bool) -> Self {
        self.env_overrides = enabled;
        self
    }

    /// Accepts overrides (`Config::service`, `INFUSE_<SERVICE>_*`) for services that no
    /// `#[circuit_breaker]` declares — services whose breakers are only created at run
    /// time with [`infuse::breaker`](crate::breaker). Default `false`: such an override
    /// makes `init` fail, naming it and the closest declared service.
    pub fn allow_undeclared_overrides(mut self, allow: bool) -> Self {
        self.allow_undeclared_overrides = allow;
        self
    }

    /// Connects the fleet layer of this configuration as a store of its own (see
    /// [`FleetStore`]), without creating breakers.
    ///
    /// # Errors
    ///
    /// As [`init`](crate::init): an invalid setting, or Redis unreachable (unless
    /// [`start_degraded`](Config::start_degraded)). A configuration without Redis is an
    /// [`InitError::InvalidSetting`].
    pub async fn fleet_store(&self) -> Result<FleetStore, InitError> {
        match self.store {
            StoreConfig::Redis => FleetStore::connect(&self.redis).await,
            StoreConfig::Memory => Err(invalid(
                "Config::fleet_store".to_owned(),
                "this configuration keeps breakers in memory; build it with Config::redis(url)"
                    .to_owned(),
            )),
        }
    }

    /// The longest [`trial_lease`](Config::trial_lease).
    pub const MAX_TRIAL_LEASE: Duration = Duration::from_secs(60 * 60);

    /// Checks the settings that do not belong to one service.
    pub(crate) fn validate(&self) -> Result<(), InitError> {
        check_duration("trial_lease", self.trial_lease, Config::MAX_TRIAL_LEASE)
            .map_err(|reason| invalid("Config::trial_lease".to_owned(), reason))?;
        for service in self.services.keys() {
            crate::registry::validate_name(service)?;
        }
        self.redis.validate()
    }

    /// Resolves a service's settings: environment, then overrides, then declared. An
    /// invalid value is an error naming where it came from.
    pub(crate) fn resolve(&self, service: &str, declared: Settings) -> Result<Settings, InitError> {
        declared
            .validate()
            .map_err(|reason| invalid(format!("the declared settings of `{service}`"), reason))?;
        let mut settings = declared;
        if let Some(o) = self.services.get(service) {
            settings = o.apply(settings);
            settings
                .validate()
                .map_err(|reason| invalid(format!("Config::service({service:?})"), reason))?;
        }
        if self.env_overrides {
            settings = env::apply(service, settings)?;
        }
        Ok(settings)
    }
}

pub(crate) fn invalid(origin: String, reason: String) -> InitError {
    InitError::InvalidSetting { origin, reason }
}

impl Default for Config {
    fn default() -> Self {
        Config::in_memory()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("store", &self.store)
            .field("redis", &self.redis)
            .field("services", &self.services)
            .field("listeners", &self.listeners.len())
            .field("trial_lease", &self.trial_lease)
            .field("env_overrides", &self.env_overrides)
            .field(
                "allow_undeclared_overrides",
                &self.allow_undeclared_overrides,
            )
            .finish()
    }
}

/// Operator overrides for one service: only the fields set replace the declared ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceOverride {
    fail_max: Option<u32>,
    reset_timeout: Option<Duration>,
    success_threshold: Option<u32>,
}

impl ServiceOverride {
    /// Overrides nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Overrides `fail_max`.
    pub fn fail_max(mut self, n: u32) -> Self {
        self.fail_max = Some(n);
        self
    }

    /// Overrides `reset_timeout` (at most [`Settings::MAX_RESET_TIMEOUT`]; `init` names a
    /// larger value as invalid).
    pub fn reset_timeout(mut self, d: Duration) -> Self {
        self.reset_timeout = Some(d);
        self
    }

    /// Overrides `success_threshold`.
    pub fn success_threshold(mut self, n: u32) -> Self {
        self.success_threshold = Some(n);
        self
    }

    fn apply(&self, mut s: Settings) -> Settings {
        if let Some(n) = self.fail_max {
            s.fail_max = n;
        }
        if let Some(d) = self.reset_timeout {
            s.reset_timeout = d;
        }
        if let Some(n) = self.success_threshold {
            s.success_threshold = n;
        }
        s
    }
}
