//! CPU time per thread of this process, from Linux's
//! `/proc/self/task/*/schedstat` (nanoseconds on the CPU, exact, unlike the
//! 10 ms ticks of `stat`). A phase's CPU per answered request, split by
//! thread kind, shows what each side costs independently of how the two
//! cores were shared; the load generator's thread reports its own, and how
//! long it waited for a core. The same file counts how often each thread
//! was put on a CPU: its wake-ups.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use core_affinity::CoreId;
use procfs::process::{Process, Schedstat};
use procfs::{FromRead as _, ProcResult};

/// CPU time consumed so far by each thread, by thread id.
#[derive(Debug, Default)]
pub struct Sample {
    /// By thread id: its name, nanoseconds on a CPU, times put on one.
    threads: HashMap<i32, (String, u64, u64)>,
}

/// What a phase cost, by thread kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct Spent {
    /// Runtime workers (the servers under test and, for hookplane, the
    /// node and the control plane).
    pub workers: Duration,
    /// SQLite's connection threads (sqlx runs each connection on one).
    pub sqlite: Duration,
    /// Everything else (blocking pool, timers).
    pub other: Duration,
    /// Times the servers' threads were put on a CPU: wake-ups, and
    /// preemptions.
    pub runs: u64,
}

impl std::ops::AddAssign for Spent {
    fn add_assign(&mut self, other: Spent) {
        self.workers += other.workers;
        self.sqlite += other.sqlite;
        self.other += other.other;
        self.runs += other.runs;
    }
}

impl Spent {
    /// Servers' CPU (the generator's thread is not among them).
    pub fn servers(&self) -> Duration {
        self.workers + self.sqlite + self.other
    }
}

/// Reads every thread's CPU time; empty where `/proc` is not Linux's.
pub fn sample() -> Sample {
    sample_of(Process::myself())
}

/// Reads the CPU time of every thread of `process`, as [`sample`] does.
pub fn sample_of(process: ProcResult<Process>) -> Sample {
    let tasks = process.and_then(|process| process.tasks());
    let threads = tasks
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| {
            let (stat, times) = (task.stat().ok()?, task.schedstat().ok()?);
            Some((task.tid, (stat.comm, times.sum_exec_runtime, times.pcount)))
        })
        .collect();
    Sample { threads }
}

impl Sample {
    /// CPU spent between `self` and `later`, by thread kind.
    pub fn until(&self, later: &Sample) -> Spent {
        let mut spent = Spent::default();
        for (tid, (comm, now, runs)) in &later.threads {
            let (before, runs_before) = self.threads.get(tid).map_or((0, 0), |(_, ns, runs)| (*ns, *runs));
            let delta = Duration::from_nanos(now.saturating_sub(before));
            let bucket = if comm == GENERATOR_THREAD {
                continue;
            } else if comm.starts_with("sqlx-sqlite") {
                &mut spent.sqlite
            } else if comm.starts_with("tokio-rt-worker") || comm.starts_with("trigger_load") {
                &mut spent.workers
            } else {
                &mut spent.other
            };
            *bucket += delta;
            spent.runs += runs.saturating_sub(runs_before);
        }
        spent
    }
}

/// How the calling thread has spent its life so far.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadTimes {
    /// On a CPU.
    pub on_cpu: Duration,
    /// Runnable and waiting for a CPU (the run queue's delay).
    pub waiting: Duration,
}

/// The calling thread's times so far (the generator reads its own before
/// its thread ends and leaves `/proc`); zeros where they cannot be read.
pub fn this_thread() -> ThreadTimes {
    let times = Schedstat::from_file("/proc/thread-self/schedstat");
    let (on_cpu, waiting) = times.map_or((0, 0), |times| (times.sum_exec_runtime, times.run_delay));
    ThreadTimes { on_cpu: Duration::from_nanos(on_cpu), waiting: Duration::from_nanos(waiting) }
}

/// CPU spent so far by every other process of the machine, this one's
/// children excepted (the node-only run's control plane): `utime + stime`,
/// plus `cutime + cstime` for the children a process has reaped, so that
/// one that came and went between two readings still counts, with its
/// parent.
pub fn other_processes() -> Duration {
    let me = std::process::id() as i32;
    let others = procfs::process::all_processes().into_iter().flatten().flatten().filter(|p| p.pid != me);
    let ticks: u64 = others
        .filter_map(|process| process.stat().ok())
        .filter(|stat| stat.ppid != me)
        .map(|stat| stat.utime + stat.stime + stat.cutime.unsigned_abs() + stat.cstime.unsigned_abs())
        .sum();
    Duration::from_secs_f64(ticks as f64 / procfs::ticks_per_second() as f64)
}

/// The name of the load generator's thread.
pub const GENERATOR_THREAD: &str = "load-generator";

static GENERATOR_CORE: OnceLock<CoreId> = OnceLock::new();

/// Runs every later load generator on `core` (the node-only measurement
/// keeps the generator off the node's core).
pub fn pin_generator_to(core: CoreId) {
    let _ = GENERATOR_CORE.set(core);
}

/// The core the load generator runs on, if it is pinned.
pub fn generator_core() -> Option<CoreId> {
    GENERATOR_CORE.get().copied()
}
