//! Data-plane nodes as last reported.

use hookplane_model::Node;
use sqlx::{Row, any::AnyRow};

use super::{Store, StoreError, from_micros, micros};

fn node_from_row(row: &AnyRow) -> Result<Node, StoreError> {
    Ok(Node {
        id: row.try_get("id")?,
        address: row.try_get("address")?,
        build_version: row.try_get("build_version")?,
        applied_config_version: row.try_get("applied_config_version")?,
        connected: row.try_get::<i64, _>("connected")? != 0,
        last_seen_time: from_micros(row.try_get("last_seen_time")?),
        sync_errors: row.try_get::<i64, _>("sync_errors")?.max(0) as u64,
        last_error: row.try_get("last_error")?,
    })
}

async fn upsert(conn: &mut sqlx::AnyConnection, node: &Node) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO nodes (id, address, build_version, applied_config_version, connected, last_seen_time, sync_errors, last_error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET address = excluded.address, \
         build_version = excluded.build_version, applied_config_version = excluded.applied_config_version, \
         connected = excluded.connected, last_seen_time = excluded.last_seen_time, \
         sync_errors = excluded.sync_errors, last_error = excluded.last_error",
    )
    .bind(&node.id)
    .bind(&node.address)
    .bind(&node.build_version)
    .bind(node.applied_config_version)
    .bind(i64::from(node.connected))
    .bind(micros(node.last_seen_time))
    .bind(node.sync_errors.min(i64::MAX as u64) as i64)
    .bind(&node.last_error)
    .execute(conn)
    .await?;
    Ok(())
}

impl Store {
    /// Records a node's latest state.
    pub async fn upsert_node(&self, node: &Node) -> Result<(), StoreError> {
        let mut conn = self.writer.connection().await?;
        upsert(&mut conn, node).await
    }

    /// Records the latest state of many nodes in one transaction: how the
    /// sync sessions' acknowledgements and heartbeats reach the store.
    pub async fn upsert_nodes(&self, nodes: &[Node]) -> Result<(), StoreError> {
        self.timed("upsert_nodes", self.upsert_nodes_untimed(nodes)).await
    }

    async fn upsert_nodes_untimed(&self, nodes: &[Node]) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        for node in nodes {
            upsert(&mut tx, node).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Returns one node, if it ever connected.
    pub async fn get_node(&self, id: &str) -> Result<Option<Node>, StoreError> {
        let row = sqlx::query("SELECT * FROM nodes WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(node_from_row).transpose()
    }

    /// Lists nodes with ids after `after`.
    pub async fn list_nodes(&self, after: &str, limit: u32) -> Result<Vec<Node>, StoreError> {
        let rows = sqlx::query("SELECT * FROM nodes WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(node_from_row).collect()
    }
}

/// Nodes a fleet can hold: event ids keep 10 bits for the node's ordinal.
pub const MAX_NODE_ORDINALS: i64 = 1024;

impl Store {
    /// The node's ordinal, assigning the lowest free one on its first call.
    /// The node must have been recorded with [`Store::upsert_node`].
    pub async fn node_ordinal(&self, id: &str) -> Result<i64, StoreError> {
        let mut tx = self.write_tx().await?;
        let known: Option<i64> =
            sqlx::query("SELECT ordinal FROM nodes WHERE id = $1").bind(id).fetch_one(&mut *tx).await?.try_get(0)?;
        if let Some(ordinal) = known {
            return Ok(ordinal);
        }
        // The lowest ordinal whose successor is free (or 0 when none is taken).
        let free: i64 = sqlx::query(
            "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM nodes WHERE ordinal = 0) THEN 0 ELSE \
             (SELECT MIN(a.ordinal) + 1 FROM nodes a WHERE a.ordinal IS NOT NULL AND NOT EXISTS \
             (SELECT 1 FROM nodes b WHERE b.ordinal = a.ordinal + 1)) END",
        )
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        if free >= MAX_NODE_ORDINALS {
            return Err(StoreError::Exhausted("node ordinals: a fleet holds at most 1024 node ids"));
        }
        sqlx::query("UPDATE nodes SET ordinal = $1 WHERE id = $2").bind(free).bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(free)
    }
}

impl Store {
    /// The applied config version of every connected node heard from in
    /// the last 30 s (a replica killed with its nodes connected leaves
    /// rows that say so; heartbeats come every 10 s).
    pub async fn connected_node_versions(&self) -> Result<Vec<i64>, StoreError> {
        let recent = hookplane_model::now() - chrono::TimeDelta::seconds(30);
        Ok(sqlx::query_scalar("SELECT applied_config_version FROM nodes WHERE connected = 1 AND last_seen_time > $1")
            .bind(micros(recent))
            .fetch_all(&self.pool)
            .await?)
    }

    /// The config version of each of an organization's connectors `ids`.
    pub async fn connector_config_versions(
        &self,
        organization_id: &str,
        ids: &[&str],
    ) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let list = (2..ids.len() + 2).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, config_version FROM connectors WHERE organization_id = $1 AND id IN ({list})"
        )))
        .bind(organization_id);
        for id in ids {
            query = query.bind(*id);
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("config_version")?)))
            .collect()
    }
}
