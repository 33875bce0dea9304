//! SQLite's checkpoints, off the commit path.
//!
//! In WAL mode a commit appends pages to the write-ahead log, and a
//! checkpoint copies them into the database file and syncs both: with
//! `synchronous = NORMAL`, SQLite syncs nothing else but the header of a
//! log just restarted. By default the
//! connection whose commit takes the log past 1 000 pages runs the
//! checkpoint itself, before its commit returns; for the store that is the
//! event writer, and every handler waiting on a batch waits out the copy
//! and the two `fsync`s. Traced in the trigger-load bench's open loop
//! (12 000 calls/s, end to end): 1 232 `fsync`s in 12 s on the writer's
//! thread, a median of 1 ms, the slowest 53 ms, 2.6 s in all.
//!
//! So the store's connections leave checkpoints to a connection of their
//! own here, which copies about 1 000 pages at a time (as SQLite's default
//! does), as often as the log grows that much ([`next_interval`]): a
//! passive checkpoint takes no lock a writer waits on, so the writer keeps
//! appending while the copy runs.
//!
//! A writer restarts the log from its first page only when it finds every
//! page copied, and under sustained writes a checkpoint running beside
//! them never leaves it so. So once the log holds [`CATCH_UP_AT`] pages
//! since it last restarted, a checkpoint is caught up with ([`catch_up`]):
//! more passes copy what came during the one before, and a last one during
//! the writers' turn (`writer.rs`) copies what came meanwhile, after which
//! the next write restarts the log. Writers wait out that short copy and
//! its two syncs about every 1 000 pages, where by default they waited out
//! every whole checkpoint; their own thread then syncs only a restarted
//! log's header (traced at 12 000 calls/s: 35 `fsync`s of 0.2–1 ms).
//!
//! A passive checkpoint that writes race syncs no database file, so the
//! sync during the turn wrote out every page copied since the last
//! catch-up, and rarer catch-ups made longer waits. In the trigger-load
//! bench's tail phase, with only a checkpoint before the turn, five runs
//! each: with a catch-up every 4 096 pages (3–24 ms each), hookplane's
//! p99 was 14.5–24.8 ms in four runs and 144 ms in one (median 1.82× the
//! floor's); with one every 1 024, 9.4–14.3 ms in three, 30 and 100 ms in
//! two (median 1.44×). Now the file is synced before the turn, through a
//! descriptor of the process's own (`database_file.rs`), and SQLite's sync
//! during the turn writes out only what the last pass copied. Traced in
//! that bench (five runs, end to end), the turn was held a median of
//! 3.8 ms (5.1 ms at the 90th percentile) with the one checkpoint before
//! it, and 1.2 ms (2.1 ms) with the passes and the sync, which take 5.6 ms
//! outside it.
//!
//! The writers still checkpoint themselves once the log holds
//! [`WRITER_CHECKPOINTS_AT`] pages since it last restarted (32 MiB), should
//! this task fall behind or fail. Without the catch-up they did so under
//! sustained writes, copying up to an interval's pages the checkpointer had
//! not reached: traced at 12 000 calls/s, 54 `fsync`s on the writer's
//! thread (0.17 s in all), against 1 232 (2.6 s) with SQLite's default.
//! Durability does not change: a commit is in the log, which survives the
//! process, as before.
//!
//! The interval alone lagged behind bursts: it follows the pace of the
//! last looks, and traffic comes in bursts after quiet spells. So the
//! writers count the events they store (`Writer::wrote`), and a megabyte of
//! them brings the next look forward to the shortest interval after the
//! last (other writes are small, and wait for the interval). The interval
//! then follows what came since the last look, however soon it was. Without it, in the trigger-load bench's tail phase (bursts of
//! 1.25 s at some 34 000 pages a second, an interval grown to 5 s before
//! them), the writers reached their bound every 250 ms of a burst and
//! checkpointed 8 000 pages themselves, a sync of the log of 16–28 ms that
//! every waiting call waited out; hookplane's p99 was 38–62 ms there,
//! against 11–29 ms with SQLite's default checkpoints.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
use sqlx::{ConnectOptions as _, Connection as _, Row as _};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::database_file::DatabaseFile;
use super::writer::Writer;

/// Pages a checkpoint aims to copy: SQLite's own default bound.
const TARGET_PAGES: i64 = 1_000;

/// The shortest time between two checkpoints.
pub(super) const SHORTEST: Duration = Duration::from_millis(100);

/// The longest: a store that writes little copies its few pages this
/// seldom, and one that writes nothing looks this seldom (a checkpoint
/// with nothing to copy syncs nothing).
const LONGEST: Duration = Duration::from_secs(5);

