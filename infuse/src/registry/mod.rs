//! The process-wide set of breakers, `init`, configuration and the declarations made by
//! `#[circuit_breaker]`.

mod config;
mod declare;
mod env;
mod retry;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

pub(crate) use config::StoreConfig;
pub use config::{Config, ServiceOverride};
pub use declare::{
    declarations, retry_argument, BreakerSpec, CarriesBreakerError, Declaration, ErrorCarries,
    Guard, IsResult, RetryArgument, Returns, StaticBreaker,
};
pub use env::env_prefix;

use crate::backend::Backend;
use crate::breaker::{Binding, Breaker};
use crate::core::{InitError, InvalidName, RegistryError, Settings, StorageError};
use crate::fleet::Fleet;
use crate::store::memory::MemoryStore;

/// The longest service name, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Checks a service name: non-empty, at most [`MAX_NAME_LEN`] bytes, no `{` or `}`
/// (reserved for Redis Cluster hash tags in the keys) and no control characters.
pub(crate) fn validate_name(name: &str) -> Result<(), InvalidName> {
    let reason = if name.is_empty() {
        "a service name must not be empty"
    } else if name.len() > MAX_NAME_LEN {
        "a service name must be at most 256 bytes"
    } else if name.contains(['{', '}']) {
        "a service name must not contain `{` or `}` (reserved for Redis Cluster hash tags)"
    } else if name.chars().any(char::is_control) {
        "a service name must not contain control characters"
    } else {
        return Ok(());
    };
    Err(InvalidName {
        name: name.to_owned(),
        reason,
    })
}

