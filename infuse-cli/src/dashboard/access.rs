//! Who may see and change what through the dashboard.
//!
//! - **The `Host` header** names the listen address (`localhost` too on loopback), or a
//!   name given with `--allow-host`. A DNS-rebinding page reaches the dashboard under its
//!   own name (`evil.example` resolving to 127.0.0.1): refused with `421`, so it cannot
//!   read what the operator's browser can. IP literals and `localhost` are checked
//!   without their port (a port forward changes it; a rebinding needs a name).
//! - **The token** (when set) is required for changes, and for reads too unless
//!   `--public-read`: as `Authorization: Bearer <token>`, compared in constant time.

use std::net::{IpAddr, SocketAddr};

use axum::http::{header, HeaderMap, StatusCode};

/// A refusal: its status and the reason for the client.
pub(crate) type Refusal = (StatusCode, String);

/// The dashboard's access rules.
#[derive(Debug)]
pub(crate) struct Access {
    listen: SocketAddr,
    /// `--allow-host` names, lower case: `name` (any port) or `name:port`.
    allowed: Vec<String>,
    token: Option<String>,
    public_read: bool,
}

impl Access {
    pub(crate) fn new(
        listen: SocketAddr,
        allowed: &[String],
        token: Option<String>,
        public_read: bool,
    ) -> Access {
        Access {
            listen,
            allowed: allowed
                .iter()
                .map(|name| name.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            token,
            public_read,
        }
    }

    pub(crate) fn writable(&self) -> bool {
        self.token.is_some()
    }

    pub(crate) fn reads_need_token(&self) -> bool {
        self.token.is_some() && !self.public_read
    }

    /// Whether the request's `Host` names this dashboard.
    pub(crate) fn check_host(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
            return Err((
                StatusCode::BAD_REQUEST,
                "a request needs a Host header".to_owned(),
            ));
        };
        if self.allows(host) {
            return Ok(());
        }
        Err((
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "Host {host:?} is not this dashboard's address ({}); to serve it under that name, start it with --allow-host NAME",
                self.listen
            ),
        ))
    }

    fn allows(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let (name, port) = split_host(&host);
        let name = name.trim_end_matches('.');
        if let Ok(ip) = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return self.listen.ip().is_unspecified() || ip == self.listen.ip();
        }
        if name == "localhost"
            && (self.listen.ip().is_loopback() || self.listen.ip().is_unspecified())
        {
            return true;
        }
        self.allowed.iter().any(|allowed| {
            let (allowed_name, allowed_port) = split_host(allowed);
            allowed_name == name && (allowed_port.is_none() || allowed_port == port)
        })
    }

    /// Whether a read (the breakers, the events, the configuration) may go on.
    pub(crate) fn check_read(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if !self.reads_need_token() || self.bearer_matches(headers) {
            return Ok(());
        }
        Err((
            StatusCode::UNAUTHORIZED,
            "this dashboard needs its token to read (Authorization: Bearer <token>), as it was started without --public-read".to_owned(),
        ))
    }

    /// Whether a change (open, close) may go on.
    pub(crate) fn check_write(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if self.token.is_none() {
            return Err((
                StatusCode::FORBIDDEN,
                "read-only dashboard: start it with a token ($INFUSE_DASHBOARD_TOKEN or --token-file) to allow changes".to_owned(),
            ));
        }
        if self.bearer_matches(headers) {
            return Ok(());
        }
        Err((
            StatusCode::UNAUTHORIZED,
            "a valid token is required (Authorization: Bearer <token>)".to_owned(),
        ))
    }

    fn bearer_matches(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return false;
        };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
    }
}

/// `name` and `port` of `name:port`, `[v6]:port`, `name`, `[v6]`.
fn split_host(host: &str) -> (&str, Option<&str>) {
    if host.starts_with('[') {
        return match host.split_once("]:") {
            Some((name, port)) => (&host[..name.len() + 1], Some(port)),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, Some(port)),
        _ => (host, None),
    }
}

/// Compares without leaking, through timing, how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(listen: &str, allowed: &[&str]) -> Access {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        Access::new(listen.parse().unwrap(), &allowed, None, false)
    }

    #[test]
    fn the_host_must_name_the_dashboard() {
        let loopback = access("127.0.0.1:9090", &[]);
        for host in [
            "127.0.0.1:9090",
            "127.0.0.1",
            "localhost:9090",
            "LOCALHOST:8080",
            "localhost.",
        ] {
            assert!(loopback.allows(host), "{host}");
        }
        for host in [
            "evil.example:9090",
            "127.0.0.2:9090",
            "[::1]:9090",
            "localhost.evil.example",
            "",
        ] {
            assert!(!loopback.allows(host), "{host}");
        }
        let v6 = access("[::1]:9090", &[]);
        assert!(v6.allows("[::1]:9090") && v6.allows("localhost:9090"));
        assert!(!v6.allows("127.0.0.1:9090"));
        let everywhere = access("0.0.0.0:9090", &["dash.internal", "Proxy.Example:8443"]);
        for host in [
            "10.1.2.3:9090",
            "[fe80::1]:9090",
            "localhost",
            "dash.internal",
            "dash.internal:80",
            "proxy.example:8443",
        ] {
            assert!(everywhere.allows(host), "{host}");
        }
        for host in ["proxy.example:9090", "proxy.example", "evil.example"] {
            assert!(!everywhere.allows(host), "{host}");
        }
        let public = access("10.0.0.5:9090", &[]);
        assert!(!public.allows("localhost:9090"), "not a loopback listener");
    }

    #[test]
    fn reads_and_changes_follow_the_token() {
        let mut with = HeaderMap::new();
        with.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        let mut wrong = HeaderMap::new();
        wrong.insert(header::AUTHORIZATION, "Bearer s3cre".parse().unwrap());
        let none = HeaderMap::new();
        let listen = "127.0.0.1:1".parse().unwrap();

        let open = Access::new(listen, &[], None, false);
        assert!(open.check_read(&none).is_ok());
        assert_eq!(
            open.check_write(&with).unwrap_err().0,
            StatusCode::FORBIDDEN
        );

        let guarded = Access::new(listen, &[], Some("s3cret".into()), false);
        assert_eq!(
            guarded.check_read(&none).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            guarded.check_read(&wrong).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        assert!(guarded.check_read(&with).is_ok() && guarded.check_write(&with).is_ok());

        let public = Access::new(listen, &[], Some("s3cret".into()), true);
        assert!(public.check_read(&none).is_ok());
        assert_eq!(
            public.check_write(&none).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
    }
}
