//! `EventService`: one event, filtered pages newest first, and a live stream.

use std::pin::Pin;

use futures::Stream;
use hookplane::api::v1::{self as api, event_service_server::EventService};
use hookplane_convert as convert;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

use super::SharedCore;
use crate::error::{ApiError, ApiResult};

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
        let mut rows = self.core.store.list_events(org, &filter, before, page.size + 1).await?;
        let next_page_token =
            self.core.pages.next_token("events", &fingerprint, &mut rows, page.size, |e| e.id.to_string());
        Ok(api::ListEventsResponse { events: rows.iter().map(convert::event_to_api).collect(), next_page_token })
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

    async fn stream_events(&self, r: Request<api::StreamEventsRequest>) -> Result<Response<EventStream>, Status> {
        Ok(Response::new(self.stream(r).await?))
    }
}
