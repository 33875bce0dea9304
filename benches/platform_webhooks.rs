//! Platform-webhook benchmark (issue 19), in one run:
//!
//! 1. **Deliveries per second** from the outbox to 100 subscriptions of one
//!    organization on a local receiver: `HOOKPLANE_BENCH_EVENTS` (200)
//!    `connector.created` events in the outbox at once, each fanned out to
//!    every subscription, signed, sent, and every attempt recorded in the
//!    store; timed from the events' commit to the last delivery recorded. Baseline, in the same run: a
//!    bare HTTP client loop (hyper-util's pooled client, which reqwest
//!    wraps) posting the same bodies to the same receiver with the same
//!    concurrency (64), recording nothing.
//! 2. **A connector update with its outbox row** (`Store::update_connector`,
//!    its event then fanned out by the dispatcher, which competes for
//!    SQLite's one writer) against the same transaction without it,
//!    written here statement for statement (version bump, update,
//!    expired-token cleanup, token read) on a connection set up as the
//!    store's: p50 of `HOOKPLANE_BENCH_UPDATES` (500) each.
//!
//! Every figure is the median of `HOOKPLANE_BENCH_RUNS` runs (3), with the
//! spread of the ratio. Run: `cargo bench --bench platform_webhooks`.

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookplane_control_plane::store::TokenChanges;
use hookplane_sdk::api;
use http_body_util::Full;
use support::targets::{Behaviour, Target};
use support::{Backend, TestPlane};

