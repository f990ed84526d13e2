//! Settings of fleet mode, their limits, and keeping the Redis password out of messages.

use std::fmt;
use std::time::Duration;

use crate::core::{check_duration, InitError};

/// What calls do while Redis is unavailable (killed, hung, partitioned), or while one
/// breaker's keys hold garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UnavailablePolicy {
    /// Each process runs its breakers in memory, seeded from the last shared view (an
    /// open breaker stays open for the time it had left). Losing Redis loses fleet-wide
    /// coordination, not protection. The default.
    #[default]
    LocalFallback,
    /// Calls go through unchecked, as if every breaker were closed.
    FailOpen,
    /// Calls are rejected, as if every breaker were open.
    FailClosed,
}

impl fmt::Display for UnavailablePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnavailablePolicy::LocalFallback => "local fallback breakers",
            UnavailablePolicy::FailOpen => "fail open (calls pass unchecked)",
            UnavailablePolicy::FailClosed => "fail closed (calls rejected)",
        })
    }
}

/// Which Redis deployment fleet mode talks to.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Topology {
    /// One server (`redis://` or `rediss://`): [`Config::redis`](crate::Config::redis).
    Single { url: String },
    /// The master the Sentinels name: [`Config::redis_sentinel`](crate::Config::redis_sentinel).
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
    /// A Redis Cluster, found from any of its nodes:
    /// [`Config::redis_cluster`](crate::Config::redis_cluster).
    Cluster { nodes: Vec<String> },
}

impl Topology {
    /// Every URL it holds (each may carry a password).
    pub(crate) fn urls(&self) -> &[String] {
        match self {
            Topology::Single { url } => std::slice::from_ref(url),
            Topology::Sentinel { sentinels, .. } => sentinels,
            Topology::Cluster { nodes } => nodes,
        }
    }

    /// The `Config` call that set it, password-free (for errors).
    pub(crate) fn origin(&self) -> String {
        let list = |urls: &[String]| {
            urls.iter()
                .map(|url| format!("{:?}", redact(url)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Topology::Single { url } => format!("Config::redis({:?})", redact(url)),
            Topology::Sentinel { sentinels, master } => {
                format!("Config::redis_sentinel([{}], {master:?})", list(sentinels))
            }
            Topology::Cluster { nodes } => format!("Config::redis_cluster([{}])", list(nodes)),
        }
    }

    /// `text` (an error of the Redis client) without any password of these URLs.
    pub(crate) fn scrub(&self, text: &str) -> String {
        self.urls()
            .iter()
            .fold(text.to_owned(), |text, url| scrub(&text, url))
    }
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |urls: &[String]| urls.iter().map(|u| redact(u)).collect::<Vec<_>>();
        match self {
            Topology::Single { url } => f.debug_tuple("Single").field(&redact(url)).finish(),
            Topology::Sentinel { sentinels, master } => f
                .debug_struct("Sentinel")
                .field("sentinels", &redacted(sentinels))
                .field("master", master)
                .finish(),
            Topology::Cluster { nodes } => {
                f.debug_tuple("Cluster").field(&redacted(nodes)).finish()
            }
        }
    }
}

/// TLS material beyond the system's roots (PEM), for `rediss://` URLs.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct TlsMaterial {
    /// The CA that signed the servers' certificates (instead of the system's roots).
    pub(crate) root_cert: Option<Vec<u8>>,
    /// The client's certificate chain and private key (mutual TLS).
    pub(crate) client_cert: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsMaterial {
    pub(crate) fn is_empty(&self) -> bool {
        self.root_cert.is_none() && self.client_cert.is_none()
    }
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |yes: bool| if yes { "<set>" } else { "<none>" };
        f.debug_struct("TlsMaterial")
            .field("root_cert", &set(self.root_cert.is_some()))
            .field("client_cert", &set(self.client_cert.is_some()))
            .finish()
    }
}

/// Credentials of the master in Sentinel mode (the Sentinels' own are in their URLs).
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct MasterAuth {
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) db: i64,
}

impl fmt::Debug for MasterAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterAuth")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .finish()
    }
}

/// Settings of fleet mode (see [`Config::redis`](crate::Config::redis)).
#[derive(Clone)]
pub(crate) struct RedisOptions {
    pub(crate) topology: Topology,
    pub(crate) tls: TlsMaterial,
    pub(crate) master_auth: MasterAuth,
    pub(crate) namespace: String,
    pub(crate) policy: UnavailablePolicy,
    pub(crate) call_timeout: Duration,
    pub(crate) admin_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) resync_interval: Duration,
    pub(crate) key_ttl: Duration,
    pub(crate) start_degraded: bool,
}

/// The upper bounds of fleet settings (documented on each `Config` method).
pub(crate) mod limits {
    use std::time::Duration;

    pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(60);
    pub(crate) const ADMIN_TIMEOUT: Duration = Duration::from_secs(5 * 60);
    pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
    pub(crate) const RESYNC_INTERVAL: Duration = Duration::from_secs(60 * 60);
    pub(crate) const KEY_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            topology: Topology::Single { url: String::new() },
            tls: TlsMaterial::default(),
            master_auth: MasterAuth::default(),
            namespace: "default".to_owned(),
            policy: UnavailablePolicy::LocalFallback,
            call_timeout: Duration::from_millis(25),
            admin_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            resync_interval: Duration::from_secs(1),
            key_ttl: Duration::from_secs(24 * 60 * 60),
            start_degraded: false,
        }
    }
}

impl RedisOptions {
    /// Checks every setting, naming the `Config` method of the first invalid one.
    pub(crate) fn validate(&self) -> Result<(), InitError> {
        let invalid = |origin: &str, reason: String| InitError::InvalidSetting {
            origin: origin.to_owned(),
            reason,
        };
        let origin = self.topology.origin();
        match &self.topology {
            Topology::Sentinel { sentinels, .. } if sentinels.is_empty() => {
                return Err(invalid(&origin, "the list of Sentinel addresses is empty; give at least one `redis://host:port` of a Sentinel (26379 by default), better three".into()));
            }
            Topology::Sentinel { master, .. } if master.is_empty() => {
                return Err(invalid(&origin, "the master name is empty; give the name the Sentinels monitor (`sentinel monitor <name> …` in their configuration)".into()));
            }
            Topology::Cluster { nodes } if nodes.is_empty() => {
                return Err(invalid(&origin, "the list of cluster nodes is empty; give at least one `redis://host:port` of a node of the cluster (the client discovers the others)".into()));
            }
            _ => {}
        }
        if self.namespace.is_empty() || self.namespace.contains(['{', '}', '/']) {
            return Err(invalid(
                "Config::namespace",
                "the namespace must be non-empty and must not contain `{` or `}` (reserved for Redis Cluster hash tags) or `/` (it separates the namespace from the service in keys)".into(),
            ));
        }
        for (origin, name, value, max) in [
            (
                "Config::redis_call_timeout",
                "redis_call_timeout",
                self.call_timeout,
                limits::CALL_TIMEOUT,
            ),
            (
                "Config::redis_admin_timeout",
                "redis_admin_timeout",
                self.admin_timeout,
                limits::ADMIN_TIMEOUT,
            ),
            (
                "Config::redis_connect_timeout",
                "redis_connect_timeout",
                self.connect_timeout,
                limits::CONNECT_TIMEOUT,
            ),
            (
                "Config::resync_interval",
                "resync_interval",
                self.resync_interval,
                limits::RESYNC_INTERVAL,
            ),
            ("Config::key_ttl", "key_ttl", self.key_ttl, limits::KEY_TTL),
        ] {
            check_duration(name, value, max).map_err(|reason| invalid(origin, reason))?;
        }
        Ok(())
    }
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("topology", &self.topology)
            .field("tls", &self.tls)
            .field("master_auth", &self.master_auth)
            .field("namespace", &self.namespace)
            .field("policy", &self.policy)
            .field("call_timeout", &self.call_timeout)
            .field("admin_timeout", &self.admin_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("resync_interval", &self.resync_interval)
            .field("key_ttl", &self.key_ttl)
            .field("start_degraded", &self.start_degraded)
            .finish()
    }
}

/// The URL with its credentials masked: `redis://user:***@host/0`,
/// `redis+unix:///run/redis.sock?pass=***`.
///
/// The user info ends at the *last* `@` of the URL, wherever a `/`, `:` or `@` stands in
/// the password (unencoded, a password may hold any of them); the user name, if any, is
/// kept. When in doubt more is masked, never less.
pub(crate) fn redact(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let Some(at) = rest.rfind('@') else {
        return format!("{scheme}{}", mask_query(rest));
    };
    let userinfo = &rest[..at];
    let masked = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{scheme}{masked}{}", mask_query(&rest[at..]))
}

/// The keys of a URL's query that hold a password (`redis+unix://…?pass=…`).
const PASSWORD_KEYS: [&str; 2] = ["pass", "password"];