/// The breakers of a registry, by service.
#[derive(Default)]
struct Breakers(RwLock<HashMap<&'static str, Breaker>>);

impl Breakers {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<&'static str, Breaker>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<&'static str, Breaker>> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A set of breakers sharing one store. The process-wide one is behind [`breaker`] and
/// [`init`]; build others for tests or for separate fleets.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<RegistryInner>,
}

struct RegistryInner {
    breakers: Arc<Breakers>,
    setup: RwLock<Setup>,
}

#[derive(Clone)]
struct Setup {
    config: Config,
    backend: Backend,
}

impl Registry {
    /// A registry whose breakers live in process memory.
    pub fn in_memory() -> Registry {
        Registry {
            inner: Arc::new(RegistryInner {
                breakers: Arc::default(),
                setup: RwLock::new(Setup {
                    config: Config::in_memory(),
                    backend: Backend::Memory(Arc::new(MemoryStore::new())),
                }),
            }),
        }
    }

    /// A registry set up from `config`, with a breaker for every declared service.
    ///
    /// Unlike [`init`], it accepts overrides for services that nothing declares yet: a
    /// registry's breakers are usually created after it, with
    /// [`breaker`](Registry::breaker).
    pub async fn new(config: Config) -> Result<Registry, InitError> {
        let registry = Registry::in_memory();
        registry.configure(config, Overrides::ForAnyService).await?;
        Ok(registry)
    }

    /// The breaker of `service`, created with the declared (or default) settings if it
    /// does not exist yet. Cheap to clone; keep it.
    ///
    /// # Panics
    ///
    /// If `service` is not a valid name, or if creating it would exceed
    /// [`Config::max_breakers`] (see [`try_breaker`](Registry::try_breaker)): names are
    /// meant to be literals; use `try_breaker` for names from input.
    pub fn breaker(&self, service: &str) -> Breaker {
        match self.try_breaker(service) {
            Ok(breaker) => breaker,
            Err(error) => panic!("{}", panic_message(&error)),
        }
    }

    /// The breaker of `service`, or an error if the name is empty, longer than
    /// [`MAX_NAME_LEN`] bytes, or contains `{`, `}` or a control character
    /// ([`RegistryError::InvalidName`]), or if the registry already holds
    /// [`Config::max_breakers`] breakers ([`RegistryError::TooManyBreakers`]; services
    /// declared with `#[circuit_breaker]` are always created).
    ///
    /// ```
    /// let registry = infuse::Registry::in_memory();
    /// assert!(registry.try_breaker("users").is_ok());
    /// assert!(registry.try_breaker("a{b}c").is_err());
    /// assert!(registry.try_breaker("").is_err());
    /// ```
    pub fn try_breaker(&self, service: &str) -> Result<Breaker, RegistryError> {
        if let Some(b) = self.inner.breakers.read().get(service) {
            return Ok(b.clone());
        }
        validate_name(service)?;
        match declarations().find(|d| d.service == service) {
            Some(declared) => Ok(self.breaker_with(service, Some(declared.settings))),
            None => self.create(service, None, Limit::Bounded),
        }
    }

    /// The breaker of `service` if this registry has one (never creates it).
    pub(crate) fn existing(&self, service: &str) -> Option<Breaker> {
        self.inner.breakers.read().get(service).cloned()
    }

    /// Every breaker created so far.
    pub fn breakers(&self) -> Vec<Breaker> {
        self.inner.breakers.read().values().cloned().collect()
    }

    /// Leaves the fleet's list of processes (what `infuse status` and
    /// [`Admin::processes`](crate::admin::Admin::processes) show) at once: call it when the
    /// process shuts down cleanly. Without it (a crash, a kill, or a process that just
    /// exits: dropping a registry does not withdraw it, and the process-wide one is never
    /// dropped), the process stays listed, its last-seen age growing, until its
    /// announcement expires ten resync intervals after its last renewal.
    ///
    /// The breakers keep working afterwards; this registry never announces itself
    /// again. Nothing to do for breakers in memory.
    ///
    /// # Errors
    ///
    /// The store's error when Redis does not answer: the announcement then expires as a
    /// dead process's would (it is never renewed again).
    ///
    /// ```no_run
    /// # async fn serve() {}
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let registry = infuse::Registry::new(infuse::Config::redis("redis://127.0.0.1/")).await?;
    /// serve().await;
    /// registry.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(&self) -> Result<(), StorageError> {
        match self.setup().backend {
            Backend::Fleet(fleet) => fleet.withdraw().await,
            Backend::Memory(_) => Ok(()),
        }
    }

    fn setup(&self) -> Setup {
        self.inner
            .setup
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The breaker of a declared service (created whatever the limit: declared services
    /// are a fixed set, checked against the limit by `init`).
    pub(crate) fn breaker_with(&self, service: &str, declared: Option<Settings>) -> Breaker {
        match self.create(service, declared, Limit::Exempt) {
            Ok(breaker) => breaker,
            Err(_) => unreachable!("an exempt breaker is never refused"),
        }
    }

    /// The breaker of `service`, created if needed (unless `limit` refuses it).
    fn create(
        &self,
        service: &str,
        declared: Option<Settings>,
        limit: Limit,
    ) -> Result<Breaker, RegistryError> {
        let max = self.max_breakers();
        {
            // Refused without cloning the setup: a request path may ask again and again.
            let breakers = self.inner.breakers.read();
            if let Some(b) = breakers.get(service) {
                return Ok(b.clone());
            }
            limit.check(service, breakers.len(), max)?;
        }
        let setup = self.setup();
        let mut breakers = self.inner.breakers.write();
        if let Some(b) = breakers.get(service) {
            return Ok(b.clone());
        }
        limit.check(service, breakers.len(), max)?;
        let declared = declared.unwrap_or_default();
        let settings = setup
            .config
            .resolve(service, declared)
            .unwrap_or_else(|error| {
                tracing::error!(service, %error, "invalid breaker settings; using the defaults");
                Settings::DEFAULT
            });
        // Interned for the life of the process: the registry keeps every breaker anyway,
        // and errors can then carry the name without allocating.
        let service: &'static str = Box::leak(service.to_owned().into_boxed_str());
        let binding = Binding {
            backend: setup.backend.clone(),
            trial_lease: setup.config.trial_lease,
        };
        let breaker = Breaker::new(service, settings, binding);
        setup.config.add_listeners_to(&breaker);
        setup.backend.attach(&breaker.cell());
        breakers.insert(service, breaker.clone());
        Ok(breaker)
    }

    /// The registry's [`Config::max_breakers`].
    fn max_breakers(&self) -> usize {
        self.inner
            .setup
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .config
            .max_breakers
    }

    /// Applies `config`: checks declarations and overrides, connects the store, and
    /// rebinds every breaker (declared or already created) to it.
    async fn configure(&self, config: Config, overrides: Overrides) -> Result<(), InitError> {
        config.validate()?;
        let declared = declare::check_declarations()?;
        let mut resolved = HashMap::new();
        for (service, spec) in &declared {
            resolved.insert(*service, config.resolve(service, spec.settings)?);
        }
        // An override of a service nothing declares is checked too, before any breaker of
        // it exists: an invalid one must fail here, not be replaced by the defaults when
        // the breaker is created. (Declared services were resolved just above.)
        for service in config.services.keys() {
            if !declared.contains_key(service.as_str()) {
                config.resolve(service, Settings::DEFAULT)?;
            }
        }
        let existing = self.breakers();
        let mut known: HashSet<&str> = declared.keys().copied().collect();
        known.extend(existing.iter().map(|b| b.service()));
        if known.len() > config.max_breakers {
            return Err(config::invalid(
                "Config::max_breakers".to_owned(),
                format!(
                    "max_breakers = {} is below the {} services that #[circuit_breaker] declares or that have a breaker already; raise it",
                    config.max_breakers,
                    known.len()
                ),
            ));
        }
        if overrides == Overrides::ForKnownServices && !config.allow_undeclared_overrides {
            check_overrides(&config, &known)?;
        }
        let backend = match config.store {
            StoreConfig::Memory => Backend::Memory(Arc::new(MemoryStore::new())),
            StoreConfig::Redis => Backend::Fleet(Fleet::connect(&config.redis).await?),
        };
        *self
            .inner
            .setup
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Setup {
            config: config.clone(),
            backend: backend.clone(),
        };
        for (service, spec) in &declared {
            self.breaker_with(service, Some(spec.settings));
        }
        for breaker in self.breakers() {
            let settings = match resolved.get(breaker.service()) {
                Some(s) => *s,
                None => config.resolve(breaker.service(), breaker.settings())?,
            };
            let binding = Binding {
                backend: backend.clone(),
                trial_lease: config.trial_lease,
            };
            breaker
                .rebind(settings, binding, config.redis.start_degraded)
                .await?;
        }
        // Breakers created before this call get the config's listeners too.
        for breaker in existing {
            config.add_listeners_to(&breaker);
        }
        Ok(())
    }
}

/// Whether creating a breaker counts against [`Config::max_breakers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    /// Refused once the registry holds `max_breakers` breakers.
    Bounded,
    /// Always created: a service declared with `#[circuit_breaker]`.
    Exempt,
}

impl Limit {
    fn check(self, service: &str, count: usize, max: usize) -> Result<(), RegistryError> {
        if self == Limit::Bounded && count >= max {
            return Err(RegistryError::TooManyBreakers {
                service: service.to_owned(),
                limit: max,
            });
        }
        Ok(())
    }
}

/// What `breaker()` panics with: the error, and what to do instead.
fn panic_message(error: &RegistryError) -> String {
    match error {
        RegistryError::TooManyBreakers { .. } => {
            format!("{error}; use try_breaker() to handle the limit where names come from input")
        }
        _ => format!("{error}; use try_breaker() for names that come from input"),
    }
}

/// Which services overrides may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overrides {
    /// Declared ones and existing breakers (what `init` accepts).
    ForKnownServices,
    /// Any (a registry built for breakers created later).
    ForAnyService,
}

