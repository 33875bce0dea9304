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
//! Run: `cargo bench --bench event_report`.

use std::collections::BTreeMap;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use hookplane::api::v1 as api;
use hookplane::convert::{encode_trace, event_to_api, node_event_from_api, node_event_to_api};
use hookplane::model::{EncodedTrace, Event, EventStatus, EventTrace, InboundRequestTrace};
use hookplane_control_plane::store::Store;
use prost::Message as _;

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
                let events = events.into_iter().map(|e| node_event_to_api(e.map_trace(encode_trace))).collect();
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
    let mut sql = String::from(
        "INSERT INTO events (id, organization_id, connector_id, status, response_code, error, node_id, create_time, duration_ms, trace_proto) VALUES ",
    );
    sql.push_str(&vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; events.len()].join(", "));
    sql.push_str(" ON CONFLICT (id) DO NOTHING");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for e in events {
        query = query
            .bind(e.id)
            .bind(&e.organization_id)
            .bind(&e.connector_id)
            .bind(e.status.as_str())
            .bind(e.response_code)
            .bind(&e.error)
            .bind(&e.node_id)
            .bind(e.create_time.timestamp_micros())
            .bind(e.duration_ms as i64)
            .bind(e.trace.as_bytes());
    }
    let mut tx = pool.begin().await.unwrap();
    query.execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
}

fn bench_store(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = |name: &str| format!("sqlite://{}?mode=rwc", dir.path().join(name).display());
    let (store, raw) = runtime.block_on(async {
        let store = Store::connect(&url("store.db")).await.unwrap();
        // The same schema for the baseline, then a plain typed pool on it.
        Store::connect(&url("raw.db")).await.unwrap().close().await;
        let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url("raw.db"))
            .unwrap()
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
        let raw = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
        (store, raw)
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

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(3));
    targets = bench, bench_store
}
criterion_main!(benches);
