//! `infuse`: inspect and control a fleet's circuit breakers, straight from Redis.
//!
//! ```text
//! infuse [--redis URL | --redis-sentinel URL… --sentinel-master NAME | --redis-cluster URL…]
//!        [--tls-ca-cert FILE] [--tls-client-cert FILE --tls-client-key FILE]
//!        [--namespace NS] status [SERVICE…] [--json]
//! infuse watch
//! infuse explain SERVICE [--json]
//! infuse dashboard [--listen 127.0.0.1:9090] [--token-file PATH] [--public-read] [--allow-host NAME]
//! infuse open SERVICE [--for 30m] | close SERVICE | force-open SERVICE | disable SERVICE
//! ```
//!
//! A thin layer over `infuse::admin`: reads and changes through the library (changes by
//! its own atomic scripts, so every process of the fleet sees them at once), and the
//! command never becomes a fleet process.

mod connection;
mod control;
mod dashboard;
mod explain;
mod fleet;
mod probe;
mod status;
mod term;
mod watch;

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Inspect and control a fleet's circuit breakers in Redis.
#[derive(Debug, Parser)]
#[command(name = "infuse", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    connection: connection::Connection,
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
        #[arg(long = "for", value_parser = parse_open_for)]
        duration: Option<Duration>,
        #[command(flatten)]
        reason: Reason,
    },
    /// Close a breaker (ends a forced state, resets its counters).
    Close {
        service: String,
        #[command(flatten)]
        reason: Reason,
    },
    /// Hold a breaker open until `infuse close`: no trial is made.
    ForceOpen {
        service: String,
        #[command(flatten)]
        reason: Reason,
    },
    /// Let every call through and count it, but never trip, until `infuse close`.
    Disable {
        service: String,
        #[command(flatten)]
        reason: Reason,
    },
    /// Switch a breaker in or out of shadow mode for the whole fleet: in shadow mode it
    /// trips and records as usual but rejects no call (overrides the `shadow` setting).
    Shadow {
        service: String,
        /// `on` or `off`.
        #[arg(value_parser = parse_switch, action = clap::ArgAction::Set)]
        switch: bool,
        #[command(flatten)]
        reason: Reason,
    },
    /// Serve a live page of every breaker of the namespace.
    Dashboard(dashboard::Options),
}

/// `on` or `off`.
fn parse_switch(text: &str) -> Result<bool, String> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("expected `on` or `off`, found {other:?}")),
    }
}

/// Why an operator changes a breaker: kept in its history with who did it (`user@host`).
#[derive(Debug, clap::Args)]
struct Reason {
    /// Why (kept in the breaker's history, shown by `infuse explain`; at most 200 bytes).
    #[arg(long = "reason", value_name = "TEXT")]
    text: Option<String>,
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

/// A time to open a breaker for: above zero, at most the library's limit (30 days).
fn parse_open_for(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!(
            "{text:?}: a breaker is opened for more than zero; to close it: infuse close SERVICE"
        ));
    }
    if duration > infuse::MAX_OPEN_FOR {
        return Err(format!(
            "{text:?} is longer than 30 days, the most a breaker opens for; to hold it open until closed by hand: infuse force-open SERVICE"
        ));
    }
    Ok(duration)
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
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    let token_source = matches
        .subcommand_matches("dashboard")
        .and_then(|dashboard| dashboard.value_source("token"));
    let secrets = cli.connection.secrets();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return fail(
                Failure(format!("cannot start the runtime: {error}")),
                &secrets,
            )
        }
    };
    let result = runtime.block_on(async {
        let config = cli.connection.config().map_err(connection::in_cli_terms)?;
        let fleet = connection::connect(&cli.connection, config).await?;
        match cli.command {
            Command::Status { services, json } => status::run(&fleet, &services, json).await,
            Command::Watch => watch::run(&fleet).await,
            Command::Explain { service, json } => explain::run(&fleet, &service, json).await,
            Command::Open {
                service,
                duration,
                reason,
            } => {
                control::run(
                    &fleet,
                    &service,
                    control::Action::Open(duration),
                    reason.text,
                )
                .await
            }
            Command::Close { service, reason } => {
                control::run(&fleet, &service, control::Action::Close, reason.text).await
            }
            Command::ForceOpen { service, reason } => {
                control::run(&fleet, &service, control::Action::ForceOpen, reason.text).await
            }
            Command::Disable { service, reason } => {
                control::run(&fleet, &service, control::Action::Disable, reason.text).await
            }
            Command::Shadow {
                service,
                switch,
                reason,
            } => control::shadow(&fleet, &service, switch, reason.text).await,
            Command::Dashboard(options) => dashboard::run(fleet, options, token_source).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => fail(failure, &secrets),
    }
}

/// Prints a failure's first line on stderr: escaped, and without any password of the
/// connection options (whatever quoted it).
fn fail(failure: Failure, secrets: &[String]) -> ExitCode {
    let mut line = failure.0.lines().next().unwrap_or("failed").to_owned();
    for secret in secrets {
        line = line.replace(secret.as_str(), "***");
    }
    eprintln!("infuse: {}", term::clean(&line));
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
        assert_eq!(parse_open_for("30d"), Ok(Duration::from_secs(30 * 86_400)));
        let too_long = parse_open_for("31d").unwrap_err();
        assert!(too_long.contains("infuse force-open SERVICE"), "{too_long}");
        assert!(!too_long.contains("force_open()"), "{too_long}");
        assert!(parse_open_for("0s")
            .unwrap_err()
            .contains("infuse close SERVICE"));
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
