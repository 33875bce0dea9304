//! The raw event insert the benchmarks measure hookplane's event storage
//! against: multi-row `INSERT`s into the control plane's own `events`
//! table, through sqlx's typed SQLite driver, on a SQLite file in WAL mode
//! with `synchronous = NORMAL` as the store runs it. No `RETURNING`, no
//! statement cache tricks, no conversion: what storing a row costs. Each
//! statement stands alone, which SQLite applies whole, as the store
//! stores a fresh batch: a transaction's `BEGIN` and `COMMIT` would add
//! two round trips to the connection's thread.

use std::path::Path;

use hookplane_control_plane::store::Store;

/// One event row, borrowed.
pub struct RawRow<'a> {
    pub id: i64,
    pub organization_id: &'a str,
    pub connector_id: &'a str,
    pub status: &'a str,
    pub response_code: Option<i32>,
    pub error: &'a str,
    pub node_id: &'a str,
    pub create_time: i64,
    pub duration_ms: i64,
    pub trace: &'a [u8],
}

/// A fresh database at `path` with the store's schema (migrated by the
/// store itself), opened as a one-connection typed pool.
pub async fn open(path: &Path) -> sqlx::SqlitePool {
    let url = format!("sqlite://{}?mode=rwc", path.display());
    Store::connect(&url).await.expect("store schema").close().await;
    let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)
        .expect("a SQLite URL")
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
    sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(options).await.expect("raw pool")
}

/// Rows per statement, as the control plane's store chunks batches.
const CHUNK: usize = 100;

/// Inserts `rows`: a statement per hundred, each applied whole on its own.
/// Not one transaction: SQLite keeps a statement journal for each
/// statement of a transaction after the first, which spills to a
/// temporary file past 64 KiB, and it did for most batches above a
/// hundred rows (a file created, written and deleted per batch, seen
/// with strace on the trigger-load bench's open loop).
pub async fn insert(pool: &sqlx::SqlitePool, rows: &[RawRow<'_>]) {
    for chunk in rows.chunks(CHUNK) {
        statement(chunk).execute(pool).await.expect("raw insert");
    }
}

/// One multi-row `INSERT` of `rows`.
fn statement<'q>(rows: &[RawRow<'q>]) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    let mut sql = String::from(
        "INSERT INTO events (id, organization_id, connector_id, status, response_code, error, node_id, create_time, duration_ms, trace_proto) VALUES ",
    );
    sql.push_str(&vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; rows.len()].join(", "));
    sql.push_str(" ON CONFLICT (id) DO NOTHING");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for row in rows {
        query = query
            .bind(row.id)
            .bind(row.organization_id)
            .bind(row.connector_id)
            .bind(row.status)
            .bind(row.response_code)
            .bind(row.error)
            .bind(row.node_id)
            .bind(row.create_time)
            .bind(row.duration_ms)
            .bind(row.trace);
    }
    query
}