/// Fails on an override for a service that nothing declares or uses, naming the closest
/// known service.
fn check_overrides(config: &Config, known: &HashSet<&str>) -> Result<(), InitError> {
    for service in config.services.keys() {
        if !known.contains(service.as_str()) {
            return Err(InitError::UnknownService {
                origin: format!("Config::service({service:?})"),
                service: service.clone(),
                suggestion: env::closest(service, known.iter().copied(), str::to_owned),
            });
        }
    }
    if config.env_overrides {
        let mut prefixes: HashSet<String> = known.iter().map(|s| env_prefix(s)).collect();
        prefixes.extend(config.services.keys().map(|s| env_prefix(s)));
        for (variable, service) in env::overrides_set() {
            if !prefixes.contains(&format!("INFUSE_{service}_")) {
                let wanted = format!("INFUSE_{service}_");
                return Err(InitError::UnknownService {
                    origin: format!("the environment variable {variable}"),
                    service: service.to_lowercase().replace('_', "-"),
                    suggestion: env::closest(&wanted, known.iter().copied(), env_prefix),
                });
            }
        }
    }
    Ok(())
}

/// The process-wide registry (in memory until [`init`] says otherwise).
pub fn global() -> &'static Registry {
    static GLOBAL: OnceLock<Registry> = OnceLock::new();
    GLOBAL.get_or_init(Registry::in_memory)
}

