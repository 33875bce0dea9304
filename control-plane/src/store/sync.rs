//! Reading the configuration as data planes need it: everything that
//! changed after a config version, consistently at one version.

use std::collections::HashMap;

use hookplane_model::{ConfigDelta, ContentIndex, DeployedOrganization, Plan, SealedSecret, SecretField, Versioned};
use sqlx::Row;

use super::connectors::{connector_from_row, token_from_row};
use super::secrets::secret_from_row;
use super::{Backend, Store, StoreError, decode_json};

impl Store {
    /// The changes after `since` up to the current version, or a full
    /// snapshot when `since` is 0 or not a version this store has reached.
    /// All reads happen in one snapshot-isolated transaction, so the delta
    /// and its content hash describe exactly one version.
    ///
    /// Secrets come back sealed (`DeployedSecret::value` holds the sealed
    /// text); connectors' secret fields too. The caller opens them.
    pub async fn config_delta(&self, since: i64) -> Result<ConfigDelta<SealedSecret>, StoreError> {
        self.timed("config_delta", self.config_delta_untimed(since)).await
    }

    async fn config_delta_untimed(&self, since: i64) -> Result<ConfigDelta<SealedSecret>, StoreError> {
        // Held across the reads on purpose (this is the sync path, not the
        // trigger path): the transaction starts after the lock is taken, so
        // the cached index is never ahead of the snapshot read here.
        let mut content = self.content.lock().await;
        let mut tx = match self.backend {
            Backend::Sqlite => self.pool.begin().await?,
            Backend::Postgres => self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?,
        };
        let version: i64 =
            sqlx::query("SELECT version FROM config_state WHERE id = 1").fetch_one(&mut *tx).await?.try_get(0)?;
        let full = since <= 0 || since > version;
        let after = if full { -1 } else { since };

        let rows = sqlx::query(
            "SELECT id, organization_id, spec, create_time, update_time, revision, config_version \
             FROM connectors WHERE config_version > $1 ORDER BY config_version",
        )
        .bind(after)
        .fetch_all(&mut *tx)
        .await?;
        let mut connectors = Vec::with_capacity(rows.len());
        let mut position = HashMap::with_capacity(rows.len());
        for row in &rows {
            let connector = connector_from_row(row)?;
            position.insert(connector.id.clone(), connectors.len());
            connectors.push(Versioned { item: connector, version: row.try_get("config_version")? });
        }
        let token_rows = sqlx::query(
            "SELECT t.id, t.connector_id, t.kind, t.token_hash, t.hint, t.create_time, t.expire_time, t.superseded \
             FROM connector_tokens t JOIN connectors c ON c.id = t.connector_id \
             WHERE c.config_version > $1",
        )
        .bind(after)
        .fetch_all(&mut *tx)
        .await?;
        for row in &token_rows {
            let (connector_id, token) = token_from_row(row)?;
            if let Some(&i) = position.get(&connector_id) {
                connectors[i].item.tokens.push(token);
            }
        }
        // Ordered by the config version so the version index serves the
        // query; tokens in the order they were minted.
        for connector in &mut connectors {
            connector.item.tokens.sort_by(|a, b| (a.create_time, &a.id).cmp(&(b.create_time, &b.id)));
        }

        let secrets = sqlx::query(
            "SELECT organization_id, name, sealed_value, description, create_time, update_time, revision, config_version \
             FROM secrets WHERE config_version > $1 ORDER BY config_version",
        )
        .bind(after)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| {
            let secret = secret_from_row(row)?;
            let SecretField::Sealed(value) = secret.value else { unreachable!("secrets are read sealed") };
            Ok(Versioned {
                item: SealedSecret { organization_id: secret.organization_id, name: secret.name, sealed: value },
                version: row.try_get("config_version")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;

        let organizations = sqlx::query("SELECT id, plan, config_version FROM organizations WHERE config_version > $1")
            .bind(after)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| {
                Ok(Versioned {
                    item: DeployedOrganization { id: row.try_get(0)?, plan: row.try_get(1)? },
                    version: row.try_get(2)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let plans = sqlx::query("SELECT spec, revision FROM plans WHERE config_version > $1")
            .bind(after)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| {
                let plan: Plan = decode_json("plan", &row.try_get::<String, _>(0)?)?;
                Ok(Plan { revision: row.try_get(1)?, ..plan })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;

        let (mut removed_connector_ids, mut removed_secrets) = (Vec::new(), Vec::new());
        if !full {
            let tombstones = sqlx::query(
                "SELECT kind, organization_id, resource_id FROM config_tombstones WHERE config_version > $1",
            )
            .bind(after)
            .fetch_all(&mut *tx)
            .await?;
            for row in &tombstones {
                let (kind, org, id): (String, String, String) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
                match kind.as_str() {
                    "connector" => removed_connector_ids.push(id),
                    "secret" => removed_secrets.push((org, id)),
                    _ => {}
                }
            }
        }
        advance_index(&mut tx, &mut content, version).await?;
        let content_hash = content.1.hash();
        tx.commit().await?;
        Ok(ConfigDelta {
            version,
            full,
            base_version: if full { 0 } else { since },
            connectors,
            removed_connector_ids,
            secrets,
            removed_secrets,
            plans,
            organizations,
            content_hash,
            // Secrets are still sealed here; opening them finds these.
            unopened_connectors: Default::default(),
        })
    }
}

/// Brings the cached content index from its version to `version` with the
/// items changed in between (all items, the first time).
async fn advance_index(
    tx: &mut sqlx::AnyConnection,
    content: &mut (i64, ContentIndex),
    version: i64,
) -> Result<(), StoreError> {
    let (cached, index) = content;
    if *cached == version {
        return Ok(());
    }
    let after = if *cached <= 0 || *cached > version {
        *index = ContentIndex::default();
        -1
    } else {
        *cached
    };
    let changed = |sql: &'static str| sqlx::query(sql).bind(after);
    for row in
        changed("SELECT id, config_version FROM connectors WHERE config_version > $1").fetch_all(&mut *tx).await?
    {
        index.set_connector(&row.try_get::<String, _>(0)?, row.try_get(1)?);
    }
    for row in changed("SELECT organization_id, name, config_version FROM secrets WHERE config_version > $1")
        .fetch_all(&mut *tx)
        .await?
    {
        index.set_secret(&row.try_get::<String, _>(0)?, &row.try_get::<String, _>(1)?, row.try_get(2)?);
    }
    for row in
        changed("SELECT id, config_version FROM organizations WHERE config_version > $1").fetch_all(&mut *tx).await?
    {
        index.set_organization(&row.try_get::<String, _>(0)?, row.try_get(1)?);
    }
    for row in changed("SELECT spec, revision FROM plans WHERE config_version > $1").fetch_all(&mut *tx).await? {
        let plan: Plan = decode_json("plan", &row.try_get::<String, _>(0)?)?;
        index.set_plan(&Plan { revision: row.try_get(1)?, ..plan });
    }
    if after >= 0 {
        let sql = "SELECT kind, organization_id, resource_id FROM config_tombstones WHERE config_version > $1";
        for row in changed(sql).fetch_all(&mut *tx).await? {
            let (kind, org, id): (String, String, String) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            match kind.as_str() {
                "connector" => index.remove_connector(&id),
                "secret" => index.remove_secret(&org, &id),
                _ => {}
            }
        }
    }
    *cached = version;
    Ok(())
}
