//! Persistence for the control plane, on SQLite or PostgreSQL.
//!
//! One implementation over sqlx's `Any` driver serves both backends: the
//! schema in `migrations/` is portable SQL (a backend gets its own file for
//! a version only where portable SQL cannot say it, in `migrations/sqlite`
//! and `migrations/postgres`), times are Unix microseconds and documents
//! are JSON text (event traces: protobuf bytes), so the two behave the same
//! by construction and one conformance suite tests both. One statement
//! has a typed twin: the usual event batch on SQLite
//! (`sqlite_events.rs`), where `Any`'s copies of its arguments cost 5 %
//! of a trigger.
//!
//! Invariants:
//! - Every change to what data planes need (connectors, their tokens,
//!   secrets, plans, organizations' plans) bumps `config_state.version` in the
//!   same transaction and stamps the row (or a tombstone) with it.
//! - Writes are compare-and-swap on `revision`; a stale revision is
//!   [`StoreError::Conflict`], never a lost update.
//! - Secret material arrives sealed or hashed; the store never sees plaintext.

mod api_keys;
mod checkpoint;
mod commits;
mod connectors;
mod database_file;
mod deliveries;
mod events;
mod idempotency;
mod leases;
mod mails;
mod nodes;
mod organizations;
mod outbox;
mod plans;
mod retention;
mod secrets;
mod sqlite_events;
mod sqlite_file;
mod subscriptions;
mod sync;
mod writer;

use std::{str::FromStr, sync::Arc, time::Duration};

use hookplane_model::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationSource, Migrator};
use sqlx::{AnyPool, Executor, Row};
use tokio::sync::watch;

pub use connectors::TokenChanges;
pub use deliveries::{DeliveryFilter, DueDelivery, NextStep};
/// Fresh events of one organization, connector and node, for tests.
#[cfg(test)]
pub(crate) use events::tests::events as test_events;
pub use idempotency::{Creation, IdempotencyKey};
pub use mails::{MAILED, Mail, MailOutcome};
pub use outbox::platform_event;
pub use subscriptions::MAX_SUBSCRIPTIONS;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The resource does not exist (or belongs to another organization).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The resource changed since the caller read it.
    #[error("{0} was changed concurrently; read it again")]
    Conflict(&'static str),
    /// A unique key is taken.
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    /// A bounded resource has no room left.
    #[error("no room left for {0}")]
    Exhausted(&'static str),
    /// A stored document could not be decoded: the database holds data this
    /// build does not understand.
    #[error("stored {what} is corrupt: {source}")]
    Corrupt {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrating the schema failed.
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

/// Which database a store talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The control plane's database.
#[derive(Clone, Debug)]
pub struct Store {
    /// Reads, and on PostgreSQL writes too.
    pool: AnyPool,
    /// Writes. On SQLite one connection of its own: SQLite takes one
    /// writer at a time anyway, and a connection drops its page cache
    /// whenever another one wrote, so writes rotating over the pool's
    /// connections re-read the events B-trees for every batch (measured
    /// in the trigger-load bench: 5–6 µs of the SQLite thread's CPU per
    /// stored event, a quarter of its time). On PostgreSQL, the same pool.
    /// Every write takes its turn (`writer.rs`).
    writer: writer::Writer,
    /// On SQLite, the typed connection that stores the usual event batch
    /// during the writer's turn (`sqlite_events.rs`); `None` on PostgreSQL.
    sqlite_events: Option<Arc<sqlite_events::TypedEventWriter>>,
    backend: Backend,
    /// The latest config version this process committed, or (on
    /// PostgreSQL) another replica did and notified; config streams wait
    /// on it, and poll for notifications lost.
    committed: Arc<watch::Sender<i64>>,
    /// Set by [`Store::close`]: ends the notification listener
    /// (PostgreSQL) or the checkpointer (SQLite).
    closed: Arc<watch::Sender<bool>>,
    /// On SQLite, the task that checkpoints the log (`checkpoint.rs`),
    /// awaited by [`Store::close`].
    checkpointer: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
    /// On SQLite, the database file, which the checkpointer syncs.
    database_file: Option<Arc<database_file::DatabaseFile>>,
    /// The content index at some version, advanced by each config read so
    /// no read rescans the whole configuration (see `sync.rs`).
    content: Arc<tokio::sync::Mutex<(i64, hookplane_model::ContentIndex)>>,
    /// How long the operations the fleet waits on take, for `/metrics`.
    latency: Family<StoreOperation, Histogram, fn() -> Histogram>,
}

/// A store operation timed for `/metrics`: a closed set of names.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreOperation {
    operation: &'static str,
}

/// 100 µs to ~3.3 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Portable migrations, and each backend's own where portable SQL cannot
/// say what it needs (SQLite's rowid keys). They share one sequence of
/// versions: a version may have a file in the shared folder or one in
/// each backend's.
static SHARED_MIGRATIONS: Migrator = sqlx::migrate!("./migrations");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// The shared migrations and one backend's, in version order.
#[derive(Debug)]
struct BackendMigrations(Vec<Migration>);

impl BackendMigrations {
    fn of(backend: Backend) -> BackendMigrations {
        let own = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        let mut all: Vec<Migration> = SHARED_MIGRATIONS.iter().chain(own.iter()).cloned().collect();
        all.sort_by_key(|m| m.version);
        BackendMigrations(all)
    }
}

impl MigrationSource<'static> for BackendMigrations {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(std::future::ready(Ok(self.0)))
    }
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A pool of at most `connections` to `backend`, set up as the store runs
/// them.
fn pool_options(backend: Backend, connections: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(10))
        // An embedded SQLite connection has no network to lose; checking it
        // costs a round trip to its thread on every acquire.
        .test_before_acquire(backend == Backend::Postgres)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // Before the first table exists this makes deleted
                    // events' pages returnable (`retention.rs`); on an
                    // older database it changes nothing.
                    conn.execute("PRAGMA auto_vacuum = INCREMENTAL").await?;
                    // WAL lets readers run beside the writer; the busy
                    // timeout makes writers queue instead of failing.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    // Checkpoints are the checkpointer's (`checkpoint.rs`).
                    conn.execute(checkpoint::WRITER_CHECKPOINTS_PRAGMA.as_str()).await?;
                }
                Ok(())
            })
        })
}

