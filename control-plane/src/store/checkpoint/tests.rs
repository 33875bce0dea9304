//! The checkpointer's tests: its pace on the paused clock, and its
//! checkpoints on real WAL databases.

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

/// A pace whose looks found nothing new: its interval grown to the
/// longest.
fn quiet_pace() -> Pace {
    Pace { interval: LONGEST, last_log: 3_000, ..Pace::new() }
}

/// A log caught up with holds nothing to copy until a write restarts
/// it: it is looked at less and less often, and not caught up with
/// again, which would take the writers' turn ten times a second.
#[test]
fn a_log_caught_up_with_is_caught_up_with_again_only_once_written() {
    let mut pace = Pace::new();
    assert!(pace.catches_up(2_000));
    pace.looked(2_000, true);
    for _ in 0..3 {
        pace.waited = pace.interval;
        assert!(!pace.catches_up(2_000), "nothing written since");
        pace.looked(2_000, false);
    }
    assert_eq!(pace.interval, 8 * SHORTEST, "{pace:?}");
    // A write restarted the log, which grew again past the bound.
    pace.looked(300, false);
    assert_eq!((pace.last_log, pace.caught_up_at), (300, None));
    assert!(pace.catches_up(1_500));
}

/// Waits out `pace` in a task of its own, on the paused clock (only
/// timers and counters from here, so its times are exact).
fn waiting(mut pace: Pace, writer: &Writer) -> JoinHandle<bool> {
    let writer = writer.clone();
    tokio::spawn(async move {
        let (_closing, mut closed) = watch::channel(false);
        pace.wait(&writer, &mut closed).await
    })
}

/// A burst after a quiet spell is looked at once it logged a
/// megabyte, however long the interval had grown; what came before
/// the last look counts no more.
#[tokio::test]
async fn a_megabyte_of_events_brings_the_next_look_forward() {
    let dir = tempfile::tempdir().unwrap();
    let writer = writer_of(&dir.path().join("store.db")).await;
    tokio::time::pause();
    writer.wrote(LOOK_AFTER_BYTES - 1);
    writer.looking();
    let waiting = waiting(quiet_pace(), &writer);
    writer.wrote(LOOK_AFTER_BYTES - 1);
    tokio::time::sleep(LONGEST / 2).await;
    assert!(!waiting.is_finished(), "no look short of a megabyte, nor of the interval");
    let grown = tokio::time::Instant::now();
    writer.wrote(1);
    assert!(waiting.await.unwrap(), "due, not closed");
    assert!(grown.elapsed() < SHORTEST / 10, "looked {:?} after", grown.elapsed());
}

/// However fast events come, looks are the shortest interval apart.
#[tokio::test]
async fn looks_are_never_closer_than_the_shortest_interval() {
    let dir = tempfile::tempdir().unwrap();
    let writer = writer_of(&dir.path().join("store.db")).await;
    tokio::time::pause();
    let (_closing, mut closed) = watch::channel(false);
    let mut pace = quiet_pace();
    let started = tokio::time::Instant::now();
    for _ in 0..3 {
        writer.wrote(LOOK_AFTER_BYTES);
        assert!(pace.wait(&writer, &mut closed).await);
    }
    let after = started.elapsed();
    assert!((3 * SHORTEST..4 * SHORTEST).contains(&after), "three looks in {after:?}");
}

/// A look that failed is tried again after the longest interval, not
/// each time a megabyte of events comes.
#[tokio::test]
async fn a_failing_checkpointer_waits_the_longest_interval_whatever_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let writer = writer_of(&dir.path().join("store.db")).await;
    tokio::time::pause();
    let mut pace = Pace::new();
    pace.failed();
    let started = tokio::time::Instant::now();
    writer.wrote(LOOK_AFTER_BYTES);
    assert!(waiting(pace, &writer).await.unwrap());
    let after = started.elapsed();
    assert!((LONGEST..LONGEST + SHORTEST).contains(&after), "looked after {after:?}");
}

