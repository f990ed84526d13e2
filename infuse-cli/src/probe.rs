//! What answers at the address of `--redis`, when the Redis client cannot say: a web
//! server on the port reads as "Incompatible type - Parse error at 1", and a `rediss://`
//! handshake with a plain Redis server waits for an answer that never comes. A plain-text
//! `PING` tells a Redis server and anything else that speaks apart; a TLS server resets
//! the connection on it, and answers a TLS `ClientHello` instead.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::term::clean;

/// A `redis://` or `rediss://` server address, from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// `host:port` (`[v6]:port`), for connecting and for messages.
    pub(crate) address: String,
    /// `rediss://`.
    pub(crate) tls: bool,
}

impl Target {
    /// The server of `url` (`redis[s]://[user[:password]@]host[:port][/db][?…]`); `None`
    /// for other schemes (a Unix socket has no port to mistake).
    pub(crate) fn of(url: &str) -> Option<Target> {
        let (scheme, rest) = url.split_once("://")?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "redis" => false,
            "rediss" => true,
            _ => return None,
        };
        // The user info ends at the last `@` (a password may hold `/`, `:`, `@`).
        let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']')?;
            (format!("[{host}]"), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port)),
                None => (authority.to_owned(), None),
            }
        };
        let port: u16 = match port {
            Some(port) => port.parse().ok()?,
            None => 6379,
        };
        (!host.is_empty() && host != "[]").then(|| Target {
            address: format!("{host}:{port}"),
            tls,
        })
    }
}

/// What answered a plain-text `PING`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A RESP reply (`+PONG`, `-NOAUTH …`, …): a Redis server speaking plain TCP.
    Redis,
    /// A TLS record (an alert, most likely): a server that wants `rediss://`.
    Tls,
    /// Something else, with its first line (escaped, at most 60 characters).
    Other(String),
    /// Nothing answered, or the connection closed or failed: no verdict.
    Nothing,
}

/// What answers at `address`: a `PING` first, then, when that says nothing, a TLS
/// `ClientHello` (each within `within`).
pub(crate) async fn identify(address: &str, within: Duration) -> Answer {
    match exchange(address, b"PING\r\n", within).await {
        Answer::Nothing => match exchange(address, &CLIENT_HELLO, within).await {
            Answer::Tls => Answer::Tls,
            _ => Answer::Nothing,
        },
        answer => answer,
    }
}

/// Connects to `address`, sends `PING`, and reads the first bytes of the answer (all
/// within `within`).
pub(crate) async fn ping(address: &str, within: Duration) -> Answer {
    exchange(address, b"PING\r\n", within).await
}

/// A TLS 1.2 `ClientHello` with one cipher suite and no extension: any TLS server
/// answers it with a handshake record or an alert, both TLS records.
const CLIENT_HELLO: [u8; 50] = {
    let mut hello = [0u8; 50];
    let head = [
        0x16, 0x03, 0x01, 0x00, 0x2d, 0x01, 0x00, 0x00, 0x29, 0x03, 0x03,
    ];
    let mut i = 0;
    while i < head.len() {
        hello[i] = head[i];
        i += 1;
    }
    // 32 bytes of random (zeros), then: no session id, one suite
    // (ECDHE_RSA_WITH_AES_128_GCM_SHA256), the null compression.
    let tail = [0x00, 0x00, 0x02, 0xc0, 0x2f, 0x01, 0x00];
    let mut j = 0;
    while j < tail.len() {
        hello[43 + j] = tail[j];
        j += 1;
    }
    hello
};

async fn exchange(address: &str, request: &[u8], within: Duration) -> Answer {
    let exchange = async {
        let mut stream = TcpStream::connect(address).await?;
        stream.write_all(request).await?;
        let mut answer = Vec::new();
        let mut buffer = [0u8; 256];
        // Enough to classify: a line, or a TLS record header.
        while answer.len() < 256 && !answer.contains(&b'\n') && !starts_like_tls(&answer) {
            let n = stream.read(&mut buffer).await?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..n]);
        }
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(within, exchange).await {
        Ok(Ok(answer)) => classify(&answer),
        _ => Answer::Nothing,
    }
}

fn starts_like_tls(bytes: &[u8]) -> bool {
    // A record of type alert (21) or handshake (22), version 3.x.
    bytes.len() >= 2 && matches!(bytes[0], 0x15 | 0x16) && bytes[1] == 0x03
}

