//! Deliveries of platform events and their attempts (SPEC §8).
//!
//! The dispatcher claims due deliveries for the length of one attempt
//! (`claimed_until`), so replicas sharing a PostgreSQL never send the same
//! attempt twice (the claiming `UPDATE` re-checks each row under its row
//! lock: of two replicas claiming at once, the second finds it claimed);
//! a replica killed mid-attempt
//! leaves a claim that lapses, and the attempt is made again (deliveries
//! are at least once; receivers deduplicate on the webhook id). Each
//! attempt's outcome and the delivery's next step are written in one
//! transaction.

use std::collections::HashMap;

use hookplane_model::{Delivery, DeliveryAttempt, DeliveryStatus, PlatformEventType, Subscription, Timestamp};
use sqlx::{Row, any::AnyRow};

use super::subscriptions::subscription_from_row;
use super::{Store, StoreError, from_micros, micros};

/// A delivery claimed for an attempt, with its subscription as it is now.
#[derive(Debug)]
pub struct DueDelivery {
    pub delivery: Delivery,
    pub subscription: Subscription,
    /// The claim (its expiry, in µs): an attempt's outcome is recorded
    /// only while the claim it was made under still holds, so an attempt
    /// whose claim lapsed, or that a resend overtook, leaves its attempt
    /// in the log and the delivery to its new owner.
    pub claim: i64,
}

/// What an attempt leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    Succeeded,
    /// Try again at this time.
    RetryAt(Timestamp),
    Failed,
    /// Failed, and the subscription is disabled with this reason (410).
    FailedAndDisable(String),
}

/// Which deliveries a listing shows.
#[derive(Debug, Default, Clone)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub event_type: Option<PlatformEventType>,
}

fn delivery_from_row(row: &AnyRow) -> Result<Delivery, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt { what: "delivery", source: what.into() };
    let type_name: String = row.try_get("event_type")?;
    let status: String = row.try_get("status")?;
    Ok(Delivery {
        id: row.try_get("id")?,
        organization_id: row.try_get("organization_id")?,
        subscription_id: row.try_get("subscription_id")?,
        webhook_id: row.try_get("webhook_id")?,
        event_type: PlatformEventType::from_name(&type_name).ok_or_else(|| corrupt(type_name.clone()))?,
        status: DeliveryStatus::from_name(&status).ok_or_else(|| corrupt(status.clone()))?,
        payload: row.try_get("payload")?,
        series_attempts: row.try_get::<i64, _>("series_attempts")?.clamp(0, i64::from(u32::MAX)) as u32,
        next_attempt_time: from_micros(row.try_get("next_attempt_time")?),
        create_time: from_micros(row.try_get("create_time")?),
        attempts: Vec::new(),
    })
}

fn attempt_from_row(row: &AnyRow) -> Result<DeliveryAttempt, StoreError> {
    Ok(DeliveryAttempt {
        time: from_micros(row.try_get("attempt_time")?),
        status_code: row.try_get::<Option<i64>, _>("status_code")?.and_then(|c| u16::try_from(c).ok()),
        duration_ms: row.try_get::<i64, _>("duration_ms")?.max(0) as u64,
        response_excerpt: row.try_get("response_excerpt")?,
        error: row.try_get("error")?,
    })
}

/// Attempts a delivery shows, the latest.
pub const SHOWN_ATTEMPTS: i64 = 50;

/// `$first, $first+1, …`: `count` placeholders.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// Rows per multi-row `INSERT` of attempts (7 values each).
const ATTEMPTS_PER_INSERT: usize = 256;

