//! Trigger load benchmark (issue 23: trigger performance against the
//! floor). In one run, on one machine, against the same local target:
//! - check path: bare hyper vs hookplane answering accepted-and-skipped
//!   triggers, with token auth and with token auth plus an HMAC signature;
//! - end to end: a bare hyper proxy vs hookplane completing triggers with a
//!   condition, three mappings and a JSON perform; and the same connector
//!   written by hand (`hand_written.rs`) vs hookplane, which separates what
//!   the work itself costs from what hookplane adds to it.
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
//! answering faster than events are stored only defers the work. A tail
//! slice during which another process of the machine took the cores runs
//! again (`measure.rs`).
//! Hookplane runs as `hookplane dev` does: the control plane on SQLite and
//! one node in this process, events handed over in process and stored.
//! Every measurement runs as slices, the three sides alternating, so the
//! drift of a shared machine falls on all of them alike. The whole run
//! repeats `HOOKPLANE_LOAD_RUNS` times and ends with each ratio's median
//! and spread (`summary.rs`).
//!
//! With `HOOKPLANE_LOAD_NODE_ONLY=1` it measures instead the node as a
//! fleet runs it, the control plane in a process and on a core of its own,
//! against bare hyper and against bare hyper keeping a row per request in
//! that process (`node_only.rs`, `remote_rows.rs`).
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
mod hand_written;
mod measure;
mod node_only;
mod remote_rows;
mod setup;
mod summary;

use std::time::Duration;

use setup::{Setup, setting};

/// The allocator of the `hookplane` binary, so both sides run as shipped
/// (the baselines share the process and so get it too).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let setup = Setup::start().await;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "trigger_load: {cores} cores, {}s per measurement in {} alternating slices, servers on 2 worker threads, {runs} runs",
        seconds.as_secs(),
        measure::slices()
    );
    let (node_backlog, floor_backlog) = (|| setup.node_pending(), || setup.rows.pending());
    let mut outcomes = Vec::new();
    for run in 1..=runs {
        let mut this_run = Vec::new();
        for pair in setup.chosen() {
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
    setup.finish().await;
}
