//! The store's writes, and on SQLite the turn every write takes.
//!
//! On SQLite the writer is a pool of one connection, and the typed
//! connection that stores the usual event batch (`sqlite_events.rs`) is a
//! second writer. SQLite takes one writer at a time, and a second one
//! waits in its busy handler, which sleeps a millisecond and more between
//! tries; so every write takes the writer's turn first, a lock of this
//! process, and queues there instead. The turn is not the pool's
//! connection: sqlx returns a pool's connection by spawning a task that
//! pings it, a round trip to SQLite's thread, which the typed connection
//! paid for every batch it stored while its turn was that connection (in
//! `perf`, the otherwise idle writer's thread took a tenth of the typed
//! connection's samples on the trigger-load bench's end-to-end call).
//!
//! Invariant: the pool is reached only through [`Writer::begin`] and
//! [`Writer::connection`], which hold the turn until SQLite's thread
//! finished what was sent through the transaction or connection they
//! return (a transaction dropped unfinished is rolled back first). A
//! commit whose caller went away mid-way is the one exception: it ends
//! on SQLite's thread with the turn already free. On PostgreSQL there is
//! no turn: its writer is the store's pool of many connections.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection as _, Transaction};
use tokio::sync::{Mutex, Notify, OwnedMutexGuard};

use super::Backend;
use super::checkpoint::LOOK_AFTER_BYTES;

/// Where writes go.
#[derive(Clone, Debug)]
pub(super) struct Writer {
    pool: AnyPool,
    /// The turn; `None` on PostgreSQL.
    turn: Option<Arc<Mutex<()>>>,
    /// Events written since the checkpointer last looked at the log.
    logged: Arc<Logged>,
    backend: Backend,
}

/// Bytes of events written since the checkpointer's last look, and the
/// signal that they passed [`LOOK_AFTER_BYTES`].
#[derive(Debug, Default)]
struct Logged {
    bytes: AtomicUsize,
    grown: Notify,
}

/// The writer's turn, held: on PostgreSQL, nothing.
pub(super) type Turn = Option<OwnedMutexGuard<()>>;

impl Writer {
    pub(super) fn new(pool: AnyPool, backend: Backend) -> Writer {
        let turn = (backend == Backend::Sqlite).then(Arc::default);
        Writer { pool, turn, logged: Arc::default(), backend }
    }

    /// Waits for the writer's turn, as long as the pool waits for its
    /// connection (`pool_options`), and fails as it does after that: a
    /// write that waits on itself (one taking the turn again while holding
    /// it) fails instead of hanging.
    pub(super) async fn turn(&self) -> Result<Turn, sqlx::Error> {
        let Some(turn) = &self.turn else { return Ok(None) };
        let waiting = Arc::clone(turn).lock_owned();
        match tokio::time::timeout(self.pool.options().get_acquire_timeout(), waiting).await {
            Ok(held) => Ok(Some(held)),
            Err(_) => Err(sqlx::Error::PoolTimedOut),
        }
    }

    /// Counts `bytes` of events stored, for the checkpointer: an atomic
    /// add, and a wake-up once they pass [`LOOK_AFTER_BYTES`].
    pub(super) fn wrote(&self, bytes: usize) {
        let before = self.logged.bytes.fetch_add(bytes, Ordering::Relaxed);
        if before < LOOK_AFTER_BYTES && before + bytes >= LOOK_AFTER_BYTES {
            self.logged.grown.notify_one();
        }
    }

    /// Completes once events of [`LOOK_AFTER_BYTES`] were written since
    /// [`Writer::looking`]; at once if they were before this call. A
    /// crossing the last look already covered (one that raced the count's
    /// reset, or came while the interval ran out) can end one wait early,
    /// at worst a look a shortest interval after the last.
    pub(super) async fn log_grown(&self) {
        self.logged.grown.notified().await;
    }

    /// Counts the events written from now on.
    pub(super) fn looking(&self) {
        self.logged.bytes.store(0, Ordering::Relaxed);
    }

    /// Begins a write transaction during a turn. On SQLite it takes the
    /// write lock at once (`BEGIN IMMEDIATE`), so two writers queue on the
    /// busy timeout instead of deadlocking on a lock upgrade.
    pub(super) async fn begin(&self) -> Result<WriteTransaction, sqlx::Error> {
        let turn = self.turn().await?;
        let transaction = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTransaction { transaction: Some(transaction), turn })
    }

    /// A connection to write on, during a turn.
    pub(super) async fn connection(&self) -> Result<WriteConnection, sqlx::Error> {
        let turn = self.turn().await?;
        Ok(WriteConnection { connection: Some(self.pool.acquire().await?), turn })
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }

    /// The pool itself, bypassing the turn: for tests that hold it.
    #[cfg(test)]
    pub(super) fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// A write transaction and the turn it holds until it is committed, or,
