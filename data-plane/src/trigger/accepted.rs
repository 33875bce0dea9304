//! Asynchronous mode on the trigger endpoint (SPEC §4): a call that passed
//! every check is kept in the node's [`Inbox`] and answered 202; the runner
//! below runs kept calls, those a previous run left first, as the
//! synchronous path would have, and records their events.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookplane_convert::{self as convert, InboundTrace};
use hookplane_model::{Event, EventStatus, EventTrace};
use hyper::HeaderMap;
use hyper::header::{HeaderName, HeaderValue};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::response::Refusal;
use super::{Call, Ingress, plan_of};
use crate::events::trace::is_credential;
use crate::events::{EventLost, Receipt};
use crate::inbox::{AcceptedCall, InboxError, StoredHeader};
use crate::pipeline::redact::REDACTED;
use crate::snapshot::{DeployedConnector, Snapshot};

/// Kept calls running at once; more wait in the inbox.
const MAX_RUNNING: usize = 256;
/// When a kept call that could not run (its connector held, its event not
/// kept) is tried again.
const RETRY_LATER: Duration = Duration::from_secs(30);
/// How long calls a previous run kept wait for the control plane's
/// current snapshot before they run on the cached one.
const LEFT_CALLS_SYNC_WAIT: Duration = Duration::from_secs(10);

impl Ingress {
    /// Keeps a checked call on the node's disk until it runs.
    pub(super) async fn keep_for_later(&self, call: &Call<'_>) -> Result<(), Refusal> {
        let headers = call
            .headers
            .iter()
            .map(|(name, value)| StoredHeader {
                name: name.as_str().to_owned(),
                value: if is_credential(call.deployed, name.as_str()) {
                    Bytes::from_static(REDACTED.as_bytes())
                } else {
                    Bytes::copy_from_slice(value.as_bytes())
                },
            })
            .collect();
        let connector = &call.deployed.connector;
        let kept = AcceptedCall {
            event_id: call.event_id,
            connector_id: connector.id.clone(),
            organization_id: connector.organization_id.clone(),
            received_micros: call.received.timestamp_micros(),
            client_ip: call.client_ip.to_string(),
            auth_method: call.auth_method.to_owned(),
            depth: call.depth,
            headers,
            body: Bytes::copy_from_slice(call.body.as_bytes()),
        };
        self.inbox.accept(kept).await.map_err(|err| match err {
            InboxError::Full(waiting) => Refusal::InboxFull(waiting),
            InboxError::Write(err) => {
                tracing::error!(error = %err, "could not keep an accepted call");
                Refusal::NotKept
            }
        })
    }

    /// Runs one kept call with the current snapshot, records its event and
    /// forgets the call.
    async fn run_kept(&self, kept: AcceptedCall) {
        let (snapshot, deployed) = self.connector_for(&kept.connector_id).await;
        let received =
            chrono::DateTime::from_timestamp_micros(kept.received_micros).unwrap_or_else(hookplane_model::now);
        let client_ip = kept.client_ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        // Checked to be JSON, so UTF-8, when it was kept.
        let body = std::str::from_utf8(&kept.body).unwrap_or_default();
        // A connector disabled since still runs what it accepted; only one
        // that is gone cannot. One held for a secret the control plane
        // could not open runs once the secret is set again: the call waits.
        if deployed.as_ref().is_some_and(|d| snapshot.held.contains_key(&d.connector.id)) {
            tracing::warn!(event_id = kept.event_id, "an accepted call waits for its held connector");
            self.inbox.retry_later(kept, RETRY_LATER);
            return;
        }
        let kept_event = match deployed {
            Some(deployed) => {
                let headers = header_map(&kept.headers);
                let plan = plan_of(&snapshot, &deployed);
                // Read by the connector's programs as they are now.
                let ran = match deployed.programs.capture_payload(body) {
                    Ok(payload) => {
                        let call = Call {
                            deployed: &deployed,
                            plan: &plan,
                            headers: &headers,
                            body,
                            payload,
                            client_ip,
                            auth_method: &kept.auth_method,
                            depth: kept.depth,
                            event_id: kept.event_id,
                            received,
                            started: Instant::now(),
                            runs_again: true,
                        };
                        self.execute(&snapshot, call).await
                    }
                    Err(error) => Err(Refusal::InvalidJson(error.to_string())),
                };
                match ran {
                    Ok(_) => Ok(()),
                    Err(Refusal::EventNotKept) => Err(EventLost),
                    // Refused before it ran (its body no longer reads as the
                    // connector's payload): the event says so.
                    Err(refusal) => {
                        let error = format!("the accepted call could not run: {refusal}");
                        self.record_unrun(&kept, client_ip, body, received, error).kept().await
                    }
                }
            }
            None => {
                let gone = "the connector was deleted before its accepted call ran".to_owned();
                self.record_unrun(&kept, client_ip, body, received, gone).kept().await
            }
        };
        // The call is forgotten only once its event is kept, so a node
        // killed at any point before runs it again (its event keeps its
        // id, so the control plane stores it once).
        match kept_event {
            Ok(()) => self.inbox.done(kept.event_id).await,
            Err(EventLost) => {
                tracing::error!(event_id = kept.event_id, "an accepted call's event was not kept; it runs again later");
                self.inbox.retry_later(kept, RETRY_LATER);
            }
        }
    }

