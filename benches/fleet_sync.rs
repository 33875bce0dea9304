//! Fleet-simulation benchmark (issue 22): one control plane and a fleet of
//! simulated nodes speaking the real sync protocol over loopback.
//!
//! A simulated node is what a data-plane node does on the stream without
//! building a snapshot: one HTTP/2 connection, the hello, every update
//! decoded, the last part of each acknowledged. For each fleet
//! (`HOOKPLANE_BENCH_FLEETS`, default `100x10000,1000x1000`: nodes ×
//! connectors) it measures, in one run:
//! - **cold start**: every node connects at once with nothing and gets the
//!   full snapshot; time until the last acknowledgement, errors, and the
//!   process's resident memory growth (nodes' and plane's);
//! - **changes**: `HOOKPLANE_BENCH_CHANGES` (50) one-connector updates
//!   through the API, each timed from its answer (committed) to the last
//!   node's acknowledgement, p50/p99; the control plane's CPU per change
//!   per node; the bytes of one delta;
//! - **reconnect storm**: every node's stream cut at once (as when a
//!   replica stops), one change made meanwhile, and every node back with
//!   its version at once: time until the last has the change, errors.
//!
//! The control plane runs on a runtime of its own (threads `plane-*`,
//! with SQLite's `sqlx-sqlite-*`), the nodes on another (`fleet-*`), so
//! the plane's CPU is read from its threads alone
//! (`/proc/self/task/*/schedstat`).
//!
//! Run: `cargo bench --bench fleet_sync`.

#[path = "../tests/it/support/mod.rs"]
mod support;

#[path = "shared/connectors.rs"]
mod connectors;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hookplane_sdk::api;
use prost::Message as _;
use support::fixtures::mask;
use support::{Backend, NODE_TOKEN, TestPlane};
use tokio::sync::{mpsc, watch};
use tonic::transport::Endpoint;

/// Counts heap bytes: the peak of live bytes during a storm is its memory
/// cost, where resident memory would only keep the allocator's high-water
/// mark.
#[global_allocator]
static HEAP: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

/// Samples the live heap every millisecond until dropped; its peak.
struct PeakHeap {
    stop: Arc<std::sync::atomic::AtomicBool>,
    sampler: Option<std::thread::JoinHandle<usize>>,
}

impl PeakHeap {
    fn start() -> PeakHeap {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let sampler = std::thread::spawn(move || {
            let mut peak = 0;
            while !stopping.load(Ordering::Relaxed) {
                let stats = HEAP.stats();
                peak = peak.max(stats.bytes_allocated.saturating_sub(stats.bytes_deallocated));
                std::thread::sleep(Duration::from_millis(1));
            }
            peak
        });
        PeakHeap { stop, sampler: Some(sampler) }
    }

    /// The peak live heap above `base`.
    fn above(mut self, base: usize) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.sampler.take().expect("sampling").join().expect("sampler").saturating_sub(base)
    }
}

fn live_heap() -> usize {
    let stats = HEAP.stats();
    stats.bytes_allocated.saturating_sub(stats.bytes_deallocated)
}

/// What one simulated node reached.
#[derive(Default)]
struct Progress {
    applied: AtomicI64,
    /// When it acknowledged `applied`, in nanoseconds after the bench began.
    at: AtomicU64,
}

/// The fleet's shared view.
struct Fleet {
    nodes: Vec<Arc<Progress>>,
    began: Instant,
    /// Pinged on every acknowledgement.
    moved: watch::Sender<()>,
    errors: AtomicUsize,
    /// Bytes of the last single-part update any node received.
    last_update_bytes: AtomicU64,
}

impl Fleet {
    fn new(size: usize) -> Arc<Fleet> {
        Arc::new(Fleet {
            nodes: (0..size).map(|_| Arc::default()).collect(),
            began: Instant::now(),
            moved: watch::channel(()).0,
            errors: AtomicUsize::new(0),
            last_update_bytes: AtomicU64::new(0),
        })
    }

