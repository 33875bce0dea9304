//! `NodeSyncService`: streams configuration to data-plane nodes (SPEC §5).
//!
//! Each node holds one `Sync` stream. After the node's hello the session
//! sends the changes since the node's version (a full snapshot when it has
//! none), then waits for the current version to grow — by this process's
//! commits, other replicas' notifications, or the feed's poll — and sends
//! each new delta, coalescing bursts. Deltas always start at the last
//! version sent, so a NACKed version is never sent again; the node keeps
//! what it rejected out until it changes.
//!
//! What the sessions share lives beside them: the [`feed`] reads each
//! change once for every session, and [`presence`] writes what nodes
//! acknowledge in batches. A session itself touches the store only when
//! its node connects.

mod feed;
mod live;
mod open;
mod presence;
mod routes;
mod session;

pub use live::{LiveRunError, LiveRuns};

pub use routes::NodeSyncServer;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use hookplane::api::v1 as api;
use hookplane_model::LimitingPolicy;
use prometheus_client::metrics::gauge::Gauge;
use subtle::ConstantTimeEq;
use tonic::{Request, Response, Status, Streaming};

use crate::crypto::{SecretBox, hash_credential};
use crate::error::ApiError;
use crate::events::EventHub;
use crate::store::{Store, StoreError};

/// How long a session waits after a commit for more commits to coalesce.
const COALESCE: Duration = Duration::from_millis(2);

/// Serves `hookplane.v1.NodeSyncService`.
#[derive(Clone, Debug)]
pub struct NodeSyncApi {
    store: Store,
    feed: feed::ConfigFeed,
    presence: presence::Presence,
    /// SHA-256 of each accepted node token.
    node_token_hashes: Arc<Vec<[u8; 32]>>,
    limiting: Arc<LimitingPolicy>,
    /// Streams open now, for `/metrics`.
    streams: Gauge,
    events: EventHub,
    /// The sessions live test runs are sent through.
    live: LiveRuns,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Encoded `SyncResponse`s (see `routes.rs`).
type UpdateStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;
type EventAckStream = Pin<Box<dyn Stream<Item = Result<api::ReportEventsResponse, Status>> + Send>>;

/// Events per reported batch: bounds one store transaction.
const MAX_EVENTS_PER_BATCH: usize = 1000;

impl NodeSyncApi {
    /// `node_token_hashes` are hex SHA-256 digests of the node tokens.
    pub fn new(
        store: Store,
        secret_box: SecretBox,
        node_token_hashes: &[String],
        limiting: LimitingPolicy,
        streams: Gauge,
        events: EventHub,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> NodeSyncApi {
        let hashes = node_token_hashes
            .iter()
            .filter_map(|h| hex::decode(h.trim()).ok())
            .filter_map(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .collect();
        NodeSyncApi {
            feed: feed::ConfigFeed::new(store.clone(), secret_box, shutdown.clone()),
            presence: presence::Presence::new(store.clone(), shutdown.clone()),
            store,
            node_token_hashes: Arc::new(hashes),
            limiting: Arc::new(limiting),
            streams,
            events,
            live: LiveRuns::default(),
            shutdown,
        }
    }

    /// The same service, its sessions taking live runs from `live` (the
    /// API's services send them there).
    pub fn with_live_runs(mut self, live: LiveRuns) -> NodeSyncApi {
        self.live = live;
        self
    }

    /// Accepts a node with a client certificate verified against the
    /// configured client CA (mTLS), or with a node token checked in constant
    /// time against every hash.
    fn authenticate<T>(&self, request: &Request<T>) -> Result<(), ApiError> {
        // rustls only asks for (and verifies) client certificates when a
        // client CA is configured, so any certificate here is a valid one.
        if request.peer_certs().is_some_and(|certs| !certs.is_empty()) {
            return Ok(());
        }
        const REFUSED: &str = "a data-plane node must present a client certificate or send its node token as `authorization: Bearer <token>`";
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthenticated(REFUSED))?;
        let given = hex::decode(hash_credential(token.trim())).unwrap_or_default();
        let known = self.node_token_hashes.iter().fold(0u8, |found, hash| found | given.ct_eq(hash).unwrap_u8());
        if known == 1 { Ok(()) } else { Err(ApiError::Unauthenticated(REFUSED)) }
    }
}

impl NodeSyncApi {
    /// `Sync`: the node's hello, then its config updates.
    async fn sync(&self, request: Request<Streaming<api::SyncRequest>>) -> Result<Response<UpdateStream>, Status> {
        self.authenticate(&request)?;
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await? {
            Some(api::SyncRequest { message: Some(api::sync_request::Message::Hello(hello)) }) => hello,
            _ => {
                return Err(ApiError::invalid("hello", "the first message of a sync stream must be a NodeHello").into());
            }
        };
        if hello.node_id.trim().is_empty() || hello.node_id.len() > 200 {
            return Err(ApiError::invalid("hello.node_id", "is required, at most 200 characters").into());
        }
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let session = session::Session::new(
            self.store.clone(),
            self.feed.clone(),
            self.presence.clone(),
            self.limiting.clone(),
            hello,
            sender,
            self.live.clone(),
        );
        let open = OpenStream::new(self.streams.clone());
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let _open = open;
            session.run(inbound, shutdown).await;
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))))
    }

    /// `ReportEvents`: stores each batch of the node's events, then
    /// acknowledges it.
    async fn report_events(
        &self,
        request: Request<Streaming<api::ReportEventsRequest>>,
    ) -> Result<Response<EventAckStream>, Status> {
        self.authenticate(&request)?;
        let mut inbound = request.into_inner();
        let events = self.events.clone();
        let mut shutdown = self.shutdown.clone();
        let acks = async_stream::try_stream! {
            loop {
                let message = tokio::select! {
                    message = inbound.message() => message,
                    _ = shutdown.wait_for(|closing| *closing) => break,
                };
                let Some(batch) = message.map_err(crate::error::from_request_stream)? else { break };
                if batch.events.len() > MAX_EVENTS_PER_BATCH {
                    Err(ApiError::invalid("events", format!("at most {MAX_EVENTS_PER_BATCH} events per batch")))?;
                }
                ingest_reported(&events, batch.events).await.map_err(ApiError::from)?;
                yield api::ReportEventsResponse { batch: batch.batch };
            }
        };
        Ok(Response::new(Box::pin(acks)))
    }
}

/// Stores a batch of events as a node reported it over `ReportEvents`,
/// without the events that would corrupt the store
/// ([`hookplane_convert::node_events_from_api`]), each logged.
async fn ingest_reported(events: &EventHub, batch: Vec<api::NodeEvent>) -> Result<usize, StoreError> {
    let (decoded, dropped) = hookplane_convert::node_events_from_api(batch);
    for err in dropped {
        tracing::error!(error = %err, "dropping an event a node reported malformed");
    }
    events.ingest(decoded).await
}

/// Counts a sync stream as open until dropped, however its session ends.
struct OpenStream(Gauge);

impl OpenStream {
    fn new(streams: Gauge) -> OpenStream {
        streams.inc();
        OpenStream(streams)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}
