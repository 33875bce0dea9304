//! Deliveries of platform events and their attempts (SPEC §8).
//!
//! The dispatcher claims due deliveries for the length of one attempt
//! (`claimed_until`), so replicas sharing a PostgreSQL never send the same
//! attempt twice (`FOR UPDATE SKIP LOCKED`); a replica killed mid-attempt
//! leaves a claim that lapses, and the attempt is made again (deliveries
//! are at least once; receivers deduplicate on the webhook id). Each
//! attempt's outcome and the delivery's next step are written in one
//! transaction.

use hookplane_model::{Delivery, DeliveryAttempt, DeliveryStatus, PlatformEventType, Subscription, Timestamp};
use sqlx::{Row, any::AnyRow};

use super::subscriptions::subscription_from_row;
use super::{Backend, Store, StoreError, from_micros, micros};

/// A delivery claimed for an attempt, with its subscription as it is now.
#[derive(Debug)]
pub struct DueDelivery {
    pub delivery: Delivery,
    pub subscription: Subscription,
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

const DELIVERY_COLUMNS: &str = "d.id, d.organization_id, d.subscription_id, d.webhook_id, d.event_type, d.status, \
                                d.payload, d.series_attempts, d.next_attempt_time, d.create_time";

impl Store {
    /// Claims up to `limit` deliveries due at `now` until `until`, with
    /// their (enabled) subscriptions.
    pub async fn claim_due_deliveries(
        &self,
        now: Timestamp,
        until: Timestamp,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let mut tx = self.write_tx().await?;
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE OF d SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS}, s.id AS s_id FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id \
             WHERE d.status = 'pending' AND d.next_attempt_time <= $1 AND d.claimed_until <= $1 AND s.enabled = 1 \
             ORDER BY d.next_attempt_time LIMIT $2{lock}"
        )))
        .bind(micros(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in &rows {
            let delivery = delivery_from_row(row)?;
            sqlx::query("UPDATE deliveries SET claimed_until = $1 WHERE id = $2")
                .bind(micros(until))
                .bind(&delivery.id)
                .execute(&mut *tx)
                .await?;
            let subscription = sqlx::query("SELECT * FROM subscriptions WHERE id = $1")
                .bind(&delivery.subscription_id)
                .fetch_one(&mut *tx)
                .await?;
            due.push(DueDelivery { delivery, subscription: subscription_from_row(&subscription)? });
        }
        tx.commit().await?;
        Ok(due)
    }

    /// Records an attempt at `delivery` and its next step, releasing the
    /// claim.
    pub async fn record_attempt(
        &self,
        delivery: &Delivery,
        attempt: &DeliveryAttempt,
        next: &NextStep,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let seq: i64 = sqlx::query("SELECT COUNT(*) FROM delivery_attempts WHERE delivery_id = $1")
            .bind(&delivery.id)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        sqlx::query(
            "INSERT INTO delivery_attempts (delivery_id, seq, attempt_time, status_code, duration_ms, \
             response_excerpt, error) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&delivery.id)
        .bind(seq + 1)
        .bind(micros(attempt.time))
        .bind(attempt.status_code.map(i64::from))
        .bind(attempt.duration_ms.min(i64::MAX as u64) as i64)
        .bind(&attempt.response_excerpt)
        .bind(&attempt.error)
        .execute(&mut *tx)
        .await?;
        let (status, next_time) = match next {
            NextStep::Succeeded => (DeliveryStatus::Succeeded, attempt.time),
            NextStep::RetryAt(at) => (DeliveryStatus::Pending, *at),
            NextStep::Failed | NextStep::FailedAndDisable(_) => (DeliveryStatus::Failed, attempt.time),
        };
        sqlx::query(
            "UPDATE deliveries SET status = $1, series_attempts = series_attempts + 1, next_attempt_time = $2, \
             claimed_until = 0 WHERE id = $3",
        )
        .bind(status.name())
        .bind(micros(next_time))
        .bind(&delivery.id)
        .execute(&mut *tx)
        .await?;
        if let NextStep::FailedAndDisable(reason) = next {
            sqlx::query(
                "UPDATE subscriptions SET enabled = 0, disabled_reason = $1, update_time = $2, revision = revision + 1 \
                 WHERE id = $3",
            )
            .bind(reason)
            .bind(micros(attempt.time))
            .bind(&delivery.subscription_id)
            .execute(&mut *tx)
            .await?;
            super::subscriptions::fail_pending(&mut tx, &delivery.subscription_id).await?;
        }
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
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound("delivery"));
        }
        Ok(())
    }

    /// When the next pending delivery is due (or its claim lapses).
    pub async fn next_delivery_due(&self) -> Result<Option<Timestamp>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(CASE WHEN claimed_until > next_attempt_time THEN claimed_until ELSE next_attempt_time END) \
             FROM deliveries WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?.map(from_micros))
    }

    async fn attempts_of(&self, delivery_id: &str) -> Result<Vec<DeliveryAttempt>, StoreError> {
        let rows = sqlx::query("SELECT * FROM delivery_attempts WHERE delivery_id = $1 ORDER BY seq")
            .bind(delivery_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(attempt_from_row).collect()
    }
}
