//! `EventService`: one event, filtered pages newest first, and a live stream.

use std::pin::Pin;

use futures::Stream;
use hookplane::api::v1::{self as api, event_service_server::EventService};
use hookplane_convert as convert;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

use super::SharedCore;
use super::dry_runs::{RunRequest, dry_run, live_run, parse_json};
use crate::error::{ApiError, ApiResult};

/// Bytes of events one page of `ListEvents` holds at most (one event
/// always fits, whatever its size). gRPC clients refuse messages over
/// 4 MiB by default; a page of 100 events with 100 KB payloads was 4.4 MB.
const MAX_PAGE_BYTES: usize = 3 << 20;

/// How many of `events`, from the first, fit in `budget` encoded bytes;
/// at least one.
fn within_budget(events: &[api::Event], budget: usize) -> u32 {
    let mut used = 0;
    let mut fitting = 0u32;
    for event in events {
        // The field's tag and length prefix, at most 6 bytes, on top.
        used += prost::Message::encoded_len(event) + 6;
        if used > budget && fitting > 0 {
            break;
        }
        fitting += 1;
    }
    fitting
}

/// Serves `hookplane.v1.EventService`.
#[derive(Debug, Clone)]
pub struct EventApi {
    core: SharedCore,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<api::Event, Status>> + Send>>;

impl EventApi {
    pub fn new(core: SharedCore) -> EventApi {
        EventApi { core }
    }

    async fn get(&self, request: Request<api::GetEventRequest>) -> ApiResult<api::Event> {
        let caller = self.core.caller(&request).await?;
        let event = self.core.store.get_event(caller.organization()?, request.get_ref().id).await?;
        Ok(convert::event_to_api(&event))
    }

    async fn list(&self, request: Request<api::ListEventsRequest>) -> ApiResult<api::ListEventsResponse> {
        let caller = self.core.caller(&request).await?;
        let org = caller.organization()?;
        let req = request.get_ref();
        let filter = convert::event_filter_from_api(req.filter.as_ref(), "filter")?;
        // The token is bound to the organization and the exact filter.
        let fingerprint = format!("{org}|{filter:?}");
        let page = self.core.pages.parse("events", &fingerprint, req.page_size, &req.page_token)?;
        let before = if page.cursor.is_empty() {
            i64::MAX
        } else {
            page.cursor.parse().map_err(|_| ApiError::invalid("page_token", "is malformed"))?
        };
        let rows = self.core.store.list_events(org, &filter, before, page.size + 1).await?;
        let mut events: Vec<api::Event> = rows.iter().map(convert::event_to_api).collect();
        // A page ends early rather than outgrow what default clients accept.
        let size = page.size.min(within_budget(&events, MAX_PAGE_BYTES));
        let next_page_token =
            self.core.pages.next_token("events", &fingerprint, &mut events, size, |e| e.id.to_string());
        Ok(api::ListEventsResponse { events, next_page_token })
    }

    /// A stored event's payload through its connector's current spec or
    /// a draft, compared with what the event sent.
    async fn replay(&self, request: Request<api::ReplayEventRequest>) -> ApiResult<api::ReplayEventResponse> {
        let caller = self.core.caller(&request).await?;
        let req = request.get_ref();
        let run = RunRequest {
            draft: req.draft.as_ref(),
            lookup_result: &req.lookup_result,
            send_lookup: req.send_lookup,
            live: req.live,
        };
        let org = run.organization(&caller)?;
        let draft = run.draft()?;
        let event = self.core.store.get_event(org, req.id).await?;
        let spec = match draft {
            Some(draft) => draft,
            None => self.core.store.get_connector(org, &event.connector_id).await?.spec,
        };
        let payload = parse_json(&event.trace.payload, "id").map_err(|_| {
            ApiError::FailedPrecondition("the event's payload was not kept as JSON; it cannot be replayed")
        })?;
        if req.live {
            let live = live_run(&self.core, org, &event.connector_id, event.trace.payload.clone()).await?;
            return Ok(api::ReplayEventResponse { live: Some(live), ..Default::default() });
        }
        let recorded = event.trace.lookup.as_ref().and_then(|l| serde_json::from_str(&l.response_excerpt).ok());
        let lookup = run.lookup(recorded)?;
        let writer = caller.writable_organization().is_ok();
        let run = dry_run(&self.core, org, &spec, &payload, lookup, writer).await?;
        let original = event.trace.perform_attempts.first().map(hookplane_model::RenderedRequest::from);
        let changes = match (&original, &run.perform_request) {
            (Some(before), Some(after)) => hookplane_pipeline::diff::diff_requests(before, after),
            _ => Vec::new(),
        };
        Ok(api::ReplayEventResponse {
            run: Some(convert::test_run_to_api(&run)),
            original_request: original.as_ref().map(convert::rendered_request_to_api),
            changes: changes.iter().map(convert::request_change_to_api).collect(),
            live: None,
        })
    }

    async fn stream(&self, request: Request<api::StreamEventsRequest>) -> ApiResult<EventStream> {
        let caller = self.core.caller(&request).await?;
        let org = caller.organization()?.to_owned();
        let filter = convert::event_filter_from_api(request.get_ref().filter.as_ref(), "filter")?;
        let (mut receiver, mut closing) = self.core.events.subscribe();
        let stream = async_stream::stream! {
            loop {
                let received = tokio::select! {
                    received = receiver.recv() => received,
                    _ = closing.wait_for(|closed| *closed) => break,
                };
                match received {
                    Ok(event) if event.organization_id == org && filter.matches(&event) => {
                        yield Ok(convert::event_to_api(&event));
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(missed)) => {
                        yield Err(ApiError::StreamLagged(missed).into());
                        break;
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        };
        Ok(Box::pin(stream))
    }
}

#[tonic::async_trait]
impl EventService for EventApi {
    type StreamEventsStream = EventStream;

    async fn get_event(&self, r: Request<api::GetEventRequest>) -> Result<Response<api::Event>, Status> {
        Ok(Response::new(self.get(r).await?))
    }

    async fn list_events(
        &self,
        r: Request<api::ListEventsRequest>,
    ) -> Result<Response<api::ListEventsResponse>, Status> {
        Ok(Response::new(self.list(r).await?))
    }

    async fn replay_event(
        &self,
        r: Request<api::ReplayEventRequest>,
    ) -> Result<Response<api::ReplayEventResponse>, Status> {
        Ok(Response::new(self.replay(r).await?))
    }

    async fn stream_events(&self, r: Request<api::StreamEventsRequest>) -> Result<Response<EventStream>, Status> {
        Ok(Response::new(self.stream(r).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_of(payload_bytes: usize) -> api::Event {
        api::Event {
            trace: Some(api::EventTrace { payload: "x".repeat(payload_bytes), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn pages_stop_before_their_byte_budget() {
        let events: Vec<_> = (0..100).map(|_| event_of(100_000)).collect();
        let fitting = within_budget(&events, MAX_PAGE_BYTES) as usize;
        assert!(fitting < 100 && fitting > 20, "{fitting}");
        let bytes: usize = events[..fitting].iter().map(|e| prost::Message::encoded_len(e) + 6).sum();
        assert!(bytes <= MAX_PAGE_BYTES && bytes + 100_006 > MAX_PAGE_BYTES);
        assert_eq!(within_budget(&[event_of(5 << 20)], MAX_PAGE_BYTES), 1, "one event always fits");
        assert_eq!(within_budget(&events[..3], MAX_PAGE_BYTES), 3);
    }
}
