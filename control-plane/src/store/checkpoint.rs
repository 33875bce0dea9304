//! SQLite's checkpoints, off the commit path.
//!
//! In WAL mode a commit appends pages to the write-ahead log, and a
//! checkpoint copies them into the database file and syncs both: with
//! `synchronous = NORMAL`, the only syncs there are but for the header of
//! a log just restarted. By default the
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
//! since it last restarted, a checkpoint is followed at once by a second
//! one during the writers' turn (`writer.rs`): it copies only what came
//! while the first ran, and the next write restarts the log. Writers wait
//! out that short copy and its syncs about every 4 000 pages, where by
//! default they waited out every checkpoint, every 1 000; their own thread
//! then syncs only a restarted log's header (traced at 12 000 calls/s: 35
//! `fsync`s of 0.2–1 ms).
//!
//! The writers still checkpoint themselves once the log holds
//! [`WRITER_CHECKPOINTS_AT`] pages since it last restarted (32 MiB), should
//! this task fall behind or fail. Without the catch-up they did so under
//! sustained writes, copying up to an interval's pages the checkpointer had
//! not reached: traced at 12 000 calls/s, 54 `fsync`s on the writer's
//! thread (0.17 s in all), against 1 232 (2.6 s) with SQLite's default.
//! Durability does not change: a commit is in the log, which survives the
//! process, as before.

use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
use sqlx::{ConnectOptions as _, Connection as _, Row as _};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::writer::Writer;

/// Pages a checkpoint aims to copy: SQLite's own default bound.
const TARGET_PAGES: i64 = 1_000;

/// The shortest time between two checkpoints.
pub(super) const SHORTEST: Duration = Duration::from_millis(100);

/// The longest: a store that writes little copies its few pages this
/// seldom, and one that writes nothing looks this seldom (a checkpoint
/// with nothing to copy syncs nothing). A burst after a quiet spell waits
/// at most this long for its first checkpoint, the writers' bound holding
/// meanwhile.
const LONGEST: Duration = Duration::from_secs(5);

/// Pages in the log since it last restarted past which a checkpoint is
/// followed by one during the writers' turn, so that it can restart.
const CATCH_UP_AT: i64 = 4_096;

/// Pages in the log past which the connection that commits checkpoints
/// itself (`PRAGMA wal_autocheckpoint`; SQLite's default is 1 000).
pub(super) const WRITER_CHECKPOINTS_AT: u32 = 8_192;

/// [`WRITER_CHECKPOINTS_AT`] set on a connection of the store's pool.
pub(super) const WRITER_CHECKPOINTS_PRAGMA: &str = "PRAGMA wal_autocheckpoint = 8192";

/// Starts checkpointing the store's database of `options`.
pub(super) fn spawn(
    options: SqliteConnectOptions,
    writer: Writer,
    mut closed: watch::Receiver<bool>,
) -> JoinHandle<()> {
    // The store's database is in WAL mode already; saying so keeps this
    // connection from asking for any other mode.
    let options = options.journal_mode(SqliteJournalMode::Wal).create_if_missing(false);
    tokio::spawn(async move {
        let mut connection: Option<SqliteConnection> = None;
        let (mut interval, mut last_log) = (SHORTEST, 0);
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                // Closed, or every store gone with its sender.
                _ = closed.wait_for(|closed| *closed) => break,
            }
            if connection.is_none() {
                match options.connect().await {
                    Ok(opened) => connection = Some(opened),
                    Err(err) => {
                        tracing::warn!(error = %err, "could not open the checkpoint connection");
                        interval = LONGEST;
                        continue;
                    }
                }
            }
            let Some(open) = connection.as_mut() else { continue };
            let checked = match checkpoint(open).await {
                Ok((log, _)) if log >= CATCH_UP_AT => catch_up(open, &writer).await.map(|()| (log, 0)),
                Ok((log, _)) => Ok((log, log)),
                Err(err) => Err(err),
            };
            match checked {
                // After a catch-up the log restarts with the next write.
                Ok((log, last)) => (interval, last_log) = (next_interval(interval, new_pages(last_log, log)), last),
                Err(err) => {
                    tracing::warn!(error = %err, "checkpoint failed; trying again");
                    // A connection that failed is opened anew.
                    (connection, interval) = (None, LONGEST);
                }
            }
        }
        if let Some(open) = connection {
            let _ = open.close().await;
        }
    })
}

