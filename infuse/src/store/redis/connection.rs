//! The connection the Redis store sends its scripts on, whatever the deployment: one
//! server (plain or TLS), the master a set of Sentinels names, or a Redis Cluster.
//!
//! Every kind reconnects on its own; none retries a script after the connection failed
//! under it (the store's deadlines and the fleet's policy decide what happens next).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::SentinelClient;
use redis::{AsyncConnectionConfig, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};

/// A connection to Redis as fleet mode makes it (the store's, and
/// [`FleetConnection::commands`](crate::FleetConnection::commands)): cheap to clone,
/// shared by clones, reconnecting by itself.
///
/// Built from a [`ConnectionManager`] (one server) or a [`ClusterConnection`] with
/// `From`; fleet mode also builds one that follows a Sentinel-managed master
/// ([`Config::redis_sentinel`](crate::Config::redis_sentinel)).
#[derive(Clone)]
pub struct RedisConnection {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Single(ConnectionManager),
    Sentinel(SentinelConnection),
    Cluster(ClusterConnection),
}

impl From<ConnectionManager> for RedisConnection {
    fn from(conn: ConnectionManager) -> Self {
        RedisConnection {
            inner: Inner::Single(conn),
        }
    }
}

impl From<ClusterConnection> for RedisConnection {
    fn from(conn: ClusterConnection) -> Self {
        RedisConnection {
            inner: Inner::Cluster(conn),
        }
    }
}

