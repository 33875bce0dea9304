//! Connectors and their inbound credentials.

use hookplane_model::{Connector, ConnectorSpec, ConnectorToken, PlatformEventType, Revision, Timestamp, TokenKind};
use sqlx::{Row, any::AnyRow};

use super::idempotency::{Creation, IdempotencyKey, claim};
use super::outbox;
use super::{
    Store, StoreError, bump_config_version, clear_tombstone, decode_json, encode_json, from_micros, micros,
    missing_or_conflict, tombstone,
};

/// How [`missing_or_conflict`] finds a connector.
const ROW: (&str, &str, &str) = ("connectors", "id", "connector");

/// How an update changes a connector's credentials.
#[derive(Clone, Debug, Default)]
pub struct TokenChanges {
    /// Newly minted credentials.
    pub insert: Vec<ConnectorToken>,
    /// Kinds whose credentials go away (the method was switched off).
    pub remove_kinds: Vec<TokenKind>,
    /// Rotation: current credentials stop working at this time.
    pub supersede_at: Option<Timestamp>,
}

pub(super) fn connector_from_row(row: &AnyRow) -> Result<Connector, StoreError> {
    let spec: ConnectorSpec = decode_json("connector", &row.try_get::<String, _>("spec")?)?;
    Ok(Connector {
        id: row.try_get("id")?,
        organization_id: row.try_get("organization_id")?,
        spec,
        tokens: Vec::new(),
        create_time: from_micros(row.try_get("create_time")?),
        update_time: from_micros(row.try_get("update_time")?),
        revision: row.try_get("revision")?,
    })
}

pub(super) fn token_from_row(row: &AnyRow) -> Result<(String, ConnectorToken), StoreError> {
    let kind: String = row.try_get("kind")?;
    let token = ConnectorToken {
        id: row.try_get("id")?,
        kind: TokenKind::parse(&kind).ok_or(StoreError::NotFound("token kind"))?,
        hash: row.try_get("token_hash")?,
        hint: row.try_get("hint")?,
        create_time: from_micros(row.try_get("create_time")?),
        expire_time: row.try_get::<Option<i64>, _>("expire_time")?.map(from_micros),
        superseded: row.try_get::<i64, _>("superseded")? != 0,
    };
    Ok((row.try_get("connector_id")?, token))
}