/// Bytes of events written (`Writer::wrote`) after which the checkpointer
/// looks without waiting out its interval: about [`TARGET_PAGES`] of log
/// at the trigger-load bench's events, which count about 1 kB each and
/// log 1–2 pages.
pub(super) const LOOK_AFTER_BYTES: usize = 1 << 20;

/// Pages in the log since it last restarted past which a checkpoint is
/// followed by one during the writers' turn, so that it can restart.
const CATCH_UP_AT: i64 = 1_024;

/// Checkpoints a catch-up runs outside the writers' turn before it takes
/// it, at most.
const PASSES_BEFORE_TURN: usize = 3;

/// Pages that came into the log during a catch-up's pass (as the next
/// pass finds them) at or under which no more passes run: a measure of
/// what is left for the turn, which writes during the last pass and the
/// sync add to.
const LEFT_FOR_THE_TURN: i64 = 256;

/// Pages in the log past which the connection that commits checkpoints
/// itself (`PRAGMA wal_autocheckpoint`; SQLite's default is 1 000).
pub(super) const WRITER_CHECKPOINTS_AT: u32 = 8_192;

/// The statement that sets [`WRITER_CHECKPOINTS_AT`] on a connection of
/// the store's pool (`'static`, as sqlx's `after_connect` asks).
pub(super) static WRITER_CHECKPOINTS_PRAGMA: LazyLock<String> =
    LazyLock::new(|| format!("PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINTS_AT}"));

/// Starts checkpointing the store's database of `options`.
pub(super) fn spawn(
    options: SqliteConnectOptions,
    writer: Writer,
    database: Option<Arc<DatabaseFile>>,
    mut closed: watch::Receiver<bool>,
) -> JoinHandle<()> {
    // The store's database is in WAL mode already; saying so keeps this
    // connection from asking for any other mode.
    let options = options.journal_mode(SqliteJournalMode::Wal).create_if_missing(false);
    tokio::spawn(async move {
        let mut connection: Option<SqliteConnection> = None;
        let mut pace = Pace::new();
        // Ends when closed, or every store gone with its sender.
        while pace.wait(&writer, &mut closed).await {
            if connection.is_none() {
                match options.connect().await {
                    Ok(opened) => connection = Some(opened),
                    Err(err) => {
                        tracing::warn!(error = %err, "could not open the checkpoint connection");
                        pace.failed();
                        continue;
                    }
                }
            }
            let Some(open) = connection.as_mut() else { continue };
            let checked = match checkpoint(open).await {
                Ok(Some((log, _))) if pace.catches_up(log) => catch_up(open, &writer, database.as_deref(), log).await,
                Ok(Some((log, _))) => Ok(Some((log, false))),
                Ok(None) => Ok(None),
                Err(err) => Err(err),
            };
            match checked {
                Ok(Some((log, caught_up))) => pace.looked(log, caught_up),
                Ok(None) => pace.busy(),
                Err(err) => {
                    tracing::warn!(error = %err, "checkpoint failed; trying again");
                    // A connection that failed is opened anew, once closed:
                    // dropped, SQLite would close it later, perhaps after
                    // the store released the database file.
                    if let Some(failed) = connection.take() {
                        let _ = failed.close().await;
                    }
                    pace.failed();
                }
            }
        }
        if let Some(open) = connection {
            let _ = open.close().await;
        }
    })
}

/// When the checkpointer looks at the log next.
#[derive(Debug)]
struct Pace {
    interval: Duration,
    /// Pages in the log since it last restarted, at the last look (none
    /// after a catch-up, as the next write restarts it).
    last_log: i64,
    /// The log's length at the last catch-up, while it still has it: no
    /// write has restarted it, and all of it is copied.
    caught_up_at: Option<i64>,
    last_look: Instant,
    /// From the look before the last to the last.
    waited: Duration,
    /// The last look failed: it is tried again after the longest interval,
    /// however much is written.
    failing: bool,
}

impl Pace {
    fn new() -> Pace {
        let now = Instant::now();
        Pace { interval: SHORTEST, last_log: 0, caught_up_at: None, last_look: now, waited: SHORTEST, failing: false }
    }

    /// Waits until the next look is due: an interval after the last, or
    /// once [`LOOK_AFTER_BYTES`] of events were written, but never sooner
    /// than the shortest interval after the last look. `false` once the
    /// store is closed.
    async fn wait(&mut self, writer: &Writer, closed: &mut watch::Receiver<bool>) -> bool {
        let closing = async { drop(closed.wait_for(|closed| *closed).await) };
        tokio::pin!(closing);
        let due = async {
            tokio::select! {
                () = tokio::time::sleep_until(self.last_look + self.interval) => {}
                () = writer.log_grown(), if !self.failing => {
                    tokio::time::sleep_until(self.last_look + SHORTEST).await;
                }
            }
        };
        tokio::select! {
            () = due => {}
            () = &mut closing => return false,
        }
        writer.looking();
        let now = Instant::now();
        (self.waited, self.last_look) = (now - self.last_look, now);
        true
    }

