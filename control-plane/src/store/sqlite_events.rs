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
//! a second one, so it writes only while holding the store's writer
//! connection, which every other write goes through, and holds it until
//! its statement finished, even when the caller went away mid-statement
//! (SQLite's thread runs a statement it was sent either way): writes
//! queue in the writer's pool, never in SQLite's busy handler, which
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
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Any, AnyPool, ConnectOptions as _, Connection as _};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::{is_unique_violation, micros};

/// The typed connection: opened on first use and again after a failure
/// only it met. A connection rather than a pool of one: returning a
/// pool's connection spawns a task, which woke another worker thread for
/// most batches (0.7 wake-ups per trigger on the trigger-load bench); the
/// lock is never contended, as only the holder of the writer's
/// connection takes it.
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
        let options = SqliteConnectOptions::try_from(options)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let connection = options.connect().await?;
        Ok(TypedEventWriter { options, slot: Arc::new(Mutex::new(Slot::Open(connection))) })
    }

    /// Runs `statements`, each an `INSERT` of exactly its events' rows that
    /// fails whole on a stored event, in order on the typed connection,
    /// during one turn of `writer`, the store's writer pool. Returns how
    /// many events the statements that ran stored, and the failure that
    /// stopped the rest, if one did.
    pub(super) async fn insert_fresh<'e, 'a: 'e>(
        &self,
        writer: &AnyPool,
        statements: impl Iterator<Item = (&'static str, &'e [&'a Event<EncodedTrace>])>,
    ) -> (usize, Result<(), sqlx::Error>) {
        let turn = match writer.acquire().await {
            Ok(turn) => turn,
            Err(err) => return (0, Err(err)),
        };
        let mut writing = Writing { turn: Some(turn), slot: Some(Arc::clone(&self.slot).lock_owned().await) };
        let slot = writing.slot.as_deref_mut().expect("held until the end");
        let mut stored = 0;
        let outcome = async {
            if let Slot::Unopened = slot {
                *slot = Slot::Open(self.options.connect().await?);
            }
            let Slot::Open(connection) = slot else { return Err(sqlx::Error::PoolClosed) };
            for (statement, events) in statements {
                bind_fresh_batch(statement, events).execute(&mut *connection).await?;
                stored += events.len();
            }
            Ok(())
        }
        .await;
        if let Err(err) = &outcome
            && !is_unique_violation(err)
            && matches!(slot, Slot::Open(_))
        {
            // The transaction's retry tells whether it was the database or
            // this connection; a connection that failed is not trusted again.
            tracing::warn!(error = %err, "the typed event connection failed; it is opened again for the next batch");
            *slot = Slot::Unopened;
        }
        writing.finish();
        (stored, outcome)
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
/// insert is dropped before its statement finished, both stay held until
/// SQLite's thread has run it: a ping queues behind the statement.
struct Writing {
    turn: Option<PoolConnection<Any>>,
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
        // Without a runtime (a process ending) nothing waits for a turn.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            if let Slot::Open(connection) = &mut *slot
                && connection.ping().await.is_err()
            {
                *slot = Slot::Unopened;
            }
            drop(slot);
            drop(turn);
        });
    }
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
    use super::RepeatedText;
    use std::sync::Arc;

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