async fn insert_tokens(
    tx: &mut sqlx::AnyConnection,
    connector_id: &str,
    tokens: &[ConnectorToken],
) -> Result<(), StoreError> {
    for token in tokens {
        sqlx::query(
            "INSERT INTO connector_tokens (id, connector_id, kind, token_hash, hint, create_time, expire_time, superseded) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&token.id)
        .bind(connector_id)
        .bind(token.kind.as_str())
        .bind(&token.hash)
        .bind(&token.hint)
        .bind(micros(token.create_time))
        .bind(token.expire_time.map(micros))
        .bind(i64::from(token.superseded))
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

async fn load_tokens(conn: &mut sqlx::AnyConnection, connector_id: &str) -> Result<Vec<ConnectorToken>, StoreError> {
    let rows = sqlx::query(
        "SELECT t.id, t.connector_id, t.kind, t.token_hash, t.hint, t.create_time, t.expire_time, t.superseded \
         FROM connector_tokens t WHERE t.connector_id = $1 ORDER BY t.create_time, t.id",
    )
    .bind(connector_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(|r| token_from_row(r).map(|(_, t)| t)).collect()
}

impl Store {
    /// Creates a connector with its first credentials.
    pub async fn create_connector(
        &self,
        connector: &Connector,
        idem: Option<&IdempotencyKey>,
    ) -> Result<Creation<Connector>, StoreError> {
        let mut tx = self.write_tx().await?;
        if let Some(replay) = claim(&mut tx, idem).await? {
            return Ok(replay);
        }
        let version = bump_config_version(&mut tx).await?;
        sqlx::query(
            "INSERT INTO connectors (id, organization_id, spec, create_time, update_time, revision, config_version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&connector.id)
        .bind(&connector.organization_id)
        .bind(encode_json("connector", &connector.spec)?)
        .bind(micros(connector.create_time))
        .bind(micros(connector.update_time))
        .bind(connector.revision)
        .bind(version)
        .execute(&mut *tx)
        .await?;
        insert_tokens(&mut tx, &connector.id, &connector.tokens).await?;
        clear_tombstone(&mut tx, "connector", &connector.organization_id, &connector.id).await?;
        outbox::record(&mut tx, &outbox::connector_event(PlatformEventType::ConnectorCreated, connector)).await?;
        self.commit_config(tx, version).await?;
        Ok(Creation::Created(connector.clone()))
    }

    /// Returns one connector of an organization, with its credentials.
    pub async fn get_connector(&self, organization_id: &str, id: &str) -> Result<Connector, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query(
            "SELECT id, organization_id, spec, create_time, update_time, revision FROM connectors \
             WHERE organization_id = $1 AND id = $2",
        )
        .bind(organization_id)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound("connector"))?;
        let mut connector = connector_from_row(&row)?;
        connector.tokens = load_tokens(&mut conn, id).await?;
        Ok(connector)
    }

    /// Lists an organization's connectors with ids after `after`, by id.
    pub async fn list_connectors(
        &self,
        organization_id: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Connector>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(
            "SELECT id, organization_id, spec, create_time, update_time, revision FROM connectors \
             WHERE organization_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(organization_id)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        let mut connectors = rows.iter().map(connector_from_row).collect::<Result<Vec<_>, _>>()?;
        let (Some(first), Some(last)) = (connectors.first(), connectors.last()) else {
            return Ok(connectors);
        };
        // One query for the whole page's credentials, by the page's id range.
        let token_rows = sqlx::query(
            "SELECT t.id, t.connector_id, t.kind, t.token_hash, t.hint, t.create_time, t.expire_time, t.superseded \
             FROM connector_tokens t JOIN connectors c ON c.id = t.connector_id \
             WHERE c.organization_id = $1 AND c.id >= $2 AND c.id <= $3 ORDER BY t.create_time, t.id",
        )
        .bind(organization_id)
        .bind(&first.id)
        .bind(&last.id)
        .fetch_all(&mut *conn)
        .await?;
        for row in &token_rows {
            let (connector_id, token) = token_from_row(row)?;
            if let Ok(i) = connectors.binary_search_by(|c| c.id.as_str().cmp(&connector_id)) {
                connectors[i].tokens.push(token);
            }
        }
        Ok(connectors)
    }

    /// Replaces a connector's spec and applies credential changes, if its
    /// revision is still `expected`. Returns the connector as stored.
    pub async fn update_connector(
        &self,
        connector: &Connector,
        expected: Revision,
        changes: &TokenChanges,
    ) -> Result<Connector, StoreError> {
        let now = connector.update_time;
        let mut tx = self.write_tx().await?;
        let version = bump_config_version(&mut tx).await?;
        let updated = sqlx::query(
            "UPDATE connectors SET spec = $1, update_time = $2, revision = revision + 1, config_version = $3 \
             WHERE organization_id = $4 AND id = $5 AND revision = $6",
        )
        .bind(encode_json("connector", &connector.spec)?)
        .bind(micros(now))
        .bind(version)
        .bind(&connector.organization_id)
        .bind(&connector.id)
        .bind(expected)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(missing_or_conflict(&mut tx, ROW, &connector.organization_id, &connector.id).await?);
        }
        for kind in &changes.remove_kinds {
            sqlx::query("DELETE FROM connector_tokens WHERE connector_id = $1 AND kind = $2")
                .bind(&connector.id)
                .bind(kind.as_str())
                .execute(&mut *tx)
                .await?;
        }
        if let Some(at) = changes.supersede_at {
            sqlx::query(
                "UPDATE connector_tokens SET superseded = 1, \
                 expire_time = CASE WHEN expire_time IS NULL OR expire_time > $2 THEN $2 ELSE expire_time END \
                 WHERE connector_id = $1 AND superseded = 0",
            )
            .bind(&connector.id)
            .bind(micros(at))
            .execute(&mut *tx)
            .await?;
        }
        // Credentials past their end are dead weight for every snapshot.
        sqlx::query("DELETE FROM connector_tokens WHERE connector_id = $1 AND superseded = 1 AND expire_time <= $2")
            .bind(&connector.id)
            .bind(micros(now))
            .execute(&mut *tx)
            .await?;
        insert_tokens(&mut tx, &connector.id, &changes.insert).await?;
        let tokens = load_tokens(&mut tx, &connector.id).await?;
        let updated = Connector { tokens, revision: expected + 1, ..connector.clone() };
        let event_type = if changes.supersede_at.is_some() || !changes.insert.is_empty() {
            PlatformEventType::ConnectorTokensRotated
        } else {
            PlatformEventType::ConnectorUpdated
        };
        outbox::record(&mut tx, &outbox::connector_event(event_type, &updated)).await?;
        self.commit_config(tx, version).await?;
        Ok(updated)
    }

    /// Deletes a connector and its credentials; with `expected`, only at
    /// that revision.
    pub async fn delete_connector(
        &self,
        organization_id: &str,
        id: &str,
        expected: Option<Revision>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let version = bump_config_version(&mut tx).await?;
        let deleted =
            sqlx::query("DELETE FROM connectors WHERE organization_id = $1 AND id = $2 AND ($3 < 0 OR revision = $3)")
                .bind(organization_id)
                .bind(id)
                .bind(expected.unwrap_or(-1))
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if deleted == 0 {
            return Err(missing_or_conflict(&mut tx, ROW, organization_id, id).await?);
        }
        sqlx::query("DELETE FROM connector_tokens WHERE connector_id = $1").bind(id).execute(&mut *tx).await?;
        tombstone(&mut tx, "connector", organization_id, id, version).await?;
        let data = serde_json::json!({ "connector": { "id": id } });
        outbox::record(&mut tx, &outbox::platform_event(PlatformEventType::ConnectorDeleted, organization_id, data))
            .await?;
        self.commit_config(tx, version).await?;
        Ok(())
    }
}
