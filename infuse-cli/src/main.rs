//! `infuse`: inspect and control a fleet's circuit breakers, straight from Redis.
//!
//! ```text
//! infuse [--redis URL] [--namespace NS] status [SERVICE…] [--json]
//! infuse watch
//! infuse explain SERVICE [--json]
//! infuse dashboard [--listen 127.0.0.1:9090] [--token T]
//! infuse open SERVICE [--for 30m] | close SERVICE | force-open SERVICE | disable SERVICE
//! ```
//!
//! Reads go to the documented key layout (nothing is written); changes go through the
//! library's own atomic scripts, so every process of the fleet sees them at once.

mod control;
mod dashboard;
mod explain;
mod fleet;
mod status;
mod watch;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Inspect and control a fleet's circuit breakers in Redis.
#[derive(Debug, Parser)]
#[command(name = "infuse", version, about, propagate_version = true)]
struct Cli {
    /// The Redis server of the fleet (as `infuse::Config::redis`).
    #[arg(
        long,
        global = true,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    redis: String,
    /// The fleet's namespace (as `infuse::Config::namespace`).
    #[arg(long, global = true, default_value = "default")]
    namespace: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every breaker of the namespace (or the ones named): state, counters, time left.
    Status {
        /// Only these services.
        services: Vec<String>,
        /// One JSON array, one object per breaker.
        #[arg(long)]
        json: bool,
    },
    /// Print the namespace's changes as they happen (until interrupted).
    Watch,
    /// A breaker's recent transitions: when, why, and which process made them.
    Explain {
        service: String,
        /// One JSON object: the breaker and its history.
        #[arg(long)]
        json: bool,
    },
    /// Open a breaker for the whole fleet: calls are rejected until the time is up, then
    /// one trial call decides.
    Open {
        service: String,
        /// How long (e.g. `90s`, `30m`, `2h`; at most 30 days). Default: 60 s.
        #[arg(long = "for", value_parser = parse_duration)]
        duration: Option<Duration>,
    },
    /// Close a breaker (ends a forced state, resets its counters).
    Close { service: String },
    /// Hold a breaker open until `infuse close`: no trial is made.
    ForceOpen { service: String },
    /// Let every call through and count it, but never trip, until `infuse close`.
    Disable { service: String },
    /// Serve a live page of every breaker of the namespace.
    Dashboard {
        /// Where to listen (port 0: any free port, printed at start).
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: std::net::SocketAddr,
        /// Allow open/close from the page for holders of this token (read-only
        /// without it).
        #[arg(long, env = "INFUSE_DASHBOARD_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration: write e.g. 90s, 30m, 2h"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        "ms" => return Ok(Duration::from_millis(n)),
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
            ))
        }
    };
    Ok(Duration::from_secs(seconds))
}

/// What ends a command: a one-line message for stderr.
#[derive(Debug)]
pub(crate) struct Failure(pub(crate) String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure(error.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(Failure(format!("cannot start the runtime: {error}"))),
    };
    let result = runtime.block_on(async {
        let fleet = fleet::Fleet::connect(&cli.redis, &cli.namespace).await?;
        match cli.command {
            Command::Status { services, json } => status::run(&fleet, &services, json).await,
            Command::Watch => watch::run(&fleet).await,
            Command::Explain { service, json } => explain::run(&fleet, &service, json).await,
            Command::Open { service, duration } => {
                control::run(&fleet, &service, control::Action::Open(duration)).await
            }
            Command::Close { service } => {
                control::run(&fleet, &service, control::Action::Close).await
            }
            Command::ForceOpen { service } => {
                control::run(&fleet, &service, control::Action::ForceOpen).await
            }
            Command::Disable { service } => {
                control::run(&fleet, &service, control::Action::Disable).await
            }
            Command::Dashboard { listen, token } => dashboard::run(fleet, listen, token).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => fail(failure),
    }
}

fn fail(failure: Failure) -> ExitCode {
    eprintln!("infuse: {}", failure.0.lines().next().unwrap_or("failed"));
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 weeks").is_err());
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
