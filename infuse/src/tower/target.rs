//! Which breaker guards a request: one for every request, or one per service name
//! chosen from each request.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::breaker::Breaker;
use crate::core::{InvalidName, RegistryError};
use crate::registry::{global, Registry};

/// One breaker guards every request (from [`CircuitBreakerLayer::new`]).
///
/// [`CircuitBreakerLayer::new`]: crate::tower::CircuitBreakerLayer::new
#[derive(Debug, Clone)]
pub struct Single {
    pub(crate) breaker: Breaker,
}

/// A breaker per service name, chosen from each request by a function (from
/// [`CircuitBreakerLayer::per_key`]).
///
/// Handles already resolved are cached in a map read without a lock (an `ArcSwap`): a
/// request for a known name costs one hash lookup and no allocation; a new name copies
/// the map once. Names come from a bounded set by design (a breaker per target
/// service): every name ever seen keeps its breaker for the life of the process, up to
/// the registry's [`Config::max_breakers`](crate::Config::max_breakers); past it, a
/// request for a name without a breaker goes through unguarded (logged once).
///
/// [`CircuitBreakerLayer::per_key`]: crate::tower::CircuitBreakerLayer::per_key
pub struct PerKey<F> {
    shared: Arc<Keyed<F>>,
}

struct Keyed<F> {
    key: F,
    /// Where breakers are created: `None` for the process-wide registry.
    registry: Option<Registry>,
    breakers: ArcSwap<HashMap<Box<str>, Breaker>>,
    /// Whether a request went through unguarded because the registry is full (logged
    /// once).
    full: AtomicBool,
}

/// What the key function chose for one request.
pub(crate) enum Choice {
    Guard(Breaker),
    /// The key function returned `None`, or the registry is full: the request goes
    /// through unguarded.
    Pass,
    Invalid(InvalidName),
}

impl<F> PerKey<F> {
    pub(crate) fn new(registry: Option<Registry>, key: F) -> PerKey<F> {
        PerKey {
            shared: Arc::new(Keyed {
                key,
                registry,
                breakers: ArcSwap::from_pointee(HashMap::new()),
                full: AtomicBool::new(false),
            }),
        }
    }

    /// The breaker for `request`.
    #[inline]
    pub(crate) fn choose<Req>(&self, request: &Req) -> Choice
    where
        F: Fn(&Req) -> Option<&str>,
    {
        let Some(name) = (self.shared.key)(request) else {
            return Choice::Pass;
        };
        if let Some(breaker) = self.shared.breakers.load().get(name) {
            return Choice::Guard(breaker.clone());
        }
        self.resolve(name)
    }

    /// A name not cached yet: from the registry, then into the cache. Invalid names and
    /// names refused by a full registry are not cached (the map would grow with
    /// whatever the requests carry).
    #[cold]
    #[inline(never)]
    fn resolve(&self, name: &str) -> Choice {
        let created = match &self.shared.registry {
            Some(registry) => registry.try_breaker(name),
            None => global().try_breaker(name),
        };
        let breaker = match created {
            Ok(breaker) => breaker,
            Err(RegistryError::InvalidName(invalid)) => return Choice::Invalid(invalid),
            Err(RegistryError::TooManyBreakers { limit, .. }) => {
                if !self.shared.full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        service = name,
                        limit,
                        "the registry holds Config::max_breakers breakers: requests for names without a breaker go through unguarded (logged once)"
                    );
                }
                return Choice::Pass;
            }
        };
        self.shared.breakers.rcu(|breakers| {
            let mut breakers = HashMap::clone(breakers);
            breakers.insert(name.into(), breaker.clone());
            breakers
        });
        Choice::Guard(breaker)
    }
}

impl<F> Clone for PerKey<F> {
    fn clone(&self) -> Self {
        PerKey {
            shared: self.shared.clone(),
        }
    }
}

impl<F> fmt::Debug for PerKey<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let breakers = self.shared.breakers.load();
        let mut names: Vec<&str> = breakers.keys().map(|name| &**name).collect();
        names.sort_unstable();
        f.debug_struct("PerKey")
            .field("breakers", &names)
            .finish_non_exhaustive()
    }
}
