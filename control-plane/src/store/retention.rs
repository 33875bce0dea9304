//! Event retention: each plan's `event_retention_days`. Old events are
//! deleted in batches of [`BATCH`], each one short statement with a pause
//! after it, so ingest, which shares SQLite's one writer, never waits
//! behind the pruner for long. SQLite then gives the freed pages back to
//! the file system (`incremental_vacuum`; databases created before this
//! version keep reusing them instead, until a manual `VACUUM`).
//! Replicas on one PostgreSQL prune one at a time, the holder of the
//! `prune_events` lease (`leases.rs`, claimed in `server.rs`); were two to
//! prune at once, a row deleted twice is deleted once.

use std::time::Duration;

use hookplane_model::Timestamp;

use super::{Backend, Store, StoreError, micros};

/// Events deleted per statement.
const BATCH: i64 = 1_000;
/// Rest between batches, for writers waiting on the lock.
const PAUSE: Duration = Duration::from_millis(20);

impl Store {
    /// Deletes every event older, at `now`, than its organization's plan
    /// keeps; returns how many went.
    pub async fn prune_events(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.timed("prune_events", self.prune_events_untimed(now)).await
    }

    async fn prune_events_untimed(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for plan in self.list_plans().await? {
            let days = chrono::Duration::try_days(i64::from(plan.event_retention_days));
            // 0 keeps forever; a cutoff before the epoch keeps everything.
            let Some(cutoff) = days.filter(|_| plan.event_retention_days > 0).and_then(|d| now.checked_sub_signed(d))
            else {
                continue;
            };
            let organizations: Vec<String> = sqlx::query_scalar("SELECT id FROM organizations WHERE plan = $1")
                .bind(&plan.name)
                .fetch_all(&self.pool)
                .await?;
            for organization in organizations {
                deleted += self.prune_organization(&organization, micros(cutoff)).await?;
            }
        }
        if deleted > 0 && self.backend == Backend::Sqlite {
            self.give_space_back().await?;
        }
        Ok(deleted)
    }

    /// Deletes settled deliveries (their attempts with them) and mails
    /// made before `cutoff`, a batch at a time; pending ones stay whatever
    /// their age. Returns how many deliveries and mails went.
    pub async fn prune_deliveries(&self, cutoff: Timestamp) -> Result<u64, StoreError> {
        let mut deleted = 0;
        loop {
            // Chosen by the time index before the write lock is taken; the
            // deletes re-check the status, which may have moved meanwhile.
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM deliveries WHERE create_time < $1 AND status <> 'pending' ORDER BY create_time LIMIT $2",
            )
            .bind(micros(cutoff))
            .bind(BATCH)
            .fetch_all(&self.pool)
            .await?;
            if !ids.is_empty() {
                let list = (2..ids.len() + 2).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
                let mut tx = self.write_tx().await?;
                // The deliveries first, and the attempts of exactly those:
                // one resent meanwhile keeps its row and its log.
                let mut rows = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM deliveries WHERE status <> $1 AND id IN ({list}) RETURNING id"
                )))
                .bind("pending");
                for id in &ids {
                    rows = rows.bind(id);
                }
                let gone = rows.fetch_all(&mut *tx).await?;
                if !gone.is_empty() {
                    let list = (1..=gone.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
                    let mut attempts = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DELETE FROM delivery_attempts WHERE delivery_id IN ({list})"
                    )));
                    for id in &gone {
                        attempts = attempts.bind(id);
                    }
                    attempts.execute(&mut *tx).await?;
                }
                deleted += gone.len() as u64;
                tx.commit().await?;
            }
            if ids.len() < BATCH as usize {
                break;
            }
            tokio::time::sleep(PAUSE).await;
        }
        deleted += sqlx::query("DELETE FROM mails WHERE status <> 'pending' AND create_time < $1")
            .bind(micros(cutoff))
            .execute(&mut *self.writer.connection().await?)
            .await?
            .rows_affected();
        Ok(deleted)
    }

    /// Deletes one organization's events stored before `cutoff` (µs), a
    /// batch at a time; each batch reads, by the `(organization_id,
    /// create_time)` index, only the rows it deletes.
    async fn prune_organization(&self, organization: &str, cutoff: i64) -> Result<u64, StoreError> {
        let mut deleted = 0;
        loop {
            let batch = sqlx::query(
                "DELETE FROM events WHERE id IN (SELECT id FROM events \
                 WHERE organization_id = $1 AND create_time < $2 LIMIT $3)",
            )
            .bind(organization)
            .bind(cutoff)
            .bind(BATCH)
            .execute(&mut *self.writer.connection().await?)
            .await?
            .rows_affected();
            deleted += batch;
            if batch < BATCH as u64 {
                return Ok(deleted);
            }
            tokio::time::sleep(PAUSE).await;
        }
    }

    /// Returns SQLite's free pages to the file system a few at a time, so
    /// no one statement holds the write lock for long.
    async fn give_space_back(&self) -> Result<(), StoreError> {
        // 2 = INCREMENTAL; a file made before it reuses its free pages.
        let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum").fetch_one(&self.pool).await?;
        if mode != 2 {
            return Ok(());
        }
        let mut free = i64::MAX;
        loop {
            sqlx::query("PRAGMA incremental_vacuum(2000)").execute(&mut *self.writer.connection().await?).await?;
            let left: i64 = sqlx::query_scalar("PRAGMA freelist_count").fetch_one(&self.pool).await?;
            if left == 0 || left >= free {
                return Ok(());
            }
            free = left;
            tokio::time::sleep(PAUSE).await;
        }
    }
}