/// dropped unfinished, until SQLite's thread has rolled it back: the turn
/// is never free while the writer still holds SQLite's write lock.
pub(super) struct WriteTransaction {
    transaction: Option<Transaction<'static, Any>>,
    turn: Turn,
}

impl WriteTransaction {
    pub(super) async fn commit(mut self) -> Result<(), sqlx::Error> {
        let transaction = self.transaction.take().expect("held until committed or dropped");
        // A commit whose caller goes away mid-way still finishes on
        // SQLite's thread, with the turn already free: a typed write right
        // after it may wait once in SQLite's busy handler.
        transaction.commit().await
    }
}

impl Drop for WriteTransaction {
    fn drop(&mut self) {
        let (Some(transaction), turn @ Some(_)) = (self.transaction.take(), self.turn.take()) else { return };
        release_after(turn, async move {
            let _ = transaction.rollback().await;
        });
    }
}

/// Ends `turn` once `finish` has run, in a task of its own: `finish` is
/// what tells that SQLite's thread is done with a write dropped mid-way
/// (a rollback, or a ping queued behind the statement). Without a runtime
/// (a process ending) nothing waits for a turn, and it ends at once.
pub(super) fn release_after(turn: Turn, finish: impl Future<Output = ()> + Send + 'static) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    runtime.spawn(async move {
        finish.await;
        drop(turn);
    });
}

impl Deref for WriteTransaction {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        self.transaction.as_ref().expect("held until committed or dropped")
    }
}

impl DerefMut for WriteTransaction {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.transaction.as_mut().expect("held until committed or dropped")
    }
}

/// The writer's connection and the turn it holds until SQLite's thread
/// has finished what it was sent: a statement whose caller went away
/// still runs, so the turn ends after a ping that queues behind it.
pub(super) struct WriteConnection {
    connection: Option<PoolConnection<Any>>,
    turn: Turn,
}

impl Drop for WriteConnection {
    fn drop(&mut self) {
        let (Some(mut connection), turn @ Some(_)) = (self.connection.take(), self.turn.take()) else { return };
        release_after(turn, async move {
            let _ = connection.ping().await;
        });
    }
}

impl Deref for WriteConnection {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        self.connection.as_ref().expect("held until dropped")
    }
}

impl DerefMut for WriteConnection {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.connection.as_mut().expect("held until dropped")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::any::AnyPoolOptions;

    use super::*;

    /// A write that waits on its own turn fails as a pool's acquire fails
    /// after its timeout, instead of hanging; the turn, once released,
    /// serves the next write.
    #[tokio::test]
    async fn a_write_waiting_on_a_held_turn_fails_after_the_pools_timeout() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("writer.db").display());
        let options = AnyPoolOptions::new().max_connections(1).acquire_timeout(Duration::from_millis(100));
        let writer = Writer::new(options.connect(&url).await.unwrap(), Backend::Sqlite);
        let held = writer.turn().await.unwrap();
        assert!(matches!(writer.connection().await, Err(sqlx::Error::PoolTimedOut)));
        assert!(matches!(writer.begin().await, Err(sqlx::Error::PoolTimedOut)));
        drop(held);
        let mut transaction = writer.begin().await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)").execute(&mut *transaction).await.unwrap();
        transaction.commit().await.unwrap();
        assert!(writer.connection().await.is_ok());
    }

    /// A transaction dropped unfinished, or a connection dropped, keeps the
    /// turn until SQLite's thread has undone or finished its work: then
    /// SQLite's write lock is free for whoever takes the turn next.
    #[tokio::test]
    async fn a_write_dropped_unfinished_keeps_the_turn_until_sqlite_is_done() {
        use sqlx::{Connection as _, Executor as _};
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("writer.db").display());
        let writer =
            Writer::new(AnyPoolOptions::new().max_connections(1).connect(&url).await.unwrap(), Backend::Sqlite);
        sqlx::query("CREATE TABLE t (x INTEGER)").execute(&mut *writer.connection().await.unwrap()).await.unwrap();
        let mut transaction = writer.begin().await.unwrap();
        sqlx::query("INSERT INTO t VALUES (1)").execute(&mut *transaction).await.unwrap();
        drop(transaction);
        // On this one-thread runtime the rollback's task has not run yet.
        let held = || writer.turn.as_ref().expect("SQLite has a turn").try_lock().is_err();
        assert!(held(), "held until rolled back");
        drop(writer.turn().await.unwrap());
        let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url).unwrap();
        let mut other = sqlx::SqliteConnection::connect_with(&options.busy_timeout(Duration::ZERO)).await.unwrap();
        other.execute("BEGIN IMMEDIATE").await.expect("SQLite's write lock is free once the turn is");
        other.execute("ROLLBACK").await.unwrap();
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t").fetch_one(&mut other).await.unwrap();
        assert_eq!(rows, 0, "rolled back");
        let connection = writer.connection().await.unwrap();
        drop(connection);
        assert!(held(), "held until pinged");
        assert!(writer.turn().await.is_ok());
    }
}
