//! Boot-time configuration: where state lives, and operator overrides.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::breaker::Breaker;
use crate::core::{check_duration, InitError, Settings};
use crate::fleet::{FleetConnection, FleetStore, RedisOptions, Topology, UnavailablePolicy};
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
/// knows, `INFUSE_<SERVICE>_<SETTING>`, where `<SERVICE>` is the service name upper-cased
/// with every other character than `A-Z0-9` replaced by `_` (`users-api` →
/// `INFUSE_USERS_API_FAIL_MAX`) and `<SETTING>` the setting's name upper-cased (the
/// table of [`Settings`] lists each with its values).
///
/// A variable has one meaning, with the longest setting name that fits:
/// `INFUSE_USERS_MAX_RESET_TIMEOUT` is the `MAX_RESET_TIMEOUT` of `users`, never the
/// `RESET_TIMEOUT` of a service `users-max`. A service's variables are checked together, once all are applied, so that
/// `SLOW_CALL` and `SLOW_CALL_RATE` may come from two variables; an invalid value makes
/// `init` fail with [`InitError::InvalidSetting`] naming the variable. Precedence:
/// environment, then `Config::service`, then the `#[circuit_breaker]` arguments, then the
/// defaults.
#[derive(Clone)]
pub struct Config {
    pub(crate) store: StoreConfig,
    pub(crate) redis: RedisOptions,
    pub(crate) services: HashMap<String, ServiceOverride>,
    pub(crate) listeners: Vec<Arc<dyn Listener>>,
    pub(crate) listener_factories: Vec<ListenerFactory>,
    pub(crate) trial_lease: Duration,
    pub(crate) env_overrides: bool,
    pub(crate) allow_undeclared_overrides: bool,
    pub(crate) max_breakers: usize,
}

