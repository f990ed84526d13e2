//! The dashboard's HTTP/1.1 server: axum's router on hyper connections that the
//! dashboard holds to account, so that idle or slow clients cannot starve the page.
//!
//! - Each request head must arrive within the header deadline (hyper's
//!   `header_read_timeout`, which also bounds a kept-alive connection's wait for its next
//!   request): a client that trickles headers (slowloris) is closed.
//! - At most `max_connections` connections are held. A newcomer past the cap takes the
//!   place of the connection idle the longest (one with no request in progress and no
//!   response streaming); when every connection is busy, it gets a `503` at once. So a
//!   thousand idle sockets cost the dashboard `max_connections` descriptors, and an
//!   operator's request is still served.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tower_service::Service;

/// The limits the server holds its clients to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) header_timeout: Duration,
}

/// Serves `router` on `listener` until the process ends.
pub(crate) async fn serve(listener: TcpListener, router: Router, limits: Limits) {
    let pool = Arc::new(Pool::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of descriptors, most likely: the kernel keeps the connection queued.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = pool.admit() else {
            refuse(stream);
            continue;
        };
        let slot = Arc::new(slot);
        let router = router.clone();
        let tracked = slot.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let busy = tracked.begin();
            let answer = router.clone().call(request);
            async move {
                let response = answer.await?;
                // The connection stays busy until the body is sent (or the stream ends).
                Ok::<_, Infallible>(response.map(|body| Body::new(Tracked { body, _busy: busy })))
            }
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            tokio::select! {
                _ = connection => {}
                // Dropping the connection closes its socket.
                () = slot.state.evict.notified() => {}
            }
        });
    }
}

/// Answers a connection past the cap (every held one busy) with a `503` and closes it.
/// Closing with the request unread would reset the connection before the client reads
/// the answer: up to [`LINGERING`] refusals at once read what the client sends for
/// half a second first; past that, a refusal is a plain close.
fn refuse(stream: TcpStream) {
    const BODY: &str = "the dashboard holds as many connections as it may (--max-connections), all busy; retry shortly\n";
    static LINGERING_NOW: AtomicUsize = AtomicUsize::new(0);
    if LINGERING_NOW.fetch_add(1, Ordering::AcqRel) >= LINGERING {
        LINGERING_NOW.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    tokio::spawn(async move {
        let mut stream = stream;
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{BODY}",
            BODY.len()
        );
        let linger = async {
            stream.write_all(answer.as_bytes()).await?;
            stream.shutdown().await?;
            let mut sink = [0u8; 1024];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<_, std::io::Error>(())
        };
        let _ = tokio::time::timeout(Duration::from_millis(500), linger).await;
        LINGERING_NOW.fetch_sub(1, Ordering::AcqRel);
    });
}

/// How many refused connections may linger at once (see [`refuse`]).
const LINGERING: usize = 64;

/// The connections held, each with whether it is busy and since when it is idle.
struct Pool {
    max: usize,
    epoch: Instant,
    next_id: AtomicU64,
    held: Mutex<HashMap<u64, Arc<SlotState>>>,
}

/// A connection's `busy` count when it is being closed to make room (no request may then
/// mark it idle again).
const EVICTED: usize = 1 << (usize::BITS - 1);

struct SlotState {
    /// Requests in progress plus responses streaming.
    busy: AtomicUsize,
    /// Milliseconds since the pool's epoch when `busy` last fell to zero (or the
    /// connection was accepted).
    idle_since_ms: AtomicU64,
    evict: Notify,
}

impl Pool {
    fn new(max: usize) -> Pool {
        Pool {
            max: max.max(1),
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            held: Mutex::new(HashMap::new()),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A place for a new connection: free, or freed by closing the longest-idle one;
    /// `None` when every held connection is busy.
    fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.len() >= self.max {
            let mut idle: Vec<(u64, u64)> = held
                .iter()
                .filter(|(_, state)| state.busy.load(Ordering::Acquire) == 0)
                .map(|(id, state)| (state.idle_since_ms.load(Ordering::Relaxed), *id))
                .collect();
            idle.sort_unstable();
            // A connection may turn busy meanwhile: only one still idle gives way.
            let victim = idle.into_iter().find_map(|(_, id)| {
                let state = &held[&id];
                state
                    .busy
                    .compare_exchange(0, EVICTED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                    .then_some(id)
            })?;
            if let Some(state) = held.remove(&victim) {
                state.evict.notify_one();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(SlotState {
            busy: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            evict: Notify::new(),
        });
        held.insert(id, state.clone());
        Some(Slot {
            pool: self.clone(),
            id,
            state,
        })
    }
}

/// A held connection's place in the pool, given back when the connection ends.
struct Slot {
    pool: Arc<Pool>,
    id: u64,
    state: Arc<SlotState>,
}

impl Slot {
    /// Marks the connection busy until the guard is dropped.
    fn begin(self: &Arc<Self>) -> Busy {
        self.state.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.pool.held.lock().unwrap_or_else(|e| e.into_inner());
        if held
            .get(&self.id)
            .is_some_and(|state| Arc::ptr_eq(state, &self.state))
        {
            held.remove(&self.id);
        }
    }
}

/// A request in progress, or a response streaming, on a connection.
struct Busy(Arc<Slot>);

impl Drop for Busy {
    fn drop(&mut self) {
        let state = &self.0.state;
        if state.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            state
                .idle_since_ms
                .store(self.0.pool.now_ms(), Ordering::Relaxed);
        }
    }
}

/// A response body that keeps its connection marked busy until it is sent or dropped.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_cap_the_longest_idle_connection_gives_way() {
        let pool = Arc::new(Pool::new(2));
        let first = Arc::new(pool.admit().unwrap());
        std::thread::sleep(Duration::from_millis(5));
        let second = Arc::new(pool.admit().unwrap());
        // Both idle: the older one is closed for the third.
        let third = Arc::new(pool.admit().unwrap());
        assert_eq!(first.state.busy.load(Ordering::Relaxed), EVICTED);
        assert_eq!(pool.held.lock().unwrap().len(), 2);
        // Busy connections are never closed to make room.
        let _a = second.begin();
        let _b = third.begin();
        assert!(pool.admit().is_none(), "every held connection is busy");
        drop(_a);
        let fourth = pool.admit().expect("the second is idle again");
        assert_eq!(second.state.busy.load(Ordering::Relaxed), EVICTED);
        // A connection that ends gives its place back.
        drop(fourth);
        assert_eq!(pool.held.lock().unwrap().len(), 1);
    }
}
