//! Event retention: each plan's `event_retention_days`. Old events are
//! deleted in batches of [`BATCH`], each one short statement with a pause
//! after it, so ingest, which shares SQLite's one writer, never waits
//! behind the pruner for long. SQLite then gives the freed pages back to
//! the file system (`incremental_vacuum`; databases created before this
//! version keep reusing them instead, until a manual `VACUUM`).
//! Replicas on one PostgreSQL may prune at once: a row deleted twice is
//! deleted once.

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
        let mut deleted = 0;
        for plan in self.list_plans().await? {
            if plan.event_retention_days == 0 {
                continue;
            }
            let cutoff = micros(now - chrono::Duration::days(i64::from(plan.event_retention_days)));
            loop {
                let batch = sqlx::query(
                    "DELETE FROM events WHERE id IN (SELECT e.id FROM events e \
                     JOIN organizations o ON o.id = e.organization_id \
                     WHERE o.plan = $1 AND e.create_time < $2 LIMIT $3)",
                )
                .bind(&plan.name)
                .bind(cutoff)
                .bind(BATCH)
                .execute(&self.pool)
                .await?
                .rows_affected();
                deleted += batch;
                if batch < BATCH as u64 {
                    break;
                }
                tokio::time::sleep(PAUSE).await;
            }
        }
        if deleted > 0 && self.backend == Backend::Sqlite {
            sqlx::query("PRAGMA incremental_vacuum").execute(&self.pool).await?;
        }
        Ok(deleted)
    }
}
