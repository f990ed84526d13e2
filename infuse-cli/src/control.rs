//! `infuse open | close | force-open | disable`: fleet-wide changes through the library's
//! own atomic scripts.

use std::time::Duration;

use crate::fleet::Fleet;
use crate::status::{human, unknown};
use crate::term::clean;
use crate::Failure;

/// What to do to a breaker.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action {
    /// Open for a time (default: the breaker's `reset_timeout` as this command knows it,
    /// infuse's default of 60 s).
    Open(Option<Duration>),
    Close,
    ForceOpen,
    Disable,
}

/// Applies `action` to `service`'s breaker, then prints what changed.
pub(crate) async fn run(fleet: &Fleet, service: &str, action: Action) -> Result<(), Failure> {
    println!("{}", apply(fleet, service, action).await?);
    Ok(())
}

/// Applies `action` to `service`'s breaker; answers with what changed, in one line.
pub(crate) async fn apply(fleet: &Fleet, service: &str, action: Action) -> Result<String, Failure> {
    // Never create a breaker by mistake: only act on one the namespace has.
    let Some(before) = fleet.record(service).await? else {
        return Err(unknown(fleet, service, &fleet.services().await?));
    };
    let registry = fleet.registry().await?;
    let breaker = registry.try_breaker(service)?;
    match action {
        Action::Open(Some(duration)) => breaker.open_for(duration).await?,
        Action::Open(None) => breaker.open().await?,
        Action::Close => breaker.close().await?,
        Action::ForceOpen => breaker.force_open().await?,
        Action::Disable => breaker.disable().await?,
    }
    let after = fleet
        .record(service)
        .await?
        .ok_or_else(|| Failure(format!("{service}: the record vanished after the change")))?;
    let mut line = format!(
        "{}: {} -> {} (generation {} -> {})",
        clean(service),
        before.state,
        after.state,
        before.generation,
        after.generation
    );
    if let Some(left) = after.open_remaining {
        line.push_str(&format!(", open for {}", human(left)));
    }
    Ok(line)
}
