//! `request_id` idempotency for creates (AIP-155).
//!
//! The key is claimed in the same transaction that creates the resource, and
//! the row carries the whole response (sealed, as it may hold freshly minted
//! credentials). A retry replays that response; a concurrent duplicate waits
//! on the key's row lock (PostgreSQL) or the write lock (SQLite) and then
//! replays too, so a request id never creates two resources.

use hookplane_model as model;
use sqlx::Row;

use super::{StoreError, micros};

/// An idempotency key claimed by a create.
#[derive(Clone, Debug)]
pub struct IdempotencyKey {
    /// Scope of the key: the caller's organization (or `_operator`).
    pub organization_id: String,
    /// The RPC, so one id can serve different methods.
    pub method: &'static str,
    pub request_id: String,
    /// Hash of the request, to refuse a reused id with different content.
    pub request_hash: String,
    /// The encoded response, sealed.
    pub sealed_response: String,
}

/// The result of a create with an optional idempotency key.
#[derive(Debug)]
pub enum Creation<T> {
    /// Created now.
    Created(T),
    /// The key was used before; here is what that call stored.
    Replayed { request_hash: String, sealed_response: String },
}

/// Claims `key` inside `tx`; `Some` when it was claimed before.
pub(super) async fn claim<T>(
    tx: &mut sqlx::AnyConnection,
    key: Option<&IdempotencyKey>,
) -> Result<Option<Creation<T>>, StoreError> {
    let Some(key) = key else {
        return Ok(None);
    };
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (organization_id, method, request_id, request_hash, sealed_response, create_time) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (organization_id, method, request_id) DO NOTHING",
    )
    .bind(&key.organization_id)
    .bind(key.method)
    .bind(&key.request_id)
    .bind(&key.request_hash)
    .bind(&key.sealed_response)
    .bind(micros(model::now()))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT request_hash, sealed_response FROM idempotency_keys \
         WHERE organization_id = $1 AND method = $2 AND request_id = $3",
    )
    .bind(&key.organization_id)
    .bind(key.method)
    .bind(&key.request_id)
    .fetch_one(&mut *tx)
    .await?;
    Ok(Some(Creation::Replayed { request_hash: row.try_get(0)?, sealed_response: row.try_get(1)? }))
}
