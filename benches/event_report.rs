//! Event report benchmark: what a batch of 100 events costs between a
//! node's queue and the control plane's store, in the shape the trigger
//! load harness's check path produces (five request headers, a 330-byte
//! payload). Baseline in the same run: the same batch with each trace sent
//! decoded, as nodes before `NodeEvent.encoded_trace` did, which the control
//! plane still accepts and must encode itself.
//!
//! The second group stores such batches: the control plane's
//! `Store::insert_events` against a raw multi-row `INSERT` through sqlx's
//! SQLite driver into the same schema, each on its own SQLite file in WAL
//! mode with `synchronous = NORMAL`, as the store runs.
//!
//! The third group is the node's own part of one such event: the request
//! handler handing it over and the reporter encoding its trace. Baseline:
//! the handler copying the headers into owned strings (two per header)
//! and the payload into a `String`, as nodes did before the trace's
//! inbound part was written from the request's own buffers.
//!
//! Run: `cargo bench --bench event_report`.

use hookplane_convert::EncodedTrace;
use std::collections::BTreeMap;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use hookplane::api::v1 as api;
use hookplane_control_plane::store::Store;
use hookplane_convert::{encode_trace, event_to_api, node_event_from_api, node_event_to_api};
use hookplane_data_plane::events::trace::InboundRequest;
use hookplane_data_plane::pipeline::redact::Redactor;
use hookplane_data_plane::snapshot::DeployedConnector;
use hookplane_model::{Connector, Event, EventStatus, EventTrace, InboundRequestTrace};
use prost::Message as _;

#[path = "shared/raw_events.rs"]
mod raw_events;

const BATCH: usize = 100;

