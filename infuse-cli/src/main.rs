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
//! Reads go to the documented key layout (nothing is written); changes go through the
//! library's own atomic scripts, so every process of the fleet sees them at once.

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
            (_, true, true) => infuse::Config::redis(self.single_url()),
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

impl Connection {
    /// The URL of the one server (`--redis`, else `$REDIS_URL`, else the default), when
    /// neither Sentinel nor Cluster is given.
    fn single_url(&self) -> String {
        self.redis.clone().unwrap_or_else(|| {
            std::env::var("REDIS_URL")
                .ok()
                .filter(|url| !url.is_empty())
                .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned())
        })
    }

    /// The one server's address, for a probe when the client cannot make sense of it.
    fn probe_target(&self) -> Option<probe::Target> {
        let single = self.redis_sentinel.is_empty() && self.redis_cluster.is_empty();
        single
            .then(|| probe::Target::of(&self.single_url()))
            .flatten()
    }

    /// Every password the options hold (in URLs, as `user:password@` or `?pass=`, and
    /// the Sentinel master's), for scrubbing messages of them.
    fn secrets(&self) -> Vec<String> {
        let urls = std::iter::once(self.single_url())
            .chain(self.redis_sentinel.iter().cloned())
            .chain(self.redis_cluster.iter().cloned());
        let mut secrets: Vec<String> = urls.flat_map(|url| url_secrets(&url)).collect();
        secrets.extend(self.sentinel_master_password.clone());
        secrets.retain(|secret| !secret.is_empty());
        // The longest first, so that no part of one is left when a shorter one is in it.
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        secrets
    }
}

/// The passwords in a Redis URL: `user:password@`, `?pass=` / `?password=` (as written,
/// and percent-decoded).
fn url_secrets(url: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    if let Some((userinfo, _)) = rest.rsplit_once('@') {
        if let Some((_, password)) = userinfo.split_once(':') {
            secrets.push(password.to_owned());
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        for pair in query.split(['&', '#']) {
            if let Some(("pass" | "password", value)) = pair.split_once('=') {
                secrets.push(value.to_owned());
            }
        }
    }
    let decoded: Vec<String> = secrets.iter().filter_map(|s| percent_decode(s)).collect();
    secrets.extend(decoded);
    secrets
}

/// `text` with `%XX` escapes decoded, when it has any and they decode to UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return None;
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Connects to the fleet's Redis; when the client cannot make sense of the server (a
/// web server on the port, TLS on one side only), a plain `PING` says what answers
/// instead. A `rediss://` handshake with a plain server would wait out the whole
/// deadline: after half a second without an answer, the probe runs alongside.
async fn connect(
    connection: &Connection,
    config: infuse::Config,
    cluster: bool,
) -> Result<fleet::Fleet, Failure> {
    const PROBE_WITHIN: Duration = Duration::from_secs(1);
    let namespace = connection.namespace.clone();
    let attempt = fleet::Fleet::connect(config, namespace, cluster);
    let Some(target) = connection.probe_target() else {
        return attempt.await.map_err(in_cli_terms);
    };
    let result = if target.tls {
        tokio::pin!(attempt);
        let verdict = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let answer = probe::ping(&target.address, PROBE_WITHIN).await;
            match probe::mismatch(&target, &answer) {
                Some(explanation) => explanation,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = &mut attempt => result,
            explanation = verdict => return Err(Failure(explanation)),
        }
    } else {
        attempt.await
    };
    match result {
        Ok(fleet) => Ok(fleet),
        Err(failure) => {
            let answer = probe::identify(&target.address, PROBE_WITHIN).await;
            Err(probe::mismatch(&target, &answer).map_or_else(|| in_cli_terms(failure), Failure))
        }
    }
}

/// A library message about the connection options, in the command's words: the option
/// (`--redis`) instead of the library call (`Config::redis("…")`) that it feeds.
fn in_cli_terms(failure: Failure) -> Failure {
    const OPTIONS: [(&str, &str); 7] = [
        ("Config::redis_sentinel", "--redis-sentinel"),
        ("Config::redis_cluster", "--redis-cluster"),
        ("Config::redis", "--redis"),
        ("Config::tls_root_cert", "--tls-ca-cert"),
        (
            "Config::tls_client_cert",
            "--tls-client-cert/--tls-client-key",
        ),
        (
            "Config::sentinel_master_auth",
            "--sentinel-master-user/--sentinel-master-password",
        ),
        ("Config::namespace", "--namespace"),
    ];
    let Some(rest) = failure.0.strip_prefix("invalid setting ") else {
        return failure;
    };
    let Some((call, option)) = OPTIONS.iter().find(|(call, _)| {
        rest.strip_prefix(call)
            .is_some_and(|after| after.starts_with(['(', ':']))
    }) else {
        return failure;
    };
    let after = &rest[call.len()..];
    // The call's arguments, up to the `: ` that ends the origin.
    let reason = match after.strip_prefix(": ") {
        Some(reason) => reason,
        None => after.split_once("): ").map_or(after, |(_, reason)| reason),
    };
    let reason = reason
        .replace("(first argument)", "(--tls-client-cert)")
        .replace("(second argument)", "(--tls-client-key)");
    Failure(format!("{option}: {reason}"))
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
        #[arg(long = "for", value_parser = parse_open_for)]
        duration: Option<Duration>,
    },
    /// Close a breaker (ends a forced state, resets its counters).
    Close { service: String },
    /// Hold a breaker open until `infuse close`: no trial is made.
    ForceOpen { service: String },
    /// Let every call through and count it, but never trip, until `infuse close`.
    Disable { service: String },
    /// Serve a live page of every breaker of the namespace.
    Dashboard(dashboard::Options),
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
        let (config, cluster) = cli.connection.config().map_err(in_cli_terms)?;
        let fleet = connect(&cli.connection, config, cluster).await?;
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
    fn passwords_are_found_in_every_form() {
        assert_eq!(url_secrets("redis://ops:hunter2@host:6379/0"), ["hunter2"]);
        assert_eq!(
            url_secrets("redis+unix:///run/redis.sock?db=1&pass=s%40cret"),
            ["s%40cret", "s@cret"]
        );
        assert_eq!(url_secrets("redis://host?password=x&user=u"), ["x"]);
        assert!(url_secrets("redis://host:6379").is_empty());
        assert!(
            url_secrets("redis://ops@host").is_empty(),
            "a user name is no secret"
        );
    }

    #[test]
    fn library_calls_become_options() {
        let said = |text: &str| in_cli_terms(Failure(text.to_owned())).0;
        assert_eq!(
            said("invalid setting Config::redis(\"redis://h/x\"): redis://h/x: Invalid database number"),
            "--redis: redis://h/x: Invalid database number"
        );
        assert_eq!(
            said("invalid setting Config::redis_cluster([]): the list of cluster nodes is empty"),
            "--redis-cluster: the list of cluster nodes is empty"
        );
        assert_eq!(
            said("invalid setting Config::tls_client_cert: the private key (second argument) does not parse"),
            "--tls-client-cert/--tls-client-key: the private key (--tls-client-key) does not parse"
        );
        assert_eq!(
            said("cannot reach Redis at h:1: refused"),
            "cannot reach Redis at h:1: refused"
        );
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
