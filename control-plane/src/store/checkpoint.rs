//! SQLite's checkpoints, off the commit path.
//!
//! In WAL mode a commit appends pages to the write-ahead log, and a
//! checkpoint copies them into the database file and syncs both: with
//! `synchronous = NORMAL`, the only syncs there are. By default the
//! connection whose commit takes the log past 1 000 pages runs the
//! checkpoint itself, before its commit returns; for the store that is the
//! event writer, and every handler waiting on a batch waits out the copy
//! and the two `fsync`s. Traced in the trigger-load bench's open loop
//! (12 000 calls/s, end to end): 1 232 `fsync`s in 12 s, a median of
//! 1 ms, the slowest 53 ms, 2.6 s in all on the writer's thread. So the
//! store's connections leave checkpoints to a connection of their own here,
//! which copies the log once it holds 1 000 pages not yet copied (as
//! SQLite's default), looking every 100 ms while it grows; its copy runs
//! beside the writer, who keeps appending (a passive checkpoint takes no
//! lock a writer waits on). Under load, pages written again and again
//! between two checkpoints (the events tables' last leaves) are copied
//! once, not once per 1 000 pages.
//!
//! A writer still checkpoints when the log reaches [`WRITER_CHECKPOINTS_AT`]
//! pages (32 MiB): should this task fall behind or fail, the log stays
//! bounded as before, at a larger bound. Durability does not change: a
//! commit is in the log, which survives the process, as before.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::any::AnyConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
use sqlx::{ConnectOptions as _, Connection as _, Row as _};
use tokio::sync::watch;

/// Pages of log, not yet copied, at which the checkpointer copies them:
/// SQLite's own default bound.
const CHECKPOINT_AT: u32 = 1_000;

/// How often the log's size is read while it grows, and at most how often
/// a checkpoint runs. At the trigger-load bench's peak (about 20 000
/// stored events/s, three pages each) the log grows by about 6 000 pages
/// in that time, within [`WRITER_CHECKPOINTS_AT`].
pub(super) const LOOK_EVERY: Duration = Duration::from_millis(100);

/// How often the log's size is read while it does not grow.
const LOOK_WHEN_IDLE: Duration = Duration::from_secs(1);

/// Pages in the log past which the connection that commits checkpoints
/// itself (`PRAGMA wal_autocheckpoint`; SQLite's default is 1 000).
pub(super) const WRITER_CHECKPOINTS_AT: u32 = 8_192;

/// [`WRITER_CHECKPOINTS_AT`] set on a connection of the store's pool.
pub(super) const WRITER_CHECKPOINTS_PRAGMA: &str = "PRAGMA wal_autocheckpoint = 8192";

/// Starts checkpointing the store's database of `options`, unless it lives
/// in memory (no log there).
pub(super) fn spawn_for(options: &AnyConnectOptions, closed: watch::Receiver<bool>) -> Result<(), sqlx::Error> {
    let options = SqliteConnectOptions::try_from(options)?;
    let path = options.get_filename();
    if path.as_os_str().is_empty() || path == std::path::Path::new(":memory:") {
        return Ok(());
    }
    // The store's database is in WAL mode already; saying so again keeps a
    // default of another mode from being set on it.
    spawn(options.journal_mode(SqliteJournalMode::Wal).create_if_missing(false), closed);
    Ok(())
}

/// Checkpoints the database of `options` until `closed` is set or its
/// sender is gone, whenever the log holds [`CHECKPOINT_AT`] pages not yet
/// copied (read from the WAL-index: [`uncopied_pages`]), or, where that
/// cannot be read, every [`LOOK_EVERY`]. A checkpoint that fails (the
/// database busy, the disk full) is tried again later; the writers' own
/// checkpoints bound the log meanwhile.
fn spawn(options: SqliteConnectOptions, mut closed: watch::Receiver<bool>) {
    let index = wal_index_path(options.get_filename());
    tokio::spawn(async move {
        let mut connection: Option<SqliteConnection> = None;
        let (mut wait, mut seen) = (LOOK_EVERY, None);
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                changed = closed.wait_for(|closed| *closed) => {
                    let _ = changed;
                    break;
                }
            }
            let uncopied = uncopied_pages(&index);
            // Looked at often while the log grows, seldom while it is still.
            wait = if uncopied.is_some() && uncopied == seen { (wait * 2).min(LOOK_WHEN_IDLE) } else { LOOK_EVERY };
            seen = uncopied;
            if uncopied.is_some_and(|pages| pages < CHECKPOINT_AT) {
                continue;
            }
            if connection.is_none() {
                match options.connect().await {
                    Ok(opened) => connection = Some(opened),
                    Err(err) => {
                        tracing::warn!(error = %err, "could not open the checkpoint connection");
                        continue;
                    }
                }
            }
            let Some(open) = connection.as_mut() else { continue };
            if let Err(err) = checkpoint(open).await {
                tracing::warn!(error = %err, "checkpoint failed; trying again");
                // A connection that failed is opened anew.
                connection = None;
            }
        }
        if let Some(open) = connection {
            let _ = open.close().await;
        }
    });
}