/// The allocator the `hookplane` binary runs on.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn events() -> Vec<Event> {
    let headers: BTreeMap<String, String> = [
        ("authorization", "[redacted]"),
        ("content-length", "330"),
        ("content-type", "application/json"),
        ("host", "127.0.0.1:40123"),
        ("user-agent", "shop-webhooks/2.3"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let payload = format!(r#"{{"id":"ord_1","status":"created","note":"{}"}}"#, "x".repeat(290));
    (0..BATCH as i64)
        .map(|i| Event {
            id: 1_000 + i,
            organization_id: "org_2f8c1e".into(),
            connector_id: "con_7d41a9".into(),
            status: EventStatus::Skipped,
            response_code: None,
            error: String::new(),
            node_id: "node-a".into(),
            create_time: chrono::Utc::now(),
            duration_ms: 0,
            trace: EventTrace {
                request: InboundRequestTrace {
                    client_ip: "127.0.0.1".into(),
                    headers: headers.clone(),
                    auth_method: "token".into(),
                    body_bytes: payload.len() as u64,
                },
                payload: payload.clone(),
                condition_result: Some(false),
                ..Default::default()
            },
        })
        .collect()
}

/// The control plane's side: decode the batch, check and convert each event.
fn receive(bytes: &[u8]) -> usize {
    let request = api::ReportEventsRequest::decode(bytes).expect("a batch");
    let events: Vec<_> = request
        .events
        .into_iter()
        .enumerate()
        .map(|(i, e)| node_event_from_api(e, i).expect("a valid event"))
        .collect();
    events.len()
}

fn bench(c: &mut Criterion) {
    let batch = events();
    let mut group = c.benchmark_group("event report, 100 events, node encode + control plane decode and check");
    group.bench_function("baseline: traces sent decoded (older nodes)", |b| {
        b.iter_batched(
            || batch.clone(),
            |events| {
                let events = events
                    .iter()
                    .map(|e| api::NodeEvent {
                        organization_id: e.organization_id.clone(),
                        event: Some(event_to_api(e)),
                        ..Default::default()
                    })
                    .collect();
                receive(&api::ReportEventsRequest { batch: 1, events }.encode_to_vec())
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("traces sent encoded, checked without decoding", |b| {
        b.iter_batched(
            || batch.clone(),
            |events| {
                let events = events.into_iter().map(|e| node_event_to_api(&e.map_trace(encode_trace))).collect();
                receive(&api::ReportEventsRequest { batch: 1, events }.encode_to_vec())
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// The raw baseline: the store's own statement shape without `RETURNING`,
/// bound through the typed SQLite driver.
async fn raw_insert(pool: &sqlx::SqlitePool, events: &[Event<EncodedTrace>]) {
    let rows: Vec<raw_events::RawRow<'_>> = events
        .iter()
        .map(|e| raw_events::RawRow {
            id: e.id,
            organization_id: &e.organization_id,
            connector_id: &e.connector_id,
            status: e.status.as_str(),
            response_code: e.response_code,
            error: &e.error,
            node_id: &e.node_id,
            create_time: e.create_time.timestamp_micros(),
            duration_ms: e.duration_ms as i64,
            trace: e.trace.as_bytes(),
        })
        .collect();
    raw_events::insert(pool, &rows).await;
}

fn bench_store(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (store, raw) = runtime.block_on(async {
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("store.db").display());
        (Store::connect(&url).await.unwrap(), raw_events::open(&dir.path().join("raw.db")).await)
    });
    let stored: Vec<Event<EncodedTrace>> = events().into_iter().map(|e| e.map_trace(encode_trace)).collect();
    let mut next_id = 1_i64;
    let mut fresh = || {
        let mut batch = stored.clone();
        for event in &mut batch {
            event.id = next_id;
            next_id += 1;
        }
        batch
    };
    let mut group = c.benchmark_group("store 100 events, SQLite file, WAL");
    group.bench_function("baseline: raw multi-row INSERT (sqlx SQLite driver)", |b| {
        b.iter_batched(&mut fresh, |batch| runtime.block_on(raw_insert(&raw, &batch)), BatchSize::SmallInput)
    });
    group.bench_function("Store::insert_events", |b| {
        b.iter_batched(
            &mut fresh,
            |batch| runtime.block_on(store.insert_events(&batch)).unwrap().len(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// The request the load harness's check path sends, as hyper hands it over.
fn check_path_request() -> (hyper::HeaderMap, bytes::Bytes) {
    let payload = format!(r#"{{"id":"ord_1","status":"created","note":"{}"}}"#, "x".repeat(290));
    let headers = [
        ("host", "127.0.0.1:40123"),
        ("user-agent", "shop-webhooks/2.3"),
        ("content-type", "application/json"),
        ("authorization", "Bearer hpt_3kq9v0c1m2x8w7z6y5u4t3s2r1"),
        ("content-length", "330"),
    ]
    .into_iter()
    .map(|(name, value)| (hyper::header::HeaderName::from_static(name), hyper::header::HeaderValue::from_static(value)))
    .collect();
    (headers, payload.into())
}

fn deployed_connector() -> Arc<DeployedConnector> {
    let spec = hookplane_convert::connector_from_api(
        &api::Connector {
            display_name: "orders".into(),
            auth: Some(api::InboundAuth { bearer_token: true, ..Default::default() }),
            perform: Some(api::Perform { url: "https://erp.example.com/orders".into(), ..Default::default() }),
            ..Default::default()
        },
        "connector",
    )
    .unwrap();
    let connector = Connector {
        id: "con_7d41a9".into(),
        organization_id: "org_2f8c1e".into(),
        spec,
        tokens: Vec::new(),
        create_time: chrono::Utc::now(),
        update_time: chrono::Utc::now(),
        revision: Default::default(),
    };
    Arc::new(DeployedConnector::prepare(connector, 1).unwrap())
}

/// The former request path: the trace's inbound part copied into owned
/// strings while answering, then the whole trace encoded.
fn owned_trace(headers: &hyper::HeaderMap, body: &[u8]) -> EncodedTrace {
    let secret = |name: &str| matches!(name, "authorization" | "x-secret-token" | "cookie" | "proxy-authorization");
    let headers = headers
        .iter()
        .map(|(name, value)| {
            let shown = if secret(name.as_str()) { "[redacted]" } else { value.to_str().unwrap_or("[binary]") };
            (name.as_str().to_owned(), shown.to_owned())
        })
        .collect();
    encode_trace(EventTrace {
        request: InboundRequestTrace {
            client_ip: "127.0.0.1".parse::<std::net::IpAddr>().unwrap().to_string(),
            headers,
            auth_method: "bearer_token".to_owned(),
            body_bytes: body.len() as u64,
        },
        payload: std::str::from_utf8(body).unwrap().to_owned(),
        condition_result: Some(false),
        ..Default::default()
    })
}

fn bench_node_trace(c: &mut Criterion) {
    let connector = deployed_connector();
    let mut group = c.benchmark_group("one check-path trace on the node");
    group.bench_function("baseline: inbound part copied while answering, then encoded", |b| {
        b.iter_batched(check_path_request, |(headers, body)| owned_trace(&headers, &body), BatchSize::SmallInput)
    });
    group.bench_function("inbound part written from the request's buffers while encoding", |b| {
        b.iter_batched(
            check_path_request,
            |(headers, body)| {
                let pipeline = EventTrace { condition_result: Some(false), ..Default::default() };
                let redactor = Redactor::default();
                let inbound = InboundRequest {
                    headers: &headers,
                    body: std::str::from_utf8(&body).unwrap(),
                    client_ip: "127.0.0.1".parse().unwrap(),
                    auth_method: "bearer_token",
                    connector: &connector,
                    redactor: &redactor,
                };
                inbound.encode_trace(pipeline, &Default::default())
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(3));
    targets = bench, bench_store, bench_node_trace
}
criterion_main!(benches);
