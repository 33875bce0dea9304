//! Events reported by data planes.

use hookplane_convert::EncodedTrace;
use hookplane_convert::decode_trace;
use hookplane_model::{Event, EventFilter, EventStatus, EventTrace};
use std::sync::OnceLock;

use sqlx::{Row, any::AnyRow};

use super::{Backend, Store, StoreError, decode_json, from_micros, micros, outbox};

/// Events per `INSERT` statement: 10 parameters each, far below SQLite's
/// and PostgreSQL's parameter limits.
const INSERT_CHUNK: usize = 100;
const EVENT_COLUMNS: usize = 10;
/// The row counts an insert statement comes in: a chunk of another size
/// is padded with repeats of its last event, which conflict with it and
/// are skipped (`ON CONFLICT (id) DO NOTHING`). Batches come in every
/// size, and a statement per size (a hundred of them) kept falling out of
/// sqlx's per-connection statement cache, so SQLite (or PostgreSQL)
/// prepared a thousand-parameter statement again for most batches. Small
/// batches, the usual kind, get their exact size; larger ones a step at
/// most a quarter above in a transaction, or on SQLite, when fresh, exact
/// statements ([`exact_statements`]). Padding every size up to a multiple
/// of ten cost the trigger-load bench 3 µs of SQLite's CPU per event
/// (batches there hold a few to thirty events, and each padded row is
/// bound, its trace copied, and probed). 38 sizes in two statement forms
/// in use, with the store's other writes, fit sqlx's cache of 100
/// statements per connection.
#[rustfmt::skip]
const STATEMENT_ROWS: [usize; 38] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
    40, 48, 56, 64, 80, INSERT_CHUNK,
];

/// Which of [`STATEMENT_ROWS`] stores `events` events (at most
/// [`INSERT_CHUNK`]): the smallest that holds them.
fn statement_size(events: usize) -> usize {
    STATEMENT_ROWS.partition_point(|&rows| rows < events)
}

/// `events` as statements of exact sizes, in order: the largest of
/// [`STATEMENT_ROWS`] that fits, then the same for the rest. Every size
/// up to 32 is one, so a chunk of a hundred takes two statements at most.
fn exact_statements<'e, 'a>(
    backend: Backend,
    mut events: &'e [&'a Event<EncodedTrace>],
) -> impl Iterator<Item = (&'static str, &'e [&'a Event<EncodedTrace>])> {
    std::iter::from_fn(move || {
        let size = STATEMENT_ROWS.partition_point(|&rows| rows <= events.len()).checked_sub(1)?;
        let (statement, rest) = events.split_at(STATEMENT_ROWS[size]);
        events = rest;
        Some((insert_statement(backend, size, OnStored::Fail), statement))
    })
}

/// An organization's events, newest first: searches `events_org`.
const LIST_EVENTS: &str = "SELECT * FROM events WHERE organization_id = $1 AND id < $2 \
     AND ($3 = '' OR status = $3) AND create_time >= $4 AND create_time < $5 ORDER BY id DESC LIMIT $6";
/// One connector's events, newest first: searches `events_org_connector`.
const LIST_CONNECTOR_EVENTS: &str = "SELECT * FROM events WHERE organization_id = $1 AND connector_id = $2 \
     AND id < $3 AND ($4 = '' OR status = $4) AND create_time >= $5 AND create_time < $6 ORDER BY id DESC LIMIT $7";

/// What an insert statement does with an event already stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnStored {
    /// Fails, storing none of its rows: SQLite and PostgreSQL apply a
    /// statement whole or not at all.
    Fail,
    /// Skips it (`ON CONFLICT (id) DO NOTHING`).
    Skip,
    /// Skips it and returns the ids of the rows it stored.
    SkipReturningNew,
}

/// `INSERT … VALUES (…), (…) …` for `STATEMENT_ROWS[size]` events; each
/// statement is built once per process.
fn insert_statement(backend: Backend, size: usize, on_stored: OnStored) -> &'static str {
    static STATEMENTS: [OnceLock<Vec<String>>; 6] = [const { OnceLock::new() }; 6];
    let set = match backend {
        Backend::Sqlite => 0,
        Backend::Postgres => 3,
    } + on_stored as usize;
    let statements = STATEMENTS[set]
        .get_or_init(|| STATEMENT_ROWS.iter().map(|&rows| build_insert_statement(backend, rows, on_stored)).collect());
    &statements[size]
}

/// SQLite gets anonymous `?` placeholders: it resolves numbered ones by a
/// linear scan per parameter, which is quadratic in a statement this long.
fn build_insert_statement(backend: Backend, rows: usize, on_stored: OnStored) -> String {
    use std::fmt::Write as _;
    let mut sql = String::with_capacity(200 + rows * EVENT_COLUMNS * 6);
    sql.push_str(
        "INSERT INTO events (id, organization_id, connector_id, status, response_code, error, node_id, create_time, duration_ms, trace_proto) VALUES ",
    );
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..EVENT_COLUMNS {
            if column > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    let _ = write!(sql, "${}", row * EVENT_COLUMNS + column + 1);
                }
            }
        }
        sql.push(')');
    }
    match on_stored {
        OnStored::Fail => {}
        OnStored::Skip => sql.push_str(" ON CONFLICT (id) DO NOTHING"),
        OnStored::SkipReturningNew => sql.push_str(" ON CONFLICT (id) DO NOTHING RETURNING id"),
    }
    sql
}

