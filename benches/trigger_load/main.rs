//! Trigger load benchmark (issue 23: trigger performance against the
//! floor). In one run, on one machine, against the same local target:
//! - check path: bare hyper vs hookplane answering accepted-and-skipped
//!   triggers, with token auth and with token auth plus an HMAC signature;
//! - end to end: a bare hyper proxy vs hookplane completing triggers with a
//!   condition, three mappings and a JSON perform.
//!
//! Each pair also runs a floor: its baseline storing every request as a
//! raw row in a SQLite events table (`event_rows.rs`), the least any server
//! that records an event per trigger on the same cores can do. The issue's
//! targets are ratios to the floor (`measure.rs`).
//!
//! For each pair it measures the maximum throughput (closed loop), then
//! latency with all three sides offered the same fixed rate: the issue's,
//! at which the floor's cores are 60 % busy by its measured CPU (open loop,
//! latency from when each request was due). A side's sustained throughput
//! counts the time its event backlog took to store after the peak:
//! answering faster than events are stored only defers the work.
//! Hookplane runs as `hookplane dev` does: the control plane on SQLite and
//! one node in this process, events handed over in process and stored.
//! Every measurement runs as slices, the three sides alternating, so the
//! drift of a shared machine falls on all of them alike. The whole run
//! repeats `HOOKPLANE_LOAD_RUNS` times and ends with each ratio's median
//! and spread (`summary.rs`).
//!
//! With `HOOKPLANE_LOAD_NODE_ONLY=1` it measures instead the node as a
//! fleet runs it, the control plane in a process and on a core of its own,
//! against bare hyper (`node_only.rs`).
//!
//! Run: `cargo bench --bench trigger_load`. Knobs: `HOOKPLANE_LOAD_SECS`
//! (per measurement, default 5), `HOOKPLANE_LOAD_SLICES` (default 4),
//! `HOOKPLANE_LOAD_RUNS` (default 5), `HOOKPLANE_LOAD_CONNECTIONS`
//! (closed loop, default 32), `HOOKPLANE_LOAD_OPEN_CONNECTIONS` (open loop,
//! default 256), `HOOKPLANE_LOAD_ONLY` (run the scenarios whose name
//! contains it), `HOOKPLANE_LOAD_EVENTS=stream` (the node reports its
//! events over `ReportEvents`, as in a fleet, instead of handing them over
//! in process), `HOOKPLANE_LOAD_FLOOR=durable` (the floor answers once its
//! row is committed, as hookplane answers once its event is kept).

#[path = "../../tests/it/support/mod.rs"]
mod support;

mod baselines;
mod cpu;
mod event_rows;
mod generator;
mod measure;
mod node_only;
mod summary;

use std::net::SocketAddr;
use std::time::Duration;

use event_rows::{EventRows, RowOwner};
use generator::Call;
use hookplane_data_plane::trigger::signature;
use hookplane_sdk::api;
use measure::Pair;
use support::nodes::{start_dev_node, start_embedded_node};
use support::triggers::{create, use_plan};
use support::{Backend, TestPlane};

/// The allocator of the `hookplane` binary, so both sides run as shipped
/// (the baselines share the process and so get it too).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ORDER: &str = r#"{"id":"ord_8f2k1","status":"paid","total":129.5,"currency":"EUR","customer":{"id":"cus_19","email":"  Ada.Lovelace@Example.COM ","name":"Ada Lovelace"},"items":[{"sku":"BK-1","qty":2,"price":40},{"sku":"PN-7","qty":1,"price":49.5}],"created_at":"2026-11-23T10:00:00Z"}"#;
const SIGNING_KEY: &str = "whsec-benchmark-signing-key";

fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn connector(condition: &str, perform_url: &str) -> api::Connector {
    let mapping = |name: &str, expression: &str| api::FieldMapping { name: name.into(), expression: expression.into() };
    let field = |key: &str, value: &str| api::BodyField { key: key.into(), value: value.into(), ..Default::default() };
    api::Connector {
        display_name: "orders to the ERP".into(),
        auth: Some(api::InboundAuth { bearer_token: true, ..Default::default() }),
        condition: condition.into(),
        mappings: vec![
            mapping("order_id", "$payload.id"),
            mapping("email", "lower(trim($payload.customer.email))"),
            mapping("cents", "$payload.total * 100"),
        ],
        perform: Some(api::Perform {
            method: "POST".into(),
            url: perform_url.into(),
            body: vec![
                field("order.id", "$processed.order_id"),
                field("order.amount_cents", "$processed.cents"),
                field("customer.email", "$processed.email"),
            ],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn main() {
    if std::env::var(node_only::ROLE).is_ok_and(|role| role == node_only::CONTROL_PLANE) {
        return node_only::serve_control_plane();
    }
    let seconds = Duration::from_secs(setting("HOOKPLANE_LOAD_SECS", 5u64));
    let runs = setting("HOOKPLANE_LOAD_RUNS", 5usize).max(1);
    let node_only = std::env::var("HOOKPLANE_LOAD_NODE_ONLY").is_ok_and(|v| v == "1");
    if node_only {
        // Before the runtime starts its workers, which inherit the core.
        node_only::pin_node_side();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if node_only {
        runtime.block_on(node_only::run(seconds, runs));
    } else {
        runtime.block_on(in_one_process(seconds, runs));
    }
}

/// Hookplane as `hookplane dev` runs it, against the baselines and floors.
async fn in_one_process(seconds: Duration, runs: usize) {
    let plane = TestPlane::start(Backend::Sqlite).await;
    use_plan(&plane, api::Plan { name: "unlimited".into(), ..Default::default() }).await;
    let target = baselines::target().await;
    let orders = format!("http://{target}/orders");
    let (skipping, skipping_token) = create(&plane, connector("$payload.status == \"refunded\"", &orders)).await;
    let mut signed = connector("$payload.status == \"refunded\"", &orders);
    signed.signature =
        Some(api::SignatureSettings { secret: SIGNING_KEY.into(), prefix: "sha256=".into(), ..Default::default() });
    let (signed, signed_token) = create(&plane, signed).await;
    let (performing, performing_token) = create(&plane, connector("$payload.status == \"paid\"", &orders)).await;
    // As `hookplane dev` runs it: events handed over in process. With
    // HOOKPLANE_LOAD_EVENTS=stream, as a fleet's node reports them.
    let node = if std::env::var("HOOKPLANE_LOAD_EVENTS").is_ok_and(|v| v == "stream") {
        println!("events: reported over ReportEvents, as a fleet's nodes do");
        start_dev_node(&plane, "bench-node").await
    } else {
        println!("events: handed to the control plane in process, as `hookplane dev` does");
        start_embedded_node(&plane, "bench-node").await
    };
    let settings = node.snapshot().connectors[&signed].connector.spec.signature.clone().expect("signature settings");
    let signature = signature::sign(&settings, SIGNING_KEY.as_bytes(), None, ORDER.as_bytes());

    let node_address = node.http_address();
    let trigger = |id: &str, token: &str, extra: &[(&str, &str)], expect: &'static str| {
        let bearer = format!("Bearer {token}");
        let headers: Vec<(&str, &str)> = [&[("Authorization", bearer.as_str())], extra].concat();
        (node_address, Call::post(node_address, &format!("/api/v1/connectors/{id}/trigger"), &headers, ORDER, expect))
    };
    let floor_dir = tempfile::tempdir().expect("a directory for the floor's events");
    let owner = RowOwner {
        organization_id: plane.organization_id.clone(),
        connector_id: skipping.clone(),
        node_id: "bench-node".into(),
    };
    let rows = EventRows::start(floor_dir.path(), owner).await;
    println!(
        "floor: {}",
        if rows.durable() { "answers once its row is committed" } else { "answers before its row is stored" }
    );
    let bare = baselines::bare_hyper(None).await;
    let proxy = baselines::bare_proxy(target, None).await;
    // Each floor records under its scenario's connector, as hookplane does.
    let skipping_rows = baselines::bare_hyper(Some(rows.for_connector(&skipping))).await;
    let signed_rows = baselines::bare_hyper(Some(rows.for_connector(&signed))).await;
    let proxy_with_rows = baselines::bare_proxy(target, Some(rows.for_connector(&performing))).await;
    let plain = |address: SocketAddr, expect: &'static str| {
        (address, Call::post(address, "/trigger", &[("Authorization", "Bearer x")], ORDER, expect))
    };
    let pairs = [
        Pair {
            name: "check path, token auth (skipped)",
            baseline_name: "bare hyper",
            baseline: plain(bare, "skipped"),
            floor: plain(skipping_rows, "skipped"),
            hookplane: trigger(&skipping, &skipping_token, &[], "\"skipped\""),
        },
        Pair {
            name: "check path, token + HMAC (skipped)",
            baseline_name: "bare hyper",
            baseline: plain(bare, "skipped"),
            floor: plain(signed_rows, "skipped"),
            hookplane: trigger(&signed, &signed_token, &[("X-Webhook-Signature", &signature)], "\"skipped\""),
        },
        Pair {
            name: "end to end, 3 mappings + JSON perform (completed)",
            baseline_name: "bare proxy",
            baseline: plain(proxy, "\"ok\""),
            floor: plain(proxy_with_rows, "\"ok\""),
            hookplane: trigger(&performing, &performing_token, &[], "\"completed\""),
        },
    ];

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "trigger_load: {cores} cores, {}s per measurement in {} alternating slices, servers on 2 worker threads, {runs} runs",
        seconds.as_secs(),
        measure::slices()
    );
    let only = std::env::var("HOOKPLANE_LOAD_ONLY").unwrap_or_default();
    let (node_backlog, floor_backlog) = (|| node.pending_events() as u64, || rows.pending());
    let mut outcomes = Vec::new();
    for run in 1..=runs {
        let mut this_run = Vec::new();
        for pair in pairs.iter().filter(|p| p.name.contains(&only)) {
            this_run.push(measure::measure(pair, &node_backlog, &floor_backlog, seconds).await);
        }
        println!();
        println!("Run {run} of {runs}:");
        println!();
        println!("{}", measure::RESULTS_HEADER);
        for outcome in &this_run {
            println!("{}", outcome.row);
        }
        println!();
        println!(
            "CPU per answered request in the closed-loop phases, µs (the floor's and hookplane's include storing their events):"
        );
        println!();
        println!("{}", measure::CPU_HEADER);
        for outcome in &this_run {
            println!("{}", outcome.cpu_row);
        }
        outcomes.push(this_run);
    }
    println!();
    summary::print(&outcomes);
    node.shutdown().await;
    plane.finish().await;
}
