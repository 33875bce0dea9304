//! The reporter: one task that turns queued events into batches on the
//! `ReportEvents` stream, or into spooled batches, and settles each
//! event's receipt once its batch is kept.
//!
//! Nothing it waits on may leave handlers waiting without bound: a
//! connection attempt runs beside the queue (events meanwhile go to the
//! spool), spooled batches go out one per turn, and while any ack is
//! awaited the queue is watched — beyond `max_queued_events`, or once the
//! ack is [`SPOOL_AFTER`] late, queued events move to the spool.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hookplane::api::v1::{self as api, node_sync_service_client::NodeSyncServiceClient};
use hookplane_convert::{self as convert, EncodedTrace};
use hookplane_model::Event;
use rand::Rng as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::LocalEvents;
use super::spool::Spool;
use super::{Batch, EventLost, EventQueue, Outgoing, Queued};
use crate::NodeConfig;
use crate::sync::{authorized, connect};

/// Events per batch: one store transaction on the control plane.
const MAX_BATCH: usize = 500;
/// Trace bytes past which a batch takes no more events; the event that
/// passes it still goes, so a batch holds at most one larger event, whose
/// trace is at most `trace::MAX_TRACE_BYTES`. Each trace holds its call's
/// payload (up to the node's body limit, 1 MiB by default), and a batch
/// is one `ReportEvents` message: the control plane takes messages far
/// larger than this (`MAX_REPORTED_MESSAGE_BYTES` there), where gRPC's
/// default limit, 4 MiB, refused five calls of 900 KB batched together,
/// and the spooled batch with them on every resend.
pub const MAX_BATCH_BYTES: usize = 2 << 20;
/// A batch unacknowledged this long means the stream is broken (checked
/// on [`SPILL_CHECK`]'s ticks: [`Backlog::watching`]).
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long handlers wait on an ack before their events are spooled
/// instead: the control plane answers in milliseconds when well.
pub const SPOOL_AFTER: Duration = Duration::from_millis(500);
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How often the queue is measured while a batch awaits its ack.
const SPILL_CHECK: Duration = Duration::from_millis(50);
/// How long a stopping node keeps offering the control plane what its
/// spool holds in memory (a node without a cache dir), which ends with
/// the process.
const LAST_DELIVERY: Duration = Duration::from_secs(10);
/// How long one batch of that last delivery waits for its ack before the
/// stream is given up for a new one: a stream that broke unnoticed would
/// otherwise take the whole [`LAST_DELIVERY`] ([`ACK_TIMEOUT`] is as long).
const LAST_ACK_TIMEOUT: Duration = Duration::from_secs(3);

/// Where batches go: an open `ReportEvents` stream, or the control plane
/// in this process.
enum Stream {
    Remote {
        requests: mpsc::Sender<api::ReportEventsRequest>,
        acks: tonic::Streaming<api::ReportEventsResponse>,
        next_batch: u64,
    },
    Local(LocalEvents),
}

type Opening = Pin<Box<dyn Future<Output = Result<Stream, tonic::Status>> + Send>>;

impl Stream {
    /// Opens a stream, giving up after [`ACK_TIMEOUT`] (connecting has
    /// its own shorter timeout; the call itself had none).
    fn open(config: Arc<NodeConfig>) -> Opening {
        Box::pin(async move {
            if let Some(local) = &config.local_events {
                return Ok(Stream::Local(local.clone()));
            }
            let opening = async {
                let channel = connect(&config).await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                let (requests, receiver) = mpsc::channel(2);
                let request = authorized(&config, ReceiverStream::new(receiver))?;
                let acks = NodeSyncServiceClient::new(channel).report_events(request).await?.into_inner();
                Ok(Stream::Remote { requests, acks, next_batch: 0 })
            };
            tokio::time::timeout(ACK_TIMEOUT, opening)
                .await
                .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("opening the event stream timed out")))
        })
    }

    /// Sends a batch and waits until the control plane stored it; false if
    /// the stream broke.
    async fn deliver(&mut self, outgoing: Outgoing) -> bool {
        let (requests, acks, next_batch) = match self {
            Stream::Local(local) => {
                let events = match outgoing {
                    Outgoing::Recorded(events) => events,
                    Outgoing::Spooled(events) => from_spool(events),
                };
                return local.store(events).await;
            }
            Stream::Remote { requests, acks, next_batch } => (requests, acks, next_batch),
        };
        let events = match outgoing {
            Outgoing::Recorded(events) => events.iter().map(convert::node_event_to_api).collect(),
            Outgoing::Spooled(events) => events,
        };
        let batch = *next_batch;
        *next_batch += 1;
        if requests.send(api::ReportEventsRequest { batch, events }).await.is_err() {
            return false;
        }
        matches!(acks.message().await, Ok(Some(ack)) if ack.batch == batch)
    }
}

