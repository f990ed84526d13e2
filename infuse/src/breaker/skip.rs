//! Bypassing breakers for a scope (infuse's `skip_breaker=True`).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

tokio::task_local! {
    static SKIP: ();
}

/// How many `skip_breaker` scopes exist in the process: while none does, a guarded call
/// checks this one counter instead of looking up a task-local.
static SCOPES: AtomicUsize = AtomicUsize::new(0);

/// Runs `future` with every breaker bypassed for the calls made inside it: they run
/// without being checked or counted. Useful for health checks that must reach a service
/// even while its breaker is open.
///
/// The bypass follows the future, not spawned tasks: a `tokio::spawn` inside does not
/// inherit it.
///
/// ```
/// # async fn ping() -> Result<(), infuse::BreakerError> { Ok(()) }
/// # async fn demo() {
/// let healthy = infuse::skip_breaker(ping()).await.is_ok();
/// # }
/// ```
pub async fn skip_breaker<F: Future>(future: F) -> F::Output {
    let _scope = Scope::enter();
    SKIP.scope((), future).await
}

/// Counts one live `skip_breaker` scope.
struct Scope;

impl Scope {
    fn enter() -> Scope {
        SCOPES.fetch_add(1, Ordering::AcqRel);
        Scope
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        SCOPES.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether the current task is inside [`skip_breaker`].
#[inline(always)]
pub fn is_skipping() -> bool {
    SCOPES.load(Ordering::Relaxed) != 0 && in_scope()
}

#[cold]
#[inline(never)]
fn in_scope() -> bool {
    SKIP.try_with(|_| ()).is_ok()
}
