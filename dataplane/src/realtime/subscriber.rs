//! The replica's one Redis subscription: conversation events and device revocations. It
//! reconnects with backoff; after a reconnect every socket back-fills from PostgreSQL, since
//! events published while the subscription was down are gone from Redis.

use super::hub::Control;
use super::{LiveEvent, delivery_from, events_channel};
use crate::AppState;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

pub fn spawn(state: AppState, client: redis::Client) {
    tokio::spawn(async move {
        let namespace = state.config.redis_namespace.clone();
        let events = events_channel(&namespace);
        let revocations = super::revocations_channel(&namespace);
        let mut connected_before = false;
        let mut backoff = Duration::from_millis(100);
        let mut shutdown = state.shutdown.clone();
        loop {
            let pubsub = async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&events).await?;
                pubsub.subscribe(&revocations).await?;
                redis::RedisResult::Ok(pubsub)
            }
            .await;
            match pubsub {
                Ok(mut pubsub) => {
                    backoff = Duration::from_millis(100);
                    if connected_before {
                        tracing::info!("redis subscription restored; back-filling sockets from the database");
                        state.hub.broadcast_control(|| Control::Resync);
                    }
                    connected_before = true;
                    let mut stream = pubsub.on_message();
                    loop {
                        tokio::select! {
                            _ = shutdown.changed() => return,
                            message = stream.next() => {
                                let Some(message) = message else { break };
                                let Ok(payload) = message.get_payload::<String>() else { continue };
                                if message.get_channel_name() == revocations {
                                    handle_revocation(&state, &payload);
                                } else if let Ok(event) = serde_json::from_str::<LiveEvent>(&payload)
                                    && let Some(delivery) = delivery_from(event)
                                {
                                    state.hub.dispatch(Arc::new(delivery));
                                }
                            }
                        }
                    }
                    tracing::warn!("redis subscription lost; reconnecting");
                }
                Err(e) => tracing::warn!(error = %e, "cannot subscribe to redis; retrying"),
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}

fn handle_revocation(state: &AppState, payload: &str) {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(payload) else { return };
    if let Some(device_id) = value["device_id"].as_str().and_then(|d| d.parse().ok()) {
        let closed = state.hub.close_device(device_id);
        if closed > 0 {
            tracing::info!(%device_id, closed, "closed the sockets of a revoked device");
        }
    }
}
