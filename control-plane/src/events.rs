//! Live fan-out of newly stored events to `StreamEvents` subscribers.
//!
//! Events enter through [`EventHub::ingest`], which stores a batch and then
//! publishes only the events that were new, so a batch a node resends after
//! a lost acknowledgement never reaches subscribers twice.

use hookplane_convert::EncodedTrace;
use std::collections::HashSet;
use std::sync::Arc;

use hookplane_convert::decode_trace;
use hookplane_model::Event;
use tokio::sync::{broadcast, watch};

use crate::store::{Store, StoreError};

/// How many events a slow subscriber may fall behind before it is told so.
const CHANNEL_CAPACITY: usize = 4096;

/// Stores events and publishes them to live subscribers.
#[derive(Debug, Clone)]
pub struct EventHub {
    store: Store,
    sender: broadcast::Sender<Arc<Event>>,
    /// Flips to `true` when the server shuts down, ending every live
    /// stream so a graceful shutdown does not wait on them forever.
    closing: Arc<watch::Sender<bool>>,
    /// Events stored, for `/metrics`.
    ingested: prometheus_client::metrics::counter::Counter,
}

impl EventHub {
    pub fn new(store: Store) -> EventHub {
        let (sender, _) = broadcast::channel(CHANNEL_CAPACITY);
        let (closing, _) = watch::channel(false);
        EventHub { store, sender, closing: Arc::new(closing), ingested: Default::default() }
    }

    /// The count of events stored, as `/metrics` shows it.
    pub fn ingested(&self) -> prometheus_client::metrics::counter::Counter {
        self.ingested.clone()
    }

    /// Stores a batch of events (ids unique across the fleet) and publishes
    /// the new ones; returns how many were new.
    pub async fn ingest(&self, events: &[Event<EncodedTrace>]) -> Result<usize, StoreError> {
        let inserted = self.store.insert_events(events).await?;
        // Traces are decoded only for live subscribers; none is the usual
        // case. They were checked to decode on the way in.
        if self.sender.receiver_count() > 0 {
            let mut new: HashSet<i64> = inserted.iter().copied().collect();
            // Removed as published: an id twice in one batch is stored once.
            for event in events.iter().filter(|e| new.remove(&e.id)) {
                let event = event.clone().map_trace(|trace| decode_trace(trace.as_bytes()).unwrap_or_default());
                let _ = self.sender.send(Arc::new(event));
            }
        }
        self.ingested.inc_by(inserted.len() as u64);
        Ok(inserted.len())
    }

    /// A receiver of every event stored from now on, and a watch that
    /// turns `true` when live streams must end.
    pub fn subscribe(&self) -> (broadcast::Receiver<Arc<Event>>, watch::Receiver<bool>) {
        (self.sender.subscribe(), self.closing.subscribe())
    }

    /// Ends every live stream (server shutdown).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }
}
