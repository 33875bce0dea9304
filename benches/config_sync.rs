//! Config-sync benchmark (issue: data-plane config sync).
//!
//! For each fleet size (default 10 000 and 100 000 connectors; override with
//! `HOOKPLANE_BENCH_SIZES=1000,5000`) it measures, in one run:
//! - snapshot build: decoding a full update and building the immutable
//!   snapshot, and the resident memory that snapshot takes per connector;
//! - bytes on the wire for a full snapshot and for a one-connector delta;
//! - commit → applied on a real node over the real stream, p50/p99, next to
//!   the baseline of one raw `INSERT` + commit on the same database.
//!
//! Run: `cargo bench --bench config_sync`.

#[path = "../tests/it/support/mod.rs"]
mod support;

#[path = "shared/connectors.rs"]
mod connectors;

use std::time::{Duration, Instant};

use connectors::realistic_connector;
use hookplane_convert as convert;
use hookplane_data_plane::Snapshot;
use hookplane_model::{self as model, ConfigDelta, Connector, Versioned};
use hookplane_sdk::api;
use prost::Message as _;
use support::fixtures::mask;
use support::nodes::{applied, start_node};
use support::{Backend, TestPlane};

const UPDATES: usize = 200;

/// Counts heap bytes, so memory per connector is measured exactly instead
/// of through RSS, which keeps freed decoding buffers.
#[global_allocator]
static HEAP: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn synthetic_full_update(size: usize) -> api::ConfigUpdate {
    let spec = convert::connector_from_api(&realistic_connector(), "connector").expect("valid template");
    let now = model::now();
    let connectors = (0..size)
        .map(|i| Versioned {
            item: Connector {
                id: format!("con_{i:022}"),
                organization_id: "org_bench".into(),
                spec: spec.clone(),
                tokens: Vec::new(),
                create_time: now,
                update_time: now,
                revision: 1,
            },
            version: i as i64 + 1,
        })
        .collect();
    let delta = ConfigDelta { version: size as i64, full: true, connectors, ..Default::default() };
    convert::config_delta_to_api(&delta)
}

/// Snapshot build time, full-snapshot bytes, and heap and RSS growth per
/// connector of the built snapshot.
fn build_phase(size: usize) -> (Duration, usize, f64, f64) {
    let bytes = synthetic_full_update(size).encode_to_vec();
    let before = resident_bytes();
    let heap = stats_alloc::Region::new(HEAP);
    let started = Instant::now();
    let update = api::ConfigUpdate::decode(bytes.as_slice()).unwrap();
    let (delta, rejected) = convert::config_delta_from_api(&update);
    drop(update);
    let (snapshot, _) = Snapshot::default().apply(&delta, rejected);
    drop(delta);
    let build = started.elapsed();
    let change = heap.change();
    let heap_per_connector = (change.bytes_allocated as f64 - change.bytes_deallocated as f64) / size as f64;
    let rss_per_connector = (resident_bytes().saturating_sub(before)) as f64 / size as f64;
    assert_eq!(snapshot.connectors.len(), size);
    (build, bytes.len(), heap_per_connector, rss_per_connector)
}

async fn sync_phase(size: usize) -> (Duration, Vec<Duration>, u64, Vec<Duration>) {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let store = plane.control_plane.store().clone();
    let mut raw_inserts = Vec::new();
    connectors::deploy(&store, &plane.organization_id, size).await;
    // Baseline: one raw single-row insert and commit on the same database.
    let pool = sqlx::AnyPool::connect(&plane.database.url).await.unwrap();
    sqlx::query("CREATE TABLE bench_raw (id INTEGER PRIMARY KEY, body TEXT NOT NULL)").execute(&pool).await.unwrap();
    for i in 0..UPDATES {
        let started = Instant::now();
        sqlx::query("INSERT INTO bench_raw (id, body) VALUES ($1, $2)")
            .bind(i as i64)
            .bind("x".repeat(512))
            .execute(&pool)
            .await
            .unwrap();
        raw_inserts.push(started.elapsed());
    }
    pool.close().await;

    let started = Instant::now();
    let node = start_node(&plane.url(), "bench-node", None).await;
    applied(&node, plane.config_version().await).await;
    let full_sync = started.elapsed();

    let mut latencies = Vec::with_capacity(UPDATES);
    let mut connectors = plane.admin.connectors();
    let mut applied_versions = node.state().applied_versions();
    for i in 0..UPDATES {
        let id = format!("con_{:022}", (i * 7919) % size);
        let update = api::UpdateConnectorRequest {
            connector: Some(api::Connector { id, display_name: format!("renamed {i}"), ..Default::default() }),
            update_mask: mask(&["display_name"]),
        };
        connectors.update_connector(update).await.unwrap();
        // The update's response means it committed: measure from here.
        let started = Instant::now();
        let version = plane.config_version().await;
        applied_versions.wait_for(|v| *v >= version).await.unwrap();
        latencies.push(started.elapsed());
    }
    let delta_bytes = node.state().last_update_bytes();
    node.shutdown().await;
    plane.finish().await;
    (full_sync, latencies, delta_bytes, raw_inserts)
}

fn main() {
    let sizes: Vec<usize> = std::env::var("HOOKPLANE_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000]);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!(
        "| connectors | snapshot build | full snapshot | heap / connector | RSS / connector | full sync | one-connector delta | commit→applied p50 | p99 | raw insert p50 | ratio p50 |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for size in sizes {
        let (build, full_bytes, heap_per_connector, rss_per_connector) = build_phase(size);
        let (full_sync, mut latencies, delta_bytes, mut raw) = runtime.block_on(sync_phase(size));
        latencies.sort();
        raw.sort();
        let (p50, p99, raw50) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99), percentile(&raw, 0.5));
        println!(
            "| {size} | {:.1} ms | {:.1} MiB | {:.0} B | {:.0} B | {:.0} ms | {delta_bytes} B | {:.2} ms | {:.2} ms | {:.2} ms | {:.1}× |",
            build.as_secs_f64() * 1e3,
            full_bytes as f64 / 1_048_576.0,
            heap_per_connector,
            rss_per_connector,
            full_sync.as_secs_f64() * 1e3,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            raw50.as_secs_f64() * 1e3,
            p50.as_secs_f64() / raw50.as_secs_f64(),
        );
    }
}