/// Reports events until every sink is gone (spooling what it could not
/// deliver), so no event can be recorded after it stops; a spool in memory
/// is then offered to the control plane for up to [`LAST_DELIVERY`].
pub async fn report(config: Arc<NodeConfig>, queue: EventQueue) {
    let EventQueue { receiver, pending } = queue;
    let spool = Spool::open(config.cache_dir.clone()).await;
    let mut backlog = Backlog { config: config.clone(), events: receiver, pending, spool, check: spill_check() };
    // In process, the control plane is there from the start.
    let mut stream: Option<Stream> = config.local_events.clone().map(Stream::Local);
    let mut opening: Option<Opening> = None;
    let mut backoff = BACKOFF_START;
    let mut next_attempt = tokio::time::Instant::now();
    loop {
        tokio::select! {
            // Connection attempts come first: under steady load the queue
            // is never empty, and they must still get their turn.
            biased;
            opened = async {
                match opening.as_mut() {
                    Some(attempt) => attempt.await,
                    None => std::future::pending().await,
                }
            }, if opening.is_some() => {
                opening = None;
                match opened {
                    // The backoff resets once a batch is delivered, not here:
                    // a stream that opens and then fails every batch (a store
                    // refusing, in process) must not be retried at once.
                    Ok(open) => stream = Some(open),
                    Err(err) => {
                        tracing::debug!(error = %err, "event stream unavailable; spooling events");
                        next_attempt = tokio::time::Instant::now() + rand::rng().random_range(backoff / 2..=backoff);
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
            () = tokio::time::sleep_until(next_attempt), if stream.is_none() && opening.is_none() => {
                opening = Some(Stream::open(config.clone()));
            }
            first = backlog.events.recv() => {
                // `None` only once every sink is gone and the queue is empty.
                let Some(first) = first else { break };
                let batch = drain(&config, first, &mut backlog.events);
                let delivered = match &mut stream {
                    Some(open) => Some(backlog.deliver(open, batch).await),
                    None => {
                        backlog.keep(batch).await;
                        None
                    }
                };
                settle(delivered, &mut stream, &mut backoff, &mut next_attempt);
                // What spilled while the control plane lagged follows, a
                // batch after each live one, so it catches up under load.
                if let Some(open) = stream.as_mut().filter(|_| !backlog.spool.is_empty()) {
                    let delivered = backlog.send_oldest(open).await;
                    settle(Some(delivered), &mut stream, &mut backoff, &mut next_attempt);
                }
            }
            // ... and whenever no new event waits.
            () = std::future::ready(()), if stream.is_some() && !backlog.spool.is_empty() => {
                if let Some(open) = &mut stream {
                    let delivered = backlog.send_oldest(open).await;
                    settle(Some(delivered), &mut stream, &mut backoff, &mut next_attempt);
                }
            }
        }
    }
    // A spool on disk waits for the next start; one in memory would end
    // here, with answered calls' events in it.
    if !backlog.spool.is_durable() && !backlog.spool.is_empty() {
        backlog.last_delivery(stream).await;
    }
}

/// The reporter's [`Backlog::check`]: ticks [`SPILL_CHECK`] apart, the
/// first one that far from now; one late comes at once, the next a period
/// after it.
fn spill_check() -> tokio::time::Interval {
    let mut check = tokio::time::interval_at(tokio::time::Instant::now() + SPILL_CHECK, SPILL_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check
}

/// After a delivery attempt (`None`: none was made): a success resets the
/// backoff; a failure drops the stream and waits the backoff, jittered,
/// before the next one opens.
fn settle(
    delivered: Option<bool>,
    stream: &mut Option<Stream>,
    backoff: &mut Duration,
    next_attempt: &mut tokio::time::Instant,
) {
    match delivered {
        Some(true) => *backoff = BACKOFF_START,
        Some(false) => {
            *stream = None;
            *next_attempt = tokio::time::Instant::now() + rand::rng().random_range(*backoff / 2..=*backoff);
            *backoff = (*backoff * 2).min(BACKOFF_MAX);
        }
        None => {}
    }
}

/// The reporter's queue and spool.
struct Backlog {
    config: Arc<NodeConfig>,
    events: mpsc::UnboundedReceiver<Queued>,
    pending: Arc<AtomicUsize>,
    spool: Spool,
    /// Ticks while an ack is awaited ([`Backlog::watching`]), one timer
    /// for the reporter's life. An interval made per batch, with a timeout
    /// per batch for the ack beside it, registered and removed two timers
    /// and ran a first tick at once for every batch: below peak, where a
    /// batch holds an event or two, 5.7k instructions (2.7 %) of the
    /// trigger-load bench's end-to-end call, counted at 200 calls/s under
    /// callgrind (`docs/benchmarks.md`).
    check: tokio::time::Interval,
}

/// Handlers answered before their batch's ack: with the handle of the
/// batch's copy on disk (none for a node whose spool is memory).
type Early = Option<Option<u64>>;

impl Backlog {
    /// Delivers `batch`; false if the stream broke (the batch is then
    /// spooled).
    async fn deliver(&mut self, open: &mut Stream, mut batch: Batch) -> bool {
        let count = batch.events.len();
        let acked = open.deliver(Outgoing::Recorded(batch.events.clone()));
        let (delivered, early) = self.watching(acked, Some(&mut batch)).await;
        match (delivered, early) {
            (true, None) => {
                self.pending.fetch_sub(count, Ordering::Relaxed);
                batch.settle(Ok(()));
            }
            // Stored and spooled both: the resend the copy would make is
            // absorbed by the ids, but there is no need for it.
            (true, Some(Some(copy))) => self.spool.remove(Some(copy)).await,
            (true, Some(None)) => {}
            (false, None) => self.keep(batch).await,
            // The copy on disk is the batch now.
            (false, Some(Some(_))) => {}
            // Answered already; in memory, the batch waits in the spool.
            (false, Some(None)) => {
                let _ = self.spool.push(batch.reported()).await;
            }
        }
        delivered
    }

    /// Offers the spool to the control plane until it is empty or
    /// [`LAST_DELIVERY`] has passed, opening a stream as often as one
    /// breaks; what is left is lost, and logged as such.
    async fn last_delivery(&mut self, mut stream: Option<Stream>) {
        let deadline = tokio::time::Instant::now() + LAST_DELIVERY;
        let mut backoff = BACKOFF_START;
        let delivering = async {
            while !self.spool.is_empty() {
                let open = match stream.as_mut() {
                    Some(open) => open,
                    None => match Stream::open(self.config.clone()).await {
                        Ok(open) => stream.insert(open),
                        Err(err) => {
                            tracing::debug!(error = %err, "event stream unavailable while stopping");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(BACKOFF_MAX);
                            continue;
                        }
                    },
                };
                let delivered = tokio::time::timeout(LAST_ACK_TIMEOUT, self.send_oldest(open)).await;
                if delivered != Ok(true) {
                    stream = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        };
        // Cut at the deadline, a batch being sent stays in the spool.
        let _ = tokio::time::timeout_at(deadline, delivering).await;
        if !self.spool.is_empty() {
            tracing::error!(
                events = self.spool.events_in_memory(),
                "stopping with events the control plane did not take; without a cache dir they are lost"
            );
        }
    }

    /// Sends the oldest spooled batch, if any; false if the stream broke.
    /// A spooled batch stays on disk until its ack, so it is sent as read.
    async fn send_oldest(&mut self, open: &mut Stream) -> bool {
        let Some((handle, events)) = self.spool.oldest().await else { return true };
        let (delivered, _) = self.watching(open.deliver(Outgoing::Spooled(events)), None).await;
        if delivered {
            self.spool.remove(handle).await;
        }
        delivered
    }

    /// Awaits `acked` while keeping handlers answered: queued events beyond
    /// the node's limit move to the spool; once the ack is [`SPOOL_AFTER`]
    /// late, all of them do, and so does a copy of `batch` (whose handlers
    /// are then answered). An ack [`ACK_TIMEOUT`] late is given up on
    /// (false: the stream is broken), within a tick of it.
    async fn watching(&mut self, acked: impl Future<Output = bool>, mut batch: Option<&mut Batch>) -> (bool, Early) {
        tokio::pin!(acked);
        let started = tokio::time::Instant::now();
        let (late, broken) = (started + SPOOL_AFTER, started + ACK_TIMEOUT);
        let mut early: Early = None;
        loop {
            tokio::select! {
                // An ack that came is taken, even with the timeout's tick.
                biased;
                delivered = &mut acked => return (delivered, early),
                _ = self.check.tick() => {
                    let now = tokio::time::Instant::now();
                    if now >= broken {
                        return (false, early);
                    }
                    let lagging = now >= late;
                    if lagging && early.is_none() && let Some(batch) = batch.as_deref_mut() {
                        early = self.keep_copy(batch).await;
                    }
                    self.spill(lagging).await;
                }
            }
        }
    }

    /// Spools a copy of a batch still in flight and settles its handlers.
    async fn keep_copy(&mut self, batch: &mut Batch) -> Early {
        let count = batch.events.len();
        tracing::warn!(events = count, "the control plane is slow to store events; spooling them");
        if !self.spool.is_durable() {
            self.pending.fetch_sub(count, Ordering::Relaxed);
            batch.settle(Ok(()));
            return Some(None);
        }
        match self.spool.push(batch.reported()).await {
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
            let batch = drain(&self.config, first, &mut self.events);
            tracing::warn!(events = batch.events.len(), "the control plane lags behind; spooling events to disk");
            self.keep(batch).await;
        }
    }

    /// Spools a batch and settles its handlers; its events are no longer
    /// pending.
    async fn keep(&mut self, mut batch: Batch) {
        let count = batch.events.len();
        let result = self.spool.push(batch.reported()).await;
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

/// `first` and whatever else is queued, up to a batch of [`MAX_BATCH`]
/// events or [`MAX_BATCH_BYTES`] of traces (encoded when they were
/// recorded).
fn drain(config: &NodeConfig, first: Queued, events: &mut mpsc::UnboundedReceiver<Queued>) -> Batch {
    let capacity = events.len().min(MAX_BATCH - 1) + 1;
    let (mut recorded, mut receipts) = (Vec::with_capacity(capacity), Vec::with_capacity(capacity));
    let mut add = |Queued { mut event, kept }: Queued| {
        if event.node_id.is_empty() {
            event.node_id = config.node_id.clone();
        }
        recorded.push(event);
        receipts.push(kept);
    };
    let mut bytes = first.event.trace.as_bytes().len();
    add(first);
    for _ in 1..MAX_BATCH {
        if bytes >= MAX_BATCH_BYTES {
            break;
        }
        match events.try_recv() {
            Ok(queued) => {
                bytes += queued.event.trace.as_bytes().len();
                add(queued);
            }
            Err(_) => break,
        }
    }
    Batch { events: recorded.into(), receipts }
}

/// A spooled batch as the events it holds, checked as the control plane
/// checks what nodes report: an event that does not decode (its file was
/// damaged) is dropped with an error, as the control plane drops it.
fn from_spool(events: Vec<api::NodeEvent>) -> Arc<[Event<EncodedTrace>]> {
    let (decoded, dropped) = convert::node_events_from_api(events);
    for err in dropped {
        tracing::error!(error = %err, "dropping a spooled event that does not decode");
    }
    decoded.into()
}

#[cfg(test)]
mod tests {
    use hookplane_model::{EventStatus, EventTrace};

    use super::*;

    fn event(id: i64) -> Event<EncodedTrace> {
        Event {
            id,
            organization_id: "org_1".into(),
            connector_id: "con_1".into(),
            status: EventStatus::Skipped,
            response_code: None,
            error: String::new(),
            node_id: "node-a".into(),
            create_time: hookplane_model::now(),
            duration_ms: 1,
            trace: convert::encode_trace(EventTrace { payload: format!("{{\"n\":{id}}}"), ..Default::default() }),
        }
    }

    /// A backlog with a spool in memory, as a node without a cache
    /// directory keeps.
    async fn backlog() -> Backlog {
        let config = NodeConfig::new("node-a".into(), String::new(), String::new(), ([127, 0, 0, 1], 0).into());
        let (_sink, EventQueue { receiver, pending }) = crate::events::EventSink::new();
        let spool = Spool::open(None).await;
        Backlog { config: Arc::new(config), events: receiver, pending, spool, check: spill_check() }
    }

    /// An ack that never comes is given up on within a tick of
    /// [`ACK_TIMEOUT`]: the stream is broken, the batch is the spool's.
    #[tokio::test(start_paused = true)]
    async fn an_ack_that_never_comes_is_given_up_after_the_timeout() {
        let mut backlog = backlog().await;
        let started = tokio::time::Instant::now();
        // Bounded, so that a wait that never gives up fails instead of hanging.
        let given_up = tokio::time::timeout(2 * ACK_TIMEOUT, backlog.watching(std::future::pending::<bool>(), None));
        assert_eq!(given_up.await, Ok((false, None)));
        let waited = started.elapsed();
        assert!(waited >= ACK_TIMEOUT && waited <= ACK_TIMEOUT + SPILL_CHECK, "{waited:?}");
        // The next batch's wait starts anew, on the same timer.
        let started = tokio::time::Instant::now();
        let acked = async {
            tokio::time::sleep(ACK_TIMEOUT - SPILL_CHECK).await;
            true
        };
        assert_eq!(backlog.watching(acked, None).await, (true, None));
        assert!(started.elapsed() < ACK_TIMEOUT);
    }

    /// A batch whose ack is [`SPOOL_AFTER`] late is answered from the
    /// spool; the ack still counts when it comes.
    #[tokio::test(start_paused = true)]
    async fn a_late_ack_answers_the_handlers_from_the_spool() {
        let mut backlog = backlog().await;
        let (sent, mut answered) = tokio::sync::oneshot::channel();
        let mut batch = Batch { events: vec![event(1)].into(), receipts: vec![sent] };
        let acked = async {
            tokio::time::sleep(SPOOL_AFTER * 2).await;
            true
        };
        let (delivered, early) = backlog.watching(acked, Some(&mut batch)).await;
        assert_eq!((delivered, early), (true, Some(None)), "answered early, from a spool in memory");
        assert_eq!(answered.try_recv(), Ok(Ok(())));
    }

    /// A batch stops growing once its traces pass [`MAX_BATCH_BYTES`], so
    /// that calls with large payloads do not make a message the control
    /// plane refuses; one event larger than that goes alone, and small ones
    /// fill a batch up to [`MAX_BATCH`].
    #[test]
    fn a_batch_is_bounded_by_its_traces_bytes_and_its_events() {
        let config = NodeConfig::new("node-a".into(), String::new(), String::new(), ([127, 0, 0, 1], 0).into());
        let (sink, EventQueue { mut receiver, .. }) = crate::events::EventSink::new();
        let sized = |id: i64, bytes: usize| Event {
            trace: convert::encode_trace(EventTrace { payload: "x".repeat(bytes), ..Default::default() }),
            ..event(id)
        };
        let mut drained = || {
            let first = receiver.try_recv().expect("an event queued");
            drain(&config, first, &mut receiver).events.iter().map(|e| e.id).collect::<Vec<_>>()
        };
        let _receipts: Vec<_> = [
            sized(1, MAX_BATCH_BYTES + 1),
            sized(2, 900 << 10),
            sized(3, 900 << 10),
            sized(4, 900 << 10),
            sized(5, 900 << 10),
        ]
        .into_iter()
        .map(|event| sink.record(event))
        .collect();
        assert_eq!(drained(), [1], "larger than a batch: alone");
        assert_eq!(drained(), [2, 3, 4], "the third passes the bound, and ends the batch");
        assert_eq!(drained(), [5]);
        let _receipts: Vec<_> = (0..MAX_BATCH as i64 + 1).map(|id| sink.record(event(id))).collect();
        assert_eq!(drained().len(), MAX_BATCH);
        assert_eq!(drained().len(), 1);
    }

    /// Handed over in process, a spooled batch is the events it was
    /// spooled as; one the control plane would refuse from a stream is
    /// dropped alone, the rest kept in order.
    #[test]
    fn a_spooled_batch_hands_over_what_was_spooled_and_drops_what_does_not_decode() {
        let spooled = [event(1), event(2)];
        let kept: Vec<api::NodeEvent> = spooled.iter().map(convert::node_event_to_api).collect();
        assert_eq!(&*from_spool(kept.clone()), &spooled[..]);

        let mut damaged = kept[0].clone();
        damaged.encoded_trace = bytes::Bytes::from_static(b"\xff\xff\xff");
        let without_event = api::NodeEvent { event: None, ..kept[1].clone() };
        let handed = from_spool(vec![damaged, kept[1].clone(), without_event]);
        assert_eq!(handed.iter().map(|e| e.id).collect::<Vec<_>>(), [2]);
    }
}
