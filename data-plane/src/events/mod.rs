//! Events leave the node on their own `ReportEvents` stream (SPEC §7).
//!
//! An event is *kept* once the control plane stored it (its ack) or it is
//! in the node's spool on disk. A request handler records its event and
//! gets a [`Receipt`]; it answers the sender only once the receipt says
//! the event is kept, so an answered call has its event across `kill -9`
//! and control-plane outages (SPEC §4; ids make a resend harmless).
//!
//! One reporter task batches what queued up while the previous batch was
//! in flight, sends it and waits for its ack: batches form by themselves
//! under load, so many handlers share one round trip and one insert. When
//! the control plane is away, batches go to the [`spool::Spool`] and are
//! sent, oldest first, once it is back. When it is there but slow — no
//! ack within [`SPOOL_AFTER`] — the batch in flight is spooled too (the
//! copy is dropped when the ack comes) and so is whatever queues behind
//! it, so a lagging control plane costs handlers a bounded wait and the
//! node disk, not memory; spooled batches then follow live ones, one each.
//!
//! The reporter runs until every [`EventSink`] is gone, so no event is
//! recorded after it stops: the node drains its HTTP requests and kept
//! calls first (see `DataPlane::shutdown`).

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
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::NodeConfig;
use crate::sync::{authorized, connect};
use spool::Spool;

/// Events per batch: one store transaction on the control plane.
const MAX_BATCH: usize = 500;
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long handlers wait on an ack before their events are spooled
/// instead: the control plane answers in milliseconds when well.
pub const SPOOL_AFTER: Duration = Duration::from_millis(500);
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Default of `NodeConfig::max_queued_events`: a few seconds of a node's
/// peak rate, each event the size of its trace (headers and payload).
pub const MAX_QUEUED_EVENTS: usize = 20_000;
/// How often the queue is measured while a batch awaits its ack.
const SPILL_CHECK: Duration = Duration::from_millis(50);

/// An event could be neither stored nor spooled (the disk refused it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the event could be neither stored by the control plane nor spooled on the node")]
pub struct EventLost;

/// Says when a recorded event is kept.
#[derive(Debug)]
#[must_use = "an answer may tell of an event only once it is kept"]
pub struct Receipt(oneshot::Receiver<Result<(), EventLost>>);

impl Receipt {
    /// Completes once the event is stored by the control plane or spooled
    /// on disk (in memory, for a node without a cache dir).
    pub async fn kept(self) -> Result<(), EventLost> {
        self.0.await.unwrap_or(Err(EventLost))
    }
}

/// An event and the handler waiting for it to be kept.
#[derive(Debug)]
struct Queued {
    event: Event<EncodedTrace>,
    kept: oneshot::Sender<Result<(), EventLost>>,
}

/// Where request handlers put finished events.
#[derive(Clone, Debug)]
pub struct EventSink {
    sender: mpsc::UnboundedSender<Queued>,
    pending: Arc<AtomicUsize>,
}

/// The reporter's end: the queue and the count of events neither
/// acknowledged nor spooled yet.
#[derive(Debug)]
pub struct EventQueue {
    receiver: mpsc::UnboundedReceiver<Queued>,
    pending: Arc<AtomicUsize>,
}

impl EventSink {
    /// A sink and the queue the reporter drains.
    pub fn new() -> (EventSink, EventQueue) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        (EventSink { sender, pending: pending.clone() }, EventQueue { receiver, pending })
    }

    /// Queues an event; never blocks. Await the receipt before telling
    /// anyone the event exists.
    pub fn record(&self, event: Event<EncodedTrace>) -> Receipt {
        let (kept, receipt) = oneshot::channel();
        self.pending.fetch_add(1, Ordering::Relaxed);
        if let Err(refused) = self.sender.send(Queued { event, kept }) {
            // The reporter outlives every sink; this is a bug, and the
            // receipt says so to the handler instead of a false answer.
            self.pending.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("the event reporter stopped before its sinks; an event was not kept");
            let _ = refused.0.kept.send(Err(EventLost));
        }
        Receipt(receipt)
    }

    /// Events recorded but neither stored by the control plane nor spooled.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// The count behind [`EventSink::pending`], to read without holding a
    /// sink (a sink keeps the reporter running).
    pub fn pending_count(&self) -> Arc<AtomicUsize> {
        self.pending.clone()
    }
}

/// Events in the form they are reported in, and who waits on them.
struct Batch {
    events: Vec<api::NodeEvent>,
    receipts: Vec<oneshot::Sender<Result<(), EventLost>>>,
}

