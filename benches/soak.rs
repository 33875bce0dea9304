//! Soak benchmark (hardening issue): ten minutes of mixed traffic with
//! connector churn against the control plane and a node in this process,
//! as `hookplane dev` runs them. Every ten seconds it samples the
//! process's resident memory and open file descriptors, the node's event
//! backlog, and the files waiting in its spool and inbox; at the end it
//! compares the last minute with the first minute after warm-up. They must
//! stay flat: a leak grows with time, a bounded cache does not.
//!
//! Traffic, from 16 callers at once: completed calls, skipped calls (false
//! condition), failed calls (a target answering 500), asynchronous calls,
//! calls with a wrong token, and calls to connectors that are created,
//! updated and deleted all along (so some answer 404).
//!
//! Run: `cargo bench --bench soak`. Knobs: `HOOKPLANE_SOAK_SECS` (default
//! 600), `HOOKPLANE_SOAK_SAMPLE_SECS` (default 10).

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hookplane_data_plane::DataPlane;
use hookplane_sdk::{Client, api};
use support::nodes::start_node_configured;
use support::targets::{Behaviour, Target, trigger_path, try_post};
use support::triggers::{ORDER, create, mapped_connector, use_plan};
use support::{Backend, TestPlane};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One sample of what must stay flat.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: u64,
    pending_events: u64,
    spooled_batches: u64,
    waiting_calls: u64,
    answered: u64,
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn count(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |d| d.count() as u64)
}

/// A caller posting to `path` until `stop`, counting answers.
fn caller(node: &DataPlane, path: String, bearer: String, stop: Arc<AtomicBool>, answered: Arc<AtomicU64>) {
    let address = node.http_address();
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            if try_post(address, &path, &[("authorization", &bearer)], ORDER).await.is_some() {
                answered.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}

/// Creates, updates and deletes connectors all along; the callers of
/// `churned` hit whichever exists.
async fn churn(admin: Client, url: String, stop: Arc<AtomicBool>) {
    let mut connectors = admin.connectors();
    while !stop.load(Ordering::Relaxed) {
        let created = connectors
            .create_connector(support::fixtures::create_connector(mapped_connector(&url)))
            .await
            .expect("create")
            .into_inner();
        let mut patch = created.clone();
        patch.display_name = "churned again".into();
        let mask = support::fixtures::mask(&["display_name"]);
        connectors
            .update_connector(api::UpdateConnectorRequest { connector: Some(patch), update_mask: mask })
            .await
            .expect("update");
        connectors
            .delete_connector(api::DeleteConnectorRequest { id: created.id, etag: String::new() })
            .await
            .expect("delete");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total = Duration::from_secs(setting("HOOKPLANE_SOAK_SECS", 600));
    let every = Duration::from_secs(setting("HOOKPLANE_SOAK_SAMPLE_SECS", 10));
    let plane = TestPlane::start(Backend::Sqlite).await;
    use_plan(&plane, api::Plan { name: "unlimited".into(), retries_enabled: true, ..Default::default() }).await;
    let ok = Target::counting(Behaviour::Ok).await;
    let failing = Target::counting(Behaviour::AlwaysFail).await;
    let (completed, token) = create(&plane, mapped_connector(&ok.url(""))).await;
    let (failed, failed_token) = create(&plane, mapped_connector(&failing.url(""))).await;
    let mut async_connector = mapped_connector(&ok.url(""));
    async_connector.async_mode = true;
    let (kept, kept_token) = create(&plane, async_connector).await;
    let mut skipping = mapped_connector(&ok.url(""));
    skipping.condition = "$payload.total > 1000000".into();
    let (skipped, skipped_token) = create(&plane, skipping).await;
    let cache = tempfile::tempdir().unwrap();
    let node = start_node_configured(&plane, "soak", Some(cache.path()), |c| {
        c.egress = hookplane_egress::EgressPolicy::public_only().with_loopback();
        c.retry_base = Duration::from_millis(5);
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let calls = [
        (completed.clone(), token.clone(), 4),
        (skipped, skipped_token, 3),
        (failed, failed_token, 2),
        (kept, kept_token, 3),
        (completed, "hpt_wrong".to_owned(), 2),
        ("con_churned_or_gone".to_owned(), token, 2),
    ];
    for (id, token, callers) in calls {
        for _ in 0..callers {
            caller(&node, trigger_path(&id), format!("Bearer {token}"), stop.clone(), answered.clone());
        }
    }
    tokio::spawn(churn(plane.admin.clone(), ok.url(""), stop.clone()));

    println!("soak: {} s, a sample every {} s", total.as_secs(), every.as_secs());
    println!(
        "{:>6} {:>10} {:>6} {:>8} {:>8} {:>8} {:>10}",
        "t (s)", "RSS (KiB)", "fds", "backlog", "spooled", "inbox", "calls/s"
    );
    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    while started.elapsed() < total {
        tokio::time::sleep(every).await;
        let sample = Sample {
            at: started.elapsed(),
            rss_kib: rss_kib(),
            fds: count(std::path::Path::new("/proc/self/fd")),
            pending_events: node.pending_events() as u64,
            spooled_batches: count(&cache.path().join("events")),
            waiting_calls: count(&cache.path().join("accepted")),
            answered: answered.load(Ordering::Relaxed),
        };
        let previous = samples.last().map_or(0, |s| s.answered);
        println!(
            "{:>6} {:>10} {:>6} {:>8} {:>8} {:>8} {:>10.0}",
            sample.at.as_secs(),
            sample.rss_kib,
            sample.fds,
            sample.pending_events,
            sample.spooled_batches,
            sample.waiting_calls,
            (sample.answered - previous) as f64 / every.as_secs_f64()
        );
        samples.push(sample);
    }
    stop.store(true, Ordering::Relaxed);
    report(&samples, every);
    node.shutdown().await;
    plane.finish().await;
}

/// Compares the last minute with the first minute after a minute of
/// warm-up: the median of each.
fn report(samples: &[Sample], every: Duration) {
    let per_minute = (60 / every.as_secs().max(1)).max(1) as usize;
    if samples.len() < 3 * per_minute {
        println!("too short to judge flatness: run at least three minutes");
        return;
    }
    let median = |window: &[Sample], f: fn(&Sample) -> u64| {
        let mut values: Vec<u64> = window.iter().map(f).collect();
        values.sort_unstable();
        values[values.len() / 2]
    };
    let early = &samples[per_minute..2 * per_minute];
    let late = &samples[samples.len() - per_minute..];
    println!("median of minute 2 → median of the last minute:");
    for (name, f) in [
        ("RSS (KiB)", (|s: &Sample| s.rss_kib) as fn(&Sample) -> u64),
        ("file descriptors", |s| s.fds),
        ("event backlog", |s| s.pending_events),
        ("spooled batches", |s| s.spooled_batches),
        ("inbox calls", |s| s.waiting_calls),
    ] {
        let (a, b) = (median(early, f), median(late, f));
        let growth = if a == 0 { 0.0 } else { (b as f64 - a as f64) / a as f64 * 100.0 };
        println!("  {name:<18} {a:>10} → {b:>10} ({growth:+.1} %)");
    }
    let calls = samples.last().map_or(0, |s| s.answered);
    println!("{calls} calls answered in all");
}