impl From<SentinelConnection> for RedisConnection {
    fn from(conn: SentinelConnection) -> Self {
        RedisConnection {
            inner: Inner::Sentinel(conn),
        }
    }
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.inner {
            Inner::Single(_) => "RedisConnection::Single",
            Inner::Sentinel(_) => "RedisConnection::Sentinel",
            Inner::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.inner {
            Inner::Single(conn) => conn.req_packed_command(cmd),
            Inner::Sentinel(conn) => conn.req_packed_command(cmd),
            Inner::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.inner {
            Inner::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            Inner::Sentinel(conn) => conn.req_packed_commands(cmd, offset, count),
            Inner::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Inner::Single(conn) => conn.get_db(),
            Inner::Sentinel(conn) => conn.get_db(),
            Inner::Cluster(conn) => conn.get_db(),
        }
    }
}

/// A connection to the master a set of Sentinels names, asking them again whenever the
/// master stops answering as one: the connection dropped or was refused, the server says
/// it is a read-only replica now, or requests have gone unanswered for a while (a hung or
/// partitioned master; the callers' deadlines dropped them).
///
/// Resolution is lazy: the first request after the connection was given up resolves the
/// master again (one resolution at a time; the others wait for it, under their own
/// deadlines).
#[derive(Clone)]
pub(crate) struct SentinelConnection {
    shared: Arc<SentinelShared>,
}

struct SentinelShared {
    client: tokio::sync::Mutex<SentinelClient>,
    config: AsyncConnectionConfig,
    resolve_timeout: Duration,
    /// Requests abandoned for this long with no answer since: the master is given up.
    stall_limit: Duration,
    db: i64,
    epochs: AtomicU64,
    current: Mutex<Option<Current>>,
    /// The resolution under way, if any: its result, once there.
    resolving: Mutex<Option<Resolution>>,
}

type Resolution = tokio::sync::watch::Receiver<Option<Result<Current, RedisError>>>;

#[derive(Clone)]
struct Current {
    epoch: u64,
    conn: MultiplexedConnection,
    /// Since when requests were abandoned unanswered (none answered since).
    stalled_since: Option<Instant>,
}

impl SentinelConnection {
    /// A connection to the master `client` resolves; each resolution (asking the
    /// Sentinels, connecting to the master) is bounded by `resolve_timeout`. The first
    /// resolution happens here unless `lazy`.
    pub(crate) async fn new(
        client: SentinelClient,
        config: AsyncConnectionConfig,
        resolve_timeout: Duration,
        stall_limit: Duration,
        db: i64,
        lazy: bool,
    ) -> Result<SentinelConnection, RedisError> {
        let conn = SentinelConnection {
            shared: Arc::new(SentinelShared {
                client: tokio::sync::Mutex::new(client),
                config,
                resolve_timeout,
                stall_limit,
                db,
                epochs: AtomicU64::new(0),
                current: Mutex::new(None),
                resolving: Mutex::new(None),
            }),
        };
        if !lazy {
            conn.connection().await?;
        }
        Ok(conn)
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Option<Current>> {
        self.shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The current master connection, resolving it first if there is none (or it
    /// stalled). The resolution runs in a task of its own, so that callers giving up
    /// (their deadlines are often shorter than a resolution) do not cancel it; callers
    /// meanwhile wait for that one resolution.
    async fn connection(&self) -> Result<Current, RedisError> {
        let mut done = {
            let mut current = self.current();
            match current.as_ref() {
                Some(c)
                    if c.stalled_since
                        .is_some_and(|since| since.elapsed() >= self.shared.stall_limit) =>
                {
                    tracing::debug!("Redis master stalled; asking the Sentinels again");
                    *current = None;
                }
                Some(c) => return Ok(c.clone()),
                None => {}
            }
            let mut resolving = self
                .shared
                .resolving
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match resolving.as_ref() {
                Some(done) => done.clone(),
                None => {
                    let (tell, done) = tokio::sync::watch::channel(None);
                    *resolving = Some(done.clone());
                    let shared = Arc::clone(&self.shared);
                    tokio::spawn(async move {
                        let result = shared.resolve().await;
                        *shared
                            .resolving
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = None;
                        let _ = tell.send(Some(result));
                    });
                    done
                }
            }
        };
        let result = done
            .wait_for(Option::is_some)
            .await
            .map_err(|_| RedisError::from((ErrorKind::Io, "the master resolution was dropped")))?
            .clone();
        result.expect("waited for Some")
    }

    /// Gives up the master connection of `epoch` (if still current).
    fn give_up(&self, epoch: u64) {
        let mut current = self.current();
        if current.as_ref().is_some_and(|c| c.epoch == epoch) {
            *current = None;
        }
    }

    fn answered(&self, epoch: u64) {
        let mut current = self.current();
        if let Some(c) = current.as_mut().filter(|c| c.epoch == epoch) {
            c.stalled_since = None;
        }
    }

    fn abandoned(&self, epoch: u64) {
        let mut current = self.current();
        if let Some(c) = current.as_mut().filter(|c| c.epoch == epoch) {
            c.stalled_since.get_or_insert_with(Instant::now);
        }
    }

    async fn run<T>(
        &self,
        send: impl AsyncFnOnce(&mut MultiplexedConnection) -> Result<T, RedisError>,
    ) -> Result<T, RedisError> {
        let Current {
            epoch, mut conn, ..
        } = self.connection().await?;
        let mut guard = Pending {
            owner: self,
            epoch,
            done: false,
        };
        let result = send(&mut conn).await;
        guard.done = true;
        match &result {
            Ok(_) => self.answered(epoch),
            Err(error) if master_lost(error) => self.give_up(epoch),
            Err(_) => self.answered(epoch),
        }
        result
    }
}

impl SentinelShared {
    /// Asks the Sentinels for the master and connects to it (bounded by
    /// `resolve_timeout`), making it the current connection.
    async fn resolve(&self) -> Result<Current, RedisError> {
        let mut client = self.client.lock().await;
        let resolve = client.get_async_connection_with_config(&self.config);
        let conn = match tokio::time::timeout(self.resolve_timeout, resolve).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(RedisError::from((
                    ErrorKind::Io,
                    "no master from the Sentinels",
                    format!("no answer within {:?}", self.resolve_timeout),
                )))
            }
        };
        let next = Current {
            epoch: self.epochs.fetch_add(1, Ordering::Relaxed) + 1,
            conn,
            stalled_since: None,
        };
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(next.clone());
        Ok(next)
    }
}

/// Marks the connection stalled when a request is dropped before its answer.
struct Pending<'a> {
    owner: &'a SentinelConnection,
    epoch: u64,
    done: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.owner.abandoned(self.epoch);
        }
    }
}

/// Whether an error means this is no longer (or not reachably) the master.
fn master_lost(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
        || matches!(
            error.kind(),
            ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        )
        || error.to_string().contains("READONLY")
}

impl ConnectionLike for SentinelConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            self.run(async |conn: &mut MultiplexedConnection| conn.req_packed_command(cmd).await)
                .await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            self.run(async |conn: &mut MultiplexedConnection| {
                conn.req_packed_commands(cmd, offset, count).await
            })
            .await
        })
    }

    fn get_db(&self) -> i64 {
        self.shared.db
    }
}
