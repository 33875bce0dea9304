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
//! a second one, so it writes only while its caller holds the store's
//! writer connection, which every other write goes through: writes queue
//! in the writer's pool, never in SQLite's busy handler (which sleeps a
//! millisecond and more between tries), and a connection's page cache is
//! dropped only when the other one wrote, which on the trigger path is
//! never.

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use hookplane_convert::EncodedTrace;
use hookplane_model::Event;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Any, ConnectOptions as _, Connection as _};
use tokio::sync::Mutex;

use super::micros;

/// The typed connection, `None` once the store closed. A connection
/// rather than a pool of one: returning a pool's connection spawns a task,
/// which woke another worker thread for most batches (0.7 wake-ups per
/// trigger on the trigger-load bench); the lock is never contended, as
/// only the holder of the writer's connection takes it.
#[derive(Debug)]
pub(super) struct TypedEventWriter(Mutex<Option<SqliteConnection>>);

impl TypedEventWriter {
    /// Opens the SQLite database at `url` as the store's own connections
    /// are set up (`pool_options`). Opened after the migrations, like the
    /// read pool, so it never holds the schema's old shape.
    pub(super) async fn connect(url: &str) -> Result<TypedEventWriter, sqlx::Error> {
        let connection = SqliteConnectOptions::from_str(url)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .connect()
            .await?;
        Ok(TypedEventWriter(Mutex::new(Some(connection))))
    }

    /// Runs `statement`, an `INSERT` of exactly `events.len()` rows that
    /// fails whole on a stored event, while the caller holds `_turn`, the
    /// store's writer connection.
    pub(super) async fn insert_fresh(
        &self,
        statement: &'static str,
        events: &[&Event<EncodedTrace>],
        _turn: &mut PoolConnection<Any>,
    ) -> Result<(), sqlx::Error> {
        let mut connection = self.0.lock().await;
        let connection = connection.as_mut().ok_or(sqlx::Error::PoolClosed)?;
        bind_fresh_batch(statement, events).execute(connection).await?;
        Ok(())
    }

    /// Whether no insert is using the connection now.
    #[cfg(test)]
    pub(super) fn is_idle(&self) -> bool {
        self.0.try_lock().is_ok()
    }

    /// Closes the connection; later inserts fail.
    pub(super) async fn close(&self) {
        if let Some(connection) = self.0.lock().await.take() {
            let _ = connection.close().await;
        }
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