/// The values of `PASSWORD_KEYS` in the query of `after_userinfo` (the URL past its
/// user info) masked.
fn mask_query(after_userinfo: &str) -> String {
    let Some((before, query)) = after_userinfo.split_once('?') else {
        return after_userinfo.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if PASSWORD_KEYS.contains(&key) => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{before}?{}", pairs.join("&"))
}

/// Text that may quote `url` (an error of the Redis client), with the URL and its
/// password replaced by their redacted forms.
pub(crate) fn scrub(text: &str, url: &str) -> String {
    let mut text = text.replace(url, &redact(url));
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (userinfo, after) = match rest.rsplit_once('@') {
        Some((userinfo, after)) => (Some(userinfo), after),
        None => (None, rest),
    };
    if let Some(userinfo) = userinfo {
        let secret = userinfo
            .split_once(':')
            .map_or(userinfo, |(_, password)| password);
        if !secret.is_empty() {
            text = text.replace(secret, "***");
        }
    }
    if let Some((_, query)) = after.split_once('?') {
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some((key, secret)) if PASSWORD_KEYS.contains(&key) && !secret.is_empty() => {
                    text = text.replace(secret, "***");
                }
                _ => {}
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORDS: &[&str] = &[
        "secret",
        "pa/ss",
        "p@ss",
        "pa:ss",
        "pa%2Fss",
        "pässwörd✓",
        "//@@::",
        "a/b@c:d",
        "p?ss#word",
    ];

    #[test]
    fn no_password_shape_leaks() {
        for password in PASSWORDS {
            for url in [
                format!("redis://:{password}@host:6379/0"),
                format!("redis://user:{password}@host/1"),
                format!("rediss://admin:{password}@10.0.0.1:6380"),
            ] {
                let redacted = redact(&url);
                assert!(!redacted.contains(password), "{url} -> {redacted}");
                assert!(redacted.contains(":***@"), "{url} -> {redacted}");
                assert!(
                    redacted.ends_with(url.rsplit_once('@').unwrap().1),
                    "{redacted}"
                );
                let scrubbed = scrub(&format!("failed to parse {url}: bad"), &url);
                assert!(!scrubbed.contains(password), "{scrubbed}");
            }
        }
    }

    #[test]
    fn users_and_hosts_are_kept() {
        assert_eq!(
            redact("redis://:secret@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(
            redact("redis://user:secret@host/1"),
            "redis://user:***@host/1"
        );
        assert_eq!(redact("redis://:pa/ss@host/0"), "redis://:***@host/0");
        assert_eq!(redact("redis://token@host/0"), "redis://***@host/0");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact(""), "");
    }

    #[test]
    fn a_password_in_the_query_is_masked_too() {
        let url = "redis+unix:///run/redis.sock?db=1&pass=hunter2";
        assert_eq!(redact(url), "redis+unix:///run/redis.sock?db=1&pass=***");
        assert_eq!(
            redact("redis://u:p@host/0?password=hunter2&protocol=resp3"),
            "redis://u:***@host/0?password=***&protocol=resp3"
        );
        let scrubbed = scrub(&format!("{url}: Invalid database number (hunter2)"), url);
        assert!(!scrubbed.contains("hunter2"), "{scrubbed}");
        let options = RedisOptions {
            topology: Topology::Single { url: url.into() },
            ..RedisOptions::default()
        };
        let debug = format!("{:?}", crate::Config::redis(url));
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!format!("{options:?}").contains("hunter2"));
    }

    #[test]
    fn debug_never_shows_the_password() {
        let options = RedisOptions {
            topology: Topology::Single {
                url: "redis://u:pa/ss@host/0".into(),
            },
            ..RedisOptions::default()
        };
        let debug = format!("{options:?}");
        assert!(!debug.contains("pa/ss"), "{debug}");
        assert!(debug.contains("redis://u:***@host/0"), "{debug}");
        let options = RedisOptions {
            topology: Topology::Sentinel {
                sentinels: vec!["redis://:s3cret@h1:26379".into(), "redis://h2".into()],
                master: "mymaster".into(),
            },
            master_auth: MasterAuth {
                username: Some("app".into()),
                password: Some("m4ster".into()),
                db: 0,
            },
            tls: TlsMaterial {
                root_cert: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
                client_cert: Some((b"cert".to_vec(), b"PRIVATE KEY".to_vec())),
            },
            ..RedisOptions::default()
        };
        let debug = format!("{options:?}");
        for secret in ["s3cret", "m4ster", "BEGIN", "PRIVATE"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(debug.contains("redis://:***@h1:26379"), "{debug}");
        let error = RedisOptions {
            topology: Topology::Cluster { nodes: vec![] },
            ..RedisOptions::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(error.contains("Config::redis_cluster([])"), "{error}");
        assert!(error.contains("empty"), "{error}");
    }

    #[test]
    fn every_timeout_has_a_maximum() {
        let options = RedisOptions {
            call_timeout: Duration::MAX,
            ..RedisOptions::default()
        };
        let error = options.validate().unwrap_err().to_string();
        assert!(error.contains("Config::redis_call_timeout"), "{error}");
        assert!(error.contains("exceeds the maximum of 1m"), "{error}");
        let options = RedisOptions {
            key_ttl: Duration::ZERO,
            ..RedisOptions::default()
        };
        let error = options.validate().unwrap_err().to_string();
        assert!(
            error.contains("key_ttl must be greater than zero"),
            "{error}"
        );
    }
}
