//! Allocations per answered trigger (issue 23): the heap traffic behind the
//! allocator's share of hookplane's CPU, counted instead of timed, so that
//! it reads the same on any machine and a change shows as a number rather
//! than within a run's noise.
//!
//! It starts what `trigger_load` starts (`trigger_load/setup.rs`) and, for
//! each comparison, loads the baseline, its floor and hookplane in turn,
//! closed loop. Every allocation and reallocation in this process counts,
//! from the start of a side's load until its events are stored: the node,
//! the control plane and its SQLite threads, the floor's writer, and the
//! target of the end-to-end pair (which the proxy and hookplane call
//! alike). The load generator allocates nothing per request. The counts
//! are the program's whichever allocator serves them, so they are taken
//! with `stats_alloc` around the system allocator; `trigger_load` runs on
//! mimalloc, as the `hookplane` binary does. It also counts how often the
//! servers' threads were put on a CPU (`cpu.rs`): wake-ups, each a trip
//! through the kernel's scheduler that no instruction count shows.
//!
//! Under `valgrind --tool=callgrind` with `HOOKPLANE_ALLOC_CALLGRIND=1`,
//! it also counts the instructions each side executed per request
//! (`Callgrind` below): a measure of CPU work that, too, reads the same
//! whatever else the machine does, though only of user space.
//!
//! Run: `cargo bench --bench trigger_allocations`. Knobs:
//! `HOOKPLANE_LOAD_SECS` (per side and run, default 2),
//! `HOOKPLANE_LOAD_RUNS` (default 3), `HOOKPLANE_ALLOC_SIDES` (the sides
//! to load, of `baseline,floor,hookplane`: one alone, to see where its
//! allocations come from under `valgrind --tool=dhat`),
//! `HOOKPLANE_ALLOC_CALLGRIND`, `HOOKPLANE_ALLOC_RATE` (requests per
//! second, open loop, where the load is closed otherwise: a call's cost
//! below peak, where batches are smaller and threads idle between calls),
//! and `trigger_load`'s
//! `HOOKPLANE_LOAD_ONLY`, `HOOKPLANE_LOAD_CONNECTIONS`,
//! `HOOKPLANE_LOAD_EVENTS` and `HOOKPLANE_LOAD_FLOOR`.

#[path = "../tests/it/support/mod.rs"]
mod support;

#[path = "trigger_load/baselines.rs"]
mod baselines;
#[allow(dead_code, reason = "trigger_load's; this bench needs only what loads a server")]
#[path = "trigger_load/cpu.rs"]
mod cpu;
#[path = "trigger_load/event_rows.rs"]
mod event_rows;
#[allow(dead_code, reason = "trigger_load's; this bench needs only what loads a server")]
#[path = "trigger_load/generator.rs"]
mod generator;
#[path = "trigger_load/hand_written.rs"]
mod hand_written;
#[allow(dead_code, reason = "trigger_load's; this bench needs only what loads a server")]
#[path = "trigger_load/measure.rs"]
mod measure;
#[path = "trigger_load/setup.rs"]
mod setup;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use generator::{Call, Pace};
use measure::Side;
use setup::{Setup, setting};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static HEAP: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// What one side's load cost, per answered request; `NaN` where not
/// measured.
#[derive(Clone, Copy)]
struct PerRequest {
    allocations: f64,
    bytes: f64,
    /// Times the servers' threads were put on a CPU (`cpu.rs`).
    wakeups: f64,
    instructions: f64,
}

impl PerRequest {
    const NOT_LOADED: PerRequest =
        PerRequest { allocations: f64::NAN, bytes: f64::NAN, wakeups: f64::NAN, instructions: f64::NAN };
}

impl std::fmt::Display for PerRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.allocations.is_nan() {
            return f.write_str("—");
        }
        write!(f, "{:.1} ({:.0} B), {:.2} wake-ups", self.allocations, self.bytes, self.wakeups)?;
        if !self.instructions.is_nan() {
            write!(f, ", {:.0} instructions", self.instructions)?;
        }
        Ok(())
    }
}

/// The instructions this process executes, read from callgrind's counts
/// when the bench runs under `valgrind --tool=callgrind` (from the
/// directory callgrind writes to, without `--callgrind-out-file`). They
/// are the whole process's, the load generator's among them, alike on
/// every side; the kernel's work (a third of a call's CPU on the check
/// path) is not among them.
struct Callgrind {
    dumps: u32,
}

impl Callgrind {
    fn new() -> Option<Callgrind> {
        std::env::var("HOOKPLANE_ALLOC_CALLGRIND").is_ok_and(|v| v == "1").then_some(Callgrind { dumps: 0 })
    }

    fn control(option: &str) {
        let status = Command::new("callgrind_control")
            .arg(option)
            .arg(std::process::id().to_string())
            .stdout(Stdio::null())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "callgrind_control {option}: does the bench run under callgrind?");
    }

    /// Counts from zero.
    fn zero(&self) {
        Callgrind::control("--zero");
    }

    /// Instructions executed since [`Callgrind::zero`].
    fn read(&mut self) -> u64 {
        Callgrind::control("--dump");
        self.dumps += 1;
        let path = format!("callgrind.out.{}.{}", std::process::id(), self.dumps);
        let dump = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("callgrind's dump {path}: {e}"));
        let totals = dump.lines().find_map(|line| line.strip_prefix("totals:"));
        totals.and_then(|t| t.split_whitespace().next()?.parse().ok()).expect("callgrind's dump has totals")
    }
}

