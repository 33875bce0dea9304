//! CPU time per thread of this process, from Linux's
//! `/proc/self/task/*/schedstat` (nanoseconds on the CPU, exact, unlike the
//! 10 ms ticks of `stat`). A phase's CPU per answered request, split by
//! thread kind, shows what each side costs independently of how the two
//! cores were shared; the load generator's thread reports its own, and how
//! long it waited for a core. The same file counts how often each thread
//! was put on a CPU: its wake-ups.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use core_affinity::CoreId;

/// CPU time consumed so far by each thread, by thread id.
#[derive(Debug, Default)]
pub struct Sample {
    /// By thread id: its name, nanoseconds on a CPU, times put on one.
    threads: HashMap<u32, (String, u64, u64)>,
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
    sample_of("self")
}

/// Reads the CPU time of every thread of process `pid` (`"self"` for this
/// one), as [`sample`] does.
pub fn sample_of(pid: &str) -> Sample {
    let mut threads = HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Sample::default() };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default().trim().to_owned();
        let [on_cpu, _, runs] = schedstat(&path.join("schedstat"));
        threads.insert(tid, (comm, on_cpu, runs));
    }
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
/// its thread ends and leaves `/proc`).
pub fn this_thread() -> ThreadTimes {
    let [on_cpu, waiting, _] = schedstat(Path::new("/proc/thread-self/schedstat"));
    ThreadTimes { on_cpu: Duration::from_nanos(on_cpu), waiting: Duration::from_nanos(waiting) }
}

/// A thread's `schedstat`: nanoseconds on a CPU, nanoseconds ready and
/// waiting for one, and times put on one; zeros where it cannot be read.
fn schedstat(path: &Path) -> [u64; 3] {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut fields = text.split_whitespace().map(|f| f.parse().unwrap_or(0));
    std::array::from_fn(|_| fields.next().unwrap_or(0))
}

/// CPU spent so far by every other process of the machine, this one's
/// children excepted (the node-only run's control plane), from
/// `/proc/<pid>/stat` in its 10 ms ticks: `utime + stime`, plus `cutime +
/// cstime` for the children a process has reaped, so that one that came
/// and went between two readings still counts, with its parent.
pub fn other_processes() -> Duration {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Duration::ZERO };
    let mut ticks = 0u64;
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // The fields after the command, which is in parentheses and may
        // hold spaces: state, ppid, … utime is the 12th of them.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<u64> = rest.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
        if fields.first() == Some(&u64::from(me)) {
            continue;
        }
        ticks += fields.get(10..14).map_or(0, |times| times.iter().sum());
    }
    // Linux's USER_HZ is 100 wherever it runs.
    Duration::from_millis(ticks * 10)
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
