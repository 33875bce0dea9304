//! Admin API keys, stored as SHA-256 hashes.

use hookplane_model::{ApiKey, Role};
use sqlx::{Row, any::AnyRow};

use super::idempotency::{Creation, IdempotencyKey, claim};
use super::{Store, StoreError, from_micros, micros};

fn api_key_from_row(row: &AnyRow) -> Result<ApiKey, StoreError> {
    let role: String = row.try_get("role")?;
    Ok(ApiKey {
        id: row.try_get("id")?,
        organization_id: row.try_get("organization_id")?,
        display_name: row.try_get("display_name")?,
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        key_hint: row.try_get("key_hint")?,
        expire_time: row.try_get::<Option<i64>, _>("expire_time")?.map(from_micros),
        create_time: from_micros(row.try_get("create_time")?),
    })
}

impl Store {
    /// Stores a key by its hash.
    pub async fn create_api_key(
        &self,
        key: &ApiKey,
        key_hash: &str,
        idem: Option<&IdempotencyKey>,
    ) -> Result<Creation<ApiKey>, StoreError> {
        let mut tx = self.write_tx().await?;
        if let Some(replay) = claim(&mut tx, idem).await? {
            return Ok(replay);
        }
        sqlx::query(
            "INSERT INTO api_keys (id, organization_id, display_name, role, key_hash, key_hint, expire_time, create_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&key.id)
        .bind(&key.organization_id)
        .bind(&key.display_name)
        .bind(key.role.as_str())
        .bind(key_hash)
        .bind(&key.key_hint)
        .bind(key.expire_time.map(micros))
        .bind(micros(key.create_time))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Creation::Created(key.clone()))
    }

    /// Finds the key with this hash, expired or not.
    pub async fn find_api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let sql = "SELECT id, organization_id, display_name, role, key_hint, expire_time, create_time FROM api_keys WHERE key_hash = $1";
        let row = sqlx::query(sql).bind(key_hash).fetch_optional(&self.pool).await?;
        row.as_ref().map(api_key_from_row).transpose()
    }

    /// Lists an organization's keys with ids after `after`.
    pub async fn list_api_keys(
        &self,
        organization_id: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<ApiKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, organization_id, display_name, role, key_hint, expire_time, create_time FROM api_keys \
             WHERE organization_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(organization_id)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(api_key_from_row).collect()
    }

    /// Deletes (revokes) a key.
    pub async fn delete_api_key(&self, organization_id: &str, id: &str) -> Result<(), StoreError> {
        let deleted = sqlx::query("DELETE FROM api_keys WHERE organization_id = $1 AND id = $2")
            .bind(organization_id)
            .bind(id)
            .execute(&mut *self.writer.connection().await?)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NotFound("api key"));
        }
        Ok(())
    }
}