/// One passive checkpoint: copies what the log holds that no reader still
/// needs from it. Returns the pages in the log since it last restarted,
/// and those of them now copied.
async fn checkpoint(connection: &mut SqliteConnection) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&mut *connection).await?;
    Ok((row.try_get(1)?, row.try_get(2)?))
}

/// Copies, during the writers' turn, what came into the log while the
/// checkpoint before ran, so that the next write finds it all copied and
/// restarts it. A turn not had within the pool's timeout (writes queued
/// that long) is let go: the writers' bound holds the log meanwhile.
async fn catch_up(connection: &mut SqliteConnection, writer: &Writer) -> Result<(), sqlx::Error> {
    let Ok(_turn) = writer.turn().await else { return Ok(()) };
    checkpoint(connection).await.map(drop)
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
mod tests {
    use std::str::FromStr as _;

    use sqlx::Executor as _;

    use super::*;

    #[test]
    fn the_interval_brings_about_a_thousand_pages() {
        let second = Duration::from_secs(1);
        assert_eq!(next_interval(second, 4_000), second / 4, "a fast-growing log is copied sooner");
        assert_eq!(next_interval(SHORTEST, 60_000), SHORTEST, "never more often than the shortest");
        assert_eq!(next_interval(second, 250), 4 * second, "a slow one later");
        assert_eq!(next_interval(second, 1), LONGEST);
        assert_eq!(next_interval(second, TARGET_PAGES), second, "at the target: kept");
        assert_eq!(next_interval(second, 0), 2 * second, "a pause: looked at less often");
        let mut interval = SHORTEST;
        for _ in 0..8 {
            interval = next_interval(interval, 0);
        }
        assert_eq!(interval, LONGEST, "an idle store looks seldom");
    }

    #[test]
    fn new_pages_are_counted_across_restarts_of_the_log() {
        assert_eq!(new_pages(1_000, 1_600), 600, "grown");
        assert_eq!(new_pages(6_000, 700), 700, "restarted");
        assert_eq!(new_pages(700, 700), 0, "still");
        assert_eq!(new_pages(0, 0), 0);
    }

    /// Every connection of a store on SQLite leaves checkpoints to the
    /// checkpointer up to the writers' bound, and closing the store ends it.
    #[tokio::test]
    async fn a_stores_connections_checkpoint_only_past_the_writers_bound() {
        assert_eq!(WRITER_CHECKPOINTS_PRAGMA, format!("PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINTS_AT}"));
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("store.db").display());
        let store = crate::store::Store::connect(&url).await.unwrap();
        let bound = |pool: sqlx::AnyPool| async move {
            let row = sqlx::query("PRAGMA wal_autocheckpoint").fetch_one(&pool).await.unwrap();
            row.try_get::<i64, _>(0).unwrap()
        };
        assert_eq!(bound(store.pool.clone()).await, i64::from(WRITER_CHECKPOINTS_AT), "the read pool");
        assert_eq!(bound(store.writer.pool().clone()).await, i64::from(WRITER_CHECKPOINTS_AT), "the writer");
        assert!(store.checkpointer.lock().unwrap().is_some(), "running");
        store.close().await;
        assert!(store.checkpointer.lock().unwrap().is_none(), "ended and awaited");
    }

    /// A database in WAL mode in `dir`, whose connections checkpoint as the
    /// store's do, with a `filler (data BLOB)` table: its path, its options,
    /// and the connection that made the table.
    async fn wal_database(dir: &tempfile::TempDir) -> (std::path::PathBuf, SqliteConnectOptions, SqliteConnection) {
        let path = dir.path().join("store.db");
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}?mode=rwc", path.display()))
            .unwrap()
            .journal_mode(SqliteJournalMode::Wal)
            .pragma("wal_autocheckpoint", WRITER_CHECKPOINTS_AT.to_string());
        let mut connection = options.connect().await.unwrap();
        connection.execute("CREATE TABLE filler (data BLOB)").await.unwrap();
        (path, options, connection)
    }

    /// The store's writer on the database at `path`, for its turn.
    async fn writer_of(path: &std::path::Path) -> Writer {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
        Writer::new(pool, crate::store::Backend::Sqlite)
    }

    /// A checkpointer that cannot open its database (gone, or never made:
    /// it creates none) keeps trying, quietly, and still ends when closed.
    #[tokio::test]
    async fn a_checkpointer_without_its_database_retries_and_still_ends() {
        let dir = tempfile::tempdir().unwrap();
        let writer = writer_of(&dir.path().join("writer.db")).await;
        let missing = dir.path().join("missing.db");
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}?mode=rwc", missing.display())).unwrap();
        let (closing, closed) = watch::channel(false);
        // Its waits pass on a paused clock; the failed opens take real time.
        tokio::time::pause();
        let checkpointer = spawn(options, writer, closed);
        tokio::time::sleep(3 * LONGEST).await;
        assert!(!checkpointer.is_finished(), "still trying");
        assert!(!missing.exists(), "no database made");
        closing.send_replace(true);
        tokio::time::resume();
        tokio::time::timeout(Duration::from_secs(10), checkpointer).await.expect("ends once closed").unwrap();
    }

    /// A catch-up copies the log during the writers' turn: never while a
    /// write holds it; after that, the next write restarts the log.
    #[tokio::test]
    async fn a_catch_up_copies_the_log_during_the_writers_turn() {
        let dir = tempfile::tempdir().unwrap();
        let (path, options, mut connection) = wal_database(&dir).await;
        connection.execute("INSERT INTO filler VALUES (zeroblob(40000))").await.unwrap();
        let writer = writer_of(&path).await;
        let mut checkpointer = options.connect().await.unwrap();
        let held = writer.turn().await.unwrap();
        let catching_up = tokio::spawn(async move {
            catch_up(&mut checkpointer, &writer).await.unwrap();
            checkpointer
        });
        tokio::task::yield_now().await;
        assert!(!catching_up.is_finished(), "it waits for the turn");
        drop(held);
        let mut checkpointer = catching_up.await.unwrap();
        // The log held the table and the 40 kB row (a dozen pages and
        // more); a write restarts it only if the catch-up copied them all.
        connection.execute("INSERT INTO filler VALUES (zeroblob(10))").await.unwrap();
        let (logged, _) = checkpoint(&mut checkpointer).await.unwrap();
        assert!(logged <= 2, "the write restarted the log: {logged} pages in it");
    }

    /// In WAL mode only a checkpoint writes the database file: it grows
    /// while the log holds fewer pages than a writer would checkpoint at.
    #[tokio::test]
    async fn the_log_is_copied_into_the_database_by_the_checkpointer() {
        let dir = tempfile::tempdir().unwrap();
        let (path, options, mut writer) = wal_database(&dir).await;
        let before = std::fs::metadata(&path).unwrap().len();
        let (closing, closed) = watch::channel(false);
        let checkpointer = spawn(options.clone(), writer_of(&path).await, closed);
        // A thousand commits of a 4 kB row: some 3 000 pages of log, over
        // SQLite's default bound and well under the writers' own.
        for _ in 0..1_000 {
            sqlx::query("INSERT INTO filler VALUES (zeroblob(4000))").execute(&mut writer).await.unwrap();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() < before + 3_000_000 {
            assert!(tokio::time::Instant::now() < deadline, "the database file did not grow");
            tokio::time::sleep(SHORTEST / 4).await;
        }
        closing.send_replace(true);
        checkpointer.await.unwrap();
        writer.close().await.unwrap();
    }

    /// A checkpoint copies the whole log when no reader holds part of it,
    /// and then has nothing more to copy.
    #[tokio::test]
    async fn a_checkpoint_reports_what_it_copied() {
        let dir = tempfile::tempdir().unwrap();
        let (_, options, mut writer) = wal_database(&dir).await;
        writer.execute("INSERT INTO filler VALUES (zeroblob(10000))").await.unwrap();
        let mut checkpointer = options.connect().await.unwrap();
        let (logged, copied) = checkpoint(&mut checkpointer).await.unwrap();
        assert!(logged > 0 && copied == logged, "{logged} pages logged, {copied} copied");
        assert_eq!(checkpoint(&mut checkpointer).await.unwrap(), (logged, logged), "nothing more to copy");
    }
}
