//! Organizations.

use hookplane_model::{Organization, Revision};
use sqlx::{Row, any::AnyRow};

use super::idempotency::{Creation, IdempotencyKey, claim};
use super::{Store, StoreError, bump_config_version, decode_json, encode_json, from_micros, micros};

fn organization_from_row(row: &AnyRow) -> Result<Organization, StoreError> {
    Ok(Organization {
        id: row.try_get("id")?,
        display_name: row.try_get("display_name")?,
        plan: row.try_get("plan")?,
        admin_emails: decode_json("organization admin_emails", &row.try_get::<String, _>("admin_emails")?)?,
        create_time: from_micros(row.try_get("create_time")?),
        update_time: from_micros(row.try_get("update_time")?),
        revision: row.try_get("revision")?,
    })
}

impl Store {
    /// Creates an organization (its plan reaches data planes, so the config
    /// version moves).
    pub async fn create_organization(
        &self,
        org: &Organization,
        idem: Option<&IdempotencyKey>,
    ) -> Result<Creation<Organization>, StoreError> {
        let mut tx = self.write_tx().await?;
        if let Some(replay) = claim(&mut tx, idem).await? {
            return Ok(replay);
        }
        let version = bump_config_version(&mut tx).await?;
        sqlx::query(
            "INSERT INTO organizations (id, display_name, plan, admin_emails, create_time, update_time, revision, config_version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&org.id)
        .bind(&org.display_name)
        .bind(&org.plan)
        .bind(encode_json("organization admin_emails", &org.admin_emails)?)
        .bind(micros(org.create_time))
        .bind(micros(org.update_time))
        .bind(org.revision)
        .bind(version)
        .execute(&mut *tx)
        .await?;
        self.commit_config(tx, version).await?;
        Ok(Creation::Created(org.clone()))
    }

    /// Returns one organization.
    pub async fn get_organization(&self, id: &str) -> Result<Organization, StoreError> {
        let sql = "SELECT id, display_name, plan, admin_emails, create_time, update_time, revision FROM organizations WHERE id = $1";
        let row =
            sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?.ok_or(StoreError::NotFound("organization"))?;
        organization_from_row(&row)
    }

    /// Lists organizations with ids after `after`, by id.
    pub async fn list_organizations(&self, after: &str, limit: u32) -> Result<Vec<Organization>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, display_name, plan, admin_emails, create_time, update_time, revision FROM organizations \
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(organization_from_row).collect()
    }

    /// Replaces an organization's fields if its revision is still `expected`.
    pub async fn update_organization(
        &self,
        org: &Organization,
        expected: Revision,
    ) -> Result<Organization, StoreError> {
        let mut tx = self.write_tx().await?;
        let version = bump_config_version(&mut tx).await?;
        let updated = sqlx::query(
            "UPDATE organizations SET display_name = $1, plan = $2, admin_emails = $3, update_time = $4, \
             revision = revision + 1, config_version = $5 WHERE id = $6 AND revision = $7",
        )
        .bind(&org.display_name)
        .bind(&org.plan)
        .bind(encode_json("organization admin_emails", &org.admin_emails)?)
        .bind(micros(org.update_time))
        .bind(version)
        .bind(&org.id)
        .bind(expected)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            let exists = sqlx::query("SELECT 1 FROM organizations WHERE id = $1")
                .bind(&org.id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            return Err(if exists {
                StoreError::Conflict("organization")
            } else {
                StoreError::NotFound("organization")
            });
        }
        self.commit_config(tx, version).await?;
        Ok(Organization { revision: expected + 1, ..org.clone() })
    }
}