/// Makes a breaker's own listener (see [`Config::listener_per_breaker`]).
pub(crate) type ListenerFactory = Arc<dyn Fn(&Breaker) -> Arc<dyn Listener> + Send + Sync>;

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
            listener_factories: Vec::new(),
            trial_lease: Duration::from_secs(30),
            env_overrides: true,
            allow_undeclared_overrides: false,
            max_breakers: Config::DEFAULT_MAX_BREAKERS,
        }
    }

    /// Breakers shared by every process of the fleet through Redis
    /// (`redis://[user:password@]host:port/db`, or `rediss://…` for TLS, which needs the
    /// `tls` feature, on by default; see [`tls_root_cert`](Config::tls_root_cert) and
    /// [`tls_client_cert`](Config::tls_client_cert)). See the guide's
    /// [fleet chapter](crate::guide::fleet) for the key layout and ACL, and
    /// [`redis_sentinel`](Config::redis_sentinel) and
    /// [`redis_cluster`](Config::redis_cluster) for the other deployments. The password
    /// never appears in `Debug` output or errors.
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
        config.redis.topology = Topology::Single { url: url.into() };
        config
    }

    /// Breakers shared through the Redis master that these Sentinels monitor under
    /// `master` (the name of `sentinel monitor <master> …`), following its failovers: when
    /// the master stops answering as one (connection lost, `READONLY`, unanswered), the
    /// Sentinels are asked again. Each address is a Sentinel's URL,
    /// `redis[s]://[user:password@]host:port` (the Sentinels' own credentials, if they
    /// require any); the master's credentials are given with
    /// [`sentinel_master_auth`](Config::sentinel_master_auth). With `rediss://` Sentinel
    /// URLs, the master is reached over TLS too, with the same
    /// [`tls_root_cert`](Config::tls_root_cert) and
    /// [`tls_client_cert`](Config::tls_client_cert).
    ///
    /// ```no_run
    /// # async fn boot() -> Result<(), infuse::InitError> {
    /// use infuse::Config;
    /// infuse::init(Config::redis_sentinel(
    ///     ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379", "redis://10.0.0.3:26379"],
    ///     "mymaster",
    /// ))
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub fn redis_sentinel(
        sentinels: impl IntoIterator<Item = impl Into<String>>,
        master: impl Into<String>,
    ) -> Config {
        let mut config = Config::in_memory();
        config.store = StoreConfig::Redis;
        config.redis.topology = Topology::Sentinel {
            sentinels: sentinels.into_iter().map(Into::into).collect(),
            master: master.into(),
        };
        config
    }

    /// Breakers shared through a Redis Cluster, found from any of these nodes
    /// (`redis[s]://[user:password@]host:port`, credentials and TLS taken from the first).
    /// Each breaker's keys share one hash slot, so its scripts run atomically on the node
    /// that owns it; redirections (`MOVED`/`ASK`) and failovers are followed. Events use
    /// classic `PUBLISH`, which the cluster broadcasts to every node: each process
    /// subscribes on one node and moves to another if it fails.
    ///
    /// ```no_run
    /// # async fn boot() -> Result<(), infuse::InitError> {
    /// use infuse::Config;
    /// infuse::init(Config::redis_cluster([
    ///     "redis://10.0.0.1:7000",
    ///     "redis://10.0.0.2:7000",
    ///     "redis://10.0.0.3:7000",
    /// ]))
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub fn redis_cluster(nodes: impl IntoIterator<Item = impl Into<String>>) -> Config {
        let mut config = Config::in_memory();
        config.store = StoreConfig::Redis;
        config.redis.topology = Topology::Cluster {
            nodes: nodes.into_iter().map(Into::into).collect(),
        };
        config
    }

    /// Trusts the CA in `pem` (PEM; one or more certificates) for `rediss://` servers,
    /// instead of the system's roots: a private CA. `init` fails with
    /// [`InitError::InvalidSetting`] naming this method if it does not parse.
    pub fn tls_root_cert(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.redis.tls.root_cert = Some(pem.as_ref().to_vec());
        self
    }

    /// Presents this client certificate (PEM chain) and private key (PEM) to `rediss://`
    /// servers that require one (mutual TLS, `tls-auth-clients yes`). `init` fails with
    /// [`InitError::InvalidSetting`] naming this method if either does not parse.
    pub fn tls_client_cert(
        mut self,
        cert_pem: impl AsRef<[u8]>,
        key_pem: impl AsRef<[u8]>,
    ) -> Self {
        self.redis.tls.client_cert = Some((cert_pem.as_ref().to_vec(), key_pem.as_ref().to_vec()));
        self
    }

    /// The master's credentials in Sentinel mode (see
    /// [`redis_sentinel`](Config::redis_sentinel)): an ACL user (an empty `username`
    /// means the `default` user) and its password. Never shown in `Debug` or errors.
    pub fn sentinel_master_auth(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        let username = username.into();
        self.redis.master_auth.username = (!username.is_empty()).then_some(username);
        self.redis.master_auth.password = Some(password.into());
        self
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

    /// Gives every breaker a listener of its own, made by `make` when the breaker is
    /// created (or at `init`, for breakers that exist already): a listener that keeps
    /// per-service state — cached metric handles, say — without looking the service up
    /// on every event.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use infuse::{Config, Listener};
    ///
    /// struct Named(&'static str);
    /// impl Listener for Named {}
    ///
    /// let config = Config::in_memory().listener_per_breaker(|breaker| Arc::new(Named(breaker.service())));
    /// # let _ = config;
    /// ```
    pub fn listener_per_breaker(
        mut self,
        make: impl Fn(&Breaker) -> Arc<dyn Listener> + Send + Sync + 'static,
    ) -> Self {
        self.listener_factories.push(Arc::new(make));
        self
    }

    /// Adds this config's listeners to `breaker`.
    pub(crate) fn add_listeners_to(&self, breaker: &Breaker) {
        for listener in &self.listeners {
            breaker.add_listener(listener.clone());
        }
        for make in &self.listener_factories {
            breaker.add_listener(make(breaker));
        }
    }

    /// How long a half-open trial call may hold the trial slot before another caller may
    /// take it (default 30 s, at most 1 h), for breakers without a call limit. A breaker
    /// with `trial_timeout` or `timeout` derives its lease from that limit instead (the
    /// limit plus half of it, between 100 ms and 1 s more), so the slot always outlives
    /// the trial.
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

    /// The most breakers the registry holds (default [`DEFAULT_MAX_BREAKERS`], at least
    /// 1). A registry keeps every breaker it creates for its whole life (a breaker is
    /// its name, settings, listeners and view; with Redis also its record, history and
    /// change-log entry), so names that come from unbounded input — request paths, user
    /// ids, every host a client meets — would grow it without end. Past the limit:
    ///
    /// - [`Registry::try_breaker`](crate::Registry::try_breaker) (and
    ///   [`infuse::try_breaker`](crate::try_breaker)) returns
    ///   [`RegistryError::TooManyBreakers`](crate::RegistryError::TooManyBreakers) naming
    ///   the limit and this setting;
    /// - [`Registry::breaker`](crate::Registry::breaker) panics with the same message;
    /// - the per-host reqwest middleware and the tower `per_key` layer send a request for
    ///   a name without a breaker unguarded, and log that once at `warn`.
    ///
    /// Breakers that exist keep working; services declared with `#[circuit_breaker]`
    /// always get their breaker (they are a fixed set; they count towards the limit).
    /// `init` fails if the declared services (and breakers created before it) are more
    /// than the limit.
    ///
    /// What a breaker costs, measured with a counting allocator (`cargo test -p
    /// infuse-tests --test memory_per_breaker -- --nocapture`; x86-64): about 1.2 KB of
    /// this process's heap in memory mode (10,000 breakers: the handle, its view and
    /// settings, its record), about 0.75 KB in fleet mode (2,000 breakers: the record is
    /// in Redis, about 0.6 KB of its `used_memory` each, change-log entry included). So
    /// the default limit bounds a registry at about 12 MB. Breakers created by the
    /// thousand at once cost more while their records load (the scripts in flight).
    ///
    /// [`DEFAULT_MAX_BREAKERS`]: Config::DEFAULT_MAX_BREAKERS
    pub fn max_breakers(mut self, n: usize) -> Self {
        self.max_breakers = n;
        self
    }

    /// The default of [`max_breakers`](Config::max_breakers).
    pub const DEFAULT_MAX_BREAKERS: usize = 10_000;

    /// Connects the fleet layer of this configuration as a store of its own (see
    /// [`FleetStore`]), without creating breakers.
    ///
    /// # Errors
    ///
    /// As [`init`](crate::init): an invalid setting, or Redis unreachable (unless
    /// [`start_degraded`](Config::start_degraded)). A configuration without Redis is an
    /// [`InitError::InvalidSetting`].
    #[doc(hidden)]
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

    /// Connects to this configuration's Redis as [`init`](crate::init) would, for a tool
    /// of your own that reads the breakers' records or follows their events (see the
    /// [key layout](crate::guide::fleet#what-redis-holds)); no registry, nothing written. Fails like `init` on an
    /// invalid setting or an unreachable Redis (even with
    /// [`start_degraded`](Config::start_degraded)).
    pub async fn redis_connection(&self) -> Result<FleetConnection, InitError> {
        match self.store {
            StoreConfig::Redis => {
                self.redis.validate()?;
                FleetConnection::connect(&self.redis).await
            }
            StoreConfig::Memory => Err(invalid(
                "Config::redis_connection".to_owned(),
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
        if self.max_breakers == 0 {
            return Err(invalid(
                "Config::max_breakers".to_owned(),
                "max_breakers = 0 would refuse every breaker; it must be at least 1 (default 10000)"
                    .to_owned(),
            ));
        }
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
            .field("listener_factories", &self.listener_factories.len())
            .field("trial_lease", &self.trial_lease)
            .field("env_overrides", &self.env_overrides)
            .field(
                "allow_undeclared_overrides",
                &self.allow_undeclared_overrides,
            )
            .field("max_breakers", &self.max_breakers)
            .finish()
    }
}

/// Generates [`ServiceOverride`] from the table of `infuse-settings`: an optional field and
/// a setter per setting.
macro_rules! service_override {
    ($( $(#[$doc:meta])* $name:ident : $kind:ident [$($default:expr)?] { $($data:tt)* } )*) => {
        /// Operator overrides for one service: only the fields set replace the declared ones.
        ///
        /// Each value is checked by `init` together with the rest of the service's settings
        /// (see [`Settings`] for every setting and rule): an invalid one, or an invalid
        /// combination, makes `init` fail with [`InitError::InvalidSetting`] naming
        /// `Config::service("…")` and the setting.
        ///
        /// ```
        /// use std::time::Duration;
        /// use infuse::ServiceOverride;
        ///
        /// // Trip when half the calls of the last 30 s fail or take over 800 ms, with backoff.
        /// let o = ServiceOverride::new()
        ///     .timeout(Duration::from_secs(2))
        ///     .failure_rate(50)
        ///     .slow_call(Duration::from_millis(800))
        ///     .slow_call_rate(50)
        ///     .window(Duration::from_secs(30))
        ///     .max_reset_timeout(Duration::from_secs(300));
        /// # let _ = o;
        /// ```
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct ServiceOverride {
            $( $name: Option<infuse_settings::value_type!($kind)>, )*
        }

        impl ServiceOverride {
            $(
                #[doc = concat!("Overrides [`", stringify!($name), "`](Settings::", stringify!($name), ").")]
                pub fn $name(mut self, value: infuse_settings::value_type!($kind)) -> Self {
                    self.$name = Some(value);
                    self
                }
            )*

            /// Sets `setting` by name, as its setter does.
            #[cfg(test)]
            fn with_value(self, setting: &infuse_settings::Setting, value: infuse_settings::Value) -> Self {
                match setting.name {
                    $( stringify!($name) => self.$name(infuse_settings::SettingValue::from_value(value)), )*
                    _ => self,
                }
            }

            /// `s` with the fields set replaced: the declared values stay otherwise.
            fn apply(&self, mut s: Settings) -> Settings {
                $(
                    if let Some(value) = self.$name {
                        s = s.$name(value);
                    }
                )*
                s
            }
        }
    };
}

infuse_settings::for_each_setting!(service_override);

impl ServiceOverride {
    /// Overrides nothing yet.
    pub fn new() -> Self {
        Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_replaces_only_what_it_sets() {
        let declared = Settings::DEFAULT
            .fail_max(3)
            .timeout(Duration::from_secs(1))
            .failure_rate(20);
        assert_eq!(ServiceOverride::new().apply(declared), declared);
        let mut all = ServiceOverride::new();
        let mut expected = declared;
        for setting in infuse_settings::SETTINGS {
            let value = setting.example_value();
            let one = ServiceOverride::new().with_value(setting, value);
            assert_eq!(
                one.apply(declared),
                declared.with_value(setting, value),
                "{}",
                setting.name
            );
            all = all.with_value(setting, value);
            expected = expected.with_value(setting, value);
        }
        assert_eq!(all.apply(declared), expected);
        assert_ne!(expected, declared);
    }
}
