//! What feeds a projection builder: JetStream (a durable pull consumer per projection) or the
//! in-process bus. Either way the store is the fallback: a builder catches up from it when it
//! starts, when the bus shows a gap, and on a slow timer, so it converges whatever the bus did.
use crate::projector::{Projection, Projector};
use async_nats::jetstream::{self, consumer, AckKind};
use bus::{Link, LocalBus, RelayConfig};
use futures::StreamExt;
use std::future::Future;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tracing::Instrument;

/// How often a builder looks at the store even when the bus is quiet.
const STORE_POLL: Duration = Duration::from_secs(5);
/// Most messages applied in one transaction.
const MAX_BATCH: usize = 1_000;
/// How long a builder waits for more messages after the first of a batch.
const GATHER: Duration = Duration::from_millis(10);
/// The same on the in-process bus (embedded SQLite): every batch is a turn of the database's
/// single writer that bookings wait for, so builders take fewer, larger turns.
const LOCAL_GATHER: Duration = Duration::from_millis(30);

/// Follows the in-process bus until `shutdown`.
pub async fn follow_local<P: Projection>(
    projector: Projector<P>,
    bus: LocalBus,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut rx = bus.subscribe();
    catch_up_logged(&projector).await;
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            batch = rx.recv() => match batch {
                Ok(first) => {
                    // Let the batches of a burst arrive, so one transaction carries them.
                    let mut links: Vec<Link> = first.as_ref().clone();
                    let until = tokio::time::Instant::now() + LOCAL_GATHER;
                    let mut lagged = false;
                    while links.len() < MAX_BATCH {
                        match tokio::time::timeout_at(until, rx.recv()).await {
                            Ok(Ok(more)) => links.extend(more.iter().cloned()),
                            Ok(Err(RecvError::Lagged(_))) => {
                                lagged = true;
                                break;
                            }
                            Ok(Err(RecvError::Closed)) | Err(_) => break,
                        }
                    }
                    if let Err(e) = traced_apply(&projector, &links).await {
                        tracing::warn!(error = %e, projection = P::NAME, "applying from the bus failed");
                    }
                    if lagged {
                        catch_up_logged(&projector).await;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, projection = P::NAME, "fell behind the bus; reading the store");
                    catch_up_logged(&projector).await;
                }
                Err(RecvError::Closed) => return,
            },
            _ = tokio::time::sleep(STORE_POLL) => catch_up_logged(&projector).await,
        }
    }
}

/// Applies `links`, in a span of each trace they continue (`store::trace`): each traced event
/// gets its own span, open while its batch is applied; the batch's work runs in the first.
async fn traced_apply<P: Projection>(
    projector: &Projector<P>,
    links: &[Link],
) -> Result<usize, store::StoreError> {
    let spans: Vec<tracing::Span> = if store::trace::enabled() {
        links
            .iter()
            .filter_map(|link| {
                let traceparent = link.traceparent.as_deref()?;
                let span = tracing::info_span!(
                    "project",
                    otel.kind = "consumer",
                    projection = P::NAME,
                    position = link.event.position
                );
                store::trace::continue_from(&span, traceparent);
                Some(span)
            })
            .collect()
    } else {
        Vec::new()
    };
    let applied = match spans.first() {
        Some(span) => {
            projector
                .apply_from_bus(links)
                .instrument(span.clone())
                .await
        }
        None => projector.apply_from_bus(links).await,
    };
    drop(spans);
    applied
}

async fn catch_up_logged<P: Projection>(projector: &Projector<P>) {
    if let Err(e) = projector.catch_up().await {
        tracing::warn!(error = %e, projection = P::NAME, "catching up from the store failed");
    }
}

/// The durable consumer name of a projection.
pub fn durable_name(projection: &str) -> String {
    format!("zhilego-projection-{projection}")
}

/// Follows the JetStream event stream with a durable pull consumer until `shutdown`;
/// a batch is acknowledged (its last message, `AckPolicy::All`) after the transaction that
/// applied it commits. Sets itself up
/// again, with growing pauses, while NATS is away.
pub async fn follow_jetstream<P: Projection>(
    projector: Projector<P>,
    nats: async_nats::Client,
    config: RelayConfig,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut pause = Duration::from_millis(100);
    loop {
        catch_up_logged(&projector).await;
        let run = consume(&projector, &nats, &config);
        tokio::select! {
            _ = &mut shutdown => return,
            outcome = run => {
                match outcome {
                    Ok(()) => pause = Duration::from_millis(100),
                    Err(e) => {
                        tracing::warn!(error = %e, projection = P::NAME, retry_in_ms = pause.as_millis() as u64, "JetStream consumer stopped");
                    }
                }
            }
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Why a JetStream consumer stopped (it is set up again after a pause).
#[derive(Debug, thiserror::Error)]
enum FeedError {
    #[error("{0}")]
    JetStream(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("the message stream ended")]
    Ended,
}

async fn consume<P: Projection>(
    projector: &Projector<P>,
    nats: &async_nats::Client,
    config: &RelayConfig,
) -> Result<(), FeedError> {
    let js = jetstream::new(nats.clone());
    let stream = js
        .get_or_create_stream(bus::relay::stream_config(config))
        .await
        .map_err(|e| FeedError::JetStream(e.into()))?;
    let name = durable_name(P::NAME);
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &name,
            consumer::pull::Config {
                durable_name: Some(name.clone()),
                // One acknowledgement per batch: acking a message acks every one before it.
                ack_policy: consumer::AckPolicy::All,
                deliver_policy: consumer::DeliverPolicy::All,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 20_000,
                filter_subject: format!("{}.>", config.subject_prefix),
                num_replicas: config.replicas,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| FeedError::JetStream(e.into()))?;
    let messages = consumer
        .stream()
        .max_messages_per_batch(MAX_BATCH)
        .heartbeat(Duration::from_secs(5))
        .messages()
        .await
        .map_err(|e| FeedError::JetStream(e.into()))?;
    let mut batches = messages.ready_chunks(MAX_BATCH);
    let mut poll = tokio::time::interval(STORE_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let chunk = tokio::select! {
            chunk = batches.next() => chunk,
            _ = poll.tick() => {
                projector.catch_up().await?;
                continue;
            }
        };
        let Some(mut chunk) = chunk else {
            return Err(FeedError::Ended);
        };
        // Give a burst a few milliseconds to arrive, so one transaction carries it.
        let until = tokio::time::Instant::now() + GATHER;
        while chunk.len() < MAX_BATCH {
            match tokio::time::timeout_at(until, batches.next()).await {
                Ok(Some(more)) => chunk.extend(more),
                Ok(None) | Err(_) => break,
            }
        }
        let mut messages = Vec::with_capacity(chunk.len());
        let mut links: Vec<Link> = Vec::with_capacity(chunk.len());
        for item in chunk {
            let message = item.map_err(|e| FeedError::JetStream(e.into()))?;
            match bus::decode(&message.payload, message.headers.as_ref()) {
                Ok(link) => {
                    links.push(link);
                    messages.push(message);
                }
                Err(e) => {
                    // Not ours to apply; the store (the source of truth) fills its place.
                    tracing::error!(error = %e, subject = %message.subject, "undecodable event message");
                    let _ = message.ack_with(AckKind::Term).await;
                }
            }
        }
        traced_apply(projector, &links).await?;
        if let Some(last) = messages.last() {
            last.ack().await.map_err(FeedError::JetStream)?;
        }
    }
}