/// Records attempts and their next steps in `tx`, releasing the claims:
/// the attempts in multi-row inserts, the deliveries that settled in one
/// update per outcome and claim, those retried one by one (each has its
/// own time). A delivery whose claim no longer holds is left as it is.
async fn record(
    tx: &mut sqlx::AnyConnection,
    attempts: &[(&DueDelivery, &DeliveryAttempt, &NextStep)],
    now: Timestamp,
) -> Result<(), StoreError> {
    for chunk in attempts.chunks(ATTEMPTS_PER_INSERT) {
        let rows = (0..chunk.len()).map(|i| format!("({})", placeholders(1 + i * 7, 7))).collect::<Vec<_>>().join(", ");
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO delivery_attempts (delivery_id, seq, attempt_time, status_code, duration_ms, \
             response_excerpt, error) VALUES {rows}"
        )));
        for (due, attempt, _) in chunk {
            insert = insert
                .bind(&due.delivery.id)
                .bind(micros(attempt.time))
                .bind(micros(attempt.time))
                .bind(attempt.status_code.map(i64::from))
                .bind(attempt.duration_ms.min(i64::MAX as u64) as i64)
                .bind(&attempt.response_excerpt)
                .bind(&attempt.error);
        }
        insert.execute(&mut *tx).await?;
    }
    let mut settled: HashMap<(DeliveryStatus, i64), Vec<&str>> = HashMap::new();
    for (due, _, next) in attempts {
        let status = match next {
            NextStep::Succeeded => DeliveryStatus::Succeeded,
            NextStep::Failed | NextStep::FailedAndDisable(_) => DeliveryStatus::Failed,
            NextStep::RetryAt(_) => continue,
        };
        settled.entry((status, due.claim)).or_default().push(due.delivery.id.as_str());
    }
    for ((status, claim), ids) in &settled {
        for chunk in ids.chunks(ATTEMPTS_PER_INSERT) {
            let list = placeholders(4, chunk.len());
            let mut update = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE deliveries SET status = $1, series_attempts = series_attempts + 1, next_attempt_time = $2, \
                 claimed_until = 0 WHERE claimed_until = $3 AND id IN ({list})"
            )))
            .bind(status.name())
            .bind(micros(now))
            .bind(*claim);
            for id in chunk {
                update = update.bind(*id);
            }
            update.execute(&mut *tx).await?;
        }
    }
    for (due, _, next) in attempts {
        match next {
            NextStep::RetryAt(at) => {
                sqlx::query(
                    "UPDATE deliveries SET series_attempts = series_attempts + 1, next_attempt_time = $1, \
                     claimed_until = 0 WHERE id = $2 AND claimed_until = $3",
                )
                .bind(micros(*at))
                .bind(&due.delivery.id)
                .bind(due.claim)
                .execute(&mut *tx)
                .await?;
            }
            // The endpoint said it is gone, whoever asked.
            NextStep::FailedAndDisable(reason) => {
                sqlx::query(
                    "UPDATE subscriptions SET enabled = 0, disabled_reason = $1, update_time = $2, \
                     revision = revision + 1 WHERE id = $3",
                )
                .bind(reason)
                .bind(micros(now))
                .bind(&due.delivery.subscription_id)
                .execute(&mut *tx)
                .await?;
                super::subscriptions::fail_pending(&mut *tx, &due.delivery.subscription_id).await?;
            }
            NextStep::Succeeded | NextStep::Failed => {}
        }
    }
    Ok(())
}

/// Fails deliveries that can never be attempted (their row does not
/// decode, their subscription is gone or disabled), so they leave the
/// queue instead of being claimed forever.
async fn fail_unattemptable(tx: &mut sqlx::AnyConnection, ids: &[String]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let list = placeholders(1, ids.len());
    let mut update = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE deliveries SET status = 'failed', claimed_until = 0 WHERE id IN ({list})"
    )));
    for id in ids {
        update = update.bind(id);
    }
    update.execute(&mut *tx).await?;
    Ok(())
}

const DELIVERY_COLUMNS: &str = "d.id, d.organization_id, d.subscription_id, d.webhook_id, d.event_type, d.status, \
                                d.payload, d.series_attempts, d.next_attempt_time, d.create_time";

