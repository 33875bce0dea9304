//! Organization secrets, sealed at rest.

use hookplane_model::{Revision, Secret, SecretField};
use sqlx::{Row, any::AnyRow};

use super::idempotency::{Creation, IdempotencyKey, claim};
use super::{
    Store, StoreError, bump_config_version, clear_tombstone, from_micros, is_unique_violation, micros,
    missing_or_conflict, tombstone,
};

pub(super) fn secret_from_row(row: &AnyRow) -> Result<Secret, StoreError> {
    Ok(Secret {
        organization_id: row.try_get("organization_id")?,
        name: row.try_get("name")?,
        value: SecretField::Sealed(row.try_get("sealed_value")?),
        description: row.try_get("description")?,
        create_time: from_micros(row.try_get("create_time")?),
        update_time: from_micros(row.try_get("update_time")?),
        revision: row.try_get("revision")?,
    })
}

/// The sealed text of a secret about to be stored.
fn sealed(secret: &Secret) -> &str {
    match &secret.value {
        SecretField::Sealed(text) => text,
        SecretField::Absent | SecretField::Plain(_) => {
            panic!("secrets reach the store sealed; the service seals them first")
        }
    }
}

impl Store {
    /// Stores a new secret.
    pub async fn create_secret(
        &self,
        secret: &Secret,
        idem: Option<&IdempotencyKey>,
    ) -> Result<Creation<Secret>, StoreError> {
        let mut tx = self.write_tx().await?;
        if let Some(replay) = claim(&mut tx, idem).await? {
            return Ok(replay);
        }
        let version = bump_config_version(&mut tx).await?;
        let inserted = sqlx::query(
            "INSERT INTO secrets (organization_id, name, sealed_value, description, create_time, update_time, revision, config_version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&secret.organization_id)
        .bind(&secret.name)
        .bind(sealed(secret))
        .bind(&secret.description)
        .bind(micros(secret.create_time))
        .bind(micros(secret.update_time))
        .bind(secret.revision)
        .bind(version)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(err) if is_unique_violation(&err) => return Err(StoreError::AlreadyExists("secret")),
            Err(err) => return Err(err.into()),
        }
        clear_tombstone(&mut tx, "secret", &secret.organization_id, &secret.name).await?;
        self.commit_config(tx, version).await?;
        Ok(Creation::Created(secret.clone()))
    }

    /// Returns one secret (sealed).
    pub async fn get_secret(&self, organization_id: &str, name: &str) -> Result<Secret, StoreError> {
        let row = sqlx::query(
            "SELECT organization_id, name, sealed_value, description, create_time, update_time, revision \
             FROM secrets WHERE organization_id = $1 AND name = $2",
        )
        .bind(organization_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("secret"))?;
        secret_from_row(&row)
    }

    /// Lists an organization's secrets with names after `after`.
    pub async fn list_secrets(
        &self,
        organization_id: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Secret>, StoreError> {
        let rows = sqlx::query(
            "SELECT organization_id, name, sealed_value, description, create_time, update_time, revision \
             FROM secrets WHERE organization_id = $1 AND name > $2 ORDER BY name LIMIT $3",
        )
        .bind(organization_id)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(secret_from_row).collect()
    }

    /// Replaces a secret's value and description at revision `expected`.
    pub async fn update_secret(&self, secret: &Secret, expected: Revision) -> Result<Secret, StoreError> {
        let mut tx = self.write_tx().await?;
        let version = bump_config_version(&mut tx).await?;
        let updated = sqlx::query(
            "UPDATE secrets SET sealed_value = $1, description = $2, update_time = $3, revision = revision + 1, \
             config_version = $4 WHERE organization_id = $5 AND name = $6 AND revision = $7",
        )
        .bind(sealed(secret))
        .bind(&secret.description)
        .bind(micros(secret.update_time))
        .bind(version)
        .bind(&secret.organization_id)
        .bind(&secret.name)
        .bind(expected)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(missing_or_conflict(
                &mut tx,
                ("secrets", "name", "secret"),
                &secret.organization_id,
                &secret.name,
            )
            .await?);
        }
        self.commit_config(tx, version).await?;
        Ok(Secret { revision: expected + 1, ..secret.clone() })
    }

    /// Deletes a secret; with `expected`, only at that revision.
    pub async fn delete_secret(
        &self,
        organization_id: &str,
        name: &str,
        expected: Option<Revision>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let version = bump_config_version(&mut tx).await?;
        let deleted =
            sqlx::query("DELETE FROM secrets WHERE organization_id = $1 AND name = $2 AND ($3 < 0 OR revision = $3)")
                .bind(organization_id)
                .bind(name)
                .bind(expected.unwrap_or(-1))
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if deleted == 0 {
            return Err(missing_or_conflict(&mut tx, ("secrets", "name", "secret"), organization_id, name).await?);
        }
        tombstone(&mut tx, "secret", organization_id, name, version).await?;
        self.commit_config(tx, version).await?;
        Ok(())
    }
}