impl Store {
    /// Connects to `url` (`sqlite://PATH` or `postgres://…`) and migrates.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        let options = AnyConnectOptions::from_str(url)?;
        if backend == Backend::Sqlite {
            sqlite_file::create_private(url, &options);
        }
        let closed = Arc::new(watch::channel(false).0);
        let mut checkpointed = None;
        let mut database_file = None;
        let (pool, writer, sqlite_events) = match backend {
            Backend::Sqlite => {
                let writer = pool_options(backend, 1).connect_with(options.clone()).await?;
                Migrator::new(BackendMigrations::of(backend)).await?.run(&writer).await?;
                // Opened after the migrations: a connection that read the
                // schema before they changed a table can hand sqlx a row
                // of the table's old shape.
                let typed = sqlite_events::TypedEventWriter::connect(&options).await?;
                // A database in memory has no log to copy.
                if !sqlite_file::in_memory(url) {
                    let sqlite = sqlx::sqlite::SqliteConnectOptions::try_from(&options)?;
                    database_file = database_file::DatabaseFile::open(sqlite.get_filename());
                    checkpointed = Some(sqlite);
                }
                (pool_options(backend, 4).connect_with(options).await?, writer, Some(Arc::new(typed)))
            }
            Backend::Postgres => {
                let pool = pool_options(backend, 16).connect_with(options).await?;
                Migrator::new(BackendMigrations::of(backend)).await?.run(&pool).await?;
                (pool.clone(), pool, None)
            }
        };
        let committed = Arc::new(watch::channel(0).0);
        if backend == Backend::Postgres {
            commits::listen(url.to_owned(), Arc::downgrade(&committed), closed.subscribe());
        }
        let latency = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let writer = writer::Writer::new(writer, backend);
        let checkpointer = checkpointed
            .map(|options| checkpoint::spawn(options, writer.clone(), database_file.clone(), closed.subscribe()));
        let checkpointer = Arc::new(std::sync::Mutex::new(checkpointer));
        Ok(Store {
            pool,
            writer,
            sqlite_events,
            backend,
            committed,
            closed,
            checkpointer,
            database_file,
            content: Arc::default(),
            latency,
        })
    }

    /// Begins a write transaction, during the writer's turn
    /// ([`writer::Writer::begin`]).
    async fn write_tx(&self) -> Result<writer::WriteTransaction, StoreError> {
        Ok(self.writer.begin().await?)
    }

    /// Commits a transaction that bumped the config version to `version` and
    /// wakes the config streams.
    async fn commit_config(&self, mut tx: writer::WriteTransaction, version: i64) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            // Delivered to the other replicas when, and only if, this commits.
            let notify = format!("NOTIFY {}, '{version}'", commits::CHANNEL);
            sqlx::query(sqlx::AssertSqlSafe(notify)).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.committed.send_modify(|latest| *latest = (*latest).max(version));
        Ok(())
    }

    /// A receiver that changes whenever this process, or another replica
    /// on the same PostgreSQL, commits a config change.
    pub fn config_commits(&self) -> watch::Receiver<i64> {
        self.committed.subscribe()
    }

    /// How long the timed operations took (`insert_events`, `config_delta`,
    /// `upsert_nodes`, `prune_events`), by operation.
    pub fn latency(&self) -> Family<StoreOperation, Histogram, fn() -> Histogram> {
        self.latency.clone()
    }

    /// Runs `operation`, timing it as `name`.
    async fn timed<T>(&self, name: &'static str, operation: impl Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let result = operation.await;
        self.latency.get_or_create(&StoreOperation { operation: name }).observe(started.elapsed().as_secs_f64());
        result
    }

    /// Closes every connection; later calls fail.
    pub async fn close(&self) {
        self.closed.send_replace(true);
        let checkpointer = self.checkpointer.lock().expect("not poisoned").take();
        let checkpointer_ended = match checkpointer {
            Some(checkpointer) => checkpointer.await.is_ok(),
            None => false,
        };
        self.pool.close().await;
        self.writer.close().await;
        if let Some(typed) = &self.sqlite_events {
            typed.close().await;
        }
        // Only now, and only by the close that saw the checkpointer's
        // connection closed: earlier, closing the file would drop the
        // locks of connections still open (`database_file.rs`).
        if checkpointer_ended && let Some(database_file) = &self.database_file {
            database_file.release();
        }
    }

    /// The current config version: grows with every change data planes need.
    pub async fn config_version(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT version FROM config_state WHERE id = 1").fetch_one(&self.pool).await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Reads the current config version and raises [`Store::config_commits`]
    /// to it: how a process learns of commits whose notification it missed.
    pub async fn refresh_config_version(&self) -> Result<i64, StoreError> {
        let version = self.config_version().await?;
        self.committed.send_if_modified(|latest| {
            let raised = version > *latest;
            *latest = (*latest).max(version);
            raised
        });
        Ok(version)
    }
}

