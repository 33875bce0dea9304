//! The usual event batch on SQLite, through sqlx's typed SQLite driver.
//!
//! Everything else the store does goes through sqlx's `Any` driver, which
//! copies each argument into its own value and copies it again into the
//! backend's (`map_arguments`): for a stored event, five texts and the
//! trace twice, 24 allocations. The typed driver takes the arguments as
//! they are, and a text that repeats down a column (a batch is one
//! node's, its events few connectors' and organizations', and most have
//! no error) is shared with the row above instead of copied. Measured
//! with callgrind on the trigger-load bench's end-to-end call: binding,
//! mapping and dropping the arguments went from 8.4k instructions per
//! stored event to 2.8k, the whole call from 161.3k to 154.8k and 92.1
//! allocations to 72.3.
//!
//! Invariant: SQLite sees one writer at a time. The typed connection is
//! a second one, so it writes only during the writer's turn, which every
//! other write takes too (`writer.rs`), and holds the turn until SQLite's
//! thread finished what it was sent (a statement, or a batch's
//! transaction and, for a caller that went away mid-way, its rollback):
//! writes queue for the turn, never in SQLite's busy handler, which
//! sleeps a millisecond and more between tries. A connection's page
//! cache is dropped whenever the other one wrote: a batch with a failed
//! event, a resent batch or a node's heartbeat (the writer's) between
//! fresh batches costs the next one on each connection a re-read of the
//! pages it touches, as writes rotating over a pool's connections used to
//! on every batch (`Store::writer`).

use std::sync::Arc;
use std::time::Duration;

use hookplane_convert::EncodedTrace;
use hookplane_model::Event;
use sqlx::any::AnyConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions as _, Connection as _};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::writer::{Turn, Writer, release_after};
use super::{is_unique_violation, micros};

/// The typed connection: opened on first use and again after a failure
/// only it met. A connection rather than a pool of one: returning a
/// pool's connection spawns a task, which woke another worker thread for
/// most batches (0.7 wake-ups per trigger on the trigger-load bench); the
/// lock is never contended, as only the holder of the writer's turn
/// takes it (and `close`).
#[derive(Debug)]
pub(super) struct TypedEventWriter {
    options: SqliteConnectOptions,
    slot: Arc<Mutex<Slot>>,
}

#[derive(Debug)]
enum Slot {
    Open(SqliteConnection),
    /// Not open yet, or dropped after a failure.
    Unopened,
    /// The store closed.
    Closed,
}

impl TypedEventWriter {
    /// The connection to the database of `options` (the store's own,
    /// parsed once, so both open the same file), set up as the store's
    /// connections are (`pool_options`). Opened after the migrations, like
    /// the read pool, so it never holds the schema's old shape.
    pub(super) async fn connect(options: &AnyConnectOptions) -> Result<TypedEventWriter, sqlx::Error> {
        // Each statement of a transaction after the first keeps a statement
        // journal, which spills to a temporary file past 64 KiB unless
        // temporary storage is memory: without it, most batches above a
        // hundred events created, wrote and deleted a file (strace, on the
        // trigger-load bench's open loop). In memory it holds at most the
        // pages one batch's statements change.
        let options = SqliteConnectOptions::try_from(options)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .pragma("temp_store", "memory")
            .pragma("wal_autocheckpoint", super::checkpoint::WRITER_CHECKPOINTS_AT.to_string());
        let connection = options.connect().await?;
        Ok(TypedEventWriter { options, slot: Arc::new(Mutex::new(Slot::Open(connection))) })
    }