    /// Waits until every node acknowledged `version`; returns when the last
    /// did.
    async fn all_applied(&self, version: i64) -> Instant {
        let mut moved = self.moved.subscribe();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let behind = self.nodes.iter().filter(|n| n.applied.load(Ordering::Acquire) < version).count();
            if behind == 0 {
                let last = self.nodes.iter().map(|n| n.at.load(Ordering::Acquire)).max().unwrap_or(0);
                return self.began + Duration::from_nanos(last);
            }
            assert!(Instant::now() < deadline, "{behind} nodes never applied version {version}");
            let _ = tokio::time::timeout(Duration::from_millis(50), moved.changed()).await;
        }
    }
}

/// One simulated node's session; ends when `cut` is raised or the stream
/// fails.
async fn simulate_node(url: String, index: usize, fleet: Arc<Fleet>, mut cut: watch::Receiver<bool>) {
    let progress = fleet.nodes[index].clone();
    let session = async {
        // Small windows: what the plane sends then waits in the plane's
        // buffers, not in 1 000 clients' (hyper's default lets each
        // receive 2 MiB unread), so the memory measured is the plane's.
        let channel = Endpoint::from_shared(url)?
            .tcp_nodelay(true)
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535)
            .connect()
            .await?;
        let token: tonic::metadata::MetadataValue<_> = format!("Bearer {NODE_TOKEN}").parse().expect("ascii");
        let mut client = api::node_sync_service_client::NodeSyncServiceClient::with_interceptor(
            channel,
            move |mut request: tonic::Request<()>| {
                request.metadata_mut().insert("authorization", token.clone());
                Ok(request)
            },
        )
        .max_decoding_message_size(64 << 20);
        let (requests, outbound) = mpsc::channel(4);
        let hello = api::NodeHello {
            node_id: format!("sim-{index:04}"),
            build_version: "bench".into(),
            applied_version: progress.applied.load(Ordering::Acquire),
            ..Default::default()
        };
        let message = |m| api::SyncRequest { message: Some(m) };
        requests.send(message(api::sync_request::Message::Hello(hello))).await?;
        let mut updates = client.sync(tokio_stream::wrappers::ReceiverStream::new(outbound)).await?.into_inner();
        while let Some(response) = updates.message().await? {
            let Some(update) = response.update else { continue };
            if update.more_parts {
                continue;
            }
            fleet.last_update_bytes.store(update.encoded_len() as u64, Ordering::Relaxed);
            requests.send(message(api::sync_request::Message::Ack(api::ConfigAck { version: update.version }))).await?;
            progress.at.store(fleet.began.elapsed().as_nanos() as u64, Ordering::Release);
            progress.applied.store(update.version, Ordering::Release);
            fleet.moved.send_replace(());
        }
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    };
    tokio::select! {
        result = session => if let Err(err) = result {
            fleet.errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("sim-{index:04}: {err}");
        },
        _ = cut.wait_for(|cut| *cut) => {}
    }
}

/// Starts every node of `fleet` at once on `runtime`; raising the returned
/// sender cuts them all.
fn connect_all(
    runtime: &tokio::runtime::Runtime,
    url: &str,
    fleet: &Arc<Fleet>,
) -> (watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>) {
    let (cut, cutting) = watch::channel(false);
    let tasks = (0..fleet.nodes.len())
        .map(|i| runtime.spawn(simulate_node(url.to_owned(), i, fleet.clone(), cutting.clone())))
        .collect();
    (cut, tasks)
}

/// CPU time so far of this process's threads whose name starts with one of
/// `prefixes`.
fn cpu_of(prefixes: &[&str]) -> Duration {
    let tasks = procfs::process::Process::myself().and_then(|process| process.tasks());
    let nanoseconds = tasks
        .into_iter()
        .flatten()
        .flatten()
        .filter(|task| task.stat().is_ok_and(|stat| prefixes.iter().any(|p| stat.comm.starts_with(p))))
        .filter_map(|task| task.schedstat().ok())
        .map(|times| times.sum_exec_runtime)
        .sum();
    Duration::from_nanos(nanoseconds)
}

const PLANE_THREADS: &[&str] = &["plane-", "sqlx-sqlite"];
const FLEET_THREADS: &[&str] = &["fleet-"];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Renames one connector through the API; the version it committed.
async fn change(plane: &TestPlane, connectors: usize, i: usize) -> i64 {
    let update = api::UpdateConnectorRequest {
        connector: Some(api::Connector {
            id: format!("con_{:022}", (i * 7919) % connectors),
            display_name: format!("renamed {i}"),
            ..Default::default()
        }),
        update_mask: mask(&["display_name"]),
    };
    plane.admin.connectors().update_connector(update).await.unwrap();
    plane.config_version().await
}

