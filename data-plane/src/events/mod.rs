//! Events leave the node on their own `ReportEvents` stream (SPEC §7).
//!
//! Request handlers hand finished events to an unbounded channel and never
//! wait on the control plane. One reporter task batches what queued up while
//! the previous batch was in flight, sends it and waits for its ack. When
//! the control plane is away, batches go to the [`spool::Spool`] and are
//! sent, oldest first, once it is back. When it is there but slower than
//! the node, the queue is held to `NodeConfig::max_queued_events`: the
//! excess moves to the spool while a batch awaits its ack, and spooled
//! batches follow live ones, one each, until the spool is empty. On
//! shutdown whatever is queued is spooled.

pub mod ids;
pub mod spool;
pub mod trace;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hookplane::api::v1::{self as api, node_sync_service_client::NodeSyncServiceClient};
use hookplane::convert;
use hookplane::model::{EncodedTrace, Event};
use rand::Rng as _;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::NodeConfig;
use crate::sync::{authorized, connect};
use spool::Spool;

/// Events per batch: one store transaction on the control plane.
const MAX_BATCH: usize = 500;
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Default of `NodeConfig::max_queued_events`: a few seconds of a node's
/// peak rate, each event the size of its trace (headers and payload).
pub const MAX_QUEUED_EVENTS: usize = 20_000;
/// How often the queue is measured while a batch awaits its ack.
const SPILL_CHECK: Duration = Duration::from_millis(50);

/// Where request handlers put finished events.
#[derive(Clone, Debug)]
pub struct EventSink {
    sender: mpsc::UnboundedSender<Event<EncodedTrace>>,
    pending: Arc<AtomicUsize>,
}

/// The reporter's end: the queue and the count of events neither
/// acknowledged nor spooled yet.
#[derive(Debug)]
pub struct EventQueue {
    receiver: mpsc::UnboundedReceiver<Event<EncodedTrace>>,
    pending: Arc<AtomicUsize>,
}

impl EventSink {
    /// A sink and the queue the reporter drains.
    pub fn new() -> (EventSink, EventQueue) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        (EventSink { sender, pending: pending.clone() }, EventQueue { receiver, pending })
    }

    /// Queues an event; never blocks.
    pub fn record(&self, event: Event<EncodedTrace>) {
        self.pending.fetch_add(1, Ordering::Relaxed);
        if self.sender.send(event).is_err() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("the event reporter stopped; an event was dropped");
        }
    }

    /// Events recorded but neither stored by the control plane nor spooled.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }
}

/// An open `ReportEvents` stream.
struct Stream {
    requests: mpsc::Sender<api::ReportEventsRequest>,
    acks: tonic::Streaming<api::ReportEventsResponse>,
    next_batch: u64,
}

impl Stream {
    async fn open(config: &NodeConfig) -> Result<Stream, tonic::Status> {
        let channel = connect(config).await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let (requests, receiver) = mpsc::channel(2);
        let request = authorized(config, ReceiverStream::new(receiver))?;
        let acks = NodeSyncServiceClient::new(channel).report_events(request).await?.into_inner();
        Ok(Stream { requests, acks, next_batch: 0 })
    }

    /// Sends a batch and waits until the control plane stored it; false if
    /// the stream broke. The caller keeps what it needs to retry: the
    /// batch is not copied on the happy path.
    async fn deliver(&mut self, events: Vec<api::NodeEvent>) -> bool {
        let batch = self.next_batch;
        self.next_batch += 1;
        if self.requests.send(api::ReportEventsRequest { batch, events }).await.is_err() {
            return false;
        }
        matches!(
            tokio::time::timeout(ACK_TIMEOUT, self.acks.message()).await,
            Ok(Ok(Some(ack))) if ack.batch == batch
        )
    }
}

