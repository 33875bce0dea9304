//! Live fan-out of newly stored events to `StreamEvents` subscribers.
//!
//! Events enter through [`EventHub::ingest`], which stores a batch and then
//! publishes only the events that were new, so a batch a node resends after
//! a lost acknowledgement never reaches subscribers twice. For the same
//! reason, a batch stored is published even when its caller goes away
//! mid-way: its resend would be stored already, and published never.

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
    /// the new ones; returns how many were new. The batch is taken owned
    /// (a node's `Vec`, or the `Arc` the in-process hand-off keeps until
    /// the answer) so that the task below moves it instead of copying every
    /// event's texts.
    pub async fn ingest<B>(&self, events: B) -> Result<usize, StoreError>
    where
        B: AsRef<[Event<EncodedTrace>]> + Send + 'static,
    {
        if self.sender.receiver_count() == 0 {
            return self.store_and_publish(events.as_ref()).await;
        }
        // SQLite's thread finishes a write whose caller went away (a node's
        // stream ending mid-batch), so the batch would be stored and never
        // published. With live subscribers, storing and publishing run in a
        // task that outlives the caller; without, there is nothing to lose,
        // and the usual batch pays no task.
        let hub = self.clone();
        match tokio::spawn(async move { hub.store_and_publish(events.as_ref()).await }).await {
            Ok(stored) => stored,
            Err(failed) if failed.is_panic() => std::panic::resume_unwind(failed.into_panic()),
            // Cancelled: the runtime is shutting down, and the store with it.
            Err(_) => Err(StoreError::Database(sqlx::Error::PoolClosed)),
        }
    }

    async fn store_and_publish(&self, events: &[Event<EncodedTrace>]) -> Result<usize, StoreError> {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::test_events;

    async fn hub(dir: &tempfile::TempDir) -> EventHub {
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("events.db").display());
        EventHub::new(Store::connect(&url).await.unwrap())
    }

    async fn published(live: &mut broadcast::Receiver<Arc<Event>>) -> i64 {
        let event = tokio::time::timeout(Duration::from_secs(30), live.recv()).await;
        event.expect("published in time").expect("not lagging").id
    }

    #[tokio::test]
    async fn new_events_are_published_once() {
        let dir = tempfile::tempdir().unwrap();
        let hub = hub(&dir).await;
        let (mut live, _) = hub.subscribe();
        assert_eq!(hub.ingest([test_events(1..=2), test_events(1..=1)].concat()).await.unwrap(), 2);
        // A resend stores and publishes nothing: the next one seen is 3.
        assert_eq!(hub.ingest(test_events(2..=3)).await.unwrap(), 1);
        assert_eq!([published(&mut live).await, published(&mut live).await, published(&mut live).await], [1, 2, 3]);
        assert!(live.try_recv().is_err());
        hub.store.close().await;
    }

    /// The write starts at the first poll; the caller then goes away, as a
    /// node's ending stream takes its handler with it. Without the task, the
    /// event is stored and never published (and its resend is absorbed).
    #[tokio::test]
    async fn a_batch_whose_caller_goes_away_is_published() {
        let dir = tempfile::tempdir().unwrap();
        let hub = hub(&dir).await;
        let (mut live, _) = hub.subscribe();
        let batch = test_events(7..=7);
        {
            let mut ingest = std::pin::pin!(hub.ingest(batch.clone()));
            assert!(futures::poll!(ingest.as_mut()).is_pending(), "the write is under way");
        }
        assert_eq!(published(&mut live).await, 7);
        assert_eq!(hub.store.get_event("org_1", 7).await.unwrap().id, 7);
        assert_eq!(hub.ingest(batch).await.unwrap(), 0, "stored once");
        hub.store.close().await;
    }
}
