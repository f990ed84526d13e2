//! `infuse open | close | force-open | disable | shadow`: fleet-wide changes through the library's
//! own atomic scripts, by [`infuse::admin::Admin`]: the command never becomes a fleet
//! process, so it never shows among the processes that see a breaker.

use std::time::Duration;

use infuse::admin::{operator, Audit, BreakerRow, Control, Record};

use crate::fleet::Fleet;
use crate::status::human;
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

/// Applies `action` to `service`'s breaker, noting who (`user@host`) and `reason` in its
/// history, then prints what changed.
pub(crate) async fn run(
    fleet: &Fleet,
    service: &str,
    action: Action,
    reason: Option<String>,
) -> Result<(), Failure> {
    let audit = Audit::new(&operator(), reason.as_deref().unwrap_or(""));
    println!("{}", apply_audited(fleet, service, action, &audit).await?);
    Ok(())
}

/// Applies `action` to `service`'s breaker, noting who it is (`user@host`); answers with
/// what changed, in one line.
pub(crate) async fn apply(fleet: &Fleet, service: &str, action: Action) -> Result<String, Failure> {
    apply_audited(fleet, service, action, &Audit::new(&operator(), "")).await
}

/// Applies `action` to `service`'s breaker with `audit` in its history; answers with
/// what changed, in one line.
async fn apply_audited(
    fleet: &Fleet,
    service: &str,
    action: Action,
    audit: &Audit,
) -> Result<String, Failure> {
    // Never create a breaker by mistake: only act on one the namespace knows (a record
    // that expired or holds garbage still counts: closing repairs it).
    let before = fleet.known(service).await?;
    let admin = fleet.admin();
    let control = match action {
        Action::Open(Some(duration)) => Control::OpenFor(duration),
        Action::Open(None) => Control::Open,
        Action::Close => Control::Close,
        Action::ForceOpen => Control::ForceOpen,
        Action::Disable => Control::Disable,
    };
    admin.control(service, control, audit).await?;
    let after = admin.breaker(service).await?;
    let mut line = format!(
        "{}: {} -> {} (generation {} -> {})",
        clean(service),
        state_of(&before),
        state_of(&after),
        generation_of(&before),
        generation_of(&after)
    );
    if let Record::Ok(record) = &after.record {
        if let Some(left) = record.open_remaining.filter(|left| !left.is_zero()) {
            line.push_str(&format!(", open for {}", human(left)));
        }
    }
    Ok(line)
}

/// `infuse shadow SERVICE on|off`: switches `service`'s breaker in or out of shadow mode
/// for the whole fleet, noting who (`user@host`) and `reason` in its history.
pub(crate) async fn shadow(
    fleet: &Fleet,
    service: &str,
    on: bool,
    reason: Option<String>,
) -> Result<(), Failure> {
    let audit = Audit::new(&operator(), reason.as_deref().unwrap_or(""));
    let before = fleet.known(service).await?;
    let state = fleet.admin().set_shadow(service, on, &audit).await?;
    let was = match &before.record {
        Record::Ok(record) => switch_text(record.shadow),
        _ => "no record",
    };
    let now = if on { "on" } else { "off" };
    println!(
        "{}: shadow mode {was} -> {now} (state {state}; every process follows within a second)",
        clean(service)
    );
    Ok(())
}

/// The operator's switch, in words.
pub(crate) fn switch_text(switch: Option<bool>) -> &'static str {
    match switch {
        Some(true) => "on",
        Some(false) => "off",
        None => "as configured",
    }
}

fn state_of(row: &BreakerRow) -> String {
    match &row.record {
        Record::Ok(record) => record.state.to_string(),
        Record::Missing => "no record".to_owned(),
        Record::Corrupt(_) => "corrupt record".to_owned(),
    }
}

fn generation_of(row: &BreakerRow) -> String {
    match &row.record {
        Record::Ok(record) => record.generation.to_string(),
        _ => "-".to_owned(),
    }
}