/// Binds `rows` (a chunk, then its padding) to an insert statement.
fn bind_events<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    rows: impl Iterator<Item = &'q Event<EncodedTrace>>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for event in rows {
        query = query
            .bind(event.id)
            .bind(&event.organization_id)
            .bind(&event.connector_id)
            .bind(event.status.as_str())
            .bind(event.response_code.map(i64::from))
            .bind(&event.error)
            .bind(&event.node_id)
            .bind(micros(event.create_time))
            .bind(event.duration_ms.min(i64::MAX as u64) as i64)
            .bind(event.trace.as_bytes());
    }
    query
}

/// A stored trace: protobuf bytes, or the JSON of events stored before
/// traces became bytes (schema version 3).
fn trace_from_row(row: &AnyRow) -> Result<EventTrace, StoreError> {
    if let Some(bytes) = row.try_get::<Option<Vec<u8>>, _>("trace_proto")? {
        return decode_trace(&bytes).map_err(|e| StoreError::Corrupt { what: "event trace", source: e.into() });
    }
    match row.try_get::<Option<String>, _>("trace")? {
        Some(json) => decode_json("event trace", &json),
        None => Ok(EventTrace::default()),
    }
}

fn event_from_row(row: &AnyRow) -> Result<Event, StoreError> {
    let status: String = row.try_get("status")?;
    let trace = trace_from_row(row)?;
    Ok(Event {
        id: row.try_get("id")?,
        organization_id: row.try_get("organization_id")?,
        connector_id: row.try_get("connector_id")?,
        status: EventStatus::parse(&status).unwrap_or(EventStatus::Failed),
        response_code: row.try_get::<Option<i64>, _>("response_code")?.map(|c| c as i32),
        error: row.try_get("error")?,
        node_id: row.try_get("node_id")?,
        create_time: from_micros(row.try_get("create_time")?),
        duration_ms: row.try_get::<i64, _>("duration_ms")?.max(0) as u64,
        trace,
    })
}

impl Store {
    /// Stores a batch of events whole (a statement, or a transaction) and
    /// returns the ids that were new. Ids are unique across the fleet, so a
    /// batch resent after a lost acknowledgement is absorbed instead of
    /// duplicated. Rows go in multi-row statements: a round trip per up to
    /// [`INSERT_CHUNK`] events instead of one per event.
    pub async fn insert_events(&self, events: &[Event<EncodedTrace>]) -> Result<Vec<i64>, StoreError> {
        let inserted = self.timed("insert_events", self.insert_events_untimed(events)).await?;
        if self.backend == Backend::Sqlite && !inserted.is_empty() {
            // What the log grew by, roughly: a row is its trace and some
            // hundred bytes of columns and index entries.
            self.writer.wrote(events.iter().map(|event| event.trace.as_bytes().len() + 200).sum());
        }
        Ok(inserted)
    }

    async fn insert_events_untimed(&self, events: &[Event<EncodedTrace>]) -> Result<Vec<i64>, StoreError> {
        if events.is_empty() {
            // A report whose every event was refused: no write, no turn.
            return Ok(Vec::new());
        }
        // In id order, so rows and index entries are appended: a node's
        // handlers finish out of the order their ids were drawn in, and a
        // row that lands before the last one in a full page makes SQLite
        // split the page in two (a half-empty page, and more of them to
        // write and cache) instead of starting a new one.
        let mut ordered: Vec<&Event<EncodedTrace>> = events.iter().collect();
        ordered.sort_unstable_by_key(|event| event.id);
        let events = &ordered[..];
        if let Some(inserted) = self.insert_new_events(events).await {
            return Ok(inserted);
        }
        // A statement's count of inserted rows says which are new when it is
        // all or none of them, as it is for a fresh batch and for one resent
        // whole. Only a batch overlapping what is stored is inserted again
        // with `RETURNING id`, which makes SQLite buffer the returned rows
        // and sqlx convert each one.
        match self.try_insert_events(events, OnStored::Skip).await? {
            Some(inserted) => Ok(inserted),
            None => Ok(self.try_insert_events(events, OnStored::SkipReturningNew).await?.unwrap_or_default()),
        }
    }

