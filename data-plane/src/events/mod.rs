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
mod local;
mod reporter;
pub mod spool;
pub mod trace;

use hookplane_convert::EncodedTrace;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hookplane::api::v1 as api;
use hookplane_model::Event;
use tokio::sync::{mpsc, oneshot};

pub use local::LocalEvents;
pub use reporter::{SPOOL_AFTER, report};

/// Default of `NodeConfig::max_queued_events`: a few seconds of a node's
/// peak rate, each event the size of its trace (headers and payload).
pub const MAX_QUEUED_EVENTS: usize = 20_000;

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
    /// anyone the event exists. A trace over [`trace::MAX_TRACE_BYTES`]
    /// goes without its payload and `$processed`.
    pub fn record(&self, mut event: Event<EncodedTrace>) -> Receipt {
        if event.trace.as_bytes().len() > trace::MAX_TRACE_BYTES {
            event.trace = trace::bounded(&event.trace);
        }
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

/// Events as handlers recorded them, and who waits on them. Shared with
/// the delivery in flight, which may have to be spooled meanwhile.
struct Batch {
    events: Arc<[Event<EncodedTrace>]>,
    receipts: Vec<oneshot::Sender<Result<(), EventLost>>>,
}

/// A batch on its way to the control plane.
enum Outgoing {
    /// Events as this node's handlers recorded them.
    Recorded(Arc<[Event<EncodedTrace>]>),
    /// A batch read back from the spool, in the form it is reported in.
    Spooled(Vec<api::NodeEvent>),
}

impl Batch {
    /// The events in the form they are reported and spooled in.
    fn reported(&self) -> Vec<api::NodeEvent> {
        self.events.iter().map(hookplane_convert::node_event_to_api).collect()
    }

    /// Tells every waiting handler how its event fared.
    fn settle(&mut self, result: Result<(), EventLost>) {
        for receipt in self.receipts.drain(..) {
            let _ = receipt.send(result);
        }
    }
}
