//! The node-only measurement (`HOOKPLANE_LOAD_NODE_ONLY=1`): a node's CPU
//! per request as a fleet sees it, against bare hyper's.
//!
//! The control plane and its SQLite store run in a child process (this
//! bench run again with `HOOKPLANE_LOAD_ROLE=control-plane`) pinned to one
//! core, with the load generator; the node and bare hyper run in this
//! process, pinned to the other core. The node reports its events over
//! `ReportEvents`, as a fleet's nodes do, and each closed-loop slice waits
//! until they are stored. This process's CPU (the generator's thread
//! excepted) is the node's; the child's is reported beside it.
//!
//! A third side is the fleet's floor (`remote_rows.rs`): bare hyper, also
//! in this process, recording every request as a row that a store in the
//! child process commits before the handler answers. The target
//! compares the node with bare hyper, which keeps no event; the floor says
//! what keeping one on another machine costs a node that does nothing
//! else, and so how much of the node's cost is left to cut.

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use core_affinity::CoreId;
use hookplane_data_plane::trigger::signature;
use hookplane_sdk::api;

use crate::event_rows::{EventRows, RowOwner};
use crate::generator::Call;
use crate::measure::{Side, per_request, slices, verdict};
use crate::setup::{ORDER, SIGNING_KEY, connector};
use crate::summary::Spread;
use crate::support::nodes::{applied, start_node};
use crate::support::triggers::{create, use_plan};
use crate::support::{Backend, TestPlane};
use crate::{baselines, cpu, remote_rows};

/// The environment variable that makes this bench the control plane.
pub const ROLE: &str = "HOOKPLANE_LOAD_ROLE";
pub const CONTROL_PLANE: &str = "control-plane";
/// The core the control plane runs on (the child inherits the node's).
const CORE: &str = "HOOKPLANE_LOAD_CORE";

/// The target for the node's CPU per request over bare hyper's.
const NODE_TARGET: f64 = 1.3;

/// The node's core and the control plane's (which the generator shares),
/// read once: a pinned thread sees only its own core.
fn cores() -> (CoreId, CoreId) {
    static CORES: OnceLock<(CoreId, CoreId)> = OnceLock::new();
    *CORES.get_or_init(|| {
        let ids = core_affinity::get_core_ids().unwrap_or_default();
        assert!(ids.len() >= 2, "the node-only measurement needs two cores, one for the node and one for the rest");
        (ids[0], ids[ids.len() - 1])
    })
}

/// Pins the calling thread, and so every thread it starts later, to the
/// node's core. Call before the runtime starts its workers.
pub fn pin_node_side() {
    core_affinity::set_for_current(cores().0);
}

/// The child's part: serves a control plane on SQLite with the check-path
/// connectors, prints how to reach them as one JSON line, and stops when
/// its stdin closes.
pub fn serve_control_plane() {
    let core = std::env::var(CORE).ok().and_then(|id| id.parse().ok()).expect("the control plane's core");
    core_affinity::set_for_current(CoreId { id: core });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let plane = TestPlane::start(Backend::Sqlite).await;
        use_plan(&plane, api::Plan { name: "unlimited".into(), ..Default::default() }).await;
        // The check path never performs; the target is never called.
        let unused_target = "http://127.0.0.1:9/orders";
        let (skipping, skipping_token) =
            create(&plane, connector("$payload.status == \"refunded\"", unused_target)).await;
        let mut signed = connector("$payload.status == \"refunded\"", unused_target);
        signed.signature =
            Some(api::SignatureSettings { secret: SIGNING_KEY.into(), prefix: "sha256=".into(), ..Default::default() });
        let (signed, signed_token) = create(&plane, signed).await;
        let floor_dir = tempfile::tempdir().expect("a directory for the floor's events");
        let owner = RowOwner::of_bench_node(&plane.organization_id, &skipping);
        let rows = remote_rows::serve(floor_dir.path(), owner).await;
        let reach = serde_json::json!({
            "rows": rows.to_string(),
            "url": plane.url(),
            "version": plane.config_version().await,
            "skipping": [skipping, skipping_token],
            "signed": [signed, signed_token],
        });
        println!("{reach}");
        tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await.ok();
        plane.finish().await;
    });
}

/// The control-plane child; it stops when dropped.
struct ControlPlaneProcess {
    child: Child,
    reach: serde_json::Value,
}

