//! Background upkeep of a fleet: the pub/sub subscription that brings other processes'
//! writes, and the periodic resync that repairs what pub/sub lost.

use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;

use crate::fleet::connection::Events;
use crate::fleet::{jittered, Fleet};

/// Keeps a subscription to the namespace's events, reconnecting with backoff (to the next
/// cluster node, or to the master the Sentinels name now) and resyncing after every
/// (re)subscribe.
pub(crate) async fn subscribe(
    fleet: Weak<Fleet>,
    mut events: Events,
    channel: String,
    mut closed: watch::Receiver<()>,
) {
    let mut delay = Duration::from_millis(100);
    let mut lost = false;
    loop {
        let connect = async {
            let mut pubsub = events.pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        if let Ok(Ok(pubsub)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
            delay = Duration::from_millis(100);
            if std::mem::take(&mut lost) {
                tracing::info!(%channel, "infuse event subscription restored");
            }
            let Some(f) = fleet.upgrade() else { return };
            tokio::spawn(async move { f.resync().await });
            let mut messages = pubsub.into_on_message();
            loop {
                tokio::select! {
                    message = messages.next() => match message {
                        Some(message) => {
                            let Some(f) = fleet.upgrade() else { return };
                            if let Ok(payload) = message.get_payload::<String>() {
                                f.on_event(&payload);
                            }
                        }
                        None => break,
                    },
                    _ = closed.changed() => return,
                }
            }
        }
        if !std::mem::replace(&mut lost, true) {
            tracing::warn!(%channel, "infuse event subscription lost; reconnecting (periodic resync goes on)");
        }
        tokio::select! {
            _ = tokio::time::sleep(jittered(delay)) => {}
            _ = closed.changed() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

pub(crate) async fn resync_periodically(
    fleet: Weak<Fleet>,
    interval: Duration,
    mut closed: watch::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(jittered(interval)) => {}
            _ = closed.changed() => return,
        }
        let Some(f) = fleet.upgrade() else { return };
        f.resync().await;
    }
}
