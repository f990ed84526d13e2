//! The namespace's events as a stream that outlives Redis restarts: the subscription is
//! made again (with backoff) whenever it ends, and the stream says when it lost it and
//! when it is back, so that a viewer re-reads what it may have missed.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use redis::aio::PubSubSink;
use tokio::time::Instant;

use crate::core::{Snapshot, StorageError};
use crate::fleet::FleetConnection;
use crate::store::redis::{bounded, parse_event};

/// The first wait before subscribing again; doubled after each failure up to
/// [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// A subscription silent for the admin timeout, at most this long (at least a second),
/// is checked with a `PING`: a connection that died without closing (a frozen server, a
/// failed load balancer) would otherwise be silent forever.
const IDLE_CHECK: Duration = Duration::from_secs(15);

/// What [`ChangeStream::next`] answers.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Change {
    /// A breaker's write, as its script published it.
    Breaker {
        /// The target service.
        service: String,
        /// The record after the write.
        snapshot: Snapshot,
    },
    /// The subscription ended (Redis restarted, the connection broke): events are lost
    /// until [`Change::Reconnected`].
    Disconnected {
        /// Why, as far as the client knows.
        reason: String,
    },
    /// Subscribed again after [`Change::Disconnected`]. Events of the gap are lost:
    /// re-read what you show ([`Admin::breakers`](super::Admin::breakers)).
    Reconnected {
        /// How long the subscription was lost.
        after: Duration,
    },
}

/// The namespace's events, from [`Admin::changes`](super::Admin::changes). Never ends:
/// when the subscription is lost (the connection closed, or a `PING` after a silence
/// went unanswered) it says so, then subscribes again by itself (every 100 ms to 2 s)
/// until Redis answers.
pub struct ChangeStream {
    connection: Arc<FleetConnection>,
    channel: String,
    deadline: Duration,
    live: Option<Live>,
    /// When the subscription was lost, while it is.
    lost_at: Option<Instant>,
    retry: Duration,
}

struct Live {
    /// Kept to check a silent subscription with `PING`.
    sink: PubSubSink,
    messages: Pin<Box<dyn Stream<Item = redis::Msg> + Send>>,
}

impl std::fmt::Debug for ChangeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeStream")
            .field("channel", &self.channel)
            .field("connected", &self.live.is_some())
            .finish_non_exhaustive()
    }
}

impl ChangeStream {
    /// Subscribed (events from now on), or the error of the first attempt.
    pub(super) async fn new(
        connection: Arc<FleetConnection>,
        channel: String,
        deadline: Duration,
    ) -> Result<ChangeStream, StorageError> {
        let mut stream = ChangeStream {
            connection,
            channel,
            deadline,
            live: None,
            lost_at: None,
            retry: FIRST_RETRY,
        };
        stream.live = Some(stream.subscribe().await?);
        Ok(stream)
    }

    /// The channel followed.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// A new subscription. It borrows nothing of `self` across its awaits, so that
    /// [`ChangeStream::next`] is `Send` (a viewer spawns it) although the message stream
    /// is not `Sync`.
    fn subscribe(&self) -> impl std::future::Future<Output = Result<Live, StorageError>> + Send {
        let connection = Arc::clone(&self.connection);
        let channel = self.channel.clone();
        bounded("subscribe", self.deadline, async move {
            let mut pubsub = connection.pubsub().await?;
            pubsub.subscribe(&channel).await?;
            let (sink, messages) = pubsub.split();
            Ok(Live {
                sink,
                messages: Box::pin(messages),
            })
        })
    }

    /// Checks at compile time that a viewer can spawn [`ChangeStream::next`].
    #[allow(dead_code)]
    fn next_is_send(&mut self) -> impl Send + '_ {
        self.next()
    }

    /// The next change. Messages that are not events of a breaker are skipped.
    pub async fn next(&mut self) -> Change {
        loop {
            let Some(live) = self.live.as_mut() else {
                tokio::time::sleep(self.retry).await;
                match self.subscribe().await {
                    Ok(live) => {
                        self.live = Some(live);
                        self.retry = FIRST_RETRY;
                        let after = self.lost_at.take().map(|at| at.elapsed());
                        return Change::Reconnected {
                            after: after.unwrap_or_default(),
                        };
                    }
                    Err(_) => {
                        self.retry = (self.retry * 2).min(MAX_RETRY);
                        continue;
                    }
                }
            };
            let idle = self.deadline.clamp(Duration::from_secs(1), IDLE_CHECK);
            let message = match tokio::time::timeout(idle, live.messages.next()).await {
                Ok(Some(message)) => message,
                Ok(None) => return self.lost("Redis closed the connection".to_owned()),
                Err(_) => {
                    let ping =
                        tokio::time::timeout(self.deadline, live.sink.ping::<redis::Value>());
                    match ping.await {
                        Ok(Ok(_)) => continue,
                        Ok(Err(error)) => return self.lost(error.to_string()),
                        Err(_) => {
                            return self
                                .lost(format!("no answer to PING within {:?}", self.deadline))
                        }
                    }
                }
            };
            let Ok(payload) = message.get_payload::<String>() else {
                continue;
            };
            if let Some((service, snapshot)) = parse_event(&payload) {
                return Change::Breaker {
                    service: service.to_owned(),
                    snapshot,
                };
            }
        }
    }

    fn lost(&mut self, reason: String) -> Change {
        self.live = None;
        self.lost_at = Some(Instant::now());
        self.retry = FIRST_RETRY;
        Change::Disconnected { reason }
    }
}