    /// Runs `statements`, each an `INSERT` of exactly its events' rows that
    /// fails whole on a stored event, on the typed connection, during one
    /// turn of `writer`: all of them or none.
    /// One statement is applied whole by SQLite; several run in a
    /// transaction of their own, rolled back if one fails or the caller
    /// goes away (the turn is held until the rollback ran).
    pub(super) async fn insert_fresh(
        &self,
        writer: &Writer,
        statements: &[(&'static str, &[&Event<EncodedTrace>])],
    ) -> Result<(), sqlx::Error> {
        let turn = writer.turn().await?;
        let mut writing = Writing { turn: Some(turn), slot: Some(Arc::clone(&self.slot).lock_owned().await) };
        let slot = writing.slot.as_deref_mut().expect("held until the end");
        if let Slot::Unopened = slot {
            *slot = Slot::Open(self.options.connect().await?);
        }
        let Slot::Open(connection) = slot else { return Err(sqlx::Error::PoolClosed) };
        let stored = match statements {
            [(statement, events)] => bind_fresh_batch(statement, events).execute(&mut *connection).await.map(drop),
            _ => store_whole(connection, statements).await,
        };
        if let Err(err) = &stored
            && !is_unique_violation(err)
        {
            // The transaction's retry tells whether it was the database or
            // this connection; a connection that failed is not trusted again.
            tracing::warn!(error = %err, "the typed event connection failed; it is opened again for the next batch");
            close_failed(slot).await;
        }
        writing.finish();
        stored
    }

    /// Closes the connection; later inserts fail.
    pub(super) async fn close(&self) {
        if let Slot::Open(connection) = std::mem::replace(&mut *self.slot.lock().await, Slot::Closed) {
            let _ = connection.close().await;
        }
    }

    /// Whether no insert holds the connection now.
    #[cfg(test)]
    pub(super) fn is_idle(&self) -> bool {
        self.slot.try_lock().is_ok()
    }

    /// Whether the connection is open (and no insert holds it).
    #[cfg(test)]
    pub(super) fn is_open(&self) -> bool {
        self.slot.try_lock().is_ok_and(|slot| matches!(*slot, Slot::Open(_)))
    }
}

/// The writer's turn and the typed connection, held by an insert. If the
/// insert is dropped before it finished, both stay held until SQLite's
/// thread has run what it was sent: a ping queues behind the statement in
/// flight, or behind the rollback of a dropped transaction.
struct Writing {
    turn: Option<Turn>,
    slot: Option<OwnedMutexGuard<Slot>>,
}

impl Writing {
    /// The statement finished: the turn ends here.
    fn finish(mut self) {
        self.slot.take();
        self.turn.take();
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        let (Some(mut slot), Some(turn)) = (self.slot.take(), self.turn.take()) else { return };
        release_after(turn, async move {
            if let Slot::Open(connection) = &mut *slot
                && connection.ping().await.is_err()
            {
                close_failed(&mut slot).await;
            }
        });
    }
}

/// Closes a connection that failed, for the next insert to open anew:
/// dropped, SQLite would close it later, perhaps after the store released
/// the database file (`database_file.rs`).
async fn close_failed(slot: &mut Slot) {
    if let Slot::Open(failed) = std::mem::replace(slot, Slot::Unopened) {
        let _ = failed.close().await;
    }
}

/// Runs `statements` in one transaction, so a batch is stored whole or not
/// at all as one statement is: what a call stored is what it reports.
async fn store_whole(
    connection: &mut SqliteConnection,
    statements: &[(&'static str, &[&Event<EncodedTrace>])],
) -> Result<(), sqlx::Error> {
    let mut transaction = connection.begin_with("BEGIN IMMEDIATE").await?;
    for (statement, events) in statements {
        bind_fresh_batch(statement, events).execute(&mut *transaction).await?;
    }
    transaction.commit().await
}

/// `statement` with the batch bound to it.
fn bind_fresh_batch<'q>(
    statement: &'static str,
    events: &[&'q Event<EncodedTrace>],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    let mut query = sqlx::query(statement);
    let [mut organization, mut connector, mut status, mut error, mut node] = <[RepeatedText; 5]>::default();
    for event in events {
        query = query
            .bind(event.id)
            .bind(organization.share(&event.organization_id))
            .bind(connector.share(&event.connector_id))
            .bind(status.share(event.status.as_str()))
            .bind(event.response_code.map(i64::from))
            .bind(error.share(&event.error))
            .bind(node.share(&event.node_id))
            .bind(micros(event.create_time))
            .bind(event.duration_ms.min(i64::MAX as u64) as i64)
            .bind(event.trace.as_bytes());
    }
    query
}

/// One column's text down a batch's rows: a row whose text is the row
/// above's shares it.
#[derive(Default)]
struct RepeatedText(Option<Arc<str>>);

impl RepeatedText {
    fn share(&mut self, text: &str) -> Arc<str> {
        match &self.0 {
            Some(above) if **above == *text => Arc::clone(above),
            _ => Arc::clone(self.0.insert(Arc::from(text))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{RepeatedText, Slot, TypedEventWriter};
    use std::str::FromStr as _;
    use std::sync::Arc;

    /// A transaction's statement journals stay in memory, where they never
    /// become a file created and deleted per batch.
    #[tokio::test]
    async fn the_typed_connection_keeps_temporary_storage_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("events.db").display());
        let typed = TypedEventWriter::connect(&sqlx::any::AnyConnectOptions::from_str(&url).unwrap()).await.unwrap();
        let Slot::Open(connection) = &mut *typed.slot.lock().await else { panic!("opened by connect") };
        let temp_store: i64 = sqlx::query_scalar("PRAGMA temp_store").fetch_one(&mut *connection).await.unwrap();
        assert_eq!(temp_store, 2, "MEMORY");
        // And leaves checkpoints to the checkpointer (`checkpoint.rs`).
        let checkpoints_at: i64 =
            sqlx::query_scalar("PRAGMA wal_autocheckpoint").fetch_one(&mut *connection).await.unwrap();
        assert_eq!(checkpoints_at, i64::from(super::super::checkpoint::WRITER_CHECKPOINTS_AT));
    }

    #[test]
    fn a_text_is_shared_with_the_row_above_only_when_it_repeats() {
        let mut column = RepeatedText::default();
        let first = column.share("org_1");
        let again = column.share("org_1");
        assert!(Arc::ptr_eq(&first, &again));
        let other = column.share("org_2");
        assert_eq!(&*other, "org_2");
        assert!(!Arc::ptr_eq(&first, &other));
        let back = column.share("org_1");
        assert_eq!(&*back, "org_1");
        assert!(Arc::ptr_eq(&column.share(""), &column.share("")), "an empty error is shared too");
    }
}
