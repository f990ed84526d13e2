//! `infuse watch`: the namespace's changes as they happen, one line each.

use std::collections::HashMap;
use std::io::IsTerminal;

use infuse::admin::{Change, Record};
use infuse::State;

use crate::fleet::Fleet;
use crate::status::human;
use crate::term::clean;
use crate::Failure;

/// Prints every event of the namespace until interrupted. When Redis goes away (a
/// restart, a broken connection) it says so, subscribes again by itself, and says when
/// it is back: changes made in between are not printed, but the next ones compare
/// with the states re-read then.
pub(crate) async fn run(fleet: &Fleet) -> Result<(), Failure> {
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut changes = fleet.admin().changes().await?;
    // What each service was, to print changes as `from -> to`.
    let mut last = states(fleet).await?;
    println!(
        "watching namespace {:?} at {} (channel {})",
        fleet.namespace,
        fleet.address(),
        clean(changes.channel())
    );
    loop {
        let (service, snapshot) = match changes.next().await {
            Change::Breaker { service, snapshot } => (service, snapshot),
            Change::Disconnected { reason } => {
                println!(
                    "{}  lost the connection to Redis ({}); reconnecting",
                    chrono_free_time(),
                    clean(&reason)
                );
                continue;
            }
            Change::Reconnected { after } => {
                println!(
                    "{}  reconnected to Redis after {} (changes in between are not shown)",
                    chrono_free_time(),
                    human(after)
                );
                if let Ok(states) = states(fleet).await {
                    last = states;
                }
                continue;
            }
            _ => continue,
        };
        let from = last.insert(service.clone(), snapshot.state);
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
        let line = format!("{time}  {}: {change} ({detail})", clean(&service));
        if colour {
            println!("\x1b[{}m{line}\x1b[0m", colour_of(snapshot.state));
        } else {
            println!("{line}");
        }
    }
}

/// The state of each breaker with a readable record.
async fn states(fleet: &Fleet) -> Result<HashMap<String, State>, Failure> {
    Ok(fleet
        .admin()
        .breakers()
        .await?
        .breakers
        .into_iter()
        .filter_map(|row| match row.record {
            Record::Ok(record) => Some((row.service, record.state)),
            _ => None,
        })
        .collect())
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
