//! A real HTTP downstream on loopback, and a minimal client for it: enough HTTP/1.1 to
//! show what reaches a target through a breaker, and that a timed-out call really drops
//! its connection. Written on tokio alone, to keep the test build lean.
//!
//! Paths choose the behaviour: `/ok`, `/slow/<ms>` (answers 200 after a delay),
//! `/hang` (never answers), `/flaky` (alternates 500 and 200, starting with 500: a 50 %
//! failure rate that never fails twice in a row).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the downstream saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Requests that reached it.
    pub requests: AtomicU64,
    /// Requests whose client closed the connection before the answer.
    pub dropped: AtomicU64,
    flaky: AtomicU64,
}

/// A downstream HTTP server on a free loopback port; stops when dropped.
pub struct Downstream {
    addr: SocketAddr,
    seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl Downstream {
    /// Starts a server.
    pub async fn start() -> Downstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let seen = Arc::new(Seen::default());
        let task = tokio::spawn(serve(listener, seen.clone()));
        Downstream { addr, seen, task }
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests that reached the server so far.
    pub fn requests(&self) -> u64 {
        self.seen.requests.load(Ordering::SeqCst)
    }

    /// Requests whose connection the client dropped before the answer.
    pub fn dropped(&self) -> u64 {
        self.seen.dropped.load(Ordering::SeqCst)
    }
}

impl Drop for Downstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, seen: Arc<Seen>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(answer(stream, seen.clone()));
    }
}

async fn answer(mut stream: TcpStream, seen: Arc<Seen>) {
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let text = String::from_utf8_lossy(&request);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (delay, status) = match path.as_str() {
        "/ok" => (Some(Duration::ZERO), 200),
        "/hang" => (None, 200),
        "/flaky" => {
            let n = seen.flaky.fetch_add(1, Ordering::SeqCst);
            (
                Some(Duration::ZERO),
                if n.is_multiple_of(2) { 500 } else { 200 },
            )
        }
        other => match other.strip_prefix("/slow/").and_then(|ms| ms.parse().ok()) {
            Some(ms) => (Some(Duration::from_millis(ms)), 200),
            None => (Some(Duration::ZERO), 404),
        },
    };
    // Wait for the answer's time while watching the connection: a client that gives up
    // closes it, and the read sees the end.
    let closed = async {
        let mut byte = [0u8; 1];
        loop {
            match stream.read(&mut byte).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let wait = async {
        match delay {
            Some(delay) => tokio::time::sleep(delay).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = closed => {
            seen.dropped.fetch_add(1, Ordering::SeqCst);
            return;
        }
        () = wait => {}
    }
    let reason = if status == 200 { "OK" } else { "Error" };
    let response =
        format!("HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let _ = stream.write_all(response.as_bytes()).await;
}

/// `GET path` on `addr`: the response's status code.
pub async fn get(addr: SocketAddr, path: &str) -> io::Result<u16> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP status line"))
}