fn classify(answer: &[u8]) -> Answer {
    if answer.is_empty() {
        return Answer::Nothing;
    }
    if starts_like_tls(answer) {
        return Answer::Tls;
    }
    let line = answer.split(|&b| b == b'\n').next().unwrap_or_default();
    let resp = line.first().is_some_and(|b| b"+-:$*_%>#,(=!~|".contains(b));
    if resp && line.ends_with(b"\r") {
        return Answer::Redis;
    }
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\r');
    let mut shown: String = text.chars().take(60).collect();
    if text.chars().count() > 60 {
        shown.push('…');
    }
    Answer::Other(clean(&shown).into_owned())
}

/// The operator's explanation of `answer` from `target`, when it is not what the URL
/// expects; `None` when the answer fits (or says nothing).
pub(crate) fn mismatch(target: &Target, answer: &Answer) -> Option<String> {
    let address = &target.address;
    match (answer, target.tls) {
        (Answer::Other(text), _) => Some(format!(
            "{address} is not a Redis server (it answered {text:?} to PING); check the host and port of --redis"
        )),
        (Answer::Redis, true) => Some(format!(
            "{address} speaks plain Redis, not TLS: use a redis:// URL (or enable TLS on the server, `tls-port`)"
        )),
        (Answer::Tls, false) => Some(format!(
            "{address} speaks TLS: use a rediss:// URL (with --tls-ca-cert FILE for a private CA)"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_from_urls() {
        let target = |url| Target::of(url).map(|t| (t.address, t.tls));
        assert_eq!(
            target("redis://127.0.0.1:6379/0"),
            Some(("127.0.0.1:6379".into(), false))
        );
        assert_eq!(
            target("rediss://u:p@/ss@x@cache.internal:6380?protocol=resp3"),
            Some(("cache.internal:6380".into(), true))
        );
        assert_eq!(
            target("redis://localhost"),
            Some(("localhost:6379".into(), false))
        );
        assert_eq!(
            target("redis://[::1]:7000/2"),
            Some(("[::1]:7000".into(), false))
        );
        assert_eq!(target("redis+unix:///tmp/redis.sock"), None);
        assert_eq!(target("redis://:6379"), None);
        assert_eq!(target("redis://host:port"), None);
    }

    #[test]
    fn the_client_hello_is_one_well_formed_record() {
        let record_len = usize::from(u16::from_be_bytes([CLIENT_HELLO[3], CLIENT_HELLO[4]]));
        assert_eq!(record_len + 5, CLIENT_HELLO.len());
        let handshake_len = usize::from(u16::from_be_bytes([CLIENT_HELLO[7], CLIENT_HELLO[8]]));
        assert_eq!(handshake_len + 4, record_len);
        assert_eq!(
            &CLIENT_HELLO[43..],
            &[0x00, 0x00, 0x02, 0xc0, 0x2f, 0x01, 0x00]
        );
    }

    #[test]
    fn answers_are_told_apart() {
        assert_eq!(classify(b"+PONG\r\n"), Answer::Redis);
        assert_eq!(
            classify(b"-NOAUTH Authentication required.\r\n"),
            Answer::Redis
        );
        assert_eq!(
            classify(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]),
            Answer::Tls
        );
        assert_eq!(
            classify(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"),
            Answer::Other("HTTP/1.1 400 Bad Request".into())
        );
        assert_eq!(
            classify(b"SSH-2.0-OpenSSH_9.2\x1b[2J\r\n"),
            Answer::Other("SSH-2.0-OpenSSH_9.2\\u{1b}[2J".into())
        );
        assert_eq!(classify(b""), Answer::Nothing);
        let redis = Target::of("redis://h:1").unwrap();
        let rediss = Target::of("rediss://h:1").unwrap();
        assert!(mismatch(&redis, &Answer::Redis).is_none());
        assert!(mismatch(&rediss, &Answer::Tls).is_none());
        assert!(mismatch(&rediss, &Answer::Redis)
            .unwrap()
            .contains("use a redis:// URL"));
        assert!(mismatch(&redis, &Answer::Tls)
            .unwrap()
            .contains("use a rediss:// URL"));
        assert!(mismatch(&redis, &Answer::Nothing).is_none());
    }
}
