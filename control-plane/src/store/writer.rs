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
//! [`Writer::connection`], which hold the turn for as long as the
//! transaction or connection they return. On PostgreSQL there is no turn:
//! its writer is the store's pool of many connections.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::Backend;

/// Where writes go.
#[derive(Clone, Debug)]
pub(super) struct Writer {
    pool: AnyPool,
    /// The turn; `None` on PostgreSQL.
    turn: Option<Arc<Mutex<()>>>,
    backend: Backend,
}

/// The writer's turn, held: on PostgreSQL, nothing.
pub(super) type Turn = Option<OwnedMutexGuard<()>>;

impl Writer {
    pub(super) fn new(pool: AnyPool, backend: Backend) -> Writer {
        let turn = (backend == Backend::Sqlite).then(Arc::default);
        Writer { pool, turn, backend }
    }

    /// Waits for the writer's turn.
    pub(super) async fn turn(&self) -> Turn {
        match &self.turn {
            Some(turn) => Some(Arc::clone(turn).lock_owned().await),
            None => None,
        }
    }

    /// Begins a write transaction during a turn. On SQLite it takes the
    /// write lock at once (`BEGIN IMMEDIATE`), so two writers queue on the
    /// busy timeout instead of deadlocking on a lock upgrade.
    pub(super) async fn begin(&self) -> Result<WriteTransaction, sqlx::Error> {
        let turn = self.turn().await;
        let transaction = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTransaction { transaction, _turn: turn })
    }

    /// A connection to write on, during a turn.
    pub(super) async fn connection(&self) -> Result<WriteConnection, sqlx::Error> {
        let turn = self.turn().await;
        Ok(WriteConnection { connection: self.pool.acquire().await?, _turn: turn })
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

/// A write transaction and the turn it holds until it is committed or
/// dropped (fields drop in order: the transaction first).
pub(super) struct WriteTransaction {
    transaction: Transaction<'static, Any>,
    _turn: Turn,
}

impl WriteTransaction {
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        self.transaction.commit().await
    }
}

impl Deref for WriteTransaction {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.transaction
    }
}

impl DerefMut for WriteTransaction {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.transaction
    }
}

/// The writer's connection and the turn it holds until dropped (the
/// connection first).
pub(super) struct WriteConnection {
    connection: PoolConnection<Any>,
    _turn: Turn,
}

impl Deref for WriteConnection {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.connection
    }
}

impl DerefMut for WriteConnection {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.connection
    }
}
