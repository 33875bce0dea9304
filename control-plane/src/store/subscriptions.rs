//! Webhook subscriptions (SPEC §8), their signing secrets sealed at rest.

use hookplane_model::{ExpiringSecret, Revision, SecretField, Subscription};
use sqlx::{Row, any::AnyRow};

use super::idempotency::{Creation, IdempotencyKey, claim};
use super::{Store, StoreError, decode_json, encode_json, from_micros, micros, missing_or_conflict};

/// Subscriptions an organization may hold.
pub const MAX_SUBSCRIPTIONS: i64 = 100;

/// How [`missing_or_conflict`] finds a subscription.
const ROW: (&str, &str, &str) = ("subscriptions", "id", "subscription");

const COLUMNS: &str = "id, organization_id, spec, sealed_secret, previous_sealed_secret, previous_expire_time, \
                       enabled, disabled_reason, create_time, update_time, revision";

pub(super) fn subscription_from_row(row: &AnyRow) -> Result<Subscription, StoreError> {
    let previous = match (
        row.try_get::<Option<String>, _>("previous_sealed_secret")?,
        row.try_get::<Option<i64>, _>("previous_expire_time")?,
    ) {
        (Some(sealed), Some(expire)) => {
            Some(ExpiringSecret { secret: SecretField::Sealed(sealed), expire_time: from_micros(expire) })
        }
        _ => None,
    };
    Ok(Subscription {
        id: row.try_get("id")?,
        organization_id: row.try_get("organization_id")?,
        spec: decode_json("subscription", &row.try_get::<String, _>("spec")?)?,
        secret: SecretField::Sealed(row.try_get("sealed_secret")?),
        previous_secret: previous,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        disabled_reason: row.try_get("disabled_reason")?,
        create_time: from_micros(row.try_get("create_time")?),
        update_time: from_micros(row.try_get("update_time")?),
        revision: row.try_get("revision")?,
    })
}

/// The sealed text of a secret about to be stored.
fn sealed(secret: &SecretField) -> &str {
    match secret {
        SecretField::Sealed(text) => text,
        SecretField::Absent | SecretField::Plain(_) => {
            panic!("subscription secrets reach the store sealed; the service seals them first")
        }
    }
}

fn previous_columns(subscription: &Subscription) -> (Option<&str>, Option<i64>) {
    match &subscription.previous_secret {
        Some(previous) => (Some(sealed(&previous.secret)), Some(micros(previous.expire_time))),
        None => (None, None),
    }
}

impl Store {
    /// Stores a new subscription.
    pub async fn create_subscription(
        &self,
        subscription: &Subscription,
        idem: Option<&IdempotencyKey>,
    ) -> Result<Creation<Subscription>, StoreError> {
        let mut tx = self.write_tx().await?;
        if let Some(replay) = claim(&mut tx, idem).await? {
            return Ok(replay);
        }
        // Each event is fanned out to every subscription in one
        // transaction: a tenant's count of them is bounded.
        let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM subscriptions WHERE organization_id = $1")
            .bind(&subscription.organization_id)
            .fetch_one(&mut *tx)
            .await?;
        if held >= MAX_SUBSCRIPTIONS {
            return Err(StoreError::Exhausted("subscriptions: an organization holds at most 100"));
        }
        let (previous, previous_expire) = previous_columns(subscription);
        sqlx::query(
            "INSERT INTO subscriptions (id, organization_id, spec, sealed_secret, previous_sealed_secret, \
             previous_expire_time, enabled, disabled_reason, create_time, update_time, revision) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&subscription.id)
        .bind(&subscription.organization_id)
        .bind(encode_json("subscription", &subscription.spec)?)
        .bind(sealed(&subscription.secret))
        .bind(previous)
        .bind(previous_expire)
        .bind(i64::from(subscription.enabled))
        .bind(&subscription.disabled_reason)
        .bind(micros(subscription.create_time))
        .bind(micros(subscription.update_time))
        .bind(subscription.revision)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Creation::Created(subscription.clone()))
    }

    /// Returns one subscription of an organization.
    pub async fn get_subscription(&self, organization_id: &str, id: &str) -> Result<Subscription, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM subscriptions WHERE organization_id = $1 AND id = $2"
        )))
        .bind(organization_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("subscription"))?;
        subscription_from_row(&row)
    }

    /// Lists an organization's subscriptions with ids after `after`.
    pub async fn list_subscriptions(
        &self,
        organization_id: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Subscription>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM subscriptions WHERE organization_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        )))
        .bind(organization_id)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(subscription_from_row).collect()
    }

    /// Writes a subscription's every field at revision `expected`. A
    /// subscription disabled here fails its pending deliveries in the same
    /// transaction.
    pub async fn update_subscription(
        &self,
        subscription: &Subscription,
        expected: Revision,
    ) -> Result<Subscription, StoreError> {
        let mut tx = self.write_tx().await?;
        let (previous, previous_expire) = previous_columns(subscription);
        let updated = sqlx::query(
            "UPDATE subscriptions SET spec = $1, sealed_secret = $2, previous_sealed_secret = $3, \
             previous_expire_time = $4, enabled = $5, disabled_reason = $6, update_time = $7, revision = revision + 1 \
             WHERE organization_id = $8 AND id = $9 AND revision = $10",
        )
        .bind(encode_json("subscription", &subscription.spec)?)
        .bind(sealed(&subscription.secret))
        .bind(previous)
        .bind(previous_expire)
        .bind(i64::from(subscription.enabled))
        .bind(&subscription.disabled_reason)
        .bind(micros(subscription.update_time))
        .bind(&subscription.organization_id)
        .bind(&subscription.id)
        .bind(expected)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(missing_or_conflict(&mut tx, ROW, &subscription.organization_id, &subscription.id).await?);
        }
        if !subscription.enabled {
            fail_pending(&mut tx, &subscription.id).await?;
        }
        tx.commit().await?;
        Ok(Subscription { revision: expected + 1, ..subscription.clone() })
    }

    /// Deletes a subscription and its deliveries; with `expected`, only at
    /// that revision.
    pub async fn delete_subscription(
        &self,
        organization_id: &str,
        id: &str,
        expected: Option<Revision>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let deleted = sqlx::query(
            "DELETE FROM subscriptions WHERE organization_id = $1 AND id = $2 AND ($3 < 0 OR revision = $3)",
        )
        .bind(organization_id)
        .bind(id)
        .bind(expected.unwrap_or(-1))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if deleted == 0 {
            return Err(missing_or_conflict(&mut tx, ROW, organization_id, id).await?);
        }
        sqlx::query(
            "DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE subscription_id = $1)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM deliveries WHERE subscription_id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Fails what a disabled subscription had pending.
pub(super) async fn fail_pending(tx: &mut sqlx::AnyConnection, subscription_id: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE deliveries SET status = 'failed' WHERE subscription_id = $1 AND status = 'pending'")
        .bind(subscription_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
