//! The process-wide set of breakers, `init`, and the declarations made by
//! `#[circuit_breaker]`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use crate::fleet::{BreakerMap, Fleet};

use crate::backend::Backend;
use crate::breaker::{Binding, Breaker};
use crate::config::{Config, StoreConfig};
use crate::store::memory::MemoryStore;
use crate::store::Store;
use crate::{InitError, Settings};

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

    fn describe(&self) -> String {
        format!("{} at {}:{}", self.function, self.file, self.line)
    }
}

/// A registered declaration, collected binary-wide so `init` knows every service.
#[doc(hidden)]
pub struct Declaration(pub &'static BreakerSpec);

inventory::collect!(Declaration);

/// Registers a `static` [`BreakerSpec`] so that [`init`] creates its breaker and checks
/// it against other declarations of the same service. `#[circuit_breaker]` emits this.
///
/// ```
/// static SPEC: infuse::BreakerSpec = infuse::BreakerSpec::new(
///     "users", infuse::Settings::DEFAULT, "my_app::get_user", file!(), line!());
/// infuse::register!(SPEC);
/// ```
#[macro_export]
macro_rules! register {
    ($spec:path) => {
        $crate::__inventory::submit! { $crate::Declaration(&$spec) }
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
            global().breaker_with(spec.service, Some(spec.settings))
        })
    }
}

/// A set of breakers sharing one store. The process-wide one is behind [`breaker`] and
/// [`init`]; build others for tests or for separate fleets.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<RegistryInner>,
}

struct RegistryInner {
    breakers: Arc<BreakerMap>,
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
        Registry::with_setup(Setup {
            config: Config::in_memory(),
            backend: Backend::Memory(Arc::new(MemoryStore::new())),
        })
    }

    fn with_setup(setup: Setup) -> Registry {
        Registry {
            inner: Arc::new(RegistryInner {
                breakers: Arc::new(RwLock::new(HashMap::new())),
                setup: RwLock::new(setup),
            }),
        }
    }

    /// A registry set up from `config`, with a breaker for every declared service.
    pub async fn new(config: Config) -> Result<Registry, InitError> {
        let registry = Registry::in_memory();
        registry.configure(config).await?;
        Ok(registry)
    }

    /// The breaker of `service`, created with the declared (or default) settings if it
    /// does not exist yet.
    pub fn breaker(&self, service: &str) -> Breaker {
        if let Some(b) = self.read_breakers().get(service) {
            return b.clone();
        }
        let declared = declarations()
            .find(|d| d.service == service)
            .map(|d| d.settings);
        self.breaker_with(service, declared)
    }

    /// Every breaker created so far.
    pub fn breakers(&self) -> Vec<Breaker> {
        self.read_breakers().values().cloned().collect()
    }

    fn read_breakers(&self) -> std::sync::RwLockReadGuard<'_, HashMap<&'static str, Breaker>> {
        self.inner
            .breakers
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn setup(&self) -> Setup {
        self.inner
            .setup
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn breaker_with(&self, service: &str, declared: Option<Settings>) -> Breaker {
        if let Some(b) = self.read_breakers().get(service) {
            return b.clone();
        }
        let setup = self.setup();
        let mut breakers = self
            .inner
            .breakers
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(b) = breakers.get(service) {
            return b.clone();
        }
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
        let breaker = Breaker::new(
            service,
            Binding {
                settings,
                backend: setup.backend.clone(),
                trial_lease: setup.config.trial_lease,
            },
        );
        for listener in &setup.config.listeners {
            breaker.add_listener(listener.clone());
        }
        setup.backend.attach(&breaker);
        breakers.insert(service, breaker.clone());
        breaker
    }

    /// Applies `config`: checks declarations, connects the store, and rebinds every
    /// breaker (declared or already created) to it.
    pub(crate) async fn configure(&self, config: Config) -> Result<(), InitError> {
        let declared = check_declarations()?;
        let mut resolved = HashMap::new();
        for (service, spec) in &declared {
            let settings = config.resolve(service, spec.settings)?;
            resolved.insert(*service, settings);
        }
        for service in config.services.keys() {
            if !declared.contains_key(service.as_str()) {
                tracing::warn!(
                    service,
                    "Config::service names a service no #[circuit_breaker] declares"
                );
            }
        }
        let backend = match &config.store {
            StoreConfig::Memory => Backend::Memory(Arc::new(MemoryStore::new())),
            StoreConfig::Redis => Backend::Redis(
                Fleet::connect(&config.redis, Arc::downgrade(&self.inner.breakers)).await?,
            ),
        };
        let existing = self.breakers();
        *self.inner.setup.write().unwrap_or_else(|e| e.into_inner()) = Setup {
            config: config.clone(),
            backend: backend.clone(),
        };
        for service in declared.keys() {
            self.breaker_with(service, Some(declared[service].settings));
        }
        for breaker in self.breakers() {
            let settings = match resolved.get(breaker.service()) {
                Some(s) => *s,
                None => config.resolve(breaker.service(), breaker.settings())?,
            };
            breaker
                .rebind(Binding {
                    settings,
                    backend: backend.clone(),
                    trial_lease: config.trial_lease,
                })
                .await?;
        }
        // Breakers created before this call get the config's listeners too.
        for breaker in existing {
            for listener in &config.listeners {
                breaker.add_listener(listener.clone());
            }
        }
        Ok(())
    }
}

impl Backend {
    /// Loads the stored state of a breaker just created outside `init`.
    fn attach(&self, breaker: &Breaker) {
        match self {
            Backend::Memory(store) => {
                breaker.observe_snapshot(&store.snapshot_now(breaker.service()));
            }
            Backend::Redis(fleet) => {
                // Created on first use: its first call loads the shared state (it must
                // not assume closed while the fleet has it open); load it eagerly too.
                breaker.inner.view.mark_unsynced();
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    let (fleet, breaker) = (fleet.clone(), breaker.clone());
                    runtime.spawn(async move {
                        let settings = breaker.settings();
                        if let Ok(snapshot) = fleet.register(breaker.service(), &settings).await {
                            breaker.observe_snapshot(&snapshot);
                        }
                    });
                }
            }
        }
    }
}

/// Groups declarations by service; conflicting settings are an error naming both
/// functions.
fn check_declarations() -> Result<HashMap<&'static str, &'static BreakerSpec>, InitError> {
    let mut seen: HashMap<&'static str, &'static BreakerSpec> = HashMap::new();
    let mut all: Vec<_> = declarations().collect();
    all.sort_by_key(|d| (d.service, d.file, d.line));
    for spec in all {
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

fn describe_settings(s: &Settings) -> String {
    format!(
        "fail_max = {}, reset_timeout = {:?}, success_threshold = {}",
        s.fail_max, s.reset_timeout, s.success_threshold
    )
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
pub fn breaker(service: &str) -> Breaker {
    global().breaker(service)
}

/// Initialises infuse once at boot: where breaker state lives, operator overrides, and a
/// breaker for every `#[circuit_breaker]` service in the binary.
///
/// Optional for the in-memory default. Fails if two functions declare one service with
/// different settings, if a setting is invalid, if the store is unreachable, or if called
/// twice.
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
    let result = global().configure(config).await;
    if result.is_err() {
        INITIALISED.store(false, Ordering::Release);
    }
    result
}