    /// The usual batch, stored whole or not at all: a fresh batch with no
    /// failed event (whose platform events need the transaction's outbox)
    /// goes in `INSERT`s of exact sizes that fail on a stored event. `None`
    /// if it does not apply or stored nothing; the transaction then does
    /// the work.
    ///
    /// On SQLite every fresh batch does: the typed connection runs the
    /// largest exact statement that fits, then the same for the rest
    /// ([`exact_statements`]); one statement on its own, several in a
    /// transaction of the typed connection's. Elsewhere only a batch of
    /// one exact size does, in that one statement. Measured on the
    /// trigger-load bench: a transaction's `BEGIN` and `COMMIT` are a round
    /// trip each to SQLite's thread, and each wakes it (a futex) and is
    /// woken back; they were 38 % of the node's reporter CPU, so the usual
    /// batch, up to 32 events, is one statement. Under the open loop's 256
    /// senders, batches above that, from 33 to a few hundred events, went
    /// through `Any` and padded statements, above a hundred with a
    /// statement journal spilled to a temporary file per batch.
    async fn insert_new_events(&self, events: &[&Event<EncodedTrace>]) -> Option<Vec<i64>> {
        if events.iter().any(|e| e.status == EventStatus::Failed) {
            return None;
        }
        let stored = match &self.sqlite_events {
            Some(typed) => {
                let statements: Vec<_> = exact_statements(self.backend, events).collect();
                typed.insert_fresh(&self.writer, &statements).await
            }
            None => {
                let size = statement_size(events.len());
                if events.len() > INSERT_CHUNK || STATEMENT_ROWS[size] != events.len() {
                    return None;
                }
                let statement = insert_statement(self.backend, size, OnStored::Fail);
                let query = bind_events(sqlx::query(statement), events.iter().copied());
                match self.writer.connection().await {
                    Ok(mut connection) => query.execute(&mut *connection).await.map(drop),
                    Err(err) => Err(err),
                }
            }
        };
        match stored {
            Ok(()) => Some(events.iter().map(|e| e.id).collect()),
            // Usually an event sent again; the transaction meets any other
            // failure of the database too, and reports it (the typed
            // connection reports its own and is opened again).
            Err(err) => {
                tracing::debug!(error = %err, events = events.len(), "storing a fresh batch failed");
                None
            }
        }
    }

    /// One attempt of [`Store::insert_events`] in a transaction; `None`
    /// (and nothing stored) if, skipping stored events without returning
    /// the new ones, a statement stored part of its rows.
    async fn try_insert_events(
        &self,
        events: &[&Event<EncodedTrace>],
        on_stored: OnStored,
    ) -> Result<Option<Vec<i64>>, StoreError> {
        let mut tx = self.write_tx().await?;
        let mut inserted = Vec::with_capacity(events.len());
        for chunk in events.chunks(INSERT_CHUNK) {
            let size = statement_size(chunk.len());
            let rows = STATEMENT_ROWS[size];
            let last = chunk.last().expect("chunks are never empty");
            let padded = chunk.iter().copied().chain(std::iter::repeat_n(*last, rows - chunk.len()));
            let query = bind_events(sqlx::query(insert_statement(self.backend, size, on_stored)), padded);
            if on_stored == OnStored::SkipReturningNew {
                for row in query.fetch_all(&mut *tx).await? {
                    inserted.push(row.try_get::<i64, _>(0)?);
                }
                continue;
            }
            // The padding's repeats conflict with the row they repeat, so
            // they are never counted.
            match query.execute(&mut *tx).await?.rows_affected() {
                0 => {}
                n if n == chunk.len() as u64 => inserted.extend(chunk.iter().map(|e| e.id)),
                // Dropping the transaction rolls the batch back.
                _ => return Ok(None),
            }
        }
        // New failed events become `event.failed` platform events, in the
        // transaction that stores them.
        if events.iter().any(|e| e.status == EventStatus::Failed) {
            let new: std::collections::HashSet<i64> = inserted.iter().copied().collect();
            let failed = events.iter().copied().filter(|e| e.status == EventStatus::Failed && new.contains(&e.id));
            outbox::record_failed_events(&mut tx, failed).await?;
        }
        tx.commit().await?;
        Ok(Some(inserted))
    }

    /// Returns one event of an organization.
    pub async fn get_event(&self, organization_id: &str, id: i64) -> Result<Event, StoreError> {
        let row = sqlx::query("SELECT * FROM events WHERE organization_id = $1 AND id = $2")
            .bind(organization_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("event"))?;
        event_from_row(&row)
    }

    /// Lists an organization's events with ids below `before`, newest first.
    pub async fn list_events(
        &self,
        organization_id: &str,
        filter: &EventFilter,
        before: i64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        // Absent status and time filters bind values that match everything,
        // which keeps each statement static (and prepared once); the
        // connector filter picks its own statement, as a planner cannot
        // use the connector index for `(? = '' OR connector_id = ?)`.
        let query = match filter.connector_id.as_deref() {
            Some(connector_id) => sqlx::query(LIST_CONNECTOR_EVENTS).bind(organization_id).bind(connector_id),
            None => sqlx::query(LIST_EVENTS).bind(organization_id),
        };
        let rows = query
            .bind(before)
            .bind(filter.status.map_or("", EventStatus::as_str))
            .bind(filter.start_time.map_or(i64::MIN, micros))
            .bind(filter.end_time.map_or(i64::MAX, micros))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }
}

#[cfg(test)]
pub(super) mod tests;
