//! A TCP proxy that injects network faults between ONE process and a Redis server on
//! loopback: the test points that process at [`FaultProxy::url`] and switches the fault
//! at run time with [`FaultProxy::set`].
//!
//! The proxy runs on a thread and runtime of its own, so it keeps forwarding while the
//! test blocks (a `redis-cli` call, a `thread::sleep` in the harness), and it is usable
//! from synchronous code (e.g. between two Redis servers of a topology). Dropping it
//! ends that runtime: the listener and every connection are closed when `drop` returns.
//!
//! What each [`Mode`] does to the connections, current and new:
//!
//! | mode | client → server | server → client | new connections |
//! |---|---|---|---|
//! | `Pass` | forwarded | forwarded | accepted |
//! | `Delay(d)` | each chunk forwarded `d` after it was read | the same | accepted |
//! | `Blackhole` | held | held | accepted and held |
//! | `Reset` | every connection closed with a RST | – | accepted and closed with a RST |
//! | `DropReplies` | forwarded | discarded, except on subscriber connections | accepted |
//! | `DropPubSub` | forwarded | discarded on subscriber connections only | accepted |
//!
//! A *subscriber connection* is one whose client sent `SUBSCRIBE`, `PSUBSCRIBE` or
//! `SSUBSCRIBE` (read from the client's bytes, in RESP); every other one is a *command
//! connection*.
//!
//! **Held, not lost.** `Blackhole` behaves like a network partition that TCP outlives:
//! what either side sent meanwhile (an end of stream included) stays in the proxy and in
//! the kernel's buffers, and is delivered, in order, once the mode lets it through again
//! (`Pass`, `Delay`, …) — like retransmissions after the partition heals. So a command
//! that timed out on the client's side during the cut may still run on the server after
//! the heal, as it may in production. To end a cut with dead connections instead, go
//! through `Reset` first (`set(Mode::Reset)` then `set(Mode::Pass)`). Bytes discarded by
//! `DropReplies` / `DropPubSub` are gone for good, and a chunk is judged when it is due
//! to be written (the mode at that moment decides).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// How the proxy treats the traffic (see the module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Forward each chunk, both directions, this long after it was read.
    Delay(Duration),
    /// Forward nothing either way; keep accepting and holding connections.
    Blackhole,
    /// Close every connection abruptly (RST); close new ones as soon as accepted.
    Reset,
    /// Forward the client's bytes; discard the server's on command connections.
    DropReplies,
    /// Discard the server's bytes on subscriber connections (lost events); the rest
    /// passes.
    DropPubSub,
}

/// What the proxy has seen so far.
#[derive(Debug, Default)]
struct Stats {
    accepted: AtomicU64,
    open: AtomicUsize,
    subscribers: AtomicUsize,
    /// Bytes the proxy discarded (`DropReplies`, `DropPubSub`).
    discarded: AtomicU64,
    /// Bytes the proxy forwarded, both directions.
    forwarded: AtomicU64,
}

/// A fault-injecting TCP proxy to one upstream (see the module documentation).
pub struct FaultProxy {
    port: u16,
    upstream: SocketAddr,
    mode: watch::Sender<Mode>,
    stats: Arc<Stats>,
    /// Ends the proxy's runtime (see `Drop`).
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("port", &self.port)
            .field("upstream", &self.upstream)
            .field("mode", &self.mode())
            .field("stats", &self.stats)
            .finish()
    }
}

/// The largest chunk read at once.
const CHUNK: usize = 16 * 1024;
/// Chunks read ahead of the writer (per direction): past them the proxy stops reading,
/// and the sender's kernel buffers fill as they would behind a stuck network.
const READ_AHEAD: usize = 64;
/// How long connecting upstream may take before the client's connection is reset.
const CONNECT_WITHIN: Duration = Duration::from_secs(5);