impl Store {
    /// Claims up to `limit` deliveries due at `now` until `until`, with
    /// their (enabled) subscriptions, oldest first, so that no subscription
    /// has more than `per_subscription` in flight counting `in_flight` (what
    /// this replica has out already, by subscription). The claim re-checks
    /// each row under its lock, so replicas claiming at once never both
    /// get one.
    pub async fn claim_due_deliveries(
        &self,
        now: Timestamp,
        until: Timestamp,
        limit: u32,
        per_subscription: u32,
        in_flight: &HashMap<String, usize>,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        // The oldest due rows by the `(status, next_attempt_time)` index,
        // a few times more than wanted, leaving out subscriptions whose
        // slots are full: one subscription's backlog never fills the
        // window. No join: the planner then walks the index in order and
        // stops at the limit (joined, SQLite sorted every pending row:
        // 10 ms a claim with 20 000 pending).
        let saturated: Vec<&str> = in_flight
            .iter()
            .filter(|(_, count)| **count >= per_subscription as usize)
            .map(|(id, _)| id.as_str())
            .collect();
        let skip = if saturated.is_empty() {
            String::new()
        } else {
            format!(" AND subscription_id NOT IN ({})", placeholders(3, saturated.len()))
        };
        let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, subscription_id FROM deliveries \
             WHERE status = 'pending' AND next_attempt_time <= $1 AND claimed_until <= $1{skip} \
             ORDER BY next_attempt_time LIMIT $2"
        )))
        .bind(micros(now))
        .bind(i64::from(limit.saturating_mul(4).max(256)));
        for id in &saturated {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut turns: HashMap<String, usize> = HashMap::new();
        let mut candidates = Vec::with_capacity(limit as usize);
        for row in &rows {
            let subscription: String = row.try_get("subscription_id")?;
            let out = in_flight.get(&subscription).copied().unwrap_or(0);
            let turn = turns.entry(subscription).or_insert(out);
            if *turn < per_subscription as usize {
                *turn += 1;
                candidates.push(row.try_get::<String, _>("id")?);
                if candidates.len() == limit as usize {
                    break;
                }
            }
        }
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let list = placeholders(3, candidates.len());
        let mut tx = self.write_tx().await?;
        let mut claim = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
            "UPDATE deliveries SET claimed_until = $1 \
             WHERE status = 'pending' AND claimed_until <= $2 AND id IN ({list}) RETURNING id"
        )))
        .bind(micros(until))
        .bind(micros(now));
        for id in &candidates {
            claim = claim.bind(id);
        }
        let claimed = claim.fetch_all(&mut *tx).await?;
        let mut due = Vec::with_capacity(claimed.len());
        if !claimed.is_empty() {
            let list = placeholders(1, claimed.len());
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.id IN ({list}) ORDER BY d.next_attempt_time"
            )));
            for id in &claimed {
                rows = rows.bind(id);
            }
            let mut unattemptable = Vec::new();
            let mut deliveries = Vec::with_capacity(claimed.len());
            for row in rows.fetch_all(&mut *tx).await? {
                match delivery_from_row(&row) {
                    Ok(delivery) => deliveries.push(delivery),
                    Err(err) => {
                        let id: String = row.try_get("id")?;
                        tracing::error!(delivery = %id, error = %err, "a delivery row does not decode; failing it");
                        unattemptable.push(id);
                    }
                }
            }
            // Their subscriptions, in one read.
            let mut wanted: Vec<&str> = deliveries.iter().map(|d| d.subscription_id.as_str()).collect();
            wanted.sort_unstable();
            wanted.dedup();
            let mut subscriptions = HashMap::with_capacity(wanted.len());
            if !wanted.is_empty() {
                let list = placeholders(1, wanted.len());
                let mut rows =
                    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM subscriptions WHERE id IN ({list})")));
                for id in &wanted {
                    rows = rows.bind(*id);
                }
                for row in rows.fetch_all(&mut *tx).await? {
                    // One that does not decode: its deliveries are failed below.
                    match subscription_from_row(&row) {
                        Ok(subscription) => {
                            subscriptions.insert(subscription.id.clone(), subscription);
                        }
                        Err(err) => tracing::error!(error = %err, "a subscription this version cannot read"),
                    }
                }
            }
            for delivery in deliveries {
                // Deleted or disabled since the delivery was made.
                match subscriptions.get(&delivery.subscription_id).filter(|s| s.enabled) {
                    Some(subscription) => {
                        due.push(DueDelivery { subscription: subscription.clone(), delivery, claim: micros(until) })
                    }
                    None => unattemptable.push(delivery.id),
                }
            }
            fail_unattemptable(&mut tx, &unattemptable).await?;
        }
        tx.commit().await?;
        Ok(due)
    }

    /// Records attempts and their next steps, releasing the claims, in one
    /// transaction.
    pub async fn record_attempts(
        &self,
        attempts: &[(&DueDelivery, &DeliveryAttempt, &NextStep)],
    ) -> Result<(), StoreError> {
        if attempts.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        record(&mut tx, attempts, hookplane_model::now()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One delivery of an organization, with its attempts.
    pub async fn get_delivery(&self, organization_id: &str, id: &str) -> Result<Delivery, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.organization_id = $1 AND d.id = $2"
        )))
        .bind(organization_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("delivery"))?;
        let mut delivery = delivery_from_row(&row)?;
        delivery.attempts = self.attempts_of(&delivery.id).await?;
        Ok(delivery)
    }

    /// A subscription's deliveries, newest first, after the cursor
    /// `(create_time, id)` when given, with their attempts.
    pub async fn list_deliveries(
        &self,
        organization_id: &str,
        subscription_id: &str,
        filter: &DeliveryFilter,
        before: Option<(Timestamp, &str)>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let (before_time, before_id) = before.map_or((i64::MAX, ""), |(t, id)| (micros(t), id));
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.organization_id = $1 AND d.subscription_id = $2 \
             AND ($3 = '' OR d.status = $3) AND ($4 = '' OR d.event_type = $4) \
             AND (d.create_time < $5 OR (d.create_time = $5 AND ($6 = '' OR d.id < $6))) \
             ORDER BY d.create_time DESC, d.id DESC LIMIT $7"
        )))
        .bind(organization_id)
        .bind(subscription_id)
        .bind(filter.status.map_or("", DeliveryStatus::name))
        .bind(filter.event_type.map_or("", PlatformEventType::name))
        .bind(before_time)
        .bind(before_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut deliveries = rows.iter().map(delivery_from_row).collect::<Result<Vec<_>, _>>()?;
        for delivery in &mut deliveries {
            delivery.attempts = self.attempts_of(&delivery.id).await?;
        }
        Ok(deliveries)
    }

    /// Starts a new series of attempts at a delivery, due now.
    pub async fn resend_delivery(&self, organization_id: &str, id: &str, now: Timestamp) -> Result<(), StoreError> {
        let updated = sqlx::query(
            "UPDATE deliveries SET status = 'pending', series_attempts = 0, next_attempt_time = $1, claimed_until = 0 \
             WHERE organization_id = $2 AND id = $3",
        )
        .bind(micros(now))
        .bind(organization_id)
        .bind(id)
        .execute(&mut *self.writer.connection().await?)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound("delivery"));
        }
        Ok(())
    }

    /// When the next pending delivery not claimed now is due.
    pub async fn next_delivery_due(&self) -> Result<Option<Timestamp>, StoreError> {
        // By the index, skipping the (few) claimed rows at its front; a
        // claim lapsing later is seen by the dispatcher's poll.
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT next_attempt_time FROM deliveries WHERE status = 'pending' AND claimed_until <= $1 \
             ORDER BY next_attempt_time LIMIT 1",
        )
        .bind(micros(hookplane_model::now()))
        .fetch_optional(&self.pool)
        .await?;
        Ok(next.map(from_micros))
    }

    /// A delivery of `event` to `subscription` alone, due now (a test
    /// event: no outbox, no fan-out).
    pub async fn create_delivery(
        &self,
        subscription: &Subscription,
        event: &hookplane_model::PlatformEvent,
    ) -> Result<Delivery, StoreError> {
        let payload = super::outbox::body(event)?;
        let id = crate::crypto::new_id("dlv_");
        sqlx::query(
            "INSERT INTO deliveries (id, organization_id, subscription_id, webhook_id, event_type, status, payload, \
             series_attempts, next_attempt_time, claimed_until, create_time) \
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, 0, $7, 0, $7)",
        )
        .bind(&id)
        .bind(&subscription.organization_id)
        .bind(&subscription.id)
        .bind(&event.id)
        .bind(event.event_type.name())
        .bind(&payload)
        .bind(micros(event.create_time))
        .execute(&mut *self.writer.connection().await?)
        .await?;
        self.get_delivery(&subscription.organization_id, &id).await
    }

    /// The latest [`SHOWN_ATTEMPTS`] attempts, oldest first: resends add
    /// attempts without end, and one delivery must not outgrow a response.
    async fn attempts_of(&self, delivery_id: &str) -> Result<Vec<DeliveryAttempt>, StoreError> {
        let rows = sqlx::query("SELECT * FROM delivery_attempts WHERE delivery_id = $1 ORDER BY seq DESC LIMIT $2")
            .bind(delivery_id)
            .bind(SHOWN_ATTEMPTS)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().rev().map(attempt_from_row).collect()
    }
}