/// Reports events until shutdown.
pub async fn report(config: Arc<NodeConfig>, queue: EventQueue, mut shutdown: watch::Receiver<bool>) {
    let EventQueue { receiver, pending } = queue;
    let mut backlog =
        Backlog { config: &config, events: receiver, pending, spool: Spool::open(config.cache_dir.clone()) };
    let mut stream: Option<Stream> = None;
    let mut backoff = BACKOFF_START;
    let mut next_attempt = tokio::time::Instant::now();
    loop {
        tokio::select! {
            biased;
            () = closing(&mut shutdown) => break,
            first = backlog.events.recv() => {
                let Some(first) = first else { break };
                let batch = drain(&config, first, &mut backlog.events);
                let count = batch.len();
                let delivered = match &mut stream {
                    // The copy kept for the spool shares each trace's bytes.
                    Some(open) => backlog.deliver(open, batch.clone()).await,
                    None => false,
                };
                if delivered {
                    backlog.pending.fetch_sub(count, Ordering::Relaxed);
                } else {
                    stream = None;
                    backlog.keep(batch).await;
                }
                // What spilled while the control plane lagged follows, a
                // batch after each live one, so it catches up under load.
                if let Some(open) = stream.as_mut().filter(|_| !backlog.spool.is_empty())
                    && !send_oldest(&mut backlog.spool, open).await
                {
                    stream = None;
                }
            }
            // ... and whenever no new event waits.
            () = std::future::ready(()), if stream.is_some() && !backlog.spool.is_empty() => {
                if let Some(open) = &mut stream
                    && !send_oldest(&mut backlog.spool, open).await
                {
                    stream = None;
                }
            }
            () = tokio::time::sleep_until(next_attempt), if stream.is_none() => {
                match Stream::open(&config).await {
                    Ok(mut open) => {
                        if flush(&mut backlog.spool, &mut open).await {
                            backoff = BACKOFF_START;
                            stream = Some(open);
                        }
                    }
                    Err(err) => tracing::debug!(error = %err, "event stream unavailable; spooling events"),
                }
                if stream.is_none() {
                    next_attempt = tokio::time::Instant::now() + rand::rng().random_range(backoff / 2..=backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
    // Whatever is still queued waits on disk for the next start.
    while let Ok(first) = backlog.events.try_recv() {
        let batch = drain(&config, first, &mut backlog.events);
        backlog.keep(batch).await;
    }
}

/// The reporter's queue and spool.
struct Backlog<'a> {
    config: &'a NodeConfig,
    events: mpsc::UnboundedReceiver<Event<EncodedTrace>>,
    pending: Arc<AtomicUsize>,
    spool: Spool,
}

impl Backlog<'_> {
    /// Delivers `batch`. While its ack is awaited, queued events beyond
    /// the node's limit move to a durable spool: a control plane that
    /// falls behind costs the node disk, not memory.
    async fn deliver(&mut self, open: &mut Stream, batch: Vec<api::NodeEvent>) -> bool {
        let acked = open.deliver(batch);
        tokio::pin!(acked);
        let mut check = tokio::time::interval(SPILL_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                delivered = &mut acked => return delivered,
                _ = check.tick(), if self.spool.is_durable() => self.spill_excess().await,
            }
        }
    }

    /// Moves the oldest queued events to the spool, a batch at a time,
    /// until at most `max_queued_events` remain.
    async fn spill_excess(&mut self) {
        while self.events.len() > self.config.max_queued_events {
            let Ok(first) = self.events.try_recv() else { break };
            let batch = drain(self.config, first, &mut self.events);
            tracing::warn!(events = batch.len(), "the control plane lags behind; spooling events to disk");
            self.keep(batch).await;
        }
    }

    /// Spools a batch; its events are no longer pending.
    async fn keep(&mut self, batch: Vec<api::NodeEvent>) {
        let count = batch.len();
        if let Err(err) = self.spool.push(batch).await {
            tracing::error!(error = %err, events = count, "could not spool events; they are lost");
        }
        self.pending.fetch_sub(count, Ordering::Relaxed);
    }
}

async fn closing(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|closing| *closing).await;
}

/// `first` and whatever else is queued, up to a batch, in the form they
/// are reported in (their traces were encoded when they were recorded).
fn drain(
    config: &NodeConfig,
    first: Event<EncodedTrace>,
    events: &mut mpsc::UnboundedReceiver<Event<EncodedTrace>>,
) -> Vec<api::NodeEvent> {
    let mut batch = Vec::with_capacity(events.len().min(MAX_BATCH - 1) + 1);
    let mut add = |mut event: Event<EncodedTrace>| {
        if event.node_id.is_empty() {
            event.node_id = config.node_id.clone();
        }
        batch.push(convert::node_event_to_api(event));
    };
    add(first);
    for _ in 1..MAX_BATCH {
        match events.try_recv() {
            Ok(event) => add(event),
            Err(_) => break,
        }
    }
    batch
}

/// Sends every spooled batch, oldest first; false if the stream broke.
async fn flush(spool: &mut Spool, stream: &mut Stream) -> bool {
    while !spool.is_empty() {
        if !send_oldest(spool, stream).await {
            return false;
        }
    }
    true
}

/// Sends the oldest spooled batch, if any; false if the stream broke.
async fn send_oldest(spool: &mut Spool, stream: &mut Stream) -> bool {
    // A spooled batch stays on disk until its ack, so it is sent as read.
    let Some((handle, batch)) = spool.oldest() else { return true };
    if !stream.deliver(batch).await {
        return false;
    }
    spool.remove(handle);
    true
}