/// Loads one side and counts what the process allocated (and executed,
/// under callgrind) until its events were stored; counts nothing for a
/// side `HOOKPLANE_ALLOC_SIDES` leaves out.
async fn count(
    name: &str,
    side: &(SocketAddr, Call),
    pending: &dyn Fn() -> u64,
    seconds: Duration,
    callgrind: &mut Option<Callgrind>,
) -> PerRequest {
    let sides = std::env::var("HOOKPLANE_ALLOC_SIDES").unwrap_or_default();
    if !sides.is_empty() && !sides.split(',').any(|s| s.trim() == name) {
        return PerRequest::NOT_LOADED;
    }
    Side::new(side, pending).warm().await;
    if let Some(callgrind) = callgrind {
        callgrind.zero();
    }
    let threads = cpu::sample();
    let region = Region::new(HEAP);
    let pace = std::env::var("HOOKPLANE_ALLOC_RATE").ok().and_then(|r| r.parse().ok()).map_or(Pace::Closed, Pace::Rate);
    let report = measure::load(side.0, &side.1, pace, seconds).await;
    measure::drain(pending).await;
    let change = region.change();
    let spent = threads.until(&cpu::sample());
    let instructions = callgrind.as_mut().map_or(f64::NAN, |callgrind| callgrind.read() as f64);
    if let Some(error) = &report.first_error {
        eprintln!("{}: {} errors, the first: {error}", side.0, report.errors);
    }
    let answered = report.ok.max(1) as f64;
    PerRequest {
        allocations: (change.allocations + change.reallocations) as f64 / answered,
        bytes: (change.bytes_allocated as f64 + change.bytes_reallocated.max(0) as f64) / answered,
        wakeups: spent.runs as f64 / answered,
        instructions: instructions / answered,
    }
}

/// `median (lowest–highest)` of some runs' values; a dash for a side not
/// loaded or a count not taken.
fn spread(mut values: Vec<f64>, decimals: usize) -> String {
    if values.iter().any(|v| v.is_nan()) {
        return "—".into();
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 };
    format!("{median:.decimals$} ({:.decimals$}–{:.decimals$})", values[0], values[n - 1])
}

/// One summary table: `value` of each side over the runs, and hookplane's
/// over the floor's.
fn summarize(title: &str, pairs: &[&setup::Pair], counted: &[[Vec<PerRequest>; 3]], value: fn(&PerRequest) -> f64) {
    println!();
    println!("{title}, median (lowest–highest) of the runs:");
    println!();
    println!("| Scenario | Baseline | Floor | Hookplane | Hookplane / floor |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (pair, [base, floor, ours]) in pairs.iter().zip(counted) {
        let of = |side: &Vec<PerRequest>| spread(side.iter().map(value).collect(), 2);
        let ratio = ours.iter().zip(floor).map(|(o, f)| value(o) / value(f)).collect();
        println!("| {} | {} | {} | {} | {}× |", pair.name, of(base), of(floor), of(ours), spread(ratio, 2));
    }
}

fn main() {
    let seconds = Duration::from_secs(setting("HOOKPLANE_LOAD_SECS", 2u64));
    let runs = setting("HOOKPLANE_LOAD_RUNS", 3usize).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let setup = Setup::start().await;
        let (node_pending, floor_pending, nothing) = (|| setup.node_pending(), || setup.rows.pending(), || 0);
        println!("trigger_allocations: {}s of closed-loop load per side, {runs} runs", seconds.as_secs());
        let pairs: Vec<_> = setup.chosen().collect();
        let mut callgrind = Callgrind::new();
        // By pair: the baseline's, the floor's and hookplane's counts, one per run.
        let mut counted = vec![[const { Vec::new() }; 3]; pairs.len()];
        for run in 1..=runs {
            println!();
            println!("Run {run} of {runs}, allocations (bytes) and wake-ups per answered request:");
            println!();
            println!("| Scenario | Baseline | Floor | Hookplane | Hookplane − floor |");
            println!("| --- | ---: | ---: | ---: | ---: |");
            for (pair, counts) in pairs.iter().zip(&mut counted) {
                let base = count("baseline", &pair.baseline, &nothing, seconds, &mut callgrind).await;
                let floor = count("floor", &pair.floor, &floor_pending, seconds, &mut callgrind).await;
                let ours = count("hookplane", &pair.hookplane, &node_pending, seconds, &mut callgrind).await;
                let gap = PerRequest {
                    allocations: ours.allocations - floor.allocations,
                    bytes: ours.bytes - floor.bytes,
                    wakeups: ours.wakeups - floor.wakeups,
                    instructions: ours.instructions - floor.instructions,
                };
                println!("| {} | {base} | {floor} | {ours} | {gap} |", pair.name);
                for (side, value) in counts.iter_mut().zip([base, floor, ours]) {
                    side.push(value);
                }
            }
        }
        summarize("Allocations per answered request", &pairs, &counted, |c| c.allocations);
        summarize("Bytes allocated per answered request", &pairs, &counted, |c| c.bytes);
        summarize("Wake-ups of the servers' threads per answered request", &pairs, &counted, |c| c.wakeups);
        if callgrind.is_some() {
            summarize("Instructions per answered request (user space)", &pairs, &counted, |c| c.instructions);
        }
        setup.finish().await;
    });
}