/// The WAL-index of the database at `database`: `<database>-shm`.
fn wal_index_path(database: &Path) -> PathBuf {
    let mut path = database.as_os_str().to_owned();
    path.push("-shm");
    PathBuf::from(path)
}

/// Pages in the log that no checkpoint copied yet, read from the header of
/// the WAL-index SQLite keeps beside a database in WAL mode (its file
/// format, documented and fixed since WAL came: `mxFrame`, the log's last
/// page, at byte 16, and `nBackfill`, the pages copied, at byte 96, both
/// in the machine's byte order). Read without SQLite's locks, a header
/// being written may read torn; that only moves one checkpoint by a look.
/// `None` where the file is missing (no connection has opened the log yet)
/// or short. A plain read: SQLite's connections keep the file mapped, so
/// its first page is in memory, and reading it blocks on no disk.
fn uncopied_pages(index: &Path) -> Option<u32> {
    let mut header = [0u8; 100];
    std::fs::File::open(index).ok()?.read_exact(&mut header).ok()?;
    let word = |at: usize| header.get(at..at + 4).and_then(|b| b.try_into().ok()).map(u32::from_ne_bytes);
    Some(word(16)?.saturating_sub(word(96)?))
}

/// One passive checkpoint: copies what the log holds that no reader still
/// needs from it. Returns the pages in the log and those now copied.
async fn checkpoint(connection: &mut SqliteConnection) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&mut *connection).await?;
    Ok((row.try_get(1)?, row.try_get(2)?))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use sqlx::Executor as _;

    use super::*;

    /// The WAL-index's header tells the pages not copied yet, as the
    /// checkpoint itself counts them.
    #[tokio::test]
    async fn the_wal_index_tells_the_pages_not_copied_yet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let index = wal_index_path(&path);
        assert_eq!(index, dir.path().join("store.db-shm"));
        assert_eq!(uncopied_pages(&index), None, "no log yet");
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}?mode=rwc", path.display()))
            .unwrap()
            .journal_mode(SqliteJournalMode::Wal)
            .pragma("wal_autocheckpoint", WRITER_CHECKPOINTS_AT.to_string());
        let mut writer = options.connect().await.unwrap();
        writer.execute("CREATE TABLE filler (data BLOB)").await.unwrap();
        writer.execute("INSERT INTO filler VALUES (zeroblob(100000))").await.unwrap();
        let uncopied = uncopied_pages(&index).unwrap();
        let mut checkpointer = options.connect().await.unwrap();
        let (logged, copied) = checkpoint(&mut checkpointer).await.unwrap();
        assert!(uncopied >= 25, "{uncopied} pages of 100 kB and more");
        assert_eq!(i64::from(uncopied), logged, "the log held only what was not copied");
        assert_eq!(copied, logged);
        assert_eq!(uncopied_pages(&index), Some(0), "all copied");
    }

    #[test]
    fn the_pools_pragma_sets_the_writers_bound() {
        assert_eq!(WRITER_CHECKPOINTS_PRAGMA, format!("PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINTS_AT}"));
    }

    /// In WAL mode only a checkpoint writes the database file: it grows
    /// while the log holds fewer pages than a writer would checkpoint at.
    #[tokio::test]
    async fn the_log_is_copied_into_the_database_by_the_checkpointer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}?mode=rwc", path.display()))
            .unwrap()
            .journal_mode(SqliteJournalMode::Wal)
            .pragma("wal_autocheckpoint", WRITER_CHECKPOINTS_AT.to_string());
        let mut writer = options.connect().await.unwrap();
        writer.execute("CREATE TABLE filler (data BLOB)").await.unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        let (closing, closed) = watch::channel(false);
        spawn(options.clone(), closed);
        // About 2 000 pages: above SQLite's default of 1 000, below the
        // writer's own bound.
        for _ in 0..2_000 {
            sqlx::query("INSERT INTO filler VALUES (zeroblob(4000))").execute(&mut writer).await.unwrap();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() < before + 4_000_000 {
            assert!(tokio::time::Instant::now() < deadline, "the database file did not grow");
            tokio::time::sleep(LOOK_EVERY / 4).await;
        }
        closing.send_replace(true);
        writer.close().await.unwrap();
    }

    /// A checkpoint copies the whole log when no reader holds part of it,
    /// and then has nothing more to copy.
    #[tokio::test]
    async fn a_checkpoint_reports_what_it_copied() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("store.db").display());
        let options = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .journal_mode(SqliteJournalMode::Wal)
            .pragma("wal_autocheckpoint", WRITER_CHECKPOINTS_AT.to_string());
        let mut writer = options.connect().await.unwrap();
        writer.execute("CREATE TABLE filler (data BLOB)").await.unwrap();
        writer.execute("INSERT INTO filler VALUES (zeroblob(10000))").await.unwrap();
        let mut checkpointer = options.connect().await.unwrap();
        let (logged, copied) = checkpoint(&mut checkpointer).await.unwrap();
        assert!(logged > 0 && copied == logged, "{logged} pages logged, {copied} copied");
        assert_eq!(checkpoint(&mut checkpointer).await.unwrap(), (logged, logged), "nothing more to copy");
    }
}
