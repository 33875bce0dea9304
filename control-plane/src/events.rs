//! Live fan-out of newly stored events to `StreamEvents` subscribers.
//!
//! Events enter through [`EventHub::ingest`], which stores a batch and then
//! publishes only the events that were new, so a batch a node resends after
//! a lost acknowledgement never reaches subscribers twice.

use std::sync::Arc;

use hookplane::model::Event;
use tokio::sync::broadcast;

use crate::store::{Store, StoreError};

/// How many events a slow subscriber may fall behind before it is told so.
const CHANNEL_CAPACITY: usize = 4096;

/// Stores events and publishes them to live subscribers.
#[derive(Debug, Clone)]
pub struct EventHub {
    store: Store,
    sender: broadcast::Sender<Arc<Event>>,
}

impl EventHub {
    pub fn new(store: Store) -> EventHub {
        let (sender, _) = broadcast::channel(CHANNEL_CAPACITY);
        EventHub { store, sender }
    }

    /// Stores a batch of events (ids unique across the fleet) and publishes
    /// the new ones; returns how many were new.
    pub async fn ingest(&self, events: &[Event]) -> Result<usize, StoreError> {
        let inserted = self.store.insert_events(events).await?;
        for event in &inserted {
            // No subscribers is fine: the event is stored either way.
            let _ = self.sender.send(Arc::new(event.clone()));
        }
        Ok(inserted.len())
    }

    /// A receiver of every event stored from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }
}