impl FaultProxy {
    /// Starts a proxy to `upstream` on a free port of 127.0.0.1, in [`Mode::Pass`].
    ///
    /// # Panics
    ///
    /// If no port can be bound or the proxy's runtime cannot start.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        // Bound here, so that the port is known (and taken) once `start` returns.
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("the fault proxy's listening port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let port = listener.local_addr().expect("a bound address").port();
        let (mode, modes) = watch::channel(Mode::Pass);
        let stats = Arc::new(Stats::default());
        let task_stats = stats.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the fault proxy's runtime");
                runtime.block_on(async move {
                    let listener =
                        TcpListener::from_std(listener).expect("the fault proxy's listener");
                    tokio::select! {
                        () = accept(listener, upstream, modes, task_stats) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime drops every connection's task: their sockets close.
            })
            .expect("the fault proxy's thread");
        FaultProxy {
            port,
            upstream,
            mode,
            stats,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// A proxy to 127.0.0.1:`port` (a [`RedisServer`](super::redis_server::RedisServer)'s
    /// port, say).
    pub fn to_port(port: u16) -> FaultProxy {
        FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`: the proxied server's URL for the process under test.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Where the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Switches the fault, at once, for current and new connections.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// The current fault.
    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// Connections accepted so far (including ones closed at once under `Reset`).
    pub fn accepted(&self) -> u64 {
        self.stats.accepted.load(Ordering::Relaxed)
    }

    /// Connections currently open through the proxy.
    pub fn open_connections(&self) -> usize {
        self.stats.open.load(Ordering::Relaxed)
    }

    /// Open connections whose client subscribed (`SUBSCRIBE`, `PSUBSCRIBE`,
    /// `SSUBSCRIBE`).
    pub fn subscriber_connections(&self) -> usize {
        self.stats.subscribers.load(Ordering::Relaxed)
    }

    /// Bytes discarded so far by `DropReplies` and `DropPubSub`.
    pub fn discarded_bytes(&self) -> u64 {
        self.stats.discarded.load(Ordering::Relaxed)
    }

    /// Bytes forwarded so far, both directions.
    pub fn forwarded_bytes(&self) -> u64 {
        self.stats.forwarded.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The proxy's thread ends its runtime, which drops every task: the listener and
        // every connection are closed once this returns (a few ms of blocking).
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    modes: watch::Receiver<Mode>,
    stats: Arc<Stats>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors, say: try again shortly.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        if *modes.borrow() == Mode::Reset {
            abort(&client);
            continue;
        }
        tokio::spawn(connection(client, upstream, modes.clone(), stats.clone()));
    }
}

/// Closes `stream` with a RST when it is dropped.
fn abort(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Counts an open connection (and whether it is a subscriber's) until dropped.
struct Open {
    stats: Arc<Stats>,
    subscriber: std::sync::atomic::AtomicBool,
}

impl Open {
    fn new(stats: Arc<Stats>) -> Open {
        stats.open.fetch_add(1, Ordering::Relaxed);
        Open {
            stats,
            subscriber: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn is_subscriber(&self) -> bool {
        self.subscriber.load(Ordering::Relaxed)
    }

    fn mark_subscriber(&self) {
        if !self.subscriber.swap(true, Ordering::Relaxed) {
            self.stats.subscribers.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
        if self.is_subscriber() {
            self.stats.subscribers.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// One proxied connection: both directions until both ended, or until `Reset`.
async fn connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut modes: watch::Receiver<Mode>,
    stats: Arc<Stats>,
) {
    let mut server = match tokio::time::timeout(CONNECT_WITHIN, TcpStream::connect(upstream)).await
    {
        Ok(Ok(server)) => server,
        _ => {
            abort(&client);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let open = Open::new(stats.clone());
    let reset = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let up = pump(
            client_read,
            server_write,
            Direction::ToServer,
            modes.clone(),
            &open,
            &stats,
        );
        let down = pump(
            server_read,
            client_write,
            Direction::ToClient,
            modes.clone(),
            &open,
            &stats,
        );
        let until_reset = async {
            loop {
                if *modes.borrow_and_update() == Mode::Reset {
                    return;
                }
                if modes.changed().await.is_err() {
                    // The proxy is going away: its runtime aborts this task.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = async { tokio::try_join!(up, down) } => false,
            () = until_reset => true,
        }
    };
    if reset {
        abort(&client);
        abort(&server);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToServer,
    ToClient,
}

/// What one direction carries: data (with when it was read), then its end.
enum Chunk {
    Data(Instant, Vec<u8>),
    End(Instant),
}

/// One direction of a connection: a reader that reads ahead, and a writer that lets
/// each chunk through as the mode says. Ends once the end of stream was forwarded (or
/// with the first error, which ends the connection).
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    direction: Direction,
    modes: watch::Receiver<Mode>,
    open: &Open,
    stats: &Stats,
) -> std::io::Result<()>
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<Chunk>(READ_AHEAD);
    let read = async move {
        let mut buf = vec![0u8; CHUNK];
        let mut detector = SubscribeDetector::default();
        loop {
            // A reset by the peer ends this direction like an end of stream.
            let n = from.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                let _ = tx.send(Chunk::End(Instant::now())).await;
                return Ok::<(), std::io::Error>(());
            }
            if direction == Direction::ToServer && detector.feed(&buf[..n]) {
                open.mark_subscriber();
            }
            if tx
                .send(Chunk::Data(Instant::now(), buf[..n].to_vec()))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
    };
    let write = async move {
        let mut modes = modes;
        while let Some(chunk) = rx.recv().await {
            let read_at = match &chunk {
                Chunk::Data(at, _) | Chunk::End(at) => *at,
            };
            // Wait until the mode lets this chunk go (or says to discard it).
            let deliver = loop {
                let mode = *modes.borrow_and_update();
                let discard = match mode {
                    Mode::DropReplies => direction == Direction::ToClient && !open.is_subscriber(),
                    Mode::DropPubSub => direction == Direction::ToClient && open.is_subscriber(),
                    _ => false,
                };
                let due = match mode {
                    Mode::Pass | Mode::DropReplies | Mode::DropPubSub => None,
                    Mode::Delay(d) => Some(read_at + d),
                    // Held until the mode changes (Reset: the connection is closed).
                    Mode::Blackhole | Mode::Reset => {
                        Some(Instant::now() + Duration::from_secs(3600))
                    }
                };
                match due {
                    Some(due) if Instant::now() < due => {
                        tokio::select! {
                            _ = tokio::time::sleep_until(due) => {}
                            changed = modes.changed() => {
                                if changed.is_err() {
                                    std::future::pending::<()>().await;
                                }
                            }
                        }
                    }
                    _ => break !discard,
                }
            };
            match chunk {
                Chunk::Data(_, bytes) if deliver => {
                    to.write_all(&bytes).await?;
                    stats
                        .forwarded
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
                Chunk::Data(_, bytes) => {
                    stats
                        .discarded
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
                Chunk::End(_) => {
                    let _ = to.shutdown().await;
                    return Ok(());
                }
            }
        }
        Ok(())
    };
    tokio::try_join!(read, write).map(|_| ())
}

/// Tells, from a client's RESP bytes as they come (commands split anywhere across
/// chunks), whether it sent `SUBSCRIBE`, `PSUBSCRIBE` or `SSUBSCRIBE`: the command name
/// is a bulk string right after the array's header line.
#[derive(Default)]
struct SubscribeDetector {
    /// The last bytes seen (upper-cased), enough to hold a pattern split across chunks.
    tail: Vec<u8>,
}

impl SubscribeDetector {
    const PATTERNS: [&'static [u8]; 3] = [
        b"\r\n$9\r\nSUBSCRIBE\r\n",
        b"\r\n$10\r\nPSUBSCRIBE\r\n",
        b"\r\n$10\r\nSSUBSCRIBE\r\n",
    ];
    const KEEP: usize = 20;

    /// Feeds the next bytes; true once a subscription command was seen in them.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        self.tail.extend(bytes.iter().map(u8::to_ascii_uppercase));
        let found = Self::PATTERNS
            .iter()
            .any(|p| self.tail.windows(p.len()).any(|w| w == *p));
        let keep_from = self.tail.len().saturating_sub(Self::KEEP);
        self.tail.drain(..keep_from);
        found
    }
}
