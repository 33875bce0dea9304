//! Conformance of the event query API on both stores, and of the
//! `ReportEvents` stream events arrive on. Query tests feed the control
//! plane's ingest path directly; the stream tests speak gRPC as a node
//! does (nodes themselves are exercised in `triggers.rs`).

use crate::support;

use hookplane_convert::EncodedTrace;
use std::time::Duration;

use chrono::TimeZone as _;
use futures::StreamExt as _;
use hookplane_convert::encode_trace;
use hookplane_model::{Event, EventStatus, EventTrace};
use hookplane_sdk::{Error, api};
use prost::Message as _;
use support::{Backend, NODE_TOKEN, TestPlane};
use tonic::Code;

on_both_stores!(
    events_list_newest_first_with_filters_and_pages,
    events_stream_live_to_their_organization_only,
    events_of_other_organizations_are_invisible,
    reported_traces_are_checked_and_stored_in_either_form,
    a_batch_overlapping_stored_events_adds_and_streams_only_the_new_ones,
    events_past_their_plans_retention_are_deleted_and_no_others,
);

fn event(id: i64, organization_id: &str, connector_id: &str, status: EventStatus, minute: u32) -> Event<EncodedTrace> {
    let event = Event {
        id,
        organization_id: organization_id.to_owned(),
        connector_id: connector_id.to_owned(),
        status,
        response_code: (status == EventStatus::Completed).then_some(200),
        error: if status == EventStatus::Failed { "target answered 500".into() } else { String::new() },
        node_id: "node-1".into(),
        create_time: chrono::Utc.with_ymd_and_hms(2026, 11, 1, 12, minute, 0).unwrap(),
        duration_ms: 12,
        trace: EventTrace { payload: format!("{{\"n\":{id}}}"), ..Default::default() },
    };
    event.map_trace(encode_trace)
}

