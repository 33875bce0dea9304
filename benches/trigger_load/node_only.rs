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

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use core_affinity::CoreId;
use hookplane_data_plane::trigger::signature;
use hookplane_sdk::api;

use crate::generator::Call;
use crate::measure::{Side, per_request, slices, verdict};
use crate::setup::{ORDER, SIGNING_KEY, connector};
use crate::summary::Spread;
use crate::support::nodes::{applied, start_node};
use crate::support::triggers::{create, use_plan};
use crate::support::{Backend, TestPlane};
use crate::{baselines, cpu};

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
        let reach = serde_json::json!({
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

    fn pid(&self) -> String {
        self.child.id().to_string()
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

/// What a node-only run of one scenario measured.
struct Measured {
    row: String,
    ratio: f64,
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
    let scenarios = [
        ("check path, token auth (skipped)", trigger(&skipping, &skipping_token, &[])),
        ("check path, token + HMAC (skipped)", trigger(&signed, &signed_token, &[("X-Webhook-Signature", &signature)])),
    ];

    println!(
        "node only: the node and bare hyper on core {}, the control plane (a process of its own, SQLite) and the load generator on core {}; events reported over ReportEvents",
        node_core.id, plane_core.id
    );
    let mut ratios = vec![Vec::new(); scenarios.len()];
    for run in 1..=runs {
        println!();
        println!("Run {run} of {runs}:");
        println!();
        println!(
            "| Scenario | Bare hyper max | Node sustained (answered and stored) | CPU per request at peak, µs, bare hyper / node | Fixed rate (80 % of the node's) | CPU per request at that rate, µs, bare hyper / node | Node / bare hyper at that rate | Control plane CPU per request at peak, µs |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for (index, (name, target)) in scenarios.iter().enumerate() {
            let measured = measure(name, &bare, target, &node, &plane, seconds).await;
            println!("{}", measured.row);
            ratios[index].push(measured.ratio);
        }
    }
    println!();
    println!("Node CPU per request over bare hyper's, median (lowest–highest) of {runs} runs:");
    println!();
    println!("| Scenario | Node / bare hyper (target ≤ {NODE_TARGET}) |");
    println!("| --- | ---: |");
    for ((name, _), values) in scenarios.iter().zip(ratios) {
        let spread = Spread::of(values.into_iter());
        println!("| {name} | {spread} {} |", verdict(spread.median <= NODE_TARGET));
    }
    node.shutdown().await;
}

/// Closed-loop slices, bare hyper and the node alternating, each round
/// followed by both offered the same fixed rate, 80 % of the node's
/// sustained maximum. The verdict compares CPU per request at that rate:
/// the node's peak is bounded by the control plane's core, so at peak its
/// core idles between requests and wakes more per request than bare
/// hyper's saturated one.
async fn measure(
    name: &str,
    bare: &(std::net::SocketAddr, Call),
    target: &(std::net::SocketAddr, Call),
    node: &hookplane_data_plane::DataPlane,
    plane: &ControlPlaneProcess,
    seconds: Duration,
) -> Measured {
    let (nothing, backlog) = (|| 0, || node.pending_events() as u64);
    let mut base = Side::new(bare, &nothing);
    let mut ours = Side::new(target, &backlog);
    base.warm().await;
    ours.warm().await;
    let slice = seconds / slices();
    let (mut plane_cpu, mut offered) = (Duration::ZERO, 0.0);
    for _ in 0..slices() {
        base.closed_slice(slice).await;
        let before = cpu::sample_of(&plane.pid());
        ours.closed_slice(slice).await;
        plane_cpu += before.until(&cpu::sample_of(&plane.pid())).servers();
        let rate = ours.sustained() * 0.8;
        offered += rate / f64::from(slices());
        base.fixed_slice(rate, slice).await;
        ours.fixed_slice(rate, slice).await;
    }
    let ratio = ours.fixed_cpu_per_request() / base.fixed_cpu_per_request();
    let row = format!(
        "| {name} | {:.0}/s | {:.0}/s | {:.1} / {:.1} ({:.1} workers) | {offered:.0}/s | {:.1} / {:.1} | **{ratio:.2}×** ({} ≤ {NODE_TARGET}) | {:.1} |",
        base.sustained(),
        ours.sustained(),
        base.cpu_per_request(),
        ours.cpu_per_request(),
        per_request(ours.cpu.workers, ours.max.ok),
        base.fixed_cpu_per_request(),
        ours.fixed_cpu_per_request(),
        verdict(ratio <= NODE_TARGET),
        per_request(plane_cpu, ours.max.ok),
    );
    Measured { row, ratio }
}
