//! Plans: stored as JSON documents keyed by name.

use hookplane_model::{Plan, Revision};
use sqlx::Row;

use super::{Store, StoreError, bump_config_version, decode_json, encode_json, is_unique_violation};

impl Store {
    /// Inserts the plans that do not exist yet (by name); existing plans are
    /// left as operators changed them.
    pub async fn ensure_plans(&self, plans: &[Plan]) -> Result<(), StoreError> {
        for plan in plans {
            match self.create_plan(plan).await {
                Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Creates a plan.
    pub async fn create_plan(&self, plan: &Plan) -> Result<Plan, StoreError> {
        let plan = Plan { revision: 1, ..plan.clone() };
        let mut tx = self.write_tx().await?;
        let version = bump_config_version(&mut tx).await?;
        let inserted = sqlx::query("INSERT INTO plans (name, spec, revision, config_version) VALUES ($1, $2, $3, $4)")
            .bind(&plan.name)
            .bind(encode_json("plan", &plan)?)
            .bind(plan.revision)
            .bind(version)
            .execute(&mut *tx)
            .await;
        match inserted {
            Ok(_) => {}
            Err(err) if is_unique_violation(&err) => return Err(StoreError::AlreadyExists("plan")),
            Err(err) => return Err(err.into()),
        }
        self.commit_config(tx, version).await?;
        Ok(plan)
    }

    /// Returns one plan.
    pub async fn get_plan(&self, name: &str) -> Result<Plan, StoreError> {
        let row = sqlx::query("SELECT spec, revision FROM plans WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("plan"))?;
        let plan: Plan = decode_json("plan", &row.try_get::<String, _>(0)?)?;
        Ok(Plan { revision: row.try_get(1)?, ..plan })
    }

    /// Lists every plan by name.
    pub async fn list_plans(&self) -> Result<Vec<Plan>, StoreError> {
        let rows = sqlx::query("SELECT spec, revision FROM plans ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let plan: Plan = decode_json("plan", &row.try_get::<String, _>(0)?)?;
                Ok(Plan { revision: row.try_get(1)?, ..plan })
            })
            .collect()
    }

    /// Replaces a plan if its revision is still `expected`.
    pub async fn update_plan(&self, plan: &Plan, expected: Revision) -> Result<Plan, StoreError> {
        let plan = Plan { revision: expected + 1, ..plan.clone() };
        let mut tx = self.write_tx().await?;
        let version = bump_config_version(&mut tx).await?;
        let updated = sqlx::query(
            "UPDATE plans SET spec = $1, revision = $2, config_version = $3 WHERE name = $4 AND revision = $5",
        )
        .bind(encode_json("plan", &plan)?)
        .bind(plan.revision)
        .bind(version)
        .bind(&plan.name)
        .bind(expected)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            let exists = sqlx::query("SELECT 1 FROM plans WHERE name = $1")
                .bind(&plan.name)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            return Err(if exists { StoreError::Conflict("plan") } else { StoreError::NotFound("plan") });
        }
        self.commit_config(tx, version).await?;
        Ok(plan)
    }
}