/// A quiet store is still looked at after the longest interval, a busy
/// one soon after another checkpoint kept it from copying; a closed one
/// not at all.
#[tokio::test]
async fn a_quiet_store_is_looked_at_after_the_longest_interval() {
    let dir = tempfile::tempdir().unwrap();
    let writer = writer_of(&dir.path().join("store.db")).await;
    tokio::time::pause();
    let started = tokio::time::Instant::now();
    assert!(waiting(quiet_pace(), &writer).await.unwrap());
    let after = started.elapsed();
    assert!((LONGEST..LONGEST + SHORTEST).contains(&after), "looked after {after:?}");
    let mut busy = quiet_pace();
    busy.busy();
    assert_eq!(busy.interval, SHORTEST);
    let (closing, mut closed) = watch::channel(false);
    closing.send_replace(true);
    assert!(!quiet_pace().wait(&writer, &mut closed).await, "closed");
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
    let checkpointer = spawn(options, writer, None, closed);
    tokio::time::sleep(3 * LONGEST).await;
    assert!(!checkpointer.is_finished(), "still trying");
    assert!(!missing.exists(), "no database made");
    closing.send_replace(true);
    tokio::time::resume();
    tokio::time::timeout(Duration::from_secs(10), checkpointer).await.expect("ends once closed").unwrap();
}

/// Grows past `before` bytes: the database file at `path`, as the
/// checkpoint copies into it.
async fn grown(path: &std::path::Path, before: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(path).unwrap().len() <= before {
        assert!(tokio::time::Instant::now() < deadline, "nothing copied into the database file");
        tokio::time::sleep(SHORTEST / 4).await;
    }
}

/// A catch-up copies what it can before it waits for the writers' turn,
/// and during the turn what came into the log after that; then the next
/// write restarts the log.
#[tokio::test]
async fn a_catch_up_copies_the_rest_of_the_log_during_the_writers_turn() {
    let dir = tempfile::tempdir().unwrap();
    let (path, options, mut connection) = wal_database(&dir).await;
    let before = std::fs::metadata(&path).unwrap().len();
    connection.execute("INSERT INTO filler VALUES (zeroblob(40000))").await.unwrap();
    let writer = writer_of(&path).await;
    let mut checkpointer = options.connect().await.unwrap();
    let database = DatabaseFile::open(&path).expect("opened");
    let held = writer.turn().await.unwrap();
    let catching_up = tokio::spawn(async move {
        let caught_up = catch_up(&mut checkpointer, &writer, Some(&database), 0).await.unwrap();
        (checkpointer, caught_up)
    });
    // Copied while the turn is held, so outside it (this fails without
    // the passes); a write that bypasses the turn (as no store's does)
    // comes after that copy began.
    grown(&path, before).await;
    connection.execute("INSERT INTO filler VALUES (zeroblob(40000))").await.unwrap();
    assert!(!catching_up.is_finished(), "it waits for the turn");
    drop(held);
    let (mut checkpointer, caught_up) = catching_up.await.unwrap();
    // The pass copied the whole log, and the second row restarted it: the
    // turn's checkpoint found that row's dozen pages and more. A write
    // restarts the log only if it copied them.
    assert!(caught_up.is_some_and(|(log, whole)| log > 10 && whole), "caught up with {caught_up:?}");
    connection.execute("INSERT INTO filler VALUES (zeroblob(10))").await.unwrap();
    let (logged, _) = checkpoint(&mut checkpointer).await.unwrap().expect("no other checkpoint");
    assert!(logged <= 2, "the write restarted the log: {logged} pages in it");
}

/// A catch-up that finds the log restarted (a write found it all copied)
/// has nothing to catch up with, and leaves the turn alone.
#[tokio::test]
async fn a_catch_up_of_a_log_restarted_meanwhile_takes_no_turn() {
    let dir = tempfile::tempdir().unwrap();
    let (path, options, mut connection) = wal_database(&dir).await;
    connection.execute("INSERT INTO filler VALUES (zeroblob(40000))").await.unwrap();
    let writer = writer_of(&path).await;
    let mut checkpointer = options.connect().await.unwrap();
    let _held = writer.turn().await.unwrap();
    // Found longer than it is now: restarted since.
    let caught_up = catch_up(&mut checkpointer, &writer, None, 5_000).await.unwrap();
    assert!(caught_up.is_some_and(|(log, whole)| log < 5_000 && !whole), "{caught_up:?}");
}