/// The allocator the `hookplane` binary runs on.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SUBSCRIPTIONS: usize = 100;
/// Requests in flight in the baseline: as many as the dispatcher attempts
/// at once.
const CONCURRENCY: usize = 64;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Deliveries per second through the dispatcher, and the bodies it sent.
async fn dispatched(events: usize) -> (f64, Vec<Bytes>, Target) {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let receiver = Target::start(Behaviour::Ok).await;
    for _ in 0..SUBSCRIPTIONS {
        let request = api::CreateSubscriptionRequest {
            subscription: Some(api::Subscription {
                url: receiver.url("/hooks"),
                event_types: vec!["connector.created".into()],
                ..Default::default()
            }),
            request_id: String::new(),
        };
        plane.admin.subscriptions().create_subscription(request).await.unwrap();
    }
    // The events, in the outbox at once (as a burst of changes leaves
    // them), then one change through the API, whose commit wakes the
    // dispatcher: what is timed is the dispatch, not the API.
    let pool = sqlx::AnyPool::connect(&plane.database.url).await.unwrap();
    let started = Instant::now();
    let mut tx = pool.begin().await.unwrap();
    for i in 1..events {
        sqlx::query(
            "INSERT INTO platform_outbox (id, organization_id, event_type, data, create_time) \
             VALUES ($1, $2, 'connector.created', $3, $4)",
        )
        .bind(format!("pev_bench{i:08}"))
        .bind(&plane.organization_id)
        .bind(format!(r#"{{"connector":{{"id":"con_bench{i}","display_name":"bench","etag":"r1"}}}}"#))
        .bind(hookplane_model::now().timestamp_micros())
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    support::triggers::create(&plane, support::triggers::mapped_connector("https://erp.example.com")).await;
    let total = events * SUBSCRIPTIONS;
    // Recorded, not only received: every delivery's attempt is in the store.
    loop {
        if receiver.count() >= total {
            let recorded: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'")
                .fetch_one(&pool)
                .await
                .unwrap();
            if recorded as usize >= total {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    pool.close().await;
    let bodies = receiver.received().into_iter().map(|r| r.body).collect();
    plane.finish().await;
    (total as f64 / elapsed.as_secs_f64(), bodies, receiver)
}

/// Requests per second of a bare client posting `bodies` to `receiver`.
async fn bare_loop(receiver: &Target, bodies: Vec<Bytes>) -> f64 {
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let url: hyper::Uri = receiver.url("/hooks").parse().unwrap();
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let total = queue.lock().unwrap().len();
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (client, url, queue) = (client.clone(), url.clone(), queue.clone());
            tokio::spawn(async move {
                loop {
                    let Some(body) = queue.lock().unwrap().pop() else { return };
                    let request = hyper::Request::post(url.clone())
                        .header("content-type", "application/json")
                        .body(Full::new(body))
                        .unwrap();
                    let response = client.request(request).await.unwrap();
                    assert!(response.status().is_success());
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// p50 of a connector update through the store, and of the same
/// transaction without the outbox row.
async fn updates(count: usize) -> (Duration, Duration) {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let (id, _) =
        support::triggers::create(&plane, support::triggers::mapped_connector("https://erp.example.com")).await;
    let store = plane.control_plane.store().clone();
    let mut with_outbox = Vec::with_capacity(count);
    for i in 0..count {
        let mut connector = store.get_connector(&plane.organization_id, &id).await.unwrap();
        let revision = connector.revision;
        connector.spec.display_name = format!("renamed {i}");
        connector.update_time = hookplane_model::now();
        let started = Instant::now();
        store.update_connector(&connector, revision, &TokenChanges::default()).await.unwrap();
        with_outbox.push(started.elapsed());
    }
    let connector = store.get_connector(&plane.organization_id, &id).await.unwrap();
    let spec = serde_json::to_string(&connector.spec).unwrap();
    // One connection set as the store sets its own (WAL is the file's).
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .after_connect(|conn, _| {
            Box::pin(async move {
                use sqlx::Executor as _;
                conn.execute("PRAGMA synchronous = NORMAL").await?;
                conn.execute("PRAGMA busy_timeout = 10000").await?;
                Ok(())
            })
        })
        .connect(&plane.database.url)
        .await
        .unwrap();
    let mut without = Vec::with_capacity(count);
    for i in 0..count {
        let started = Instant::now();
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
        let version: i64 =
            sqlx::query_scalar("UPDATE config_state SET version = version + 1 WHERE id = 1 RETURNING version")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        sqlx::query(
            "UPDATE connectors SET spec = $1, update_time = $2, revision = revision + 1, config_version = $3 \
             WHERE organization_id = $4 AND id = $5",
        )
        .bind(spec.replace("renamed", &format!("raw {i}")))
        .bind(hookplane_model::now().timestamp_micros())
        .bind(version)
        .bind(&plane.organization_id)
        .bind(&id)
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query("DELETE FROM connector_tokens WHERE connector_id = $1 AND superseded = 1 AND expire_time <= $2")
            .bind(&id)
            .bind(hookplane_model::now().timestamp_micros())
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query("SELECT * FROM connector_tokens WHERE connector_id = $1")
            .bind(&id)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        without.push(started.elapsed());
    }
    pool.close().await;
    plane.finish().await;
    with_outbox.sort();
    without.sort();
    (with_outbox[count / 2], without[count / 2])
}

fn main() {
    let (runs, events, count) =
        (knob("HOOKPLANE_BENCH_RUNS", 3), knob("HOOKPLANE_BENCH_EVENTS", 200), knob("HOOKPLANE_BENCH_UPDATES", 500));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (mut ours, mut bare, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut with_outbox, mut without, mut update_ratios) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let (rate, bodies, receiver) = runtime.block_on(dispatched(events));
        let baseline = runtime.block_on(bare_loop(&receiver, bodies));
        let (with, raw) = runtime.block_on(updates(count));
        eprintln!(
            "run {run}: {rate:.0} deliveries/s, bare {baseline:.0}/s; update {:.3} ms, without outbox {:.3} ms",
            with.as_secs_f64() * 1e3,
            raw.as_secs_f64() * 1e3
        );
        ours.push(rate);
        bare.push(baseline);
        ratios.push(rate / baseline);
        with_outbox.push(with.as_secs_f64() * 1e3);
        without.push(raw.as_secs_f64() * 1e3);
        update_ratios.push(with.as_secs_f64() / raw.as_secs_f64());
    }
    let spread = |values: &[f64]| {
        let (low, high) = values.iter().fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
        format!("{low:.2}–{high:.2}")
    };
    println!("| What | hookplane | baseline | ratio (spread) |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| deliveries to {SUBSCRIPTIONS} subscriptions, recorded, vs a bare client loop | {:.0}/s | {:.0}/s | {:.2} ({}) |",
        median(&mut ours.clone()),
        median(&mut bare.clone()),
        median(&mut ratios.clone()),
        spread(&ratios)
    );
    println!(
        "| connector update with its outbox row vs without, p50 | {:.3} ms | {:.3} ms | {:.2} ({}) |",
        median(&mut with_outbox.clone()),
        median(&mut without.clone()),
        median(&mut update_ratios.clone()),
        spread(&update_ratios)
    );
}