    /// The snapshot to run a kept call on, and its connector if it still
    /// exists. Only the control plane can say a connector is gone: one
    /// missing from a snapshot this process has not had from it (a cached
    /// snapshot may predate the connector) is waited for.
    async fn connector_for(&self, id: &str) -> (Arc<Snapshot>, Option<Arc<DeployedConnector>>) {
        let mut applied = self.state.applied_versions();
        loop {
            // Read before the snapshot: once synced, the snapshot is the
            // control plane's or a later one.
            let synced = self.state.has_synced();
            let snapshot = self.state.snapshot();
            let deployed = snapshot.connectors.get(id).cloned();
            if deployed.is_some() || synced || applied.changed().await.is_err() {
                return (snapshot, deployed);
            }
        }
    }

    /// A failed event for a call that cannot run: its connector was
    /// deleted, or is held.
    fn record_unrun(
        &self,
        kept: &AcceptedCall,
        client_ip: IpAddr,
        body: &str,
        received: hookplane_model::Timestamp,
        error: String,
    ) -> Receipt {
        let headers: Vec<(&str, Cow<'_, str>)> =
            kept.headers.iter().map(|h| (h.name.as_str(), String::from_utf8_lossy(&h.value))).collect();
        let inbound = InboundTrace {
            client_ip: Some(client_ip),
            headers: &headers,
            auth_method: &kept.auth_method,
            body_bytes: body.len() as u64,
            payload: body,
        };
        self.events.record(Event {
            id: kept.event_id,
            organization_id: kept.organization_id.clone(),
            connector_id: kept.connector_id.clone(),
            status: EventStatus::Failed,
            response_code: None,
            error,
            node_id: self.node_id.clone(),
            create_time: received,
            duration_ms: 0,
            trace: convert::encode_trace_with_inbound(&inbound, EventTrace::default(), &Default::default()),
        })
    }
}

/// The stored headers back as a map (names and values were valid when kept).
fn header_map(stored: &[StoredHeader]) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(stored.len());
    for header in stored {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(header.name.as_bytes()), HeaderValue::from_bytes(&header.value))
        {
            headers.append(name, value);
        }
    }
    headers
}

/// Runs kept calls, those a previous run left first, at most
/// [`MAX_RUNNING`] at once, until `stop`; calls still running then are
/// dropped mid-way and stay in the inbox for the next start.
pub async fn run_kept_calls(
    ingress: Arc<Ingress>,
    left: Vec<AcceptedCall>,
    mut queue: mpsc::UnboundedReceiver<AcceptedCall>,
    mut stop: watch::Receiver<bool>,
) {
    // What a previous run kept may be for connectors changed or deleted
    // since: it waits for this process's first snapshot from the control
    // plane, unless that takes long (the node then serves from its cache
    // anyway, and so runs with it).
    if !left.is_empty() {
        let mut applied = ingress.state.applied_versions();
        let synced = async { while !ingress.state.has_synced() && applied.changed().await.is_ok() {} };
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            _ = tokio::time::timeout(LEFT_CALLS_SYNC_WAIT, synced) => {}
        }
    }
    let mut running = JoinSet::new();
    let mut left = left.into_iter();
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            Some(_) = running.join_next(), if running.len() >= MAX_RUNNING => continue,
            call = async { left.next() }, if left.len() > 0 && running.len() < MAX_RUNNING => call,
            call = queue.recv(), if running.len() < MAX_RUNNING => call,
        };
        let Some(call) = next else { break };
        let ingress = ingress.clone();
        running.spawn(async move { ingress.run_kept(call).await });
        // Finished runs are collected as they go, so the set holds only
        // what still runs.
        while running.try_join_next().is_some() {}
    }
    running.shutdown().await;
}