/// A turn not had within the pool's timeout is let go, and the log is not
/// taken as caught up with: the next look tries again.
#[tokio::test]
async fn a_catch_up_without_the_turn_is_not_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let (path, options, mut connection) = wal_database(&dir).await;
    connection.execute("INSERT INTO filler VALUES (zeroblob(40000))").await.unwrap();
    let url = format!("sqlite://{}", path.display());
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(100))
        .connect(&url)
        .await
        .unwrap();
    let writer = Writer::new(pool, crate::store::Backend::Sqlite);
    let mut checkpointer = options.connect().await.unwrap();
    let _held = writer.turn().await.unwrap();
    let caught_up = catch_up(&mut checkpointer, &writer, None, 0).await.unwrap();
    assert!(caught_up.is_some_and(|(log, whole)| log > 10 && !whole), "{caught_up:?}");
    let mut pace = Pace::new();
    let (log, whole) = caught_up.unwrap();
    pace.looked(log, whole);
    assert_eq!(pace.caught_up_at, None, "caught up with at the next look");
}

#[cfg(unix)]
/// Whether a process of its own could lock the database file at `path`
/// for writing where SQLite's readers hold it (its shared range): never
/// while a connection in this process is open on it.
fn another_process_could_take(path: &std::path::Path) -> bool {
    let script = "import fcntl, sys\n\
                  f = open(sys.argv[1], 'r+b')\n\
                  try:\n    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 510, 0x40000002)\n\
                  except OSError:\n    sys.exit(3)\n";
    let status = std::process::Command::new("python3").arg("-c").arg(script).arg(path).status().expect("python3 runs");
    match status.code() {
        Some(0) => true,
        Some(3) => false,
        _ => panic!("the lock check failed: {status}"),
    }
}

/// The database file's own descriptor is never closed while the store's
/// connections are open: that would drop their locks (`database_file.rs`).
#[cfg(unix)]
#[tokio::test]
async fn syncing_the_database_file_keeps_sqlites_locks() {
    let dir = tempfile::tempdir().unwrap();
    let (path, options, mut connection) = wal_database(&dir).await;
    connection.execute("INSERT INTO filler VALUES (zeroblob(40000))").await.unwrap();
    assert!(!another_process_could_take(&path), "an open connection holds its lock");
    let writer = writer_of(&path).await;
    let mut checkpointer = options.connect().await.unwrap();
    let database = DatabaseFile::open(&path).expect("opened");
    for _ in 0..3 {
        catch_up(&mut checkpointer, &writer, Some(&database), 0).await.unwrap();
        connection.execute("INSERT INTO filler VALUES (zeroblob(40000))").await.unwrap();
    }
    assert!(!another_process_could_take(&path), "still held after the syncs");
    // What the descriptor must never do: any descriptor of the file closed
    // drops them.
    drop(std::fs::File::open(&path).unwrap());
    assert!(another_process_could_take(&path), "the check sees locks dropped");
}

/// In WAL mode only a checkpoint writes the database file: it grows
/// while the log holds fewer pages than a writer would checkpoint at.
#[tokio::test]
async fn the_log_is_copied_into_the_database_by_the_checkpointer() {
    let dir = tempfile::tempdir().unwrap();
    let (path, options, mut writer) = wal_database(&dir).await;
    let before = std::fs::metadata(&path).unwrap().len();
    let (closing, closed) = watch::channel(false);
    let checkpointer = spawn(options.clone(), writer_of(&path).await, DatabaseFile::open(&path), closed);
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
    let (logged, copied) = checkpoint(&mut checkpointer).await.unwrap().expect("no other checkpoint");
    assert!(logged > 0 && copied == logged, "{logged} pages logged, {copied} copied");
    assert_eq!(checkpoint(&mut checkpointer).await.unwrap(), Some((logged, logged)), "nothing more to copy");
}

/// Two stores on one database share the descriptor, and the first to
/// close leaves the second its locks.
#[cfg(unix)]
#[tokio::test]
async fn a_store_closing_leaves_another_on_its_database_the_locks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let first = crate::store::Store::connect(&url).await.unwrap();
    let second = crate::store::Store::connect(&url).await.unwrap();
    first.close().await;
    assert!(!another_process_could_take(&path), "the second store keeps its locks");
    second.close().await;
    assert!(another_process_could_take(&path), "no connection is left");
}
