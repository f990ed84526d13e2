//! Reaching Redis in each deployment fleet mode supports: one server (plain or TLS), the
//! master a set of Sentinels names, or a Redis Cluster. Builds the store's connection,
//! the subscriber of the events channel, and a password-free address for logs/errors.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, ConnectionInfo, IntoConnectionInfo};

use super::options::{redact, RedisOptions, Topology};
use super::tls::{tls_in_use, Certificates};
use crate::core::InitError;
use crate::store::redis::{RedisConnection, SentinelConnection};

/// Requests through a Sentinel-resolved master left unanswered this long (their callers
/// gave up) make the next request ask the Sentinels again.
const SENTINEL_STALL: Duration = Duration::from_secs(1);

/// What [`connect`] gives the fleet.
pub(crate) struct Connected {
    pub(crate) conn: RedisConnection,
    /// Whether the first connection succeeded (else it is lazy: `start_degraded`).
    pub(crate) healthy: bool,
    /// Where Redis is, for logs and errors (never with a password).
    pub(crate) address: String,
    pub(crate) events: Events,
}

/// Connects to the deployment `options` names. Unreachable at boot is an error, unless
/// `start_degraded` (then `healthy` is false and the connection is made lazily).
pub(crate) async fn connect(options: &RedisOptions) -> Result<Connected, InitError> {
    let topology = &options.topology;
    let origin = topology.origin();
    let invalid = |reason: String| InitError::InvalidSetting {
        origin: origin.clone(),
        reason: scrub_master(&topology.scrub(&reason), options),
    };
    let infos = topology
        .urls()
        .iter()
        .map(|url| {
            url.as_str().into_connection_info().map_err(|e| {
                invalid(format!(
                    "{}: {e}; expected redis://[user:password@]host:port[/db] (rediss:// for TLS)",
                    redact(url)
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tls = tls_in_use(&infos, &options.tls)?;
    let address = address(topology, &infos);
    let unreachable = |reason: String| InitError::Unreachable {
        address: address.clone(),
        reason: explain(&scrub_master(&topology.scrub(&reason), options)),
    };
    let connect_timeout = options.connect_timeout;
    let (conn, healthy, events) = match topology {
        Topology::Single { url } => {
            let client =
                client(url, &infos[0], tls.as_ref()).map_err(|e| invalid(e.to_string()))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(Some(options.admin_timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_secs(1));
            let connected = within(
                connect_timeout,
                ConnectionManager::new_with_config(client.clone(), config.clone()),
            )
            .await;
            let (conn, healthy) = match connected {
                Ok(conn) => (conn, true),
                Err(reason) => {
                    degraded(options, &address, unreachable(reason))?;
                    let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
                        .map_err(|e| unreachable(e.to_string()))?;
                    (conn, false)
                }
            };
            let events = Events::Nodes {
                clients: vec![client],
                next: 0,
            };
            (RedisConnection::from(conn), healthy, events)
        }
        Topology::Sentinel { master, .. } => {
            let sentinel = || sentinel_client(&infos, master, options, tls.as_ref());
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(Some(options.admin_timeout));
            let client = sentinel().map_err(|e| invalid(e.to_string()))?;
            let db = options.master_auth.db;
            let connected = SentinelConnection::new(
                client,
                config.clone(),
                connect_timeout,
                SENTINEL_STALL,
                db,
                false,
            )
            .await;
            let (conn, healthy) = match connected {
                Ok(conn) => (conn, true),
                Err(e) => {
                    degraded(options, &address, unreachable(e.to_string()))?;
                    let client = sentinel().map_err(|e| invalid(e.to_string()))?;
                    let conn = SentinelConnection::new(
                        client,
                        config,
                        connect_timeout,
                        SENTINEL_STALL,
                        db,
                        true,
                    )
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                    (conn, false)
                }
            };
            let events =
                Events::Sentinel(Box::new(sentinel().map_err(|e| invalid(e.to_string()))?));
            (RedisConnection::from(conn), healthy, events)
        }
        Topology::Cluster { nodes } => {
            let builder = ClusterClientBuilder::new(infos.clone())
                .connection_timeout(connect_timeout)
                .response_timeout(options.admin_timeout)
                // MOVED/ASK and failovers need retries; a script whose connection broke
                // under it may thus run twice (a failure counted twice: never a lost trip).
                .retries(3)
                .min_retry_wait(10)
                .max_retry_wait(200);
            #[cfg(feature = "tls")]
            let builder = match &tls {
                Some(certificates) => builder.certs(certificates.clone()),
                None => builder,
            };
            let cluster = builder.build().map_err(|e| invalid(e.to_string()))?;
            let connected = within(connect_timeout, cluster.get_async_connection()).await;
            let (conn, healthy) = match connected {
                Ok(conn) => (conn, true),
                Err(reason) => {
                    degraded(options, &address, unreachable(reason))?;
                    let conn =
                        cluster.get_pending_async_connection_with_config(ClusterConfig::new());
                    (conn, false)
                }
            };
            let clients = nodes
                .iter()
                .zip(&infos)
                .map(|(url, info)| client(url, info, tls.as_ref()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(e.to_string()))?;
            let events = Events::Nodes { clients, next: 0 };
            (RedisConnection::from(conn), healthy, events)
        }
    };
    Ok(Connected {
        conn,
        healthy,
        address,
        events,
    })
}

/// A connection attempt under `limit`; its failure as a reason for an error.
async fn within<T>(
    limit: Duration,
    attempt: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, attempt).await {
        Ok(Ok(connected)) => Ok(connected),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

/// `text` without the master's password (Sentinel mode).
fn scrub_master(text: &str, options: &RedisOptions) -> String {
    match options.master_auth.password.as_deref() {
        Some(password) if !password.is_empty() => text.replace(password, "***"),
        _ => text.to_owned(),
    }
}

/// Boots degraded (logging why) if allowed; else the error.
fn degraded(options: &RedisOptions, address: &str, error: InitError) -> Result<(), InitError> {
    if !options.start_degraded {
        return Err(error);
    }
    tracing::warn!(%address, %error, policy = %options.policy,
        "Redis unreachable at boot; starting degraded");
    Ok(())
}

/// A hint for TLS failures (a certificate the client does not trust, or one missing).
fn explain(reason: &str) -> String {
    let lower = reason.to_lowercase();
    if ["certificate", "tls", "handshake", "unknownissuer", "alert"]
        .iter()
        .any(|word| lower.contains(word))
    {
        format!("{reason} (a TLS/certificate problem: check that Config::tls_root_cert holds the CA that signed the server's certificate, that the server's certificate names the host of the URL, and Config::tls_client_cert if the server requires client certificates)")
    } else {
        reason.to_owned()
    }
}

/// `host:port[/db]` of each URL, with the mode.
fn address(topology: &Topology, infos: &[ConnectionInfo]) -> String {
    let hosts = infos
        .iter()
        .map(|info| info.addr().to_string())
        .collect::<Vec<_>>()
        .join(",");
    match topology {
        Topology::Single { .. } => format!("{hosts}/{}", infos[0].redis_settings().db()),
        Topology::Sentinel { master, .. } => format!("master {master:?} of Sentinels {hosts}"),
        Topology::Cluster { .. } => format!("cluster {hosts}"),
    }
}

/// A client of one server, with the TLS certificates if any.
fn client(
    url: &str,
    info: &ConnectionInfo,
    tls: Option<&Certificates>,
) -> Result<redis::Client, redis::RedisError> {
    match tls {
        #[cfg(feature = "tls")]
        Some(certificates) => redis::Client::build_with_tls(info.clone(), certificates.clone()),
        _ => {
            let _ = info;
            redis::Client::open(url)
        }
    }
}

/// A client that asks the Sentinels for the master (their credentials from the first URL
/// that has some; TLS to both when the Sentinel URLs use it).
fn sentinel_client(
    infos: &[ConnectionInfo],
    master: &str,
    options: &RedisOptions,
    tls: Option<&Certificates>,
) -> Result<SentinelClient, redis::RedisError> {
    let addrs = infos.iter().map(|info| info.addr().clone());
    let mut builder = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)?;
    if let Some(settings) = infos
        .iter()
        .map(ConnectionInfo::redis_settings)
        .find(|settings| settings.password().is_some() || settings.username().is_some())
    {
        if let Some(username) = settings.username() {
            builder = builder.set_client_to_sentinel_username(username);
        }
        if let Some(password) = settings.password() {
            builder = builder.set_client_to_sentinel_password(password);
        }
    }
    let auth = &options.master_auth;
    if let Some(username) = &auth.username {
        builder = builder.set_client_to_redis_username(username);
    }
    if let Some(password) = &auth.password {
        builder = builder.set_client_to_redis_password(password);
    }
    builder = builder.set_client_to_redis_db(auth.db);
    #[cfg(feature = "tls")]
    if infos
        .iter()
        .any(|info| matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }))
    {
        builder = builder
            .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure)
            .set_client_to_redis_tls_mode(redis::TlsMode::Secure);
        if let Some(certificates) = tls {
            builder = builder
                .set_client_to_sentinel_certificates(certificates.clone())
                .set_client_to_redis_certificates(certificates.clone());
        }
    }
    #[cfg(not(feature = "tls"))]
    let _ = tls;
    builder.build()
}

/// Where the events subscription connects.
pub(crate) enum Events {
    /// One of these servers, the next one after each failure (a cluster broadcasts
    /// `PUBLISH` to every node, so any node hears every event).
    Nodes {
        clients: Vec<redis::Client>,
        next: usize,
    },
    /// The master the Sentinels name at the time (asked again at each reconnect).
    Sentinel(Box<SentinelClient>),
}

impl Events {
    /// A fresh pub/sub connection.
    pub(crate) async fn pubsub(&mut self) -> redis::RedisResult<PubSub> {
        match self {
            Events::Nodes { clients, next } => {
                let client = &clients[*next % clients.len()];
                *next = next.wrapping_add(1);
                client.get_async_pubsub().await
            }
            Events::Sentinel(sentinel) => {
                sentinel.async_get_client().await?.get_async_pubsub().await
            }
        }
    }
}

/// A connection to the fleet's Redis, made exactly as [`init`](crate::init) makes it
/// from a [`Config`](crate::Config) (one server, Sentinel or Cluster; TLS, credentials,
/// timeouts), for tools that read the documented key layout or follow the events
/// channel themselves. The `infuse` command is built on it. Built by
/// [`Config::redis_connection`](crate::Config::redis_connection).
///
/// ```no_run
/// # async fn inspect() -> Result<(), Box<dyn std::error::Error>> {
/// use redis::AsyncCommands;
///
/// let fleet = infuse::Config::redis_cluster(["redis://127.0.0.1:7000"])
///     .redis_connection()
///     .await?;
/// let mut conn = fleet.commands();
/// let state: Option<String> = conn.hget("infuse:{default/users}:state", "state").await?;
/// println!("users at {}: {state:?}", fleet.address());
/// # Ok(()) }
/// ```
pub struct FleetConnection {
    conn: RedisConnection,
    address: String,
    events: tokio::sync::Mutex<Events>,
}

impl FleetConnection {
    /// Connects; an unreachable Redis is an error (whatever `start_degraded` says: a
    /// tool wants to know).
    pub(crate) async fn connect(options: &RedisOptions) -> Result<FleetConnection, InitError> {
        let options = RedisOptions {
            start_degraded: false,
            ..options.clone()
        };
        let Connected {
            conn,
            address,
            events,
            ..
        } = connect(&options).await?;
        Ok(FleetConnection {
            conn,
            address,
            events: tokio::sync::Mutex::new(events),
        })
    }

    /// A handle for commands (cheap to clone; a Redis Cluster routes each command by its
    /// key's hash slot). Keys of one hash tag (one breaker's, or the namespace's own) can
    /// share a pipeline in every mode.
    pub fn commands(&self) -> RedisConnection {
        self.conn.clone()
    }

    /// Where Redis is, without any password: for messages.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A new pub/sub connection on a server that hears every event: the server itself,
    /// the master the Sentinels name now, or a node of the cluster (each call after a
    /// failure tries the next one).
    pub async fn pubsub(&self) -> redis::RedisResult<PubSub> {
        self.events.lock().await.pubsub().await
    }
}

impl std::fmt::Debug for FleetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetConnection")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}
