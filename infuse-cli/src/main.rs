//! `infuse`: inspect and control a fleet's circuit breakers, straight from Redis.
//!
//! ```text
//! infuse [--redis URL | --redis-sentinel URL… --sentinel-master NAME | --redis-cluster URL…]
//!        [--tls-ca-cert FILE] [--tls-client-cert FILE --tls-client-key FILE]
//!        [--namespace NS] status [SERVICE…] [--json]
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
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: Command,
}

/// Where the fleet's Redis is: the options of `infuse::Config` (one server, Sentinel or
/// Cluster; TLS and credentials).
#[derive(Debug, clap::Args)]
struct Connection {
    /// The Redis server of the fleet, as `infuse::Config::redis` (`rediss://` for TLS)
    /// [default: $REDIS_URL, else redis://127.0.0.1:6379]
    #[arg(long, global = true, value_name = "URL")]
    redis: Option<String>,
    /// The Sentinels of the fleet's Redis, as `infuse::Config::redis_sentinel` (repeat
    /// the option or separate the URLs with commas); needs --sentinel-master.
    #[arg(long, global = true, value_name = "URL", value_delimiter = ',')]
    redis_sentinel: Vec<String>,
    /// The name the Sentinels monitor the master under (`sentinel monitor <name> …`).
    #[arg(long, global = true, value_name = "NAME")]
    sentinel_master: Option<String>,
    /// The master's ACL user, in Sentinel mode (as `Config::sentinel_master_auth`).
    #[arg(long, global = true, value_name = "USER")]
    sentinel_master_user: Option<String>,
    /// The master's password, in Sentinel mode.
    #[arg(
        long,
        global = true,
        value_name = "PASSWORD",
        env = "INFUSE_SENTINEL_MASTER_PASSWORD",
        hide_env_values = true
    )]
    sentinel_master_password: Option<String>,
    /// Nodes of the fleet's Redis Cluster, as `infuse::Config::redis_cluster` (repeat the
    /// option or separate the URLs with commas).
    #[arg(long, global = true, value_name = "URL", value_delimiter = ',')]
    redis_cluster: Vec<String>,
    /// A PEM file of the CA to trust for `rediss://` servers (as `Config::tls_root_cert`).
    #[arg(long, global = true, value_name = "FILE")]
    tls_ca_cert: Option<std::path::PathBuf>,
    /// A PEM client certificate for mutual TLS (as `Config::tls_client_cert`); needs
    /// --tls-client-key.
    #[arg(long, global = true, value_name = "FILE")]
    tls_client_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-client-cert.
    #[arg(long, global = true, value_name = "FILE")]
    tls_client_key: Option<std::path::PathBuf>,
    /// The fleet's namespace (as `infuse::Config::namespace`).
    #[arg(long, global = true, default_value = "default")]
    namespace: String,
}

impl Connection {
    /// The `infuse::Config` these options describe (and whether it is a cluster).
    fn config(&self) -> Result<(infuse::Config, bool), Failure> {
        let mut config = match (
            &self.redis,
            self.redis_sentinel.is_empty(),
            self.redis_cluster.is_empty(),
        ) {
            (Some(_), false, _) | (Some(_), _, false) | (None, false, false) => {
                return Err(Failure(
                    "give one of --redis, --redis-sentinel and --redis-cluster".to_owned(),
                ))
            }
            (None, false, true) => {
                let master = self.sentinel_master.clone().ok_or_else(|| {
                    Failure("--redis-sentinel needs --sentinel-master NAME".to_owned())
                })?;
                infuse::Config::redis_sentinel(self.redis_sentinel.clone(), master)
            }
            (None, true, false) => infuse::Config::redis_cluster(self.redis_cluster.clone()),
            (url, true, true) => infuse::Config::redis(url.clone().unwrap_or_else(|| {
                std::env::var("REDIS_URL")
                    .ok()
                    .filter(|url| !url.is_empty())
                    .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned())
            })),
        };
        if self.redis_sentinel.is_empty()
            && (self.sentinel_master.is_some()
                || self.sentinel_master_user.is_some()
                || self.sentinel_master_password.is_some())
        {
            return Err(Failure(
                "--sentinel-master and its credentials go with --redis-sentinel".to_owned(),
            ));
        }
        if self.sentinel_master_user.is_some() || self.sentinel_master_password.is_some() {
            config = config.sentinel_master_auth(
                self.sentinel_master_user.clone().unwrap_or_default(),
                self.sentinel_master_password.clone().unwrap_or_default(),
            );
        }
        if let Some(path) = &self.tls_ca_cert {
            config = config.tls_root_cert(read_pem("--tls-ca-cert", path)?);
        }
        match (&self.tls_client_cert, &self.tls_client_key) {
            (Some(cert), Some(key)) => {
                config = config.tls_client_cert(
                    read_pem("--tls-client-cert", cert)?,
                    read_pem("--tls-client-key", key)?,
                );
            }
            (None, None) => {}
            _ => {
                return Err(Failure(
                    "--tls-client-cert and --tls-client-key go together".to_owned(),
                ))
            }
        }
        let cluster = !self.redis_cluster.is_empty();
        Ok((config.namespace(self.namespace.clone()), cluster))
    }
}

/// The contents of the PEM file an option names.
fn read_pem(option: &str, path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure(format!("{option} {}: {e}", path.display())))
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
        let (config, cluster) = cli.connection.config()?;
        let namespace = cli.connection.namespace.clone();
        let fleet = fleet::Fleet::connect(config, namespace, cluster).await?;
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