/// The breaker of `service` in the process-wide registry, created with the declared (or
/// default) settings if needed. Cheap to clone; keep it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), infuse::StorageError> {
/// let users = infuse::breaker("users");
/// assert_eq!(users.state().await?, infuse::State::Closed);
/// # Ok(()) }
/// ```
///
/// # Panics
///
/// If `service` is not a valid name: empty, longer than 256 bytes, or containing `{`,
/// `}` or a control character; or if creating it would exceed [`Config::max_breakers`].
/// Use [`try_breaker`] for names that come from input.
pub fn breaker(service: &str) -> Breaker {
    global().breaker(service)
}

/// The breaker of `service` in the process-wide registry, or an error naming what is
/// wrong with the name, or the limit it would exceed (see [`Registry::try_breaker`]).
///
/// ```
/// let err = infuse::try_breaker("users{eu}").unwrap_err();
/// assert!(err.to_string().contains("must not contain `{` or `}`"));
/// ```
pub fn try_breaker(service: &str) -> Result<Breaker, RegistryError> {
    global().try_breaker(service)
}

/// [`Registry::shutdown`] of the process-wide registry (the one [`init`] sets up): call
/// it when the process shuts down cleanly, so that it leaves the fleet's list of
/// processes at once instead of lingering until its announcement expires.
///
/// ```no_run
/// # async fn serve() {}
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// infuse::init(infuse::Config::redis("redis://127.0.0.1/")).await?;
/// serve().await;
/// infuse::shutdown().await?;
/// # Ok(()) }
/// ```
pub async fn shutdown() -> Result<(), StorageError> {
    global().shutdown().await
}

/// Initialises infuse once at boot: where breaker state lives, operator overrides, and a
/// breaker for every `#[circuit_breaker]` service in the binary.
///
/// Optional for the in-memory default. Fails if two functions declare one service with
/// different settings, if a setting is invalid or above its maximum, if an override
/// names a service nothing declares, if the store is unreachable, or if called twice.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), infuse::InitError> {
/// infuse::init(infuse::Config::in_memory()).await?;
/// # Ok(()) }
/// ```
pub async fn init(config: Config) -> Result<(), InitError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static INITIALISED: AtomicBool = AtomicBool::new(false);
    if INITIALISED.swap(true, Ordering::AcqRel) {
        return Err(InitError::AlreadyInitialized);
    }
    let result = global()
        .configure(config, Overrides::ForKnownServices)
        .await;
    if result.is_err() {
        INITIALISED.store(false, Ordering::Release);
    }
    result
}