/// A row an update or delete at an expected revision did not match: the
/// row is gone (NotFound) or changed since (Conflict). `table` and `key`
/// name the row; `what` names it to the caller.
async fn missing_or_conflict(
    tx: &mut sqlx::AnyConnection,
    (table, key, what): (&'static str, &'static str, &'static str),
    organization_id: &str,
    id: &str,
) -> Result<StoreError, StoreError> {
    let exists =
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT 1 FROM {table} WHERE organization_id = $1 AND {key} = $2")))
            .bind(organization_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
    Ok(if exists { StoreError::Conflict(what) } else { StoreError::NotFound(what) })
}

/// Bumps the config version inside `tx` and returns the new one.
async fn bump_config_version(tx: &mut sqlx::AnyConnection) -> Result<i64, StoreError> {
    let row = sqlx::query("UPDATE config_state SET version = version + 1 WHERE id = 1 RETURNING version")
        .fetch_one(&mut *tx)
        .await?;
    Ok(row.try_get::<i64, _>(0)?)
}

/// Records that a resource data planes knew was removed.
async fn tombstone(
    tx: &mut sqlx::AnyConnection,
    kind: &str,
    organization_id: &str,
    resource_id: &str,
    version: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO config_tombstones (kind, organization_id, resource_id, config_version) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (kind, organization_id, resource_id) DO UPDATE SET config_version = excluded.config_version",
    )
    .bind(kind)
    .bind(organization_id)
    .bind(resource_id)
    .bind(version)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Clears a tombstone when a resource of the same id comes back.
async fn clear_tombstone(
    tx: &mut sqlx::AnyConnection,
    kind: &str,
    organization_id: &str,
    resource_id: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM config_tombstones WHERE kind = $1 AND organization_id = $2 AND resource_id = $3")
        .bind(kind)
        .bind(organization_id)
        .bind(resource_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Unix microseconds of a timestamp, as stored.
fn micros(t: Timestamp) -> i64 {
    t.timestamp_micros()
}

/// The timestamp of stored Unix microseconds.
fn from_micros(us: i64) -> Timestamp {
    chrono::DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// Whether a database error is a unique-key violation.
fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Decodes a stored JSON document.
fn decode_json<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Corrupt { what, source: source.into() })
}

/// Encodes a document for storage. Model types only fail to encode when they
/// still hold plaintext secrets, which is a programming error upstream.
fn encode_json<T: serde::Serialize>(what: &'static str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Corrupt { what, source: source.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version lives either in the shared folder or in every backend's:
    /// never in both, never in one backend only.
    #[test]
    fn each_backend_gets_one_migration_per_version() {
        let versions = |backend| BackendMigrations::of(backend).0.iter().map(|m| m.version).collect::<Vec<_>>();
        let (sqlite, postgres) = (versions(Backend::Sqlite), versions(Backend::Postgres));
        assert!(sqlite.windows(2).all(|w| w[0] < w[1]), "duplicate version: {sqlite:?}");
        assert_eq!(sqlite, postgres, "a backend-specific version needs a file for every backend");
        assert_eq!(sqlite, (1..=sqlite.len() as i64).collect::<Vec<_>>(), "versions run 1, 2, 3, …");
    }
}