async fn events_list_newest_first_with_filters_and_pages(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    let org = plane.organization_id.clone();
    let batch: Vec<_> = (1..=30)
        .map(|i| {
            let status = if i % 3 == 0 { EventStatus::Failed } else { EventStatus::Completed };
            event(i, &org, if i % 2 == 0 { "con_even" } else { "con_odd" }, status, i as u32)
        })
        .collect();
    assert_eq!(plane.control_plane.events().ingest(batch.clone()).await.unwrap(), 30);
    assert_eq!(
        plane.control_plane.events().ingest(batch[..5].to_vec()).await.unwrap(),
        0,
        "resent batches are absorbed"
    );

    let all = plane.admin.list_all_events(None).await.unwrap();
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), (1..=30).rev().collect::<Vec<_>>());
    assert_eq!(all[0].trace.as_ref().unwrap().payload, "{\"n\":30}");

    let failed_even = api::EventFilter {
        connector_id: "con_even".into(),
        status: api::EventStatus::Failed as i32,
        ..Default::default()
    };
    let ids: Vec<_> = plane.admin.list_all_events(Some(failed_even)).await.unwrap().iter().map(|e| e.id).collect();
    assert_eq!(ids, [30, 24, 18, 12, 6]);

    let window = api::EventFilter {
        start_time: Some(prost_types::Timestamp { seconds: batch[9].create_time.timestamp(), nanos: 0 }),
        end_time: Some(prost_types::Timestamp { seconds: batch[14].create_time.timestamp(), nanos: 0 }),
        ..Default::default()
    };
    let ids: Vec<_> = plane.admin.list_all_events(Some(window.clone())).await.unwrap().iter().map(|e| e.id).collect();
    assert_eq!(ids, [14, 13, 12, 11, 10], "start inclusive, end exclusive");

    let mut events = plane.admin.events();
    let first = events
        .list_events(api::ListEventsRequest { filter: None, page_size: 12, page_token: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.events.len(), 12);
    let second = events
        .list_events(api::ListEventsRequest { filter: None, page_size: 12, page_token: first.next_page_token.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.events[0].id, 18);
    let changed_filter = events
        .list_events(api::ListEventsRequest { filter: Some(window), page_size: 12, page_token: first.next_page_token })
        .await
        .unwrap_err();
    assert_eq!(Error::from(changed_filter).violations()[0].field, "page_token");

    let got = events.get_event(api::GetEventRequest { id: 7 }).await.unwrap().into_inner();
    assert_eq!((got.connector_id.as_str(), got.status()), ("con_odd", api::EventStatus::Completed));
    assert_eq!(events.get_event(api::GetEventRequest { id: 99 }).await.unwrap_err().code(), Code::NotFound);

    let backwards = api::EventFilter {
        start_time: Some(prost_types::Timestamp { seconds: 2_000, nanos: 0 }),
        end_time: Some(prost_types::Timestamp { seconds: 1_000, nanos: 0 }),
        ..Default::default()
    };
    let err =
        events.list_events(api::ListEventsRequest { filter: Some(backwards), ..Default::default() }).await.unwrap_err();
    assert_eq!(Error::from(err).violations()[0].field, "filter.end_time");
    plane.finish().await;
}

async fn events_stream_live_to_their_organization_only(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    let (other_org, _) = plane.new_organization("Other").await;
    let filter = api::EventFilter { status: api::EventStatus::Failed as i32, ..Default::default() };
    let mut stream = plane
        .admin
        .events()
        .stream_events(api::StreamEventsRequest { filter: Some(filter) })
        .await
        .unwrap()
        .into_inner();
    // The subscription is live once the call returned; ingest afterwards.
    let org = plane.organization_id.clone();
    let batch = vec![
        event(101, &org, "con_a", EventStatus::Completed, 1),
        event(102, &other_org, "con_b", EventStatus::Failed, 2),
        event(103, &org, "con_a", EventStatus::Failed, 3),
    ];
    plane.control_plane.events().ingest(batch.clone()).await.unwrap();
    plane.control_plane.events().ingest(batch).await.unwrap();
    plane.control_plane.events().ingest([event(104, &org, "con_c", EventStatus::Failed, 4)]).await.unwrap();

    let streamed = next_event(&mut stream).await;
    assert_eq!(streamed.id, 103, "only this organization's failed events");
    assert_eq!(streamed.trace.unwrap().payload, r#"{"n":103}"#, "live events carry their decoded trace");
    assert_eq!(next_event(&mut stream).await.id, 104, "a resent batch is not streamed twice");
    plane.finish().await;
}

async fn a_batch_overlapping_stored_events_adds_and_streams_only_the_new_ones(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    let org = plane.organization_id.clone();
    let mut stream =
        plane.admin.events().stream_events(api::StreamEventsRequest::default()).await.unwrap().into_inner();
    let hub = plane.control_plane.events();
    let e = |id| event(id, &org, "con_a", EventStatus::Completed, id as u32);
    assert_eq!(hub.ingest([e(1), e(2)]).await.unwrap(), 2);
    // Part stored already, part new, one new event twice: only 3 and 4 count.
    assert_eq!(hub.ingest([e(2), e(3), e(1), e(4), e(4)]).await.unwrap(), 2);
    assert_eq!(hub.ingest([e(5)]).await.unwrap(), 1);
    let mut streamed = Vec::new();
    for _ in 0..5 {
        streamed.push(next_event(&mut stream).await.id);
    }
    assert_eq!(streamed, [1, 2, 3, 4, 5], "each event streamed once");
    let stored: Vec<i64> = plane.admin.list_all_events(None).await.unwrap().iter().map(|e| e.id).collect();
    assert_eq!(stored, [5, 4, 3, 2, 1]);
    plane.finish().await;
}

async fn events_of_other_organizations_are_invisible(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    let (_, other) = plane.new_organization("Other").await;
    plane
        .control_plane
        .events()
        .ingest([event(1, &plane.organization_id, "con_a", EventStatus::Completed, 1)])
        .await
        .unwrap();
    assert!(other.list_all_events(None).await.unwrap().is_empty());
    let status = other.events().get_event(api::GetEventRequest { id: 1 }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(plane.admin.list_all_events(None).await.unwrap().len(), 1);
    plane.finish().await;
}

async fn next_event(stream: &mut tonic::Streaming<api::Event>) -> api::Event {
    let item = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.expect("an event arrives");
    item.expect("the stream stays open").expect("no stream error")
}

/// Sends one batch on a fresh `ReportEvents` stream, as a node would.
async fn report(plane: &TestPlane, events: Vec<api::NodeEvent>) -> Result<u64, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(plane.url()).unwrap().connect().await.unwrap();
    let mut request = tonic::Request::new(futures::stream::iter([api::ReportEventsRequest { batch: 7, events }]));
    request.metadata_mut().insert("authorization", format!("Bearer {NODE_TOKEN}").parse().unwrap());
    let mut client = api::node_sync_service_client::NodeSyncServiceClient::new(channel);
    let mut acks = client.report_events(request).await?.into_inner();
    let ack = acks.message().await?.expect("an acknowledgement");
    Ok(ack.batch)
}

fn node_event(
    organization_id: &str,
    id: i64,
    trace: Option<api::EventTrace>,
    encoded_trace: Vec<u8>,
) -> api::NodeEvent {
    api::NodeEvent {
        organization_id: organization_id.to_owned(),
        event: Some(api::Event {
            id,
            connector_id: "con_a".into(),
            status: api::EventStatus::Completed as i32,
            create_time: Some(prost_types::Timestamp { seconds: 1_790_000_000, nanos: 0 }),
            trace,
            ..Default::default()
        }),
        encoded_trace: encoded_trace.into(),
    }
}

async fn reported_traces_are_checked_and_stored_in_either_form(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    let org = plane.organization_id.clone();
    let trace = |payload: &str| api::EventTrace {
        payload: payload.to_owned(),
        request: Some(api::InboundRequestTrace { client_ip: "192.0.2.4".into(), ..Default::default() }),
        ..Default::default()
    };
    // Current nodes send the trace encoded; older ones send it decoded.
    let batch = vec![
        node_event(&org, 201, None, trace(r#"{"form":"encoded"}"#).encode_to_vec()),
        node_event(&org, 202, Some(trace(r#"{"form":"decoded"}"#)), Vec::new()),
    ];
    assert_eq!(report(&plane, batch).await.unwrap(), 7);
    let events = plane.admin.events();
    for (id, payload) in [(201, r#"{"form":"encoded"}"#), (202, r#"{"form":"decoded"}"#)] {
        let event = events.clone().get_event(api::GetEventRequest { id }).await.unwrap().into_inner();
        let stored = event.trace.unwrap();
        assert_eq!((stored.payload.as_str(), stored.request.unwrap().client_ip.as_str()), (payload, "192.0.2.4"));
    }

    // Bytes that are not an EventTrace (a string field holding invalid
    // UTF-8), or a trace sent both ways, are refused alone: the batch is
    // acknowledged, or the node would send it, and all after it, forever.
    let malformed = vec![
        node_event(&org, 203, None, trace("{}").encode_to_vec()),
        node_event(&org, 204, None, vec![0x12, 0x02, 0xc3, 0x28]),
    ];
    let both = vec![node_event(&org, 205, Some(trace("{}")), trace("{}").encode_to_vec())];
    for batch in [malformed, both] {
        assert_eq!(report(&plane, batch).await.unwrap(), 7, "acknowledged");
    }
    let stored: Vec<i64> = plane.admin.list_all_events(None).await.unwrap().iter().map(|e| e.id).collect();
    assert_eq!(stored, [203, 202, 201], "the malformed events alone are left out");
    plane.finish().await;
}

async fn events_past_their_plans_retention_are_deleted_and_no_others(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    let forever = api::Plan { name: "forever".into(), event_retention_days: 0, ..Default::default() };
    plane.operator.plans().create_plan(api::CreatePlanRequest { plan: Some(forever) }).await.unwrap();
    let (other_org, other_admin) = plane.new_organization("Keeps everything").await;
    let move_to = api::Organization { id: other_org.clone(), plan: "forever".into(), ..Default::default() };
    let update =
        api::UpdateOrganizationRequest { organization: Some(move_to), update_mask: support::fixtures::mask(&["plan"]) };
    plane.operator.organizations().update_organization(update).await.unwrap();
    let now = hookplane_model::now();
    let at = |days: i64, mut event: Event<EncodedTrace>| {
        event.create_time = now - chrono::Duration::days(days);
        event
    };
    let org = plane.organization_id.clone();
    let batch = vec![
        at(8, event(1, &org, "con_1", EventStatus::Completed, 0)),
        at(6, event(2, &org, "con_1", EventStatus::Completed, 0)),
        at(400, event(3, &other_org, "con_2", EventStatus::Completed, 0)),
    ];
    plane.control_plane.events().ingest(batch).await.unwrap();
    let store = plane.control_plane.store();
    assert_eq!(store.prune_events(now).await.unwrap(), 1, "free keeps 7 days; the other plan keeps everything");
    let kept: Vec<i64> = plane.admin.list_all_events(None).await.unwrap().iter().map(|e| e.id).collect();
    assert_eq!(kept, [2]);
    let theirs: Vec<i64> = other_admin.list_all_events(None).await.unwrap().iter().map(|e| e.id).collect();
    assert_eq!(theirs, [3]);
    assert_eq!(store.prune_events(now).await.unwrap(), 0);

    // Retention is a plan's setting, bounded.
    let too_long = api::Plan { name: "forever".into(), event_retention_days: 4_000, ..Default::default() };
    let update = api::UpdatePlanRequest {
        plan: Some(too_long),
        update_mask: support::fixtures::mask(&["event_retention_days"]),
    };
    let refused = Error::from(plane.operator.plans().update_plan(update).await.unwrap_err());
    assert_eq!(refused.violations()[0].field, "plan.event_retention_days");
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_gives_sqlite_space_back_in_batches() {
    use sqlx::{Connection as _, Row as _};
    let plane = TestPlane::start(Backend::Sqlite).await;
    let org = plane.organization_id.clone();
    let old = hookplane_model::now() - chrono::Duration::days(30);
    // 2 500 events of 4 KiB: three batches of deletion.
    let batch: Vec<_> = (1..=2_500)
        .map(|i| {
            let mut event = event(i, &org, "con_1", EventStatus::Completed, 0);
            event.create_time = old;
            let trace = EventTrace { payload: format!("{{\"pad\":\"{}\"}}", "x".repeat(4_096)), ..Default::default() };
            event.trace = encode_trace(trace);
            event
        })
        .collect();
    for chunk in batch.chunks(500) {
        plane.control_plane.events().ingest(chunk.to_vec()).await.unwrap();
    }
    let mut db = sqlx::SqliteConnection::connect(&plane.database.url).await.unwrap();
    let before: i64 = sqlx::query("PRAGMA page_count").fetch_one(&mut db).await.unwrap().get(0);
    assert_eq!(plane.control_plane.store().prune_events(hookplane_model::now()).await.unwrap(), 2_500);
    let after: i64 = sqlx::query("PRAGMA page_count").fetch_one(&mut db).await.unwrap().get(0);
    assert!(after * 4 < before, "the file shrank: {before} pages before, {after} after");
    plane.finish().await;
}