fn main() {
    let fleets: Vec<(usize, usize)> = std::env::var("HOOKPLANE_BENCH_FLEETS")
        .unwrap_or_else(|_| "100x10000,1000x1000".to_owned())
        .split(',')
        .filter_map(|f| f.trim().split_once('x').and_then(|(n, c)| Some((n.parse().ok()?, c.parse().ok()?))))
        .collect();
    let changes: usize = std::env::var("HOOKPLANE_BENCH_CHANGES").ok().and_then(|c| c.parse().ok()).unwrap_or(50);
    let plane_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("plane-worker")
        .enable_all()
        .build()
        .unwrap();
    let fleet_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fleet-worker")
        .enable_all()
        .build()
        .unwrap();
    println!(
        "| nodes | connectors | cold start (all applied) | its CPU: plane / nodes | its peak heap | one-connector delta | change→last ACK p50 | p99 | plane CPU / change / node | reconnect storm (all caught up) | its peak heap | errors |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (nodes, connectors) in fleets {
        let plane = plane_rt.block_on(TestPlane::start(Backend::Sqlite));
        plane_rt.block_on(connectors::deploy(plane.control_plane.store(), &plane.organization_id, connectors));
        let url = plane.url();
        let fleet = Fleet::new(nodes);

        // Cold start: every node at once, from nothing.
        let heap_before = live_heap();
        let peak = PeakHeap::start();
        let version = plane_rt.block_on(plane.config_version());
        let (plane_before, fleet_before) = (cpu_of(PLANE_THREADS), cpu_of(FLEET_THREADS));
        let started = Instant::now();
        let (cut, tasks) = connect_all(&fleet_rt, &url, &fleet);
        let last = fleet_rt.block_on(fleet.all_applied(version));
        let cold = last - started;
        let cold_plane_cpu = cpu_of(PLANE_THREADS) - plane_before;
        let cold_fleet_cpu = cpu_of(FLEET_THREADS) - fleet_before;
        let heap_peak = peak.above(heap_before);

        // Changes, one at a time.
        let mut latencies = Vec::with_capacity(changes);
        let cpu_before = cpu_of(PLANE_THREADS);
        for i in 0..changes {
            let version = plane_rt.block_on(change(&plane, connectors, i));
            let committed = Instant::now();
            let last = fleet_rt.block_on(fleet.all_applied(version));
            latencies.push(last.saturating_duration_since(committed));
        }
        let plane_cpu = cpu_of(PLANE_THREADS) - cpu_before;
        let delta_bytes = fleet.last_update_bytes.load(Ordering::Relaxed);
        latencies.sort();

        // Reconnect storm: all cut, one change, all back with their version.
        cut.send_replace(true);
        fleet_rt.block_on(async {
            for task in tasks {
                let _ = task.await;
            }
        });
        let version = plane_rt.block_on(change(&plane, connectors, changes));
        let heap_before = live_heap();
        let peak = PeakHeap::start();
        let started = Instant::now();
        let (cut, tasks) = connect_all(&fleet_rt, &url, &fleet);
        let last = fleet_rt.block_on(fleet.all_applied(version));
        let storm = last - started;
        let storm_heap_peak = peak.above(heap_before);
        cut.send_replace(true);
        fleet_rt.block_on(async {
            for task in tasks {
                let _ = task.await;
            }
        });

        println!(
            "| {nodes} | {connectors} | {} | {} / {} | {:.1} MiB | {delta_bytes} B | {} | {} | {:.1} µs | {} | {:.1} MiB | {} |",
            ms(cold),
            ms(cold_plane_cpu),
            ms(cold_fleet_cpu),
            heap_peak as f64 / 1_048_576.0,
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
            plane_cpu.as_secs_f64() * 1e6 / (changes * nodes) as f64,
            ms(storm),
            storm_heap_peak as f64 / 1_048_576.0,
            fleet.errors.load(Ordering::Relaxed),
        );
        plane_rt.block_on(plane.finish());
    }
}
