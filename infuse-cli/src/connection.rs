//! Where the fleet's Redis is, from the command line, and the connection to it: the
//! options of `infuse::Config`, what answers when the client cannot make sense of the
//! server, messages in the options' words, and the passwords to keep out of them.

use std::time::Duration;

use crate::{fleet, probe, Failure};

/// Where the fleet's Redis is: the options of `infuse::Config` (one server, Sentinel or
/// Cluster; TLS and credentials).
#[derive(Debug, clap::Args)]
pub(crate) struct Connection {
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
    /// The `infuse::Config` these options describe.
    pub(crate) fn config(&self) -> Result<infuse::Config, Failure> {
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
        Ok(config.namespace(self.namespace.clone()))
    }

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
    pub(crate) fn secrets(&self) -> Vec<String> {
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
pub(crate) async fn connect(
    connection: &Connection,
    config: infuse::Config,
) -> Result<fleet::Fleet, Failure> {
    const PROBE_WITHIN: Duration = Duration::from_secs(1);
    let namespace = connection.namespace.clone();
    let attempt = fleet::Fleet::connect(config, namespace);
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
pub(crate) fn in_cli_terms(failure: Failure) -> Failure {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
