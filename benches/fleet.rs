//! Fleet benchmark (issue 22): the `redis` limiting policy against a bare
//! Redis, and event ingest with retention pruning running against without.
//!
//! 1. **Redis checks.** Checks per second of `Fleet::count` (the Lua
//!    script: increment every counter of a check, taking the call back
//!    from all of them if one goes over)
//!    against the baseline a hand-written fixed-window limiter sends, a
//!    pipelined `INCR` + `EXPIRE` per counter, in the same run, on the
//!    same multiplexed connection, with the same concurrency; for a
//!    one-limit check (the per-IP one) and a four-limit check (connector
//!    and organization). Then the node's whole limit step, `Limiters`,
//!    with the `redis` policy against `local`.
//! 2. **Retention.** Events per second stored through `Store::insert_events`
//!    (batches of 100) on SQLite while `Store::prune_events` deletes a
//!    backlog of 200 000 expired events, against the same ingest with no
//!    pruning, each on a fresh file.
//!
//! Every figure is the median of `HOOKPLANE_BENCH_RUNS` runs (5), with
//! the spread (lowest and highest ratio). Needs Redis at
//! `TEST_REDIS_URL` (default `redis://127.0.0.1:6379`).
//!
//! Run: `cargo bench --bench fleet`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookplane_control_plane::store::Store;
use hookplane_convert::{EncodedTrace, encode_trace};
use hookplane_data_plane::fleet::Fleet;
use hookplane_data_plane::limits::{Limit, LimitId, Limiters, Window};
use hookplane_model::{Event, EventStatus, EventTrace, Plan, RedisPolicy};

/// The allocator the `hookplane` binary runs on.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Checks in flight at once, as concurrent trigger calls on a node.
const CONCURRENCY: usize = 64;
/// Checks per measured round.
const CHECKS: usize = 20_000;