impl Batch {
    /// Tells every waiting handler how its event fared.
    fn settle(&mut self, result: Result<(), EventLost>) {
        for receipt in self.receipts.drain(..) {
            let _ = receipt.send(result);
        }
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

/// Reports events until every sink is gone, then spools what could not be
/// delivered.
pub async fn report(config: Arc<NodeConfig>, queue: EventQueue) {
    let EventQueue { receiver, pending } = queue;
    let mut backlog =
        Backlog { config: &config, events: receiver, pending, spool: Spool::open(config.cache_dir.clone()) };
    let mut stream: Option<Stream> = None;
    let mut backoff = BACKOFF_START;
    let mut next_attempt = tokio::time::Instant::now();
    loop {
        tokio::select! {
            biased;
            first = backlog.events.recv() => {
                // `None` only once every sink is gone and the queue is empty.
                let Some(first) = first else { break };
                let batch = drain(&config, first, &mut backlog.events);
                match &mut stream {
                    Some(open) => {
                        if !backlog.deliver(open, batch).await {
                            stream = None;
                        }
                    }
                    None => backlog.keep(batch).await,
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
}

/// The reporter's queue and spool.
struct Backlog<'a> {
    config: &'a NodeConfig,
    events: mpsc::UnboundedReceiver<Queued>,
    pending: Arc<AtomicUsize>,
    spool: Spool,
}

impl Backlog<'_> {
    /// Delivers `batch`; false if the stream broke (the batch is then
    /// spooled). While its ack is awaited, queued events beyond the
    /// node's limit move to the spool; once the ack is [`SPOOL_AFTER`]
    /// late, the batch itself is spooled (its handlers answered) and so
    /// is everything queued behind it.
    async fn deliver(&mut self, open: &mut Stream, mut batch: Batch) -> bool {
        let count = batch.events.len();
        // The copy kept for the spool shares each trace's bytes.
        let acked = open.deliver(batch.events.clone());
        tokio::pin!(acked);
        let mut check = tokio::time::interval(SPILL_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let late = tokio::time::Instant::now() + SPOOL_AFTER;
        // Whether the handlers were answered early, and the spooled copy
        // of the batch that allowed it (none in memory).
        let mut early: Option<Option<u64>> = None;
        let delivered = loop {
            tokio::select! {
                delivered = &mut acked => break delivered,
                _ = check.tick() => {
                    let lagging = tokio::time::Instant::now() >= late;
                    if lagging && early.is_none() {
                        early = self.keep_copy(&mut batch).await;
                    }
                    self.spill(lagging).await;
                }
            }
        };
        match (delivered, early) {
            (true, None) => {
                self.pending.fetch_sub(count, Ordering::Relaxed);
                batch.settle(Ok(()));
            }
            // Stored and spooled both: the resend the copy would make is
            // absorbed by the ids, but there is no need for it.
            (true, Some(Some(copy))) => self.spool.remove(Some(copy)),
            (true, Some(None)) => {}
            (false, None) => self.keep(batch).await,
            // The copy on disk is the batch now.
            (false, Some(Some(_))) => {}
            // Answered already; in memory, the batch waits in the spool.
            (false, Some(None)) => {
                let _ = self.spool.push(batch.events).await;
            }
        }
        delivered
    }

    /// Spools a copy of a batch still in flight and settles its handlers.
    /// `Some(handle)` when they were answered: the handle of the copy on
    /// disk (removed if the ack comes after all), or none for a node that
    /// keeps batches in memory, where the batch itself is as safe.
    async fn keep_copy(&mut self, batch: &mut Batch) -> Option<Option<u64>> {
        let count = batch.events.len();
        tracing::warn!(events = count, "the control plane is slow to store events; spooling them");
        if !self.spool.is_durable() {
            self.pending.fetch_sub(count, Ordering::Relaxed);
            batch.settle(Ok(()));
            return Some(None);
        }
        match self.spool.push(batch.events.clone()).await {
            Ok(handle) => {
                self.pending.fetch_sub(count, Ordering::Relaxed);
                batch.settle(Ok(()));
                Some(handle)
            }
            // Not settled: the ack, or the spool after a broken stream,
            // may still keep the batch.
            Err(err) => {
                tracing::error!(error = %err, events = count, "could not spool a late batch");
                None
            }
        }
    }

    /// Moves queued events to the spool, a batch at a time: all of them
    /// while the control plane lags, else those beyond the node's limit.
    async fn spill(&mut self, lagging: bool) {
        let keep_queued = if lagging { 0 } else { self.config.max_queued_events };
        while self.events.len() > keep_queued {
            let Ok(first) = self.events.try_recv() else { break };
            let batch = drain(self.config, first, &mut self.events);
            tracing::warn!(events = batch.events.len(), "the control plane lags behind; spooling events to disk");
            self.keep(batch).await;
        }
    }

    /// Spools a batch and settles its handlers; its events are no longer
    /// pending.
    async fn keep(&mut self, mut batch: Batch) {
        let count = batch.events.len();
        let result = self.spool.push(batch.events.clone()).await;
        self.pending.fetch_sub(count, Ordering::Relaxed);
        match result {
            Ok(_) => batch.settle(Ok(())),
            Err(err) => {
                tracing::error!(error = %err, events = count, "could not spool events; they are lost");
                batch.settle(Err(EventLost));
            }
        }
    }
}

/// `first` and whatever else is queued, up to a batch, in the form they
/// are reported in (their traces were encoded when they were recorded).
fn drain(config: &NodeConfig, first: Queued, events: &mut mpsc::UnboundedReceiver<Queued>) -> Batch {
    let capacity = events.len().min(MAX_BATCH - 1) + 1;
    let mut batch = Batch { events: Vec::with_capacity(capacity), receipts: Vec::with_capacity(capacity) };
    let mut add = |Queued { mut event, kept }: Queued| {
        if event.node_id.is_empty() {
            event.node_id = config.node_id.clone();
        }
        batch.events.push(convert::node_event_to_api(event));
        batch.receipts.push(kept);
    };
    add(first);
    for _ in 1..MAX_BATCH {
        match events.try_recv() {
            Ok(queued) => add(queued),
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
