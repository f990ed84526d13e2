//! `infuse watch`: the namespace's changes as they happen, one line each.

use std::collections::HashMap;
use std::io::IsTerminal;

use futures_util::StreamExt;
use infuse::State;

use crate::fleet::Fleet;
use crate::status::human;
use crate::term::clean;
use crate::Failure;

/// Prints every event of the namespace until interrupted (or the connection ends).
pub(crate) async fn run(fleet: &Fleet) -> Result<(), Failure> {
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    // What each service was, to print changes as `from -> to`.
    let mut last: HashMap<String, State> = HashMap::new();
    for service in fleet.services().await? {
        if let Some(record) = fleet.record(&service).await? {
            last.insert(service, record.state);
        }
    }
    let mut pubsub = fleet.subscribe().await?;
    println!(
        "watching namespace {:?} at {} (channel {})",
        fleet.namespace,
        fleet.address(),
        fleet.channel()
    );
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let Ok(payload) = message.get_payload::<String>() else {
            continue;
        };
        let Some((service, snapshot)) = infuse::store::redis::parse_event(&payload) else {
            continue;
        };
        let from = last.insert(service.to_owned(), snapshot.state);
        let change = match from {
            Some(from) if from != snapshot.state => format!("{from} -> {}", snapshot.state),
            _ => snapshot.state.to_string(),
        };
        let mut detail = format!(
            "generation {}, fail {}",
            snapshot.generation, snapshot.fail_counter
        );
        if let Some(left) = snapshot.open_remaining {
            detail.push_str(&format!(", open for {}", human(left)));
        }
        if snapshot.trial_remaining.is_some() {
            detail.push_str(", trial in flight");
        }
        let time = chrono_free_time();
        let line = format!("{time}  {}: {change} ({detail})", clean(service));
        if colour {
            println!("\x1b[{}m{line}\x1b[0m", colour_of(snapshot.state));
        } else {
            println!("{line}");
        }
    }
    Err(Failure(
        "the event subscription ended (Redis closed the connection)".to_owned(),
    ))
}

/// ANSI colour of a state: red open, yellow half-open, magenta forced, grey disabled,
/// green closed.
fn colour_of(state: State) -> &'static str {
    match state {
        State::Open => "31",
        State::HalfOpen => "33",
        State::ForcedOpen => "35",
        State::Disabled => "90",
        _ => "32",
    }
}

/// `HH:MM:SS.mmm` (UTC) of now, without a date crate.
fn chrono_free_time() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ms = now.as_millis() % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}