    /// Whether a log of `log` pages is to be caught up with during the
    /// writers' turn: long, and not caught up with already.
    fn catches_up(&self, log: i64) -> bool {
        log >= CATCH_UP_AT && self.caught_up_at != Some(log)
    }

    /// After a look that found `log` pages in the log, and caught up with
    /// them if `caught_up`.
    fn looked(&mut self, log: i64, caught_up: bool) {
        let unchanged = self.caught_up_at == Some(log);
        let new = if unchanged { 0 } else { new_pages(self.last_log, log) };
        self.interval = next_interval(self.waited, new);
        // After a catch-up the next write restarts the log, so all it holds
        // then is new.
        (self.last_log, self.caught_up_at) = if caught_up || unchanged { (0, Some(log)) } else { (log, None) };
        self.failing = false;
    }

    /// After a look that found another checkpoint running (the writers',
    /// past their bound): soon again.
    fn busy(&mut self) {
        (self.interval, self.failing) = (SHORTEST, false);
    }

    /// After a failed look, or a connection that did not open.
    fn failed(&mut self) {
        (self.interval, self.failing) = (LONGEST, true);
    }
}

/// One passive checkpoint: copies what the log holds that no reader still
/// needs from it. Returns the pages in the log since it last restarted,
/// and those of them now copied; `None` if another connection was
/// checkpointing (SQLite then reports neither).
async fn checkpoint(connection: &mut SqliteConnection) -> Result<Option<(i64, i64)>, sqlx::Error> {
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&mut *connection).await?;
    let busy: i64 = row.try_get(0)?;
    Ok((busy == 0).then_some((row.try_get(1)?, row.try_get(2)?)))
}

/// Copies what came into the log while the checkpoint before ran, which
/// found it `log` pages long, and the rest during the writers' turn, so
/// that the next write finds it all copied and restarts it. Returns the
/// log's length last found, and whether it was caught up with: not if a
/// write restarted it meanwhile, nor if the turn was not had; `None` if
/// another checkpoint ran.
///
/// The turn is kept short: up to [`PASSES_BEFORE_TURN`] checkpoints copy
/// outside it, each what came during the one before, and `database` is
/// synced before it is taken, so that SQLite's syncs during the turn write
/// out only what came after. A turn not had within the pool's timeout
/// (writes queued that long) is let go: the writers' bound holds the log
/// meanwhile.
async fn catch_up(
    connection: &mut SqliteConnection,
    writer: &Writer,
    database: Option<&DatabaseFile>,
    mut log: i64,
) -> Result<Option<(i64, bool)>, sqlx::Error> {
    for _ in 0..PASSES_BEFORE_TURN {
        let Some((next, _)) = checkpoint(connection).await? else { return Ok(None) };
        if next < log {
            // A write restarted it: it found it all copied.
            return Ok(Some((next, false)));
        }
        let came = next - log;
        log = next;
        if came <= LEFT_FOR_THE_TURN {
            break;
        }
    }
    if let Some(database) = database
        && let Err(err) = database.sync().await
    {
        // SQLite syncs it during the turn all the same, and sees the
        // error too (Linux reports a failed write-back to every
        // descriptor open when it failed).
        tracing::warn!(error = %err, "could not sync the database file before a catch-up");
    }
    let Ok(_turn) = writer.turn().await else { return Ok(Some((log, false))) };
    Ok(checkpoint(connection).await?.map(|(log, _)| (log, true)))
}

/// Pages added to the log between two checkpoints that found it `last`
/// and then `log` pages long: the difference while it grew, all of it once
/// it restarted (it is shorter), none while it stayed. A log that
/// restarted and grew past its old length is undercounted by that length,
/// which puts off one checkpoint by an interval at most.
fn new_pages(last: i64, log: i64) -> i64 {
    if log >= last { log - last } else { log }
}

/// The time to the next checkpoint, after `new` pages came in `interval`:
/// what brings about [`TARGET_PAGES`] at that pace, within [`SHORTEST`]
/// and [`LONGEST`]; twice as long after an interval that brought none.
fn next_interval(interval: Duration, new: i64) -> Duration {
    let next = if new <= 0 { interval * 2 } else { interval.mul_f64(TARGET_PAGES as f64 / new as f64) };
    next.clamp(SHORTEST, LONGEST)
}

#[cfg(test)]
mod tests;