impl ControlPlaneProcess {
    fn start() -> ControlPlaneProcess {
        let mut child = Command::new(std::env::current_exe().expect("this bench's path"))
            .env(ROLE, CONTROL_PLANE)
            .env(CORE, cores().1.id.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the control-plane process starts");
        let stdout = child.stdout.take().expect("piped");
        let reach = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok().filter(|v| v["url"].is_string()))
            .expect("the control-plane process says where it serves");
        ControlPlaneProcess { child, reach }
    }

    fn process(&self) -> procfs::ProcResult<procfs::process::Process> {
        procfs::process::Process::new(self.child.id() as i32)
    }

    fn connector(&self, which: &str) -> (String, String) {
        let pair = &self.reach[which];
        (pair[0].as_str().unwrap().to_owned(), pair[1].as_str().unwrap().to_owned())
    }
}

impl Drop for ControlPlaneProcess {
    fn drop(&mut self) {
        // Closing its stdin stops it.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Runs the node-only measurement and prints its tables.
pub async fn run(seconds: Duration, runs: usize) {
    let (node_core, plane_core) = cores();
    cpu::pin_generator_to(plane_core);
    let plane = tokio::task::spawn_blocking(ControlPlaneProcess::start).await.expect("control-plane process");
    let node = start_node(plane.reach["url"].as_str().unwrap(), "bench-node", None).await;
    applied(&node, plane.reach["version"].as_i64().unwrap()).await;
    let (skipping, skipping_token) = plane.connector("skipping");
    let (signed, signed_token) = plane.connector("signed");
    let settings = node.snapshot().connectors[&signed].connector.spec.signature.clone().expect("signature settings");
    let signature = signature::sign(&settings, SIGNING_KEY.as_bytes(), None, ORDER.as_bytes());

    let node_address = node.http_address();
    let trigger = |id: &str, token: &str, extra: &[(&str, &str)]| {
        let bearer = format!("Bearer {token}");
        let headers: Vec<(&str, &str)> = [&[("Authorization", bearer.as_str())], extra].concat();
        (
            node_address,
            Call::post(node_address, &format!("/api/v1/connectors/{id}/trigger"), &headers, ORDER, "\"skipped\""),
        )
    };
    let bare = baselines::bare_hyper(None).await;
    let bare = (bare, Call::post(bare, "/trigger", &[("Authorization", "Bearer x")], ORDER, "skipped"));
    let store = plane.reach["rows"].as_str().unwrap().parse().expect("the floor's store address");
    let rows = remote_rows::connect(store, &skipping).await;
    let scenarios = [
        (
            "check path, token auth (skipped)",
            floor(rows.for_connector(&skipping), &[]).await,
            trigger(&skipping, &skipping_token, &[]),
        ),
        (
            "check path, token + HMAC (skipped)",
            floor(rows.for_connector(&signed), &[("X-Webhook-Signature", &signature)]).await,
            trigger(&signed, &signed_token, &[("X-Webhook-Signature", &signature)]),
        ),
    ];

    println!(
        "node only: the node and bare hyper on core {}, the control plane (a process of its own, SQLite) and the load generator on core {}; events reported over ReportEvents",
        node_core.id, plane_core.id
    );
    let mut ratios = vec![Ratios::default(); scenarios.len()];
    for run in 1..=runs {
        println!();
        println!("Run {run} of {runs}:");
        println!();
        println!(
            "| Scenario | Bare hyper max | Floor sustained | Node sustained (answered and stored) | CPU per request at peak, µs, bare hyper / floor / node | Fixed rate (80 % of the node's) | CPU per request at that rate, µs, bare hyper / floor / node | Floor / bare hyper | Node / bare hyper | Node / floor | Control plane CPU per request at peak, µs |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for (index, (name, floor, target)) in scenarios.iter().enumerate() {
            let (row, measured) = measure(name, &bare, floor, target, &node, &plane, seconds).await;
            println!("{row}");
            ratios[index].push(measured);
        }
    }
    println!();
    println!("Node-only CPU per request at the fixed rate, median (lowest–highest) of {runs} runs:");
    println!();
    println!("| Scenario | Node / bare hyper (target ≤ {NODE_TARGET}) | Floor / bare hyper | Node / floor |");
    println!("| --- | ---: | ---: | ---: |");
    for ((name, _, _), ratios) in scenarios.iter().zip(ratios) {
        let node = Spread::of(ratios.node.into_iter());
        let (floor, over_floor) = (Spread::of(ratios.floor.into_iter()), Spread::of(ratios.over_floor.into_iter()));
        println!("| {name} | {node} {} | {floor} | {over_floor} |", verdict(node.median <= NODE_TARGET));
    }
    node.shutdown().await;
}

/// The fleet's floor for one scenario: bare hyper keeping a row per
/// request under `rows`' connector, called with the node's `extra` headers.
async fn floor(rows: EventRows, extra: &[(&str, &str)]) -> (std::net::SocketAddr, Call, EventRows) {
    let address = baselines::bare_hyper(Some(rows.clone())).await;
    let headers = [&[("Authorization", "Bearer x")], extra].concat();
    (address, Call::post(address, "/trigger", &headers, ORDER, "skipped"), rows)
}

/// One scenario's ratios of CPU per request at the fixed rate, a value per
/// run: the node's and the floor's to bare hyper's, the node's to the
/// floor's.
#[derive(Clone, Default)]
struct Ratios {
    node: Vec<f64>,
    floor: Vec<f64>,
    over_floor: Vec<f64>,
}

impl Ratios {
    fn push(&mut self, (node, floor): (f64, f64)) {
        self.node.push(node);
        self.floor.push(floor);
        self.over_floor.push(node / floor);
    }
}

/// Closed-loop slices, bare hyper, the floor and the node alternating,
/// each round followed by all three offered the same fixed rate, 80 % of
/// the node's sustained maximum. The verdict compares CPU per request at
/// that rate: the node's peak is bounded by the control plane's core, so
/// at peak its core idles between requests and wakes more per request
/// than bare hyper's saturated one. Returns the row and the node's and
/// the floor's ratios to bare hyper.
async fn measure(
    name: &str,
    bare: &(std::net::SocketAddr, Call),
    floor: &(std::net::SocketAddr, Call, EventRows),
    target: &(std::net::SocketAddr, Call),
    node: &hookplane_data_plane::DataPlane,
    plane: &ControlPlaneProcess,
    seconds: Duration,
) -> (String, (f64, f64)) {
    let (nothing, backlog, floor_backlog) = (|| 0, || node.pending_events() as u64, || floor.2.pending());
    let floor_target = (floor.0, floor.1.clone());
    let mut base = Side::new(bare, &nothing);
    let mut kept = Side::new(&floor_target, &floor_backlog);
    let mut ours = Side::new(target, &backlog);
    base.warm().await;
    kept.warm().await;
    ours.warm().await;
    let slice = seconds / slices();
    let (mut plane_cpu, mut offered) = (Duration::ZERO, 0.0);
    for _ in 0..slices() {
        base.closed_slice(slice).await;
        kept.closed_slice(slice).await;
        let before = cpu::sample_of(plane.process());
        ours.closed_slice(slice).await;
        plane_cpu += before.until(&cpu::sample_of(plane.process())).servers();
        let rate = ours.sustained() * 0.8;
        offered += rate / f64::from(slices());
        base.fixed_slice(rate, slice).await;
        kept.fixed_slice(rate, slice).await;
        ours.fixed_slice(rate, slice).await;
    }
    let (bare_cpu, floor_cpu, node_cpu) =
        (base.fixed_cpu_per_request(), kept.fixed_cpu_per_request(), ours.fixed_cpu_per_request());
    let (ratio, floor_ratio) = (node_cpu / bare_cpu, floor_cpu / bare_cpu);
    let row = format!(
        "| {name} | {:.0}/s | {:.0}/s | {:.0}/s | {:.1} / {:.1} / {:.1} ({:.1} workers) | {offered:.0}/s | {bare_cpu:.1} / {floor_cpu:.1} / {node_cpu:.1} | {floor_ratio:.2}× | **{ratio:.2}×** ({} ≤ {NODE_TARGET}) | {:.2}× | {:.1} |",
        base.sustained(),
        kept.sustained(),
        ours.sustained(),
        base.cpu_per_request(),
        kept.cpu_per_request(),
        ours.cpu_per_request(),
        per_request(ours.cpu.workers, ours.max.ok),
        verdict(ratio <= NODE_TARGET),
        node_cpu / floor_cpu,
        per_request(plane_cpu, ours.max.ok),
    );
    (row, (ratio, floor_ratio))
}