fn runs() -> usize {
    std::env::var("HOOKPLANE_BENCH_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(5)
}

fn policy() -> RedisPolicy {
    RedisPolicy {
        url: std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
        fail_closed: true,
        key_prefix: format!("hookplane-bench-{:x}", rand::random::<u64>()),
        timeout: Duration::from_secs(5),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Runs `check` `CHECKS` times with `CONCURRENCY` in flight; checks/s.
async fn rate<F, Fut>(check: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let check = Arc::new(check);
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|w| {
            let check = check.clone();
            tokio::spawn(async move {
                for i in (w..CHECKS).step_by(CONCURRENCY) {
                    check(i).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    CHECKS as f64 / started.elapsed().as_secs_f64()
}

/// Median and spread of `ours / baseline` over the runs, and the medians.
fn report(name: &str, pairs: &[(f64, f64)], unit: &str) {
    let mut ratios: Vec<f64> = pairs.iter().map(|(ours, base)| ours / base).collect();
    ratios.sort_by(f64::total_cmp);
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ours = median(pairs.iter().map(|p| p.0).collect());
    let base = median(pairs.iter().map(|p| p.1).collect());
    println!(
        "{name}: {ours:.0} {unit} against {base:.0} — ratio {:.2} (spread {:.2}–{:.2}, {} runs)",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1],
        ratios.len()
    );
}

async fn redis_checks() {
    let policy = policy();
    let fleet = Arc::new(Fleet::new(policy.clone()));
    let client = redis::Client::open(policy.url.as_str()).unwrap();
    let bare = client.get_multiplexed_async_connection().await.unwrap();
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    for (name, limits) in [
        ("one-limit check (client IP)", vec![Limit { id: LimitId::Ip(ip), limit: u32::MAX, window: Window::Minute }]),
        (
            "four-limit check (connector, organization ×3)",
            vec![
                Limit { id: LimitId::Connector("con_bench"), limit: u32::MAX, window: Window::Minute },
                Limit { id: LimitId::Organization("org_bench"), limit: u32::MAX, window: Window::Minute },
                Limit { id: LimitId::Organization("org_bench"), limit: u32::MAX, window: Window::Hour },
                Limit { id: LimitId::Organization("org_bench"), limit: u32::MAX, window: Window::Day },
            ],
        ),
    ] {
        let limits: Arc<Vec<Limit<'static>>> = Arc::new(limits);
        let prefix = Arc::new(format!("{}:bare", policy.key_prefix));
        let mut pairs = Vec::new();
        for _ in 0..runs() {
            let (ours_fleet, ours_limits) = (fleet.clone(), limits.clone());
            let ours = rate(move |_| {
                let (fleet, limits) = (ours_fleet.clone(), ours_limits.clone());
                async move {
                    assert!(fleet.count(&limits, unix_now()).await.unwrap().is_ok());
                }
            })
            .await;
            let (bare, limits, prefix) = (bare.clone(), limits.clone(), prefix.clone());
            let baseline = rate(move |_| {
                let (mut bare, limits, prefix) = (bare.clone(), limits.clone(), prefix.clone());
                async move {
                    // Keys named by their window, as any fixed-window
                    // limiter must.
                    let now = unix_now();
                    let mut pipe = redis::pipe();
                    for limit in limits.iter() {
                        let (index, _) = limit.window.at(now);
                        let key = format!("{prefix}:{}:{}:{index}", limit.id, limit.window.seconds());
                        pipe.incr(&key, 1).ignore().expire(&key, 120).ignore();
                    }
                    let () = pipe.query_async(&mut bare).await.unwrap();
                }
            })
            .await;
            pairs.push((ours, baseline));
        }
        report(&format!("Redis {name}: Fleet::count vs pipelined INCR+EXPIRE"), &pairs, "checks/s");
    }

    // The node's limit step: `redis` against `local`.
    let limiters = Arc::new(Limiters::default());
    let plan = Arc::new(Plan {
        per_connector_per_minute: u32::MAX,
        org_per_minute: u32::MAX,
        org_per_hour: u32::MAX,
        org_per_day: u32::MAX,
        ..Plan::free()
    });
    let mut pairs = Vec::new();
    for _ in 0..runs() {
        let (l, f, p) = (limiters.clone(), fleet.clone(), plan.clone());
        let redis = rate(move |_| {
            let (l, f, p) = (l.clone(), f.clone(), p.clone());
            async move {
                let counted = l.check_authenticated(Some(&f), "con_bench", "org_bench", &p).await.unwrap();
                assert!(counted.is_ok());
            }
        })
        .await;
        let (l, p) = (limiters.clone(), plan.clone());
        let local = rate(move |_| {
            let (l, p) = (l.clone(), p.clone());
            async move {
                let counted = l.check_authenticated(None, "con_bench", "org_bench", &p).await.unwrap();
                assert!(counted.is_ok());
            }
        })
        .await;
        pairs.push((redis, local));
    }
    report("authenticated limit step: redis policy vs local", &pairs, "checks/s");
}

fn event(id: i64, create_time: hookplane_model::Timestamp) -> Event<EncodedTrace> {
    let payload = format!(r#"{{"id":"ord_{id}","note":"{}"}}"#, "x".repeat(300));
    let event = Event {
        id,
        organization_id: "org_bench".into(),
        connector_id: "con_bench".into(),
        status: EventStatus::Completed,
        response_code: Some(200),
        error: String::new(),
        node_id: "node-1".into(),
        create_time,
        duration_ms: 3,
        trace: EventTrace { payload, ..Default::default() },
    };
    event.map_trace(encode_trace)
}

/// Events/s ingested for `seconds` into a store holding 200 000 expired
/// events, with or without the pruner deleting them meanwhile.
async fn ingest_rate(pruning: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}?mode=rwc", dir.path().join("events.db").display())).await.unwrap();
    store.ensure_plans(&[Plan::free()]).await.unwrap();
    let now = hookplane_model::now();
    let org = hookplane_model::Organization {
        id: "org_bench".into(),
        display_name: "Bench".into(),
        plan: "free".into(),
        admin_emails: Vec::new(),
        create_time: now,
        update_time: now,
        revision: 1,
    };
    store.create_organization(&org, None).await.unwrap();
    let old = hookplane_model::now() - chrono::Duration::days(30);
    for chunk in 0..2_000 {
        let batch: Vec<_> = (0..100).map(|i| event(1 + chunk * 100 + i, old)).collect();
        store.insert_events(&batch).await.unwrap();
    }
    let pruner = pruning.then(|| {
        let store = store.clone();
        tokio::spawn(async move { store.prune_events(hookplane_model::now()).await.unwrap() })
    });
    let now = hookplane_model::now();
    let started = Instant::now();
    let mut stored = 0;
    let mut next = 1_000_000;
    while started.elapsed() < Duration::from_secs(3) {
        let batch: Vec<_> = (0..100).map(|i| event(next + i, now)).collect();
        next += 100;
        store.insert_events(&batch).await.unwrap();
        stored += 100;
    }
    let rate = stored as f64 / started.elapsed().as_secs_f64();
    if let Some(pruner) = pruner {
        pruner.await.unwrap();
    }
    store.close().await;
    rate
}

async fn retention() {
    let mut pairs = Vec::new();
    for _ in 0..runs() {
        let with = ingest_rate(true).await;
        let without = ingest_rate(false).await;
        pairs.push((with, without));
    }
    report("event ingest while pruning 200 000 expired events vs no pruning", &pairs, "events/s");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        redis_checks().await;
        retention().await;
    });
}
