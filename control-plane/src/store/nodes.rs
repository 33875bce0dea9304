//! Data-plane nodes as last reported.

use hookplane::model::Node;
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

impl Store {
    /// Records a node's latest state.
    pub async fn upsert_node(&self, node: &Node) -> Result<(), StoreError> {
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
        .execute(&self.pool)
        .await?;
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
